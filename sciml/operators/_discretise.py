"""Discretisations of x' = A x + B u with step dt: small strategy objects.

`disc(A, B, dt) -> (Abar, Bbar)` so that x_k = Abar x_{k-1} + Bbar u_k.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg
from jaxtyping import Array


class AbstractDiscretisation(eqx.Module):
    """Maps the continuous (A, B) and a step dt to the discrete (Abar, Bbar)."""

    @abc.abstractmethod
    def __call__(self, A: Array, B: Array, dt: Array) -> tuple[Array, Array]:
        """`A` (N, N), `B` (N,), scalar `dt` -> `Abar` (N, N), `Bbar` (N,)."""


class GBT(AbstractDiscretisation):
    """Generalized bilinear transform (LSSL, Gu et al. 2021, eq. 4).

    Abar = (I - alpha dt A)^-1 (I + (1 - alpha) dt A), Bbar = dt (I - alpha dt A)^-1 B.
    alpha = 0 is forward Euler, 1/2 bilinear (Tustin, the default), 1 backward Euler.
    """

    alpha: float = eqx.field(static=True, default=0.5)

    def __check_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"sciml.operators.GBT: `alpha` must be in [0, 1], got {self.alpha}.")

    def __call__(self, A, B, dt):
        eye = jnp.eye(A.shape[0], dtype=A.dtype)
        lhs = eye - self.alpha * dt * A
        rhs = jnp.concatenate([eye + (1 - self.alpha) * dt * A, dt * B[:, None]], axis=1)
        sol = jnp.linalg.solve(lhs, rhs)
        return sol[:, :-1], sol[:, -1]


class ZOH(AbstractDiscretisation):
    """Zero-order hold: Abar = exp(dt A), Bbar = A^-1 (exp(dt A) - I) B.

    Computed as one matrix exponential of the block matrix [[A, B], [0, 0]] dt, so a
    singular A (e.g. A = 0, where Bbar = dt B) needs no inverse.
    """

    def __call__(self, A, B, dt):
        n = A.shape[0]
        top = jnp.concatenate([A, B[:, None]], axis=1)
        block = jnp.concatenate([top, jnp.zeros((1, n + 1), A.dtype)], axis=0)
        e = jax.scipy.linalg.expm(dt * block)
        return e[:n, :n], e[:n, n]
