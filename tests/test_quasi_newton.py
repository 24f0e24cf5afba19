"""The self-scaled BFGS / Broyden updates against independent truth: the textbook BFGS
and DFP inverse updates (numpy), τ and φ worked out by hand from Urbán et al.'s
formulas, an update through a whole step recomputed in numpy with `b` from the inverse
of H, the Wolfe conditions at every accepted step, the minimiser of a quadratic and of
Rosenbrock's function; then the loop's guarantees (stages, bit-exact resume, same key
same numbers) and the refusals of bad input."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml
from sciml.train._quasi_newton import inverse_update


T = sciml.train
VARIANTS = [T.BFGS(), T.SSBFGS(), T.SSBFGS(bounded=False), T.SSBroyden1(), T.SSBroyden2()]
IDS = ["bfgs", "ssbfgs-ab", "ssbfgs-ol", "ssbroyden1", "ssbroyden2"]


def _spd(rng, n, cond=10.0):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q @ np.diag(np.geomspace(1.0, cond, n)) @ q.T


def _pair(rng, n):
    s, y = rng.normal(size=n), rng.normal(size=n)
    return (s, y) if s @ y > 0 else (s, -y)


# ----------------------------------------------------------------------------------
# The inverse update


def test_unit_scaling_is_the_textbook_bfgs_update_and_phi_zero_is_dfp():
    rng = np.random.default_rng(0)
    n = 7
    H = _spd(rng, n)
    s, y = _pair(rng, n)
    rho = 1 / (y @ s)
    E = np.eye(n)
    bfgs = (E - rho * np.outer(s, y)) @ H @ (E - rho * np.outer(y, s)) + rho * np.outer(s, s)
    got = inverse_update(jnp.asarray(H), jnp.asarray(s), jnp.asarray(y), 1.0, 1.0)
    np.testing.assert_allclose(got, bfgs, rtol=1e-12, atol=1e-12)
    Hy = H @ y
    dfp = H - np.outer(Hy, Hy) / (y @ Hy) + rho * np.outer(s, s)
    got = inverse_update(jnp.asarray(H), jnp.asarray(s), jnp.asarray(y), 1.0, 0.0)
    np.testing.assert_allclose(got, dfp, rtol=1e-12, atol=1e-12)
    # τ scales the old information: BFGS applied to H / τ.
    H2 = H / 2.5
    scaled = (E - rho * np.outer(s, y)) @ H2 @ (E - rho * np.outer(y, s)) + rho * np.outer(s, s)
    got = inverse_update(jnp.asarray(H), jnp.asarray(s), jnp.asarray(y), 2.5, 1.0)
    np.testing.assert_allclose(got, scaled, rtol=1e-12, atol=1e-12)
    # The secant equation H₊y = s holds for any τ and φ.
    got = inverse_update(jnp.asarray(H), jnp.asarray(s), jnp.asarray(y), 0.7, 3.0)
    np.testing.assert_allclose(np.asarray(got) @ y, s, rtol=1e-11, atol=1e-12)


# τ and φ worked out by hand from the formulas (n = 3 parameters):
# b = 2, h = 1: a = 1, ρ⁻ = 1 - √½, θ⁻ = -√½, θ⁺ = 1/(1 - √½).
#   SSBroyden2: θ = max(-√½, min(θ⁺, (1-b)/b = -½)) = -½, σ = ½, φ = 1.5/0.5 = 3,
#     τ = min(ρσ^(-½), σ) with ρ = ½: min(√½, ½) = ½. Fresh: τ = h/σ = 2.
#   SSBroyden1: θ = max(θ⁻, 1/(1-b) = -1) = -√½, σ = 1 - √½,
#     φ = (1 + √½)/(1 - √½), τ = min(½ σ^(-½), σ) = σ.
# b = ½, h = 4: a = 1, ρ⁻ = min(1, 4(1 - √½)) = 1, θ⁻ = 0.
#   SSBroyden2: θ = max(0, min(1, 1)) = 1, σ = 2, φ = 0, τ = 1·min(2^(-½), 1) = √½.
#   SSBroyden1: θ⁺ = max(1, ½(1 + √½)) = 1, θ = min(1, 1/(1 - ½) = 2) = 1: as SSBroyden2.
# b = 1, h = 1: a = 0, every member is BFGS: τ = φ = 1.
R = math.sqrt(0.5)


@pytest.mark.parametrize("update, b, h, fresh, tau, phi", [
    (T.SSBroyden2(), 2.0, 1.0, False, 0.5, 3.0),
    (T.SSBroyden2(), 2.0, 1.0, True, 2.0, 3.0),
    (T.SSBroyden2(initial_scale=False), 2.0, 1.0, True, 0.5, 3.0),
    (T.SSBroyden2(), 0.5, 4.0, False, R, 0.0),
    (T.SSBroyden2(), 1.0, 1.0, False, 1.0, 1.0),
    (T.SSBroyden1(), 2.0, 1.0, False, 1 - R, (1 + R) / (1 - R)),
    (T.SSBroyden1(), 0.5, 4.0, False, R, 0.0),
    (T.SSBFGS(), 2.0, 1.0, False, 0.5, 1.0),
    (T.SSBFGS(), 0.5, 4.0, False, 1.0, 1.0),
    (T.SSBFGS(bounded=False), 0.5, 4.0, False, 2.0, 1.0),
    (T.SSBFGS(), 0.5, 4.0, True, 4.0, 1.0),  # fresh: yᵀHy/yᵀs with θ = 0
    (T.BFGS(), 2.0, 1.0, False, 1.0, 1.0),
    (T.BFGS(initial_scale=False), 2.0, 1.0, True, 1.0, 1.0),
])
def test_tau_and_phi_by_hand(update, b, h, fresh, tau, phi):
    got_tau, got_phi = update.coefficients(jnp.asarray(b), jnp.asarray(h), 3,
                                           jnp.asarray(fresh))
    np.testing.assert_allclose([got_tau, got_phi], [tau, phi], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------
# Whole steps, outside the loop


def _stepper(update, fn, varies=False):
    objective = T.Objective(lambda p, frozen: (fn(p), {}), None, has_aux=False,
                            varies=varies)
    return jax.jit(lambda p, s: update.step(objective, p, s, None))


def _quadratic(n=6, cond=50.0):
    rng = np.random.default_rng(1)
    A, c = _spd(rng, n, cond), rng.normal(size=n)
    return A, c, lambda x: 0.5 * x @ jnp.asarray(A) @ x - jnp.asarray(c) @ x


def _hand_update(variant, H, s, y, g, alpha, fresh):
    """H₊ in numpy, with b = sᵀBs / yᵀs from B = H⁻¹ (not from the line search)."""
    B = np.linalg.inv(H)
    ys = y @ s
    b, h = s @ B @ s / ys, y @ H @ y / ys
    assert np.isclose(b, -alpha * (s @ g) / ys, rtol=1e-8)
    tau, phi = (float(v) for v in variant.coefficients(b, h, H.shape[0], fresh))
    Hy = H @ y
    v = math.sqrt(y @ Hy) * (s / ys - Hy / (y @ Hy))
    return (H - np.outer(Hy, Hy) / (y @ Hy) + phi * np.outer(v, v)) / tau + np.outer(s, s) / ys


# varies=True: the gradient is evaluated afresh at every step instead of taken from the
# line search's last evaluation.
@pytest.mark.parametrize("variant, varies", [(T.BFGS(initial_scale=False), False),
                                             (T.SSBroyden2(), True)],
                         ids=["bfgs", "ssbroyden2-varies"])
def test_steps_update_h_by_the_formula_and_find_a_quadratic_minimum(variant, varies):
    A, c, fn = _quadratic()
    step = _stepper(variant, fn, varies)
    x = jnp.zeros(len(c))
    state = variant.init(x)
    for k in range(40):
        value, aux, x_new, new_state = step(x, state)
        if k < 3:  # the update, recomputed from the step the line search took
            g = A @ np.asarray(x) - c
            s, y = np.asarray(x_new - x), A @ np.asarray(x_new - x)
            alpha = float(aux["step_size"])
            assert alpha > 0 and aux["reset"] == 0 and aux["skipped"] == 0
            want = _hand_update(variant, np.asarray(state.inverse_hessian), s, y, g, alpha,
                                bool(state.fresh))
            np.testing.assert_allclose(new_state.inverse_hessian, want, rtol=1e-9,
                                       atol=1e-12)
        x, state = x_new, new_state
    np.testing.assert_allclose(x, np.linalg.solve(A, c), rtol=1e-10, atol=1e-12)


def _rosenbrock_value(x):
    return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


def test_wolfe_conditions_hold_at_accepted_steps_on_rosenbrock():
    update = T.SSBroyden2()
    step = _stepper(update, _rosenbrock_value)
    grad = jax.grad(_rosenbrock_value)
    x = jnp.array([-1.2, 1.0])
    state = update.init(x)
    checked = 0
    for _ in range(25):
        value, aux, x_new, state = step(x, state)
        if aux["reset"] == 0:
            s = np.asarray(x_new - x)
            slope = float(grad(x) @ s)
            assert slope < 0
            assert _rosenbrock_value(x_new) <= value + 1e-4 * slope  # sufficient decrease
            assert abs(float(grad(x_new) @ s)) <= 0.9 * abs(slope)  # strong curvature
            checked += 1
        x = x_new
    assert checked >= 20
    for _ in range(35):
        x, state = step(x, state)[2:]
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-10)


def test_a_failed_line_search_keeps_the_parameters_and_resets():
    # One evaluation: from x = 0.1 the first trial (a unit step along -g) lands at
    # x = -0.9, where 1000x² is 81 times larger; no sufficient decrease is found.
    update = T.SSBroyden2(max_evaluations=1)
    step = _stepper(update, lambda x: 1000 * jnp.sum(x**2))
    x = jnp.array([0.1])
    value, aux, x_new, state = step(x, update.init(x))
    assert aux["reset"] == 1 and aux["step_size"] == 0 and aux["line_search_evals"] == 1
    assert np.isnan(aux["tau"])
    np.testing.assert_array_equal(x_new, x)
    np.testing.assert_array_equal(state.inverse_hessian, np.eye(1))
    assert state.value == value and np.isclose(value, 10.0)  # kept for the next step


def test_a_step_without_positive_curvature_keeps_h():
    # cos from x = 0.5 along d = -g = sin 0.5: the first trial, α = min(1, 1/|g|) = 1,
    # reaches x = 0.5 + sin 0.5 with sufficient decrease, but the slope there is steeper
    # (yᵀs = (sin 0.5 - sin x₁) sin 0.5 < 0): the step is taken and H is kept.
    update = T.SSBroyden2(max_evaluations=1)
    step = _stepper(update, lambda x: jnp.cos(x[0]))
    x = jnp.array([0.5])
    _, aux, x_new, state = step(x, update.init(x))
    assert aux["skipped"] == 1 and aux["reset"] == 0 and np.isnan(aux["phi"])
    assert aux["step_size"] == 1
    np.testing.assert_allclose(x_new, [0.5 + math.sin(0.5)], rtol=1e-15)
    np.testing.assert_array_equal(state.inverse_hessian, np.eye(1))
    assert state.fresh  # H is still the identity, to be scaled at its first update


# SSBroyden2 on Rosenbrock: the Wolfe test above.
@pytest.mark.parametrize("update", VARIANTS[:-1], ids=IDS[:-1])
def test_converges_on_rosenbrock(update):
    res = sciml.fit(jnp.array([-1.2, 1.0]), lambda m, b, *, key: _rosenbrock_value(m),
                    update, steps=60, key=jax.random.key(0), progress=False)
    np.testing.assert_allclose(res.model, [1.0, 1.0], atol=1e-10)
    h = res.history
    # No accepted step raises the objective by more than the approximate Wolfe
    # condition's allowance (1e-6 of its value).
    assert np.all(np.diff(h["loss"]) <= 1e-6 * h["loss"][:-1])
    assert np.all(h["line_search_evals"] >= 1) and np.all(h["line_search_evals"] <= 20)


# ----------------------------------------------------------------------------------
# Through the loop: stages, resume, keys, compilation


def _regression():
    model = sciml.nn.MLP("scalar", "scalar", 8, 1, key=jax.random.key(4))
    x = jnp.linspace(-1.0, 1.0, 32)
    data = (x, jnp.sin(3 * x))

    def loss(m, batch, *, key):
        xb, yb = batch
        r = jax.vmap(m)(xb) - yb
        return 0.5 * jnp.mean(r**2), {"max_abs": jnp.max(jnp.abs(r))}

    return model, loss, data


def test_adam_then_ssbroyden_beats_adam_and_resumes_bit_exactly(tmp_path, count_compiles):
    model, loss, data = _regression()
    stages = [sciml.Stage(optax.adam(1e-2), 30), sciml.Stage(T.SSBroyden2(), 60)]
    kw = dict(key=jax.random.key(5), data=data, progress=False)
    full = sciml.fit(model, loss, stages, **kw)
    h = full.history
    adam, qn = h["stage"] == 0, h["stage"] == 1
    assert np.all(np.isnan(h["tau"][adam])) and np.all(np.isfinite(h["step_size"][qn]))
    assert h["loss"][-1] < 1e-3 * h["loss"][adam][-1]
    with count_compiles() as c:
        again = sciml.fit(model, loss, stages, **kw)  # same key, same numbers
    assert c.count == 0
    np.testing.assert_array_equal(full.history["loss"], again.history["loss"])

    class StopAt:
        every = 1

        def __call__(self, info):
            return info.step == 50

    ckpt = tmp_path / "run"
    first = sciml.fit(model, loss, stages, checkpoint=ckpt, callbacks=[StopAt()], **kw)
    assert len(first.history["loss"]) == 50
    resumed = sciml.fit(model, loss, stages, checkpoint=ckpt, resume=True, **kw)
    for a, b in zip(jax.tree.leaves(full.model), jax.tree.leaves(resumed.model)):
        np.testing.assert_array_equal(a, b)
    for col in ("loss", "max_abs", "step_size", "tau", "phi", "line_search_evals"):
        np.testing.assert_array_equal(full.history[col], resumed.history[col], err_msg=col)


def test_float32_warns_and_still_converges():
    with pytest.warns(UserWarning, match="SSBroyden2.*float32.*float64"):
        res = sciml.fit(jnp.array([-1.2, 1.0], jnp.float32),
                        lambda m, b, *, key: _rosenbrock_value(m), T.SSBroyden2(),
                        steps=60, key=jax.random.key(0), progress=False)
    assert res.model.dtype == jnp.float32 and res.history["tau"].dtype == np.float32
    np.testing.assert_allclose(res.model, [1.0, 1.0], atol=1e-2)


# ----------------------------------------------------------------------------------
# Bad input, refused before training


class _Count:
    every = 1

    def __init__(self):
        self.calls = 0

    def __call__(self, info):
        self.calls += 1


def test_residual_loss_is_refused_before_the_first_stage():
    def residual(m, batch, *, key):
        return jnp.stack([10 * (m[1] - m[0] ** 2), 1 - m[0]])

    def half_square(m, batch, *, key):
        return 0.5 * jnp.sum(residual(m, batch, key=key) ** 2)

    count = _Count()
    stages = [sciml.Stage(optax.adam(1e-3), 5, loss=half_square),
              sciml.Stage(T.SSBroyden2(), 5)]
    with pytest.raises(ValueError, match="must return a scalar.*shape \\(2,\\)"):
        sciml.fit(jnp.array([-1.2, 1.0]), residual, stages, key=jax.random.key(0),
                  progress=False, callbacks=[count])
    assert count.calls == 0


def test_a_model_too_large_for_a_dense_h_is_refused_before_training():
    count = _Count()
    stages = [sciml.Stage(optax.adam(1e-3), 5), sciml.Stage(T.BFGS(max_parameters=10), 5)]
    with pytest.raises(ValueError, match="BFGS: the model has 12 trainable.*"
                                         "max_parameters=10.*optax.lbfgs"):
        sciml.fit(jnp.ones(12), lambda m, b, *, key: jnp.sum(m**2), stages,
                  key=jax.random.key(0), progress=False, callbacks=[count])
    assert count.calls == 0


def test_non_finite_loss_at_the_start_is_named():
    with pytest.raises(sciml.DivergenceError, match="non-finite at step 0.*SSBroyden2 never "
                                                    "moves to a non-finite loss"):
        sciml.fit(jnp.ones(3), lambda m, b, *, key: jnp.sum(jnp.log(m - 2.0)),
                  T.SSBroyden2(), steps=5, key=jax.random.key(0), progress=False)


@pytest.mark.parametrize("make, error, match", [
    (lambda: T.SSBroyden2(c1=0.9, c2=0.1), ValueError, "c1 < c2.*c1=0.9"),
    (lambda: T.SSBroyden2(c2=1.0), ValueError, "c2.*between 0 and 1.*1.0"),
    (lambda: T.BFGS(c1=0.0), ValueError, "c1.*between 0 and 1"),
    (lambda: T.SSBroyden1(max_evaluations=0), ValueError, "max_evaluations.*from 1"),
    (lambda: T.SSBroyden1(max_evaluations=2.5), ValueError, "max_evaluations.*int"),
    (lambda: T.SSBFGS(bounded="yes"), TypeError, "bounded.*True or False"),
    (lambda: T.BFGS(initial_scale=1), TypeError, "initial_scale.*True or False"),
    (lambda: T.SSBroyden2(max_parameters=0), ValueError, "max_parameters"),
    (lambda: sciml.fit(jnp.ones(2), lambda m, b, *, key: jnp.sum(m**2), "ssbroyden2",
                       steps=1, key=jax.random.key(0)), TypeError, "objects, not strings"),
])
def test_bad_options_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_public_names():
    assert sciml.SSBroyden2 is T.SSBroyden2 and sciml.BFGS is T.BFGS
    assert issubclass(T.SSBroyden1, T.AbstractSelfScaledBroyden)
    assert isinstance(T.SSBFGS(), eqx.Module)
