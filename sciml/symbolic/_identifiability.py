"""Whether samples single out a library formula: conditioning and resolution.

Least squares on samples b = A c + e moves the coefficients by A^+ e. With the columns
of A scaled to unit RMS and each coefficient measured as its term's share of the
target's RMS, an error of relative size rho moves term j's share by up to
rho sqrt(VIF_j), VIF_j = [(A^T A / n)^-1]_jj, the variance inflation factor of term j
(1 for a column orthogonal to the others, large for one the others nearly span). A
term whose share is no larger than that may be the error, not the function.

Everything is numpy float64; a 300 x 10 library costs about a millisecond.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import sympy


# Singular values below this fraction of the largest count as zero (roundoff of the
# unit-RMS columns is ~1e-16); a zero direction is an identity of the terms or leaves
# their coefficients free.
_NULL = 1e-10
# A combination that vanishes on the samples and stays below this RMS at perturbed
# inputs is an identity of the terms (e.g. x/(1+x) + 1/(1+x) = 1); off the samples a
# mere coincidence of the samples grows to ~1e-3 or more.
_IDENTITY = 1e-8
# Contiguous blocks of samples held out in turn to measure a formula's error.
_BLOCKS = 3
# The held-out error only estimates the error: a term must stand this far above the
# bound it gives. Over 1416 cases of `benchmarks/symbolic.py --identifiability`
# (seeds 0-2) the largest share / bound of a term in a formula with a spurious term
# was 1.03; 1.5 warns on 23 % of the right formulas there, against 18 % at 1.
_MARGIN = 1.5


def rel(d, y):
    """||d|| / ||y|| (||d|| when y is zero)."""
    ny = np.linalg.norm(y)
    return float(np.linalg.norm(d) / ny) if ny > 0 else float(np.linalg.norm(d))


def _is_identity(terms, X, col, v):
    """Whether the null combination `v` (unit-RMS coordinates) vanishes off the samples
    too. Inputs are moved by 1 % of their spread (or of their size, if constant)."""
    scale = 1e-2 * (X.std(axis=0) + np.abs(X).mean(axis=0) + 1e-300)
    moved = X + scale * np.random.default_rng(0).standard_normal(X.shape)
    try:
        design = terms.design(moved)
    except ValueError:  # a term is not finite there: nothing is shown
        return False
    r = design @ (v / np.where(col > 0, col, 1.0))
    return float(np.sqrt(np.mean(r**2))) <= _IDENTITY


def _inflation(terms, X, scaled, col):
    """sqrt(VIF_j) of every term over the library, inf where the samples leave a
    term's coefficient free; identities of the terms leave the function fixed and do
    not count."""
    n, m = scaled.shape
    if n < m:
        return np.full(m, np.inf)
    _, s, vt = np.linalg.svd(scaled / np.sqrt(n), full_matrices=False)
    vif = np.zeros(m)
    for si, v in zip(s, vt):
        if si > _NULL * s[0]:
            vif += (v / si) ** 2
        elif not _is_identity(terms, X, col, v):
            vif[np.abs(v) > 1e-6] = np.inf
    return np.sqrt(vif)


def held_out_error(design, y, support):
    """Relative error of the least-squares fit on `support` with each of 3 contiguous
    blocks of samples predicted from the others (never below the in-sample error).

    The in-sample residual understates the error wherever the library absorbs it: a
    smooth error along a trajectory is fitted by large cancelling coefficients of
    nearly collinear columns, which then fail on a held-out stretch of the curve.
    """
    n = len(y)
    if not support.any():
        return rel(y, y)
    fit = design[:, support] @ np.linalg.lstsq(design[:, support], y, rcond=None)[0]
    inside = rel(fit - y, y)
    blocks = min(_BLOCKS, n)
    if blocks < 2:
        return inside
    block = (np.arange(n) * blocks) // n
    pred = np.empty(n)
    for b in range(blocks):
        train, test = block != b, block == b
        c = np.linalg.lstsq(design[train][:, support], y[train], rcond=None)[0]
        pred[test] = design[test][:, support] @ c
    return max(inside, rel(pred - y, y))


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """The library on the samples: what `discover` judges formulas with.

    **Attributes:**

    - `design`: the `(n, m)` library matrix.
    - `scale`: RMS of each column.
    - `condition_number`: 2-norm condition number of the design with unit-RMS columns
      (`inf` with fewer samples than terms, or a null space).
    - `inflation`: sqrt(VIF) of each term (`inf`: not determined by the samples).
    """

    design: np.ndarray
    scale: np.ndarray
    condition_number: float
    inflation: np.ndarray

    @classmethod
    def of(cls, terms, X) -> Conditioning:
        design = terms.design(X)
        col = np.sqrt(np.mean(design**2, axis=0))
        scaled = design / np.where(col > 0, col, 1.0)
        n, m = scaled.shape
        s = np.linalg.svd(scaled, compute_uv=False)
        condition = float(s[0] / s[-1]) if n >= m and s[-1] > 0 else float("inf")
        return cls(design, col, condition, _inflation(terms, X, scaled, col))

    def shares(self, coefficients, y):
        """|c_j| rms(term_j) / rms(y): each term's size as a share of the target's."""
        rms = float(np.sqrt(np.mean(y**2)))
        return np.abs(coefficients) * self.scale / (rms if rms > 0 else 1.0)

    def resolution(self, y, support):
        """Per term, the share it needs to stand out from the error: `_MARGIN` times
        how far an error as large as the held-out error of the fit on `support` can
        move the term's share."""
        with np.errstate(invalid="ignore"):
            return _MARGIN * held_out_error(self.design, y, support) * self.inflation

    def resolved(self, coefficients, y):
        """Whether every term of the formula stands above its resolution."""
        support = coefficients != 0
        res = self.resolution(y, support)
        return bool(np.all(self.shares(coefficients, y)[support] > res[support])), res

    def sparsest_resolved(self, y, candidates):
        """The sparsest of `candidates` (boolean supports) whose least-squares formula
        is resolved (fewest terms, then the smallest error): `(coefficients, error)`
        or None."""
        best = None
        for support in candidates:
            if not support.any():
                continue
            c = np.zeros(len(self.scale))
            c[support] = np.linalg.lstsq(self.design[:, support], y, rcond=None)[0]
            ok, _ = self.resolved(c, y)
            if ok:
                rank = (int(support.sum()), held_out_error(self.design, y, support))
                if best is None or rank < best[0]:
                    best = (rank, c)
        return None if best is None else (best[1], best[0][1])


def warning_text(discovery, Y, conditioning: Conditioning) -> str:
    """The message of `IllConditionedLibraryWarning` for an unresolved discovery."""
    lines = []
    for k, ok in enumerate(discovery.identifiable):
        if ok:
            continue
        c = discovery.coefficients[k]
        shares = conditioning.shares(c, Y[:, k])
        res = discovery.resolution[k]
        weak = [j for j in np.flatnonzero(c) if not shares[j] > res[j]]
        what = "The formula" if Y.shape[1] == 1 else f"Component {k}"
        err = held_out_error(conditioning.design, Y[:, k], c != 0)
        named = ", ".join(
            f"{discovery.terms[j]} (share {shares[j]:.3g}, needs {res[j]:.3g})" for j in weak
        )
        line = (
            f"{what}: an error as large as its error on held-out samples "
            f"({100 * err:.2g} %) could have made the terms {named}."
        )
        found = conditioning.sparsest_resolved(Y[:, k], _candidates(discovery.details[k]))
        if found is not None:
            coef, err = found
            formula = sympy.Add(*(
                sympy.Float(float(f"{coef[j]:.4g}")) * discovery.terms[j]
                for j in np.flatnonzero(coef)
            ))
            line += (
                f" The sparsest candidate whose terms all stand above that is {formula} "
                f"(held-out error {100 * err:.2g} %)."
            )
        lines.append(line)
    return (
        "discover: these samples do not single out the formula: some of its terms are "
        "within what the formula's own error could move them, because the library's "
        "columns are nearly collinear on the samples (condition number "
        f"{discovery.condition_number:.3g} of the library matrix with unit-RMS columns). "
        + " ".join(lines)
        + " Sample more varied inputs (several trajectories, a box), use a smaller "
        "library, or, for the hidden term of an ODE, use "
        "sciml.pinn.HiddenTermODE.identify, which puts the candidate supports into the "
        "ODE and lets the data decide."
    )


def _candidates(info):
    return getattr(info, "candidates", ())
