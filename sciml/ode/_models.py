"""`NeuralODE` and `NeuralSDE` on diffrax, with solver-heuristic and baseline regularisers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np

from ._regularisers import (
    AbstractHeuristicRegulariser,
    AbstractIntegralRegulariser,
    AbstractRegulariser,
    ErrorEstimateRegulariser,
    StepCountRegulariser,
    StiffnessRegulariser,
)
from ._solver import (
    STABILITY_SIZE,
    HeuristicsSolver,
    StepCountController,
    equal_c_stages,
    evaluations_per_step,
)


# Adjoints that differentiate the discrete solve (the solver's own operations), so the
# derivative of a penalty built from its internals exists and is the one computed.
_DISCRETE_ADJOINTS = (
    diffrax.RecursiveCheckpointAdjoint,
    diffrax.DirectAdjoint,
    diffrax.ForwardMode,
)


def _as_regularisers(regulariser, where) -> tuple[AbstractRegulariser, ...]:
    if regulariser is None:
        return ()
    if isinstance(regulariser, AbstractRegulariser):
        return (regulariser,)
    if isinstance(regulariser, Sequence) and not isinstance(regulariser, str):
        regs = tuple(regulariser)
        for i, r in enumerate(regs):
            if not isinstance(r, AbstractRegulariser):
                raise TypeError(
                    f"{where}: `regulariser[{i}]` must be a regulariser such as "
                    f"sciml.ode.ErrorEstimateRegulariser(weight=...), got {r!r}."
                )
        return regs
    raise TypeError(
        f"{where}: `regulariser` must be None, a regulariser (e.g. "
        "sciml.ode.ErrorEstimateRegulariser(weight=0.1)) or a sequence of them, got "
        f"{regulariser!r}."
    )


def _controller_tolerances(controller):
    if isinstance(controller, diffrax.ClipStepSizeController):
        controller = controller.controller
    if isinstance(controller, diffrax.PIDController):
        return float(controller.rtol), float(controller.atol)
    return None


def _scale_tolerances(regulariser, controller):
    """The `(rtol, atol)` of a regulariser's error scale: its own, else the controller's."""
    tols = _controller_tolerances(controller) or (None, None)
    rtol = regulariser.rtol if regulariser.rtol is not None else tols[0]
    atol = regulariser.atol if regulariser.atol is not None else tols[1]
    return rtol, atol


def _check_common(where, solver, controller, adjoint, regs, t0, t1, max_steps, *, is_sde):
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"{where}: `solver` must be a diffrax solver, got {solver!r}.")
    if isinstance(solver, diffrax.AbstractImplicitSolver):
        raise ValueError(
            f"{where}: implicit solvers ({type(solver).__name__}) are not supported; "
            "use an explicit one such as diffrax.Tsit5()."
        )
    if not isinstance(controller, diffrax.AbstractStepSizeController):
        raise TypeError(
            f"{where}: `stepsize_controller` must be a diffrax step-size controller, "
            f"got {controller!r}."
        )
    if getattr(controller, "jump_ts", None) is not None:
        raise ValueError(
            f"{where}: `stepsize_controller` has `jump_ts`; jumps re-evaluate the first "
            "stage, which the exact NFE count does not follow. Drop `jump_ts`."
        )
    if not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise TypeError(f"{where}: `adjoint` must be a diffrax adjoint, got {adjoint!r}.")
    if float(t1) == float(t0):
        raise ValueError(f"{where}: `t1` must differ from `t0`, got t0 = t1 = {t0}.")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps <= 0:
        raise ValueError(f"{where}: `max_steps` must be a positive int, got {max_steps!r}.")
    heuristic = [r for r in regs if isinstance(r, AbstractHeuristicRegulariser)]
    names = [r.name for r in regs]
    for name in sorted(set(names)):
        if names.count(name) > 1:
            # One stats entry per name; and one solve accumulates one error estimate,
            # under one set of tolerances (a second ERNODE's were silently ignored).
            raise ValueError(
                f"{where}: `regulariser` holds {names.count(name)} regularisers that "
                f"report as {name!r}. Pass one, with the weight you want (a sum of weights "
                "is one weight)."
            )
    if heuristic and not isinstance(adjoint, _DISCRETE_ADJOINTS):
        raise ValueError(
            f"{where}: {type(heuristic[0]).__name__} is built from the solver's internal "
            f"error/stiffness estimates, which `adjoint={type(adjoint).__name__}()` does "
            "not differentiate (a continuous adjoint gives it a silent zero gradient). "
            "Use adjoint=diffrax.RecursiveCheckpointAdjoint() (the default) or "
            "diffrax.DirectAdjoint()."
        )
    for r in heuristic:
        if not isinstance(solver, diffrax.AbstractAdaptiveSolver):
            raise ValueError(
                f"{where}: {type(r).__name__} needs a solver with an embedded error "
                f"estimate; {type(solver).__name__} has none. Use diffrax.Tsit5() or "
                "diffrax.Dopri5() (ODE), diffrax.SPaRK() (SDE)."
            )
        if isinstance(r, StiffnessRegulariser):
            if is_sde or type(solver) not in STABILITY_SIZE or equal_c_stages(solver) is None:
                raise ValueError(
                    f"{where}: StiffnessRegulariser needs two Runge–Kutta stages with equal "
                    f"c and a known stability size: diffrax.Tsit5() or diffrax.Dopri5() on "
                    f"an ODE; got {type(solver).__name__}{' on an SDE' if is_sde else ''}."
                )
        if isinstance(r, ErrorEstimateRegulariser | StepCountRegulariser):
            tols = _controller_tolerances(controller)
            if (r.rtol is None or r.atol is None) and tols is None:
                name = type(r).__name__
                raise ValueError(
                    f"{where}: {name} scales the error estimate by "
                    "atol + rtol |y|, but the step-size controller "
                    f"{type(controller).__name__} has no tolerances. Pass them: "
                    f"{name}(weight, rtol=..., atol=...)."
                )
    evaluations_per_step(solver, is_sde=is_sde)  # raises for solvers it cannot count


def _heuristics_solver(solver, controller, adjoint, heuristic, augmented=False):
    errors = [r for r in heuristic if isinstance(r, ErrorEstimateRegulariser)]
    rtol, atol = _scale_tolerances(errors[0], controller) if errors else (0.0, 1.0)
    stiffness = any(isinstance(r, StiffnessRegulariser) for r in heuristic)
    # DirectAdjoint and ForwardMode set `scan_kind` on Runge–Kutta solvers that leave it
    # unset; the wrapper forwards the attribute, so set it on the wrapped solver.
    if getattr(solver, "scan_kind", "absent") is None:
        if isinstance(adjoint, diffrax.DirectAdjoint):
            kind = "bounded"
        elif isinstance(adjoint, diffrax.ForwardMode):
            kind = "lax"
        else:
            kind = None
        if kind is not None:
            solver = eqx.tree_at(
                lambda s: s.scan_kind, solver, kind, is_leaf=lambda x: x is None
            )
    return HeuristicsSolver(
        solver,
        rtol=rtol,
        atol=atol,
        error=bool(errors),
        stiffness=stiffness,
        augmented=augmented,
    )



def _solve(model, terms, y0, ts, args, heuristic, need_final=False, augmented=False):
    """One diffrax solve of a NeuralODE/NeuralSDE with its heuristics-collecting solver.

    **Returns:** `(solution, final, ys)`: the state at `t1` (None unless `need_final` or
    `ts` is None) and the states at `ts`.
    """
    solver = _heuristics_solver(
        model.solver, model.stepsize_controller, model.adjoint, heuristic, augmented
    )
    # Saving t1 beside a `ts` that ends there saves one time twice; under BacksolveAdjoint
    # with a constant step the zero-length backward interval makes every gradient NaN
    # (diffrax 0.7). So t1 is saved only when its state is read, and read from `ts`
    # when `ts` is known to end there.
    controller = model.stepsize_controller
    counts = [r for r in heuristic if isinstance(r, StepCountRegulariser)]
    if counts:
        rtol, atol = _scale_tolerances(counts[0], controller)
        controller = StepCountController(controller, rtol, atol, augmented)
    save_t1 = ts is None or need_final
    read_t1_from_ts = False
    if ts is not None and need_final and _backsolve_with_constant_steps(model):
        if isinstance(ts, jax.core.Tracer) or jnp.ndim(ts) != 1 or len(ts) == 0:
            raise ValueError(
                f"{type(model).__name__}: an integral regulariser under BacksolveAdjoint "
                "with a constant step size needs `ts` known when the model is traced (not "
                "an argument of a jitted function), to tell whether it ends at t1. Close "
                "over `ts`, or use diffrax.RecursiveCheckpointAdjoint() or a "
                "PIDController."
            )
        read_t1_from_ts = float(ts[-1]) == float(model.t1)
        save_t1 = not read_t1_from_ts
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        model.t0,
        model.t1,
        model.dt0,
        y0,
        args=args,
        # One SubSaveAt, and the solver state only when read: BacksolveAdjoint accepts
        # nothing else.
        saveat=diffrax.SaveAt(
            ts=ts, t1=save_t1, solver_state=bool(heuristic), controller_state=bool(counts)
        ),
        stepsize_controller=controller,
        adjoint=model.adjoint,
        max_steps=model.max_steps,
        throw=model.throw,
    )
    last = jtu.tree_map(lambda x: x[-1], sol.ys)
    if ts is None:
        return sol, last, last
    if save_t1:
        return sol, last, jtu.tree_map(lambda x: x[:-1], sol.ys)
    return sol, (last if read_t1_from_ts else None), sol.ys


def _backsolve_with_constant_steps(model) -> bool:
    return isinstance(model.adjoint, diffrax.BacksolveAdjoint) and isinstance(
        model.stepsize_controller, diffrax.ConstantStepSize
    )


def _stats(sol, solver, regs, heuristic, integral, integrals, step, dtype, *, is_sde):
    at_init, per_step = evaluations_per_step(solver, is_sde=is_sde)
    num_steps = sol.stats["num_steps"]
    stats = {
        "nfe": at_init + per_step * num_steps,
        "num_steps": num_steps,
        "num_accepted": sol.stats["num_accepted_steps"],
        "num_rejected": sol.stats["num_rejected_steps"],
    }
    record = dict(sol.solver_state[1]) if heuristic else None
    if any(isinstance(r, StepCountRegulariser) for r in heuristic):
        record["step_count"] = sol.controller_state[1]
    size = STABILITY_SIZE.get(type(solver))
    total = jnp.zeros((), dtype)
    for r in regs:
        if isinstance(r, AbstractHeuristicRegulariser):
            value = r.value(record, size)
        else:
            value = integrals[integral.index(r)]
        value = jnp.asarray(value, dtype)
        stats[r.name] = value
        total = total + jnp.asarray(r.weight_at(step), dtype) * value
    stats["regularisation"] = total
    return stats


class NeuralODE(eqx.Module):
    """A neural ODE `dy/dt = f(t, y, args)` solved by diffrax, with optional penalties
    from the solver's own heuristics (ERNODE, SRNODE) or of the dynamics (RNODE,
    TayNODE).

    `y` may be any array or pytree; to share one step-size sequence across a batch (as
    the paper does), make the batch part of the state, e.g. `y` of shape `(B, d)` with a
    vector field that maps the batch.

    **Arguments:**

    - `vector_field`: `f(t, y, args)` in diffrax's convention (any equinox module).
    - `solver`: an explicit Runge–Kutta diffrax solver (default `diffrax.Tsit5()`).
    - `stepsize_controller`: default `diffrax.PIDController(rtol=1e-3, atol=1e-6)`.
    - `adjoint`: default `diffrax.RecursiveCheckpointAdjoint()`. Solver-heuristic
      penalties need a discrete adjoint (this one or `diffrax.DirectAdjoint()`).
    - `t0`, `t1`: the integration interval.
    - `dt0`: initial step (None: diffrax's choice; required with `ConstantStepSize`).
    - `regulariser`: None, one regulariser, or a sequence of them (their weighted
      penalties add up).
    - `max_steps`: as in `diffrax.diffeqsolve`.
    - `throw`: raise if the solve fails (e.g. `max_steps` reached).

    **Returns** (of a call `model(y0, ts)`): `(ys, stats)`, the states at the save times
    `ts` (or `y(t1)` if `ts` is None) and a dict of scalars: `"nfe"` (exact number of
    vector-field evaluations the solver makes; with an integral regulariser, of the
    augmented field, whose every evaluation runs `f` once for RNODE and, by nested
    jvps, several times for TayNODE), `"num_steps"` (attempted), `"num_accepted"`,
    `"num_rejected"`, `"regularisation"` (the weighted penalty, differentiable, to add to
    the loss) and each regulariser's unweighted value under its `name`.

    Reference: Pal, Ma, Shah, Rackauckas, "Opening the Blackbox: Accelerating Neural
    Differential Equations by Regularizing Internal Solver Heuristics", ICML 2021.
    """

    vector_field: Callable
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    regulariser: tuple[AbstractRegulariser, ...]
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        vector_field: Callable,
        *,
        solver: diffrax.AbstractSolver = diffrax.Tsit5(),
        stepsize_controller: diffrax.AbstractStepSizeController = diffrax.PIDController(
            rtol=1e-3, atol=1e-6
        ),
        adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint(),
        t0: float = 0.0,
        t1: float = 1.0,
        dt0: float | None = None,
        regulariser=None,
        max_steps: int = 4096,
        throw: bool = True,
    ):
        where = "sciml.ode.NeuralODE"
        if not callable(vector_field):
            raise TypeError(f"{where}: `vector_field` must be callable f(t, y, args).")
        regs = _as_regularisers(regulariser, where)
        _check_common(
            where, solver, stepsize_controller, adjoint, regs, t0, t1, max_steps, is_sde=False
        )
        if isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
            raise ValueError(f"{where}: `ConstantStepSize` needs `dt0=`, the step size.")
        self.vector_field = vector_field
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.adjoint = adjoint
        self.regulariser = regs
        self.t0 = float(t0)
        self.t1 = float(t1)
        self.dt0 = None if dt0 is None else float(dt0)
        self.max_steps = max_steps
        self.throw = throw

    def __call__(self, y0, ts=None, *, args=None, key=None, step=None, regularise: bool = True):
        """Solves from `y0` and returns `(ys, stats)`.

        **Arguments:**

        - `y0`: initial state (array or pytree).
        - `ts`: save times (None: return `y(t1)` only).
        - `args`: passed to the vector field.
        - `key`: PRNG key, needed by regularisers with a random probe (RNODE).
        - `step`: training step, for weight schedules (`sciml.fit` passes it to a loss
          with a `step` keyword). None: step 0.
        - `regularise`: False skips the penalties (prediction): the solve is then the
          plain one and `stats["regularisation"]` is 0.
        """
        regs = self.regulariser if regularise else ()
        heuristic = tuple(r for r in regs if isinstance(r, AbstractHeuristicRegulariser))
        integral = tuple(r for r in regs if isinstance(r, AbstractIntegralRegulariser))
        leaves = jtu.tree_leaves(y0)
        if not leaves or not all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves):
            raise TypeError(
                f"sciml.ode.NeuralODE: `y0` must be a real floating-point array (or pytree "
                f"of them; for a complex state pass its real and imaginary parts), got {y0!r}."
            )
        dtype = jnp.result_type(*leaves)
        noise = _probe(integral, y0, key, "sciml.ode.NeuralODE")
        vf = self.vector_field
        if integral:
            field = _AugmentedField(vf, integral, noise)
            state0 = (y0, tuple(jnp.zeros((), dtype) for _ in integral))
        else:
            field, state0 = vf, y0
        sol, final, ys = _solve(
            self,
            diffrax.ODETerm(field),
            state0,
            ts,
            args,
            heuristic,
            need_final=bool(integral),
            augmented=bool(integral),
        )
        integrals = ()
        if integral:
            integrals = final[1]
            ys = ys[0]
        stats = _stats(
            sol, self.solver, regs, heuristic, integral, integrals, step, dtype, is_sde=False
        )
        return ys, stats


class _AugmentedField(eqx.Module):
    """`(y, r) -> (f(t, y), integrands)`: a pytree, so continuous adjoints see the
    parameters of `f` (a closure would hide them)."""

    vector_field: Callable
    integral: tuple[AbstractIntegralRegulariser, ...]
    noise: object

    def __call__(self, t, state, args):
        y, rs = state
        outs = [r.integrand(self.vector_field, t, y, args, self.noise) for r in self.integral]
        return outs[0][0], tuple(
            jnp.asarray(o[1], jnp.result_type(r0)) for o, r0 in zip(outs, rs)
        )


def _probe(integral, y0, key, where):
    if not any(r.needs_key for r in integral):
        return None
    if key is None:
        raise ValueError(
            f"{where}: {[type(r).__name__ for r in integral if r.needs_key][0]} draws a "
            "Hutchinson probe: pass `key=` to the call (the loss's key), or "
            "`regularise=False` for prediction."
        )
    leaves, treedef = jtu.tree_flatten(y0)
    keys = jax.random.split(key, len(leaves))
    return jtu.tree_unflatten(
        treedef,
        [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)],
    )


class NeuralSDE(eqx.Module):
    """A neural SDE `dy = μ(t, y) dt + σ(t, y) ∘ dW` with diagonal noise, solved by an
    adaptive stochastic Runge–Kutta method, with optional penalties from the solver's
    error estimate (ERNSDE).

    **Arguments:**

    - `drift`: `μ(t, y, args)`, same shape as `y`.
    - `diffusion`: `σ(t, y, args)`, same shape as `y` (diagonal noise, one independent
      Brownian motion per component).
    - `solver`: a stochastic Runge–Kutta diffrax solver; default `diffrax.SPaRK()`, which
      has an embedded error estimate (Stratonovich; 3 drift and 6 diffusion evaluations
      a step).
    - `stepsize_controller`: default `diffrax.PIDController(rtol=1e-2, atol=1e-2)`.
    - `adjoint`: default `diffrax.RecursiveCheckpointAdjoint()`.
    - `t0`, `t1`, `dt0`: interval and initial step (default `dt0 = (t1 - t0) / 20`).
    - `brownian_tol`: resolution of the `diffrax.VirtualBrownianTree` (must be well below
      the smallest step; default `(t1 - t0) * 1e-4`).
    - `regulariser`: None, an `ErrorEstimateRegulariser`, or a sequence of regularisers.
    - `max_steps`, `throw`: as in `diffrax.diffeqsolve`.

    A call `model(y0, ts, key=key)` returns `(ys, stats)` as `NeuralODE` does; `"nfe"`
    counts drift evaluations and `"nfe_diffusion"` the diffusion's (SPaRK: one per
    stage for the Brownian increment and one for its Lévy area, 6 a step).
    """

    drift: Callable
    diffusion: Callable
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    regulariser: tuple[AbstractRegulariser, ...]
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    dt0: float = eqx.field(static=True)
    brownian_tol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        drift: Callable,
        diffusion: Callable,
        *,
        solver: diffrax.AbstractSolver = diffrax.SPaRK(),
        stepsize_controller: diffrax.AbstractStepSizeController = diffrax.PIDController(
            rtol=1e-2, atol=1e-2
        ),
        adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint(),
        t0: float = 0.0,
        t1: float = 1.0,
        dt0: float | None = None,
        brownian_tol: float | None = None,
        regulariser=None,
        max_steps: int = 4096,
        throw: bool = True,
    ):
        where = "sciml.ode.NeuralSDE"
        if not callable(drift) or not callable(diffusion):
            raise TypeError(f"{where}: `drift` and `diffusion` must be callables f(t, y, args).")
        regs = _as_regularisers(regulariser, where)
        _check_common(
            where, solver, stepsize_controller, adjoint, regs, t0, t1, max_steps, is_sde=True
        )
        if not isinstance(solver, diffrax.AbstractSRK):
            raise ValueError(
                f"{where}: `solver` must be a stochastic Runge–Kutta method such as "
                f"diffrax.SPaRK() (adaptive), got {type(solver).__name__}."
            )
        for r in regs:
            if isinstance(r, AbstractIntegralRegulariser):
                raise ValueError(
                    f"{where}: {type(r).__name__} is an ODE regulariser; NeuralSDE takes "
                    "ErrorEstimateRegulariser."
                )
            if isinstance(r, StepCountRegulariser):
                raise ValueError(
                    f"{where}: StepCountRegulariser is written for ODE solvers (its step "
                    "estimate assumes a deterministic error order); NeuralSDE takes "
                    "ErrorEstimateRegulariser."
                )
        self.drift = drift
        self.diffusion = diffusion
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.adjoint = adjoint
        self.regulariser = regs
        self.t0 = float(t0)
        self.t1 = float(t1)
        self.dt0 = float((t1 - t0) / 20 if dt0 is None else dt0)
        self.brownian_tol = float(abs(t1 - t0) * 1e-4 if brownian_tol is None else brownian_tol)
        self.max_steps = max_steps
        self.throw = throw

    def __call__(self, y0, ts=None, *, key, args=None, step=None, regularise: bool = True):
        """Samples one path from `y0` (Brownian motion from `key`); returns
        `(ys, stats)` as `NeuralODE.__call__` does."""
        regs = self.regulariser if regularise else ()
        heuristic = tuple(r for r in regs if isinstance(r, AbstractHeuristicRegulariser))
        if not isinstance(y0, jax.Array | np.ndarray | float | list | tuple):
            raise TypeError(
                f"sciml.ode.NeuralSDE: `y0` must be one real float array (diagonal noise "
                f"on its components), got {type(y0).__name__}."
            )
        try:
            y0 = jnp.asarray(y0)
        except (TypeError, ValueError):
            raise TypeError(
                f"sciml.ode.NeuralSDE: `y0` must be one real float array, got {y0!r}."
            ) from None
        if not jnp.issubdtype(y0.dtype, jnp.floating):
            raise TypeError(
                f"sciml.ode.NeuralSDE: `y0` must be a real float array, got {y0.dtype}."
            )
        t_lo, t_hi = min(self.t0, self.t1), max(self.t0, self.t1)
        bm = diffrax.VirtualBrownianTree(
            t_lo,
            t_hi,
            tol=self.brownian_tol,
            shape=jax.ShapeDtypeStruct(y0.shape, y0.dtype),
            key=key,
            levy_area=diffrax.SpaceTimeLevyArea,
        )
        diffusion = self.diffusion
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(self.drift),
            diffrax.ControlTerm(
                lambda t, y, a: lx.DiagonalLinearOperator(diffusion(t, y, a)), bm
            ),
        )
        sol, _, ys = _solve(self, terms, y0, ts, args, heuristic)
        stats = _stats(sol, self.solver, regs, heuristic, (), (), step, y0.dtype, is_sde=True)
        stats["nfe_diffusion"] = _diffusion_evaluations(self.solver, stats["num_steps"])
        return ys, stats


def _diffusion_evaluations(solver, num_steps):
    """Diffusion evaluations of a stochastic Runge–Kutta solve, as diffrax's SRK makes
    them: for general noise, at every stage it does not skip, once for the Brownian
    increment and once more for each Lévy area the method uses (H, K); for additive
    noise, once at each end of every step (one batched call), plus once in `init`,
    which checks that the diffusion does not depend on `y`."""
    tableau = solver.tableau
    if tableau.is_additive_noise():
        return 1 + 2 * num_steps
    stages = len(tableau.b_sol)
    ignore_g = 0 if tableau.ignore_stage_g is None else int(sum(tableau.ignore_stage_g))
    levy = sum(c is not None for c in (tableau.coeffs_hh, tableau.coeffs_kk))
    return (stages - ignore_g) * (1 + levy) * num_steps
