"""Hidden-term ODE PINNs against closed-form solutions and a tight-tolerance reference."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sympy
from scipy.integrate import solve_ivp

import sciml
from sciml.pinn import HiddenTermODE


def logistic(t, u0=0.05, r=1.0):
    """Closed form of u' = r u (1 - u)."""
    return u0 * np.exp(r * t) / (1 - u0 + u0 * np.exp(r * t))


def logistic_known(t, y):
    return y  # known growth; the hidden term is -u^2


def test_true_hidden_term_frozen_reproduces_the_solution(getkey):
    t_obs = np.linspace(0.0, 8.0, 9)
    y_obs = logistic(t_obs)[:, None]
    problem = HiddenTermODE(logistic_known, t_obs, y_obs, t_span=(0.0, 8.0),
                            surrogate_width=24, surrogate_depth=2, collocation=128)
    model = problem.model(key=getkey())
    # Put the true hidden term in and freeze it: only the surrogate trains.
    model = eqx.tree_at(lambda m: m.hidden, model, lambda y: -(y**2))
    stages = [sciml.Stage(optax.adam(optax.exponential_decay(1e-2, 500, 0.5)), 2000),
              sciml.Stage(optax.lbfgs(), 500)]
    result = sciml.fit(model, problem.loss, stages, key=getkey(), progress=False)
    ts = np.linspace(0.0, 8.0, 200)
    pred = np.asarray(jax.vmap(result.model.surrogate)(jnp.asarray(ts)))[:, 0]
    # A 9-point fit plus the physics: the PINN's own accuracy, not roundoff.
    np.testing.assert_allclose(pred, logistic(ts), atol=2e-3)


def test_closed_form_refit_recovers_lotka_volterra_coefficients(getkey):
    alpha, beta, gamma, delta = 1.3, 0.9, 0.8, 1.8

    def known(t, y):
        return jnp.stack([alpha * y[0], -delta * y[1]])

    def rhs(t, y):
        return [alpha * y[0] - beta * y[0] * y[1], -delta * y[1] + gamma * y[0] * y[1]]

    t_obs = np.linspace(0.0, 3.0, 31)
    sol = solve_ivp(rhs, (0, 3), [0.44249296, 4.6280594], t_eval=t_obs, rtol=1e-12,
                    atol=1e-12, method="DOP853")
    problem = HiddenTermODE(known, t_obs, sol.y.T, t_span=(0.0, 3.0))
    x, y = sympy.symbols("x y")
    guess = sciml.symbolic.SymbolicFunction.from_expressions(
        [-0.7 * x * y, 1.0 * x * y], ("x", "y"))
    closed = problem.closed_form(guess, rtol=1e-10, atol=1e-12)
    result = sciml.fit(closed, problem.closed_form_loss, optax.lbfgs(), steps=60,
                       key=getkey(), progress=False)
    np.testing.assert_allclose(sorted(np.asarray(result.model.term.coefficients)),
                               sorted([-beta, gamma]), rtol=1e-6)
    np.testing.assert_allclose(result.model(jnp.asarray(t_obs)), sol.y.T, rtol=1e-6,
                               atol=1e-8)


def test_partial_observations_are_masked():
    t = np.linspace(0, 1, 5)
    y = np.stack([logistic(t), np.full(5, np.nan)], 1)
    y[2, 0] = np.nan
    problem = HiddenTermODE(lambda t, y: y, t, y, t_span=(0, 1))
    assert float(problem.mask.sum()) == 4
    model = problem.model(key=jax.random.key(0))
    value, aux = problem.loss(model, None, key=jax.random.key(1))
    assert np.isfinite(value) and set(aux) == {"data", "residual"}


@pytest.mark.parametrize(
    "t_obs, y_obs, kwargs, match",
    [
        (np.linspace(0, 1, 5), np.zeros((4, 1)), {}, "has shape \\(4, 1\\) but `t_obs` has 5"),
        (np.linspace(0, 1, 5), np.zeros(5), {}, "scalar ODE pass y_obs\\[:, None\\]"),
        (np.array([0.0, 0.5, 0.4]), np.zeros((3, 1)), {}, "must be increasing"),
        (np.array([0.0, 0.5, 0.5]), np.zeros((3, 1)), {}, "duplicate time 0.5"),
        (np.linspace(0, 1, 3), np.full((3, 1), np.nan), {}, "all NaN"),
        (np.linspace(0, 2, 3), np.zeros((3, 1)), {}, "outside `t_span`"),
        (np.linspace(0, 1, 3), np.zeros((3, 1)), {"t_span": (1.0, 0.0)}, "t0 < t1"),
        (np.linspace(0, 1, 3), np.zeros((3, 1)), {"hidden_components": [3]}, "indices in"),
    ],
)
def test_refused_inputs(t_obs, y_obs, kwargs, match):
    kwargs = {"t_span": (0.0, 1.0), **kwargs}
    with pytest.raises(ValueError, match=match):
        HiddenTermODE(lambda t, y: y, t_obs, y_obs, **kwargs)


def test_refused_known_functions():
    t, y = np.linspace(0, 1, 3), np.ones((3, 2))
    with pytest.raises(ValueError, match="must return shape \\(2,\\)"):
        HiddenTermODE(lambda t, y: y[0], t, y, t_span=(0, 1))
    with pytest.raises(ValueError, match="NaN or inf"):
        HiddenTermODE(lambda t, y: jnp.log(y - 2.0), t, y, t_span=(0, 1))
    with pytest.raises(TypeError, match="must be a function"):
        HiddenTermODE("x*y", t, y, t_span=(0, 1))


def test_identify_selects_the_true_term_and_refits_it_exactly():
    # Logistic growth u' = u - u^2 seen at 12 clean times. The "trained" model is the
    # exact solution with a hidden network that is 5 % off (a smooth error): the
    # sparse regression sees a perturbed -u^2, the closed loop must still choose
    # {u^2} and fit its coefficient to the clean data (truth: -1) to solver accuracy.
    t_obs = np.linspace(0.0, 8.0, 12)
    problem = HiddenTermODE(logistic_known, t_obs, logistic(t_obs)[:, None], t_span=(0.0, 8.0))
    model = problem.model(key=jax.random.key(0))
    model = eqx.tree_at(lambda m: m.surrogate, model,
                        lambda t: jnp.atleast_1d(0.05 * jnp.exp(t) / (0.95 + 0.05 * jnp.exp(t))))
    model = eqx.tree_at(lambda m: m.hidden, model, lambda y: -(y**2) * (1.05 - 0.1 * y))
    ident = problem.identify(model, names=("u",), library=sciml.symbolic.polynomials(3),
                             rtol=1e-11, atol=1e-13)
    u = sympy.Symbol("u")
    assert ident.support == ((u**2,),)
    # rtol 1e-6: Levenberg-Marquardt on ODE solves at rtol 1e-11.
    np.testing.assert_allclose(np.asarray(ident.term.coefficients), [-1.0], rtol=1e-6)
    np.testing.assert_allclose(ident.y0, [0.05], rtol=1e-6)
    assert ident.candidates[0][0] == ident.support


def test_identify_on_clean_data_keeps_the_true_support():
    # Damped oscillator x' = v, v' = -x + h with the hidden h = -v/2, 25 clean readings,
    # exact surrogate and hidden term. Misfits at the solver's tolerance used to decide
    # the support: (x, v, x^2) scored below the true (v,).
    w = np.sqrt(1 - 1 / 16)

    def exact(t):
        e, c, s = jnp.exp(-t / 4), jnp.cos(w * t), jnp.sin(w * t)
        x = e * (c + s / (4 * w))
        return jnp.stack([x, -x / 4 + e * (-w * s + c / 4)])

    t_obs = np.linspace(0.0, 6.0, 25)
    problem = HiddenTermODE(lambda t, y: jnp.stack([y[1], -y[0]]), t_obs,
                            np.asarray(jax.vmap(exact)(jnp.asarray(t_obs))), t_span=(0.0, 6.0),
                            hidden_components=[1])
    model = problem.model(key=jax.random.key(0))
    model = eqx.tree_at(lambda m: m.surrogate, model, exact)
    model = eqx.tree_at(lambda m: m.hidden, model, lambda y: jnp.stack([0 * y[0], -0.5 * y[1]]))
    ident = problem.identify(model, names=("x", "v"))
    assert ident.support[1] == (sympy.Symbol("v"),)
    # The refit is exact to the solver's accuracy (truth -1/2).
    np.testing.assert_allclose(np.asarray(ident.term.coefficients), [-0.5], rtol=1e-6)


def test_identify_refuses_bad_arguments():
    t = np.linspace(0, 1, 5)
    problem = HiddenTermODE(logistic_known, t, logistic(t)[:, None], t_span=(0, 1))
    model = problem.model(key=jax.random.key(0))
    with pytest.raises(ValueError, match="has 2 names for a state of size 1"):
        problem.identify(model, names=("u", "v"))
    with pytest.raises(ValueError, match="`keep` must be >= 1"):
        problem.identify(model, keep=0)
    with pytest.raises(ValueError, match="`points` must be >= 2"):
        problem.states(model, 1)


def test_residual_forms_half_square_equal_the_losses(getkey):
    # Partly observed two-state problem, data_weight 3: ½‖r‖² against the losses
    # written out by hand (means of squared normalised misfits and residuals).
    t = np.linspace(0.0, 2.0, 7)
    y = np.stack([logistic(t), 1 + t**2], 1)
    y[2, 0] = y[5, 1] = np.nan
    problem = HiddenTermODE(lambda t, y: -y, t, y, t_span=(0.0, 2.0), collocation=16,
                            data_weight=3.0)
    model = problem.model(key=getkey())
    key = getkey()
    r, terms = problem.loss_residuals(model, None, key=key)
    ts = jnp.concatenate([jax.random.uniform(key, (16,), jnp.float64, 0.0, 2.0),
                          jnp.asarray(t)])
    res = np.asarray(jax.vmap(lambda s: problem.residual(model, s))(ts))
    pred = np.asarray(jax.vmap(model.surrogate)(jnp.asarray(t)))
    ok = np.isfinite(y)
    scale = np.asarray(problem.y_scale)
    data = np.sum(((pred - np.nan_to_num(y)) / scale) ** 2 * ok) / ok.sum()
    expected = 3.0 * data + np.mean(res**2)
    np.testing.assert_allclose(0.5 * float(jnp.sum(r**2)), expected, rtol=1e-12)
    np.testing.assert_allclose(float(problem.loss(model, None, key=key)[0]), expected,
                               rtol=1e-12)
    np.testing.assert_allclose(float(terms["data"]), data, rtol=1e-12)

    closed = problem.closed_form(lambda y: -(y**2))
    rc = problem.closed_form_residuals(closed, None, key=None)
    sol = np.asarray(closed(jnp.asarray(t)))
    misfit = np.sum(((sol - np.nan_to_num(y)) / scale) ** 2 * ok) / ok.sum()
    np.testing.assert_allclose(0.5 * float(jnp.sum(rc**2)), misfit, rtol=1e-12)


def test_gauss_newton_refits_the_closed_form_exactly(getkey):
    # Lotka-Volterra from clean data and coefficients 20-40 % off: a few
    # Levenberg-Marquardt steps on the residual form reach the true -beta, gamma.
    alpha, beta, gamma, delta = 1.3, 0.9, 0.8, 1.8

    def rhs(t, y):
        return [alpha * y[0] - beta * y[0] * y[1], -delta * y[1] + gamma * y[0] * y[1]]

    t_obs = np.linspace(0.0, 3.0, 31)
    sol = solve_ivp(rhs, (0, 3), [0.44249296, 4.6280594], t_eval=t_obs, rtol=1e-12,
                    atol=1e-12, method="DOP853")
    problem = HiddenTermODE(lambda t, y: jnp.stack([alpha * y[0], -delta * y[1]]), t_obs,
                            sol.y.T, t_span=(0.0, 3.0))
    x, y = sympy.symbols("x y")
    guess = sciml.symbolic.SymbolicFunction.from_expressions(
        [-0.7 * x * y, 1.0 * x * y], ("x", "y"))
    closed = problem.closed_form(guess, rtol=1e-10, atol=1e-12,
                                 adjoint=diffrax.ForwardMode())
    result = sciml.fit(closed, problem.closed_form_residuals, sciml.GaussNewton(), steps=15,
                       key=getkey(), progress=False)
    np.testing.assert_allclose(sorted(np.asarray(result.model.term.coefficients)),
                               sorted([-beta, gamma]), rtol=1e-7)
    np.testing.assert_allclose(result.model.y0, sol.y[:, 0], rtol=1e-7)


def test_refused_data_weight():
    t = np.linspace(0, 1, 3)
    with pytest.raises(ValueError, match="`data_weight` must be a finite number >= 0, got -1"):
        HiddenTermODE(lambda t, y: y, t, logistic(t)[:, None], t_span=(0, 1), data_weight=-1.0)
