"""Closing the loop: a discovered formula re-fitted with `sciml.fit`.

`discovery.jax_fn` is an equinox module whose coefficients are its one trainable leaf,
so it can be trained on its own or inside a known equation.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.integrate
import scipy.optimize
import sympy

import sciml
from sciml import symbolic as ss


def test_refit_matches_least_squares():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (200, 2))
    clean = 1.2 * X[:, 0] - 0.9 * X[:, 0] * X[:, 1]
    b = clean + 0.01 * rng.standard_normal(200)
    d = ss.discover(b, X, names=("x", "y"))
    x, y = sympy.symbols("x y")
    support = d.support[0]
    assert x in support and x * y in support
    # Start far from the answer and let sciml.fit find the least-squares optimum again.
    model = jax.tree.map(lambda c: 0.3 * c, d.jax_fn)
    data = (jnp.asarray(X), jnp.asarray(b))

    def loss(m, batch, *, key):
        inputs, targets = batch
        return jnp.mean((jax.vmap(m)(inputs) - targets) ** 2)

    result = sciml.fit(
        model, loss, optax.lbfgs(), steps=30, key=jax.random.key(0), data=data, progress=False
    )
    columns = np.stack([sympy.lambdify((x, y), t)(X[:, 0], X[:, 1]) for t in support], 1)
    ref = np.linalg.lstsq(columns, b, rcond=None)[0]
    np.testing.assert_allclose(np.asarray(result.model.coefficients), ref, rtol=1e-8)
    # The expression follows the trained coefficients.
    e = sympy.Poly(result.model.expression, x, y)
    np.testing.assert_allclose([float(e.coeff_monomial(t)) for t in support], ref, rtol=1e-8)


def _logistic(t, u0):
    return u0 * np.exp(t) / (1 - u0 + u0 * np.exp(t))


def test_refit_inside_a_known_ode():
    # u' = u + h(u), true hidden term h = -u^2 (logistic growth), u0 = 0.05.
    rng = np.random.default_rng(1)
    u0, ts = 0.05, np.linspace(0.5, 8.0, 16)
    # 1. Noisy samples of the hidden term (5 % noise) give a formula with the right
    #    support and an inexact coefficient.
    us = np.linspace(0.05, 1.0, 30)
    h = -(us**2) + 0.05 * np.mean(us**2) * rng.standard_normal(30)
    d = ss.discover(h, us, names=("u",))
    u = sympy.Symbol("u")
    assert d.support == ((u**2,),)
    # 2. Plug the formula into the known equation and re-fit it on trajectory data
    #    (1 % noise).
    data = _logistic(ts, u0) * (1 + 0.01 * rng.standard_normal(len(ts)))

    def solve(model):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, v, m: v + m(v)),
            diffrax.Tsit5(),
            0.0,
            8.0,
            0.05,
            jnp.asarray(u0),
            args=model,
            saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
            stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12),
        )
        return sol.ys

    def loss(m, batch, *, key):
        return jnp.mean((solve(m) - batch) ** 2)

    result = sciml.fit(
        d.jax_fn,
        loss,
        optax.lbfgs(),
        steps=25,
        key=jax.random.key(0),
        data=jnp.asarray(data),
        progress=False,
    )
    fitted = float(result.model.coefficients[0])

    # Independent optimum of the same misfit: scipy's solver and scalar minimiser.
    def misfit(c):
        sol = scipy.integrate.solve_ivp(
            lambda t, v: v + c * v**2,
            (0, 8),
            [u0],
            t_eval=ts,
            rtol=1e-11,
            atol=1e-13,
            method="DOP853",
        )
        return np.mean((sol.y[0] - data) ** 2)

    best = scipy.optimize.minimize_scalar(misfit, bracket=(-1.1, -0.9), options={"xtol": 1e-10}).x
    # rtol 1e-6: both optima are limited by ODE tolerances and the flat misfit.
    np.testing.assert_allclose(fitted, best, rtol=1e-6)
    assert abs(fitted + 1) < 5e-3  # 1 % trajectory noise


def test_contiguous_folds_recover_exact_sparse_polynomials():
    # Clean samples: any sensible criterion returns the exact support and coefficients.
    rng = np.random.default_rng(3)
    X = np.sort(rng.uniform(-1, 1, (120, 2)), axis=0)
    b = 0.5 - 1.5 * X[:, 0] * X[:, 1] + 0.25 * X[:, 1] ** 2
    d = ss.discover(b, X, names=("x", "y"),
                    backend=ss.STLSQ(criterion=ss.KFold(4, contiguous=True)))
    x, y = sympy.symbols("x y")
    assert set(d.support[0]) == {sympy.Integer(1), x * y, y**2}
    e = sympy.Poly(d.expression, x, y)
    np.testing.assert_allclose(
        [float(e.coeff_monomial(m)) for m in (1, x * y, y**2)], [0.5, -1.5, 0.25], rtol=1e-8)


def test_contiguous_folds_are_blocks():
    # Block CV must hold out contiguous ranges: a target that is one term on the first
    # half and another on the second is then unpredictable from either alone.
    crit = ss.KFold(2, contiguous=True, one_standard_error=False)
    A = np.stack([np.r_[np.ones(10), np.zeros(10)], np.r_[np.zeros(10), np.ones(10)]], 1)
    b = A @ np.array([1.0, 2.0])
    supports = np.array([[True, False], [False, True], [True, True]])
    # With contiguous halves, each fold's training set lacks one of the two columns:
    # the held-out half is predicted as zero by every support.
    scores = crit.scores(A, b, supports, ridge=0.0, floor=0.0)
    np.testing.assert_allclose(scores, [2.5, 2.5, 2.5], rtol=1e-12)
