"""Hidden-term PINNs for 1-D space x time: known operator plus a network for the rest.

The PDE version of `HiddenTermODE` (Podina, Eastman & Kohandel, "A PINN approach to
symbolic differential operator discovery with sparse data", 2022): a surrogate
u(x, t) fits sparse noisy sensors, and its time derivative must equal the known part
of the right-hand side plus a hidden network h of local quantities (u, and optionally
u_x, u_xx, x, t):

    u_t = known(d) + h(u, u_x, ...)      d = Derivatives(x, t, u, u_x, u_xx)

After training, `sciml.symbolic.discover(model.hidden, problem.hidden_samples(model))`
names h as a formula, and `problem.closed_form(formula)` puts it back into the PDE,
solved by the method of lines (second-order finite differences in x, diffrax in t),
so its coefficients can be re-fitted to the sensors with `sciml.fit`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..nn import MLP
from ._derivatives import value_grad_and_second
from ._domains import Interval, SpaceTime
from ._hidden import HiddenTerm, HiddenTermModel, _float_dtype
from ._losses import weighted_sum
from ._samplers import AbstractSampler, Halton, Uniform


class Derivatives(NamedTuple):
    """The local quantities at one point `(x, t)` that a known operator, a hidden term or
    a boundary condition may use: `x`, `t`, `u`, `u_x`, `u_xx` (scalars; arrays of the
    grid inside the method-of-lines solve). Write a known operator with them, e.g.
    `lambda d: 0.01 * d.u_xx`.
    """

    x: Array
    t: Array
    u: Array
    u_x: Array
    u_xx: Array


_FIELDS = Derivatives._fields


def local_derivatives(u: Callable, x, t) -> tuple[Derivatives, Array]:
    """`(Derivatives(x, t, u, u_x, u_xx), u_t)` of a field `u(x, t)` at one point.

    One forward-mode `jvp` of `value_and_grad` along x gives u, (u_x, u_t) and u_xx
    together (see `value_grad_and_second`).
    """
    p = jnp.stack([jnp.asarray(x), jnp.asarray(t)])
    value, grad, uxx = value_grad_and_second(lambda q: u(q[0], q[1]), p, 0)
    return Derivatives(p[0], p[1], value, grad[0], uxx), grad[1]


# ----------------------------------------------------------------------------------
# Boundary conditions (at both ends of the space interval)


class AbstractBoundary(eqx.Module):
    """A boundary condition at both ends of the space interval.

    Used twice: as a soft residual in the PINN loss, and as the ghost-node rule of the
    method-of-lines solve in `HiddenTermPDE.closed_form`.
    """

    @abc.abstractmethod
    def residual(self, d: Derivatives) -> Array:
        """Zero where the condition holds, at one boundary point (in units of u)."""

    @abc.abstractmethod
    def pad(self, u: Array, x: Array, t: Array, dx: Array) -> Array:
        """The grid values `u` (n,) with one ghost node added at each end, (n + 2,)."""

    def fix(self, du: Array, x: Array, t: Array) -> Array:
        """Adjusts the time derivative on the grid (e.g. at Dirichlet nodes)."""
        return du

    def start(self, u0: Array, x: Array, t0: Array) -> Array:
        """The initial grid values the solve starts from (e.g. Dirichlet ends set)."""
        return u0


class Neumann(AbstractBoundary):
    """Zero flux, `u_x = 0`, at both ends (mirror ghost nodes in the finite differences).

    **Arguments:**

    - `length`: the residual is `u_x * length`, in units of u; `HiddenTermPDE` passes
      the width of the space interval (default 1).
    """

    length: float = eqx.field(static=True, default=1.0)

    def residual(self, d):
        return d.u_x * self.length

    def pad(self, u, x, t, dx):
        return jnp.concatenate([u[1:2], u, u[-2:-1]])


class Dirichlet(AbstractBoundary):
    """Prescribed values `u = value(x, t)` at both ends.

    **Arguments:**

    - `value`: a float, or a function `value(x, t) -> scalar` (x is the end point).
    """

    value: Callable | float = 0.0

    def _g(self, x, t):
        if callable(self.value):
            return self.value(x, t)
        return jnp.asarray(self.value, jnp.result_type(x))

    def residual(self, d):
        return d.u - self._g(d.x, d.t)

    def pad(self, u, x, t, dx):
        # The end nodes carry the boundary values; the ghosts only keep shapes (the end
        # nodes' time derivatives are replaced in `fix`).
        return jnp.concatenate([u[:1], u, u[-1:]])

    def fix(self, du, x, t):
        def dg(xe):
            return jax.jvp(lambda s: self._g(xe, s), (t,), (jnp.ones_like(t),))[1]

        return du.at[0].set(dg(x[0])).at[-1].set(dg(x[-1]))

    def start(self, u0, x, t0):
        # `fix` only keeps the ends moving with g; they must start on it too (an initial
        # profile that disagrees at the ends, u0 = 1 with u = 0 there, the textbook heat
        # problem, otherwise kept its end values for ever).
        left, right = self.values(x, t0)
        return u0.at[0].set(left).at[-1].set(right)

    def values(self, x, t):
        """`value` at the two ends `x[0]`, `x[-1]` of a grid."""
        return self._g(x[0], t), self._g(x[-1], t)


# ----------------------------------------------------------------------------------
# Surrogate and closed form


class FieldSurrogate(eqx.Module):
    """u(x, t) = mean + scale * net(z): a network of space and time scaled to [-1, 1]^2.

    The normalisation constants come from the data and are not trained.
    """

    net: MLP
    mean: Array
    scale: Array
    x_span: tuple[float, float] = eqx.field(static=True)
    t_span: tuple[float, float] = eqx.field(static=True)

    def __call__(self, x, t):
        (a, b), (t0, t1) = self.x_span, self.t_span
        z = jnp.stack([2 * (x - a) / (b - a) - 1, 2 * (t - t0) / (t1 - t0) - 1])
        mean, scale = jax.lax.stop_gradient((self.mean, self.scale))
        return mean + scale * self.net(z)


def method_of_lines(
    rhs: Callable,
    u0: Array,
    x: Array,
    ts: Array,
    boundary: AbstractBoundary,
    *,
    t0=None,
    solver: diffrax.AbstractSolver = diffrax.Tsit5(),
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 100_000,
) -> Array:
    """Solves `u_t = rhs(d)` on an equispaced grid by second-order finite differences.

    **Arguments:**

    - `rhs`: `rhs(d) -> scalar` at one point, `d` a `Derivatives`; it is vmapped over
      the grid.
    - `u0`: initial values on the grid, shape `(n,)`.
    - `x`: the equispaced grid, shape `(n,)`, ends included.
    - `ts`: increasing output times.
    - `t0`: the time of `u0` (default `ts[0]`), at most `ts[0]`.
    - `boundary`: the `AbstractBoundary` that sets the ghost nodes.
    - `solver`, `rtol`, `atol`, `max_steps`: the diffrax time integration.

    **Returns:**

    The solution on the grid at `ts`, shape `(len(ts), n)`; NaN if the solve failed.
    """
    x = jnp.asarray(x)
    dx = x[1] - x[0]

    def field(t, u, args):
        up = boundary.pad(u, x, t, dx)
        ux = (up[2:] - up[:-2]) / (2 * dx)
        uxx = (up[2:] - 2 * u + up[:-2]) / dx**2
        d = Derivatives(x, jnp.broadcast_to(t, x.shape), u, ux, uxx)
        du = jax.vmap(rhs)(d)
        return boundary.fix(du, x, t)

    t0 = ts[0] if t0 is None else t0
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver,
        t0=t0,
        t1=ts[-1],
        dt0=None,
        y0=boundary.start(jnp.asarray(u0), x, jnp.asarray(t0, x.dtype)),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=False,
    )
    # A candidate formula can blow up: NaN is what a line search rejects.
    return jnp.where(sol.result == diffrax.RESULTS.successful, sol.ys, jnp.nan)


class ClosedFormPDE(eqx.Module):
    """u_t = known(d) + term(inputs), solved by the method of lines on a fixed grid.

    Built by `HiddenTermPDE.closed_form(term, ...)`; the arrays of `term` (e.g. the
    coefficients of a `sciml.symbolic.SymbolicFunction`) train with
    `sciml.fit(model, problem.closed_form_loss, ...)`. The initial profile `u0` is held
    fixed.
    """

    term: Callable
    u0: Array
    x: Array
    known: Callable = eqx.field(static=True)
    hidden_inputs: tuple[str, ...] = eqx.field(static=True)
    boundary: AbstractBoundary
    t0: float = eqx.field(static=True)
    solver: diffrax.AbstractSolver = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)

    def rhs(self, d: Derivatives):
        inputs = jnp.stack([getattr(d, name) for name in self.hidden_inputs])
        return self.known(d) + self.term(inputs)

    def __call__(self, ts):
        """The solution on the grid `self.x` at increasing times `ts` (from `t0`):
        shape `(len(ts), len(x))`."""
        ts = jnp.asarray(ts, self.u0.dtype)
        u0, x = jax.lax.stop_gradient((self.u0, self.x))
        return method_of_lines(
            self.rhs, u0, x, ts, self.boundary, t0=self.t0,
            solver=self.solver, rtol=self.rtol, atol=self.atol,
        )

    def _at(self, x, times, index):
        rows = self(times)[index]
        return jax.vmap(lambda xi, row: jnp.interp(xi, self.x, row))(x, rows)

    def at(self, x, t):
        """The solution at scattered points: `x`, `t` of shape `(k,)` -> `(k,)`
        (linear interpolation in x between grid nodes). Concrete `t` only (not under
        `jit`): the solve saves at its distinct values."""
        times, index = np.unique(np.asarray(t), return_inverse=True)
        dtype = self.u0.dtype
        return self._at(jnp.asarray(x, dtype), jnp.asarray(times, dtype),
                        jnp.asarray(index.ravel()))


# ----------------------------------------------------------------------------------
# The problem


def _group_slopes(x, t, u):
    """RMS of finite-difference slopes between neighbouring sensors read at one time."""
    slopes = []
    for ti in np.unique(t):
        sel = t == ti
        if sel.sum() < 3:
            continue
        order = np.argsort(x[sel])
        xs, us = x[sel][order], u[sel][order]
        dx = np.diff(xs)
        ok = dx > 0
        slopes.append(np.diff(us)[ok] / dx[ok])
    if not slopes:
        return None
    s = np.concatenate(slopes)
    rms = float(np.sqrt(np.mean(s**2))) if s.size else 0.0
    return rms if rms > 0 else None


class HiddenTermPDE(eqx.Module):
    """A hidden-term PDE problem in 1-D space x time, from sparse noisy sensors.

    u_t = known(d) + h(d.u, ...), with `h` unknown, learned as a network of the local
    quantities named in `hidden_inputs`.

    **Arguments:**

    - `known`: the known part of u_t, `known(d) -> scalar` at one point, where `d` is a
      `Derivatives` with fields `x, t, u, u_x, u_xx` (e.g. `lambda d: 0.01 * d.u_xx`).
    - `x_obs`, `t_obs`, `u_obs`: sensor readings, arrays of one common shape (any;
      flattened); NaN in `u_obs` marks a missing reading.
    - `x_span`, `t_span`: `(a, b)` and `(t0, t1)`, where the physics is enforced; they
      must contain every sensor.
    - `hidden_inputs`: the names of the quantities `h` depends on, from `x, t, u, u_x,
      u_xx` (default `("u",)`, a reaction term; `("u", "u_x")` for a transport term).
      `model.hidden` takes them stacked in this order, shape `(len(hidden_inputs),)`.
    - `initial`: the initial profile `u0(x) -> scalar` if it is known (a soft
      constraint on `t = t0`), else None.
    - `boundary`: the boundary condition if known, e.g. `Neumann()` or
      `Dirichlet(0.0)`, else None.
    - `collocation`: physics points per step (randomly shifted Halton points, fresh
      every step; the sensor points are added).
    - `data_weight`: weight of the data misfit against the residual (default 100, as
      in `HiddenTermODE`); `initial_weight` (default: `data_weight`),
      `boundary_weight` (default 1).
    - `surrogate_width`, `surrogate_depth`, `hidden_width`, `hidden_depth`,
      `activation`: the networks.

    The loss is made dimensionless: the data misfit by the spread of the readings, the
    residual by spread / (t1 - t0) (the rate at which u changes by its spread over the
    time span), and the hidden network's inputs by their own scales (u by the readings'
    mean and spread; u_x by the RMS slope between sensors read at one time when there
    are such, else spread / (b - a)); so the defaults carry over between problems.

    **Use:**

    ```python
    problem = sciml.pinn.HiddenTermPDE(lambda d: 0.01 * d.u_xx, x, t, u,
                                       x_span=(0, 1), t_span=(0, 2),
                                       boundary=sciml.pinn.Neumann())
    model = problem.model(key=key)
    result = sciml.fit(model, problem.loss, optax.adam(3e-3), steps=8000, key=key)
    found = sciml.symbolic.discover(result.model.hidden,
                                    problem.hidden_samples(result.model),
                                    names=problem.hidden_inputs)
    ```
    """

    known: Callable = eqx.field(static=True)
    x_obs: Array
    t_obs: Array
    u_obs: Array
    mask: Array
    x_span: tuple[float, float] = eqx.field(static=True)
    t_span: tuple[float, float] = eqx.field(static=True)
    hidden_inputs: tuple[str, ...] = eqx.field(static=True)
    initial: Callable | None = eqx.field(static=True)
    boundary: AbstractBoundary | None
    collocation: int = eqx.field(static=True)
    initial_points: int = eqx.field(static=True)
    boundary_points: int = eqx.field(static=True)
    data_weight: float = eqx.field(static=True)
    initial_weight: float = eqx.field(static=True)
    boundary_weight: float = eqx.field(static=True)
    sampler: AbstractSampler
    surrogate_width: int = eqx.field(static=True)
    surrogate_depth: int = eqx.field(static=True)
    hidden_width: int = eqx.field(static=True)
    hidden_depth: int = eqx.field(static=True)
    activation: Callable = eqx.field(static=True)
    u_mean: Array
    u_scale: Array
    rate: Array
    in_mean: Array
    in_scale: Array
    obs_times: Array
    obs_index: Array

    def __init__(
        self,
        known: Callable,
        x_obs,
        t_obs,
        u_obs,
        *,
        x_span: tuple[float, float],
        t_span: tuple[float, float],
        hidden_inputs: Sequence[str] = ("u",),
        initial: Callable | None = None,
        boundary: AbstractBoundary | None = None,
        collocation: int = 1024,
        initial_points: int = 128,
        boundary_points: int = 128,
        data_weight: float = 100.0,
        initial_weight: float | None = None,
        boundary_weight: float = 1.0,
        sampler: AbstractSampler = Halton(),
        surrogate_width: int = 48,
        surrogate_depth: int = 3,
        hidden_width: int = 24,
        hidden_depth: int = 2,
        activation: Callable = jnp.tanh,
    ):
        name = "HiddenTermPDE"
        if not callable(known):
            raise TypeError(f"{name}: `known` must be a function known(d), got {known!r}.")
        if isinstance(hidden_inputs, str):
            raise TypeError(
                f"{name}: `hidden_inputs` must be a sequence of names, got the string "
                f"{hidden_inputs!r}; write ({hidden_inputs!r},)."
            )
        hidden_inputs = tuple(hidden_inputs)
        if not hidden_inputs:
            raise ValueError(f"{name}: `hidden_inputs` is empty; give e.g. ('u',).")
        unknown = [h for h in hidden_inputs if h not in _FIELDS]
        if unknown or len(set(hidden_inputs)) != len(hidden_inputs):
            raise ValueError(
                f"{name}: `hidden_inputs` must be distinct names from {_FIELDS}, got "
                f"{hidden_inputs}."
            )
        if initial is not None and not callable(initial):
            raise TypeError(f"{name}: `initial` must be a function u0(x) or None, got {initial!r}.")
        if boundary is not None and not isinstance(boundary, AbstractBoundary):
            raise TypeError(
                f"{name}: `boundary` must be a boundary condition such as sciml.pinn.Neumann() "
                f"or sciml.pinn.Dirichlet(0.0), or None; got {boundary!r}."
            )
        if not isinstance(sampler, AbstractSampler):
            raise TypeError(f"{name}: `sampler` must be a sciml.pinn sampler, got {sampler!r}.")
        x_obs, t_obs, u_obs = (np.asarray(v, dtype=float) for v in (x_obs, t_obs, u_obs))
        if not x_obs.shape == t_obs.shape == u_obs.shape:
            raise ValueError(
                f"{name}: `x_obs`, `t_obs` and `u_obs` must have one shape (one entry per "
                f"reading), got {x_obs.shape}, {t_obs.shape} and {u_obs.shape}; for sensors "
                "on a grid pass np.meshgrid(x, t) and u of that shape."
            )
        x_obs, t_obs, u_obs = x_obs.ravel(), t_obs.ravel(), u_obs.ravel()
        if x_obs.size == 0:
            raise ValueError(f"{name}: there are no readings (empty `u_obs`).")
        if not (np.all(np.isfinite(x_obs)) and np.all(np.isfinite(t_obs))):
            raise ValueError(f"{name}: `x_obs` and `t_obs` must be finite (NaN/inf found).")
        if np.any(np.isinf(u_obs)):
            raise ValueError(f"{name}: `u_obs` contains inf; mark missing readings with NaN.")
        observed = np.isfinite(u_obs)
        if not observed.any():
            raise ValueError(f"{name}: `u_obs` is all NaN: there is nothing to fit.")
        spans = []
        for label, span in (("x_span", x_span), ("t_span", t_span)):
            lo, hi = (float(v) for v in span)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"{name}: `{label}` must be (lo, hi) with lo < hi, got {span}.")
            spans.append((lo, hi))
        (a, b), (t0, t1) = spans
        for label, v, (lo, hi), span in (("x_obs", x_obs, (a, b), "x_span"),
                                         ("t_obs", t_obs, (t0, t1), "t_span")):
            out = (v < lo) | (v > hi)
            if out.any():
                i = int(np.flatnonzero(out)[0])
                raise ValueError(
                    f"{name}: {int(out.sum())} readings lie outside `{span}` {(lo, hi)} (first: "
                    f"{label}[{i}] = {v[i]}); widen {span} or drop those readings."
                )
        for label, value in (("collocation", collocation), ("initial_points", initial_points),
                             ("boundary_points", boundary_points),
                             ("surrogate_width", surrogate_width),
                             ("hidden_width", hidden_width)):
            if int(value) < 1:
                raise ValueError(f"{name}: `{label}` must be >= 1, got {value}.")

        dtype = _float_dtype()
        uo = u_obs[observed]
        mean = float(np.mean(uo))
        spread = float(np.std(uo)) if uo.size > 1 else 0.0
        spread = spread if spread > 0 else max(abs(mean), 1.0)
        slope = _group_slopes(x_obs[observed], t_obs[observed], uo) or spread / (b - a)
        scales = {
            "x": ((a + b) / 2, (b - a) / 2),
            "t": ((t0 + t1) / 2, (t1 - t0) / 2),
            "u": (mean, spread),
            "u_x": (0.0, slope),
            "u_xx": (0.0, slope / (b - a)),
        }
        # The known operator must give a finite scalar at the readings (derivatives
        # probed at zero: we only check it runs and returns the right shape).
        probe = Derivatives(*(jnp.zeros((), dtype) for _ in _FIELDS))
        try:
            out = jax.eval_shape(known, probe)
        except Exception as e:
            raise ValueError(
                f"{name}: calling known(d) on one point failed: {e}. `known` takes a "
                "sciml.pinn.Derivatives (fields x, t, u, u_x, u_xx) and returns a scalar."
            ) from e
        if getattr(out, "shape", None) != ():
            raise ValueError(
                f"{name}: known(d) must return a scalar per point, got shape "
                f"{getattr(out, 'shape', type(out).__name__)}."
            )
        zeros = jnp.zeros(int(observed.sum()), dtype)
        d = Derivatives(jnp.asarray(x_obs[observed], dtype), jnp.asarray(t_obs[observed], dtype),
                        jnp.asarray(uo, dtype), zeros, zeros)
        if not bool(jnp.all(jnp.isfinite(jax.vmap(known)(d)))):
            raise ValueError(f"{name}: known(d) is NaN or inf at the readings.")
        if initial is not None:
            try:
                out = jax.eval_shape(initial, jnp.zeros((), dtype))
            except Exception as e:
                raise ValueError(f"{name}: calling initial(x) on one point failed: {e}") from e
            if getattr(out, "shape", None) != ():
                raise ValueError(
                    f"{name}: initial(x) must return a scalar, got shape "
                    f"{getattr(out, 'shape', None)}."
                )
        if isinstance(boundary, Neumann):
            boundary = Neumann(b - a)

        self.known = known
        self.x_obs = jnp.asarray(x_obs, dtype)
        self.t_obs = jnp.asarray(t_obs, dtype)
        self.u_obs = jnp.asarray(np.nan_to_num(u_obs), dtype)
        self.mask = jnp.asarray(observed, dtype)
        self.x_span, self.t_span = (a, b), (t0, t1)
        self.hidden_inputs = hidden_inputs
        self.initial = initial
        self.boundary = boundary
        self.collocation = int(collocation)
        self.initial_points = int(initial_points)
        self.boundary_points = int(boundary_points)
        self.data_weight = float(data_weight)
        self.initial_weight = float(data_weight if initial_weight is None else initial_weight)
        self.boundary_weight = float(boundary_weight)
        self.sampler = sampler
        self.surrogate_width = int(surrogate_width)
        self.surrogate_depth = int(surrogate_depth)
        self.hidden_width = int(hidden_width)
        self.hidden_depth = int(hidden_depth)
        self.activation = activation
        self.u_mean = jnp.asarray(mean, dtype)
        self.u_scale = jnp.asarray(spread, dtype)
        self.rate = jnp.asarray(spread / (t1 - t0), dtype)
        self.in_mean = jnp.asarray([scales[h][0] for h in hidden_inputs], dtype)
        self.in_scale = jnp.asarray([scales[h][1] for h in hidden_inputs], dtype)
        # Distinct reading times and each reading's row among them, for the closed form.
        times, index = np.unique(t_obs, return_inverse=True)
        self.obs_times = jnp.asarray(times, dtype)
        self.obs_index = jnp.asarray(index.ravel(), jnp.int32)

    @property
    def domain(self) -> SpaceTime:
        return SpaceTime(Interval(*self.x_span), *self.t_span)

    def model(self, *, key: PRNGKeyArray) -> HiddenTermModel:
        """A fresh surrogate u(x, t) and hidden network h for this problem.

        `model.surrogate(x, t)` is the field; `model.hidden(inputs)` the hidden term,
        a scalar function of the stacked `hidden_inputs`.
        """
        skey, hkey = jax.random.split(key)
        net = MLP(2, "scalar", self.surrogate_width, self.surrogate_depth,
                  activation=self.activation, key=skey)
        surrogate = FieldSurrogate(net, self.u_mean, self.u_scale, self.x_span, self.t_span)
        hidden_net = MLP(len(self.hidden_inputs), "scalar", self.hidden_width,
                         self.hidden_depth, activation=self.activation, key=hkey)
        hidden = HiddenTerm(hidden_net, self.in_mean, self.in_scale, self.rate)
        return HiddenTermModel(surrogate, hidden)

    def hidden_input(self, d: Derivatives) -> Array:
        """The hidden term's input at one point: `hidden_inputs` stacked, shape `(m,)`."""
        return jnp.stack([getattr(d, h) for h in self.hidden_inputs])

    def residual(self, model: HiddenTermModel, x, t):
        """`(u_t - known(d) - h(...)) / rate` at one point."""
        d, ut = local_derivatives(model.surrogate, x, t)
        rate = jax.lax.stop_gradient(self.rate)
        return (ut - self.known(d) - model.hidden(self.hidden_input(d))) / rate

    def _blocks(self, model: HiddenTermModel, key: PRNGKeyArray) -> dict:
        """Per term, `(vector, count)`: the term is `Σ vector² / count`."""
        rkey, ikey, bkey = jax.random.split(key, 3)
        scale = jax.lax.stop_gradient(self.u_scale)
        pts = self.domain.sample(rkey, self.collocation, self.sampler)
        xs = jnp.concatenate([pts[:, 0], self.x_obs])
        ts = jnp.concatenate([pts[:, 1], self.t_obs])
        r = jax.vmap(lambda xi, ti: self.residual(model, xi, ti))(xs, ts)
        pred = jax.vmap(model.surrogate)(self.x_obs, self.t_obs)
        misfit = (pred - self.u_obs) / scale * jnp.sqrt(self.mask)
        out = {"data": (misfit, jnp.sum(self.mask)), "residual": (r, r.size)}
        if self.initial is not None:
            p0 = self.domain.sample_initial(ikey, self.initial_points, self.sampler)
            u = jax.vmap(model.surrogate)(p0[:, 0], p0[:, 1])
            u0 = jax.vmap(self.initial)(p0[:, 0])
            out["initial"] = ((u - u0) / scale, u.size)
        if self.boundary is not None:
            pb = self.domain.sample_boundary(bkey, self.boundary_points, Uniform())
            rb = jax.vmap(
                lambda xi, ti: self.boundary.residual(local_derivatives(model.surrogate, xi, ti)[0])
            )(pb[:, 0], pb[:, 1])
            out["boundary"] = (rb / scale, rb.size)
        return out

    def _weights(self, names) -> dict:
        weights = {"data": self.data_weight, "initial": self.initial_weight,
                   "boundary": self.boundary_weight}
        return {k: w for k, w in weights.items() if k in names}

    def terms(self, model: HiddenTermModel, key: PRNGKeyArray) -> dict[str, Array]:
        """The unweighted loss terms: `data`, `residual` and, when given, `initial` and
        `boundary` (all dimensionless mean squares)."""
        return {k: jnp.sum(v**2) / n for k, (v, n) in self._blocks(model, key).items()}

    def loss(self, model: HiddenTermModel, batch, *, key: PRNGKeyArray):
        """Weighted sum of `terms` (for `sciml.fit`); the terms go to the history."""
        del batch
        terms = self.terms(model, key)
        return weighted_sum(terms, self._weights(terms))

    def loss_residuals(self, model: HiddenTermModel, batch, *, key: PRNGKeyArray):
        """`loss` as residuals, for `sciml.GaussNewton`: every term's vector scaled by
        `√(2 weight / count)`, concatenated, so that `½‖r‖² = loss`; and the same named
        terms."""
        del batch
        blocks = self._blocks(model, key)
        weights = self._weights(blocks)
        terms = {k: jnp.sum(v**2) / n for k, (v, n) in blocks.items()}
        out = jnp.concatenate([
            jnp.ravel(v) * jnp.sqrt(2 * weights.get(k, 1.0) / n) for k, (v, n) in blocks.items()
        ])
        return out, terms

    def stages(self, steps: int, *, lbfgs_steps: int = 500, learning_rate: float = 3e-3,
               key: PRNGKeyArray) -> list:
        """The default training recipe, for `sciml.fit(model, problem.loss, stages, ...)`.

        Adam on collocation points drawn afresh every step, its learning rate halved six
        times over `steps`; then `lbfgs_steps` of L-BFGS on one fixed set drawn from
        `key` (a line search needs the same loss at every trial point).
        """
        import optax

        from ..train import Stage

        schedule = optax.exponential_decay(learning_rate, max(int(steps) // 6, 1), 0.5,
                                           end_value=learning_rate / 300)
        fixed = key

        def lbfgs_loss(model, batch, *, key):
            del key
            return self.loss(model, batch, key=fixed)

        out = [Stage(optax.adam(schedule), int(steps))]
        if lbfgs_steps:
            out.append(Stage(optax.lbfgs(), int(lbfgs_steps), loss=lbfgs_loss))
        return out

    def discover(self, model: HiddenTermModel, *, library=None, backend=None, nx: int = 64,
                 nt: int = 64):
        """Names the learned hidden term: `sciml.symbolic.discover` on `hidden_samples`.

        **Arguments:**

        - `model`: the trained model.
        - `library`: the candidate terms (default `polynomials(2)` of `hidden_inputs`).
        - `backend`: default `STLSQ(threshold=0.05)`: a term must carry 5 % of the
          hidden term's size. The network is itself only accurate to a few per cent,
          and smaller terms are its error, which cross-validated selection tends to
          keep (pass `STLSQ()` for that).
        - `nx`, `nt`: the sample grid (see `hidden_samples`).

        **Returns:**

        A `sciml.symbolic.Discovery` in the names `hidden_inputs`.
        """
        from .. import symbolic

        library = symbolic.polynomials(2) if library is None else library
        backend = symbolic.STLSQ(threshold=0.05) if backend is None else backend
        return symbolic.discover(model.hidden, self.hidden_samples(model, nx, nt),
                                 names=self.hidden_inputs, library=library, backend=backend)

    def hidden_samples(self, model: HiddenTermModel, nx: int = 64, nt: int = 64) -> np.ndarray:
        """The hidden term's inputs along the learned field, on an `nx` x `nt` grid of
        the domain: shape `(nx * nt, len(hidden_inputs))`, to pass to
        `sciml.symbolic.discover` (the inputs h was trained on)."""
        x = jnp.linspace(*self.x_span, nx, dtype=self.u_obs.dtype)
        t = jnp.linspace(*self.t_span, nt, dtype=self.u_obs.dtype)
        X, T = (v.ravel() for v in jnp.meshgrid(x, t))
        return np.asarray(_hidden_samples(self, model, X, T))

    def solution_error(self, predict: Callable, x, t, reference) -> float:
        """Relative L2 error of `predict` on the grid `x` (nx,) x `t` (nt,) against
        `reference` (nt, nx).

        `predict` is a `HiddenTermModel` (its surrogate is evaluated), a
        `ClosedFormPDE` (interpolated onto `x`) or a function `(x (k,), t (k,)) -> (k,)`.
        """
        X, T = np.meshgrid(np.asarray(x), np.asarray(t))
        dtype = self.u_obs.dtype
        X, T = jnp.asarray(X.ravel(), dtype), jnp.asarray(T.ravel(), dtype)
        if isinstance(predict, HiddenTermModel):
            pred = jax.vmap(predict.surrogate)(X, T)
        elif isinstance(predict, ClosedFormPDE):
            pred = predict.at(X, T)
        else:
            pred = predict(X, T)
        reference = np.asarray(reference)
        pred = np.asarray(pred).reshape(reference.shape)
        return float(np.linalg.norm(pred - reference) / np.linalg.norm(reference))

    def closed_form(
        self,
        term: Callable,
        *,
        model: HiddenTermModel | None = None,
        u0=None,
        nx: int = 129,
        solver: diffrax.AbstractSolver = diffrax.Tsit5(),
        rtol: float = 1e-7,
        atol: float = 1e-9,
    ) -> ClosedFormPDE:
        """The PDE with the hidden term replaced by `term` (e.g. `discovery.jax_fn`).

        **Arguments:**

        - `term`: `term(inputs) -> scalar`, inputs the stacked `hidden_inputs`.
        - `model`: a trained model; its surrogate gives the initial profile when
          neither `u0` nor the problem's `initial` does, and the end values
          (Dirichlet) when the problem has no `boundary`.
        - `u0`: the initial profile on the grid, shape `(nx,)` (default: `initial`,
          else the surrogate at t0).
        - `nx`: grid points of the method-of-lines solve (equispaced, ends included).
        - `solver`, `rtol`, `atol`: the diffrax time integration.

        Fit its coefficients with `sciml.fit(closed, problem.closed_form_loss, ...)`.
        """
        if int(nx) < 3:
            raise ValueError(f"closed_form: `nx` must be >= 3, got {nx}.")
        dtype = self.u_obs.dtype
        x = jnp.linspace(*self.x_span, int(nx), dtype=dtype)
        t0 = self.t_span[0]
        need_model = (u0 is None and self.initial is None) or self.boundary is None
        if need_model and not isinstance(model, HiddenTermModel):
            raise ValueError(
                "closed_form: the problem has no known "
                + ("initial profile" if u0 is None and self.initial is None else "boundary")
                + "; pass the trained `model=` (its surrogate supplies it) or give it "
                "explicitly."
            )
        if u0 is None:
            if self.initial is not None:
                u0 = jax.vmap(self.initial)(x)
            else:
                u0 = jax.vmap(model.surrogate)(x, jnp.full_like(x, t0))
        u0 = jnp.asarray(u0, dtype)
        if u0.shape != x.shape:
            raise ValueError(f"closed_form: `u0` must have shape ({nx},), got {u0.shape}.")
        boundary = self.boundary
        if boundary is None:
            boundary = Dirichlet(_SurrogateEnds(model.surrogate))
        try:
            out = jax.eval_shape(term, jnp.zeros((len(self.hidden_inputs),), dtype))
        except Exception as e:
            raise ValueError(f"closed_form: calling term(inputs) failed: {e}") from e
        if getattr(out, "shape", None) != ():
            raise ValueError(
                f"closed_form: term(inputs) must return a scalar, got shape "
                f"{getattr(out, 'shape', None)}."
            )
        return ClosedFormPDE(term, u0, x, self.known, self.hidden_inputs, boundary,
                             float(t0), solver, float(rtol), float(atol))

    def closed_form_loss(self, model: ClosedFormPDE, batch, *, key):
        """Normalised misfit of the closed-form PDE's solution to the readings."""
        del batch, key
        pred = model._at(self.x_obs, self.obs_times, self.obs_index)
        misfit = ((pred - self.u_obs) / self.u_scale) ** 2 * self.mask
        return jnp.sum(misfit) / jnp.sum(self.mask)

    def refit_closed_form(self, closed: ClosedFormPDE, *, steps: int, key, progress=False):
        """Re-fits the closed-form model's coefficients to the readings (L-BFGS).

        Returns the re-fitted model, or `None` if the solve diverged on the way (the
        formula then does not describe the data).
        """
        import optax

        from ..train import DivergenceError, fit

        try:
            return fit(closed, self.closed_form_loss, optax.lbfgs(), steps=steps, key=key,
                       progress=progress).model
        except DivergenceError:
            return None


@eqx.filter_jit
def _hidden_samples(problem, model, X, T):
    # Module level, with the problem as an argument: its arrays are traced, so one
    # program serves every call of the same shapes and no call's data stay cached.
    def one(xi, ti):
        return problem.hidden_input(local_derivatives(model.surrogate, xi, ti)[0])

    return jax.vmap(one)(X, T)


class _SurrogateEnds(eqx.Module):
    """`value(x, t)` for a `Dirichlet` condition read off a trained surrogate."""

    surrogate: FieldSurrogate

    def __call__(self, x, t):
        return jax.lax.stop_gradient(self.surrogate)(x, t)
