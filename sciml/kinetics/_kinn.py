"""Kinetics-informed neural networks (KINN): the surrogate inverse problem.

Gusmão, Retnanto, da Cunha & Medford, "Kinetics-informed neural networks", Catalysis
Today (2022), arXiv:2011.14473. One network per experiment maps t to the state; the
surface fractions come out on the simplex by construction (the paper's trigonometric
stick-breaking map), and ln k are trained jointly with the networks by `sciml.fit` on

    L = J_m + alpha J_d,   J_m = <|xdot_NN - M (k * f(x_NN))|^2>,  J_d = <|obs(x_NN) - y|^2>,

(J_d also holds the misfit of the known initial states), with alpha raised stage by
stage (`sciml.Stage`s, fresh Adam moments each stage, as in the paper), then an
L-BFGS polish and Levenberg-Marquardt on the loss as a residual vector (networks and
constants together; the paper stops at Adam). Uncertainty: Laplace / Gauss-Newton on
the whole parameter vector (networks, ln k, ln scales), marginalised to ln k.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import weakref
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from .. import nn as _nn
from ..train import (
    AbstractGaussNewtonSolver,
    AdaptiveDamping,
    GaussNewton,
    Linearisation,
    Stage,
    fit,
)
from ._data import covariance_to_std_corr, gauss_newton_covariance
from ._estimators import (
    AbstractEstimator,
    DirectFit,
    _finish,
    check_problem,
    initial_log_scale,
    observation_linearisation,
    predict,
)
from ._simulate import default_controller, rhs


def simplex(u):
    """Maps `p - 1` reals to `p` fractions that are >= 0 and sum to 1 (KINN eq. 3.8).

    y_i = sin^2(tanh(u_i) 3 pi / 4 + pi / 4), z_i = (1 - y_i) prod_{j<i} y_j,
    z_p = prod_j y_j.
    """
    y = jnp.sin(jnp.tanh(u) * (0.75 * jnp.pi) + 0.25 * jnp.pi) ** 2
    head = jnp.concatenate([jnp.ones((1,), u.dtype), jnp.cumprod(y)])
    return head * jnp.concatenate([1.0 - y, jnp.ones((1,), u.dtype)])


class KINNSurrogate(eqx.Module):
    """Networks (one per experiment, stacked on a leading axis) plus ln k and ln scales."""

    nets: _nn.MLP
    log_k: jax.Array
    log_scale: jax.Array
    mechanism: object = eqx.field(static=True)
    gas: tuple[int, ...] = eqx.field(static=True)
    surface: tuple[int, ...] = eqx.field(static=True)
    site_total: tuple[float, ...] = eqx.field(static=True)
    t_scale: float = eqx.field(static=True)
    time_warp: float = eqx.field(static=True, default=20.0)
    x_start: tuple | None = eqx.field(static=True, default=None)
    onset: float = eqx.field(static=True, default=0.0)
    t_start: tuple | None = eqx.field(static=True, default=None)

    def state(self, e: int, net, t):
        """State of experiment `e` (its network `net`) at scalar time `t`."""
        # Log-warped time: fast initial transients get as much of the input range as
        # the slow tail (the paper's data are log-dense near t = 0 for this reason).
        u = self.warp(t if self.t_start is None else t - self.t_start[e])
        out = net(u)
        n_gas = len(self.gas)
        x = jnp.zeros((self.mechanism.n_species,), out.dtype)
        if n_gas:
            x = x.at[jnp.asarray(self.gas)].set(out[:n_gas])
        if self.surface:
            z = simplex(out[n_gas:]) if len(self.surface) > 1 else jnp.ones((1,), out.dtype)
            if self.onset:
                # Hard initial state: z = (1 - phi) z0 + phi s, a convex combination of two
                # simplex points (still on the simplex), phi(0) = 0 with slope `onset`.
                # The stick-breaking map alone is stationary at the simplex's faces, so
                # a coverage growing linearly from 0 would need a sqrt(t) network.
                phi = -jnp.expm1(-self.onset * u)
                z0 = jnp.asarray(self.x_start[e], out.dtype)[jnp.asarray(self.surface)]
                z0 = z0 / jnp.asarray(self.site_total, out.dtype)[e]
                z = z0 + phi * (z - z0)
            x = x.at[jnp.asarray(self.surface)].set(z * jnp.asarray(self.site_total, out.dtype)[e])
        if self.onset and n_gas:
            g0 = jnp.asarray(self.x_start[e], out.dtype)[jnp.asarray(self.gas)]
            x = x.at[jnp.asarray(self.gas)].set(g0 + u * out[:n_gas])
        return x

    def warp(self, t):
        """The network's input `u(t) = log(1 + w t / T) / log(1 + w)`, in [0, 1]."""
        return jnp.log1p(self.time_warp * t / self.t_scale) / np.log1p(self.time_warp)

    def trajectories(self, t):
        """States `(n_exp, n_times, n_species)` at times `t` `(n_exp, n_times)`."""
        return self._map(lambda e, net, ti: self.state(e, net, ti), t)

    def _map(self, fn, t):
        n_exp = t.shape[0]
        per = []
        for e in range(n_exp):  # experiments are few; networks are sliced statically
            net = jax.tree.map(lambda x: x[e] if eqx.is_array(x) else x, self.nets)
            per.append(jax.vmap(lambda ti: fn(e, net, ti))(t[e]))
        return jnp.stack(per)

    def residual(self, t):
        """Physics residual xdot_NN - M r(x_NN), `(n_exp, n_times, n_species)`."""

        def one(e, net, ti):
            x, xdot = jax.jvp(lambda s: self.state(e, net, s), (ti,), (jnp.ones_like(ti),))
            return xdot - rhs(self.mechanism, self.log_k, x)

        return self._map(one, t)


def _loss_terms(model: KINNSurrogate, batch, observations):
    res = model.residual(batch["t_col"])
    j_m = jnp.mean(res**2)
    x = model.trajectories(observations.t)
    pred = observations.observe(x, model.log_scale)
    mask = observations.mask
    diff = jnp.where(mask, pred - observations.values, 0.0)
    j_d = jnp.sum(diff**2) / jnp.sum(mask)
    # The initial state of every experiment is known: it anchors the unobserved species.
    x_start = x[:, 0, :]
    j_ic = jnp.mean((x_start - observations.x0) ** 2)
    return j_m, j_d + j_ic


def _loss(model, batch, *, key):
    del key
    j_m, j_d = _loss_terms(model, batch, batch["obs"])
    return j_m + batch["alpha"] * j_d, {"physics": j_m, "data": j_d}


class KINN(AbstractEstimator):
    """The KINN surrogate estimator (the paper's method), trained by `sciml.fit`.

    **Arguments:**

    - `width`, `depth`: hidden width and number of hidden layers of each network.
    - `activation`: hidden activation (default tanh).
    - `alphas`: the data weight of each Adam stage (continuation, low to high). Default:
      1, 10, 100, 1000; 1, 10, 100 when the observations carry a known noise std, where
      a last weight of 1000 lets the networks follow the noise (data RMSE below sigma),
      and stopping at 100 fits to an RMSE of about sigma.
    - `steps_per_stage`: Adam steps per stage.
    - `learning_rate`: Adam learning rate of the networks; ln k and ln scales use
      `physics_learning_rate`.
    - `lbfgs_steps`: L-BFGS steps at the last alpha (0 to skip).
    - `lm_steps`: accepted Levenberg-Marquardt steps on every parameter at once
      (networks, ln k, ln scales) after the L-BFGS stage, at the last alpha (0 to skip;
      at most `4 lm_steps` steps in all, and fewer once a step moves the parameters by
      less than 1e-12 or the loss by less than 1e-10, relative). The loss is a sum of
      squares of a few thousand residuals in one or two thousand parameters, so
      Gauss-Newton steps are affordable and converge where first-order steps crawl.
      The stage is `sciml.fit` with `sciml.GaussNewton` (Nielsen's damping, Marquardt's
      scaling), whose damped system is solved with `J^T J` formed block by experiment
      (each network only touches its own experiment's rows).
    - `prior_std`: std of a Gaussian prior on ln k around the first guess, used by the
      Levenberg-Marquardt stage and the Laplace covariance (None: no prior). Constants the
      data cannot identify then stay near the first guess with a std of about
      `prior_std` instead of drifting along flat directions of the loss; identified ones
      are unaffected (their data-driven std is orders of magnitude smaller).
    - `n_seeds`: fits from this many network initialisations (seeds); the estimate is
      their mean and the covariance the mean Laplace covariance plus the seeds' spread.
      The Laplace covariance alone is too confident where the surface states are
      unobserved, because different seeds settle in different optima; the seeds'
      spread accounts for that. Costs `n_seeds` fits, though later seeds reuse the
      first one's compiled programs (`diagnostics["seed_wall_time_s"]`: each seed's
      time). Either way the reported covariance is then raised to at least the
      mechanism's own posterior covariance at the estimate (ODE Jacobian, the noise
      variance or else the ODE residual variance, the prior), in every direction
      (`diagnostics["mechanism_covariance"]`: whether that solve succeeded).
    - `n_collocation`: extra uniformly spaced physics points per experiment (the
      observation times are always used).
    - `rcond`: eigenvalue floor of the Gauss-Newton matrix (relative), see
      `gauss_newton_covariance`.
    - `onset`: the known initial state is built in: surface fractions are
      `(1 - phi(u)) z0 + phi(u) simplex(net(u))` with `phi(u) = 1 - exp(-onset u)`,
      gas `x0 + u net(u)`. The stick-breaking map alone is stationary on the simplex's
      faces, so without it a coverage growing linearly from an empty surface needs a
      sqrt-shaped network. `onset` must exceed the fastest initial rate of change of the
      fractions in units of `u`; 0 falls back to a soft initial-state penalty only.
    - `time_warp`: the networks see `u = log(1 + w t / T) / log(1 + w)` with `w =
      time_warp`, which resolves transients ~`T / w` long.
    - `polish`: `"auto"` (default), `"always"` (or True) or `"never"` (or False). Every
      estimate is checked against the mechanism: `diagnostics["ode_data_rmse"]` is the
      data RMSE of the stiff ODE solve at the surrogate's constants, beside the
      surrogate's own `diagnostics["surrogate_data_rmse"]`, and
      `diagnostics["mechanism_misfit"]` says whether the mechanism fits the data
      significantly worse there (`mechanism_misfit`): then the networks fit the data
      with trajectories the mechanism does not produce at those constants, and the
      surrogate's curvature cannot be trusted. `diagnostics["unidentified"]` names the
      constants whose std from the data alone (the mechanism's Jacobian at the
      estimate, without the prior) exceeds `prior_std` (3 if None): their estimate is
      shaped by the prior and the surrogate's path, and a covariance linearised there
      need not reach the truth. The polish (always, or under `"auto"` when the
      mechanism misfits or some constant is unidentified) refines ln k (and ln
      scales) by the ODE-constrained least-squares fit (`DirectFit`), started from the
      surrogate's estimate, from each
      seed's estimate (`n_seeds > 1`) and from the first guess `init_log_k`, and
      reports the fit with the smallest data misfit: its estimate and Gauss-Newton
      covariance (method `"kinn+ode"`; `diagnostics["polish_start"]` names the start
      kept, `["polish_starts"]` gives each start's data RMSE, and the surrogate's own
      figures stay in `diagnostics`). Where the data identify every constant and the
      mechanism agrees, `"auto"` keeps the surrogate's estimate. The measured effect of
      each of these choices is in benchmarks/RESULTS.md.
    - `progress`: show `fit`'s progress bar.
    """

    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: object = eqx.field(static=True)
    alphas: tuple | None = eqx.field(static=True)
    steps_per_stage: int = eqx.field(static=True)
    learning_rate: float = eqx.field(static=True)
    physics_learning_rate: float = eqx.field(static=True)
    lbfgs_steps: int = eqx.field(static=True)
    lm_steps: int = eqx.field(static=True)
    prior_std: float | None = eqx.field(static=True)
    n_seeds: int = eqx.field(static=True)
    n_collocation: int = eqx.field(static=True)
    rcond: float = eqx.field(static=True)
    onset: float = eqx.field(static=True)
    time_warp: float = eqx.field(static=True)
    polish: str = eqx.field(static=True)
    progress: bool = eqx.field(static=True)

    def __init__(
        self,
        *,
        width: int = 16,
        depth: int = 3,
        activation=jnp.tanh,
        alphas=None,
        steps_per_stage: int = 3000,
        learning_rate: float = 3e-3,
        physics_learning_rate: float = 3e-2,
        lbfgs_steps: int = 1000,
        lm_steps: int = 300,
        prior_std: float | None = 3.0,
        n_seeds: int = 1,
        n_collocation: int = 0,
        rcond: float = 1e-12,
        onset: float = 20.0,
        time_warp: float = 100.0,
        polish: bool | str = "auto",
        progress: bool = False,
    ):
        if alphas is not None and (not alphas or any(a <= 0 for a in alphas)):
            raise ValueError(f"KINN: `alphas` must be positive data weights, got {alphas}.")
        self.width = width
        self.depth = depth
        self.activation = activation
        self.alphas = None if alphas is None else tuple(float(a) for a in alphas)
        self.steps_per_stage = int(steps_per_stage)
        self.learning_rate = learning_rate
        self.physics_learning_rate = physics_learning_rate
        self.lbfgs_steps = int(lbfgs_steps)
        if lm_steps < 0 or lbfgs_steps < 0:
            raise ValueError(
                f"KINN: `lbfgs_steps` and `lm_steps` must be >= 0 (0 skips the stage), got "
                f"{lbfgs_steps} and {lm_steps}."
            )
        self.lm_steps = int(lm_steps)
        if prior_std is not None and not prior_std > 0:
            raise ValueError(f"KINN: `prior_std` must be positive or None, got {prior_std}.")
        self.prior_std = None if prior_std is None else float(prior_std)
        if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
            raise ValueError(f"KINN: `n_seeds` must be an integer >= 1, got {n_seeds!r}.")
        self.n_seeds = n_seeds
        self.n_collocation = int(n_collocation)
        self.rcond = rcond
        if onset < 0:
            raise ValueError(f"KINN: `onset` must be >= 0 (0 = soft initial state), got {onset}.")
        if time_warp <= 0:
            raise ValueError(f"KINN: `time_warp` must be positive, got {time_warp}.")
        self.onset = float(onset)
        self.time_warp = float(time_warp)
        if isinstance(polish, bool):
            polish = "always" if polish else "never"
        if polish not in ("auto", "always", "never"):
            raise ValueError(
                f"KINN: `polish` must be 'auto', 'always' (True) or 'never' (False), got "
                f"{polish!r}."
            )
        self.polish = polish
        self.progress = progress

    def init(self, mechanism, observations, *, key, init_log_k) -> KINNSurrogate:
        """The untrained surrogate."""
        dtype = observations.x0.dtype
        gas = tuple(i for i, k in enumerate(mechanism.kinds) if not k.is_surface)
        surface = tuple(i for i, k in enumerate(mechanism.kinds) if k.is_surface)
        x0 = np.asarray(observations.x0)
        site_total = tuple(float(v) for v in x0[:, list(surface)].sum(1)) if surface else ()
        out = len(gas) + max(len(surface) - 1, 0)
        n_exp = x0.shape[0]
        keys = jax.random.split(key, n_exp)
        nets = eqx.filter_vmap(
            lambda k: _nn.MLP(
                "scalar",
                out,
                self.width,
                self.depth,
                activation=self.activation,
                dtype=dtype,
                key=k,
            )
        )(keys)
        return KINNSurrogate(
            nets=nets,
            log_k=jnp.asarray(init_log_k, dtype),
            log_scale=jnp.zeros((observations.n_scales,), dtype),
            mechanism=mechanism,
            gas=gas,
            surface=surface,
            site_total=site_total,
            t_scale=float(np.max(np.asarray(observations.t))) or 1.0,
            time_warp=self.time_warp,
            x_start=tuple(tuple(float(v) for v in row) for row in x0),
            onset=self.onset,
            t_start=tuple(float(v) for v in np.asarray(observations.t)[:, 0]),
        )

    def estimate(self, mechanism, observations, *, key, init_log_k=None):
        init_log_k = check_problem(mechanism, observations, init_log_k, "KINN.estimate")
        t0 = time.perf_counter()
        # Seed s > 0 uses fold_in(key, s); seed 0 uses `key` itself, so n_seeds=1 is the
        # single fit.
        keys = [key] + [jax.random.fold_in(key, s) for s in range(1, self.n_seeds)]
        optimisers = self._optimisers()
        t_col = self._collocation_times(observations)
        # Built once per estimate: every seed reuses one compiled polish and Laplace.
        least_squares = _SurrogateLeastSquares(observations, t_col)
        runs, seed_times = [], []
        for k in keys:
            t_seed = time.perf_counter()
            runs.append(
                self._estimate_one(
                    mechanism, observations, k, init_log_k, optimisers, t_col, least_squares
                )
            )
            seed_times.append(time.perf_counter() - t_seed)
        if self.n_seeds == 1:
            theta, cov, fitted, diag = runs[0]
        else:
            thetas = np.stack([r[0] for r in runs])
            theta = thetas.mean(0)
            # Law of total variance: the mean Laplace covariance plus the spread of the
            # seeds' estimates (different local optima of the same loss).
            cov = np.mean([r[1] for r in runs], axis=0) + np.cov(thetas, rowvar=False)
            fitted = np.mean([np.asarray(r[2]) for r in runs], axis=0)
            diag = dict(runs[0][3])
            diag["seed_log_k"] = thetas[:, : mechanism.n_reactions]
            diag["seed_laplace_std"] = np.stack(
                [np.sqrt(np.diag(r[1]))[: mechanism.n_reactions] for r in runs]
            )
        # The surrogate's curvature treats the physics residual as data: where the
        # mechanism leaves a constant free it can be far too confident. The reported
        # covariance is at least the mechanism's own posterior covariance at the
        # surrogate's constants (and at least the surrogate's, in every direction).
        mech_cov, data_std = self._mechanism_covariance(mechanism, observations, theta)
        if mech_cov is not None:
            cov = _at_least(mech_cov, cov)
        # Constants the data alone leave wider than the prior: the estimate of those is
        # shaped by the prior and by the surrogate's path, not by the data.
        limit = 3.0 if self.prior_std is None else self.prior_std
        unidentified = (
            [] if data_std is None else [int(i) for i in np.flatnonzero(data_std > limit)]
        )
        diag = dict(
            diag,
            wall_time_s=time.perf_counter() - t0,
            seed_wall_time_s=seed_times,
            mechanism_covariance=mech_cov is not None,
            unidentified=[mechanism.constants[i] for i in unidentified],
        )
        history = diag.pop("history")
        est = _finish("kinn", mechanism, observations, theta, cov, fitted, diag)
        extra = {
            "history": history,
            "surrogate_data_rmse": est.diagnostics["data_rmse"],
            "ode_data_rmse": _ode_data_rmse(mechanism, observations, est),
        }
        extra["mechanism_misfit"] = mechanism_misfit(
            extra["ode_data_rmse"], extra["surrogate_data_rmse"], observations
        )
        refine = extra["mechanism_misfit"] or bool(est.diagnostics["unidentified"])
        if self.polish == "always" or (self.polish == "auto" and refine):
            # The ODE-constrained fit is not convex: start it from the surrogate's
            # estimate, from every seed's estimate and from the caller's first guess, and
            # keep the fit that matches the data best.
            n_k = mechanism.n_reactions
            starts = [("surrogate", est.log_k)]
            if self.n_seeds > 1:
                starts += [(f"seed {s}", th[:n_k]) for s, th in enumerate(thetas)]
            starts.append(("first guess", np.asarray(init_log_k)))
            fits = []
            for name, log_k in starts:
                d = DirectFit(n_starts=1).estimate(mechanism, observations, init_log_k=log_k)
                fits.append((name, d))
            rmse = [float(d.diagnostics["data_rmse"]) for _, d in fits]
            order = np.argsort([r if np.isfinite(r) else np.inf for r in rmse], kind="stable")
            start, direct = fits[int(order[0])]
            extra.update(
                surrogate_log_k=est.log_k,
                surrogate_log_std=est.log_std,
                polish_start=start,
                polish_starts={name: r for (name, _), r in zip(fits, rmse)},
                polish_iterations=direct.diagnostics["iterations"],
                polish_converged=direct.diagnostics["converged"],
                polish_s=sum(d.diagnostics["wall_time_s"] for _, d in fits),
            )
            diag = dict(est.diagnostics, **extra)
            diag.update(
                data_rmse=direct.diagnostics["data_rmse"],
                wall_time_s=time.perf_counter() - t0,
            )
            return dataclasses.replace(direct, method="kinn+ode", diagnostics=diag)
        object.__setattr__(est, "diagnostics", dict(est.diagnostics, **extra))
        return est

    def _mechanism_covariance(self, mechanism, observations, theta):
        """Posterior covariance of (ln k, ln scales) under the mechanism itself, linearised
        at `theta`: the ODE solution's Jacobian, the known noise variance or else the ODE
        residual variance, and the prior on ln k; and the std of ln k from the data alone
        (without the prior). (None, None) if the solve fails there."""
        n_k = mechanism.n_reactions
        theta = np.asarray(theta, np.float64)
        controller = diffrax.PIDController(rtol=1e-9, atol=1e-11)
        pred, jac = observation_linearisation(mechanism, observations, theta, None, controller)
        r = (np.asarray(pred).ravel() - np.asarray(observations.values).ravel())[
            observations.flat_index()
        ]
        if not (np.all(np.isfinite(jac)) and np.all(np.isfinite(r))):
            return None, None
        n, p = jac.shape
        if observations.noise_std is not None:
            s2 = float(observations.noise_std) ** 2
        else:
            s2 = max(float(r @ r) / max(n - p, 1), 1e-300)
        jac = jac / np.sqrt(s2)
        data_std = np.sqrt(np.diag(gauss_newton_covariance(jac, 1.0)))[:n_k]
        if self.prior_std is not None:
            prior_rows = np.eye(n_k, p) / self.prior_std
            jac = np.concatenate([jac, prior_rows])
        return gauss_newton_covariance(jac, 1.0), data_std

    def _optimisers(self):
        """(Adam with per-group learning rates, L-BFGS), built once per `estimate` so that
        every seed's `fit` reuses one compiled program (optax transformations compare by
        identity)."""
        adam = optax.multi_transform(
            {
                "net": optax.adam(self.learning_rate),
                "physics": optax.adam(self.physics_learning_rate),
            },
            _labels,
        )
        return adam, optax.lbfgs()

    def _collocation_times(self, observations):
        """The physics points `(n_exp, n_times + n_collocation)`: the observation times and
        `n_collocation` uniformly spaced ones per experiment."""
        t_col = observations.t
        if self.n_collocation:
            t_scale = float(np.max(np.asarray(t_col))) or 1.0
            extra = jnp.broadcast_to(
                jnp.linspace(0.0, t_scale, self.n_collocation, dtype=t_col.dtype),
                (t_col.shape[0], self.n_collocation),
            )
            t_col = jnp.concatenate([t_col, extra], axis=1)
        return t_col

    def _estimate_one(
        self, mechanism, observations, key, init_log_k, optimisers, t_col, least_squares
    ):
        """One fit from one seed: (theta, Laplace covariance, fitted, diagnostics)."""
        alphas = self.alphas
        if alphas is None:
            noisy = observations.noise_std is not None
            alphas = (1.0, 10.0, 100.0) if noisy else (1.0, 10.0, 100.0, 1000.0)
        knet, kfit = jax.random.split(key)
        model = self.init(mechanism, observations, key=knet, init_log_k=init_log_k)
        if observations.n_scales:
            import diffrax

            ls = initial_log_scale(
                mechanism, observations, init_log_k, diffrax.PIDController(rtol=1e-7, atol=1e-9)
            )
            model = eqx.tree_at(
                lambda m: m.log_scale, model, jnp.asarray(ls, model.log_scale.dtype)
            )
        adam, lbfgs = optimisers
        dtype = observations.x0.dtype
        stages = [
            Stage(
                adam,
                self.steps_per_stage,
                data={"t_col": t_col, "alpha": jnp.asarray(a, dtype), "obs": observations},
            )
            for a in alphas
        ]
        if self.lbfgs_steps:
            stages.append(
                Stage(
                    lbfgs,
                    self.lbfgs_steps,
                    data={
                        "t_col": t_col,
                        "alpha": jnp.asarray(alphas[-1], dtype),
                        "obs": observations,
                    },
                )
            )
        result = fit(model, _loss, stages, key=kfit, progress=self.progress)
        model = result.model
        lm_info = {}
        if self.lm_steps:
            model, lm_info = self._levenberg_marquardt(model, least_squares, init_log_k, alphas[-1])
        cov, s2 = self._laplace(model, least_squares, alphas[-1])
        theta = np.concatenate([np.asarray(model.log_k), np.asarray(model.log_scale)])
        fitted = observations.observe(model.trajectories(observations.t), model.log_scale)
        hist = result.history
        diag = {
            "steps": int(len(hist["step"])),
            "final_loss": float(hist["loss"][-1]),
            "physics": float(hist["physics"][-1]),
            "data": float(hist["data"][-1]),
            "laplace_s2": float(s2),
            "compile_s": float(result.timings["compile"]),
            **lm_info,
            "history": hist,
        }
        return theta, cov, fitted, diag

    def _levenberg_marquardt(self, model, least_squares, init_log_k, alpha):
        """Polishes every parameter (networks, ln k, ln scales) at once by
        Levenberg-Marquardt on the residual vector of the last stage's loss."""
        # Parameters ordered [net of experiment 0, net 1, ..., (ln k, ln scales)]: rows of
        # experiment e depend on its own network and the shared block only, so J^T J is
        # block-arrow (`_BlockArrowSolve` forms only its nonzero blocks).
        n_exp = least_squares.observations.t.shape[0]
        flats = [_net_flat(model, e) for e in range(n_exp)]
        bounds = tuple(int(b) for b in np.cumsum([0, *(f.shape[0] for f in flats)]))
        x0 = jnp.concatenate([*flats, model.log_k, model.log_scale])
        dtype = x0.dtype
        problem = _LMProblem(
            model=model,
            alpha=jnp.asarray(alpha, dtype),
            inv_s=jnp.asarray(1.0, dtype),
            k0=jnp.asarray(init_log_k, dtype),
            inv_p=jnp.asarray(0.0 if self.prior_std is None else 1.0 / self.prior_std, dtype),
            bounds=bounds,
        )
        # The loss in units of its residual variance (as in `_laplace`), so that the prior
        # on ln k has its stated std against it.
        r0 = np.asarray(least_squares.data_rows(problem, x0))
        inv_s = 1.0 / np.sqrt(_residual_variance(r0, x0.shape[0]))
        problem = eqx.tree_at(lambda p: p.inv_s, problem, jnp.asarray(inv_s, dtype))
        t0 = time.perf_counter()
        stop = _PolishStop(self.lm_steps, x0)
        result = fit(
            x0,
            _PolishLoss(least_squares.handle, problem),
            _polish_update(least_squares.row_starts(), bounds),
            steps=4 * self.lm_steps,
            key=jax.random.key(0),  # the residual draws nothing
            callbacks=[stop],
            progress=self.progress,
        )
        x = result.model
        info = {
            "steps": stop.accepted,
            "trials": int(len(result.history["step"])),
            "loss_before": 2.0 * float(result.history["loss"][0]),
            "loss_after": float(np.sum(np.asarray(least_squares.residuals(problem, x)) ** 2)),
            "converged": stop.converged,
        }
        info = {f"lm_{k}": v for k, v in info.items()}
        info["lm_s"] = time.perf_counter() - t0
        per, shared = _lm_split(problem, x)
        unravel = ravel_pytree(eqx.filter(_net(model, 0), eqx.is_inexact_array))[1]
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[unravel(f) for f in per])
        net_static = eqx.partition(model.nets, eqx.is_inexact_array)[1]
        n_k = model.log_k.shape[0]
        model = eqx.tree_at(
            lambda m: (m.nets, m.log_k, m.log_scale),
            model,
            (eqx.combine(stacked, net_static), shared[:n_k], shared[n_k:]),
        )
        return model, info

    def _laplace(self, model, least_squares, alpha):
        """Gauss-Newton covariance of (ln k, ln scales), marginalised over the networks."""
        params = eqx.filter(model, eqx.is_inexact_array)
        marks = jax.tree.map(jnp.zeros_like, params)
        marks = eqx.tree_at(
            lambda m: (m.log_k, m.log_scale),
            marks,
            replace=(
                jnp.arange(1, model.log_k.shape[0] + 1, dtype=model.log_k.dtype),
                jnp.arange(1, model.log_scale.shape[0] + 1, dtype=model.log_k.dtype)
                + model.log_k.shape[0],
            ),
        )
        marks = np.asarray(ravel_pytree(marks)[0])
        # Positions of ln k then ln scales in the flat vector, in their own order.
        head = np.argsort(np.where(marks > 0, marks, np.inf))[: int((marks > 0).sum())]
        jac, r = least_squares.laplace(model, jnp.asarray(alpha, model.log_k.dtype))
        jac, r = np.asarray(jac), np.asarray(r)
        n, p = jac.shape
        s2 = _residual_variance(r, p)
        if self.prior_std is not None:
            # Posterior precision J^T J / s^2 + prior precision on ln k (not on the scales).
            prior_rows = np.zeros((model.log_k.shape[0], p))
            prior_rows[np.arange(model.log_k.shape[0]), head[: model.log_k.shape[0]]] = 1.0
            jac = np.concatenate([jac / np.sqrt(s2), prior_rows / self.prior_std])
            cov = gauss_newton_covariance(jac, 1.0, rcond=self.rcond, unidentified_var=None)
            return cov[np.ix_(head, head)], s2
        # Over-parameterised networks leave many flat directions; they are floored,
        # not declared unknown, so they do not leak into the ln k block.
        cov = gauss_newton_covariance(jac, s2, rcond=self.rcond, unidentified_var=None)
        cov = cov[np.ix_(head, head)]
        return cov, s2


class _LMProblem(eqx.Module):
    """One seed's polish problem in the flat parameter vector `[net 0, ..., net n-1,
    ln k, ln scales]` (`bounds`: where each net's block starts), as a pytree."""

    model: KINNSurrogate
    alpha: jax.Array
    inv_s: jax.Array
    k0: jax.Array
    inv_p: jax.Array
    bounds: tuple = eqx.field(static=True)


class _BlockArrowSolve(AbstractGaussNewtonSolver):
    """The damped Gauss-Newton step of KINN's polish, by Cholesky of `J^T J + λD` formed
    block by experiment.

    Experiment `e`'s rows depend on its own network and on the shared (ln k, ln scales)
    block only, and the prior's rows on ln k only, so `J^T J` is block-arrow: forming
    just its nonzero blocks from the dense `J` takes `sum_e N_e (P_e + P_s)^2` products
    instead of `N P^2` (a factor of about the number of experiments squared). The
    normal equations rather than QR: P is one or two thousand, and the polish needs no
    more digits than the Laplace covariance after it, which forms `J^T J` anyway.

    **Arguments:**

    - `rows`: where each experiment's rows start in the residual, and where the
      prior's rows start.
    - `columns`: where each experiment's network starts in the flat parameters, and
      where the shared block starts.
    """

    dense: ClassVar[bool] = True
    rows: tuple = eqx.field(static=True)
    columns: tuple = eqx.field(static=True)

    def linearise(self, fn, x):
        """`J` by forward mode with the experiments' network columns coloured alike:
        column `i` of every network rides in one tangent (no row depends on two
        networks), so `max_e P_e + P_s` passes form `J` instead of `P`."""
        rows, cols = self.rows, self.columns
        shared, n_exp = cols[-1], len(cols) - 1
        widths = [cols[e + 1] - cols[e] for e in range(n_exp)]
        m, n_shared = max(widths), x.size - shared
        seeds = np.zeros((m + n_shared, x.size))
        for e, w in enumerate(widths):
            seeds[np.arange(w), cols[e] + np.arange(w)] = 1.0
        seeds[m + np.arange(n_shared), shared + np.arange(n_shared)] = 1.0
        r, jvp, aux = jax.linearize(fn, x, has_aux=True)
        packed = jax.lax.map(jvp, jnp.asarray(seeds, x.dtype), batch_size=4).T
        J = jnp.zeros((r.size, x.size), packed.dtype)
        for e, w in enumerate(widths):
            block = packed[rows[e] : rows[e + 1], :w]
            J = J.at[rows[e] : rows[e + 1], cols[e] : cols[e + 1]].set(block)
        J = J.at[:, shared:].set(packed[:, m:])
        return Linearisation(
            r, aux, jvp=lambda v: J @ v, vjp=lambda u: u @ J, jacobian=J
        )

    def direction(self, lin, damping, scale):
        J, r = lin.jacobian, lin.residual
        rows, cols = self.rows, self.columns
        shared = cols[-1]
        P = J.shape[1]
        G = jnp.zeros((P, P), J.dtype)
        for e in range(len(cols) - 1):
            j_net = J[rows[e] : rows[e + 1], cols[e] : cols[e + 1]]
            j_sh = J[rows[e] : rows[e + 1], shared:]
            cross = j_net.T @ j_sh
            G = G.at[cols[e] : cols[e + 1], cols[e] : cols[e + 1]].set(j_net.T @ j_net)
            G = G.at[cols[e] : cols[e + 1], shared:].set(cross)
            G = G.at[shared:, cols[e] : cols[e + 1]].set(cross.T)
            G = G.at[shared:, shared:].add(j_sh.T @ j_sh)
        j_prior = J[rows[-1] :, shared:]
        G = G.at[shared:, shared:].add(j_prior.T @ j_prior)
        d = jnp.ones(P, J.dtype) if scale is None else scale
        G = G + jnp.diag(damping * d)
        op = lx.MatrixLinearOperator(G, lx.positive_semidefinite_tag)
        sol = lx.linear_solve(op, -lin.vjp(r), lx.Cholesky(), throw=False)
        return sol.value, jnp.asarray(0, jnp.int32)


def _polish_update(rows, columns):
    """KINN's polish: Levenberg-Marquardt with Marquardt's scaling (the networks'
    weights and ln k differ in scale by orders of magnitude), λ from 1e-3 of it."""
    return GaussNewton(
        AdaptiveDamping(initial=1e-3),
        solver=_BlockArrowSolve(rows, columns),
        marquardt_scaling=True,
    )


class _Handle:
    """A static stand-in for a `_SurrogateLeastSquares`: equal only to itself (a serial
    number, never reused, unlike `id`), and holding the object weakly, so that `fit`'s
    program cache, which keeps its static arguments, does not keep the object alive."""

    _serial = itertools.count()

    def __init__(self, obj):
        self._ref = weakref.ref(obj)
        self._key = next(self._serial)

    def __call__(self):
        return self._ref()

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Handle) and self._key == other._key


class _PolishLoss(eqx.Module):
    """One seed's polish as a `sciml.fit` residual loss on the flat parameter vector.
    Its static part is the estimate's `_SurrogateLeastSquares` (through one `_Handle`),
    so every seed of an estimate runs one compiled program, with the data as its
    constants."""

    handle: _Handle = eqx.field(static=True)
    problem: _LMProblem

    def __call__(self, x, batch, *, key):
        del batch, key
        return self.handle()._residuals(self.problem, x)


class _PolishStop:
    """`sciml.fit` callback of the polish: stops after `max_accepted` accepted steps, or
    when an accepted step moved the parameters by less than `xtol` relative, or the
    loss fell by less than `ftol` relative over the last accepted step (MINPACK's tests;
    the loss at a step's end is known one step later), or when rejections have driven
    the damping (relative to Marquardt's scaling) above 1e16."""

    every = 1

    def __init__(self, max_accepted, x0, xtol=1e-12, ftol=1e-10):
        self.max_accepted, self.xtol, self.ftol = max_accepted, xtol, ftol
        self.accepted, self.converged = 0, False
        self.last = np.asarray(x0)  # the parameters before the last step
        self.pending = None  # loss before the last accepted step, until its end is known

    def __call__(self, info):
        x = np.asarray(info.model)
        loss = info.terms["loss"]  # at the start of the step just run
        if self.pending is not None:
            self.converged |= self.pending - loss <= self.ftol * self.pending
            self.pending = None
        if info.terms["accepted"] > 0:
            self.accepted += 1
            step = np.linalg.norm(x - self.last)
            self.converged |= bool(step < self.xtol * (np.linalg.norm(x) + self.xtol))
            self.pending = loss
        self.last = x
        stuck = info.terms["accepted"] == 0 and info.terms["damping"] > 1e16
        return bool(self.converged) or stuck or self.accepted >= self.max_accepted


def _net(model, e):
    """Experiment `e`'s network, sliced from the stacked ones."""
    return jax.tree.map(lambda x: x[e] if eqx.is_array(x) else x, model.nets)


def _net_flat(model, e):
    return ravel_pytree(eqx.filter(_net(model, e), eqx.is_inexact_array))[0]


def _observed_rows(observations):
    """Per experiment, the flat indices of its observed entries."""
    mask = np.asarray(observations.mask)
    return tuple(jnp.asarray(np.flatnonzero(m.ravel())) for m in mask)


def _lm_split(problem, x):
    b = problem.bounds
    return [x[b[e] : b[e + 1]] for e in range(len(b) - 1)], x[b[-1] :]


class _Hashed:
    """The non-array part of some arguments, hashable by its tree structure and leaves."""

    def __init__(self, tree):
        self.tree = tree
        leaves, self._def = jax.tree.flatten(tree)
        self._leaves = tuple(leaves)
        self._hash = hash((self._def, self._leaves))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (
            isinstance(other, _Hashed) and self._def == other._def and self._leaves == other._leaves
        )


def _owned_jit(fn):
    """`jax.jit` of `fn` for pytree arguments (arrays traced, the rest static), with the
    compiled programs owned by the returned function. `equinox.filter_jit` passes `fn`
    itself as a static argument of one module-wide jitted function, so the cache entry
    (and the data `fn` closes over) lives until evicted; measured: every
    `_SurrogateLeastSquares` of a session stayed alive."""

    def inner(dynamic, static):
        return fn(*eqx.combine(dynamic, static.tree))

    inner.__name__ = inner.__qualname__ = fn.__name__  # in JAX's compile log
    jitted = jax.jit(inner, static_argnums=1)

    def call(*args):
        dynamic, static = eqx.partition(args, eqx.is_array)
        return jitted(dynamic, _Hashed(static))

    return call


class _SurrogateLeastSquares:
    """The surrogate's loss as a residual vector on one data set: the functions of the
    Levenberg-Marquardt polish and of the Laplace covariance.

    The data are closed over, so they are compile-time constants (on g, XLA ran the
    polish's Jacobians 2.2x faster with them folded in than with them as arguments).
    One instance serves every seed of an estimate: its functions keep their identity,
    so each program compiles once (`_LMProblem` carries what differs between seeds).
    """

    def __init__(self, observations, t_col):
        self.observations = observations
        self.t_col = t_col
        self.rows_idx = _observed_rows(observations)
        self.counts = _row_counts(observations, t_col)
        # Compiled programs owned by this instance, collected with it and its data.
        self.data_rows = _owned_jit(self._data_rows)
        self.laplace = _owned_jit(self._laplace)
        self.residuals = _owned_jit(self._residuals)
        self.handle = _Handle(self)

    def row_starts(self):
        """Where each experiment's rows start in `_residuals`, then the prior's rows."""
        n_species = self.observations.x0.shape[1]
        sizes = [
            self.t_col.shape[1] * n_species + int(idx.shape[0]) + n_species
            for idx in self.rows_idx
        ]
        return tuple(int(v) for v in np.cumsum([0, *sizes]))

    def _rows(self, problem, e, flat_e, shared):
        """Experiment `e`'s rows (in units of the residual std) from its own block."""
        params, static = eqx.partition(_net(problem.model, e), eqx.is_inexact_array)
        net = eqx.combine(ravel_pytree(params)[1](flat_e), static)
        n_k = problem.k0.shape[0]
        rows = _experiment_rows(
            problem.model,
            e,
            net,
            shared[:n_k],
            shared[n_k:],
            self.observations,
            self.t_col,
            problem.alpha,
            self.counts,
            self.rows_idx[e],
        )
        return problem.inv_s * rows

    def _data_rows(self, problem, x):
        per, shared = _lm_split(problem, x)
        return jnp.concatenate([self._rows(problem, e, f, shared) for e, f in enumerate(per)])

    def _residuals(self, problem, x):
        n_k = problem.k0.shape[0]
        # Gaussian prior N(first guess, prior_std^2) on ln k.
        prior = problem.inv_p * (x[problem.bounds[-1] :][:n_k] - problem.k0)
        return jnp.concatenate([self._data_rows(problem, x), prior])

    def _laplace(self, model, alpha):
        """The Jacobian of the loss's residual vector in every parameter, and the vector."""
        params, static = eqx.partition(model, eqx.is_inexact_array)
        flat, unravel = ravel_pytree(params)

        def residuals(f):
            m = eqx.combine(unravel(f), static)
            return _residual_vector(m, self.observations, self.t_col, alpha, self.rows_idx)

        return jax.jacfwd(residuals)(flat), residuals(flat)


def _at_least(a, b):
    """`a` plus the positive part of `b - a`: a covariance >= both `a` and `b` (Loewner
    order) that equals the larger one when one dominates."""
    d = 0.5 * ((b - a) + (b - a).T)
    w, v = np.linalg.eigh(d)
    return a + (v * np.maximum(w, 0.0)) @ v.T


def mechanism_misfit(ode_rmse: float, surrogate_rmse: float, observations) -> bool:
    """Whether the mechanism, solved at a surrogate's constants, fits the data
    significantly worse than it should.

    With a known noise std sigma: a chi-square test at 4 std on the `n` observed values
    (`ode_rmse^2 / sigma^2 > 1 + 4 sqrt(2 / n)`). Without: `ode_rmse` above 3x the
    surrogate's own data RMSE and above 1e-3 of the data's RMS. A failed solve
    (non-finite RMSE) misfits.
    """
    if not np.isfinite(ode_rmse):
        return True
    mask = np.asarray(observations.mask)
    n = max(int(mask.sum()), 1)
    if observations.noise_std is not None:
        return bool(ode_rmse**2 > observations.noise_std**2 * (1 + 4 * np.sqrt(2 / n)))
    scale = float(np.sqrt(np.mean(np.asarray(observations.values)[mask] ** 2)))
    return bool(ode_rmse > 3 * max(surrogate_rmse, 1e-12) and ode_rmse > 1e-3 * scale)


def _ode_data_rmse(mechanism, observations, est) -> float:
    """Data RMSE of the mechanism itself (`simulate`'s stiff default solve) at an
    estimate's constants."""
    pred = predict(
        mechanism,
        observations,
        jnp.asarray(est.log_k),
        jnp.asarray(est.log_scale),
        stepsize_controller=default_controller(observations.x0.dtype),
    )
    mask = np.asarray(observations.mask)
    resid = (np.asarray(pred) - np.asarray(observations.values))[mask]
    rmse = float(np.sqrt(np.mean(resid**2)))
    return rmse if np.isfinite(rmse) else float("inf")


def _residual_vector(model, observations, t_col, alpha, rows_idx=None):
    """The loss as a residual vector: `|r|^2 = J_m + alpha J_d` (Gauss-Newton form).
    `rows_idx`: `_observed_rows(observations)` (computed here if None; pass it when
    tracing, where the mask is not concrete)."""
    if rows_idx is None:
        rows_idx = _observed_rows(observations)
    counts = _row_counts(observations, t_col, rows_idx)
    rows = []
    for e in range(observations.t.shape[0]):
        rows.append(
            _experiment_rows(
                model,
                e,
                _net(model, e),
                model.log_k,
                model.log_scale,
                observations,
                t_col,
                alpha,
                counts,
                rows_idx[e],
            )
        )
    return jnp.concatenate(rows)


def _residual_variance(r, p):
    """s^2 of a residual vector against `p` parameters (over-parameterised networks:
    at least a tenth of the rows count as degrees of freedom)."""
    n = r.shape[0]
    return float(r @ r) / max(n - p, max(n // 10, 1))


def _row_counts(observations, t_col, rows_idx=None):
    """Numbers of physics, data and initial-state residuals over all experiments
    (`rows_idx`: `_observed_rows(observations)`, needed where the mask is traced)."""
    n_exp, n_species = observations.x0.shape
    if rows_idx is None:
        n_d = int(np.asarray(observations.mask).sum())
    else:
        n_d = sum(int(i.shape[0]) for i in rows_idx)
    return t_col.size * n_species, n_d, n_exp * n_species


def _experiment_rows(model, e, net, log_k, log_scale, observations, t_col, alpha, counts, idx):
    """Experiment `e`'s rows of the loss as a residual vector, from its network alone:
    physics, data (its observed entries `idx`) and initial state, weighted so that the
    squares sum to its share of `J_m + alpha J_d`."""
    n_m, n_d, n_ic = counts

    def phys(ti):
        x, xdot = jax.jvp(lambda s: model.state(e, net, s), (ti,), (jnp.ones_like(ti),))
        return xdot - rhs(model.mechanism, log_k, x)

    r_m = jax.vmap(phys)(t_col[e]).ravel()
    x = jax.vmap(lambda ti: model.state(e, net, ti))(observations.t[e])
    pred = observations.observe(x, log_scale)
    r_d = (pred - observations.values[e]).ravel()[idx]
    r_ic = x[0] - observations.x0[e]
    return jnp.concatenate(
        [r_m / np.sqrt(n_m), jnp.sqrt(alpha / n_d) * r_d, jnp.sqrt(alpha / n_ic) * r_ic]
    )


def _labels(params):
    """optax.multi_transform labels: ln k and ln scales are "physics", the rest "net"."""
    labels = jax.tree.map(lambda _: "net", params)
    return eqx.tree_at(lambda m: (m.log_k, m.log_scale), labels, replace=("physics", "physics"))


__all__ = ["KINN", "KINNSurrogate", "simplex", "covariance_to_std_corr"]
