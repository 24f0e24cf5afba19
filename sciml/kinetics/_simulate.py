"""Mass-action right-hand side and forward simulation on diffrax.

Precision: the tests and the estimators run in float64 (enable x64). The conservation
and reference-solver checks (1e-10 and 1e-6) need it; in float32 `simulate` loosens its
default tolerances to what the precision can honour (rtol 1000 eps) and the site balance
holds to about 1e-6 only.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ._mechanism import Mechanism


def _check_mechanism(mechanism, where):
    if not isinstance(mechanism, Mechanism):
        raise TypeError(
            f"{where}: `mechanism` must be a sciml.kinetics.Mechanism (from "
            f"Mechanism.from_text or .from_file), got {type(mechanism).__name__}."
        )


def mass_action(mechanism: Mechanism, x):
    """The mass-action part f(x) of the rates, f_j = prod_s x_s^{order_sj}.

    Orders are applied by repeated multiplication (not `x ** order`), so slightly
    negative states from an ODE solver, and gradients at x = 0, stay finite.

    **Arguments:**

    - `mechanism`: a `Mechanism`.
    - `x`: state, shape `(n_species,)`.

    **Returns:**

    Shape `(n_reactions,)`.
    """
    table = jnp.asarray(mechanism.reactant_table())
    ext = jnp.concatenate([x, jnp.ones((1,), x.dtype)])
    return jnp.prod(ext[table], axis=1)


def rates(mechanism: Mechanism, log_k, x):
    """Directed reaction rates r = k * f(x) with k = exp(log_k); shape `(n_reactions,)`."""
    return jnp.exp(log_k) * mass_action(mechanism, x)


def rhs(mechanism: Mechanism, log_k, x):
    """Mass-action right-hand side xdot = M r(x); shape `(n_species,)`."""
    m = jnp.asarray(mechanism.stoichiometry, dtype=x.dtype)
    return m @ rates(mechanism, log_k, x)


class _MassActionField(eqx.Module):
    """The vector field `(t, x, log_k) -> rhs`, a module rather than a closure: diffrax's
    compiled solve is cached on the field's static identity, so repeated eager calls with
    the same mechanism reuse one compilation instead of recompiling each time."""

    mechanism: Mechanism = eqx.field(static=True)

    def __call__(self, t, x, log_k):
        return rhs(self.mechanism, log_k, x)


def default_controller(dtype) -> diffrax.PIDController:
    """The default step-size control of `simulate`: rtol 1e-8, atol 1e-10 in float64;
    in lower precision rtol = 1000 eps (1.2e-4 in float32), atol = rtol / 100. Tighter,
    Kvaerno5's Newton iterations cannot converge within the rounding error and the step
    shrinks until the step budget runs out (the dc mechanism at rtol 1e-5 in float32)."""
    rtol = max(1e-8, 1000.0 * float(jnp.finfo(dtype).eps))
    return diffrax.PIDController(rtol=rtol, atol=1e-2 * rtol)


def default_solver(dtype) -> diffrax.AbstractSolver:
    """The default solver of `simulate`: Kvaerno5 (stiff-accurate ESDIRK). In float64 its
    Newton iterations use the step-size controller's tolerances; in lower precision those
    cannot be met within the rounding error (steps are rejected until the budget runs
    out), so the Newton tolerances are loosened to rtol 1e-2, atol 1e-4 -- each step's
    accuracy is still set by the embedded error estimate. In float32 this solves the four
    benchmark mechanisms in 8-111 steps, within 1.3e-4 of scipy."""
    if jnp.finfo(dtype).eps < 1e-10:
        return diffrax.Kvaerno5()
    return diffrax.Kvaerno5(root_finder=diffrax.VeryChord(rtol=1e-2, atol=1e-4))


def _check_inputs(mechanism, log_k, x0, ts, where):
    _check_mechanism(mechanism, where)
    if jnp.shape(log_k) != (mechanism.n_reactions,):
        raise ValueError(
            f"{where}: `log_k` must have shape ({mechanism.n_reactions},), one ln k per "
            f"directed step {list(mechanism.constants)}; got shape {jnp.shape(log_k)}. "
            "Batch over parameter sets with jax.vmap."
        )
    if jnp.shape(x0) != (mechanism.n_species,):
        raise ValueError(
            f"{where}: `x0` must have shape ({mechanism.n_species},), one value per species "
            f"{list(mechanism.species)}; got shape {jnp.shape(x0)}. Batch over experiments "
            "with jax.vmap."
        )
    if jnp.ndim(ts) != 1 or jnp.shape(ts)[0] < 1:
        raise ValueError(
            f"{where}: `ts` must be a 1-D array of save times, got shape {jnp.shape(ts)}."
        )


def simulate(
    mechanism: Mechanism,
    log_k,
    x0,
    ts,
    *,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    dt0: float | None = None,
    max_steps: int = 16384,
    throw: bool = True,
):
    """Integrates the mass-action ODE of `mechanism` and returns the states at `ts`.

    One experiment in; `jax.vmap` over experiments (`x0`) or parameter sets (`log_k`)
    outside. The integration starts at `ts[0]`.

    **Arguments:**

    - `mechanism`: a `Mechanism`.
    - `log_k`: ln k, shape `(n_reactions,)` in the order of `mechanism.constants`.
    - `x0`: initial state at `ts[0]`, shape `(n_species,)`.
    - `ts`: non-decreasing save times, shape `(n_times,)`.
    - `solver`: a diffrax solver (default `diffrax.Kvaerno5()`, stiff-accurate ESDIRK;
      looser Newton tolerances in float32, see `default_solver`).
    - `stepsize_controller`: default `diffrax.PIDController(rtol=1e-8, atol=1e-10)` in
      float64, looser in float32 (`default_controller`).
    - `adjoint`: default `diffrax.RecursiveCheckpointAdjoint()`; pass
      `diffrax.ForwardMode()` for forward-mode Jacobians (Levenberg-Marquardt).
    - `dt0`: initial step (default: chosen by the controller).
    - `max_steps`: step budget of the solver.
    - `throw`: raise if the solve fails (False: return non-finite values instead).

    **Returns:**

    States at `ts`, shape `(n_times, n_species)`.
    """
    _check_inputs(mechanism, log_k, x0, ts, "sciml.kinetics.simulate")
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(jnp.result_type(float))
    solver = default_solver(x0.dtype) if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = default_controller(x0.dtype)
    ts = jnp.asarray(ts, x0.dtype)
    log_k = jnp.asarray(log_k, x0.dtype)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_MassActionField(mechanism)),
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=dt0,
        y0=x0,
        args=log_k,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=stepsize_controller,
        adjoint=adjoint,
        max_steps=max_steps,
        throw=throw,
    )
    ys = sol.ys
    if not throw:
        ys = jnp.where(sol.result == diffrax.RESULTS.successful, ys, jnp.nan)
    return ys


class Simulator(eqx.Module):
    """`simulate` with its numerical strategies bound: `sim(log_k, x0, ts)`.

    Convenient to vmap and to pass to estimators.
    """

    mechanism: Mechanism = eqx.field(static=True)
    solver: diffrax.AbstractSolver | None
    stepsize_controller: diffrax.AbstractStepSizeController | None
    adjoint: diffrax.AbstractAdjoint
    max_steps: int = eqx.field(static=True)
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        mechanism,
        *,
        solver=None,
        stepsize_controller=None,
        adjoint=None,
        max_steps=16384,
        throw=True,
    ):
        _check_mechanism(mechanism, "sciml.kinetics.Simulator")
        self.mechanism = mechanism
        # None: `simulate`'s defaults for the dtype of each call (`default_solver`,
        # `default_controller`).
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
        self.max_steps = max_steps
        self.throw = throw

    def __call__(self, log_k, x0, ts):
        return simulate(
            self.mechanism,
            log_k,
            x0,
            ts,
            solver=self.solver,
            stepsize_controller=self.stepsize_controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            throw=self.throw,
        )


def reference_solve(mechanism: Mechanism, log_k, x0, ts, *, method="LSODA", rtol=1e-11, atol=1e-13):
    """Independent reference: scipy `solve_ivp` (LSODA or Radau) with the same
    right-hand side written in numpy. Needs scipy (a test/benchmark dependency).

    **Returns:**

    numpy array `(n_times, n_species)`.
    """
    from scipy.integrate import solve_ivp

    m = np.asarray(mechanism.stoichiometry, np.float64)
    orders = np.asarray(mechanism.orders)
    k = np.exp(np.asarray(log_k, np.float64))

    def f(t, x):
        r = k * np.prod(np.where(orders > 0, x[:, None], 1.0) ** orders, axis=0)
        return m @ r

    def jac(t, x):
        r = k * np.prod(np.where(orders > 0, x[:, None], 1.0) ** orders, axis=0)
        # d r_j / d x_s = order_sj * r_j / x_s, written without dividing by x.
        dr = np.zeros((len(k), len(x)))
        for s in range(len(x)):
            o = orders.copy()
            mask = o[s] > 0
            o[s] = np.maximum(o[s] - 1, 0)
            base = np.prod(np.where(o > 0, x[:, None], 1.0) ** o, axis=0)
            dr[:, s] = np.where(mask, k * orders[s] * base, 0.0)
        del r
        return m @ dr

    ts = np.asarray(ts, np.float64)
    sol = solve_ivp(
        f,
        (ts[0], ts[-1]),
        np.asarray(x0, np.float64),
        method=method,
        t_eval=ts,
        rtol=rtol,
        atol=atol,
        jac=jac,
    )
    if not sol.success:
        raise RuntimeError(f"reference_solve: scipy {method} failed: {sol.message}")
    return sol.y.T
