"""Hidden-term PINNs for ODEs: known physics plus a network for the unknown part.

Podina, Eastman & Kohandel, "A PINN approach to symbolic differential operator
discovery with sparse data" (2022; "UPINN"): a surrogate y(t) fits sparse noisy data,
and its time derivative must equal the known right-hand side plus a hidden network
h(y). The hidden network is then named as a formula (`sciml.symbolic.discover`), the
formula is plugged back into the ODE and its coefficients re-fitted against the data
through a diffrax solve (`HiddenTermODE.closed_form`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..nn import MLP


def _float_dtype():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


class Surrogate(eqx.Module):
    """y(t) = mean + scale * net(2 (t - t0) / (t1 - t0) - 1): a network of time.

    The normalisation constants come from the data and are not trained.
    """

    net: MLP
    mean: Array
    scale: Array
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __call__(self, t):
        z = 2 * (t - self.t0) / (self.t1 - self.t0) - 1
        mean, scale = jax.lax.stop_gradient((self.mean, self.scale))
        return mean + scale * self.net(z)


class HiddenTerm(eqx.Module):
    """h(y) = out_scale * net((y - in_mean) / in_scale): the learned hidden term.

    Call it on one state of shape `(n,)`; it returns shape `(n,)`, with zeros in the
    components that have no hidden term.
    """

    net: MLP
    in_mean: Array
    in_scale: Array
    out_scale: Array

    def __call__(self, y):
        in_mean, in_scale, out_scale = jax.lax.stop_gradient(
            (self.in_mean, self.in_scale, self.out_scale)
        )
        return out_scale * self.net((y - in_mean) / in_scale)


class HiddenTermModel(eqx.Module):
    """What `HiddenTermODE.model` returns and `sciml.fit` trains.

    - `surrogate(t)`: the state at time `t` (shape `(n,)`).
    - `hidden(y)`: the learned hidden term, a JAX callable of the state.
    """

    surrogate: Surrogate
    hidden: HiddenTerm

    def __call__(self, t):
        return self.surrogate(t)


class ClosedFormODE(eqx.Module):
    """y' = known(t, y) + term(y), solved by diffrax from a trainable initial state.

    Built by `HiddenTermODE.closed_form(term)`; the arrays of `term` (e.g. the
    coefficients of a `sciml.symbolic.SymbolicFunction`) and `y0` train with
    `sciml.fit(model, problem.closed_form_loss, ...)`.
    """

    term: Callable
    y0: Array
    known: Callable = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    solver: diffrax.AbstractSolver = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)

    def rhs(self, t, y, args):
        return self.known(t, y) + self.term(y)

    def __call__(self, ts):
        """States at the (increasing) times `ts`, shape `(len(ts), n)`."""
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(self.rhs),
            self.solver,
            t0=self.t0,
            t1=ts[-1],
            dt0=None,
            y0=self.y0,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
            max_steps=16384,
            throw=False,
        )
        # A candidate formula can blow up; a failed solve gives NaN, which a line search
        # rejects as a trial point and `sciml.fit` reports if it is ever accepted.
        return jnp.where(sol.result == diffrax.RESULTS.successful, sol.ys, jnp.nan)


class HiddenTermODE(eqx.Module):
    """A hidden-term ODE problem: y' = known(t, y) + h(y), h unknown, from sparse data.

    **Arguments:**

    - `known`: the known right-hand side `known(t, y) -> (n,)`, a JAX function.
    - `t_obs`: observation times, shape `(k,)`, strictly increasing.
    - `y_obs`: observations, shape `(k, n)`; NaN marks an unobserved entry.
    - `t_span`: `(t0, t1)`, the interval the physics is enforced on; it must contain
      `t_obs`.
    - `hidden_components`: which components of y' have a hidden term (indices;
      default all). The others are known exactly.
    - `collocation`: physics points drawn per step (uniform in `t_span`, fresh every
      step from the loss key).
    - `data_weight`: weight of the data misfit against the (normalised) residual. The
      default 100 is what made low-noise recovery work in the UPINN reproduction.
    - `surrogate_width`, `surrogate_depth`, `hidden_width`, `hidden_depth`: network
      sizes; `activation`: their activation.

    Data and residual are normalised per component (by the data's spread and by the
    spread over the time span), so the default weights hold across problems.

    **Use:**

    ```python
    problem = sciml.pinn.HiddenTermODE(known, t_obs, y_obs, t_span=(0.0, 3.0))
    model = problem.model(key=key)
    result = sciml.fit(model, problem.loss, optax.adam(3e-3), steps=20000, key=key)
    h = result.model.hidden       # the learned hidden term, a function of the state
    ```
    """

    known: Callable = eqx.field(static=True)
    t_obs: Array
    y_obs: Array
    mask: Array
    t_span: tuple[float, float] = eqx.field(static=True)
    hidden_components: tuple[int, ...] = eqx.field(static=True)
    collocation: int = eqx.field(static=True)
    data_weight: float = eqx.field(static=True)
    surrogate_width: int = eqx.field(static=True)
    surrogate_depth: int = eqx.field(static=True)
    hidden_width: int = eqx.field(static=True)
    hidden_depth: int = eqx.field(static=True)
    activation: Callable = eqx.field(static=True)
    y_mean: Array
    y_scale: Array
    rate: Array

    def __init__(
        self,
        known: Callable,
        t_obs,
        y_obs,
        *,
        t_span: tuple[float, float],
        hidden_components: Sequence[int] | None = None,
        collocation: int = 256,
        data_weight: float = 100.0,
        surrogate_width: int = 48,
        surrogate_depth: int = 3,
        hidden_width: int = 32,
        hidden_depth: int = 2,
        activation: Callable = jnp.tanh,
    ):
        if not callable(known):
            raise TypeError(
                f"HiddenTermODE: `known` must be a function known(t, y), got {known!r}."
            )
        t_obs = np.asarray(t_obs, dtype=float)
        y_obs = np.asarray(y_obs, dtype=float)
        if t_obs.ndim != 1:
            raise ValueError(f"HiddenTermODE: `t_obs` must have shape (k,), got {t_obs.shape}.")
        if y_obs.ndim == 1:
            raise ValueError(
                f"HiddenTermODE: `y_obs` must have shape (k, n), got {y_obs.shape}; for a "
                "scalar ODE pass y_obs[:, None]."
            )
        if y_obs.ndim != 2 or y_obs.shape[0] != t_obs.shape[0]:
            raise ValueError(
                f"HiddenTermODE: `y_obs` has shape {y_obs.shape} but `t_obs` has "
                f"{t_obs.shape[0]} times; y_obs must be (len(t_obs), n)."
            )
        if not np.all(np.isfinite(t_obs)):
            raise ValueError("HiddenTermODE: `t_obs` contains NaN or inf.")
        steps = np.diff(t_obs)
        if np.any(steps == 0):
            i = int(np.flatnonzero(steps == 0)[0])
            raise ValueError(
                f"HiddenTermODE: `t_obs` has the duplicate time {t_obs[i]} (entries {i} and "
                f"{i + 1}); merge or average duplicate measurements."
            )
        if np.any(steps < 0):
            i = int(np.flatnonzero(steps < 0)[0])
            raise ValueError(
                f"HiddenTermODE: `t_obs` must be increasing, but t_obs[{i}] = {t_obs[i]} > "
                f"t_obs[{i + 1}] = {t_obs[i + 1]}; sort the observations by time."
            )
        observed = np.isfinite(y_obs)
        if not observed.any():
            raise ValueError("HiddenTermODE: `y_obs` is all NaN: there is nothing to fit.")
        if np.any(np.isinf(y_obs)):
            raise ValueError("HiddenTermODE: `y_obs` contains inf; mark missing entries with NaN.")
        a, b = (float(v) for v in t_span)
        if not a < b:
            raise ValueError(
                f"HiddenTermODE: `t_span` must be (t0, t1) with t0 < t1, got {t_span}."
            )
        if t_obs[0] < a or t_obs[-1] > b:
            raise ValueError(
                f"HiddenTermODE: observation times [{t_obs[0]}, {t_obs[-1]}] fall outside "
                f"`t_span` {t_span}; widen t_span to cover them."
            )
        n = y_obs.shape[1]
        if hidden_components is None:
            hidden_components = tuple(range(n))
        hidden_components = tuple(int(i) for i in hidden_components)
        if not hidden_components or any(not 0 <= i < n for i in hidden_components):
            raise ValueError(
                f"HiddenTermODE: `hidden_components` must be indices in [0, {n}), got "
                f"{hidden_components}."
            )
        for name, value in (("collocation", collocation), ("surrogate_width", surrogate_width),
                            ("hidden_width", hidden_width)):
            if int(value) < 1:
                raise ValueError(f"HiddenTermODE: `{name}` must be >= 1, got {value}.")
        dtype = _float_dtype()
        mean = np.array([np.mean(y_obs[observed[:, j], j]) if observed[:, j].any() else 0.0
                         for j in range(n)])
        # Check the known right-hand side once: shape and finiteness at the data (an
        # unobserved entry takes its component's mean).
        y_probe = np.where(observed, y_obs, mean[None, :])
        try:
            t0_, y0_ = jnp.asarray(t_obs[0], dtype), jnp.asarray(y_probe[0], dtype)
            out = jax.eval_shape(known, t0_, y0_)
        except Exception as e:
            raise ValueError(
                f"HiddenTermODE: calling known(t, y) with y of shape ({n},) failed: {e}"
            ) from e
        if getattr(out, "shape", None) != (n,):
            raise ValueError(
                f"HiddenTermODE: known(t, y) must return shape ({n},) like y, got "
                f"{getattr(out, 'shape', type(out).__name__)}."
            )
        values = jax.vmap(known)(jnp.asarray(t_obs, dtype), jnp.asarray(y_probe, dtype))
        if not bool(jnp.all(jnp.isfinite(values))):
            raise ValueError("HiddenTermODE: known(t, y) is NaN or inf at the observed states.")

        spread = np.array([np.std(y_obs[observed[:, j], j]) if observed[:, j].sum() > 1 else 0.0
                           for j in range(n)])
        spread = np.where(spread > 0, spread, np.maximum(np.abs(mean), 1.0))
        self.known = known
        self.t_obs = jnp.asarray(t_obs, dtype)
        self.y_obs = jnp.asarray(np.nan_to_num(y_obs), dtype)
        self.mask = jnp.asarray(observed, dtype)
        self.t_span = (a, b)
        self.hidden_components = hidden_components
        self.collocation = int(collocation)
        self.data_weight = float(data_weight)
        self.surrogate_width = int(surrogate_width)
        self.surrogate_depth = int(surrogate_depth)
        self.hidden_width = int(hidden_width)
        self.hidden_depth = int(hidden_depth)
        self.activation = activation
        self.y_mean = jnp.asarray(mean, dtype)
        self.y_scale = jnp.asarray(spread, dtype)
        # Size of y' per component, from finite differences of the data (the residual
        # and the hidden term are measured in it); spread / duration where that fails.
        rate = np.asarray(spread) / (b - a)
        for j in range(n):
            ok = observed[:, j]
            if ok.sum() >= 3:
                d = np.gradient(y_obs[ok, j], t_obs[ok])
                if np.std(d) > 0:
                    rate[j] = np.sqrt(np.mean(d**2))
        self.rate = jnp.asarray(rate, dtype)

    @property
    def n(self) -> int:
        return self.y_obs.shape[1]

    def model(self, *, key: PRNGKeyArray) -> HiddenTermModel:
        """A fresh surrogate and hidden network for this problem."""
        skey, hkey = jax.random.split(key)
        net = MLP(
            "scalar", self.n, self.surrogate_width, self.surrogate_depth,
            activation=self.activation, key=skey,
        )
        surrogate = Surrogate(net, self.y_mean, self.y_scale, *self.t_span)
        hidden_net = MLP(
            self.n, self.n, self.hidden_width, self.hidden_depth,
            activation=self.activation, key=hkey,
        )
        out = np.zeros(self.n)
        rate = np.asarray(self.rate)
        out[list(self.hidden_components)] = rate[list(self.hidden_components)]
        out = jnp.asarray(out, self.y_mean.dtype)
        hidden = HiddenTerm(hidden_net, self.y_mean, self.y_scale, out)
        return HiddenTermModel(surrogate, hidden)

    def residual(self, model: HiddenTermModel, t):
        """y'(t) - known(t, y) - h(y) at one time, normalised per component."""
        y, dy = jax.jvp(model.surrogate, (t,), (jnp.ones_like(t),))
        rate = jax.lax.stop_gradient(self.rate)
        return (dy - self.known(t, y) - model.hidden(y)) / rate

    def loss(self, model: HiddenTermModel, batch, *, key):
        """`data_weight` x normalised data misfit + mean squared normalised residual."""
        del batch
        a, b = self.t_span
        t = jax.random.uniform(key, (self.collocation,), self.t_obs.dtype, a, b)
        t = jnp.concatenate([t, self.t_obs])
        r = jax.vmap(lambda ti: self.residual(model, ti))(t)
        residual = jnp.mean(r**2)
        pred = jax.vmap(model.surrogate)(self.t_obs)
        misfit = ((pred - self.y_obs) / self.y_scale[None, :]) ** 2 * self.mask
        data = jnp.sum(misfit) / jnp.sum(self.mask)
        return self.data_weight * data + residual, {"data": data, "residual": residual}

    def trajectory_error(self, predict: Callable, ts, reference) -> float:
        """Relative L2 error of `predict(ts)` (shape (len(ts), n)) against `reference`."""
        pred = np.asarray(predict(jnp.asarray(ts, self.t_obs.dtype)))
        reference = np.asarray(reference)
        return float(np.linalg.norm(pred - reference) / np.linalg.norm(reference))

    def closed_form(
        self,
        term: Callable,
        *,
        y0=None,
        solver: diffrax.AbstractSolver = diffrax.Tsit5(),
        rtol: float = 1e-8,
        atol: float = 1e-10,
    ) -> ClosedFormODE:
        """The ODE with the hidden term replaced by `term` (e.g. `discovery.jax_fn`).

        `term(y)` must return the full hidden-term vector (shape `(n,)`). The initial
        state `y0` defaults to the first observation (NaN entries from `y_obs`' mean).
        Fit its coefficients with `sciml.fit(model, problem.closed_form_loss, ...)`.
        """
        if y0 is None:
            y0 = jnp.where(self.mask[0] > 0, self.y_obs[0], self.y_mean)
        y0 = jnp.asarray(y0, self.y_obs.dtype)
        if y0.shape != (self.n,):
            raise ValueError(f"closed_form: `y0` must have shape ({self.n},), got {y0.shape}.")
        try:
            out = jax.eval_shape(term, y0)
        except Exception as e:
            raise ValueError(f"closed_form: calling term(y) failed: {e}") from e
        if getattr(out, "shape", None) != (self.n,):
            raise ValueError(
                f"closed_form: term(y) must return shape ({self.n},), got "
                f"{getattr(out, 'shape', None)}."
            )
        return ClosedFormODE(term, y0, self.known, float(self.t_obs[0]), solver, rtol, atol)

    def closed_form_loss(self, model: ClosedFormODE, batch, *, key):
        """Normalised misfit of the closed-form ODE's trajectory to the data."""
        del batch, key
        pred = model(self.t_obs)
        misfit = ((pred - self.y_obs) / self.y_scale[None, :]) ** 2 * self.mask
        return jnp.sum(misfit) / jnp.sum(self.mask)
