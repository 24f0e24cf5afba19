"""A diffrax solver wrapper that records the solver's own heuristics inside its state.

diffrax keeps or discards the solver state of a step with the step itself
(`jnp.where(keep_step, new, old)` in its integration loop), so anything accumulated
here counts accepted steps only, exactly as the SavingCallback of the paper's Julia
code. No extra vector-field evaluation is made: the error estimate is the one the
step-size controller uses, and the stiffness estimate is built from stage values the
step already computed.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from diffrax import AbstractRungeKutta, AbstractSolver, AbstractWrappedSolver, ButcherTableau


STABILITY_SIZE = {diffrax.Tsit5: 3.5068, diffrax.Dopri5: 3.3066}
"""Where each supported solver's stability region meets the negative real axis
(OrdinaryDiffEq's `alg_stability_size`), by solver class. The stiffness estimate scales
by it; only these two solvers have the pair of stages with equal `c` it needs."""

_RECORD_KEYS = ("accepted", "error", "stiffness_sum", "stiffness_max")


def safe_rms(tree):
    """RMS norm over every element of a pytree, with a zero (not NaN) gradient at 0.

    A plain `sqrt(mean(x²))` has an infinite derivative at 0, which happens on steps
    whose error estimate vanishes and turns the penalty's gradient into NaN.
    """
    leaves = jtu.tree_leaves(tree)
    ms = sum(jnp.sum(jnp.abs(x) ** 2) for x in leaves) / sum(x.size for x in leaves)
    pos = ms > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, ms, 1)), 0)


def _safe_div(a, b):
    pos = b > 0
    return jnp.where(pos, a / jnp.where(pos, b, 1), 0)


def equal_c_stages(solver) -> tuple[int, int, np.ndarray] | None:
    """`(i, j, a_j - a_i)` for the last two stages sharing a `c`, or None.

    `Y_j - Y_i = Σ_m (a_jm - a_im) k_m` rebuilds the stage difference from the `k`s a
    Runge–Kutta step returns in its dense info.
    """
    tableau = getattr(solver, "tableau", None)
    if not isinstance(tableau, ButcherTableau):
        return None
    c = np.concatenate([[0.0], np.asarray(tableau.c, dtype=np.float64)])
    s = c.shape[0]
    a = np.zeros((s, s))
    for row, coeffs in enumerate(tableau.a_lower, start=1):
        a[row, : len(coeffs)] = coeffs
    for j in range(s - 1, 0, -1):
        for i in range(j - 1, -1, -1):
            if c[i] == c[j]:
                return i, j, a[j] - a[i]
    return None


def evaluations_per_step(solver, *, is_sde: bool = False) -> tuple[int, int]:
    """`(at_init, per_step)` vector-field (drift) evaluations of a solve.

    FSAL Runge–Kutta methods evaluate the first stage once, in `HeuristicsSolver.init`,
    and reuse the last stage afterwards; others evaluate every stage of every attempted
    step. Raises `ValueError` for solvers whose cost this does not know.
    """
    tableau = getattr(solver, "tableau", None)
    if isinstance(solver, AbstractRungeKutta) and isinstance(tableau, ButcherTableau):
        stages = len(tableau.c) + 1
        if tableau.fsal and not is_sde:
            return 1, stages - 1
        return 0, stages
    if isinstance(solver, diffrax.AbstractSRK):
        stages = len(tableau.b_sol)
        ignore = 0 if tableau.ignore_stage_f is None else int(np.sum(tableau.ignore_stage_f))
        return 0, stages - ignore
    raise ValueError(
        f"sciml.ode: cannot count the vector-field evaluations of solver "
        f"{type(solver).__name__}. Use an explicit Runge–Kutta solver with a Butcher "
        "tableau (diffrax.Tsit5, Dopri5, Dopri8, Bosh3, ...) for ODEs, or a stochastic "
        "Runge–Kutta solver (diffrax.SPaRK, ...) for SDEs."
    )


class HeuristicsSolver(AbstractWrappedSolver):
    """Wraps a diffrax solver and accumulates its internal heuristics over accepted
    steps, in its solver state; read them with `diffrax.SaveAt(solver_state=True)`
    (`sol.solver_state[1]`).

    Recorded (a dict of scalars):

    - `"accepted"`: the number of accepted steps.
    - `"error"`: `Σ_j EEst_j |h_j|` with `EEst = RMS(y_error / (atol + rtol max(|y0|,
      |y1|)))`, the scaled error a `PIDController` compares with 1 (if `error`).
    - `"stiffness_sum"`, `"stiffness_max"`: `Σ_j S_j |h_j|` and `max_j S_j` of
      Shampine's estimate `S = RMS(f_j - f_i) / RMS(Y_j - Y_i)` from two stages with
      equal `c` (if `stiffness`), not yet divided by the stability size.

    For FSAL Runge–Kutta methods `init` evaluates the first stage eagerly (diffrax
    defers it to the first step and repeats it on every rejected first attempt), so a
    solve costs exactly `1 + (stages - 1) · num_steps` evaluations; the steps taken are
    unchanged.

    **Arguments:**

    - `solver`: the diffrax solver to wrap.
    - `rtol`, `atol`: tolerances of the error scale (take the controller's).
    - `error`, `stiffness`: which heuristics to record.
    - `augmented`: the state is `(y, extra)` (a neural ODE with integral regularisers
      as extra states); the heuristics are then those of `y` alone, so that an extra
      state does not change the stiffness estimate of the dynamics.
    """

    solver: AbstractSolver
    rtol: float = eqx.field(static=True, default=0.0)
    atol: float = eqx.field(static=True, default=1.0)
    error: bool = eqx.field(static=True, default=True)
    stiffness: bool = eqx.field(static=True, default=False)
    augmented: bool = eqx.field(static=True, default=False)

    def _part(self, tree):
        return tree[0] if self.augmented else tree

    def __check_init__(self):
        if self.stiffness and equal_c_stages(self.solver) is None:
            raise ValueError(
                "HeuristicsSolver: `stiffness=True` needs a Runge–Kutta solver with two "
                f"stages of equal c (diffrax.Tsit5, diffrax.Dopri5); got "
                f"{type(self.solver).__name__}."
            )
        if self.error and not isinstance(self.solver, diffrax.AbstractAdaptiveSolver):
            raise ValueError(
                f"HeuristicsSolver: `error=True` needs a solver with an embedded error "
                f"estimate (a diffrax.AbstractAdaptiveSolver); {type(self.solver).__name__} "
                "has none. Use e.g. diffrax.Tsit5() (ODE) or diffrax.SPaRK() (SDE)."
            )

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    @property
    def scan_kind(self):
        # DirectAdjoint/ForwardMode read this; set it on the wrapped solver.
        return getattr(self.solver, "scan_kind", None)

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)

    def _fsal(self, terms, t0, t1, y0, args):
        tableau = getattr(self.solver, "tableau", None)
        return (
            isinstance(self.solver, AbstractRungeKutta)
            and isinstance(tableau, ButcherTableau)
            and tableau.fsal
            and not terms.is_vf_expensive(t0, t1, y0, args)
        )

    def init(self, terms, t0, t1, y0, args):
        state = self.solver.init(terms, t0, t1, y0, args)
        if self._fsal(terms, t0, t1, y0, args):
            _, f0 = state
            f0 = self.solver.func(terms, t0, y0, args)
            state = (jnp.array(False), f0)
        dtype = jnp.result_type(*jtu.tree_leaves(y0))
        record = {k: jnp.zeros((), dtype) for k in _RECORD_KEYS}
        return state, record

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner, record = solver_state
        y1, y_error, dense_info, inner, result = self.solver.step(
            terms, t0, t1, y0, args, inner, made_jump
        )
        dtype = record["error"].dtype
        h = jnp.abs(jnp.asarray(t1 - t0)).astype(dtype)
        new = dict(record)
        new["accepted"] = record["accepted"] + 1
        if self.error:

            def scale(e, a, b):
                e, a, b = (jnp.asarray(x, dtype) for x in (e, a, b))
                return e / (self.atol + self.rtol * jnp.maximum(jnp.abs(a), jnp.abs(b)))

            eest = safe_rms(
                jtu.tree_map(scale, self._part(y_error), self._part(y0), self._part(y1))
            )
            new["error"] = record["error"] + eest * h
        if self.stiffness:
            i, j, coef = equal_c_stages(self.solver)
            ks = self._part(dense_info["k"])
            dk = jtu.tree_map(lambda k: k[j] - k[i], ks)
            dy = jtu.tree_map(
                lambda k: jnp.tensordot(
                    jnp.asarray(coef, k.dtype), k, axes=1, precision=jax.lax.Precision.HIGHEST
                ),
                ks,
            )
            # k = h f, so RMS(Δf) = RMS(Δk) / |h|.
            s = _safe_div(safe_rms(dk), h * safe_rms(dy)).astype(dtype)
            new["stiffness_sum"] = record["stiffness_sum"] + s * h
            new["stiffness_max"] = jnp.maximum(record["stiffness_max"], s)
        return y1, y_error, dense_info, (inner, new), result


class StepCountController(diffrax.AbstractStepSizeController):
    """Wraps a step-size controller and sums `EEst^(1/q)` over every attempted step
    in its state (`sol.controller_state[1]` with `diffrax.SaveAt(controller_state=True)`),
    `EEst = RMS(y_error / (atol + rtol max(|y0|, |y1|)))` and `q` the solver's error
    order. diffrax keeps a controller's state across rejected steps, so they count.

    **Arguments:** `controller` (the one that chooses the steps), `rtol`, `atol` (of the
    scale), `augmented` (the state is `(y, extra)`: measure `y` alone).
    """

    controller: diffrax.AbstractStepSizeController
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    augmented: bool = eqx.field(static=True, default=False)

    def wrap(self, direction):
        return StepCountController(
            self.controller.wrap(direction), self.rtol, self.atol, self.augmented
        )

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t1, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        dtype = jnp.result_type(*jtu.tree_leaves(y0))
        return t1, (state, jnp.zeros((), dtype))

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        inner, total = state
        keep, next_t0, next_t1, made_jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )
        part = (lambda x: x[0]) if self.augmented else (lambda x: x)

        def scale(e, a, b):
            e, a, b = (jnp.asarray(x, total.dtype) for x in (e, a, b))
            return e / (self.atol + self.rtol * jnp.maximum(jnp.abs(a), jnp.abs(b)))

        eest = safe_rms(jtu.tree_map(scale, part(y_error), part(y0), part(y1_candidate)))
        # A failed stage (diffrax turns NaN errors into inf) counts as one attempt.
        ok = jnp.isfinite(eest) & (eest > 0)
        root = jnp.where(ok, jnp.where(ok, eest, 1) ** (1 / error_order), 0)
        root = jnp.where(jnp.isfinite(eest), root, 1)
        return keep, next_t0, next_t1, made_jump, (inner, total + root), result
