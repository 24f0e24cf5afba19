"""Reference solution of the viscous Burgers benchmark by the Cole-Hopf transform.

u_t + u u_x = nu u_xx on x in [-1, 1], u(x, 0) = -sin(pi x), u(+-1, t) = 0 (the PINN
benchmark of Raissi et al. 2019 and DeepXDE, with nu = 0.01 / pi).

Cole-Hopf: u = -2 nu phi_x / phi with phi the heat-equation solution started from
f(y) = exp(-(cos(pi y) - 1) / (2 pi nu)), which gives

    u(x, t) = - int sin(pi (x - eta)) f(x - eta) G(eta, t) d eta / int f(x - eta) G(eta, t) d eta,

G the heat kernel of variance 2 nu t. (The initial data is odd and 2-periodic, so the
whole-line solution keeps u(+-1, t) = 0.) With eta = sqrt(4 nu t) z the integrals are
over exp(-z^2 - cos(pi (x - sqrt(4 nu t) z)) / (2 pi nu)). For small nu the second
factor spans e^(1 / (pi nu)) = e^100, so the integrand peaks far out in z (where
cos = -1): Gauss-Hermite quadrature centred at z = 0 misses those peaks. We use the
trapezoid rule on a wide uniform z-grid instead, which is spectrally accurate for
this smooth, rapidly decaying integrand, with the exponent shifted by its maximum
(log-sum-exp) so nothing overflows.
"""

from __future__ import annotations

import math

import numpy as np


def burgers_cole_hopf(
    x, t, nu: float = 0.01 / math.pi, *, points: int = 1601, chunk: int = 4096
) -> np.ndarray:
    """Viscous Burgers solution from `u(x, 0) = -sin(pi x)` at points `(x, t)`.

    **Arguments:**

    - `x`, `t`: array-likes, broadcast together; `t >= 0`.
    - `nu`: viscosity (> 0), default `0.01 / pi`.
    - `points`: nodes of the trapezoid rule in z (default 1601, spacing ~0.02 on a
      z-range chosen from `nu`); the result is converged to ~1e-12 at the default.
    - `chunk`: how many (x, t) points are integrated at once (memory bound).

    **Returns:**

    `u(x, t)` as a float64 numpy array of the broadcast shape.
    """
    if not nu > 0:
        raise ValueError(f"burgers_cole_hopf: `nu` must be > 0, got {nu}.")
    x, t = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(t, np.float64))
    if np.any(t < 0) or not np.all(np.isfinite(t)) or not np.all(np.isfinite(x)):
        raise ValueError("burgers_cole_hopf: need finite x and t >= 0.")
    shape = x.shape
    xs, ts = x.ravel(), t.ravel()
    out = np.empty_like(xs)
    # The exponent -z^2 - cos(.)/(2 pi nu) must fall far below its maximum (>= -c) at the
    # ends: -Z^2 + c <= -c - 40 with c = 1/(2 pi nu).
    c = 1.0 / (2 * math.pi * nu)
    zmax = math.sqrt(2 * c + 40.0)
    z = np.linspace(-zmax, zmax, points)
    for start in range(0, xs.size, chunk):
        xb = xs[start : start + chunk, None]
        tb = ts[start : start + chunk, None]
        s = np.sqrt(4 * nu * tb)
        y = xb - s * z[None, :]
        expo = -z[None, :] ** 2 - c * np.cos(math.pi * y)
        expo -= expo.max(axis=1, keepdims=True)
        w = np.exp(expo)
        u = -np.sum(np.sin(math.pi * y) * w, axis=1) / np.sum(w, axis=1)
        out[start : start + chunk] = u
    out = np.where(ts == 0, -np.sin(math.pi * xs), out)
    return out.reshape(shape)


def burgers_reference(
    nx: int = 256, nt: int = 101, t1: float = 1.0, nu: float = 0.01 / math.pi
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Burgers benchmark on a grid: `(x (nx,), t (nt,), u (nt, nx))`.

    `x` is equispaced on [-1, 1], `t` on [0, t1]; `u[i, j] = u(x[j], t[i])`.
    """
    x = np.linspace(-1.0, 1.0, nx)
    t = np.linspace(0.0, t1, nt)
    u = burgers_cole_hopf(x[None, :], t[:, None], nu)
    return x, t, u
