"""sciml.ode: solver-heuristic regularisers (ERNODE, SRNODE), baselines, NeuralODE/SDE."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml
import sciml.experiments.node as nx
import sciml.ode as so


A_STIFF = jnp.diag(jnp.array([-50.0, -1.0]))


def linear_field(a):
    return lambda t, y, args: a @ y


class Scaled(eqx.Module):
    """f(t, y) = tanh(theta * A y): one parameter to differentiate by."""

    theta: jax.Array

    def __call__(self, t, y, args):
        a = jnp.array([[-0.5, 2.0], [-2.0, -0.5]])
        return jnp.tanh(self.theta * (a @ y)) + 0.1 * t


class Counter:
    """Counts vector-field evaluations at run time with a host callback."""

    def __init__(self, f):
        self.f, self.n = f, 0

    def _inc(self):
        self.n += 1

    def __call__(self, t, y, args):
        jax.debug.callback(self._inc)
        return self.f(t, y, args)


# ----------------------------------------------------------------------------------
# Stiffness estimate


@pytest.mark.parametrize("solver", [diffrax.Tsit5(), diffrax.Dopri5()])
def test_stiffness_estimate_of_linear_system_is_its_largest_eigenvalue(solver):
    # For y' = A y, f(Y7) - f(Y6) = A (Y7 - Y6), and Y7 - Y6 ~ h^p y^(p) = h^p A^p y
    # aligns with the stiff eigenvector, so the estimate is |lambda_max| = 50.
    model = so.NeuralODE(
        linear_field(A_STIFF),
        solver=solver,
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-9),
        regulariser=so.StiffnessRegulariser(1.0, form="max"),
    )
    _, stats = model(jnp.array([1.0, 1.0]))
    estimate = stats["stiffness_max"] * so.STABILITY_SIZE[type(solver)]
    np.testing.assert_allclose(estimate, 50.0, rtol=1e-6)


def _reference_stiffness(a, y0, h, n):
    """Σ S_j h and max S_j with the Tsit5 stages built by hand (numpy, constant steps)."""
    tab = diffrax.Tsit5.tableau
    s = len(tab.c) + 1
    coef = np.zeros((s, s))
    for row, c in enumerate(tab.a_lower, start=1):
        coef[row, : len(c)] = c
    a, y = np.asarray(a), np.asarray(y0, dtype=float)
    rms = lambda v: np.sqrt(np.mean(v**2))
    total, biggest = 0.0, 0.0
    for _ in range(n):
        stages, fs = [], []
        for i in range(s):
            yi = y + h * sum(coef[i, j] * fs[j] for j in range(i))
            stages.append(yi)
            fs.append(a @ yi)
        est = rms(fs[6] - fs[5]) / rms(stages[6] - stages[5])
        total += est * h
        biggest = max(biggest, est)
        y = stages[6]
    return total, biggest


@pytest.mark.parametrize("form", ["sum", "max"])
def test_stiffness_penalty_value_under_constant_steps(form):
    a = jnp.array([[-20.0, 3.0], [-3.0, -1.0]])
    model = so.NeuralODE(
        linear_field(a),
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=0.05,
        regulariser=so.StiffnessRegulariser(2.0, form=form),
    )
    _, stats = model(jnp.array([1.0, 1.0]))
    total, biggest = _reference_stiffness(a, [1.0, 1.0], 0.05, 20)
    expected = (total if form == "sum" else biggest) / 3.5068
    np.testing.assert_allclose(stats[f"stiffness_{form}"], expected, rtol=1e-9)
    np.testing.assert_allclose(stats["regularisation"], 2.0 * expected, rtol=1e-9)


@pytest.mark.parametrize(
    "extra",
    [so.KineticEnergyRegulariser(1e-9, jacobian_weight=0.0), so.TaylorRegulariser(1e-9, order=2)],
)
def test_integral_regulariser_leaves_heuristics_of_the_dynamics_unchanged(extra):
    # An integral regulariser adds ∫r as an extra state; the stiffness and error
    # estimates are those of y alone: against the hand-built Tsit5 stages, at two scales
    # of y0 (Shampine's estimate of a linear system does not depend on the scale).
    a = jnp.array([[-20.0, 3.0], [-3.0, -1.0]])
    for scale in (1.0, 100.0):
        y0 = scale * jnp.array([1.0, 1.0])
        model = so.NeuralODE(
            linear_field(a),
            stepsize_controller=diffrax.ConstantStepSize(),
            dt0=0.05,
            regulariser=[so.StiffnessRegulariser(1.0, form="sum"), extra],
        )
        _, stats = model(y0)
        total, _ = _reference_stiffness(a, y0, 0.05, 20)
        np.testing.assert_allclose(stats["stiffness_sum"], total / 3.5068, rtol=1e-9)
        plain = so.NeuralODE(
            linear_field(a),
            stepsize_controller=diffrax.ConstantStepSize(),
            dt0=0.05,
            regulariser=so.ErrorEstimateRegulariser(1.0, rtol=1e-3, atol=1e-6),
        )
        both = eqx.tree_at(
            lambda m: m.regulariser, plain, (plain.regulariser[0], extra)
        )
        np.testing.assert_allclose(
            both(y0)[1]["error_estimate"], plain(y0)[1]["error_estimate"], rtol=1e-12
        )


# ----------------------------------------------------------------------------------
# Step counts and NFE


def test_accepted_steps_match_diffrax_and_steps_are_unchanged():
    f = linear_field(A_STIFF)
    ctrl = diffrax.PIDController(rtol=1e-7, atol=1e-9)
    y0 = jnp.array([1.0, 1.0])
    ts = jnp.linspace(0.0, 1.0, 7)
    plain = diffrax.diffeqsolve(
        diffrax.ODETerm(f), diffrax.Tsit5(), 0.0, 1.0, None, y0,
        saveat=diffrax.SaveAt(ts=ts), stepsize_controller=ctrl,
    )
    wrapped = diffrax.diffeqsolve(
        diffrax.ODETerm(f),
        so.HeuristicsSolver(diffrax.Tsit5(), rtol=1e-7, atol=1e-9, stiffness=True),
        0.0, 1.0, None, y0,
        saveat=diffrax.SaveAt(ts=ts, solver_state=True), stepsize_controller=ctrl,
    )
    record = wrapped.solver_state[1]
    assert wrapped.stats["num_rejected_steps"] > 0  # the check covers rejections
    assert int(record["accepted"]) == int(wrapped.stats["num_accepted_steps"])
    assert int(wrapped.stats["num_steps"]) == int(plain.stats["num_steps"])
    np.testing.assert_allclose(wrapped.ys, plain.ys, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "solver", [diffrax.Tsit5(), diffrax.Dopri5(), diffrax.Dopri8(), diffrax.Bosh3()]
)
def test_nfe_equals_counted_evaluations(solver):
    counter = Counter(linear_field(A_STIFF))
    # Tight tolerances from dt0 = 0.01 reject the first attempts: diffrax alone would
    # re-evaluate the first stage on each of them; the count must still be exact.
    model = so.NeuralODE(
        counter,
        solver=solver,
        stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-9),
        regulariser=so.ErrorEstimateRegulariser(1.0),
    )
    ys, stats = model(jnp.array([1.0, 1.0]), jnp.linspace(0.0, 1.0, 5))
    jax.block_until_ready(ys)
    assert stats["num_rejected"] > 0
    assert counter.n == int(stats["nfe"])


def test_nfe_of_sde_equals_counted_drift_evaluations(getkey):
    counter = Counter(lambda t, y, args: -y**3)
    model = so.NeuralSDE(
        counter,
        lambda t, y, args: 0.2 * y,
        regulariser=so.ErrorEstimateRegulariser(1.0),
        stepsize_controller=diffrax.PIDController(rtol=1e-2, atol=1e-2),
    )
    ys, stats = model(jnp.array([1.0, 0.5]), key=getkey())
    jax.block_until_ready(ys)
    assert counter.n == int(stats["nfe"])


@pytest.mark.parametrize(
    "solver", [diffrax.SPaRK(), diffrax.SlowRK(), diffrax.GeneralShARK()],
    ids=["SPaRK", "SlowRK", "GeneralShARK"],
)
def test_nfe_diffusion_equals_counted_diffusion_evaluations(solver, getkey):
    counter = Counter(lambda t, y, args: 0.2 * y)
    model = so.NeuralSDE(
        lambda t, y, args: -y**3,
        counter,
        solver=solver,
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=0.05,
    )
    ys, stats = model(jnp.array([1.0, 0.5]), key=getkey())
    jax.block_until_ready(ys)
    assert stats["num_steps"] == 20
    assert counter.n == int(stats["nfe_diffusion"])


# ----------------------------------------------------------------------------------
# Values and gradients of the penalties


def _reference_error_penalty(f, y0, h, n, rtol, atol):
    """Σ RMS(y_error / scale) h with diffrax's own Tsit5 steps, outside the wrapper."""
    solver, term = diffrax.Tsit5(), diffrax.ODETerm(f)
    y, t, total = y0, 0.0, 0.0
    state = solver.init(term, 0.0, h, y0, None)
    for _ in range(n):
        y1, err, _, state, _ = solver.step(term, t, t + h, y, None, state, False)
        scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y1))
        total += float(jnp.sqrt(jnp.mean((err / scale) ** 2))) * h
        y, t = y1, t + h
    return total


def test_error_penalty_value_under_constant_steps():
    f = Scaled(jnp.array(1.3))
    y0 = jnp.array([1.0, -0.5])
    model = so.NeuralODE(
        f,
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=0.1,
        regulariser=so.ErrorEstimateRegulariser(3.0, rtol=1e-4, atol=1e-6),
    )
    _, stats = model(y0)
    ref = _reference_error_penalty(f, y0, 0.1, 10, 1e-4, 1e-6)
    np.testing.assert_allclose(stats["error_estimate"], ref, rtol=1e-10)
    np.testing.assert_allclose(stats["regularisation"], 3.0 * ref, rtol=1e-10)
    assert stats["nfe"] == 1 + 6 * 10


@pytest.mark.parametrize(
    "regulariser",
    [
        so.ErrorEstimateRegulariser(1.0, rtol=1e-4, atol=1e-6),
        so.StiffnessRegulariser(1.0, form="sum"),
        so.StiffnessRegulariser(1.0, form="max"),
        so.TaylorRegulariser(1.0, order=2),
    ],
    ids=["error", "stiffness-sum", "stiffness-max", "taylor"],
)
def test_penalty_gradient_matches_central_differences(regulariser):
    y0 = jnp.array([1.0, -0.5])

    def penalty(theta):
        model = so.NeuralODE(
            Scaled(theta),
            stepsize_controller=diffrax.ConstantStepSize(),
            dt0=0.05,
            regulariser=regulariser,
        )
        return model(y0)[1]["regularisation"]

    theta = jnp.array(1.3)
    grad = jax.grad(penalty)(theta)
    eps = 1e-5
    fd = (penalty(theta + eps) - penalty(theta - eps)) / (2 * eps)
    # Central differences with eps = 1e-5 carry O(eps^2) + O(1e-16/eps) ≈ 1e-10 error.
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    assert abs(float(grad)) > 1e-6


def test_step_count_gradient_matches_central_differences():
    # EEst^(1/5) of the small errors of short steps is dominated by rounding in y_error,
    # so the steps here are long (h = 0.25): central differences at eps = 1e-4 then
    # agree to ~1e-7 and shrink as eps^2 above it (1e-3: 1.3e-5).
    y0 = jnp.array([1.0, -0.5])

    def penalty(theta):
        model = so.NeuralODE(
            Scaled(theta),
            stepsize_controller=diffrax.ConstantStepSize(),
            dt0=0.25,
            regulariser=so.StepCountRegulariser(1.0, rtol=1e-4, atol=1e-6),
        )
        return model(y0)[1]["regularisation"]

    theta = jnp.array(1.3)
    grad = jax.grad(penalty)(theta)
    eps = 1e-4
    fd = (penalty(theta + eps) - penalty(theta - eps)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    assert abs(float(grad)) > 0.1


def test_step_count_sums_every_attempt_including_rejected_ones():
    # Independent record: a Tsit5 subclass reports the scaled error of every attempted
    # step through a host callback; the estimate is Σ EEst^(1/5) over all of them.
    f = lambda t, y, args: jnp.array([[-0.5, 2.0], [-2.0, -0.5]]) @ y**3
    ctrl = diffrax.PIDController(rtol=1e-7, atol=1e-7)
    y0 = jnp.array([2.0, 0.0])
    seen = []

    class Traced(diffrax.Tsit5):
        def step(self, terms, t0, t1, y0, args, state, made_jump):
            out = super().step(terms, t0, t1, y0, args, state, made_jump)
            scale = 1e-7 + 1e-7 * jnp.maximum(jnp.abs(y0), jnp.abs(out[0]))
            e = jnp.sqrt(jnp.mean((out[1] / scale) ** 2))
            jax.debug.callback(lambda x: seen.append(float(x)), e)
            return out

    diffrax.diffeqsolve(
        diffrax.ODETerm(f), Traced(), 0.0, 1.5, None, y0, stepsize_controller=ctrl
    )
    model = so.NeuralODE(
        f, stepsize_controller=ctrl, t1=1.5, regulariser=so.StepCountRegulariser(2.0)
    )
    _, stats = model(y0)
    assert stats["num_rejected"] > 0 and len(seen) == stats["num_steps"]
    expected = np.sum(np.asarray(seen) ** 0.2)
    np.testing.assert_allclose(stats["step_count"], expected, rtol=1e-10)
    np.testing.assert_allclose(stats["regularisation"], 2.0 * expected, rtol=1e-10)
    # It tracks the step count: EEst sits below 1 and mostly above 0.1 under control.
    assert 0.5 * stats["num_steps"] < stats["step_count"] < stats["num_steps"] + 1


def test_step_count_refusals_and_augmented_state(getkey):
    f = linear_field(A_STIFF)
    sc = so.StepCountRegulariser(1.0)
    with pytest.raises(ValueError, match="StepCountRegulariser.*tolerances"):
        so.NeuralODE(f, regulariser=sc, stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1)
    with pytest.raises(ValueError, match="BacksolveAdjoint"):
        so.NeuralODE(f, regulariser=sc, adjoint=diffrax.BacksolveAdjoint())
    with pytest.raises(ValueError, match="NeuralSDE takes"):
        so.NeuralSDE(f, f, regulariser=sc)
    with pytest.raises(ValueError, match="rtol"):
        so.StepCountRegulariser(1.0, rtol=-1.0)
    # An integral regulariser's extra state is not part of the estimate.
    ctrl = diffrax.ConstantStepSize()
    plain = so.NeuralODE(f, stepsize_controller=ctrl, dt0=0.05,
                         regulariser=so.StepCountRegulariser(1.0, rtol=1e-3, atol=1e-6))
    both = eqx.tree_at(lambda m: m.regulariser, plain,
                       (plain.regulariser[0], so.KineticEnergyRegulariser(1e-9)))
    y0 = jnp.array([1.0, 1.0])
    np.testing.assert_allclose(
        both(y0, key=getkey())[1]["step_count"], plain(y0)[1]["step_count"], rtol=1e-12
    )


def test_error_penalty_gradient_is_finite_when_the_estimate_vanishes():
    # f constant in t and y: Tsit5 is exact, y_error = 0, and a plain RMS would give NaN.
    class Const(eqx.Module):
        c: jax.Array

        def __call__(self, t, y, args):
            return self.c * jnp.ones_like(y)

    def penalty(c):
        model = so.NeuralODE(
            Const(c), regulariser=so.ErrorEstimateRegulariser(0.0),
            stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6),
        )
        return model(jnp.zeros(3))[1]["regularisation"]

    g = jax.grad(penalty)(jnp.array(0.7))
    assert jnp.isfinite(g) and g == 0


def test_kinetic_energy_closed_form(getkey):
    # y' = a y: f = a y(t), ∫ mean(f²) = a² mean(y0²) (e^{2aT} - 1) / (2a); J ε = a ε.
    a, T = -0.7, 1.5
    y0 = jnp.array([1.0, 2.0, -1.0])
    key = getkey()
    model = so.NeuralODE(
        lambda t, y, args: a * y,
        t1=T,
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12),
        regulariser=so.KineticEnergyRegulariser(0.5, jacobian_weight=2.0),
    )
    _, stats = model(y0, key=key)
    eps = jax.random.normal(jax.random.split(key, 1)[0], y0.shape, y0.dtype)
    kinetic = a**2 * jnp.mean(y0**2) * (np.exp(2 * a * T) - 1) / (2 * a)
    frob = a**2 * jnp.mean(eps**2) * T
    expected = kinetic + 2.0 * frob
    np.testing.assert_allclose(stats["kinetic_energy"], expected, rtol=1e-8)
    np.testing.assert_allclose(stats["regularisation"], 0.5 * expected, rtol=1e-8)


def test_total_derivatives_by_taylor_mode():
    a = jnp.array([[0.3, -1.0], [0.8, -0.2]])
    y = jnp.array([0.4, -1.1])
    derivs = so.total_derivatives(lambda t, y, args: a @ y, 0.0, y, None, 4)
    for k, d in enumerate(derivs, start=1):
        np.testing.assert_allclose(d, jnp.linalg.matrix_power(a, k) @ y, rtol=1e-12)
    # Non-autonomous scalar: y' = t y  =>  y'' = y + t y' = y (1 + t²), y''' = y (3t + t³).
    t, y = 0.7, jnp.array(1.3)
    d = so.total_derivatives(lambda t, y, args: t * y, t, y, None, 3)
    np.testing.assert_allclose(d[1], y * (1 + t**2), rtol=1e-12)
    np.testing.assert_allclose(d[2], y * (3 * t + t**3), rtol=1e-12)


def test_taylor_regulariser_closed_form():
    # y' = -y: y'' = y = e^{-t} y0, ∫_0^1 y''² = y0² (1 - e^{-2}) / 2.
    model = so.NeuralODE(
        lambda t, y, args: -y,
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12),
        regulariser=so.TaylorRegulariser(1.0, order=2),
    )
    _, stats = model(jnp.array([2.0]))
    np.testing.assert_allclose(stats["taylor_2"], 4.0 * (1 - np.exp(-2.0)) / 2, rtol=1e-8)


def test_weight_schedule_follows_step():
    schedule = optax.exponential_decay(100.0, 10, 0.1)
    model = so.NeuralODE(
        linear_field(A_STIFF),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-9),
        regulariser=so.ErrorEstimateRegulariser(schedule),
    )
    _, s0 = model(jnp.ones(2))
    _, s10 = model(jnp.ones(2), step=jnp.asarray(10))
    np.testing.assert_allclose(s0["regularisation"], 100.0 * s0["error_estimate"])
    np.testing.assert_allclose(s10["regularisation"], 10.0 * s10["error_estimate"], rtol=1e-12)


# ----------------------------------------------------------------------------------
# Refusals


def test_refused_combinations_raise():
    f = linear_field(A_STIFF)
    er = so.ErrorEstimateRegulariser(1.0)
    with pytest.raises(ValueError, match="BacksolveAdjoint"):
        so.NeuralODE(f, regulariser=er, adjoint=diffrax.BacksolveAdjoint())
    with pytest.raises(ValueError, match="ImplicitAdjoint"):
        so.NeuralODE(f, regulariser=so.StiffnessRegulariser(1.0), adjoint=diffrax.ImplicitAdjoint())
    with pytest.raises(ValueError, match="embedded error"):
        so.NeuralODE(f, regulariser=er, solver=diffrax.Euler(),
                     stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1)
    with pytest.raises(ValueError, match="equal"):
        so.NeuralODE(f, regulariser=so.StiffnessRegulariser(1.0), solver=diffrax.Dopri8())
    with pytest.raises(ValueError, match="equal"):
        so.NeuralSDE(f, f, regulariser=so.StiffnessRegulariser(1.0))
    with pytest.raises(ValueError, match="tolerances"):
        so.NeuralODE(f, regulariser=er, stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1)
    with pytest.raises(ValueError, match="form"):
        so.StiffnessRegulariser(1.0, form="mean")
    with pytest.raises(ValueError, match="weight"):
        so.ErrorEstimateRegulariser(-1.0)
    with pytest.raises(ValueError, match="implicit"):
        so.NeuralODE(f, solver=diffrax.Kvaerno5())
    with pytest.raises(ValueError, match="key"):
        so.NeuralODE(f, regulariser=so.KineticEnergyRegulariser(1.0))(jnp.ones(2))
    with pytest.raises(TypeError, match="regulariser"):
        so.NeuralODE(f, regulariser="ernode")
    with pytest.raises(ValueError, match="2 regularisers that report as 'error_estimate'"):
        so.NeuralODE(f, regulariser=(er, so.ErrorEstimateRegulariser(1.0, rtol=0.1, atol=0.1)))
    # Sum and max forms of the stiffness estimate are two records of one solve.
    so.NeuralODE(f, regulariser=(so.StiffnessRegulariser(1.0, form="sum"),
                                 so.StiffnessRegulariser(1.0, form="max")))
    with pytest.raises(TypeError, match="jacobian_weight"):
        so.KineticEnergyRegulariser(1.0, jacobian_weight=optax.constant_schedule(1.0))
    with pytest.raises(TypeError, match="real"):
        so.NeuralODE(f, regulariser=er)(jnp.array([1.0 + 1j, 0.5]))
    with pytest.raises(TypeError, match="one real float array"):
        so.NeuralSDE(f, f)({"a": jnp.ones(2)}, key=jax.random.key(0))
    with pytest.raises(ValueError, match="jump_ts"):
        ctrl = diffrax.PIDController(rtol=1e-3, atol=1e-6, jump_ts=[0.5])
        so.NeuralODE(f, stepsize_controller=ctrl)


def test_backsolve_still_serves_unregularised_and_integral_models(getkey):
    y0 = jnp.array([1.0, -0.5])

    def loss(theta, adjoint, reg):
        model = so.NeuralODE(
            Scaled(theta), adjoint=adjoint, regulariser=reg,
            stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-9),
        )
        ys, stats = model(y0)
        return jnp.sum(ys**2) + stats["regularisation"]

    theta = jnp.array(1.3)
    reg = so.TaylorRegulariser(0.1, order=2)
    g_discrete = jax.grad(loss)(theta, diffrax.RecursiveCheckpointAdjoint(), reg)
    g_back = jax.grad(loss)(theta, diffrax.BacksolveAdjoint(), reg)
    # The continuous adjoint differs from the discrete one by the solver tolerance.
    np.testing.assert_allclose(g_back, g_discrete, rtol=1e-5)


@pytest.mark.parametrize("reg", [None, so.KineticEnergyRegulariser(0.5, jacobian_weight=0.0)])
def test_backsolve_with_constant_steps_and_ts_ending_at_t1(reg):
    # Saving t1 beside a `ts` that ends there gave NaN gradients under BacksolveAdjoint
    # with a constant step, even without a regulariser.
    ts, y0 = jnp.linspace(0.0, 1.0, 5), jnp.array([1.0, 2.0])

    def loss(a):
        model = so.NeuralODE(lambda t, y, args: -args * y, dt0=0.05,
                             stepsize_controller=diffrax.ConstantStepSize(),
                             adjoint=diffrax.BacksolveAdjoint(), regulariser=reg)
        ys, stats = model(y0, ts, args=a)
        return jnp.sum(ys**2) + stats["regularisation"]

    # y = y0 exp(-a t): the data term is sum_t |y0|^2 exp(-2at); the kinetic energy
    # 0.5 int mean(f^2) dt = 0.5 a |y0|^2 (1 - exp(-2a)) / 4.
    a, n0 = 1.3, 5.0
    t = np.asarray(ts)
    grad = np.sum(-2 * t * n0 * np.exp(-2 * a * t))
    if reg is not None:
        grad += 0.5 * n0 / 4 * (1 - np.exp(-2 * a) + 2 * a * np.exp(-2 * a))
    # Tsit5 with h = 0.05 on exp(-1.3 t): local errors ~1e-9.
    np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(a)), grad, rtol=1e-6)


def test_integral_regulariser_under_backsolve_needs_known_ts():
    model = so.NeuralODE(lambda t, y, args: -y, stepsize_controller=diffrax.ConstantStepSize(),
                         dt0=0.1, adjoint=diffrax.BacksolveAdjoint(),
                         regulariser=so.KineticEnergyRegulariser(1.0, jacobian_weight=0.0))
    with pytest.raises(ValueError, match="needs `ts` known"):
        jax.jit(lambda ts: model(jnp.ones(2), ts)[0])(jnp.linspace(0.0, 1.0, 3))


def test_direct_adjoint_matches_recursive_checkpoint():
    y0 = jnp.array([1.0, -0.5])

    def loss(theta, adjoint):
        model = so.NeuralODE(
            Scaled(theta), adjoint=adjoint, max_steps=64,
            regulariser=[so.ErrorEstimateRegulariser(1.0), so.StiffnessRegulariser(1.0)],
        )
        ys, stats = model(y0)
        return jnp.sum(ys**2) + stats["regularisation"]

    theta = jnp.array(1.3)
    g1 = jax.grad(loss)(theta, diffrax.RecursiveCheckpointAdjoint())
    g2 = jax.grad(loss)(theta, diffrax.DirectAdjoint())
    np.testing.assert_allclose(g2, g1, rtol=1e-10)


# ----------------------------------------------------------------------------------
# Transformations, dtypes, fit


def test_jit_vmap_float32():
    key = jax.random.key(0)
    net = eqx.nn.MLP(2, 2, 16, 1, activation=jnp.tanh, key=key, dtype=jnp.float32)
    model = so.NeuralODE(
        lambda t, y, args: net(y),
        regulariser=[so.ErrorEstimateRegulariser(0.1), so.StiffnessRegulariser(0.01)],
    )
    y0 = jnp.ones((5, 2), jnp.float32) * jnp.linspace(0.1, 1.0, 5, dtype=jnp.float32)[:, None]
    ts = jnp.linspace(0.0, 1.0, 4, dtype=jnp.float32)

    @jax.jit
    def run(y0):
        return jax.vmap(lambda y: model(y, ts))(y0)

    ys, stats = run(y0)
    assert ys.shape == (5, 4, 2) and ys.dtype == jnp.float32
    assert stats["regularisation"].dtype == jnp.float32
    assert stats["nfe"].shape == (5,)
    assert np.all(np.isfinite(stats["regularisation"]))
    ys0, _ = model(y0[0], ts)
    np.testing.assert_allclose(ys[0], ys0, rtol=1e-5, atol=1e-6)


def test_vmap_equals_solo_solves_in_float64():
    model = so.NeuralODE(
        Scaled(jnp.array(1.3)),
        regulariser=[so.ErrorEstimateRegulariser(0.1), so.StiffnessRegulariser(0.01)],
    )
    y0 = jnp.array([[1.0, -0.5], [0.2, 0.3], [2.0, 1.0]])
    ys, stats = jax.jit(jax.vmap(model))(y0)
    for i in range(3):
        ys_i, stats_i = model(y0[i])
        np.testing.assert_allclose(ys[i], ys_i, rtol=1e-10)
        for k in ("nfe", "num_accepted", "regularisation", "error_estimate", "stiffness_sum"):
            np.testing.assert_allclose(stats[k][i], stats_i[k], rtol=1e-8)


def test_inside_fit_the_error_regulariser_trains(getkey):
    # Fit y(1) = 0.5 y0 for a batch held as one state, with a scheduled penalty weight
    # (the loss takes `step`); the fit improves and the penalty stays finite.
    class Batched(eqx.Module):
        net: sciml.nn.MLP

        def __call__(self, t, y, args):
            return jax.vmap(self.net)(y)

    model = so.NeuralODE(
        Batched(sciml.nn.MLP(2, 2, 16, 1, key=getkey())),
        stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-5),
        regulariser=so.ErrorEstimateRegulariser(optax.linear_schedule(1e-3, 1e-4, 20)),
    )
    x = jax.random.normal(getkey(), (32, 2))

    def loss(m, batch, *, key, step):
        ys, stats = m(batch)
        mse = jnp.mean((ys - 0.5 * batch) ** 2)
        return mse + stats["regularisation"], {"mse": mse, "nfe": stats["nfe"] * 1.0}

    result = sciml.fit(model, loss, optax.adam(1e-2), steps=40, key=getkey(), data=x,
                       progress=False)
    hist = result.history
    assert hist["mse"][-1] < 0.5 * hist["mse"][0]
    assert np.all(np.isfinite(hist["loss"]))


def test_neural_sde_error_regulariser_gradient(getkey):
    class Drift(eqx.Module):
        w: jax.Array

        def __call__(self, t, y, args):
            return -self.w * y**3

    key = getkey()

    def loss(w):
        model = so.NeuralSDE(
            Drift(w), lambda t, y, args: 0.2 * y,
            regulariser=so.ErrorEstimateRegulariser(1.0),
        )
        ys, stats = model(jnp.array([1.5, -1.0]), jnp.linspace(0, 1, 5), key=key)
        return jnp.sum(ys**2) + stats["regularisation"], stats

    (value, stats), g = jax.value_and_grad(loss, has_aux=True)(jnp.array(1.0))
    assert jnp.isfinite(g) and stats["error_estimate"] > 0
    assert stats["num_accepted"] > 0


# ----------------------------------------------------------------------------------
# Fewest steps subject to a data loss


class _Theta(eqx.Module):
    theta: jax.Array


def test_fewest_steps_switches_between_constraint_and_step_count():
    # Data loss theta^2, step count 3 theta: a gradient of 2 theta / target while the
    # constraint is violated, 3 once it holds.
    def loss(m, batch, *, key, step):
        return m.theta**2, {"step_count": 3 * m.theta, "num_steps": 5.0}

    obj = so.fewest_steps(loss, target=1.0)
    for theta, grad, value in ((2.0, 4.0, 3.0), (0.5, 3.0, 1.5)):
        g = jax.grad(lambda m: obj(m, None, key=None, step=0)[0])(_Theta(jnp.array(theta)))
        np.testing.assert_allclose(g.theta, grad)
        v, aux = obj(_Theta(jnp.array(theta)), None, key=None, step=0)
        np.testing.assert_allclose(v, value)
        np.testing.assert_allclose(aux["constraint"], theta**2 - 1)
    with pytest.raises(ValueError, match="step_count"):
        so.fewest_steps(lambda m, b, *, key, step: (m.theta, {}), 1.0)(
            _Theta(jnp.array(1.0)), None, key=None, step=0
        )
    with pytest.raises(ValueError, match="target"):
        so.fewest_steps(loss, target=0.0)


def test_keep_fewest_steps_inside_fit_on_the_spiral():
    # A short vanilla fit, then the switching objective; the kept model, re-solved
    # independently, has the recorded step count, meets the target, and is the
    # feasible row of the history with the fewest steps.
    ts, ys = nx.spiral_data()
    v = nx.train_spiral(nx.Method("vanilla", None), steps=150, lr=0.05, data=(ts, ys))
    node = so.NeuralODE(
        v["model"].vector_field,
        stepsize_controller=diffrax.PIDController(rtol=1e-7, atol=1e-7),
        t1=1.5,
        regulariser=so.StepCountRegulariser(),
    )

    def loss(f, batch, *, key, step):
        pred, stats = eqx.tree_at(lambda m: m.vector_field, node, f)(ys[0], ts)
        return jnp.mean((pred - ys) ** 2), {
            "step_count": stats["step_count"], "num_steps": stats["num_steps"] * 1.0,
        }

    target = 1.1 * v["mse"]
    start_steps = int(node(ys[0], ts)[1]["num_steps"])
    keep = so.KeepFewestSteps(target, start=node.vector_field)
    result = sciml.fit(node.vector_field, so.fewest_steps(loss, target), optax.adam(1e-2),
                       steps=300, key=jax.random.key(0), callbacks=[keep])
    h = result.history
    feasible = h["data_loss"] <= target
    assert feasible.any() and keep.num_steps == int(h["num_steps"][feasible].min())
    pred, stats = eqx.tree_at(lambda m: m.vector_field, node, keep.model)(ys[0], ts)
    assert int(stats["num_steps"]) == keep.num_steps
    assert float(jnp.mean((pred - ys) ** 2)) <= target
    assert keep.num_steps < start_steps
