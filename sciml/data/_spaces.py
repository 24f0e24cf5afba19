"""Spaces of random input functions u: Gaussian random fields and Chebyshev series.

A space is a small strategy object: `sample(key, num)` draws `num` functions as
features (grid values for a GRF, coefficients for a Chebyshev series), and
`evaluate(features, x)` / `antiderivative(features, x)` evaluate one of them. The
functions are exact objects (a piecewise cubic, a polynomial), so the reference
solvers in `sciml.data` see the same u the sensors see.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray


def default_float():
    """float32, or float64 when the user has enabled x64."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _check_domain(domain, where):
    try:
        a, b = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: `domain` must be a pair (a, b), got {domain!r}.") from None
    if not b > a:
        raise ValueError(f"{where}: `domain` must satisfy a < b, got {domain!r}.")
    return a, b


def _check_num(num, where):
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
        raise ValueError(f"{where}: `num` must be a positive int, got {num!r}.")
    return int(num)


# ----------------------------------------------------------------------------------
# Piecewise cubic interpolation on a uniform grid


def _cubic_piece(values: Array, a: float, h: float, i: Array, x: Array) -> Array:
    """Evaluates the cubic of interval `i` (through 4 neighbouring nodes) at scalar `x`."""
    g = values.shape[0]
    start = jnp.clip(i - 1, 0, g - 4)
    nodes = start + jnp.arange(4)
    ys = values[nodes]
    xs = a + h * nodes.astype(values.dtype)
    # Lagrange basis on the 4 stencil nodes.
    diff = x - xs
    out = jnp.zeros_like(x)
    for j in range(4):
        num, den = 1.0, 1.0
        for k in range(4):
            if k != j:
                num = num * diff[k]
                den = den * (j - k) * h
        out = out + ys[j] * num / den
    return out


def _interval(x, a, h, g):
    return jnp.clip(jnp.floor((x - a) / h).astype(jnp.int32), 0, g - 2)


def cubic_interpolate(values: Array, domain: tuple[float, float], x: Array) -> Array:
    """Piecewise-cubic interpolation of values on a uniform grid.

    On each grid interval the interpolant is the cubic through the 4 nearest nodes
    (2 on each side, shifted inwards at the ends), so it is continuous, exact for
    cubics and accurate to O(h^4) for smooth functions.

    **Arguments:**

    - `values`: shape `(G,)`, the function on `G >= 4` equispaced nodes of `domain`.
    - `domain`: `(a, b)`, the first and last node.
    - `x`: points to evaluate at (any shape); points outside `domain` are extrapolated
      with the end cubics.

    **Returns:**

    An array shaped like `x`.
    """
    values = jnp.asarray(values)
    g = values.shape[0]
    if values.ndim != 1 or g < 4:
        raise ValueError(
            f"cubic_interpolate: `values` must be 1-d with at least 4 nodes, got shape "
            f"{values.shape}."
        )
    a, b = domain
    h = (b - a) / (g - 1)
    x = jnp.asarray(x, values.dtype)
    flat = x.reshape(-1)
    i = _interval(flat, a, h, g)
    out = jax.vmap(lambda ii, xx: _cubic_piece(values, a, h, ii, xx))(i, flat)
    return out.reshape(x.shape)


_GAUSS = (0.5 - 0.5 / np.sqrt(3.0), 0.5 + 0.5 / np.sqrt(3.0))


def cubic_antiderivative(values: Array, domain: tuple[float, float], x: Array) -> Array:
    """Exact integral from `domain[0]` to `x` of the `cubic_interpolate` interpolant.

    Each cubic piece is integrated by 2-point Gauss-Legendre quadrature, which is
    exact for cubics, so the result is the antiderivative of the interpolant to
    rounding error.

    **Arguments:** as `cubic_interpolate`.

    **Returns:**

    An array shaped like `x`.
    """
    values = jnp.asarray(values)
    g = values.shape[0]
    a, b = domain
    h = (b - a) / (g - 1)
    dtype = values.dtype
    left = a + h * jnp.arange(g - 1, dtype=dtype)
    idx = jnp.arange(g - 1)

    def piece_integral(i, lo, hi):
        pts = jnp.stack([lo + (hi - lo) * _GAUSS[0], lo + (hi - lo) * _GAUSS[1]])
        vals = jax.vmap(lambda xx: _cubic_piece(values, a, h, i, xx))(pts)
        return 0.5 * (hi - lo) * (vals[0] + vals[1])

    whole = jax.vmap(piece_integral)(idx, left, left + h)
    cumulative = jnp.concatenate([jnp.zeros((1,), dtype), jnp.cumsum(whole)])
    x = jnp.asarray(x, dtype)
    flat = x.reshape(-1)
    i = _interval(flat, a, h, g)
    part = jax.vmap(piece_integral)(i, left[i], flat)
    return (cumulative[i] + part).reshape(x.shape)


# ----------------------------------------------------------------------------------
# Function spaces


class AbstractFunctionSpace(eqx.Module):
    """A distribution over input functions u on an interval.

    Concrete spaces implement `sample` (features of `num` random functions),
    `evaluate` and `antiderivative` (of one function, from its features).
    """

    @property
    @abc.abstractmethod
    def domain(self) -> tuple[float, float]:
        """The interval (a, b) the functions live on."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, num: int) -> Array:
        """Features of `num` random functions, stacked along axis 0."""

    @abc.abstractmethod
    def evaluate(self, features: Array, x: Array) -> Array:
        """One function (its features) evaluated at `x` (any shape)."""

    @abc.abstractmethod
    def antiderivative(self, features: Array, x: Array) -> Array:
        """Exact integral of one function from `domain[0]` to `x`."""

    @property
    def kinks(self) -> Array | None:
        """Points where the functions' derivative may jump (None: smooth functions).

        ODE reference solvers step onto these instead of across them."""
        return None


class GRF(AbstractFunctionSpace):
    """Gaussian random field u ~ GP(0, k) with the RBF kernel on an interval.

    k(x, x') = exp(-|x - x'|^2 / (2 l^2)). As in DeepONet's data generator (Lu et al.
    2021, `spaces.GRF`), u is drawn on a fine uniform grid through the Cholesky factor
    of the kernel matrix (plus a small jitter) and evaluated elsewhere by cubic
    interpolation. The factor is computed once in float64 with numpy (the kernel
    matrix is far too ill-conditioned for float32) and stored in the default float.

    **Arguments:**

    - `length_scale`: l > 0; larger is smoother (DeepONet's default 0.2).
    - `domain`: the interval `(a, b)` (default `(0, 1)`).
    - `grid`: number of grid nodes (default 1000).
    - `jitter`: added to the kernel diagonal before the Cholesky factorisation.
    """

    length_scale: float = eqx.field(static=True)
    bounds: tuple[float, float] = eqx.field(static=True)
    jitter: float = eqx.field(static=True)
    factor: Array

    def __init__(
        self,
        length_scale: float = 0.2,
        *,
        domain: tuple[float, float] = (0.0, 1.0),
        grid: int = 1000,
        jitter: float = 1e-10,
        dtype=None,
    ):
        where = "sciml.data.GRF"
        if not (isinstance(length_scale, int | float) and length_scale > 0):
            raise ValueError(f"{where}: `length_scale` must be > 0, got {length_scale!r}.")
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 4:
            raise ValueError(f"{where}: `grid` must be an int >= 4, got {grid!r}.")
        if not jitter >= 0:
            raise ValueError(f"{where}: `jitter` must be >= 0, got {jitter!r}.")
        a, b = _check_domain(domain, where)
        x = np.linspace(a, b, grid)
        kernel = np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / length_scale**2)
        try:
            chol = np.linalg.cholesky(kernel + jitter * np.eye(grid))
        except np.linalg.LinAlgError:
            raise ValueError(
                f"{where}: the kernel matrix with length_scale={length_scale}, grid={grid} "
                f"and jitter={jitter} is not numerically positive definite; increase "
                "`jitter` (e.g. 1e-8) or use a coarser `grid`."
            ) from None
        dtype = default_float() if dtype is None else dtype
        self.length_scale = float(length_scale)
        self.bounds = (a, b)
        self.jitter = float(jitter)
        self.factor = jnp.asarray(chol, dtype)

    @property
    def domain(self):
        return self.bounds

    @property
    def grid(self) -> Array:
        """The grid nodes the field is sampled on."""
        a, b = self.bounds
        return jnp.linspace(a, b, self.factor.shape[0], dtype=self.factor.dtype)

    @property
    def kinks(self) -> Array:
        """The grid nodes: the interpolated functions have derivative jumps there."""
        return self.grid

    def kernel(self, x1: Array, x2: Array) -> Array:
        """The covariance k(x1, x2) (broadcasting)."""
        return jnp.exp(-0.5 * (x1 - x2) ** 2 / self.length_scale**2)

    def sample(self, key: PRNGKeyArray, num: int) -> Array:
        """Values of `num` fields on `grid`, shape `(num, grid)`."""
        num = _check_num(num, "sciml.data.GRF.sample")
        z = jax.random.normal(key, (self.factor.shape[0], num), self.factor.dtype)
        return (self.factor @ z).T

    def evaluate(self, features: Array, x: Array) -> Array:
        return cubic_interpolate(features, self.bounds, x)

    def antiderivative(self, features: Array, x: Array) -> Array:
        return cubic_antiderivative(features, self.bounds, x)


class Chebyshev(AbstractFunctionSpace):
    """Chebyshev series u(x) = sum_i a_i T_i(2 (x - a) / (b - a) - 1), a_i ~ U[-M, M].

    DeepONet's `FiniteChebyshev(N=20, M=1)`: a second input space, e.g. to test a
    model trained on a GRF under distribution shift.

    **Arguments:**

    - `terms`: number of coefficients N (default 20).
    - `bound`: M > 0 (default 1).
    - `domain`: the interval `(a, b)`.
    """

    terms: int = eqx.field(static=True)
    bound: float = eqx.field(static=True)
    bounds: tuple[float, float] = eqx.field(static=True)

    def __init__(self, terms: int = 20, bound: float = 1.0, *, domain=(0.0, 1.0)):
        where = "sciml.data.Chebyshev"
        if isinstance(terms, bool) or not isinstance(terms, int) or terms < 1:
            raise ValueError(f"{where}: `terms` must be a positive int, got {terms!r}.")
        if not bound > 0:
            raise ValueError(f"{where}: `bound` must be > 0, got {bound!r}.")
        self.terms = terms
        self.bound = float(bound)
        self.bounds = _check_domain(domain, where)

    @property
    def domain(self):
        return self.bounds

    def sample(self, key: PRNGKeyArray, num: int) -> Array:
        num = _check_num(num, "sciml.data.Chebyshev.sample")
        return jax.random.uniform(
            key, (num, self.terms), default_float(), -self.bound, self.bound
        )

    def _z(self, x):
        a, b = self.bounds
        return 2 * (x - a) / (b - a) - 1

    def evaluate(self, features: Array, x: Array) -> Array:
        x = jnp.asarray(x, features.dtype)
        z = self._z(x)
        # T_{n+1} = 2 z T_n - T_{n-1}
        t_prev, t = jnp.ones_like(z), z
        out = features[0] * t_prev
        if self.terms > 1:
            out = out + features[1] * t
        for n in range(2, self.terms):
            t_prev, t = t, 2 * z * t - t_prev
            out = out + features[n] * t
        return out

    def antiderivative(self, features: Array, x: Array) -> Array:
        # int T_n dz = T_{n+1}/(2(n+1)) - T_{n-1}/(2(n-1)) (n >= 2); T_0 -> T_1; T_1 -> T_2/4.
        n = self.terms
        c = jnp.zeros((n + 2,), features.dtype)
        c = c.at[1].add(features[0])
        if n > 1:
            c = c.at[2].add(features[1] / 4)
            c = c.at[0].add(features[1] / 4)  # T_2/4 = (2z^2 - 1)/4: shift constant
        for k in range(2, n):
            c = c.at[k + 1].add(features[k] / (2 * (k + 1)))
            c = c.at[k - 1].add(-features[k] / (2 * (k - 1)))
        a, b = self.bounds
        x = jnp.asarray(x, features.dtype)
        helper = Chebyshev(n + 2, 1.0, domain=self.bounds)
        prim = helper.evaluate(c, x) - helper.evaluate(c, jnp.asarray(a, features.dtype))
        return prim * (b - a) / 2
