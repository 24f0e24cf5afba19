"""A discovered formula as a trainable JAX function."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy
from jaxtyping import Array

from ._library import _symbols, check_names


class SymbolicFunction(eqx.Module):
    """A formula with its numeric constants as a trainable array leaf.

    Each output is a SymPy template in the input symbols and parameter symbols
    (SymPy `Dummy`s, so they never clash with input names); `coefficients[i]` is the
    value of `parameters[i]`. Calling the module evaluates the formula in JAX
    (jit/vmap/grad-able), so it can be plugged into a known equation and its
    coefficients re-fitted with `sciml.fit`; `.expression` then gives the formula with
    the current coefficients.

    **Arguments:**

    - `templates`: one SymPy expression per output, in the inputs and `parameters`.
    - `parameters`: the parameter symbols, in the order of `coefficients`.
    - `coefficients`: their values, shape `(len(parameters),)`.
    - `names`: the input names (the order of the input vector).
    - `scalar`: if True (one output), calls return a scalar instead of shape `(1,)`.
    """

    coefficients: Array
    templates: tuple[sympy.Expr, ...] = eqx.field(static=True)
    parameters: tuple[sympy.Symbol, ...] = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)
    scalar: bool = eqx.field(static=True)
    _fn: object = eqx.field(static=True, repr=False)

    def __init__(self, templates, parameters, coefficients, names, *, scalar=False):
        self.names = check_names(names)
        self.templates = tuple(sympy.sympify(t) for t in templates)
        self.parameters = tuple(parameters)
        coefficients = np.asarray(coefficients, dtype=np.float64)
        if coefficients.shape != (len(self.parameters),):
            raise ValueError(
                f"SymbolicFunction: `coefficients` has shape {coefficients.shape}, expected "
                f"({len(self.parameters)},) (one value per parameter)."
            )
        if scalar and len(self.templates) != 1:
            raise ValueError("SymbolicFunction(scalar=True) needs exactly one template.")
        self.coefficients = jnp.asarray(coefficients)
        self.scalar = bool(scalar)
        self._fn = sympy.lambdify(
            _symbols(self.names) + self.parameters, list(self.templates), modules="jax"
        )

    @classmethod
    def linear(cls, terms: Sequence[Sequence[sympy.Expr]], coefficients, names, *, scalar=False):
        """The function whose output `i` is `sum_j coefficients[i][j] * terms[i][j]`.

        **Arguments:**

        - `terms`: for each output, its terms (SymPy expressions).
        - `coefficients`: for each output, one value per term.
        - `names`: the input names.
        - `scalar`: return a scalar (one output only).

        **Returns:**

        A `SymbolicFunction` with one parameter per (output, term).
        """
        templates, params, values, k = [], [], [], 0
        for ts, cs in zip(terms, coefficients, strict=True):
            if len(ts) != len(cs):
                raise ValueError("SymbolicFunction.linear: one coefficient per term.")
            expr = sympy.Integer(0)
            for t, c in zip(ts, cs):
                p = sympy.Dummy(f"p{k}")
                k += 1
                params.append(p)
                values.append(float(c))
                expr = expr + p * t
            templates.append(expr)
        return cls(templates, params, np.array(values, dtype=np.float64), names, scalar=scalar)

    @classmethod
    def from_expressions(cls, expressions: Sequence[sympy.Expr], names, *, scalar=False):
        """Parametrises arbitrary expressions: every floating-point constant is a parameter.

        Integers and rationals (e.g. exponents) stay fixed.
        """
        params, values = [], []

        def parametrise(e):
            # Each occurrence is its own parameter: equal constants (0.5 x + 0.5 y) are
            # not tied together (one parameter per distinct value could not fit 2x - y).
            if isinstance(e, sympy.Float):
                params.append(sympy.Dummy(f"p{len(params)}"))
                values.append(float(e))
                return params[-1]
            if not e.args:
                return e
            return e.func(*(parametrise(a) for a in e.args))

        templates = [parametrise(sympy.sympify(e)) for e in expressions]
        return cls(templates, params, np.array(values, dtype=np.float64), names, scalar=scalar)

    def __call__(self, x):
        """Evaluates the formula at one input `x` of shape `(len(names),)`.

        **Returns:**

        A scalar if `scalar`, else shape `(number of outputs,)`.
        """
        x = jnp.asarray(x)
        d = len(self.names)
        if x.shape == () and d == 1:
            x = x[None]
        if x.shape != (d,):
            raise ValueError(
                f"SymbolicFunction of inputs {self.names!r} expects one example of shape "
                f"({d},), got shape {x.shape}; use jax.vmap for a batch."
            )
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(self.coefficients.dtype)
        coefficients = self.coefficients.astype(x.dtype)
        values = self._fn(
            *(x[i] for i in range(d)), *(coefficients[j] for j in range(len(self.parameters)))
        )
        outs = [jnp.broadcast_to(jnp.asarray(v, dtype=x.dtype), ()) for v in values]
        return outs[0] if self.scalar else jnp.stack(outs)

    def _substituted(self):
        values = np.asarray(jax.device_get(self.coefficients), dtype=np.float64)
        subs = {p: sympy.Float(float(v)) for p, v in zip(self.parameters, values)}
        return tuple(t.xreplace(subs) for t in self.templates)

    @property
    def expression(self):
        """The formula with the current coefficients: a SymPy expression, or a tuple of
        them for several outputs."""
        exprs = self._substituted()
        return exprs[0] if self.scalar else exprs

    @property
    def latex(self):
        """LaTeX of `expression` (a string, or a tuple of strings)."""
        exprs = self._substituted()
        out = tuple(sympy.latex(e) for e in exprs)
        return out[0] if self.scalar else out
