"""Domains: intervals, boxes and space x time, with their boundaries and initial slices.

Points are arrays of shape `(n, d)` (time is the last coordinate of a `SpaceTime`).
Bounds are stored as static Python floats, so a domain inside a model or a loss never
turns into trainable leaves.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ._samplers import AbstractQuadrature, AbstractSampler, Uniform, tensor_quadrature


def _float():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _check_n(n, what="n"):
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"sciml.pinn: `{what}` must be a positive int, got {n!r}.")


def _bounds(lower, upper, where):
    lo = tuple(float(v) for v in np.atleast_1d(np.asarray(lower, np.float64)))
    hi = tuple(float(v) for v in np.atleast_1d(np.asarray(upper, np.float64)))
    if len(lo) != len(hi):
        raise ValueError(
            f"sciml.pinn.{where}: `lower` has {len(lo)} entries but `upper` has {len(hi)}."
        )
    if not lo:
        raise ValueError(f"sciml.pinn.{where}: `lower` and `upper` are empty; give one bound "
                         "per coordinate.")
    if not all(math.isfinite(v) for v in lo + hi):
        raise ValueError(f"sciml.pinn.{where}: bounds must be finite, got {lo} and {hi}.")
    bad = [i for i, (a, b) in enumerate(zip(lo, hi)) if not a < b]
    if bad:
        i = bad[0]
        raise ValueError(
            f"sciml.pinn.{where}: need lower < upper in every coordinate, got lower[{i}] = "
            f"{lo[i]} >= upper[{i}] = {hi[i]}. Swap or fix the bounds."
        )
    return lo, hi


class AbstractDomain(eqx.Module):
    """A region with an interior and a boundary to sample points from."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Number of coordinates of a point."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, n: int, sampler: AbstractSampler = Uniform()) -> Array:
        """`n` interior points, shape `(n, dim)`."""

    @abc.abstractmethod
    def sample_boundary(
        self, key: PRNGKeyArray, n: int, sampler: AbstractSampler = Uniform()
    ) -> Array:
        """`n` points on the boundary, shape `(n, dim)`."""

    @abc.abstractmethod
    def contains(self, x: Array) -> Array:
        """Whether one point lies in the closed domain."""


class Box(AbstractDomain):
    """An axis-aligned box `[lower_0, upper_0] x ... x [lower_{d-1}, upper_{d-1}]`.

    **Arguments:**

    - `lower`, `upper`: sequences of floats (or floats for d = 1), `lower < upper`.
    """

    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, lower, upper):
        self.lower, self.upper = _bounds(lower, upper, type(self).__name__)

    @property
    def dim(self) -> int:
        return len(self.lower)

    @property
    def volume(self) -> float:
        return math.prod(b - a for a, b in zip(self.lower, self.upper))

    def _lo_hi(self):
        dt = _float()
        return jnp.asarray(self.lower, dt), jnp.asarray(self.upper, dt)

    def from_unit(self, u: Array) -> Array:
        """Maps points of the unit cube, shape `(n, dim)`, onto the box."""
        lo, hi = self._lo_hi()
        return lo[None, :] + u * (hi - lo)[None, :]

    def sample(self, key, n, sampler=Uniform()):
        _check_n(n)
        return self.from_unit(sampler(key, n, self.dim))

    def sample_boundary(self, key, n, sampler=Uniform()):
        """Points on the faces, each face chosen with probability proportional to its area.

        The first sampler coordinate picks the face, the others place the point on it,
        so a low-discrepancy sampler stays stratified over the faces.
        """
        _check_n(n)
        return self.boundary_from_unit(sampler(key, n, self.dim))

    def boundary_from_unit(self, u: Array) -> Array:
        """Maps unit-cube points `(n, dim)` onto the faces (see `sample_boundary`)."""
        n, d = u.shape
        sides = [b - a for a, b in zip(self.lower, self.upper)]
        # Face 2k is x_k = lower_k, face 2k + 1 is x_k = upper_k.
        areas = np.repeat([math.prod(sides[:k] + sides[k + 1 :]) for k in range(d)], 2)
        cum = jnp.asarray(np.cumsum(areas) / np.sum(areas), u.dtype)
        face = jnp.minimum(jnp.searchsorted(cum, u[:, 0], side="right"), 2 * d - 1)
        axis, upper_side = face // 2, face % 2
        # The remaining d - 1 sampler coordinates fill the other axes in order.
        rest = u[:, 1:]
        cols = []
        lo, hi = self._lo_hi()
        for k in range(d):
            # Column j of `rest` serves axis k when k != axis: j = k if k < axis else k - 1.
            if d > 1:
                j = jnp.where(k < axis, k, k - 1)
                j = jnp.clip(j, 0, d - 2)
                free = jnp.take_along_axis(rest, j[:, None], axis=1)[:, 0]
            else:
                free = jnp.zeros((n,), u.dtype)
            on_face = jnp.where(upper_side == 1, hi[k], lo[k])
            cols.append(jnp.where(axis == k, on_face, lo[k] + free * (hi[k] - lo[k])))
        return jnp.stack(cols, axis=1)

    def contains(self, x):
        lo, hi = self._lo_hi()
        return jnp.all((x >= lo) & (x <= hi))

    def quadrature(self, rule: AbstractQuadrature | Sequence[AbstractQuadrature]):
        """Tensor-product quadrature nodes `(N, dim)` and weights `(N,)` on the box.

        **Arguments:**

        - `rule`: one rule for every axis (e.g. `GaussLegendre(64)`) or one per axis.

        **Returns:**

        `(points, weights)` with `sum(weights * f(points)) ~ integral of f`.
        """
        rules = [rule] * self.dim if isinstance(rule, AbstractQuadrature) else list(rule)
        if len(rules) != self.dim:
            raise ValueError(
                f"sciml.pinn.{type(self).__name__}.quadrature: {len(rules)} rules for a "
                f"{self.dim}-dimensional domain; give one rule or one per axis."
            )
        pts, w = tensor_quadrature(rules, self.lower, self.upper)
        return jnp.asarray(pts, _float()), jnp.asarray(w, _float())


def Interval(a: float, b: float) -> Box:
    """The interval `[a, b]` as a one-dimensional `Box` (points of shape `(n, 1)`)."""
    return Box([a], [b])


class SpaceTime(AbstractDomain):
    """`space x [t0, t1]`: points are `(x_0, ..., x_{d-1}, t)`, time last.

    **Arguments:**

    - `space`: a `Box` (or `Interval(a, b)`).
    - `t0`, `t1`: the time interval, `t0 < t1`.
    """

    space: Box
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(self, space: Box, t0: float, t1: float):
        if not isinstance(space, Box):
            raise TypeError(
                f"sciml.pinn.SpaceTime: `space` must be a sciml.pinn.Box or Interval, got "
                f"{type(space).__name__}."
            )
        (self.t0,), (self.t1,) = _bounds([t0], [t1], "SpaceTime")
        self.space = space

    @property
    def dim(self) -> int:
        return self.space.dim + 1

    @property
    def box(self) -> Box:
        """The same region as one `Box` (time as the last axis)."""
        return Box(self.space.lower + (self.t0,), self.space.upper + (self.t1,))

    def sample(self, key, n, sampler=Uniform()):
        _check_n(n)
        return self.box.sample(key, n, sampler)

    def sample_boundary(self, key, n, sampler=Uniform()):
        """Points on `boundary(space) x [t0, t1]` (the lateral boundary).

        Drawn as one `dim`-dimensional sample (face and position from the first
        coordinates, time from the last), so low-discrepancy samplers stay uncorrelated.
        """
        _check_n(n)
        u = sampler(key, n, self.dim)
        xb = self.space.boundary_from_unit(u[:, :-1])
        t = self.t0 + u[:, -1:] * (self.t1 - self.t0)
        return jnp.concatenate([xb, t], axis=1)

    def sample_initial(self, key, n, sampler=Uniform()):
        """Points on the initial slice `space x {t0}`."""
        _check_n(n)
        x = self.space.sample(key, n, sampler)
        return jnp.concatenate([x, jnp.full((n, 1), self.t0, x.dtype)], axis=1)

    def contains(self, x):
        return self.box.contains(x)

    def quadrature(self, rule):
        """Tensor-product quadrature over space and time (see `Box.quadrature`)."""
        return self.box.quadrature(rule)
