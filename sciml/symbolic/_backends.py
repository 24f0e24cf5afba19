"""Regression backends: the object that turns samples into a formula.

The built-in backend is `STLSQ` (in `_sparse.py`). `PySINDy` and `PySR` wrap optional
packages that sciml does not depend on: their imports are guarded, and PySR is refused
up front when no Julia runtime is present, so asking for it never starts a download.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import importlib.util
import os
import shutil
from typing import Any, ClassVar

import equinox as eqx
import numpy as np
import sympy


class BackendUnavailableError(ImportError):
    """An optional symbolic-regression backend cannot run on this machine."""


@dataclasses.dataclass(frozen=True)
class BackendFit:
    """What a backend returns for one output component.

    **Attributes:**

    - `coefficients`: `(m,)` coefficients over the library terms, or None for backends
      that search expressions freely (then `expression` is set).
    - `expression`: the formula as a SymPy expression when `coefficients` is None.
    - `info`: backend-specific details (e.g. the threshold path and its scores).
    """

    coefficients: np.ndarray | None = None
    expression: sympy.Expr | None = None
    info: Any = None


class AbstractBackend(eqx.Module):
    """Fits a formula to samples.

    `uses_library` says whether the backend regresses over the term library (sparse
    regression) or searches expressions on its own (PySR).
    """

    uses_library: ClassVar[bool] = True

    @abc.abstractmethod
    def regress(
        self, inputs: np.ndarray, targets: np.ndarray, terms, *, eps: float | None = None
    ) -> list[BackendFit]:
        """Fits each target column.

        **Arguments:**

        - `inputs`: `(n, d)` float64 sample inputs.
        - `targets`: `(n, k)` float64 sample outputs, one column per output component.
        - `terms`: the `TermSet` of the library built for the input names.
        - `eps`: machine epsilon of the samples' original precision (float32 samples
          carry roundoff a backend should not try to fit).

        **Returns:**

        A list of `k` `BackendFit`s.
        """


class PySINDy(AbstractBackend):
    """Sparse regression with a PySINDy optimiser over our term library.

    Needs the optional `pysindy` package (not a dependency of sciml).

    **Arguments:**

    - `optimizer`: a PySINDy optimiser object (e.g. `pysindy.STLSQ(threshold=0.05)`,
      `pysindy.SR3(...)`); default `pysindy.STLSQ(threshold=0.05, alpha=0.0)`. It is
      copied before fitting.
    """

    optimizer: Any = eqx.field(static=True, default=None)

    def __check_init__(self):
        if importlib.util.find_spec("pysindy") is None:
            raise BackendUnavailableError(
                "backend PySINDy() needs the optional package `pysindy`, which is not "
                "installed; `pip install pysindy`, or use the built-in STLSQ() backend."
            )

    def regress(self, inputs, targets, terms, *, eps=None):
        import pysindy

        opt = (
            pysindy.STLSQ(threshold=0.05, alpha=0.0)
            if self.optimizer is None
            else copy.deepcopy(self.optimizer)
        )
        theta = terms.design(inputs)
        opt.fit(theta, targets)
        coef = np.asarray(opt.coef_, dtype=np.float64).reshape(targets.shape[1], len(terms))
        return [BackendFit(coefficients=c, info={"optimizer": opt}) for c in coef]


def julia_executable() -> str | None:
    """The Julia runtime juliacall would use without downloading one, or None.

    Looks at `PYTHON_JULIAPKG_EXE`, then `julia` on PATH (juliapkg's own order, minus
    its download fallback).
    """
    exe = os.environ.get("PYTHON_JULIAPKG_EXE")
    if exe:
        found = shutil.which(exe)
        return found
    return shutil.which("julia")


class PySR(AbstractBackend):
    """Genetic-programming symbolic regression with PySR (SymbolicRegression.jl).

    Needs the optional `pysr` package **and** a Julia runtime already on this machine
    (`julia` on PATH or `PYTHON_JULIAPKG_EXE`) with PySR's Julia packages installed.
    Both are checked when the backend is created, before `pysr` is imported, so a
    machine without Julia gets a `BackendUnavailableError` at once rather than a
    download. Unless `allow_download=True`, `PYTHON_JULIAPKG_OFFLINE=yes` is set before
    importing `pysr`, so juliapkg cannot fetch anything either.

    PySR searches expressions itself: the term library is not used.

    **Arguments:**

    - `options`: keyword arguments for `pysr.PySRRegressor` (defaults: 40 iterations,
      operators + - * /, deterministic serial search, no progress output).
    - `allow_download`: let juliapkg download Julia packages (off by default).
    """

    options: dict = eqx.field(default_factory=dict)
    allow_download: bool = eqx.field(static=True, default=False)
    uses_library: ClassVar[bool] = False

    def __check_init__(self):
        if importlib.util.find_spec("pysr") is None:
            raise BackendUnavailableError(
                "backend PySR() needs the optional package `pysr`, which is not installed "
                "(it also needs a Julia runtime); use the built-in STLSQ() backend."
            )
        exe = os.environ.get("PYTHON_JULIAPKG_EXE")
        if exe and shutil.which(exe) is None:
            raise BackendUnavailableError(
                f"backend PySR(): PYTHON_JULIAPKG_EXE={exe!r} is not an executable Julia; "
                "point it at a Julia binary or unset it."
            )
        if julia_executable() is None:
            raise BackendUnavailableError(
                "backend PySR() needs a Julia runtime, and none was found (no `julia` on "
                "PATH, PYTHON_JULIAPKG_EXE unset). sciml does not download one: install "
                "Julia 1.10+ with PySR's packages and retry, or use the built-in STLSQ() "
                "backend."
            )

    def regress(self, inputs, targets, terms, *, eps=None):
        if not self.allow_download:
            os.environ.setdefault("PYTHON_JULIAPKG_OFFLINE", "yes")
        import pysr

        options = dict(
            niterations=40,
            binary_operators=["+", "-", "*", "/"],
            deterministic=True,
            parallelism="serial",
            random_state=0,
            progress=False,
            verbosity=0,
        )
        options.update(self.options)
        names = list(terms.names)
        rename = {n: sympy.Symbol(n) for n in names}
        fits = []
        for k in range(targets.shape[1]):
            model = pysr.PySRRegressor(**options)
            model.fit(inputs, targets[:, k], variable_names=names)
            expr = sympy.sympify(model.sympy())
            expr = expr.xreplace({s: rename.get(s.name, s) for s in expr.free_symbols})
            fits.append(BackendFit(expression=expr, info={"model": model}))
        return fits
