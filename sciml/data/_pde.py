"""The FNO paper's Burgers and Darcy data (Li et al., ICLR 2021), with reference solvers.

- `burgers_periodic`: u_t + (u^2 / 2)_x = nu u_xx on the periodic unit interval,
  nu = 0.1, u_0 ~ N(0, 625 (-Delta + 25 I)^-2); the operator u_0 -> u(., 1). Solved
  pseudo-spectrally (ETDRK4, Kassam and Trefethen 2005, the scheme of chebfun's
  `spin` that made the paper's data) on a fine grid, then subsampled.
- `darcy_flow`: -div(a grad u) = f on the unit square, u = 0 on its boundary, f = 1,
  a = 12 where a GRF N(0, (-Delta + 9 I)^-2) (Neumann Laplacian, mean mode removed) is
  >= 0 and 3 where it is < 0; the operator a -> u. Solved by 5-point finite differences
  on the nodes, then subsampled.

Both draw their random inputs from an explicit key. The Burgers solve runs in JAX in the
default float (enable x64 for reference-quality data); the Darcy solve is a sparse
direct solve in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from jaxtyping import Array, PRNGKeyArray

from ._layouts import TripleCartesianProd
from ._spaces import _check_num, default_float


def _check_int(value, name, where, low):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{where}: `{name}` must be an int >= {low}, got {value!r}.")
    return int(value)


def _check_stride(grid, stride, where, periodic):
    stride = _check_int(stride, "stride", where, 1)
    # A periodic grid has no end node, so any divisor works; a node grid must keep both ends.
    size = grid if periodic else grid - 1
    if size % stride:
        what = "`grid`" if periodic else "`grid - 1`"
        raise ValueError(
            f"{where}: `stride` {stride} does not divide {what} = {size}; pick a stride "
            f"that divides it so the coarse grid is a subset of the fine one."
        )
    return stride


# ----------------------------------------------------------------------------------
# Burgers


def periodic_grf(
    key: PRNGKeyArray,
    num: int,
    grid: int,
    *,
    sigma: float = 25.0,
    tau: float = 5.0,
    gamma: float = 2.0,
) -> Array:
    """Samples of N(0, sigma^2 (-Delta + tau^2 I)^-gamma) on the periodic unit interval.

    The Karhunen-Loeve sum of the FNO paper's `GRF1.m`: u(x) = sum_k lambda_k (xi_k cos
    2 pi k (x - 1/2) + eta_k sin 2 pi k (x - 1/2)), k = 1, ..., grid / 2, lambda_k =
    sqrt(2) sigma ((2 pi k)^2 + tau^2)^(-gamma / 2), xi, eta standard normal (the mean
    mode is zero). Evaluated by an inverse real FFT.

    **Arguments:**

    - `key`: PRNG key.
    - `num`: number of samples.
    - `grid`: even number of points x_j = j / grid.
    - `sigma`, `tau`, `gamma`: the covariance (defaults: the paper's Burgers data).

    **Returns:**

    `(num, grid)` in the default float.
    """
    where = "sciml.data.periodic_grf"
    num = _check_num(num, where)
    grid = _check_int(grid, "grid", where, 2)
    if grid % 2:
        raise ValueError(f"{where}: `grid` must be even, got {grid}.")
    dtype = default_float()
    k = np.arange(grid // 2 + 1)
    lam = np.sqrt(2) * sigma * ((2 * np.pi * k) ** 2 + tau**2) ** (-gamma / 2)
    # irfft(c)_j = (1/n) [c_0 + 2 Re sum_{0<k<n/2} c_k e^{2 pi i k j / n} + c_{n/2} (-1)^j],
    # and the shift by 1/2 is the factor (-1)^k.
    weight = grid / 2 * lam * (-1.0) ** k
    weight[0] = 0.0
    weight[-1] *= 2.0
    xi, eta = jax.random.normal(key, (2, num, grid // 2 + 1), dtype)
    eta = eta.at[:, -1].set(0.0)  # sin vanishes at the Nyquist frequency on the grid
    coeffs = jnp.asarray(weight, dtype)[None] * jax.lax.complex(xi, -eta)
    return jnp.fft.irfft(coeffs, n=grid, axis=-1)


def _etdrk4_coefficients(lin, h, points=32):
    """E, E/2, Q, f1, f2, f3 of ETDRK4 for the diagonal linear part `lin`, by the contour
    integral of Kassam and Trefethen (their eq. 2.5 is cancellation-prone near 0)."""
    z = h * lin[:, None] + np.exp(1j * np.pi * (np.arange(1, points + 1) - 0.5) / points)
    ez = np.exp(z)
    mean = lambda v: h * np.real(np.mean(v, axis=1))  # noqa: E731
    q = mean((np.exp(z / 2) - 1) / z)
    f1 = mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3)
    f2 = mean((2 + z + ez * (z - 2)) / z**3)
    f3 = mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3)
    return np.exp(h * lin), np.exp(h * lin / 2), q, f1, f2, f3


def solve_burgers_periodic(
    u0: Array, *, nu: float = 0.1, t1: float = 1.0, steps: int = 200
) -> Array:
    """u(., t1) of u_t + (u^2 / 2)_x = nu u_xx on the periodic unit interval.

    Fourier pseudo-spectral in space (the nonlinear term dealiased by the 2/3 rule),
    ETDRK4 in time with `steps` equal steps: the stiff diffusion is integrated exactly,
    the advection to fourth order.

    **Arguments:**

    - `u0`: the initial values at x_j = j / n, shape `(n,)` with n even.
    - `nu`: viscosity (default 0.1).
    - `t1`: final time (default 1).
    - `steps`: time steps (default 200: on the paper's data, nu = 0.1, 1024 points, the
      result is within 3e-9 of a 1600-step solve, for values of order 0.1-1).

    **Returns:**

    `(n,)`, u at time t1 on the same points. One function in; `jax.vmap` over many.
    """
    where = "sciml.data.solve_burgers_periodic"
    u0 = jnp.asarray(u0)
    if u0.ndim != 1 or u0.shape[0] < 4 or u0.shape[0] % 2:
        raise ValueError(
            f"{where}: `u0` must be one function on an even number (>= 4) of periodic grid "
            f"points, shape (n,); got shape {u0.shape}. vmap over functions outside."
        )
    if not (nu > 0 and t1 > 0):
        raise ValueError(f"{where}: need `nu` > 0 and `t1` > 0, got nu={nu}, t1={t1}.")
    steps = _check_int(steps, "steps", where, 1)
    n = u0.shape[0]
    wave = 2 * np.pi * np.arange(n // 2 + 1)
    coeffs = _etdrk4_coefficients(-nu * wave**2, t1 / steps)
    e, e2, q, f1, f2, f3 = (jnp.asarray(c, u0.dtype) for c in coeffs)
    # -(u^2 / 2)_x in Fourier space, zero above 2/3 of the top mode; the Nyquist mode's
    # derivative is zero.
    keep = (np.arange(n // 2 + 1) < n / 3).astype(float)
    keep[-1] = 0.0
    ik = jnp.asarray(-0.5j * wave * keep)

    def nonlinear(vh):
        return ik * jnp.fft.rfft(jnp.fft.irfft(vh, n=n) ** 2)

    def step(vh, _):
        nv = nonlinear(vh)
        a = e2 * vh + q * nv
        na = nonlinear(a)
        b = e2 * vh + q * na
        nb = nonlinear(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = nonlinear(c)
        return e * vh + f1 * nv + 2 * f2 * (na + nb) + f3 * nc, None

    vh, _ = jax.lax.scan(step, jnp.fft.rfft(u0), None, length=steps)
    return jnp.fft.irfft(vh, n=n)


def burgers_periodic(
    *,
    num: int,
    key: PRNGKeyArray,
    grid: int = 1024,
    stride: int = 4,
    nu: float = 0.1,
    t1: float = 1.0,
    steps: int = 200,
    sigma: float = 25.0,
    tau: float = 5.0,
    gamma: float = 2.0,
) -> TripleCartesianProd:
    """The FNO paper's Burgers data: pairs (u_0, u(., t1)) on the periodic unit interval.

    u_0 is drawn by `periodic_grf` on `grid` points and solved there by
    `solve_burgers_periodic`; both are returned on every `stride`-th point, so the
    inputs carry the fine field's aliased high modes as the paper's do (it solves on
    8192 points and subsamples to 256-8192). The 1024-point default drops the modes
    above 512, whose standard deviations are below 4e-6 and which the viscosity
    removes long before t = 1.

    **Arguments:**

    - `num`: number of functions.
    - `key`: PRNG key.
    - `grid`: points of the solve (even; default 1024).
    - `stride`: subsampling (default 4: 256 points, the paper's s = 256); must divide
      `grid`.
    - `nu`, `t1`, `steps`: as `solve_burgers_periodic`.
    - `sigma`, `tau`, `gamma`: as `periodic_grf` (defaults: the paper's).

    **Returns:**

    A `TripleCartesianProd`: `branch` u_0 `(num, grid / stride)`, `trunk` the points
    x_j `(grid / stride, 1)`, `y` u(x_j, t1) `(num, grid / stride)`, DeepXDE's aligned
    layout (`sciml.data.save_npz` writes it).
    """
    where = "sciml.data.burgers_periodic"
    grid = _check_int(grid, "grid", where, 4)
    stride = _check_stride(grid, stride, where, periodic=True)
    if (grid // stride) % 2:
        raise ValueError(
            f"{where}: `grid / stride` = {grid // stride} is odd; use an even number of "
            "output points."
        )
    u0 = periodic_grf(key, num, grid, sigma=sigma, tau=tau, gamma=gamma)
    solve = jax.jit(
        jax.vmap(lambda u: solve_burgers_periodic(u, nu=nu, t1=t1, steps=steps))
    )
    u1 = solve(u0)
    x = np.arange(grid)[::stride] / grid
    return TripleCartesianProd(
        np.asarray(u0)[:, ::stride], x[:, None].astype(u0.dtype), np.asarray(u1)[:, ::stride]
    )


# ----------------------------------------------------------------------------------
# Darcy


def neumann_grf(
    key: PRNGKeyArray, num: int, grid: int, *, alpha: float = 2.0, tau: float = 3.0
) -> Array:
    """Samples of N(0, (-Delta + tau^2 I)^-alpha) with the Neumann Laplacian on the unit
    square, mean mode removed, at the nodes of a `grid` x `grid` mesh including the edges.

    The Karhunen-Loeve sum of the FNO paper's `GRF.m`: coefficients tau^(alpha - 1)
    (pi^2 (k1^2 + k2^2) + tau^2)^(-alpha / 2) on the orthonormal cosines phi_k(x) =
    sqrt(2) cos(pi k x) (phi_0 = 1), k1, k2 < `grid`, evaluated exactly at the nodes.

    **Returns:**

    `(num, grid, grid)` in the default float.
    """
    where = "sciml.data.neumann_grf"
    num = _check_num(num, where)
    grid = _check_int(grid, "grid", where, 2)
    dtype = default_float()
    k = np.arange(grid)
    coef = tau ** (alpha - 1) * (np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2) ** (
        -alpha / 2
    )
    coef[0, 0] = 0.0
    x = np.linspace(0.0, 1.0, grid)
    basis = np.where(k[None, :] == 0, 1.0, np.sqrt(2) * np.cos(np.pi * np.outer(x, k)))
    xi = jax.random.normal(key, (num, grid, grid), dtype)
    basis, coef = jnp.asarray(basis, dtype), jnp.asarray(coef, dtype)
    return jnp.einsum("ik,nkl,jl->nij", basis, coef[None] * xi, basis)


def solve_darcy(a, f=1.0) -> np.ndarray:
    """u with -div(a grad u) = f on the unit square, u = 0 on the boundary.

    Five-point finite differences on the nodes of a uniform s x s mesh, the coefficient
    on each cell face the mean of its two nodes (second order for smooth a), one sparse
    direct solve in float64.

    **Arguments:**

    - `a`: the coefficient at the nodes, shape `(s, s)`, s >= 3, every value > 0;
      `a[i, j]` at (x_i, y_j) = (i, j) / (s - 1).
    - `f`: the right-hand side, a number or an `(s, s)` array at the nodes (default 1).

    **Returns:**

    `(s, s)` float64 numpy array, zero on the boundary.
    """
    where = "sciml.data.solve_darcy"
    a = np.asarray(a, np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise ValueError(
            f"{where}: `a` must be the coefficient on an s x s node grid (s >= 3), got "
            f"shape {a.shape}."
        )
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(
            f"{where}: `a` must be finite and > 0 everywhere; its minimum is "
            f"{np.nanmin(a)!r} and it has {int(np.sum(~np.isfinite(a)))} non-finite values."
        )
    s = a.shape[0]
    f = np.broadcast_to(np.asarray(f, np.float64), a.shape) if np.ndim(f) == 0 else f
    f = np.asarray(f, np.float64)
    if f.shape != a.shape:
        raise ValueError(f"{where}: `f` must be a number or shape {a.shape}, got {f.shape}.")
    m = s - 2
    h2 = 1.0 / (s - 1) ** 2
    # Face coefficients between node (i, j) and its four neighbours, interior nodes only.
    centre = a[1:-1, 1:-1]
    east, west = (centre + a[2:, 1:-1]) / 2, (centre + a[:-2, 1:-1]) / 2
    north, south = (centre + a[1:-1, 2:]) / 2, (centre + a[1:-1, :-2]) / 2
    index = np.arange(m * m).reshape(m, m)
    rows, cols, vals = [index.ravel()], [index.ravel()], [(east + west + north + south).ravel()]
    for coef, di, dj in [(east, 1, 0), (west, -1, 0), (north, 0, 1), (south, 0, -1)]:
        # Neighbours on the boundary carry u = 0: leave their entries out.
        ii, jj = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
        inside = (ii + di >= 0) & (ii + di < m) & (jj + dj >= 0) & (jj + dj < m)
        rows.append(index[inside])
        cols.append(index[ii[inside] + di, jj[inside] + dj])
        vals.append(-coef[inside])
    matrix = scipy.sparse.csc_matrix(
        (np.concatenate(vals) / h2, (np.concatenate(rows), np.concatenate(cols))),
        shape=(m * m, m * m),
    )
    u = np.zeros((s, s))
    u[1:-1, 1:-1] = scipy.sparse.linalg.spsolve(matrix, f[1:-1, 1:-1].ravel()).reshape(m, m)
    return u


def darcy_flow(
    *,
    num: int,
    key: PRNGKeyArray,
    grid: int = 169,
    stride: int = 2,
    high: float = 12.0,
    low: float = 3.0,
    alpha: float = 2.0,
    tau: float = 3.0,
    f: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The FNO paper's Darcy data: pairs (a, u) on the unit square.

    a is `high` where a `neumann_grf` sample is >= 0 and `low` elsewhere (the paper's
    12 and 3; its `demo.m` uses 12 and 4); u solves -div(a grad u) = f, u = 0 on the
    boundary (`solve_darcy`) on `grid` x `grid` nodes; both are returned on every
    `stride`-th node. The paper solves on 421 nodes and subsamples to s = (421 - 1) / r
    + 1; the default solves on 169 and returns s = 85, the paper's smallest.

    **Arguments:**

    - `num`: number of functions.
    - `key`: PRNG key.
    - `grid`: nodes per side of the solve (default 169).
    - `stride`: subsampling; must divide `grid - 1` (default 2).
    - `high`, `low`: the two coefficient values.
    - `alpha`, `tau`: the GRF (`neumann_grf`).
    - `f`: the constant source (default 1).

    **Returns:**

    `(a, u)`, each `(num, s, s)` with s = (grid - 1) / stride + 1, in the default float;
    `[n, i, j]` is at (x_i, y_j) = (i, j) / (s - 1).
    """
    where = "sciml.data.darcy_flow"
    grid = _check_int(grid, "grid", where, 3)
    stride = _check_stride(grid, stride, where, periodic=False)
    if not (high > 0 and low > 0):
        raise ValueError(f"{where}: `high` and `low` must be > 0, got {high}, {low}.")
    field = np.asarray(neumann_grf(key, num, grid, alpha=alpha, tau=tau))
    a = np.where(field >= 0, high, low)
    u = np.stack([solve_darcy(ai, f) for ai in a])
    dtype = default_float()
    sub = (slice(None), slice(None, None, stride), slice(None, None, stride))
    return a[sub].astype(dtype), u[sub].astype(dtype)

