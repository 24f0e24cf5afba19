"""Sparse regression: sequentially thresholded least squares over a threshold path.

STLSQ (Brunton, Proctor, Kutz, "Discovering governing equations from data by sparse
identification of nonlinear dynamical systems", PNAS 113 (2016) 3932) alternates a
least-squares fit with dropping the terms whose coefficients are below a threshold.
Which threshold is right depends on the noise, so we sweep a path of thresholds,
collect the distinct supports it visits, refit each by least squares, and pick one
with k-fold cross-validation (the default) or an information criterion (AIC/BIC).

Everything is numpy float64 and deterministic; a 300 x 10 problem takes milliseconds.
"""

from __future__ import annotations

import abc
import dataclasses
import math

import equinox as eqx
import numpy as np

from ._backends import AbstractBackend, BackendFit


def _lstsq(A, b, ridge, n=None):
    """Least squares, with Tikhonov term `ridge * n * ||c||^2` if ridge > 0.

    `n` is the number of samples behind `A` (its rows unless `A` is a reduced factor).
    """
    if A.shape[1] == 0:
        return np.zeros(0)
    if ridge > 0:
        k = A.shape[1]
        n = A.shape[0] if n is None else n
        A = np.concatenate([A, math.sqrt(ridge * n) * np.eye(k)], axis=0)
        b = np.concatenate([b, np.zeros(k)])
    return np.linalg.lstsq(A, b, rcond=None)[0]


class _Reduced:
    """min ||A c - b|| reduced once by a QR factorisation A = Q R.

    For any column subset S, ||A_S c - b||^2 = ||R_S c - Q^T b||^2 + ||b - Q Q^T b||^2,
    so every subset is solved on R (m x m) instead of A (n x m): the path and the
    selection cost no more for 10^4 samples than for 10^2, without squaring the
    condition number as normal equations would.
    """

    def __init__(self, A, b):
        self.n = A.shape[0]
        Q, self.R = np.linalg.qr(A)
        self.qb = Q.T @ b
        r = b - Q @ self.qb
        self.rest = float(r @ r)

    def solve(self, support, ridge):
        return _lstsq(self.R[:, support], self.qb, ridge, self.n)

    def mse(self, support, ridge):
        c = self.solve(support, ridge)
        r = self.qb - self.R[:, support] @ c
        return (float(r @ r) + self.rest) / self.n


def stlsq(
    A,
    b,
    threshold,
    *,
    weights=None,
    ridge=0.0,
    max_iter=25,
    active=None,
    start=None,
    n_samples=None,
):
    """Sequentially thresholded least squares for one right-hand side.

    **Arguments:**

    - `A`: design matrix, shape `(n, m)`.
    - `b`: targets, shape `(n,)`.
    - `threshold`: terms with `|c_j| * weights[j] < threshold` are dropped.
    - `weights`: per-term factor converting a coefficient into threshold units
      (default ones).
    - `ridge`: Tikhonov weight (relative to the mean squared column).
    - `max_iter`: most thresholding rounds.
    - `active`: boolean mask of the terms allowed at the start (default all).
    - `start`: the least-squares coefficients on `active`, if already known.
    - `n_samples`: samples behind `A` when `A` is a reduced factor (for `ridge`).

    **Returns:**

    `(coefficients (m,), support (m,) bool)`.
    """
    m = A.shape[1]
    weights = np.ones(m) if weights is None else weights
    support = np.ones(m, bool) if active is None else active.copy()
    if start is None:
        coef = np.zeros(m)
        coef[support] = _lstsq(A[:, support], b, ridge, n_samples)
    else:
        coef = np.asarray(start, np.float64).copy()
    for _ in range(max_iter):
        keep = support & (np.abs(coef) * weights >= threshold)
        if np.array_equal(keep, support):
            break
        support = keep
        coef = np.zeros(m)
        coef[support] = _lstsq(A[:, support], b, ridge, n_samples)
    return coef, support


def backward_elimination(A, b, *, active=None):
    """Nested supports from dropping, one at a time, the term whose removal raises the
    least-squares residual least.

    Removing term j from a least-squares fit raises the residual sum of squares by
    c_j^2 / (A^T A)^-1_jj; the pseudo-inverse keeps this defined for collinear columns.
    Thresholding cannot escape a collinear library whose full fit has large cancelling
    coefficients; this path can, and it costs one SVD per step. (`A`, `b` may be a
    reduced factor `R`, `Q^T b`: the ranking is the same.)

    **Returns:**

    A list of boolean supports, from `active` (all terms) down to a single term.
    """
    m = A.shape[1]
    support = np.ones(m, bool) if active is None else active.copy()
    path = [support.copy()]
    while support.sum() > 1:
        idx = np.flatnonzero(support)
        P = np.linalg.pinv(A[:, idx])
        c = P @ b
        g = np.einsum("ij,ij->i", P, P)
        with np.errstate(divide="ignore", invalid="ignore"):
            rise = np.where(g > 0, c**2 / g, 0.0)
        support = support.copy()
        support[idx[int(np.argmin(rise))]] = False
        path.append(support.copy())
    return path


# ----------------------------------------------------------------------------------
# Model selection


class AbstractCriterion(eqx.Module):
    """Chooses one support among candidates (lower score is better)."""

    @abc.abstractmethod
    def scores(self, A, b, supports, *, ridge, floor) -> np.ndarray:
        """Scores of each candidate support.

        **Arguments:**

        - `A`, `b`: the normalised problem (columns and target of unit RMS).
        - `supports`: boolean array `(k, m)` of candidate supports.
        - `ridge`: the Tikhonov weight used in refits.
        - `floor`: mean squared residual below which fits count as exact (roundoff).

        **Returns:**

        `(k,)` scores, lower is better; ties go to the sparser support.
        """

    def choose(self, A, b, supports, *, ridge, floor) -> tuple[int, np.ndarray]:
        s = np.asarray(self.scores(A, b, supports, ridge=ridge, floor=floor), float)
        sizes = supports.sum(axis=1)
        order = np.lexsort((sizes, s))
        return int(order[0]), s


class _InformationCriterion(AbstractCriterion):
    def penalty(self, n, m, k):
        raise NotImplementedError

    def scores(self, A, b, supports, *, ridge, floor):
        n, m = A.shape
        reduced = _Reduced(A, b)
        out = []
        for s in supports:
            mse = max(reduced.mse(s, ridge), floor)
            out.append(n * math.log(mse) + self.penalty(n, m, int(s.sum())))
        return np.array(out)


class AIC(_InformationCriterion):
    """Akaike information criterion n log(RSS/n) + 2k (k: number of terms)."""

    def penalty(self, n, m, k):
        return 2.0 * k


class BIC(_InformationCriterion):
    """Bayesian information criterion n log(RSS/n) + k log n, optionally extended.

    With `gamma > 0` this is the extended BIC of Chen and Chen (Biometrika 95 (2008)
    759), which adds 2 gamma log C(m, k) for a library of m terms and penalises large
    libraries more: false terms are rarer with few samples.

    **Arguments:**

    - `gamma`: extension weight in [0, 1] (0: the plain BIC).
    """

    gamma: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        if not (0 <= self.gamma <= 1):
            raise ValueError(f"BIC(gamma=...) must be in [0, 1], got {self.gamma!r}.")

    def penalty(self, n, m, k):
        return k * math.log(n) + 2 * self.gamma * math.log(math.comb(m, k))


class KFold(AbstractCriterion):
    """k-fold cross-validation of the least-squares refit on each support.

    Folds interleave the samples (sample i goes to fold i mod k), so the choice is
    deterministic. With `one_standard_error`, the sparsest support whose CV error is
    within one standard error of the best is chosen (Hastie et al., ESL 7.10).

    This is the default criterion: recovering the Lotka-Volterra hidden terms
    (-0.9 x y, 0.8 x y; 1 % noise; library `polynomials(2)`) from 30 samples, it found
    exactly the true supports in 14-16 of 20 noise draws where plain BIC did in 9-12
    (300 samples: 20 of 20 against 18-19); `python benchmarks/symbolic.py --selection`.

    **Arguments:**

    - `folds`: number of folds (>= 2); with fewer samples than folds, one fold per
      sample (leave-one-out).
    - `one_standard_error`: apply the one-standard-error rule.
    - `contiguous`: folds are contiguous blocks of samples instead of interleaved ones.
      Use it when the samples are ordered along a curve and their errors are smooth
      (a trained network sampled along a trajectory): interleaved folds then only test
      interpolation, which large cancelling coefficients of collinear terms pass;
      held-out blocks test extrapolation along the curve, which they fail.
    """

    folds: int = eqx.field(static=True, default=5)
    one_standard_error: bool = eqx.field(static=True, default=True)
    contiguous: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not isinstance(self.folds, int) or self.folds < 2:
            raise ValueError(f"KFold(folds=...) must be an int >= 2, got {self.folds!r}.")

    def _cv(self, A, b, supports, ridge, floor):
        n = len(b)
        if n < 3:
            raise ValueError(
                f"KFold cross-validation needs at least 3 samples, got {n}; use BIC()."
            )
        folds = min(self.folds, n)
        if self.contiguous:
            fold = (np.arange(n) * folds) // n
        else:
            fold = np.arange(n) % folds
        splits = [
            (_Reduced(A[fold != f], b[fold != f]), A[fold == f], b[fold == f]) for f in range(folds)
        ]
        means, ses = [], []
        for s in supports:
            errs = []
            for train, A_te, b_te in splits:
                r = b_te - A_te[:, s] @ train.solve(s, ridge)
                errs.append(max(float(r @ r) / len(b_te), floor))
            errs = np.array(errs)
            means.append(errs.mean())
            ses.append(errs.std(ddof=1) / math.sqrt(folds))
        return np.array(means), np.array(ses)

    def scores(self, A, b, supports, *, ridge, floor):
        return self._cv(A, b, supports, ridge, floor)[0]

    def choose(self, A, b, supports, *, ridge, floor):
        means, ses = self._cv(A, b, supports, ridge, floor)
        sizes = supports.sum(axis=1)
        if self.one_standard_error:
            best = int(np.lexsort((sizes, means))[0])
            ok = np.flatnonzero(means <= means[best] + ses[best])
            idx = ok[np.lexsort((means[ok], sizes[ok]))[0]]
            return int(idx), means
        return int(np.lexsort((sizes, means))[0]), means


# ----------------------------------------------------------------------------------
# The solver


@dataclasses.dataclass(frozen=True)
class SparseFit:
    """Result of `STLSQ.solve` for one target.

    **Attributes:**

    - `coefficients`: `(m,)` coefficients in the original (unnormalised) units.
    - `support`: `(m,)` boolean mask of the selected terms.
    - `thresholds`: the thresholds swept.
    - `candidates`: `(k, m)` boolean array of the distinct supports visited.
    - `scores`: `(k,)` criterion values of the candidates (lower is better).
    - `chosen`: index of the selected candidate.
    """

    coefficients: np.ndarray
    support: np.ndarray
    thresholds: np.ndarray
    candidates: np.ndarray
    scores: np.ndarray
    chosen: int


class STLSQ(AbstractBackend):
    """Sequentially thresholded least squares with a threshold path and model selection.

    The default backend of `sciml.symbolic.discover` (our own, no optional packages).

    **Arguments:**

    - `threshold`: `None` (default) sweeps an automatic path: every gap between the
      sorted magnitudes of the full least-squares coefficients, plus a geometric grid.
      A number uses that one threshold (no selection); a sequence sweeps those.
    - `criterion`: how to choose among the supports visited: `KFold(5)` (default,
      cross-validation with the one-standard-error rule), `BIC()` (or extended,
      `BIC(gamma=1)`) or `AIC()`.
    - `normalise`: if True (default) columns and target are scaled to unit RMS and the
      threshold applies to the normalised coefficients, i.e. to each term's share of the
      target's size; if False it applies to the raw coefficients (PySINDy's convention).
      The solves are normalised either way, for conditioning.
    - `ridge`: Tikhonov weight (relative: columns have unit mean square), 0 for plain
      least squares.
    - `grid`: number of geometric grid thresholds added to the automatic path.
    - `elimination`: with the automatic path, also offer the criterion the supports of
      backward elimination (drop the least useful term, one at a time). This rescues
      collinear libraries, where the full fit has large cancelling coefficients no
      threshold removes.
    - `max_iter`: most thresholding rounds per threshold.
    - `tolerance`: relative RMS residual below which a fit counts as exact, so that on
      clean data the sparsest exact support wins instead of roundoff deciding (default
      100 machine epsilons of the samples' precision: 2e-14 in float64, 1e-5 in
      float32).
    """

    threshold: float | tuple[float, ...] | None = eqx.field(static=True, default=None)
    criterion: AbstractCriterion = eqx.field(static=True, default_factory=KFold)
    normalise: bool = eqx.field(static=True, default=True)
    ridge: float = eqx.field(static=True, default=0.0)
    grid: int = eqx.field(static=True, default=40)
    elimination: bool = eqx.field(static=True, default=True)
    max_iter: int = eqx.field(static=True, default=25)
    tolerance: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        t = self.threshold
        if t is not None:
            ts = (t,) if isinstance(t, int | float) else tuple(t)
            if len(ts) == 0 or not all(math.isfinite(v) and v >= 0 for v in ts):
                raise ValueError(
                    f"STLSQ(threshold=...) must be None, a non-negative number or a sequence "
                    f"of them, got {t!r}."
                )
        if not (math.isfinite(self.ridge) and self.ridge >= 0):
            raise ValueError(f"STLSQ(ridge=...) must be >= 0, got {self.ridge!r}.")
        if not isinstance(self.criterion, AbstractCriterion):
            raise TypeError(
                f"STLSQ(criterion=...) must be BIC(), AIC() or KFold(...), got {self.criterion!r}."
            )

    def solve(self, A, b, *, eps: float | None = None) -> SparseFit:
        """Sparse coefficients `c` with `A c ~ b`.

        **Arguments:**

        - `A`: design matrix `(n, m)` (float64).
        - `b`: target `(n,)`.
        - `eps`: machine epsilon of the data's original precision (default float64's).

        **Returns:**

        A `SparseFit`.
        """
        A = np.asarray(A, np.float64)
        b = np.asarray(b, np.float64)
        n, m = A.shape
        col = np.sqrt((A**2).mean(axis=0))
        usable = col > 1e-12 * max(col.max(), 1e-300)
        col = np.where(usable, col, 1.0)
        scale = math.sqrt(float((b**2).mean()))
        if scale == 0.0:
            empty = np.zeros((1, m), bool)
            return SparseFit(np.zeros(m), np.zeros(m, bool), np.zeros(1), empty, np.zeros(1), 0)
        An, bn = A / col, b / scale
        # A coefficient in normalised units times `weights` is in threshold units.
        weights = np.ones(m) if self.normalise else scale / col
        eps = np.finfo(np.float64).eps if eps is None else eps
        tol = 100 * eps if self.tolerance is None else self.tolerance
        floor = tol**2

        reduced = _Reduced(An, bn)
        R, qb = reduced.R, reduced.qb
        full, _ = stlsq(R, qb, 0.0, ridge=self.ridge, active=usable, max_iter=0, n_samples=n)
        if self.threshold is None:
            mags = np.sort(np.abs(full[usable]) * weights[usable])
            mids = np.sqrt(mags[:-1] * mags[1:]) if len(mags) > 1 else np.zeros(0)
            positive = mags[mags > 0]
            grid = (
                np.geomspace(positive[0], positive[-1], self.grid)
                if len(positive) > 1
                else positive
            )
            thresholds = np.unique(np.concatenate([[0.0], mids, grid]))
        elif isinstance(self.threshold, int | float):
            thresholds = np.array([float(self.threshold)])
        else:
            thresholds = np.unique(np.asarray(self.threshold, np.float64))

        supports, seen, firsts = [], set(), set()
        for t in thresholds:
            # Every run starts from the same full fit, so equal first supports give
            # equal runs.
            first = (usable & (np.abs(full) * weights >= t)).tobytes()
            if first in firsts:
                continue
            firsts.add(first)
            _, s = stlsq(
                R,
                qb,
                t,
                weights=weights,
                ridge=self.ridge,
                max_iter=self.max_iter,
                active=usable,
                start=full,
                n_samples=n,
            )
            if s.tobytes() not in seen:
                seen.add(s.tobytes())
                supports.append(s)
        if self.elimination and self.threshold is None:
            for s in backward_elimination(R, qb, active=usable):
                if s.tobytes() not in seen:
                    seen.add(s.tobytes())
                    supports.append(s)
        supports = np.array(supports)
        if len(supports) == 1:
            chosen, scores = 0, np.zeros(1)
        else:
            chosen, scores = self.criterion.choose(An, bn, supports, ridge=self.ridge, floor=floor)
        s = supports[chosen]
        cn = np.zeros(m)
        cn[s] = reduced.solve(s, self.ridge)
        return SparseFit(cn * scale / col, s, thresholds, supports, scores, chosen)

    def regress(self, inputs, targets, terms, *, eps=None):
        theta = terms.design(inputs)
        out = []
        for k in range(targets.shape[1]):
            fit = self.solve(theta, targets[:, k], eps=eps)
            out.append(BackendFit(coefficients=fit.coefficients, info=fit))
        return out
