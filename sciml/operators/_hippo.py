"""HiPPO matrices (Gu et al. 2020) that initialise the LSSL's state matrix.

Each measure is a small object whose `matrices(N)` returns the pair (A, B) of the
continuous-time system x' = A x + B u from its closed form, as in the LSSL/S4
reference code (`src/models/hippo/hippo.py::transition`, state-spaces/s4).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array


def _default_float():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


class AbstractHiPPO(eqx.Module):
    """A HiPPO measure: `matrices(N)` gives (A (N, N), B (N,)) in closed form."""

    @abc.abstractmethod
    def _numpy(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(A, B) in float64 numpy."""

    def matrices(self, n: int, *, dtype=None) -> tuple[Array, Array]:
        """The pair (A, B), shapes (N, N) and (N,)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(
                f"{type(self).__name__}.matrices: N must be a positive int, got {n!r}."
            )
        a, b = self._numpy(int(n))
        dtype = _default_float() if dtype is None else dtype
        return jnp.asarray(a, dtype), jnp.asarray(b, dtype)


class LegS(AbstractHiPPO):
    """Scaled Legendre measure.

    A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 for n < k;
    B_n = sqrt(2n+1). A + P P^T with P_n = sqrt(n + 1/2) is normal (`low_rank`).
    """

    def _numpy(self, n):
        q = np.sqrt(2 * np.arange(n) + 1.0)
        a = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(n) + 1.0)
        return a, q.copy()

    def low_rank(self, n: int, *, dtype=None) -> Array:
        """P (N,) with A + P P^T normal (skew-symmetric plus -I/2)."""
        dtype = _default_float() if dtype is None else dtype
        return jnp.asarray(np.sqrt(np.arange(n) + 0.5), dtype)


class LegT(AbstractHiPPO):
    """Translated Legendre measure (sliding window), the LSSL v1 form (not halved).

    A_nk = -sqrt(2n+1) sqrt(2k+1) for n >= k and -sqrt(2n+1) sqrt(2k+1) (-1)^(n-k)
    for n < k; B_n = sqrt(2n+1).
    """

    def _numpy(self, n):
        q = np.sqrt(2 * np.arange(n) + 1.0)
        i, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        sign = np.where(i >= k, 1.0, (-1.0) ** (i - k))
        return -np.outer(q, q) * sign, q.copy()


class LagT(AbstractHiPPO):
    """Translated Laguerre measure: A = I/2 - tril(ones), i.e. A_nk = -1 (n > k),
    -1/2 (n = k), 0 (n < k); B_n = beta.

    **Arguments:**

    - `beta`: the input scale (default 1).
    """

    beta: float = eqx.field(static=True, default=1.0)

    def _numpy(self, n):
        a = 0.5 * np.eye(n) - np.tril(np.ones((n, n)))
        return a, self.beta * np.ones(n)


_NAMES = {"legs": LegS, "legt": LegT, "lagt": LagT}


def hippo(kind: AbstractHiPPO | str, n: int, *, dtype=None) -> tuple[Array, Array]:
    """HiPPO matrices (A, B) of shapes (N, N) and (N,).

    **Arguments:**

    - `kind`: a measure object (`LegS()`, `LegT()`, `LagT()`), or one of the names
      `"legs"`, `"legt"`, `"lagt"` (the DESIGN contract; everything else in
      `sciml.operators` takes the objects).
    - `n`: the state size N.
    - `dtype`: float type (default float32, float64 with x64 enabled).

    **Returns:**

    The pair `(A, B)`.
    """
    if isinstance(kind, str):
        try:
            kind = _NAMES[kind.lower()]()
        except KeyError:
            raise ValueError(
                f"sciml.operators.hippo: unknown kind {kind!r}; use one of "
                f"{sorted(_NAMES)} or an object such as sciml.operators.LegS()."
            ) from None
    if not isinstance(kind, AbstractHiPPO):
        raise TypeError(
            f"sciml.operators.hippo: `kind` must be LegS(), LegT(), LagT() or a name, got {kind!r}."
        )
    return kind.matrices(n, dtype=dtype)
