"""`sciml.symbolic.discover`: name a function (or samples of one) as a formula."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy

from ._backends import AbstractBackend, BackendFit
from ._function import SymbolicFunction
from ._identifiability import Conditioning, rel, warning_text
from ._library import AbstractLibrary, CustomTerms, _symbols, check_names, polynomials
from ._sparse import STLSQ


class IllConditionedLibraryWarning(UserWarning):
    """`discover` returned a formula the samples do not single out.

    The library's columns are so nearly collinear on the samples that an error as
    large as the formula's own could have produced one of its terms: other supports
    fit the samples about as well (see `Discovery.identifiable`).
    """


@dataclasses.dataclass(frozen=True)
class Discovery:
    """A discovered formula.

    **Attributes:**

    - `expression`: the formula as a SymPy expression, or a tuple of them (one per
      output component) when the function has vector output.
    - `latex`: LaTeX of `expression` (a string or a tuple of strings).
    - `jax_fn`: the formula as a `SymbolicFunction`: an equinox module taking one input
      of shape `(d,)` and returning what the original function returned (a scalar or
      shape `(k,)`); jit/vmap/grad-able, with the numeric coefficients as its trainable
      `coefficients` leaf, so `sciml.fit` can re-fit them inside a known equation.
    - `error`: relative L2 error of the formula on the samples (all components).
    - `errors`: the relative L2 error of each component.
    - `names`: the input names.
    - `terms`: the library terms (None for backends that do not use a library).
    - `coefficients`: `(k, len(terms))` coefficients over the library (None likewise).
    - `support`: for each component, the tuple of selected terms.
    - `backend`: the backend used.
    - `details`: per component, what the backend reports (for STLSQ a `SparseFit` with
      the threshold path, the candidate supports and their scores).
    - `condition_number`: the 2-norm condition number of the library matrix on the
      samples with its columns scaled to unit RMS (`inf` with fewer samples than terms
      or with a null space, exact identities among the terms such as
      x/(1+x) + 1/(1+x) = 1 included; None without a library).
    - `resolution`: `(k, len(terms))`: for each component and term, the share
      `|c_j| rms(term_j) / rms(target)` the term needs to stand out from the formula's
      error (see `discover`); None without a library.
    - `identifiable`: per component, whether every term of the formula has a share
      above its `resolution`; False means the samples do not single out the formula,
      and `discover` warned (`IllConditionedLibraryWarning`).
    """

    expression: Any
    latex: Any
    jax_fn: SymbolicFunction
    error: float
    errors: tuple[float, ...]
    names: tuple[str, ...]
    terms: tuple[sympy.Expr, ...] | None
    coefficients: np.ndarray | None
    support: tuple[tuple[sympy.Expr, ...], ...]
    backend: AbstractBackend
    details: tuple[Any, ...]
    condition_number: float | None = None
    resolution: np.ndarray | None = None
    identifiable: tuple[bool, ...] | None = None


def _as_inputs(inputs, names):
    if isinstance(inputs, Mapping):
        keys = check_names(tuple(inputs), argument="inputs (dict keys)")
        if names is not None and tuple(names) != keys:
            raise ValueError(
                f"discover: `names`={tuple(names)!r} disagrees with the keys of the `inputs` "
                f"dict {keys!r}; pass one or the other."
            )
        cols = []
        for k in keys:
            c = np.asarray(inputs[k])
            if c.ndim != 1:
                raise ValueError(
                    f"discover: inputs[{k!r}] must be 1-D (one value per sample), got shape "
                    f"{c.shape}."
                )
            cols.append(c)
        lengths = {len(c) for c in cols}
        if len(lengths) > 1:
            raise ValueError(
                f"discover: the `inputs` arrays have different lengths "
                f"{ {k: len(c) for k, c in zip(keys, cols)} }; give one value per sample each."
            )
        X = np.stack(cols, axis=1) if cols else np.zeros((0, 0))
        names = keys
    else:
        X = np.asarray(inputs)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise ValueError(
                f"discover: `inputs` must have shape (n_samples, n_inputs) (or be a dict of "
                f"1-D arrays), got shape {X.shape}."
            )
        if names is None:
            names = tuple(f"x{i}" for i in range(X.shape[1]))
        names = check_names(names)
        if len(names) != X.shape[1]:
            raise ValueError(
                f"discover: `names`={names!r} has {len(names)} names but `inputs` has "
                f"{X.shape[1]} columns (shape {X.shape}); give one name per column."
            )
    if X.shape[1] == 0:
        raise ValueError("discover: `inputs` has no input variables.")
    if X.shape[0] == 0:
        raise ValueError(f"discover: `inputs` has no samples (shape {X.shape}).")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise TypeError(f"discover: `inputs` must be real numbers, got dtype {X.dtype}.")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"discover: `inputs` has NaN/inf in {len(rows)} samples (first at row "
            f"{int(rows[0])}); drop those samples first."
        )
    return X, names


@eqx.filter_jit
def _vmapped(fn, x):
    return jax.vmap(fn)(x)


def _evaluate(fn, X):
    dtype = jnp.result_type(float)
    # `fn` goes in as an argument, so a module's arrays are traced, not baked in, and
    # one program serves every module of the same structure.
    out = _vmapped(fn, jnp.asarray(X, dtype=dtype))
    return np.asarray(jax.device_get(out))


def discover(
    fn_or_samples,
    inputs,
    *,
    names=None,
    library: AbstractLibrary | None = None,
    backend: AbstractBackend | None = None,
) -> Discovery:
    """Finds a formula for a function from its values at sample inputs.

    Sparse regression over a term library (the default) follows SINDy (Brunton et al.,
    PNAS 2016); used on a trained hidden-term network it is the symbolic step of UPINNs
    (Podina, Eastman, Kohandel, "A PINN approach to symbolic differential operator
    discovery with sparse data", 2022).

    **Arguments:**

    - `fn_or_samples`: either a JAX callable of one input of shape `(d,)` returning a
      scalar or a vector of shape `(k,)` (e.g. a hidden-term network; it is vmapped over
      the inputs), or its sample outputs: an array `(n,)` or `(n, k)`.
    - `inputs`: the sample inputs, an array `(n, d)` (or `(n,)` for one input), or a
      dict `{name: (n,) array}`.
    - `names`: the input names (SymPy symbols of the formula); default the dict keys,
      or `x0, x1, ...`.
    - `library`: the candidate terms, e.g. `polynomials(2) + trigonometric((1, 2))`
      (default `polynomials(2)`). Not used by backends that search freely (PySR).
    - `backend`: a backend object: `STLSQ(...)` (default: our sparse regression with a
      threshold path and cross-validated selection), `PySINDy(...)`, `PySR(...)`.

    **Returns:**

    A `Discovery` with `.expression`, `.latex`, `.jax_fn`, `.error` and the selected
    support and coefficients. One expression per output component when the function
    has vector output.

    **Warns:**

    `IllConditionedLibraryWarning` when the samples do not single out the formula:
    least squares moves the coefficients by A^+ e for an error e in the samples, so
    with unit-RMS columns an error of relative size rho can move term j's share of the
    target's RMS by up to rho sqrt(VIF_j) (VIF_j: the term's variance inflation
    factor, large when the other columns nearly span it). rho is the formula's
    error with each of 3 contiguous blocks of samples predicted from the others: along
    a trajectory a smooth error is absorbed by large cancelling coefficients of
    nearly collinear columns, which fail on a held-out stretch. A term whose share is
    not above 1.5 times that bound (`resolution`) may be the error, not the function.
    This is the worst case over errors of that size, the relevant one for a trained
    network, whose errors are smooth rather than independent. The message gives
    `condition_number`, the weak terms and, when the threshold path has one, the
    sparsest candidate formula whose terms all stand out. Measured with
    `python benchmarks/symbolic.py --identifiability` (seeds 0-2, 1416 cases along
    Lotka-Volterra trajectories and in boxes): every formula with a spurious term
    warned; the warning never fired on right formulas from [-1, 1]^2 boxes, and did
    on 23 % of all right ones (mostly trajectories with 1-5 % white noise, where a
    smooth error of that size could have faked the terms).

    **Raises:**

    `ValueError`/`TypeError` before any fitting for mismatched shapes, NaNs, a library
    without terms or with unknown input names; `BackendUnavailableError` when an
    optional backend cannot run here.
    """
    backend = STLSQ() if backend is None else backend
    if not isinstance(backend, AbstractBackend):
        raise TypeError(
            f"discover(backend=...) must be a backend object such as "
            f"sciml.symbolic.STLSQ(), got {backend!r}."
        )
    if library is not None and not isinstance(library, AbstractLibrary):
        raise TypeError(
            f"discover(library=...) must be a term library such as "
            f"sciml.symbolic.polynomials(2), got {library!r}."
        )
    if library is not None and not backend.uses_library:
        raise ValueError(
            f"discover: backend {type(backend).__name__} searches expressions itself and "
            "does not use `library`; leave `library` out."
        )
    X, names = _as_inputs(inputs, names)
    n = X.shape[0]
    if backend.uses_library:
        terms = (polynomials(2) if library is None else library).build(names)
    else:
        terms = CustomTerms(_symbols(names)).build(names)

    if callable(fn_or_samples):
        Y = _evaluate(fn_or_samples, X)
        what = "the values of `fn`"
    else:
        Y = np.asarray(fn_or_samples)
        what = "`samples`"
    if Y.ndim not in (1, 2) or Y.shape[0] != n:
        raise ValueError(
            f"discover: {what} must have shape ({n},) or ({n}, k) to match `inputs` of shape "
            f"{X.shape}, got shape {Y.shape}."
        )
    if not (np.issubdtype(Y.dtype, np.floating) or np.issubdtype(Y.dtype, np.integer)):
        raise TypeError(f"discover: {what} must be real numbers, got dtype {Y.dtype}.")
    scalar = Y.ndim == 1
    Y_raw = Y
    Y = Y.reshape(n, -1).astype(np.float64)
    if Y.shape[1] == 0:
        raise ValueError(f"discover: {what} has no output components (shape {Y.shape}).")
    bad = ~np.isfinite(Y)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"discover: {what} contain NaN/inf at {len(rows)} samples (first at row "
            f"{int(rows[0])}); drop those samples (and their inputs) first."
        )

    eps = max(
        np.finfo(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64).eps
        for a in (X, Y_raw)
    )
    fits = backend.regress(X.astype(np.float64), Y, terms, eps=float(eps))
    if len(fits) != Y.shape[1] or not all(isinstance(f, BackendFit) for f in fits):
        raise RuntimeError(
            f"backend {type(backend).__name__}.regress must return one BackendFit per "
            f"output component ({Y.shape[1]})."
        )

    if all(f.coefficients is not None for f in fits):
        coefficients = np.stack([np.asarray(f.coefficients, np.float64) for f in fits])
        masks = coefficients != 0
        support = tuple(tuple(t for t, m in zip(terms.expressions, row) if m) for row in masks)
        jax_fn = SymbolicFunction.linear(
            support, [c[m] for c, m in zip(coefficients, masks)], names, scalar=scalar
        )
        lib_terms = terms.expressions
    else:
        exprs = []
        for f in fits:
            if f.coefficients is None:
                exprs.append(f.expression)
            else:
                exprs.append(
                    sum(
                        (
                            sympy.Float(float(c)) * t
                            for c, t in zip(f.coefficients, terms.expressions)
                            if c != 0
                        ),
                        sympy.Integer(0),
                    )
                )
        jax_fn = SymbolicFunction.from_expressions(exprs, names, scalar=scalar)
        coefficients, lib_terms = None, None
        support = tuple(tuple(sympy.Add.make_args(e)) for e in exprs)

    # Error of the formula on the samples, evaluated in float64 independently of JAX.
    exprs = jax_fn._substituted()
    numpy_fn = sympy.lambdify(_symbols(names), list(exprs), modules="numpy")
    with np.errstate(all="ignore"):
        pred = np.stack(
            [
                np.broadcast_to(np.asarray(v, np.float64), (n,))
                for v in numpy_fn(*X.T.astype(np.float64))
            ],
            axis=1,
        )
    diff = pred - Y

    errors = tuple(rel(diff[:, k], Y[:, k]) for k in range(Y.shape[1]))
    checks, conditioning = {}, None
    if coefficients is not None:
        conditioning = Conditioning.of(terms, X.astype(np.float64))
        verdicts = [conditioning.resolved(c, Y[:, k]) for k, c in enumerate(coefficients)]
        checks = dict(
            condition_number=conditioning.condition_number,
            resolution=np.stack([res for _, res in verdicts]),
            identifiable=tuple(ok for ok, _ in verdicts),
        )
    discovery = Discovery(
        expression=jax_fn.expression,
        latex=jax_fn.latex,
        jax_fn=jax_fn,
        error=rel(diff, Y),
        errors=errors,
        names=names,
        terms=lib_terms,
        coefficients=coefficients,
        support=support,
        backend=backend,
        details=tuple(f.info for f in fits),
        **checks,
    )
    if checks and not all(checks["identifiable"]):
        warnings.warn(
            warning_text(discovery, Y, conditioning), IllConditionedLibraryWarning, stacklevel=2
        )
    return discovery
