"""Discretisations of x' = A x + B u with step dt: small strategy objects.

`disc(A, B, dt) -> (Abar, Bbar)` so that x_k = Abar x_{k-1} + Bbar u_k;
`disc.many(A, B, dts, lower=...)` does the same for one step per feature.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg
from jaxtyping import Array


def lower_inverse(m: Array) -> Array:
    """The inverse of a lower-triangular matrix by matrix products only (no LAPACK call).

    Diagonal blocks are inverted in pairs, one level at a time:
    [[P, 0], [Q, R]]^-1 = [[P^-1, 0], [-R^-1 Q P^-1, R^-1]], log2(N) levels of
    batched products. The strictly upper part of `m` is never read.

    **Arguments:**

    - `m`: `(N, N)`, lower triangular with a nonzero diagonal.

    **Returns:**

    `(N, N)`, the inverse.
    """
    n = m.shape[-1]
    size = 1 << (n - 1).bit_length()
    if size != n:  # pad to a power of two with an identity block
        m = jnp.zeros((size, size), m.dtype).at[:n, :n].set(m).at[n:, n:].set(
            jnp.eye(size - n, dtype=m.dtype)
        )
    inv = (1 / jnp.diagonal(m))[:, None, None]  # the 1 x 1 diagonal blocks, inverted
    s = 1
    while s < size:
        pairs = size // (2 * s)
        # Block (2j + 1, 2j) of size s for every pair j: the diagonal of the pair grid,
        # taken by a strided slice (a gather compiled several times slower).
        grid = m.reshape(pairs, 2, s, pairs, 2, s)[:, 1, :, :, 0, :]
        q = grid.transpose(0, 2, 1, 3).reshape(pairs * pairs, s, s)[:: pairs + 1]
        p_inv, r_inv = inv[0::2], inv[1::2]
        lower = -r_inv @ q @ p_inv
        top = jnp.concatenate([p_inv, jnp.zeros_like(p_inv)], axis=2)
        inv = jnp.concatenate([top, jnp.concatenate([lower, r_inv], axis=2)], axis=1)
        s *= 2
    return inv[0, :n, :n]


class AbstractDiscretisation(eqx.Module):
    """Maps the continuous (A, B) and a step dt to the discrete (Abar, Bbar)."""

    @abc.abstractmethod
    def __call__(self, A: Array, B: Array, dt: Array) -> tuple[Array, Array]:
        """`A` (N, N), `B` (N,), scalar `dt` -> `Abar` (N, N), `Bbar` (N,)."""

    def many(self, A: Array, B: Array, dts: Array, *, lower: bool = False):
        """`(Abar (H, N, N), Bbar (H, N))` for the steps `dts` (H,), one per feature.

        `lower=True` promises that `A` is lower triangular, which a discretisation may
        use to avoid a general solve (`GBT` does). Without it each step runs
        `__call__`: vmapped, except on the CPU, where one feature at a time (`lax.map`):
        on 2 cores, jaxlib 0.10's batched LAPACK LU deadlocked when two ran at once, as
        the layers of a `DeepLSSL` do in its gradient (every thread idle;
        `tests/test_operators.py::test_deep_lssl_gradient_returns`).
        """
        del lower
        one = lambda d: self(A, B, d)  # noqa: E731
        if jax.default_backend() != "cpu":
            return jax.vmap(one)(dts)
        return jax.lax.map(one, dts)


class GBT(AbstractDiscretisation):
    """Generalized bilinear transform (LSSL, Gu et al. 2021, eq. 4).

    Abar = (I - alpha dt A)^-1 (I + (1 - alpha) dt A), Bbar = dt (I - alpha dt A)^-1 B.
    alpha = 0 is forward Euler, 1/2 bilinear (Tustin, the default), 1 backward Euler.
    With a lower-triangular A (HiPPO LegS and LagT; `many(..., lower=True)`) the
    inverse comes from `lower_inverse`, matrix products that batch over features on
    every backend, instead of an LU factorisation per step and feature.
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

    def many(self, A, B, dts, *, lower=False):
        if not lower:
            return super().many(A, B, dts)
        return jax.vmap(lambda dt: self._lower(A, B, dt))(dts)

    def _lower(self, A, B, dt):
        eye = jnp.eye(A.shape[0], dtype=A.dtype)
        if self.alpha == 0:
            return eye + dt * A, dt * B
        x = lower_inverse(eye - self.alpha * dt * A)
        if self.alpha >= 0.5:
            # X (I + (1 - alpha) dt A) = (X - (1 - alpha) I) / alpha: no product with X,
            # whose rounding the product would amplify (up to 2e-4 against 1e-5 at N = 256,
            # dt = 10, float32). For small alpha the division would amplify it instead.
            abar = (x - (1 - self.alpha) * eye) / self.alpha
        else:
            abar = x @ (eye + (1 - self.alpha) * dt * A)
        return abar, dt * (x @ B)


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
