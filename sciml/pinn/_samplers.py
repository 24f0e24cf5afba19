"""Point samplers on the unit cube, and fixed quadrature rules.

A sampler is a strategy object: `sampler(key, n, d)` returns `n` points in
`[0, 1)^d`. Domains map those points onto themselves, so every sampler works on
every domain. Random samplers draw fresh points from the key, which is how a PINN
loss resamples its collocation points at every step (`fit` folds the step into the
loss's key).

A quadrature rule gives nodes and weights on an interval; a domain builds the tensor
product (`domain.quadrature(rule)`), for losses that are integrals (Ritz/Rayleigh).
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray


def _check_count(n, what):
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"sciml.pinn: {what} must be a positive int, got {n!r}.")


def _float():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


class AbstractSampler(eqx.Module):
    """Draws `n` points in the unit cube `[0, 1)^d` from a key."""

    @abc.abstractmethod
    def __call__(self, key: PRNGKeyArray, n: int, d: int) -> Array:
        """Returns an array of shape `(n, d)` with entries in `[0, 1)`."""


class Uniform(AbstractSampler):
    """Independent uniform points (pseudo-random)."""

    def __call__(self, key, n, d):
        _check_count(n, "the number of points")
        return jax.random.uniform(key, (n, d), _float())


class LatinHypercube(AbstractSampler):
    """Latin hypercube: every coordinate has exactly one point in each of `n` strata.

    Each coordinate is an independent random permutation of the strata, with a
    uniform position inside each stratum (McKay, Beckman & Conover 1979).
    """

    def __call__(self, key, n, d):
        _check_count(n, "the number of points")
        pkey, ukey = jax.random.split(key)
        perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(pkey, d))
        u = jax.random.uniform(ukey, (d, n), _float())
        return ((perms.astype(u.dtype) + u) / n).T


_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def _radical_inverse(index: np.ndarray, base: int) -> np.ndarray:
    out = np.zeros(index.shape, np.float64)
    f = 1.0 / base
    i = index.copy()
    while np.any(i > 0):
        out += f * (i % base)
        i //= base
        f /= base
    return out


def halton_points(n: int, d: int, *, skip: int = 0) -> np.ndarray:
    """The first `n` points of the `d`-dimensional Halton sequence (numpy, float64).

    Coordinate `j` is the radical inverse of the index in the `j`-th prime base.
    The index starts at `skip + 1` (the all-zero first point is skipped).
    """
    _check_count(n, "the number of points")
    if not 1 <= d <= len(_PRIMES):
        raise ValueError(f"sciml.pinn.Halton: dimension must be 1..{len(_PRIMES)}, got {d}.")
    idx = np.arange(skip + 1, skip + n + 1, dtype=np.int64)
    return np.stack([_radical_inverse(idx, b) for b in _PRIMES[:d]], axis=1)


class Halton(AbstractSampler):
    """Low-discrepancy Halton points, randomised by a random shift modulo 1.

    The deterministic sequence is fixed; each key adds one uniform shift to all
    points (Cranley & Patterson 1976), which keeps the low discrepancy and makes
    the estimate of an integral unbiased, so resampling every step still works.

    **Arguments:**

    - `shift`: apply the random shift (default True). With `False` every key gives
      the same points.
    """

    shift: bool = eqx.field(static=True, default=True)

    def __call__(self, key, n, d):
        pts = jnp.asarray(halton_points(n, d), _float())
        if not self.shift:
            return pts
        u = jax.random.uniform(key, (d,), _float())
        return jnp.mod(pts + u[None, :], 1.0)


# ----------------------------------------------------------------------------------
# Quadrature rules on one interval


class AbstractQuadrature(eqx.Module):
    """Nodes and weights of a quadrature rule on an interval."""

    n: eqx.AbstractVar[int]

    @abc.abstractmethod
    def nodes_weights(self, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        """Nodes and weights on `[a, b]` (numpy float64; constants of the program)."""


class Trapezoid(AbstractQuadrature):
    """Composite trapezoid rule on `n` equispaced nodes (endpoints included).

    Second-order in general; spectrally accurate for periodic integrands and for
    integrands that vanish with their derivatives at the ends.
    """

    n: int = eqx.field(static=True)

    def __init__(self, n: int):
        _check_count(n, "`n`")
        if n < 2:
            raise ValueError(f"sciml.pinn.Trapezoid: need n >= 2 nodes, got {n}.")
        self.n = int(n)

    def nodes_weights(self, a, b):
        x = np.linspace(a, b, self.n)
        w = np.full(self.n, (b - a) / (self.n - 1))
        w[0] = w[-1] = 0.5 * w[0]
        return x, w


class GaussLegendre(AbstractQuadrature):
    """Gauss-Legendre rule with `n` nodes: exact for polynomials of degree 2n - 1."""

    n: int = eqx.field(static=True)

    def __init__(self, n: int):
        _check_count(n, "`n`")
        self.n = int(n)

    def nodes_weights(self, a, b):
        z, w = np.polynomial.legendre.leggauss(self.n)
        half = 0.5 * (b - a)
        return a + half * (z + 1), half * w


def tensor_quadrature(rules, lower, upper) -> tuple[np.ndarray, np.ndarray]:
    """Tensor-product nodes `(N, d)` and weights `(N,)` from one rule per axis."""
    nodes, weights = [], []
    for rule, a, b in zip(rules, lower, upper):
        x, w = rule.nodes_weights(float(a), float(b))
        nodes.append(x)
        weights.append(w)
    grids = np.meshgrid(*nodes, indexing="ij")
    wgrids = np.meshgrid(*weights, indexing="ij")
    pts = np.stack([g.ravel() for g in grids], axis=1)
    w = math.prod(wgrids).ravel() if len(wgrids) > 1 else wgrids[0].ravel()
    return pts, w
