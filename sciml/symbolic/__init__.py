"""Symbolic-regression hooks: name a function (a hidden-term network, samples) as a formula.

`discover(fn_or_samples, inputs, library=..., backend=...)` regresses over a term library
(`polynomials`, `trigonometric`, `rational`, `terms`, combined with `+`) with our own
sparse regression (`STLSQ`: thresholded least squares, threshold path, `KFold`/`BIC`/
`AIC` selection) or an optional backend (`PySINDy`, `PySR`, only when installed).
"""

from ._backends import (
    AbstractBackend as AbstractBackend,
    BackendFit as BackendFit,
    BackendUnavailableError as BackendUnavailableError,
    PySINDy as PySINDy,
    PySR as PySR,
    julia_executable as julia_executable,
)
from ._discover import (
    Discovery as Discovery,
    IllConditionedLibraryWarning as IllConditionedLibraryWarning,
    discover as discover,
)
from ._function import SymbolicFunction as SymbolicFunction
from ._library import (
    AbstractLibrary as AbstractLibrary,
    CombinedLibrary as CombinedLibrary,
    CustomTerms as CustomTerms,
    Polynomials as Polynomials,
    Rational as Rational,
    TermSet as TermSet,
    Trigonometric as Trigonometric,
    combine as combine,
    polynomials as polynomials,
    rational as rational,
    terms as terms,
    trigonometric as trigonometric,
)
from ._sparse import (
    AIC as AIC,
    BIC as BIC,
    STLSQ as STLSQ,
    AbstractCriterion as AbstractCriterion,
    KFold as KFold,
    SparseFit as SparseFit,
    stlsq as stlsq,
)
