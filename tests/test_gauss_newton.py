"""`sciml.GaussNewton` against independent truth: the normal equations and the
minimum-norm solution (numpy), a collocation system assembled by hand, Rosenbrock's
minimum, and the damped step solved by numpy for every solver; then the loop's
guarantees (stages, bit-exact resume, divergence guard, no recompilation) and the
refusals of bad input."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import sciml


T = sciml.train
UNDAMPED = sciml.GaussNewton(T.GridLineSearch(damping=0.0, halvings=0))  # one full step


def _fit(model, residual, update, steps=1, **kw):
    return sciml.fit(model, residual, update, steps=steps, key=jax.random.key(0),
                     progress=False, **kw)


class Affine(eqx.Module):
    w: jax.Array
    b: jax.Array

    def __call__(self, x):
        return x @ self.w + self.b


def _affine_residual(m, batch, *, key):
    X, y = batch
    return jax.vmap(m)(X) - y


def _design(X):
    return np.concatenate([np.asarray(X), np.ones((X.shape[0], 1))], axis=1)


# ----------------------------------------------------------------------------------
# One undamped step solves a linear least-squares problem


@pytest.mark.parametrize("solver", [T.DenseSolve(), T.DenseSolve(normal_equations=True),
                                    T.CGSolve(max_steps=50, rtol=1e-14)])
def test_one_undamped_step_is_the_least_squares_solution(solver):
    rng = np.random.default_rng(0)
    X, y = jnp.asarray(rng.normal(size=(40, 5))), jnp.asarray(rng.normal(size=40))
    model = Affine(jnp.asarray(rng.normal(size=5)), jnp.asarray(0.3))
    update = sciml.GaussNewton(T.GridLineSearch(damping=0.0, halvings=0), solver=solver)
    res = _fit(model, _affine_residual, update, data=(X, y))
    coef = np.linalg.lstsq(_design(X), np.asarray(y), rcond=None)[0]  # normal equations
    np.testing.assert_allclose(res.model.w, coef[:5], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.model.b, coef[5], rtol=1e-10, atol=1e-12)
    h = res.history
    assert h["accepted"][0] == 1 and h["step_size"][0] == 1 and h["damping"][0] == 0
    r0 = np.asarray(jax.vmap(model)(X) - y)
    np.testing.assert_allclose(h["loss"][0], 0.5 * r0 @ r0, rtol=1e-12)  # ½‖r‖² before
    assert (h["cg_iterations"][0] > 0) == isinstance(solver, T.CGSolve)


@pytest.mark.parametrize("solver", [T.WoodburySolve(), T.WoodburySolve(normal_equations=True)])
def test_undamped_woodbury_step_is_the_minimum_norm_solution(solver):
    # 4 residuals, 13 parameters: from zero, one step lands on the minimum-norm solution.
    rng = np.random.default_rng(1)
    X, y = jnp.asarray(rng.normal(size=(4, 12))), jnp.asarray(rng.normal(size=4))
    model = Affine(jnp.zeros(12), jnp.asarray(0.0))
    update = sciml.GaussNewton(T.GridLineSearch(damping=0.0, halvings=0), solver=solver)
    res = _fit(model, _affine_residual, update, data=(X, y))
    theta = np.linalg.pinv(_design(X)) @ np.asarray(y)
    np.testing.assert_allclose(res.model.w, theta[:12], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.model.b, theta[12], rtol=1e-9, atol=1e-12)


def test_a_failed_solve_is_not_taken():
    # JᵀJ of an underdetermined problem is singular: undamped dense QR fails, and the
    # parameters stay where they were.
    rng = np.random.default_rng(1)
    X, y = jnp.asarray(rng.normal(size=(4, 12))), jnp.asarray(rng.normal(size=4))
    model = Affine(jnp.zeros(12), jnp.asarray(0.0))
    update = sciml.GaussNewton(T.GridLineSearch(damping=0.0, halvings=0),
                               solver=T.DenseSolve())
    res = _fit(model, _affine_residual, update, steps=2, data=(X, y))
    np.testing.assert_array_equal(res.model.w, model.w)
    np.testing.assert_array_equal(res.history["accepted"], [0, 0])


# ----------------------------------------------------------------------------------
# A model linear in its parameters and a linear PDE: one step solves the discrete problem


class Polynomial(eqx.Module):
    c: jax.Array  # u(x) = sum_k c_k x^k

    def __call__(self, x):
        return jnp.sum(self.c * x ** jnp.arange(self.c.shape[0]))


XC = np.linspace(0.0, 1.0, 22)[1:-1]  # 20 collocation points


def _poisson_residual(f):
    def residual(model, batch, *, key):  # -u'' = f on (0, 1), u(0) = u(1) = 0
        x = jnp.asarray(XC)
        u_xx = jax.vmap(jax.grad(jax.grad(model)))(x)
        r_pde = (-u_xx - f(x)) / math.sqrt(x.size)
        r_bc = jnp.stack([model(0.0), model(1.0)]) / math.sqrt(2)
        return jnp.concatenate([r_pde, r_bc])

    return residual


def test_one_step_solves_a_linear_pde_in_a_linear_model():
    K = 8
    # The collocation system by hand: -(x^k)'' = -k (k - 1) x^(k - 2), boundary rows x^k.
    k = np.arange(K)
    safe = np.where(k >= 2, k - 2, 0)
    A_pde = -(k * (k - 1)) * XC[:, None] ** safe / math.sqrt(XC.size)
    A_bc = np.stack([0.0 ** k, 1.0 ** k]) / math.sqrt(2)
    A = np.concatenate([A_pde, A_bc])

    f = lambda x: jnp.pi**2 * jnp.sin(jnp.pi * x)  # noqa: E731  (not a polynomial)
    res = _fit(Polynomial(jnp.zeros(K)), _poisson_residual(f), UNDAMPED)
    b = np.concatenate([np.pi**2 * np.sin(np.pi * XC) / math.sqrt(XC.size), [0.0, 0.0]])
    np.testing.assert_allclose(res.model.c, np.linalg.lstsq(A, b, rcond=None)[0],
                               rtol=1e-8, atol=1e-10)

    # u = x - x³ (f = 6x) lies in the model: one step gives it exactly.
    res = _fit(Polynomial(jnp.zeros(K)), _poisson_residual(lambda x: 6 * x), UNDAMPED)
    np.testing.assert_allclose(res.model.c, [0, 1, 0, -1, 0, 0, 0, 0], atol=1e-10)


# ----------------------------------------------------------------------------------
# Rosenbrock


def _rosenbrock(m, batch, *, key):
    return jnp.stack([10 * (m[1] - m[0] ** 2), 1 - m[0]])


@pytest.mark.parametrize("update", [
    sciml.LevenbergMarquardt(),
    sciml.GaussNewton(solver=T.DenseSolve(), marquardt_scaling=True),
    sciml.GaussNewton(solver=T.WoodburySolve(normal_equations=True)),
    sciml.GaussNewton(solver=T.CGSolve()),
    sciml.GaussNewton(T.GridLineSearch()),
], ids=["lm", "lm-marquardt", "lm-woodbury", "lm-cg", "grid-search"])
def test_converges_on_rosenbrock(update):
    res = _fit(jnp.array([-1.2, 1.0]), _rosenbrock, update, steps=60)
    np.testing.assert_allclose(res.model, [1.0, 1.0], atol=1e-10)
    loss = res.history["loss"]
    assert np.all(np.diff(loss) <= 0), loss  # a step never raises the objective
    assert set(np.unique(res.history["accepted"])) <= {0.0, 1.0}


def test_levenberg_marquardt_rejects_and_adapts_damping():
    # From far away with little damping the first full Gauss-Newton step overshoots:
    # it is rejected (parameters kept, step counted) and the damping grows.
    res = _fit(jnp.array([-1.2, 1.0]), _rosenbrock,
               sciml.GaussNewton(T.AdaptiveDamping(initial=1e-8)), steps=60)
    h = res.history
    rejected = np.flatnonzero(h["accepted"] == 0)
    assert rejected.size and rejected[0] < 5
    i = rejected[0]
    assert h["damping"][i + 1] > h["damping"][i] and h["step_size"][i] == 0
    assert h["loss"][i + 1] == h["loss"][i]
    assert sciml.LevenbergMarquardt is sciml.GaussNewton
    np.testing.assert_allclose(res.model, [1.0, 1.0], atol=1e-10)


def test_damping_too_large_to_move_the_parameters_recovers():
    # λ = 1e29 makes δ ~ 1e-29, below the parameters' float64 spacing: x + δ == x, the
    # gain ratio is 0 and the step is rejected. Nielsen's rule alone would only grow λ
    # from there (the stage never moves again); the update scales it down instead.
    x0 = jnp.array([-1.2, 1.0])
    res = _fit(x0, _rosenbrock, sciml.GaussNewton(T.AdaptiveDamping(initial=1e29)),
               steps=120)
    h = res.history
    assert h["accepted"][0] == 0 and h["damping"][1] < 1e29 * 1e-10
    assert h["loss"][-1] < 1e-3 * h["loss"][0]


def test_step_tolerance_ends_the_stage_at_the_step_that_passes_it():
    # Rosenbrock from (-1.2, 1): LM converges to (1, 1) in a few tens of steps. With a
    # step test, the stage must end at the first accepted step that changed each
    # coordinate by <= atol + rtol |x| (checked here from the history, by hand), and the
    # next stage must start from there.
    rtol, atol = 1e-8, 1e-10
    update = sciml.GaussNewton(rtol=rtol, atol=atol)
    res = sciml.fit(jnp.array([-1.2, 1.0]), _rosenbrock,
                    [sciml.Stage(update, 500), sciml.Stage(sciml.GaussNewton(), 3)],
                    key=jax.random.key(0), progress=False)
    h = res.history
    first = np.flatnonzero(h["stage"] == 0)
    assert 5 < first.size < 500 and np.sum(h["stage"] == 1) == 3
    # Replay the first stage with no tolerance and find the first small accepted step.
    _fit(jnp.array([-1.2, 1.0]), _rosenbrock, sciml.GaussNewton(), steps=first.size,
                callbacks=[_Path()])
    xs = np.asarray(_Path.last)
    steps = np.diff(np.vstack([[-1.2, 1.0], xs]), axis=0)
    small = np.all(np.abs(steps) <= atol + rtol * np.abs(xs), axis=1)
    moved = np.any(steps != 0, axis=1)
    assert np.flatnonzero(small & moved)[0] == first.size - 1, xs
    np.testing.assert_allclose(res.model, [1.0, 1.0], atol=1e-9)
    assert not update.converged(update.init(jnp.zeros(2)))


class _Path:
    """Callback recording the parameters after every step."""

    every = 1
    last = None

    def __init__(self):
        _Path.last = []

    def __call__(self, info):
        _Path.last.append(np.asarray(info.model))


def test_max_rejections_ends_a_stage_that_cannot_move():
    # A residual the parameters do not change (J = 0): no step predicts a reduction, so
    # every step is rejected, and the stage ends after `max_rejections` of them, not
    # converged.
    def stuck(m, batch, *, key):
        return jnp.array([1.0, -2.0]) + 0.0 * m[0]

    update = sciml.GaussNewton(rtol=1e-12, max_rejections=4)
    res = _fit(jnp.array([0.3, 0.7]), stuck, update, steps=100)
    assert len(res.history["step"]) == 4 and np.all(res.history["accepted"] == 0)
    assert not bool(update.converged(res.opt_state))
    np.testing.assert_array_equal(res.model, [0.3, 0.7])


def test_done_of_a_custom_update_ends_its_stage():
    # Any update's `done` is read inside the compiled loop: one that converges after 7
    # steps runs 7 of its 1000 (over several chunks' worth of dispatches), then the next
    # stage runs all of its steps.
    class Countdown(sciml.train.AbstractUpdate):
        def init(self, params):
            return jnp.asarray(0, jnp.int32)

        def step(self, objective, params, state, key):
            value, aux = objective(params)
            return value, aux, params - 0.1, state + 1

        def done(self, state):
            return state >= 7

    def loss(m, batch, *, key):
        return jnp.sum(m**2)

    res = sciml.fit(jnp.ones(2), loss, [sciml.Stage(Countdown(), 1000),
                                        sciml.Stage(optax.sgd(0.0), 5)],
                    key=jax.random.key(0), progress=False)
    assert np.bincount(res.history["stage"]).tolist() == [7, 5]
    np.testing.assert_allclose(res.model, 1.0 - 0.7)


# ----------------------------------------------------------------------------------
# Every solver gives the damped step numpy gives


class Tiny(eqx.Module):
    mlp: eqx.nn.MLP

    def __call__(self, x):
        return self.mlp(x[None])[0]


def _damped_step(n_points, update):
    """One step of `update` (applied in full) on a 1-6-1 tanh network (19 parameters)
    fitting sin(3x) at `n_points` points; returns (δ taken, δ by numpy)."""
    model = Tiny(eqx.nn.MLP(1, 1, 6, 1, activation=jnp.tanh, key=jax.random.key(3)))
    x = jnp.linspace(-1.0, 1.0, n_points)

    def residual(m, batch, *, key):
        return jax.vmap(m)(x) - jnp.sin(3 * x)

    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    fn = lambda z: residual(eqx.combine(unravel(z), static), None, key=None)  # noqa: E731
    J, r = np.asarray(jax.jacfwd(fn)(flat)), np.asarray(fn(flat))
    lam = update.search.damping_value
    D = np.sum(J**2, axis=0) if update.marquardt_scaling else np.ones(J.shape[1])
    truth = np.linalg.solve(J.T @ J + lam * np.diag(D), -J.T @ r)

    objective = T.Objective(
        lambda p, frozen: (residual(eqx.combine(p, static), None, key=None), {}), None,
        has_aux=False, varies=False)
    step = jax.jit(lambda p, s: update.step(objective, p, s, None))
    _, aux, new, _ = step(params, update.init(params))
    assert aux["accepted"] == 1  # a damped step from this start lowers the loss
    return np.asarray(ravel_pytree(new)[0] - flat), truth, int(aux["cg_iterations"])


CG = T.CGSolve(max_steps=200, rtol=1e-14)


# 30 points: N > P (Jacobian by forward mode); 8 points: N < P (by reverse mode).
@pytest.mark.parametrize("n_points, solver, marquardt", [
    (30, T.DenseSolve(), False), (30, T.DenseSolve(), True),
    (30, T.DenseSolve(normal_equations=True), False), (30, T.WoodburySolve(), False),
    (30, CG, False),
    (8, T.WoodburySolve(), False), (8, T.WoodburySolve(), True),
    (8, T.WoodburySolve(normal_equations=True), False), (8, T.DenseSolve(), True),
    (8, CG, False),
])
def test_solvers_give_the_damped_step(n_points, solver, marquardt):
    update = sciml.GaussNewton(T.GridLineSearch(damping=0.1, halvings=0), solver=solver,
                               marquardt_scaling=marquardt)
    delta, truth, iterations = _damped_step(n_points, update)
    # Direct solves agree to rounding amplified by the condition number of the damped
    # system (about 1e4 here); CG to its stopping tolerance.
    rtol = 1e-6 if isinstance(solver, T.CGSolve) else 1e-9
    np.testing.assert_allclose(delta, truth, rtol=rtol, atol=rtol * np.abs(truth).max())
    assert (iterations > 0) == isinstance(solver, T.CGSolve)


# ----------------------------------------------------------------------------------
# Through the loop: stages, resume, devices, compilation


def _regression():
    model = sciml.nn.MLP("scalar", "scalar", 8, 1, key=jax.random.key(4))
    x = jnp.linspace(-1.0, 1.0, 32)
    data = (x, jnp.sin(3 * x))

    def residual(m, batch, *, key):
        xb, yb = batch
        r = jax.vmap(m)(xb) - yb
        return r, {"max_abs": jnp.max(jnp.abs(r))}

    def mean_square(m, batch, *, key):
        r, aux = residual(m, batch, key=key)
        return 0.5 * jnp.sum(r**2), aux

    return model, residual, mean_square, data


def test_adam_then_gauss_newton_resumes_bit_exactly(tmp_path):
    model, residual, mean_square, data = _regression()
    stages = [sciml.Stage(optax.adam(1e-2), 30, loss=mean_square),
              sciml.Stage(sciml.GaussNewton(), 30)]
    kw = dict(key=jax.random.key(5), data=data, progress=False)
    full = sciml.fit(model, residual, stages, **kw)
    h = full.history
    adam, gn = h["stage"] == 0, h["stage"] == 1
    assert np.all(np.isnan(h["damping"][adam])) and np.all(np.isfinite(h["damping"][gn]))
    # Gauss-Newton takes the loss where 30 more Adam steps would not.
    assert h["loss"][-1] < 1e-3 * h["loss"][adam][-1]

    class StopAt:
        every = 1

        def __call__(self, info):
            return info.step == 42

    ckpt = tmp_path / "run"
    first = sciml.fit(model, residual, stages, checkpoint=ckpt, callbacks=[StopAt()], **kw)
    assert len(first.history["loss"]) == 42
    resumed = sciml.fit(model, residual, stages, checkpoint=ckpt, resume=True, **kw)
    for a, b in zip(jax.tree.leaves(full.model), jax.tree.leaves(resumed.model)):
        np.testing.assert_array_equal(a, b)
    for col in ("loss", "max_abs", "damping", "accepted", "step_size"):
        np.testing.assert_array_equal(full.history[col], resumed.history[col], err_msg=col)


def test_no_recompilation_and_one_device(count_compiles):
    model, residual, _, data = _regression()
    run = lambda: sciml.fit(model, residual, sciml.GaussNewton(), steps=5,  # noqa: E731
                            key=jax.random.key(6), data=data, progress=False, devices=1)
    first = run()
    with count_compiles() as c:
        second = run()
    assert c.count == 0
    np.testing.assert_array_equal(first.history["loss"], second.history["loss"])


def test_float32_warns_and_still_converges():
    with pytest.warns(UserWarning, match="float32.*float64"):
        res = _fit(jnp.array([-1.2, 1.0], jnp.float32), _rosenbrock, sciml.GaussNewton(),
                   steps=40)
    assert res.model.dtype == jnp.float32 and res.history["loss"].dtype == np.float32
    np.testing.assert_allclose(res.model, [1.0, 1.0], atol=1e-3)


# ----------------------------------------------------------------------------------
# Bad input, refused before training


def test_scalar_loss_is_refused_naming_the_residual_convention():
    def mean_square(m, batch, *, key):
        return jnp.sum(_rosenbrock(m, batch, key=key) ** 2)

    with pytest.raises(ValueError, match="GaussNewton takes a loss that returns a residual "
                                         "vector r \\(the residual convention"):
        _fit(jnp.array([-1.2, 1.0]), mean_square, sciml.GaussNewton())


def test_non_finite_residual_at_the_start_is_named():
    def residual(m, batch, *, key):
        return jnp.log(m - 2.0)  # log of a negative number at m = 1

    with pytest.raises(sciml.DivergenceError, match="non-finite at step 0.*residual vector r"
                                                    ".*non-finite at these parameters") as e:
        _fit(jnp.ones(3), residual, sciml.GaussNewton())
    assert e.value.step == 0
    np.testing.assert_array_equal(e.value.model, jnp.ones(3))


@pytest.mark.parametrize("make, error, match", [
    (lambda: T.AdaptiveDamping(initial=-1.0), ValueError, "initial.*> 0.*-1.0"),
    (lambda: T.AdaptiveDamping(initial=math.nan), ValueError, "initial.*nan"),
    (lambda: T.GridLineSearch(damping=-1e-3), ValueError, "damping.*>= 0"),
    (lambda: T.GridLineSearch(halvings=-1), ValueError, "halvings.*from 0 to 60"),
    (lambda: T.GridLineSearch(halvings=2.5), ValueError, "halvings.*int"),
    (lambda: T.CGSolve(max_steps=0), ValueError, "max_steps"),
    (lambda: T.CGSolve(rtol=0.0), ValueError, "rtol"),
    (lambda: T.DenseSolve(normal_equations="yes"), TypeError, "normal_equations"),
    (lambda: sciml.GaussNewton("levenberg-marquardt"), TypeError, "objects, not strings"),
    (lambda: sciml.GaussNewton(solver="dense"), TypeError, "objects, not strings"),
    (lambda: sciml.GaussNewton(marquardt_scaling=1), TypeError, "True or False"),
    (lambda: sciml.GaussNewton(rtol=-1e-8), ValueError, "rtol.*>= 0.*-1e-08"),
    (lambda: sciml.GaussNewton(atol=math.inf), ValueError, "atol.*finite"),
    (lambda: sciml.GaussNewton(max_rejections=0), ValueError, "max_rejections.*from 1"),
    (lambda: sciml.GaussNewton(solver=T.CGSolve(), marquardt_scaling=True), ValueError,
     "column norms.*DenseSolve"),
])
def test_bad_options_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()
