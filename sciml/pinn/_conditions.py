"""Boundary and initial conditions as named loss terms.

A condition draws its points from a boundary piece (`domain.boundary(part=...,
where=...)`, or a whole domain's boundary) and gives a per-point residual, so it plugs
into `PDELoss(constraints={name: condition})` like a `Constraint`, into
`grad_norm_weights`/`weighted_sum` through `loss`, and into `causal_loss` through
`residuals` (time is the last coordinate of a `SpaceTime` point).

For a vector field `u(x) -> (m,)`, `component` picks the output a condition is on.
Normal derivatives are one forward-mode `jvp` along the boundary normal.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ._domains import AbstractDomain, Boundary, SpaceTime
from ._geometry import check_n
from ._samplers import AbstractSampler, Halton


def _as_boundary(where, name):
    if isinstance(where, AbstractDomain):
        return where.boundary()
    if not isinstance(where, Boundary):
        raise TypeError(
            f"sciml.pinn.{name}: `boundary` must be a domain or a piece of one "
            f"(domain.boundary(part=..., where=...)), got {type(where).__name__}."
        )
    return where


def _data(value, x):
    """A float, or a function of the point."""
    if callable(value):
        return value(x)
    return jnp.asarray(value, x.dtype)


def _component(u, component):
    if component is None:
        return u

    def uc(x):
        return u(x)[component]

    return uc


def _field(u, x, component, name):
    """The scalar field a condition is on: `u` itself, or one output of a vector field."""
    shape = jax.eval_shape(u, x).shape
    if component is None and shape != ():
        raise ValueError(
            f"sciml.pinn.{name}: the model returns shape {shape} at one point; say which "
            "output the condition is on with `component=`."
        )
    if component is not None and not (len(shape) == 1 and -shape[0] <= component < shape[0]):
        raise ValueError(
            f"sciml.pinn.{name}: `component={component}` but the model returns shape "
            f"{shape} at one point."
        )
    return _component(u, component)


class AbstractCondition(eqx.Module):
    """A condition imposed softly: mean squared residual on points drawn each step.

    Subclasses give `residual(model, x)` at one point. `sample(key, n)` and `points`
    make any condition usable as a `Constraint` in `PDELoss`.
    """

    points: eqx.AbstractVar[int]
    sampler: eqx.AbstractVar[AbstractSampler]

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, n: int) -> Array:
        """`n` points the condition is imposed at, `(n, d)`."""

    @abc.abstractmethod
    def residual(self, model: Callable, x: Array) -> Array:
        """Zero where the condition holds, at one point (a scalar or a small vector)."""

    def residuals(self, model: Callable, x: Array) -> Array:
        """Per-point residuals at the points `x`, `(n,)` or `(n, k)`."""
        return jax.vmap(lambda p: self.residual(model, p))(x)

    def loss(self, model: Callable, x: Array) -> Array:
        """Mean squared residual at the points `x` (the term `PDELoss` records)."""
        return jnp.mean(self.residuals(model, x) ** 2)


def _count(points, name):
    check_n(points, f"{name}: points")
    return int(points)


class AbstractBoundaryCondition(AbstractCondition):
    """A condition on a piece of a boundary."""

    boundary: eqx.AbstractVar[Boundary]

    def sample(self, key, n):
        return self.boundary.sample(key, n, self.sampler)


class DirichletBC(AbstractBoundaryCondition):
    """`u = value` on a boundary piece.

    **Arguments:**

    - `boundary`: a domain (its whole boundary) or `domain.boundary(part=..., where=...)`.
    - `value`: a float or `value(x) -> scalar`.
    - `points`: points per step.
    - `component`: which output of a vector field (None for a scalar field).
    - `sampler`: how points are drawn (default randomly shifted Halton).
    """

    boundary: Boundary
    value: Callable | float
    points: int = eqx.field(static=True)
    component: int | None = eqx.field(static=True)
    sampler: AbstractSampler

    def __init__(self, boundary, value=0.0, points=128, *, component=None, sampler=Halton()):
        self.boundary = _as_boundary(boundary, "DirichletBC")
        self.value = value
        self.points = _count(points, "DirichletBC")
        self.component = component
        self.sampler = sampler

    def residual(self, model, x):
        return _field(model, x, self.component, "DirichletBC")(x) - _data(self.value, x)


def normal_derivative(u: Callable, x: Array, n: Array) -> tuple[Array, Array]:
    """`(u(x), n . grad u(x))` by one forward-mode `jvp` along `n`."""
    return jax.jvp(u, (x,), (n.astype(x.dtype),))


class NeumannBC(AbstractBoundaryCondition):
    """`du/dn = flux` on a boundary piece (`n` the domain's outward normal).

    **Arguments:** as `DirichletBC`, with `flux` (a float or `flux(x)`) for `value`.
    """

    boundary: Boundary
    flux: Callable | float
    points: int = eqx.field(static=True)
    component: int | None = eqx.field(static=True)
    sampler: AbstractSampler

    def __init__(self, boundary, flux=0.0, points=128, *, component=None, sampler=Halton()):
        self.boundary = _as_boundary(boundary, "NeumannBC")
        self.flux = flux
        self.points = _count(points, "NeumannBC")
        self.component = component
        self.sampler = sampler

    def residual(self, model, x):
        u = _field(model, x, self.component, "NeumannBC")
        _, dn = normal_derivative(u, x, self.boundary.normal(x))
        return dn - _data(self.flux, x)


class RobinBC(AbstractBoundaryCondition):
    """`alpha u + beta du/dn = value` on a boundary piece.

    E.g. a heat-transfer condition `du/dn = h (u_env - u)` is `alpha = h, beta = 1,
    value = h u_env`.

    **Arguments:** as `DirichletBC`, plus `alpha`, `beta` (floats or functions of x).
    """

    boundary: Boundary
    alpha: Callable | float
    beta: Callable | float
    value: Callable | float
    points: int = eqx.field(static=True)
    component: int | None = eqx.field(static=True)
    sampler: AbstractSampler

    def __init__(
        self, boundary, alpha, beta, value=0.0, points=128, *, component=None,
        sampler=Halton(),
    ):
        self.boundary = _as_boundary(boundary, "RobinBC")
        self.alpha = alpha
        self.beta = beta
        self.value = value
        self.points = _count(points, "RobinBC")
        self.component = component
        self.sampler = sampler

    def residual(self, model, x):
        u = _field(model, x, self.component, "RobinBC")
        value, dn = normal_derivative(u, x, self.boundary.normal(x))
        return _data(self.alpha, x) * value + _data(self.beta, x) * dn - _data(self.value, x)


class PeriodicBC(AbstractBoundaryCondition):
    """`u(x) = u(x + shift)` (and the derivative along `shift` too) for x on a piece.

    E.g. periodic in x on `[0, L] x [0, 1]`: `PeriodicBC(box.boundary(where=lambda x:
    x[0] < 1e-9), shift=(L, 0))`.

    **Arguments:**

    - `boundary`: the piece the points are drawn from (one of the two matched sides).
    - `shift`: the vector from a point to its partner on the other side.
    - `points`: points per step.
    - `derivative`: also match the first derivative along `shift` (default True).
    - `component`, `sampler`: as `DirichletBC`.
    """

    boundary: Boundary
    shift: tuple[float, ...] = eqx.field(static=True)
    points: int = eqx.field(static=True)
    derivative: bool = eqx.field(static=True)
    component: int | None = eqx.field(static=True)
    sampler: AbstractSampler

    def __init__(
        self, boundary, shift, points=128, *, derivative=True, component=None,
        sampler=Halton(),
    ):
        self.boundary = _as_boundary(boundary, "PeriodicBC")
        shift = tuple(float(s) for s in np.atleast_1d(np.asarray(shift, np.float64)))
        if len(shift) != self.boundary.dim or not any(shift):
            raise ValueError(
                f"sciml.pinn.PeriodicBC: `shift` must be a nonzero vector of "
                f"{self.boundary.dim} floats (the domain's dimension), got {shift}."
            )
        self.shift = shift
        self.points = _count(points, "PeriodicBC")
        self.derivative = bool(derivative)
        self.component = component
        self.sampler = sampler

    def residual(self, model, x):
        u = _field(model, x, self.component, "PeriodicBC")
        s = jnp.asarray(self.shift, x.dtype)
        if not self.derivative:
            return u(x) - u(x + s)
        e = s / jnp.linalg.norm(s)
        a, da = normal_derivative(u, x, e)
        b, db = normal_derivative(u, x + s, e)
        return jnp.stack([a - b, da - db])


class InitialCondition(AbstractCondition):
    """`u(x, t0) = value(x, t0)` on a `SpaceTime`'s initial slice.

    **Arguments:**

    - `domain`: a `SpaceTime`.
    - `value`: a float or `value(x) -> scalar` (x includes time, last).
    - `points`, `component`, `sampler`: as `DirichletBC`.
    """

    domain: SpaceTime
    value: Callable | float
    points: int = eqx.field(static=True)
    component: int | None = eqx.field(static=True)
    sampler: AbstractSampler

    def __init__(self, domain, value=0.0, points=128, *, component=None, sampler=Halton()):
        if not isinstance(domain, SpaceTime):
            raise TypeError(
                f"sciml.pinn.InitialCondition: `domain` must be a SpaceTime, got "
                f"{type(domain).__name__}."
            )
        self.domain = domain
        self.value = value
        self.points = _count(points, "InitialCondition")
        self.component = component
        self.sampler = sampler

    def sample(self, key, n):
        return self.domain.sample_initial(key, n, self.sampler)

    def residual(self, model, x):
        u = _field(model, x, self.component, "InitialCondition")
        return u(x) - _data(self.value, x)
