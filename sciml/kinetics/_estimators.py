"""Estimators of ln k from observations: direct ODE-constrained fit and ES-MDA.

Both (and the KINN surrogate in `_kinn.py`) take `(mechanism, observations, *, key,
init_log_k)` and return the same `Estimate`.
"""

from __future__ import annotations

import abc
import dataclasses
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import ensemble as _ensemble
from ..train import GaussNewton, fit
from ._data import Estimate, Observations, covariance_to_std_corr, gauss_newton_covariance
from ._mechanism import Mechanism
from ._simulate import simulate


class AbstractEstimator(eqx.Module):
    """An inverse-problem strategy: `estimate(mechanism, observations, *, key, init_log_k)`."""

    @abc.abstractmethod
    def estimate(
        self, mechanism: Mechanism, observations: Observations, *, key, init_log_k=None
    ) -> Estimate:
        raise NotImplementedError


def check_problem(mechanism, observations, init_log_k, where):
    if not isinstance(mechanism, Mechanism):
        raise TypeError(
            f"{where}: `mechanism` must be a Mechanism, got {type(mechanism).__name__}."
        )
    if not isinstance(observations, Observations):
        raise TypeError(
            f"{where}: `observations` must be sciml.kinetics.Observations (Observations.make), "
            f"got {type(observations).__name__}."
        )
    if observations.x0.dtype != jnp.float64:
        raise ValueError(
            f"{where}: the observations are {observations.x0.dtype}, but the estimators need "
            "float64 (their ODE tolerances, 1e-7 to 1e-11, are below float32's rounding "
            "error). Call jax.config.update('jax_enable_x64', True) at start-up, before "
            "building the Observations (the `sciml kinetics` command does this itself)."
        )
    if observations.x0.shape[1] != mechanism.n_species:
        raise ValueError(
            f"{where}: the observations have {observations.x0.shape[1]} species in `x0` but the "
            f"mechanism has {mechanism.n_species}."
        )
    if init_log_k is None:
        # Rates of order 1 / (observed time span): a scale-free first guess.
        t_max = float(jnp.max(observations.t))
        init_log_k = np.full(mechanism.n_reactions, -np.log(t_max) if t_max > 0 else 0.0)
    init_log_k = np.asarray(init_log_k, np.float64)
    if init_log_k.shape != (mechanism.n_reactions,):
        raise ValueError(
            f"{where}: `init_log_k` must have shape ({mechanism.n_reactions},), got "
            f"{init_log_k.shape}."
        )
    return init_log_k


def predict(
    mechanism,
    observations,
    log_k,
    log_scale,
    *,
    stepsize_controller,
    solver=None,
    adjoint=None,
    throw=False,
):
    """Predicted observations `(n_exp, n_times, n_obs)` for ln k and ln scales."""
    dtype = observations.x0.dtype

    def one(x0, t):
        return simulate(
            mechanism,
            log_k.astype(dtype),
            x0,
            t,
            solver=solver,
            stepsize_controller=stepsize_controller,
            adjoint=adjoint,
            throw=throw,
            max_steps=4096,
        )

    states = jax.vmap(one)(observations.x0, observations.t)
    return observations.observe(states, log_scale.astype(dtype))


def initial_log_scale(mechanism, observations, log_k, controller) -> np.ndarray:
    """ln c for each unknown-scale column, matching means at the first-guess ln k."""
    if not observations.n_scales:
        return np.zeros(0)
    pred = np.asarray(
        predict(
            mechanism,
            observations,
            jnp.asarray(log_k),
            jnp.zeros(observations.n_scales),
            stepsize_controller=controller,
        )
    )
    mask = np.asarray(observations.mask)
    vals = np.asarray(observations.values)
    out = []
    for j, unknown in enumerate(observations.unknown_scale):
        if not unknown:
            continue
        p = np.abs(pred[..., j][mask[..., j]]).mean()
        v = np.abs(vals[..., j][mask[..., j]]).mean()
        out.append(np.log(max(p, 1e-12) / max(v, 1e-12)) if np.isfinite(p) else 0.0)
    return np.asarray(out)


def _split(theta, n_k):
    return theta[:n_k], theta[n_k:]


def _finish(method, mechanism, observations, theta, cov, fitted, diagnostics):
    n_k = mechanism.n_reactions
    std, corr = covariance_to_std_corr(np.asarray(cov))
    mask = np.asarray(observations.mask)
    resid = (np.asarray(fitted) - np.asarray(observations.values))[mask]
    diagnostics = dict(diagnostics)
    diagnostics["data_rmse"] = float(np.sqrt(np.mean(resid**2)))
    diagnostics["n_observations"] = int(mask.sum())
    return Estimate(
        method=method,
        constants=mechanism.constants,
        log_k=np.asarray(theta[:n_k]),
        log_std=std[:n_k],
        correlation=corr[:n_k, :n_k],
        log_scale=np.asarray(theta[n_k:]),
        log_scale_std=std[n_k:],
        fitted=np.asarray(fitted),
        diagnostics=diagnostics,
    )


class _DirectProblem(eqx.Module):
    """The least-squares problem of `DirectFit` as a pytree: data and noise level traced,
    the mechanism and numerical strategies static."""

    mechanism: Mechanism = eqx.field(static=True)
    observations: Observations
    idx: jax.Array
    y: jax.Array
    sigma: jax.Array
    ode_solver: diffrax.AbstractSolver
    controller: diffrax.AbstractStepSizeController


def _predicted(problem: _DirectProblem, theta, adjoint):
    """Predicted observations `(n_exp, n_times, n_obs)` at (ln k, ln scales)."""
    lk, ls = _split(theta, problem.mechanism.n_reactions)
    return predict(
        problem.mechanism,
        problem.observations,
        lk,
        ls,
        stepsize_controller=problem.controller,
        solver=problem.ode_solver,
        adjoint=adjoint,
    )


def _observed(problem: _DirectProblem, theta, adjoint=None):
    """The observed entries of the prediction, flattened (`adjoint`: as `simulate`)."""
    return _predicted(problem, theta, adjoint).ravel()[problem.idx]


@eqx.filter_jit
def _linearise(problem: _DirectProblem, theta):
    """(the full prediction, the Jacobian of its observed entries) in one compiled solve."""

    def fn(th):
        full = _predicted(problem, th, diffrax.ForwardMode())
        return full.ravel()[problem.idx], full

    jac, full = jax.jacfwd(fn, has_aux=True)(theta)
    return full, jac


def _direct_params(psi, theta_ref, bound):
    # Trial steps stay within +-bound of the first guess (smoothly): a wild
    # Levenberg-Marquardt step must not send exp(ln k) to overflow.
    return theta_ref + bound * jnp.tanh(psi / bound)


def _direct_residual(psi, args):
    problem, theta_ref, bound = args
    theta = _direct_params(psi, theta_ref, bound)
    r = (_observed(problem, theta, diffrax.ForwardMode()) - problem.y) / problem.sigma
    # A failed solve (absurd trial constants) reads as a large residual.
    return jnp.where(jnp.isfinite(r), r, 1e3)


class _DirectLoss(eqx.Module):
    """`DirectFit`'s residual in `sciml.fit`'s residual convention, as a pytree: the
    data and the first guess are arguments of the compiled step, the rest keys it, so
    every start and every data set of one design reuses one program."""

    problem: _DirectProblem
    theta_ref: jax.Array
    bound: float = eqx.field(static=True)

    def __call__(self, psi, batch, *, key):
        del batch, key
        return _direct_residual(psi, (self.problem, self.theta_ref, self.bound))


# A start ends after this many rejected steps in a row: the damping has then grown by
# 2^55 and the Gauss-Newton model predicts a decrease the objective does not show.
_MAX_REJECTIONS = 10


class DirectFit(AbstractEstimator):
    """Classical baseline: least squares of the ODE solution against the data.

    The residual (forward-mode derivatives through the diffrax solve) is minimised by
    `sciml.fit` with the shared Levenberg-Marquardt update `sciml.GaussNewton`; the
    uncertainty is the Gauss-Newton (Laplace) covariance s^2 (J^T J)^{-1} at the
    optimum, with s the known noise std or the residual standard error. Directions the
    data leave flat get a large std, not a tiny one.

    **Arguments:**

    - `update`: the residual update `sciml.fit` runs (default `sciml.GaussNewton()`:
      Levenberg-Marquardt with Nielsen's damping rule and a QR solve).
    - `solver`: no longer accepted (it took an optimistix least-squares solver); pass
      `update=` instead.
    - `ode_solver`: the diffrax solver (default `Tsit5()`: the benchmark mechanisms are
      only mildly stiff, and forward-mode derivatives through an implicit solver's
      root find fail with an error whenever one Newton iteration diverges).
    - `stepsize_controller`: ODE tolerances (default PID rtol 1e-9, atol 1e-11).
    - `max_steps`: the most steps of the update per start (rejected steps count).
    - `rtol`, `atol`: the stopping rule: a start stops at the first accepted step that
      changes every parameter by at most `atol + rtol |value|` (in the tanh-mapped
      parameters below; `diagnostics["converged"]`), or after 10 rejected steps in a
      row, or after `max_steps`.
    - `bound`: the search stays within +-`bound` of the first guess in every ln k
      (a smooth tanh map), so trial steps cannot overflow exp(ln k).
    - `n_starts`: fits from this many first guesses: `init_log_k` and `n_starts - 1`
      draws `init_log_k + start_std * N(0, I)` from `key` (default `jax.random.key(0)`,
      so the fit stays deterministic). The fit with the smallest data misfit is kept
      (`diagnostics["start"]`: its index, 0 = the first guess; `["start_rmse"]`: each
      start's data RMSE). The least-squares problem is not convex: from one guess the
      fit can stop in a local minimum, with a confident covariance around the wrong
      constants. On dc SQ+n over 4 noise draws, one start gave MAE c 0.205 with 85 % of
      the errors inside 2 std, four starts c 0.042 (the Cramér-Rao floor is 0.045) and
      97 %, at 2.7x the time (later starts reuse the first one's compiled step;
      benchmarks/RESULTS.md). 1 = the single classical fit.
    - `start_std`: spread of the extra starts in ln k.
    """

    update: GaussNewton
    ode_solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    max_steps: int = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    bound: float = eqx.field(static=True)
    n_starts: int = eqx.field(static=True)
    start_std: float = eqx.field(static=True)

    def __init__(
        self,
        *,
        update=None,
        solver=None,
        ode_solver=None,
        stepsize_controller=None,
        max_steps: int = 200,
        rtol: float = 1e-10,
        atol: float = 1e-12,
        bound: float = 10.0,
        n_starts: int = 4,
        start_std: float = 1.0,
    ):
        if solver is not None:
            raise TypeError(
                f"DirectFit: `solver=` is gone (it took an optimistix least-squares solver, "
                f"got {solver!r}): the fit runs sciml.fit with a residual update. Pass "
                "`update=sciml.GaussNewton(...)` (e.g. "
                "`sciml.GaussNewton(sciml.train.AdaptiveDamping(initial=1.0))`) instead."
            )
        if update is not None and not isinstance(update, GaussNewton):
            raise TypeError(
                "DirectFit: `update` must be a sciml.GaussNewton(...) (alias "
                f"sciml.LevenbergMarquardt), got {update!r}."
            )
        if isinstance(n_starts, bool) or not isinstance(n_starts, int) or n_starts < 1:
            raise ValueError(f"DirectFit: `n_starts` must be an integer >= 1, got {n_starts!r}.")
        if not start_std > 0:
            raise ValueError(f"DirectFit: `start_std` must be positive, got {start_std!r}.")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"DirectFit: `max_steps` must be an integer >= 1, got {max_steps!r}.")
        for name, value in (("rtol", rtol), ("atol", atol)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"DirectFit: `{name}` must be a number >= 0, got {value!r}.")
        self.n_starts = n_starts
        self.start_std = float(start_std)
        self.update = GaussNewton() if update is None else update
        self.ode_solver = diffrax.Tsit5() if ode_solver is None else ode_solver
        self.stepsize_controller = (
            diffrax.PIDController(rtol=1e-9, atol=1e-11)
            if stepsize_controller is None
            else stepsize_controller
        )
        self.max_steps = max_steps
        self.rtol, self.atol = float(rtol), float(atol)
        self.bound = float(bound)

    def estimate(self, mechanism, observations, *, key=None, init_log_k=None) -> Estimate:
        init_log_k = check_problem(mechanism, observations, init_log_k, "DirectFit.estimate")
        t0 = time.perf_counter()
        dtype = observations.x0.dtype
        idx = jnp.asarray(observations.flat_index())
        sigma = 1.0 if observations.noise_std is None else observations.noise_std
        y = observations.values.ravel()[idx]
        # Everything the residual needs is an array of the loss pytree or a static
        # field: a second fit of the same design (another start, another data set of the
        # same shape) reuses the compiled step instead of recompiling it.
        problem = _DirectProblem(
            mechanism,
            observations,
            idx,
            y,
            jnp.asarray(sigma, y.dtype),
            self.ode_solver,
            self.stepsize_controller,
        )
        starts = [np.asarray(init_log_k, np.float64)]
        if self.n_starts > 1:
            key = jax.random.key(0) if key is None else key
            noise = jax.random.normal(key, (self.n_starts - 1, mechanism.n_reactions), dtype)
            starts += list(starts[0] + self.start_std * np.asarray(noise))
        fits = []
        for start in starts:
            theta, steps, converged = self._fit_from(problem, mechanism, observations, start)
            # The linearisation the covariance needs also gives each start's misfit: one
            # compilation fewer than a separate residual function.
            fitted, jac = _linearise(problem, theta)
            r = (np.asarray(fitted).ravel()[np.asarray(idx)] - np.asarray(y)) / sigma
            # A failed solve reads as the constant residual 1e3, as in the fit.
            fits.append((theta, (steps, converged), fitted, jac, np.where(np.isfinite(r), r, 1e3)))
        misfit = [float(np.sum(f[4] ** 2)) for f in fits]
        best = int(np.argmin(misfit))
        theta, (steps, converged), fitted, jac, r = fits[best]
        # Rows where the solve failed carry no information.
        jac = np.asarray(jac) / sigma
        jac = np.where(np.isfinite(jac), jac, 0.0)
        n, p = jac.shape
        s2 = 1.0 if observations.noise_std is not None else float(r @ r) / max(n - p, 1)
        cov = gauss_newton_covariance(jac, s2)
        diagnostics = {
            "wall_time_s": time.perf_counter() - t0,
            "iterations": steps,
            "converged": converged,
            "residual_std": float(np.sqrt(float(r @ r) / max(n - p, 1))) * sigma,
        }
        if self.n_starts > 1:
            diagnostics["start"] = best
            diagnostics["start_rmse"] = [float(np.sqrt(m / n)) * sigma for m in misfit]
        return _finish(
            "direct", mechanism, observations, np.asarray(theta), cov, fitted, diagnostics
        )

    def _fit_from(self, problem, mechanism, observations, init_log_k):
        """One least-squares fit from one first guess: (theta, steps run, converged)."""
        theta0 = jnp.concatenate(
            [
                jnp.asarray(init_log_k),
                jnp.asarray(
                    initial_log_scale(mechanism, observations, init_log_k, self.stepsize_controller)
                ),
            ]
        ).astype(observations.x0.dtype)
        # The stopping test runs inside the compiled loop (GaussNewton's `done`).
        update = dataclasses.replace(
            self.update, rtol=self.rtol, atol=self.atol, max_rejections=_MAX_REJECTIONS
        )
        result = fit(
            jnp.zeros_like(theta0),
            _DirectLoss(problem, theta0, self.bound),
            update,
            steps=self.max_steps,
            key=jax.random.key(0),  # the residual draws nothing
            progress=False,
        )
        theta = _direct_params(result.model, theta0, self.bound)
        converged = bool(update.converged(result.opt_state))
        return theta, int(len(result.history["step"])), converged


class ESMDA(AbstractEstimator):
    """Gradient-free ensemble smoother (ES-MDA, Emerick & Reynolds 2013) in ln k.

    Calls the generic kernel `sciml.ensemble.esmda` with vmapped diffrax forward solves.
    The estimate is the posterior ensemble mean; its std and correlation are the
    ensemble's.

    **Arguments:**

    - `n_members`: ensemble size. Too small an ensemble collapses (its spread shrinks
      below its error) on nonlinear problems with many data: on the dc and dcs
      mechanisms with semi-quantitative noisy data, 150 members had 50-60 % of the
      ln k errors inside two reported std, 400 (the default) all of them, with 2-4x
      smaller errors, for 1.2-1.6x the wall time (benchmarks/RESULTS.md).
    - `alphas`: inflation factors, sum(1/alpha) = 1.
    - `prior_std`: std of the Gaussian prior on ln k around the first guess.
    - `scale_prior_std`: std of the prior on the ln scales of semi-quantitative columns.
    - `obs_std`: noise std used for C_D when the observations carry no `noise_std`
      (default: 1 % of each column's largest observed magnitude).
    - `ode_solver`: diffrax solver of the forward runs (default `Tsit5()`).
    - `stepsize_controller`: ODE tolerances (default PID rtol 1e-7, atol 1e-9).
    """

    n_members: int = eqx.field(static=True)
    alphas: tuple = eqx.field(static=True)
    prior_std: float = eqx.field(static=True)
    scale_prior_std: float = eqx.field(static=True)
    obs_std: float | None = eqx.field(static=True)
    ode_solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController

    def __init__(
        self,
        *,
        n_members: int = 400,
        alphas=(4.0, 4.0, 4.0, 4.0),
        prior_std: float = 1.0,
        scale_prior_std: float = 0.5,
        obs_std: float | None = None,
        ode_solver=None,
        stepsize_controller=None,
    ):
        if n_members < 2:
            raise ValueError(f"ESMDA: `n_members` must be >= 2, got {n_members}.")
        self.n_members = int(n_members)
        self.alphas = tuple(float(a) for a in alphas)
        self.prior_std = float(prior_std)
        self.scale_prior_std = float(scale_prior_std)
        self.obs_std = obs_std
        self.ode_solver = diffrax.Tsit5() if ode_solver is None else ode_solver
        self.stepsize_controller = (
            diffrax.PIDController(rtol=1e-7, atol=1e-9)
            if stepsize_controller is None
            else stepsize_controller
        )

    def estimate(self, mechanism, observations, *, key, init_log_k=None) -> Estimate:
        init_log_k = check_problem(mechanism, observations, init_log_k, "ESMDA.estimate")
        t0 = time.perf_counter()
        n_k = mechanism.n_reactions
        controller = self.stepsize_controller
        ode_solver = self.ode_solver
        init_scale = initial_log_scale(mechanism, observations, init_log_k, controller)
        dtype = observations.x0.dtype
        mean = jnp.asarray(np.concatenate([init_log_k, init_scale]), dtype)
        std = jnp.asarray(
            np.concatenate(
                [np.full(n_k, self.prior_std), np.full(len(init_scale), self.scale_prior_std)]
            ),
            dtype,
        )
        kprior, kfit = jax.random.split(key)
        prior = mean[None] + std[None] * jax.random.normal(
            kprior, (self.n_members, mean.shape[0]), dtype
        )
        idx = jnp.asarray(observations.flat_index())
        y = observations.values.ravel()[idx]
        if observations.noise_std is not None:
            obs_std = jnp.full(y.shape, observations.noise_std, dtype)
        elif self.obs_std is not None:
            obs_std = jnp.full(y.shape, self.obs_std, dtype)
        else:
            mags = np.where(
                np.asarray(observations.mask), np.abs(np.asarray(observations.values)), 0.0
            )
            col = 0.01 * np.max(mags.reshape(-1, mags.shape[-1]), axis=0)
            col = np.where(col > 0, col, 1e-3)
            obs_std = jnp.asarray(np.broadcast_to(col, mags.shape).ravel()[np.asarray(idx)], dtype)

        # A module-level forward bound to a problem pytree (not a closure): the ensemble's
        # compiled forecast is reused by every later call on the same design.
        problem = _DirectProblem(
            mechanism, observations, idx, y, jnp.ones((), dtype), ode_solver, controller
        )
        forward = eqx.Partial(_observed, problem)
        res = _ensemble.esmda(forward, prior, y, obs_std, alphas=self.alphas, key=kfit)
        members = np.asarray(res.members)
        ok = np.all(np.isfinite(np.asarray(res.predictions)), axis=1)
        members = members[ok]
        theta = members.mean(0)
        cov = np.cov(members.T) if members.shape[1] > 1 else np.var(members, ddof=1)[None, None]
        fitted = predict(
            mechanism,
            observations,
            jnp.asarray(theta[:n_k]),
            jnp.asarray(theta[n_k:]),
            stepsize_controller=controller,
            solver=ode_solver,
        )
        return _finish(
            "esmda",
            mechanism,
            observations,
            theta,
            np.atleast_2d(cov),
            fitted,
            {
                "wall_time_s": time.perf_counter() - t0,
                "n_members": self.n_members,
                "failed_members": int((~ok).sum()),
                "misfit_history": [float(v) for v in res.history["misfit"]],
                "forward_solves": self.n_members * (len(self.alphas) + 1),
            },
        )


def estimate(mechanism, observations, estimator=None, *, key, init_log_k=None) -> Estimate:
    """Estimates ln k of `mechanism` from `observations` with `estimator`.

    **Arguments:**

    - `mechanism`: a `Mechanism`.
    - `observations`: `Observations`.
    - `estimator`: `DirectFit(...)`, `ESMDA(...)` or `KINN(...)` (default `DirectFit()`:
      on the benchmarks its errors and std sit at the Cramér-Rao bound in under a
      minute, where KINN takes minutes and reports a std 3.5-17x wider;
      benchmarks/RESULTS.md).
    - `key`: PRNG key.
    - `init_log_k`: first guess of ln k (default: ln(1 / observed time span)).

    **Returns:**

    An `Estimate`.
    """
    if estimator is None:
        estimator = DirectFit()
    if not isinstance(estimator, AbstractEstimator):
        raise TypeError(
            "sciml.kinetics.estimate: `estimator` must be an estimator object such as "
            f"sciml.kinetics.KINN(), DirectFit() or ESMDA(); got {estimator!r}."
        )
    return estimator.estimate(mechanism, observations, key=key, init_log_k=init_log_k)


def cramer_rao(
    mechanism: Mechanism,
    observations: Observations,
    log_k,
    log_scale=None,
    *,
    noise_std: float | None = None,
    solver=None,
    stepsize_controller=None,
) -> np.ndarray:
    """The information floor: the inverse Fisher information of (ln k, ln scales).

    With independent Gaussian noise of std `sigma` on every observed value, the Fisher
    information at the true parameters is `J^T J / sigma^2`, `J` the derivative of the
    predicted observations; its inverse bounds the covariance of every unbiased
    estimator (Cramér-Rao). An efficient estimator's absolute error in one ln k is then
    about `sqrt(2 / pi) * std` on average: the MAE no method can beat by more than luck.
    Directions the data leave flat get std 100 (see `gauss_newton_covariance`).

    **Arguments:**

    - `mechanism`, `observations`: the problem (the observed values are not used, only
      the design: times, species, initial states, unknown scales).
    - `log_k`: the true ln k, shape `(n_reactions,)`.
    - `log_scale`: the true ln scales of the semi-quantitative columns (default 0).
    - `noise_std`: sigma (default: `observations.noise_std`).
    - `solver`: the diffrax solver (default `Tsit5()`, as `DirectFit`).
    - `stepsize_controller`: ODE tolerances (default PID rtol 1e-9, atol 1e-11).

    **Returns:**

    The covariance matrix, `(n_reactions + n_scales)` square.
    """
    sigma = observations.noise_std if noise_std is None else noise_std
    if sigma is None or not float(sigma) > 0:
        raise ValueError(
            "cramer_rao: the noise std is unknown; pass `noise_std=` (a positive number) or "
            "build the observations with `noise_std=`."
        )
    log_k = np.asarray(log_k, np.float64)
    if log_k.shape != (mechanism.n_reactions,):
        raise ValueError(
            f"cramer_rao: `log_k` must have shape ({mechanism.n_reactions},), got {log_k.shape}."
        )
    if log_scale is None:
        log_scale = np.zeros(observations.n_scales)
    log_scale = np.asarray(log_scale, np.float64)
    if log_scale.shape != (observations.n_scales,):
        raise ValueError(
            f"cramer_rao: `log_scale` must have shape ({observations.n_scales},), got "
            f"{log_scale.shape}."
        )
    theta = np.concatenate([log_k, log_scale])
    jac = observation_jacobian(mechanism, observations, theta, solver, stepsize_controller)
    if not np.all(np.isfinite(jac)):
        raise ValueError(
            "cramer_rao: the forward solve failed at these constants (non-finite derivatives); "
            "check `log_k` or pass a stiff `solver=` with looser tolerances."
        )
    return gauss_newton_covariance(jac, float(sigma) ** 2)


def observation_jacobian(mechanism, observations, theta, solver=None, stepsize_controller=None):
    """d(observed predictions)/d(ln k, ln scales) at `theta` (forward mode through the
    solve; default Tsit5 at PID rtol 1e-9, atol 1e-11). Non-finite entries mean the
    solve failed."""
    return observation_linearisation(mechanism, observations, theta, solver, stepsize_controller)[1]


def observation_linearisation(
    mechanism, observations, theta, solver=None, stepsize_controller=None
):
    """(predicted observations `(n_exp, n_times, n_obs)`, `observation_jacobian`) at
    `theta` from one compiled solve, reused by later calls on the same design."""
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=1e-9, atol=1e-11)
    solver = diffrax.Tsit5() if solver is None else solver
    idx = jnp.asarray(observations.flat_index())
    dtype = observations.x0.dtype
    problem = _DirectProblem(
        mechanism,
        observations,
        idx,
        jnp.zeros(idx.shape, dtype),
        jnp.ones((), dtype),
        solver,
        stepsize_controller,
    )
    full, jac = _linearise(problem, jnp.asarray(theta, dtype))
    return np.asarray(full), np.asarray(jac, np.float64)
