"""The residuals of `benchmarks/curvature.py` against independent truth: one undamped
Gauss-Newton step through the benchmark's residual code, on a model linear in its
parameters, equals numpy's least-squares solution of the collocation system written out
by hand (2-D Poisson, 1-D heat); the heat and Burgers residuals vanish at closed-form
solutions; the DeepONet residual's ½‖r‖² is half the MSE."""

import importlib.util
import math
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml
import sciml.pinn as P


ROOT = pathlib.Path(__file__).resolve().parent.parent
T = sciml.train


def _load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "_curvature_benchmark", ROOT / "benchmarks" / "curvature.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CV = _load_benchmark()


def _undamped(solver):
    return sciml.GaussNewton(T.GridLineSearch(damping=0.0, halvings=0), solver=solver)


class Basis(eqx.Module):
    """u(p) = Σ c_i φ_i(p): linear in its parameters c."""

    c: jax.Array
    basis: callable = eqx.field(static=True)

    def __call__(self, p):
        return jnp.dot(self.c, self.basis(p))


def _step(model, residual, solver):
    res = sciml.fit(model, residual, _undamped(solver), steps=1, key=jax.random.key(0),
                    progress=False)
    return np.asarray(res.model.c)


SOLVERS = [T.DenseSolve(), T.CGSolve(max_steps=200, rtol=1e-14)]

# 2-D Poisson: monomials x^a y^b, a, b <= 3; their Laplacian is written out below.
POWERS = [(a, b) for a in range(4) for b in range(4)]


def _monomials(p):
    return jnp.stack([p[0] ** a * p[1] ** b for a, b in POWERS])


def _fall(k, x, n):
    """d^n/dx^n x^k, in numpy."""
    coef = math.prod(range(k - n + 1, k + 1)) if k >= n else 0
    return coef * x ** max(k - n, 0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_one_step_solves_the_poisson_collocation_system(solver):
    interior, boundary = CV.unit_grid(6), CV.square_boundary(5)  # 36 + 20 points
    residual = CV.pde_residual(CV.poisson_residual, jnp.asarray(interior),
                               jnp.asarray(boundary), lambda p: jnp.zeros(()))
    c = _step(Basis(jnp.zeros(len(POWERS)), _monomials), residual, solver)

    x, y = interior[:, 0], interior[:, 1]
    lap = np.stack([_fall(a, x, 2) * y**b + x**a * _fall(b, y, 2) for a, b in POWERS], 1)
    xb, yb = boundary[:, 0], boundary[:, 1]
    vals = np.stack([xb**a * yb**b for a, b in POWERS], 1)
    f = 2 * np.pi**2 * np.sin(np.pi * x) * np.sin(np.pi * y)
    A = np.concatenate([-lap / math.sqrt(len(x)), vals / math.sqrt(len(xb))])
    b = np.concatenate([f / math.sqrt(len(x)), np.zeros(len(xb))])
    truth = np.linalg.lstsq(A, b, rcond=None)[0]
    np.testing.assert_allclose(c, truth, rtol=1e-7, atol=1e-9)


# 1-D heat: sin(jπx) t^k, j = 1..3, k = 0..3 (the exact solution is not in the span).
HEAT = [(j, k) for j in range(1, 4) for k in range(4)]


def _heat_basis(p):
    return jnp.stack([jnp.sin(j * jnp.pi * p[0]) * p[1] ** k for j, k in HEAT])


@pytest.mark.parametrize("solver", SOLVERS)
def test_one_step_solves_the_heat_collocation_system(solver):
    interior, boundary = CV.unit_grid(6), CV.heat_boundary(8)  # 36 + 24 points
    residual = CV.pde_residual(CV.heat_residual, jnp.asarray(interior),
                               jnp.asarray(boundary), CV.heat_exact)
    c = _step(Basis(jnp.zeros(len(HEAT)), _heat_basis), residual, solver)

    x, t = interior[:, 0], interior[:, 1]
    # (∂_t - ¼ ∂_xx) sin(jπx) t^k = (k t^(k-1) + ¼ j²π² t^k) sin(jπx)
    pde = np.stack([(_fall(k, t, 1) + 0.25 * (j * np.pi) ** 2 * t**k) * np.sin(j * np.pi * x)
                    for j, k in HEAT], 1)
    xb, tb = boundary[:, 0], boundary[:, 1]
    vals = np.stack([np.sin(j * np.pi * xb) * tb**k for j, k in HEAT], 1)
    g = np.exp(-np.pi**2 * tb / 4) * np.sin(np.pi * xb)
    A = np.concatenate([pde / math.sqrt(len(x)), vals / math.sqrt(len(xb))])
    b = np.concatenate([np.zeros(len(x)), g / math.sqrt(len(xb))])
    truth = np.linalg.lstsq(A, b, rcond=None)[0]
    np.testing.assert_allclose(c, truth, rtol=1e-7, atol=1e-9)


def test_heat_residual_vanishes_at_the_exact_solution():
    pts = jnp.asarray(np.random.default_rng(0).uniform(size=(50, 2)))
    r = jax.vmap(lambda p: CV.heat_residual(CV.heat_exact, p))(pts)
    assert float(jnp.max(jnp.abs(r))) < 1e-12
    # and not at a wrong diffusivity: u = exp(-π² t) sin(πx) solves u_t = u_xx instead
    wrong = jax.vmap(lambda p: CV.heat_residual(
        lambda q: jnp.exp(-(jnp.pi**2) * q[1]) * jnp.sin(jnp.pi * q[0]), p))(pts)
    assert float(jnp.max(jnp.abs(wrong))) > 1.0


def test_burgers_residual_vanishes_at_a_cole_hopf_solution():
    # φ = a + exp(-νπ²t) cos(πx) solves φ_t = ν φ_xx, so u = -2ν φ_x / φ solves Burgers.
    nu, a = 0.01 / math.pi, 1.5

    def u(p):
        e = jnp.exp(-nu * jnp.pi**2 * p[1])
        return 2 * nu * jnp.pi * e * jnp.sin(jnp.pi * p[0]) / (a + e * jnp.cos(jnp.pi * p[0]))

    pts = jnp.asarray(np.random.default_rng(1).uniform([-1, 0], [1, 1], size=(50, 2)))
    r = jax.vmap(lambda p: P.burgers_residual(u, p, nu))(pts)
    assert float(jnp.max(jnp.abs(r))) < 1e-14
    r_wrong = jax.vmap(lambda p: P.burgers_residual(u, p, 2 * nu))(pts)
    assert float(jnp.max(jnp.abs(r_wrong))) > 1e-5


def test_deeponet_residual_is_the_scaled_misfit():
    import sciml.data  # noqa: F401
    import sciml.operators as so

    rng = np.random.default_rng(2)
    data = sciml.data.TripleCartesianProd(rng.normal(size=(4, 5)), rng.uniform(size=(3, 1)),
                                  rng.normal(size=(4, 3)))
    data = so.as_arrays(data)
    model = so.DeepONet([5, 6], [1, 6], key=jax.random.key(0))
    r = CV.deeponet_residual(data)(model, None, key=None)
    assert r.shape == (12,)
    pred = np.asarray(model.cartesian(data.branch, data.trunk))
    np.testing.assert_allclose(0.5 * np.sum(np.asarray(r) ** 2),
                               0.5 * np.mean((pred - np.asarray(data.y)) ** 2), rtol=1e-12)
