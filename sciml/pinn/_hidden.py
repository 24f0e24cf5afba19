"""Hidden-term PINNs for ODEs: known physics plus a network for the unknown part.

Podina, Eastman & Kohandel, "A PINN approach to symbolic differential operator
discovery with sparse data" (2022; "UPINN"): a surrogate y(t) fits sparse noisy data,
and its time derivative must equal the known right-hand side plus a hidden network
h(y). The hidden network is then named as a formula (`sciml.symbolic.discover`), the
formula is plugged back into the ODE and its coefficients re-fitted against the data
through a diffrax solve (`HiddenTermODE.closed_form`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..nn import MLP


# Most Levenberg-Marquardt steps of one closed-loop fit; it stops earlier once the
# misfit no longer falls (from a least-squares start on the hidden network, after 10 to
# 20 steps).
_CLOSED_LOOP_STEPS = 100


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
    `sciml.fit(model, problem.closed_form_loss, ...)`, or with
    `problem.closed_form_residuals` and `sciml.GaussNewton()`.
    """

    term: Callable
    y0: Array
    known: Callable = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    solver: diffrax.AbstractSolver = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    adjoint: diffrax.AbstractAdjoint = eqx.field(static=True)

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
            adjoint=self.adjoint,
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
    - `data_weight`: weight of the data misfit against the (normalised) residual.
      Default 1: both terms are normalised, so 1 trusts the physics as much as the data.
      A large weight lets the surrogate chase the noise while the hidden network, which
      along one trajectory can absorb any function of time, follows it: on the UPINN
      Lotka-Volterra case (30 points, 1 % noise) weight 100 gave a hidden network 21 % /
      33 % off along the trajectory, weight 1 gave 5 % / 5 %.
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
        data_weight: float = 1.0,
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
        if not (isinstance(data_weight, int | float | np.number) and math.isfinite(data_weight)
                and data_weight >= 0):
            raise ValueError(
                f"HiddenTermODE: `data_weight` must be a finite number >= 0, got "
                f"{data_weight!r}."
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
        r, terms = self.loss_residuals(model, batch, key=key)
        return 0.5 * jnp.sum(r**2), terms

    def loss_residuals(self, model: HiddenTermModel, batch, *, key):
        """`loss` as residuals, for `sciml.GaussNewton`: the scaled data misfits and
        physics residuals, one vector with `½‖r‖² = loss` (each block carries
        `√(2 weight / count)`), and the same named terms."""
        del batch
        a, b = self.t_span
        t = jax.random.uniform(key, (self.collocation,), self.t_obs.dtype, a, b)
        t = jnp.concatenate([t, self.t_obs])
        r = jax.vmap(lambda ti: self.residual(model, ti))(t).ravel()
        pred = jax.vmap(model.surrogate)(self.t_obs)
        misfit = ((pred - self.y_obs) / self.y_scale[None, :] * jnp.sqrt(self.mask)).ravel()
        count = jnp.sum(self.mask)
        terms = {"data": jnp.sum(misfit**2) / count, "residual": jnp.mean(r**2)}
        out = jnp.concatenate([misfit * jnp.sqrt(2 * self.data_weight / count),
                               r * math.sqrt(2 / r.size)])
        return out, terms

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
        adjoint: diffrax.AbstractAdjoint | None = None,
    ) -> ClosedFormODE:
        """The ODE with the hidden term replaced by `term` (e.g. `discovery.jax_fn`).

        `term(y)` must return the full hidden-term vector (shape `(n,)`). The initial
        state `y0` defaults to the first observation (NaN entries from `y_obs`' mean).
        Fit its coefficients with `sciml.fit(model, problem.closed_form_loss, ...)`
        (a gradient method), or with `problem.closed_form_residuals` and
        `sciml.GaussNewton()` (Levenberg-Marquardt; pass
        `adjoint=diffrax.ForwardMode()`: with more readings than coefficients its
        Jacobian is formed in forward mode, which the default adjoint does not support).

        `adjoint` is how diffrax differentiates the solve (default
        `diffrax.RecursiveCheckpointAdjoint()`, reverse mode).
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
        adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
        if not isinstance(adjoint, diffrax.AbstractAdjoint):
            raise TypeError(
                f"closed_form: `adjoint` must be a diffrax adjoint (e.g. "
                f"diffrax.ForwardMode()), got {adjoint!r}."
            )
        return ClosedFormODE(term, y0, self.known, float(self.t_obs[0]), solver, rtol, atol,
                             adjoint)

    def closed_form_loss(self, model: ClosedFormODE, batch, *, key):
        """Normalised misfit of the closed-form ODE's trajectory to the data."""
        r = self.closed_form_residuals(model, batch, key=key)
        return 0.5 * jnp.sum(r**2)

    def closed_form_residuals(self, model: ClosedFormODE, batch, *, key):
        """`closed_form_loss` as residuals for `sciml.GaussNewton`: the normalised
        misfits, flat, with `½‖r‖² = closed_form_loss`."""
        del batch, key
        pred = model(self.t_obs)
        misfit = (pred - self.y_obs) / self.y_scale[None, :] * jnp.sqrt(self.mask)
        return jnp.ravel(misfit) * jnp.sqrt(2 / jnp.sum(self.mask))

    def states(self, model: HiddenTermModel, points: int = 200):
        """States of the surrogate at `points` times spread over the observed times.

        The hidden network is only informed where the data go, so this is where it
        should be read (e.g. by `sciml.symbolic.discover`): along the surrogate's
        trajectory between the first and last observation, not over a box of states.

        **Returns:**

        `(times (points,), states (points, n))`.
        """
        if int(points) < 2:
            raise ValueError(f"states: `points` must be >= 2, got {points}.")
        ts = jnp.linspace(self.t_obs[0], self.t_obs[-1], int(points))
        return ts, jax.vmap(model.surrogate)(ts)

    def identify(
        self,
        model: HiddenTermModel,
        *,
        library=None,
        backend=None,
        names: Sequence[str] | None = None,
        points: int = 200,
        keep: int | None = None,
        rtol: float = 1e-8,
        atol: float = 1e-10,
    ) -> Identification:
        """Names the hidden term: sparse regression on the network, then the data decide.

        1. `sciml.symbolic.discover` regresses the hidden network, sampled along the
           surrogate's trajectory over the observed times (`states`), on `library`.
           The default backend is `STLSQ` with contiguous-block cross-validation
           (`KFold(5, contiguous=True)`): the network's errors are smooth along the
           trajectory, and interleaved folds would accept large cancelling
           coefficients of the (there nearly collinear) library columns.
        2. Closed-loop selection. A combination of supports (one per component, from
           the candidates of the threshold path) is put into the ODE, and its
           coefficients and initial state are fitted to the data through the solver
           (`sciml.GaussNewton`: Levenberg-Marquardt, Jacobian through the solver,
           until the misfit stops falling). Its score is the extended BIC of the data
           misfit with one noise variance per component, `sum_i N_i log(RSS_i / N_i) + k log N +
           2 sum_i log C(m, k_i)` (Chen and Chen, Biometrika 2008: the extension
           accounts for the many supports searched). Coordinate descent over the
           components picks the combination (ties: the sparser). The data, not the
           network, have the last word: along one trajectory the library columns are
           nearly collinear, and a few percent of error in the network moves the
           regression's support.

        `identification.term` already carries the coefficients fitted through the ODE;
        `closed_form(identification.term, y0=identification.y0)` with
        `closed_form_loss` re-fits them with `sciml.fit`.

        **Arguments:**

        - `model`: a trained `HiddenTermModel`.
        - `library`: the candidate terms (default `sciml.symbolic.polynomials(2)`).
        - `backend`: a `sciml.symbolic` backend; with one that has no threshold path
          (PySINDy, PySR) its formula is only re-fitted, not selected.
        - `names`: the state names (default `x0, x1, ...`).
        - `points`: samples of the hidden network.
        - `keep`: most supports per hidden component offered to the closed-loop
          selection (default: every support of the threshold path).
        - `rtol`, `atol`: ODE solver tolerances of the closed-loop fits.

        **Returns:**

        An `Identification`.
        """
        from .. import symbolic

        if names is None:
            names = tuple(f"x{i}" for i in range(self.n))
        names = tuple(names)
        if len(names) != self.n:
            raise ValueError(
                f"identify: `names`={names!r} has {len(names)} names for a state of size "
                f"{self.n}."
            )
        if keep is not None and int(keep) < 1:
            raise ValueError(f"identify: `keep` must be >= 1, got {keep}.")
        library = symbolic.polynomials(2) if library is None else library
        if backend is None:
            backend = symbolic.STLSQ(criterion=symbolic.KFold(5, contiguous=True))
        _, states = self.states(model, points)
        # The sparse regression only proposes the path of supports here; the closed-loop
        # re-fit against the data decides among them, so an ill-conditioned library on
        # one trajectory is expected and handled, not a warning to the user.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", symbolic.IllConditionedLibraryWarning)
            discovery = symbolic.discover(model.hidden, states, names=names, library=library,
                                          backend=backend)
        if discovery.terms is None:
            # A free-form backend: no library, no path; re-fit its constants only.
            term = discovery.jax_fn
            fit = _ClosedLoopFit.function(self, term, rtol, atol)
            rss, y0, coefficients = fit.solve(np.asarray(term.coefficients))
            bic = fit.score(rss, np.zeros((self.n, 0), bool), 0) + len(coefficients) * math.log(
                max(int(fit.n_obs.sum()), 1))
            refit = eqx.tree_at(lambda f: f.coefficients, term, jnp.asarray(coefficients))
            return Identification(discovery, refit, y0, discovery.support,
                                  ((discovery.support, rss, bic),))

        terms = symbolic.TermSet(discovery.terms, names)
        design = terms.design(np.asarray(states, np.float64))
        hidden_values = np.asarray(jax.vmap(model.hidden)(states), np.float64)
        per_component = []
        for i in range(self.n):
            if i not in self.hidden_components:
                per_component.append([np.zeros(len(terms), bool)])
                continue
            per_component.append(_candidates(discovery, i, keep))

        fit = _ClosedLoopFit.library(self, terms, rtol, atol)
        m = len(terms)
        results = {}

        def evaluate(combo):
            mask = np.stack(combo)
            if mask.tobytes() not in results:
                start = np.zeros(mask.shape)
                for i, row in enumerate(mask):
                    if row.any():
                        start[i, row] = np.linalg.lstsq(design[:, row], hidden_values[:, i],
                                                        rcond=None)[0]
                rss, y0, coefficients = fit.solve(start, mask)
                score = fit.score(rss, mask, m)
                results[mask.tobytes()] = (score, int(mask.sum()), mask, coefficients, y0, rss)
            return results[mask.tobytes()][:2]

        # Coordinate descent over the components' candidate supports: each sweep tries
        # every candidate of one component with the others held at their best so far.
        current = [options[0] for options in per_component]
        best = evaluate(current)
        for _ in range(4):
            changed = False
            for i, options in enumerate(per_component):
                for option in options:
                    trial = [*current[:i], option, *current[i + 1:]]
                    value = evaluate(trial)
                    if value < best:
                        best, current, changed = value, trial, True
            if not changed:
                break
        table = []
        for score, _, mask, _, _, rss in results.values():
            support = tuple(tuple(t for t, c in zip(terms.expressions, row) if c) for row in mask)
            table.append((support, rss, score))
        _, _, mask, coefficients, y0, _ = results[np.stack(current).tobytes()]
        support = tuple(tuple(t for t, c in zip(terms.expressions, row) if c) for row in mask)
        term = symbolic.SymbolicFunction.linear(
            support, [c[r] for c, r in zip(coefficients, mask)], names
        )
        table.sort(key=lambda row: row[2])
        return Identification(discovery, term, y0, support, tuple(table))


def _candidates(discovery, i, keep):
    """Supports of component `i` (at most `keep`, None: all): the chosen one, then the
    other non-empty candidates of the threshold path by score."""
    info = discovery.details[i]
    chosen = np.asarray(discovery.coefficients[i] != 0)
    out = [chosen]
    candidates = getattr(info, "candidates", None)
    scores = getattr(info, "scores", None)
    if candidates is not None and scores is not None and len(scores) == len(candidates):
        sizes = np.asarray(candidates).sum(axis=1)
        for j in np.lexsort((sizes, np.asarray(scores))):
            if keep is not None and len(out) >= keep:
                break
            c = np.asarray(candidates[j], bool)
            if c.any() and not any(np.array_equal(c, o) for o in out):
                out.append(c)
    # Every single term too: a thresholded path on nearly collinear columns can step
    # from two cancelling terms to the wrong one and never visit the right one alone.
    if keep is None:
        for j in range(len(chosen)):
            c = np.zeros(len(chosen), bool)
            c[j] = True
            if not any(np.array_equal(c, o) for o in out):
                out.append(c)
    return out


@dataclasses.dataclass(frozen=True)
class Identification:
    """What `HiddenTermODE.identify` returns.

    **Attributes:**

    - `discovery`: the `sciml.symbolic.Discovery` of the hidden network.
    - `term`: the selected formula with its coefficients fitted to the data through the
      ODE, a `SymbolicFunction` (`term.expression` is the formula; pass `term` to
      `HiddenTermODE.closed_form`).
    - `y0`: the fitted initial state (at the first observation time).
    - `support`: the selected terms of each component.
    - `candidates`: `(support, rss, score)` of every combination tried, best first;
      `rss` holds each component's sum of squared normalised data misfits, `score` is
      the selection criterion (lower is better).
    """

    discovery: Any
    term: Any
    y0: np.ndarray
    support: tuple
    candidates: tuple


class _LoopParameters(eqx.Module):
    """What a closed-loop fit trains: the initial state and the coefficients; the mask
    of the support is a frozen array, so one compiled program serves every support."""

    y0: Array
    coefficients: Array
    mask: Array


class _Converged:
    """Stops a closed-loop fit when `every` steps lowered the misfit by less than
    `ftol` of it (as MINPACK's `ftol`): converged, or only rejected steps."""

    every = 5
    ftol = 1e-12

    def __call__(self, info):
        loss = info.history["loss"]
        return bool(len(loss) > self.every
                    and loss[-1] >= loss[-1 - self.every] * (1 - self.ftol))


class _ClosedLoopFit:
    """Least squares of the normalised data misfit of y' = known + term through diffrax.

    `sciml.GaussNewton` (Levenberg-Marquardt) on the initial state and the coefficients,
    the Jacobian by forward mode through the solver. The residual multiplies a full
    coefficient vector by the support's mask, so every support runs the same compiled
    steps (the masked coefficients have zero Jacobian columns and never move).
    """

    def __init__(self, problem, residuals, rtol, atol, steps=_CLOSED_LOOP_STEPS):
        del atol
        self.problem = problem
        self.steps = steps
        # Misfits are relative to the data's scale; below ~10 rtol per observation they
        # are the solver's own error, and a score that rewarded them would let solver
        # noise choose the support (clean data picked (x, v, x^2) over the true (v,)).
        self.rss_floor = np.maximum(np.asarray(problem.mask).sum(axis=0), 1) * (10 * rtol) ** 2
        self.n_obs = np.asarray(problem.mask).sum(axis=0)

        def loss(params, batch, *, key):
            del batch, key
            return residuals(params.y0, params.coefficients * params.mask)

        # One loss object per fit, so `sciml.fit` reuses its compiled program.
        self._loss = loss
        self._res = jax.jit(residuals)

    @classmethod
    def library(cls, problem, terms, rtol, atol):
        adjoint = _adjoint(problem, problem.n * len(terms))

        def residuals(y0, coefficients):
            C = coefficients.reshape(problem.n, -1)
            return _misfit(problem, lambda y: C @ terms.features(y), y0, rtol, atol, adjoint)

        return cls(problem, residuals, rtol, atol)

    @classmethod
    def function(cls, problem, term, rtol, atol):
        adjoint = _adjoint(problem, int(np.size(term.coefficients)))

        def residuals(y0, coefficients):
            f = eqx.tree_at(lambda g: g.coefficients, term, coefficients)
            return _misfit(problem, f, y0, rtol, atol, adjoint)

        return cls(problem, residuals, rtol, atol)

    def solve(self, start, mask=None):
        from ..train import DivergenceError, GaussNewton, fit

        problem = self.problem
        n = problem.n
        dtype = problem.y_obs.dtype
        start = np.asarray(start, np.float64)
        mask = np.ones_like(start, bool) if mask is None else np.asarray(mask, bool)
        y0 = jnp.where(problem.mask[0] > 0, problem.y_obs[0], problem.y_mean)
        params = _LoopParameters(
            y0, jnp.asarray(start.ravel() * mask.ravel(), dtype), jnp.asarray(mask.ravel(), dtype)
        )
        try:
            params = fit(params, self._loss, GaussNewton(), steps=self.steps,
                         key=jax.random.key(0), trainable=_LoopParameters(True, True, False),
                         callbacks=[_Converged()], progress=False).model
        except DivergenceError:
            # The formula blows up from its starting coefficients: no fit.
            return np.full(n, np.inf), np.asarray(y0), start * mask
        r = np.asarray(self._res(params.y0, params.coefficients * params.mask), np.float64)
        rss = (r**2).reshape(-1, n).sum(axis=0)
        coefficients = np.asarray(params.coefficients, np.float64).reshape(start.shape) * mask
        return rss, np.asarray(params.y0, np.float64), coefficients

    def score(self, rss, mask, m):
        """Extended BIC with one noise variance per component (Chen & Chen 2008):
        sum_i N_i log(RSS_i / N_i) + k log N + 2 sum_i log C(m, k_i)."""
        n_i = np.maximum(self.n_obs, 1)
        fit = float(np.sum(n_i * np.log(np.maximum(rss, self.rss_floor) / n_i)))
        sizes = np.asarray(mask).reshape(len(n_i), -1).sum(axis=1)
        k = int(sizes.sum())
        extension = 2 * sum(math.log(math.comb(m, int(j))) for j in sizes)
        return fit + k * math.log(n_i.sum()) + extension


def _adjoint(problem, n_coefficients):
    """How the closed-loop fit differentiates through the solver. `sciml.GaussNewton`
    forms the Jacobian in forward mode when there are at least as many residuals as
    parameters and in reverse mode otherwise; diffrax's `ForwardMode` serves the first
    (one solve carries every tangent), the checkpointed default adjoint the second."""
    if problem.y_obs.size >= problem.n + n_coefficients:
        return diffrax.ForwardMode()
    return diffrax.RecursiveCheckpointAdjoint()


def _misfit(problem, term, y0, rtol, atol, adjoint):
    """Normalised data misfits (flat) of y' = known + term(y) from y0 at t_obs[0]."""
    t = problem.t_obs
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda s, y, args: problem.known(s, y) + term(y)),
        diffrax.Tsit5(),
        t0=t[0],
        t1=t[-1],
        dt0=None,
        y0=y0,
        saveat=diffrax.SaveAt(ts=t),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        adjoint=adjoint,
        max_steps=16384,
        throw=False,
    )
    ys = jnp.where(sol.result == diffrax.RESULTS.successful, sol.ys, jnp.nan)
    return (((ys - problem.y_obs) / problem.y_scale[None, :]) * jnp.sqrt(problem.mask)).ravel()
