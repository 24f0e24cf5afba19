"""Dynamic mode decomposition: exact DMD (Tu et al. 2014) of a sequence of snapshots.

Runs in float64/complex128 NumPy on the host: it is called between chunks of compiled
training steps on a window of a few dozen small snapshots, where a device round trip
would cost more than the linear algebra.
"""

from __future__ import annotations

import equinox as eqx
import numpy as np


def _powers(mu: np.ndarray, k: np.ndarray) -> np.ndarray:
    """`mu[None, :] ** k[:, None]`, with 0**0 = 1."""
    return np.power(mu[None, :], k[:, None].astype(np.float64))


def _geometric(mu: np.ndarray, k: np.ndarray) -> np.ndarray:
    """`sum_{j<k} mu**j` for every `k` (rows) and `mu` (columns); `k` where mu == 1."""
    k = k.astype(np.float64)[:, None]
    mu = mu[None, :]
    near_one = np.abs(1 - mu) < 1e-12
    safe = np.where(near_one, 0.5, mu)  # any value away from 1; replaced below
    out = (1 - safe**k) / (1 - safe)
    return np.where(near_one, k + 0 * mu, out)


class DMD(eqx.Module):
    """Result of `sciml.koopman.dmd`: the spectrum and modes of a linear model of the
    snapshots.

    With `affine=False` the model is `x_j ≈ Σ_i modes[:, i] * amplitudes[i] *
    eigenvalues[i]**j` for the snapshots `x_j` themselves. With `affine=True` the
    same expansion models the *differences* `d_j = x_{j+1} - x_j`, i.e. the affine map
    `x_{j+1} = A x_j + c`, and the snapshots are `x_j = x_0 + Σ_{l<j} d_l`.

    **Attributes:**

    - `eigenvalues`: complex `(rank,)`, sorted by modulus, largest first (a conjugate
      pair: positive imaginary part first).
    - `modes`: complex `(dim, rank)`, the exact DMD modes, each of unit norm. For a
      zero eigenvalue the projected mode `U w` is used (Tu et al. 2014, §3).
    - `amplitudes`: complex `(rank,)`, fitted by least squares to *all* snapshots of
      the window (the "optimal amplitudes" of Jovanović et al. 2014), referred to the
      first snapshot (first difference if affine).
    - `singular_values`: every singular value of the data matrix `X` (before
      truncation), for choosing a rank.
    - `rank`: number of singular values kept.
    - `affine`: whether the differences were decomposed.
    - `origin`: the first snapshot (`(dim,)`), the starting point of `predict` when
      affine; `None` otherwise.
    - `n_snapshots`: number of snapshots decomposed.
    """

    eigenvalues: np.ndarray
    modes: np.ndarray
    amplitudes: np.ndarray
    singular_values: np.ndarray
    origin: np.ndarray | None
    rank: int = eqx.field(static=True)
    affine: bool = eqx.field(static=True)
    n_snapshots: int = eqx.field(static=True)

    def predict(self, k) -> np.ndarray:
        """The model's snapshot(s) at index `k` (0 = first snapshot of the window;
        `k` beyond the window extrapolates).

        **Arguments:**

        - `k`: an integer or a 1-D array of integers (non-negative).

        **Returns:**

        Real array `(dim,)` for a scalar `k`, `(len(k), dim)` for an array.
        """
        scalar = np.ndim(k) == 0
        ks = np.atleast_1d(np.asarray(k))
        if not np.issubdtype(ks.dtype, np.integer) or ks.ndim != 1 or np.any(ks < 0):
            raise ValueError(
                f"DMD.predict: `k` must be a non-negative integer or 1-D array of them, "
                f"got {k!r}."
            )
        if self.affine:
            weights = _geometric(self.eigenvalues, ks) * self.amplitudes[None, :]
            out = self.origin[None, :] + (weights @ self.modes.T).real
        else:
            weights = _powers(self.eigenvalues, ks) * self.amplitudes[None, :]
            out = (weights @ self.modes.T).real
        return out[0] if scalar else out

    @property
    def fixed_point(self) -> np.ndarray:
        """The affine model's fixed point `x* = x_0 + Σ_i φ_i b_i / (1 - λ_i)`, the limit
        of `predict(k)` as `k → ∞` when every `|λ_i| < 1` (affine DMD only)."""
        if not self.affine:
            raise ValueError(
                "DMD.fixed_point needs an affine decomposition: call "
                "sciml.koopman.dmd(snapshots, affine=True)."
            )
        if self.rank == 0:
            return np.array(self.origin, copy=True)
        return self.origin + (self.modes @ (self.amplitudes / (1 - self.eigenvalues))).real


def _as_snapshots(snapshots) -> np.ndarray:
    try:
        x = np.asarray(snapshots)
    except Exception as e:
        raise TypeError(
            f"sciml.koopman.dmd: `snapshots` must be an array of shape (n_snapshots, dim), "
            f"got {type(snapshots).__name__}: {e}"
        ) from e
    if x.ndim != 2:
        raise ValueError(
            "sciml.koopman.dmd: `snapshots` must have shape (n_snapshots, dim), one row "
            f"per snapshot; got shape {x.shape}. Flatten each state (e.g. with "
            "jax.flatten_util.ravel_pytree) and stack them."
        )
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(
            f"sciml.koopman.dmd: `snapshots` must be real numbers, got dtype {x.dtype}."
        )
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("sciml.koopman.dmd: `snapshots` contains NaN or infinity.")
    return x


def dmd(snapshots, *, rank: int | None = None, tol: float | None = None,
        affine: bool = False) -> DMD:
    """Exact dynamic mode decomposition of a sequence of snapshots.

    The best-fit linear map `Y ≈ A X` between consecutive snapshots (`X` = all but
    the last, `Y` = all but the first) is found in the span of the leading left
    singular vectors of `X = U S V*`: `Ã = U* Y V S⁻¹`, `Ã W = W Λ`. Its eigenvalues
    estimate the Koopman eigenvalues, and the exact modes are `Φ = Y V S⁻¹ W Λ⁻¹`
    (Tu, Rowley, Luchtenburg, Brunton & Kutz 2014, "On dynamic mode decomposition:
    theory and applications"), which are eigenvectors of `A = Y X⁺` whenever the
    data come from a linear map.

    **What the eigenvalues mean** (per snapshot interval):

    - `|λ| < 1`: a mode that decays, e.g. weights contracting towards a minimum;
      `-log|λ|` is its rate. Complex `λ` decay while rotating (momentum).
    - `|λ| = 1`, `λ = 1`: a constant. In plain DMD of snapshots that approach a fixed
      point `x*`, `x*` itself appears as the eigenvalue 1: plain DMD of a converging
      sequence always shows 1, plus the decaying eigenvalues of the linearised map.
    - `|λ| > 1`: growth (a diverging run).

    `affine=True` decomposes the differences `x_{j+1} - x_j` instead. For an affine
    map `x_{j+1} = A x_j + c` (any map linearised about its fixed point) they obey
    `d_{j+1} = A d_j` exactly, so the result has the eigenvalues of `A` alone, without
    the 1 of the fixed point; the plain spectrum is this one plus `{1}`. An eigenvalue
    at 1 in the *affine* spectrum means a constant velocity: the snapshots are still
    moving (drifting), not converged. `DMD.fixed_point` is the predicted limit.
    (Subtracting the window mean instead would force the eigenvalues onto the unit
    circle, Chen, Tu & Rowley 2012; differencing does not.)

    **Arguments:**

    - `snapshots`: array `(n_snapshots, dim)`, one state per row, equally spaced in
      time (NumPy or JAX; computed in float64). At least 2 snapshots (3 if affine).
    - `rank`: keep at most this many singular values. Default: every singular value
      above `tol` times the largest.
    - `tol`: relative singular-value cut-off (default `max(n, dim) * eps`, the
      numerical rank). Raise it (e.g. `1e-6`) for noisy data, so that noise does not
      contribute spurious modes.
    - `affine`: decompose the differences (see above).

    **Returns:**

    A `sciml.koopman.DMD` with `.eigenvalues`, `.modes`, `.amplitudes`, `.rank` and
    `.predict(k)`. Snapshots that do not change at all give rank 0 (no eigenvalues).
    """
    x = _as_snapshots(snapshots)
    if isinstance(affine, np.bool_):
        affine = bool(affine)
    if not isinstance(affine, bool):
        raise TypeError(f"sciml.koopman.dmd: `affine` must be True or False, got {affine!r}.")
    need = 3 if affine else 2
    if x.shape[0] < need:
        raise ValueError(
            f"sciml.koopman.dmd: needs at least {need} snapshots "
            f"({'affine: two differences' if affine else 'one pair'}), got {x.shape[0]}."
        )
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or rank < 1:
            raise ValueError(
                f"sciml.koopman.dmd: `rank` must be a positive integer or None, got {rank!r}."
            )
    if tol is not None:
        if isinstance(tol, bool) or not isinstance(tol, int | float | np.floating) or not (
            0 <= tol < 1
        ):
            raise ValueError(
                f"sciml.koopman.dmd: `tol` must be a float in [0, 1) (relative to the "
                f"largest singular value), got {tol!r}."
            )
    origin = x[0].copy() if affine else None
    data = np.diff(x, axis=0) if affine else x
    X, Y = data[:-1].T, data[1:].T  # (dim, m)
    dim, m = X.shape
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    if tol is None:
        tol = max(dim, m) * np.finfo(np.float64).eps
    r = int(np.sum(s > tol * s[0])) if s.size and s[0] > 0 else 0
    if rank is not None:
        r = min(r, int(rank))
    if r == 0:
        empty = np.zeros(0, np.complex128)
        return DMD(empty, np.zeros((dim, 0), np.complex128), empty, s, origin, 0, affine,
                   x.shape[0])
    Ur, sr, Vr = U[:, :r], s[:r], Vh[:r].conj().T
    B = (Y @ Vr) / sr[None, :]  # Y V S^-1, (dim, r)
    atilde = Ur.conj().T @ B
    mu, W = np.linalg.eig(atilde)
    # Largest modulus first; a conjugate pair keeps a fixed order (positive imag first).
    order = np.lexsort((-mu.imag, -np.round(np.abs(mu), 12)))
    mu, W = mu[order], W[:, order]
    small = np.abs(mu) <= 1e-12 * max(1.0, float(np.abs(mu).max()))
    exact = (B @ W) / np.where(small, 1.0, mu)[None, :]
    projected = Ur @ W
    modes = np.where(small[None, :], projected, exact).astype(np.complex128)
    norms = np.linalg.norm(modes, axis=0)
    modes = modes / np.where(norms > 0, norms, 1.0)[None, :]
    # Amplitudes fitted to every snapshot, data_j ≈ Φ diag(μ^j) b for j = 0..m, by
    # the normal equations (Jovanović et al. 2014): P = (Φ*Φ) ∘ conj(V V*), q = the
    # diagonal of conj(V) (Φ* data)ᵀ, with V the Vandermonde matrix of μ. O(r² n)
    # after one O(dim r n) product, instead of a least-squares solve of size dim n.
    vander = _powers(mu, np.arange(data.shape[0])).T  # (r, n)
    gram = modes.conj().T @ modes
    P = gram * (vander.conj() @ vander.T)
    q = np.sum(vander.conj() * (modes.conj().T @ data.T), axis=1)
    amplitudes = np.linalg.lstsq(P, q, rcond=None)[0]
    return DMD(mu, modes, amplitudes, s, origin, r, affine, x.shape[0])
