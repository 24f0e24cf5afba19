"""Machinery shared by every domain: boundary pieces, exact-count rejection sampling,
quasi-Monte Carlo estimates, tolerances and R-functions.

A domain's boundary is a list of *pieces* (a box face, a polygon edge, a circle, ...),
each the image of a unit cube under a map that is uniform in length/area. The boundary
of a CSG result is the union of its operands' pieces, filtered point by point: a point
`x` on a piece with outward normal `n` lies on the result's boundary when `x + e n` is
outside the result and `x - e n` inside (PhysicsNeMo's criterion). Drawing from the
pieces in proportion to their measures and keeping the points that pass gives points
uniform in length/area on the result's boundary, whatever the nesting.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._samplers import halton_points


def float_dtype():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def check_n(n, what="n"):
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"sciml.pinn: `{what}` must be a positive int, got {n!r}.")


def on_tol(scale: float, dtype) -> float:
    """Distance within which a point counts as on the boundary (round-off of a mapped point)."""
    return 256 * float(jnp.finfo(dtype).eps) * scale


def offset(scale: float, dtype) -> float:
    """The step `e` of the boundary test `x -+ e n` (well above `on_tol`)."""
    return math.sqrt(float(jnp.finfo(dtype).eps)) * scale


class Estimate(float):
    """A float that is a quasi-Monte Carlo estimate, not an exact value.

    Domains return it for a volume or boundary measure they cannot compute in closed
    form (most CSG results). `stderr` is the binomial standard error of the hit
    fraction (an upper bound for the quasi-random points used); `points` how many.
    """

    stderr: float
    points: int

    def __new__(cls, value: float, stderr: float, points: int):
        out = super().__new__(cls, value)
        out.stderr = float(stderr)
        out.points = int(points)
        return out

    def __repr__(self):
        return (
            f"Estimate({float(self):.6g} +- {self.stderr:.2g}, quasi-Monte Carlo over "
            f"{self.points} points)"
        )

    def scaled(self, factor: float) -> Estimate:
        return Estimate(float(self) * factor, self.stderr * abs(factor), self.points)


@dataclasses.dataclass(frozen=True)
class Proposal:
    """Interior points uniform on a set containing the domain, then filtered.

    `to_point(u)` maps unit-cube points `(m, k)` to points uniform on a set of volume
    `support`; `keep(x)` (batched, or None for "all") says which lie in the domain.
    """

    k: int
    to_point: Callable[[Array], Array]
    support: float
    keep: Callable[[Array], Array] | None = None


@dataclasses.dataclass(frozen=True)
class Piece:
    """One piece of a boundary: a face, an edge, a sphere.

    - `measure`: its length/area (of the whole piece, before any CSG filtering).
    - `k`: unit-cube coordinates its map needs.
    - `to_point(u)`: `(m, k) -> (m, d)`, uniform in length/area on the piece.
    - `normal(x)`: the outward unit normal at one point (of the domain it bounds).
    - `dist(x)`: distance from one point to the piece (exactly 0 on it).
    - `path`: where the piece's primitive sits in the CSG tree (child indices).
    """

    measure: float
    k: int
    to_point: Callable[[Array], Array]
    normal: Callable[[Array], Array]
    dist: Callable[[Array], Array]
    path: tuple[int, ...] = ()

    def under(self, index: int) -> Piece:
        return dataclasses.replace(self, path=(index, *self.path))

    def flipped(self) -> Piece:
        normal = self.normal
        return dataclasses.replace(self, normal=lambda x: -normal(x))


def fill(key, n: int, draw: Callable, keep: Callable, rate: float, where: str) -> Array:
    """Exactly `n` points by rejection: rounds of `m` candidates until `n` are kept.

    The kept points are taken in the order they were drawn, so a quasi-random stream
    stays low-discrepancy on the accepted set. `m` is sized from the acceptance `rate`
    so that one round almost always suffices; the loop makes the count exact anyway.

    **Arguments:**

    - `draw(key, m) -> (x, aux)`: `m` candidates (and anything `keep` needs).
    - `keep(x, aux) -> (m,) bool`.
    - `rate`: the expected fraction kept (> 0).
    """
    rate = max(float(rate), 1e-3)
    m = int(math.ceil((n + 4 * math.sqrt(n) + 16) / rate))
    x0, _ = jax.eval_shape(lambda k: draw(k, m), key)
    d = x0.shape[1]

    def body(state):
        i, filled, buf, key = state
        key, sub = jax.random.split(key)
        x, aux = draw(sub, m)
        ok = keep(x, aux)
        pos = filled + jnp.cumsum(ok) - 1
        idx = jnp.where(ok & (pos < n), pos, n)
        buf = buf.at[idx].set(x, mode="drop")
        return i + 1, jnp.minimum(filled + jnp.sum(ok), n), buf, key

    def cond(state):
        i, filled, _, _ = state
        return (filled < n) & (i < _MAX_ROUNDS)

    init = (jnp.asarray(0), jnp.asarray(0), jnp.zeros((n, d), x0.dtype), key)
    _, filled, buf, _ = jax.lax.while_loop(cond, body, init)
    return eqx.error_if(
        buf,
        filled < n,
        f"sciml.pinn.{where}: fewer points were accepted than asked for in "
        f"{_MAX_ROUNDS} rounds of rejection sampling; the domain is (nearly) empty.",
    )


_MAX_ROUNDS = 64


_CHUNK = 4096


def hit_fraction(source, points: int) -> float:
    """Fraction of `points` deterministic Halton candidates of `source` that it keeps.

    `source.candidates(u) -> (x, aux)` and `source.keep(x, aux)`, with `source.width`
    unit-cube coordinates. Evaluated in chunks of one compiled size (domains are
    hashable, so each compiles once) at trace time, so it can size a rejection loop
    inside `jit`.
    """
    hits = 0.0
    chunks = max(1, -(-points // _CHUNK))
    with jax.ensure_compile_time_eval():
        for c in range(chunks):
            u = halton_points(_CHUNK, source.width, skip=c * _CHUNK)
            hits += float(_hits(source, jnp.asarray(u, float_dtype())))
    return hits / (chunks * _CHUNK)


@eqx.filter_jit
def _hits(source, u):
    x, aux = source.candidates(u)
    return jnp.sum(source.keep(x, aux).astype(u.dtype))


def safe_hypot(a: Array, b: Array) -> Array:
    """`sqrt(a^2 + b^2)` whose derivatives are finite (zero) where `a = b = 0`."""
    s = a * a + b * b
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1)), 0)


def r_and(a: Array, b: Array) -> Array:
    """R-conjunction `a + b - sqrt(a^2 + b^2)`: positive iff both are, normalised."""
    return a + b - safe_hypot(a, b)


def r_or(a: Array, b: Array) -> Array:
    """R-disjunction `a + b + sqrt(a^2 + b^2)`: positive iff either is, normalised."""
    return a + b + safe_hypot(a, b)


def point(x, dim: int, where: str) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(float_dtype())
    if x.shape != (dim,):
        raise ValueError(
            f"sciml.pinn.{where}: takes one point of shape ({dim},), got shape {x.shape}. "
            "Use jax.vmap over a batch of points."
        )
    return x
