"""Term libraries: candidate terms as SymPy expressions and as feature columns.

A library is a small configuration object. Given the names of the inputs it produces
its candidate terms as SymPy expressions (`library.terms(names)`), and `library.build(names)`
turns them into a `TermSet` that evaluates them as feature columns, either in JAX for one
example (`features(x)`, jit/vmap/grad-able) or in numpy float64 for a whole batch
(`design(X)`, what the sparse regression solves on).
"""

from __future__ import annotations

import abc
import itertools
import keyword
import math
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import sympy


def _symbols(names: Sequence[str]) -> tuple[sympy.Symbol, ...]:
    # Plain symbols without assumptions, so they compare equal to the ones a user makes
    # with `sympy.symbols("x y")` or `sympy.sympify("x*y")`.
    return tuple(sympy.Symbol(n) for n in names)


def _number(value: float) -> sympy.Expr:
    """An exact SymPy integer when `value` is integral, a Float otherwise."""
    value = float(value)
    if value.is_integer():
        return sympy.Integer(int(value))
    return sympy.Float(value)


def check_names(names, *, argument: str = "names") -> tuple[str, ...]:
    """Validates input names: a sequence of distinct Python identifiers."""
    if isinstance(names, str):
        raise TypeError(
            f"`{argument}` must be a sequence of input names such as ('x', 'y'), got the "
            f"string {names!r}; write ({names!r},) for a single input."
        )
    names = tuple(names)
    for n in names:
        if not isinstance(n, str) or not n.isidentifier() or keyword.iskeyword(n):
            raise ValueError(
                f"`{argument}` must hold Python identifiers (they become SymPy symbols), "
                f"got {n!r} in {names!r}."
            )
    if len(set(names)) != len(names):
        raise ValueError(f"`{argument}` must be distinct, got {names!r}.")
    return names


def _select(inputs, names: tuple[str, ...], owner: str) -> tuple[str, ...]:
    if inputs is None:
        return names
    unknown = [n for n in inputs if n not in names]
    if unknown:
        raise ValueError(
            f"{owner}(inputs={tuple(inputs)!r}) names unknown inputs {tuple(unknown)!r}; the "
            f"inputs are {names!r}. Use only those names (or inputs=None for all)."
        )
    return tuple(inputs)


class AbstractLibrary(eqx.Module):
    """A set of candidate terms over named inputs.

    Subclasses implement `terms(names)`. Libraries add: `lib1 + lib2` is their union.
    """

    @abc.abstractmethod
    def terms(self, names: Sequence[str]) -> tuple[sympy.Expr, ...]:
        """The candidate terms as SymPy expressions in the symbols `sympy.Symbol(name)`.

        **Arguments:**

        - `names`: the input names, in the order of the input vector.

        **Returns:**

        A tuple of SymPy expressions (possibly with repeats, which `build` removes).
        """

    def build(self, names: Sequence[str]) -> TermSet:
        """Builds the evaluable term set for inputs named `names`.

        **Arguments:**

        - `names`: the input names, in the order of the input vector.

        **Returns:**

        A `TermSet`. Raises `ValueError` if the library has no terms or a term uses a
        symbol that is not an input name.
        """
        return TermSet(self.terms(check_names(names)), names, library=self)

    def __add__(self, other):
        if not isinstance(other, AbstractLibrary):
            return NotImplemented
        return combine(self, other)


class Polynomials(AbstractLibrary):
    """All monomials of the inputs up to a total degree, cross terms included.

    Terms are ordered by degree, then lexicographically in the input order
    (1, x, y, x^2, x y, y^2, ...).

    **Arguments:**

    - `degree`: the highest total degree (a non-negative int).
    - `bias`: include the constant term 1.
    - `interactions`: include cross terms such as x*y; if False, only pure powers.
    - `inputs`: names of the inputs to use (default: all).
    """

    degree: int = eqx.field(static=True)
    bias: bool = eqx.field(static=True, default=True)
    interactions: bool = eqx.field(static=True, default=True)
    inputs: tuple[str, ...] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if isinstance(self.degree, bool) or not isinstance(self.degree, int) or self.degree < 0:
            raise ValueError(
                f"polynomials(degree=...) must be a non-negative int, got {self.degree!r}."
            )

    def terms(self, names):
        symbols = _symbols(_select(self.inputs, tuple(names), "polynomials"))
        out = [sympy.Integer(1)] if self.bias else []
        for d in range(1, self.degree + 1):
            if self.interactions:
                combos = itertools.combinations_with_replacement(symbols, d)
                out.extend(sympy.Mul(*c) for c in combos)
            else:
                out.extend(s**d for s in symbols)
        return tuple(out)


class Trigonometric(AbstractLibrary):
    """sin(w x) and cos(w x) for each input x and each frequency w.

    **Arguments:**

    - `frequencies`: the angular frequencies w (positive numbers).
    - `inputs`: names of the inputs to use (default: all).
    """

    frequencies: tuple[float, ...] = eqx.field(static=True, default=(1.0,))
    inputs: tuple[str, ...] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if len(self.frequencies) == 0 or not all(
            math.isfinite(w) and w > 0 for w in self.frequencies
        ):
            raise ValueError(
                f"trigonometric(frequencies=...) must be positive numbers, got "
                f"{self.frequencies!r}."
            )

    def terms(self, names):
        symbols = _symbols(_select(self.inputs, tuple(names), "trigonometric"))
        out = []
        for w in self.frequencies:
            for s in symbols:
                out.append(sympy.sin(_number(w) * s))
                out.append(sympy.cos(_number(w) * s))
        return tuple(out)


class Rational(AbstractLibrary):
    """Saturating and inverse terms x/(c + x) and 1/(c + x) for given constants c.

    These are the Michaelis-Menten / Hill-type terms of kinetics. The constants are
    fixed (sparse regression is linear in the coefficients only); give several to let
    the regression choose.

    **Arguments:**

    - `constants`: the constants c (non-zero numbers).
    - `saturating`: include x/(c + x).
    - `inverse`: include 1/(c + x).
    - `inputs`: names of the inputs to use (default: all).
    """

    constants: tuple[float, ...] = eqx.field(static=True, default=(1.0,))
    saturating: bool = eqx.field(static=True, default=True)
    inverse: bool = eqx.field(static=True, default=True)
    inputs: tuple[str, ...] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if len(self.constants) == 0 or not all(math.isfinite(c) and c != 0 for c in self.constants):
            raise ValueError(
                f"rational(constants=...) must be non-zero numbers, got {self.constants!r}."
            )

    def terms(self, names):
        symbols = _symbols(_select(self.inputs, tuple(names), "rational"))
        out = []
        for c in self.constants:
            for s in symbols:
                if self.saturating:
                    out.append(s / (_number(c) + s))
                if self.inverse:
                    out.append(1 / (_number(c) + s))
        return tuple(out)


class CustomTerms(AbstractLibrary):
    """User-supplied terms: any SymPy expressions (or strings SymPy parses) in the inputs.

    **Arguments:**

    - `expressions`: SymPy expressions or strings such as `"x*exp(-y)"`, written in
      the input names.
    """

    expressions: tuple[sympy.Expr, ...] = eqx.field(static=True)

    def __init__(self, expressions):
        if isinstance(expressions, str | sympy.Basic):
            expressions = (expressions,)
        out = []
        for e in expressions:
            try:
                out.append(sympy.sympify(e))
            except (sympy.SympifyError, TypeError, SyntaxError) as err:
                raise ValueError(
                    f"terms(...) could not read {e!r} as a SymPy expression ({err}); pass "
                    "SymPy expressions or strings such as 'x*exp(-y)'."
                ) from None
        self.expressions = tuple(out)

    def terms(self, names):
        return self.expressions


class CombinedLibrary(AbstractLibrary):
    """The union of several libraries (repeated terms are kept once)."""

    libraries: tuple[AbstractLibrary, ...]

    def terms(self, names):
        return tuple(t for lib in self.libraries for t in lib.terms(names))


def polynomials(degree: int, *, bias: bool = True, interactions: bool = True, inputs=None):
    """All monomials up to total degree `degree` (see `Polynomials`)."""
    return Polynomials(
        degree,
        bias,
        interactions,
        None if inputs is None else check_names(inputs, argument="inputs"),
    )


def trigonometric(frequencies: Sequence[float] = (1.0,), *, inputs=None):
    """sin(w x), cos(w x) for each input and frequency (see `Trigonometric`)."""
    if isinstance(frequencies, int | float):
        frequencies = (frequencies,)
    return Trigonometric(
        tuple(float(w) for w in frequencies),
        None if inputs is None else check_names(inputs, argument="inputs"),
    )


def rational(
    constants: Sequence[float] = (1.0,),
    *,
    saturating: bool = True,
    inverse: bool = True,
    inputs=None,
):
    """x/(c + x) and 1/(c + x) for each input and constant (see `Rational`)."""
    if isinstance(constants, int | float):
        constants = (constants,)
    return Rational(
        tuple(float(c) for c in constants),
        saturating,
        inverse,
        None if inputs is None else check_names(inputs, argument="inputs"),
    )


def terms(*expressions):
    """A library of user-supplied SymPy terms (see `CustomTerms`)."""
    if len(expressions) == 1 and isinstance(expressions[0], list | tuple):
        expressions = tuple(expressions[0])
    return CustomTerms(expressions)


def combine(*libraries: AbstractLibrary):
    """The union of libraries; `lib1 + lib2` does the same."""
    flat = []
    for lib in libraries:
        if not isinstance(lib, AbstractLibrary):
            raise TypeError(
                f"combine(...) takes term libraries (e.g. sciml.symbolic.polynomials(2)), "
                f"got {type(lib).__name__}."
            )
        flat.extend(lib.libraries if isinstance(lib, CombinedLibrary) else (lib,))
    return CombinedLibrary(tuple(flat))


class TermSet:
    """A library built for named inputs: its terms and their evaluation.

    **Attributes:**

    - `names`: the input names; `symbols`: the matching SymPy symbols.
    - `expressions`: the distinct candidate terms, in library order.

    **Methods:**

    - `features(x)`: JAX, one example `x` of shape `(len(names),)` -> `(len(expressions),)`.
    - `design(X)`: numpy float64, `X` of shape `(n, len(names))` -> `(n, len(expressions))`.
    """

    def __init__(self, expressions, names, *, library=None):
        names = check_names(names)
        symbols = _symbols(names)
        unique = []
        for e in expressions:
            e = sympy.sympify(e)
            if e not in unique:
                unique.append(e)
        if not unique:
            raise ValueError(
                f"the term library {library!r} has no terms; give it at least one term "
                "(e.g. polynomials(1), or bias=True)."
            )
        allowed = set(symbols)
        for e in unique:
            unknown = sorted(str(s) for s in e.free_symbols - allowed)
            if unknown:
                raise ValueError(
                    f"the library term {e} uses unknown input names {unknown}; the inputs "
                    f"are {names!r}. Write terms in those names or pass matching `names=`."
                )
            if e.is_number and not e.is_finite:
                raise ValueError(f"the library term {e} is not a finite number.")
        self.names = names
        self.symbols = symbols
        self.expressions = tuple(unique)
        self._jax = sympy.lambdify(symbols, list(self.expressions), modules="jax")
        self._numpy = sympy.lambdify(symbols, list(self.expressions), modules="numpy")

    def __len__(self):
        return len(self.expressions)

    def __repr__(self):
        return f"TermSet(names={self.names!r}, expressions={self.expressions!r})"

    def features(self, x):
        """The feature row of one example `x` (shape `(d,)`), as a JAX array."""
        x = jnp.asarray(x)
        if x.shape != (len(self.names),):
            raise ValueError(
                f"TermSet.features expects one example of shape ({len(self.names)},) for "
                f"inputs {self.names!r}, got shape {x.shape}; vmap over a batch."
            )
        values = self._jax(*(x[i] for i in range(len(self.names))))
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.result_type(float)
        return jnp.stack([jnp.broadcast_to(jnp.asarray(v, dtype=dtype), ()) for v in values])

    def design(self, X) -> np.ndarray:
        """The design matrix (one column per term) of a batch `X` (shape `(n, d)`)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.names):
            raise ValueError(
                f"TermSet.design expects inputs of shape (n, {len(self.names)}) for "
                f"{self.names!r}, got shape {X.shape}."
            )
        with np.errstate(all="ignore"):
            cols = self._numpy(*X.T)
        out = np.stack(
            [np.broadcast_to(np.asarray(c, dtype=np.float64), (X.shape[0],)) for c in cols],
            axis=1,
        )
        bad = ~np.isfinite(out).all(axis=0)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            count = int((~np.isfinite(out[:, j])).sum())
            raise ValueError(
                f"the library term {self.expressions[j]} is not finite at {count} of the "
                f"{X.shape[0]} samples; remove it or choose its constants so it stays finite "
                "on the data."
            )
        return out
