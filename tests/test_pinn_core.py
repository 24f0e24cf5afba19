"""sciml.pinn core: derivative helpers, samplers, quadrature, domains, loss helpers, Poisson."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml
import sciml.pinn as P


# ----------------------------------------------------------------------------------
# Derivative helpers against closed forms


def f3(x):
    return jnp.sin(x[0]) * jnp.exp(x[1]) * x[2] ** 2


def f3_grad(x):
    s, c, e = np.sin(x[0]), np.cos(x[0]), np.exp(x[1])
    return np.array([c * e * x[2] ** 2, s * e * x[2] ** 2, 2 * s * e * x[2]])


def f3_hess(x):
    s, c, e, z = np.sin(x[0]), np.cos(x[0]), np.exp(x[1]), x[2]
    return np.array(
        [
            [-s * e * z**2, c * e * z**2, 2 * c * e * z],
            [c * e * z**2, s * e * z**2, 2 * s * e * z],
            [2 * c * e * z, 2 * s * e * z, 2 * s * e],
        ]
    )


POINTS = np.array([[0.3, -0.2, 1.5], [1.1, 0.4, -0.7], [-2.0, 0.0, 0.25]])


@pytest.mark.parametrize("x", POINTS)
def test_derivatives_3d(x):
    xj = jnp.asarray(x)
    np.testing.assert_allclose(P.gradient(f3, xj), f3_grad(x), rtol=1e-12)
    v, g = P.value_and_gradient(f3, xj)
    np.testing.assert_allclose(v, f3(x), rtol=1e-12)
    np.testing.assert_allclose(g, f3_grad(x), rtol=1e-12)
    H = f3_hess(x)
    for i in range(3):
        val, d1 = P.derivative(f3, xj, i)
        np.testing.assert_allclose(val, f3(x), rtol=1e-12)
        np.testing.assert_allclose(d1, f3_grad(x)[i], rtol=1e-12, atol=1e-14)
        val, grad, d2 = P.value_grad_and_second(f3, xj, i)
        np.testing.assert_allclose(grad, f3_grad(x), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(d2, H[i, i], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(P.second_derivative(f3, xj, i), H[i, i], rtol=1e-12, atol=1e-14)
        val, d1, d2 = P.derivatives_along(f3, xj, i)
        np.testing.assert_allclose(val, f3(x), rtol=1e-12)
        np.testing.assert_allclose(d1, f3_grad(x)[i], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(d2, H[i, i], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(P.laplacian(f3, xj), np.trace(H), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(P.hessian(f3, xj), H, rtol=1e-12, atol=1e-14)


def test_derivatives_scalar_point_and_vmap():
    f = lambda x: jnp.exp(-x) * jnp.sin(3 * x)
    xs = jnp.linspace(-1.0, 2.0, 7)
    ex1 = np.exp(-xs) * (3 * np.cos(3 * xs) - np.sin(3 * xs))
    ex2 = np.exp(-xs) * (-8 * np.sin(3 * xs) - 6 * np.cos(3 * xs))
    _, d1 = jax.vmap(lambda x: P.derivative(f, x))(xs)
    np.testing.assert_allclose(d1, ex1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jax.vmap(lambda x: P.second_derivative(f, x))(xs), ex2, rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(lambda x: P.laplacian(f, x))(xs), ex2, rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(lambda x: P.hessian(f, x))(xs), ex2, rtol=1e-12)


def test_derivatives_differentiate_through_model(getkey):
    # The helpers compose with grad w.r.t. parameters (what a PINN loss needs): check
    # d/da of u_xx for u = a sin(a x) against the closed form.
    def uxx(a, x):
        return P.second_derivative(lambda y: a * jnp.sin(a * y), x)

    a, x = 1.3, 0.7
    exact = -3 * a**2 * np.sin(a * x) - a**3 * x * np.cos(a * x)
    np.testing.assert_allclose(jax.grad(uxx)(a, x), exact, rtol=1e-12)


def test_derivative_errors():
    with pytest.raises(ValueError, match="scalar per-point function"):
        P.gradient(lambda x: x, jnp.ones(2))
    with pytest.raises(ValueError, match="out of range"):
        P.second_derivative(f3, jnp.ones(3), 3)
    with pytest.raises(ValueError, match="which one"):
        P.second_derivative(f3, jnp.ones(3))
    with pytest.raises(ValueError, match="jax.vmap"):
        P.gradient(f3, jnp.ones((2, 3)))
    with pytest.raises(TypeError, match="floating-point"):
        P.gradient(f3, jnp.ones(3, dtype=jnp.int32))


# ----------------------------------------------------------------------------------
# Samplers


def test_uniform_statistics(getkey):
    u = np.asarray(P.Uniform()(getkey(), 20000, 3))
    assert u.shape == (20000, 3) and u.min() >= 0 and u.max() < 1
    # Mean 1/2 and variance 1/12; 5 standard errors of the estimates.
    np.testing.assert_allclose(u.mean(0), 0.5, atol=5 * math.sqrt(1 / 12 / 20000))
    np.testing.assert_allclose(u.var(0), 1 / 12, atol=5 * math.sqrt(1 / 180 / 20000))


def test_latin_hypercube_strata(getkey):
    n, d = 50, 4
    u = np.asarray(P.LatinHypercube()(getkey(), n, d))
    for j in range(d):
        strata = np.sort(np.floor(u[:, j] * n).astype(int))
        np.testing.assert_array_equal(strata, np.arange(n))


def test_halton_known_points_and_discrepancy(getkey):
    pts = P.halton_points(4, 2)
    np.testing.assert_allclose(pts[:, 0], [0.5, 0.25, 0.75, 0.125])
    np.testing.assert_allclose(pts[:, 1], [1 / 3, 2 / 3, 1 / 9, 4 / 9])
    # Low discrepancy: the integral of a smooth function on [0,1]^2 is far more
    # accurate than with independent points (error ~ log(n)^2/n against 1/sqrt(n)).
    f = lambda u: np.exp(u[:, 0]) * np.cos(u[:, 1])
    exact = (math.e - 1) * math.sin(1)
    n = 4096
    h_err = [abs(f(np.asarray(P.Halton()(getkey(), n, 2))).mean() - exact) for _ in range(5)]
    u_err = [abs(f(np.asarray(P.Uniform()(getkey(), n, 2))).mean() - exact) for _ in range(5)]
    assert max(h_err) < 2e-3
    assert np.mean(h_err) < 0.2 * np.mean(u_err)
    # The random shift makes each key a different point set.
    a, b = P.Halton()(getkey(), 8, 2), P.Halton()(getkey(), 8, 2)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(
        P.Halton(shift=False)(getkey(), 8, 2), P.halton_points(8, 2)
    )


def test_quadrature_rules():
    # Gauss-Legendre with n nodes is exact for degree 2n - 1.
    x, w = P.GaussLegendre(5).nodes_weights(-1.0, 2.0)
    for k in range(10):
        np.testing.assert_allclose(np.sum(w * x**k), (2 ** (k + 1) - (-1) ** (k + 1)) / (k + 1))
    # Trapezoid: second order; exact for linear functions.
    x, w = P.Trapezoid(11).nodes_weights(0.0, 1.0)
    np.testing.assert_allclose(np.sum(w * (3 * x + 1)), 2.5)
    errs = [
        abs(np.sum(w * np.exp(x)) - (math.e - 1))
        for x, w in (P.Trapezoid(n).nodes_weights(0.0, 1.0) for n in (11, 21))
    ]
    np.testing.assert_allclose(errs[0] / errs[1], 4.0, rtol=2e-2)  # second order
    # Tensor product on a box.
    box = P.Box([0.0, -1.0], [1.0, 1.0])
    pts, w = box.quadrature(P.GaussLegendre(12))
    assert pts.shape == (144, 2)
    np.testing.assert_allclose(jnp.sum(w), 2.0)
    np.testing.assert_allclose(
        jnp.sum(w * jnp.exp(pts[:, 0] + pts[:, 1])), (math.e - 1) * (math.e - 1 / math.e)
    )


# ----------------------------------------------------------------------------------
# Domains


def test_box_sampling_and_boundary(getkey):
    box = P.Box([0.0, -1.0, 2.0], [1.0, 1.0, 5.0])
    x = box.sample(getkey(), 1000, P.LatinHypercube())
    assert x.shape == (1000, 3)
    assert bool(jnp.all(jax.vmap(box.contains)(x)))
    n = 30000
    xb = np.asarray(box.sample_boundary(getkey(), n, P.Halton()))
    lo, hi = np.array(box.lower), np.array(box.upper)
    on = np.isclose(xb, lo) | np.isclose(xb, hi)
    assert np.all(on.sum(1) >= 1)
    assert np.all((xb >= lo - 1e-12) & (xb <= hi + 1e-12))
    # Faces are hit in proportion to their areas: 6, 3, 2 for axes 0, 1, 2 (twice each).
    axis = np.argmax(on, axis=1)
    frac = np.bincount(axis, minlength=3) / n
    np.testing.assert_allclose(frac, np.array([6, 3, 2]) / 11, atol=0.01)
    # Each face's points fill the face uniformly: mean of a free coordinate.
    sel = axis == 2
    np.testing.assert_allclose(xb[sel, 0].mean(), 0.5, atol=0.01)


def test_interval_and_spacetime(getkey):
    iv = P.Interval(-1.0, 1.0)
    assert iv.dim == 1
    xb = np.asarray(iv.sample_boundary(getkey(), 1000))
    assert set(np.unique(xb)) == {-1.0, 1.0}
    assert abs(np.mean(xb == 1.0) - 0.5) < 0.06
    st = P.SpaceTime(iv, 0.0, 2.0)
    assert st.dim == 2
    x0 = np.asarray(st.sample_initial(getkey(), 100))
    np.testing.assert_array_equal(x0[:, 1], 0.0)
    assert np.all(np.abs(x0[:, 0]) <= 1)
    xb = np.asarray(st.sample_boundary(getkey(), 100))
    assert np.all(np.abs(xb[:, 0]) == 1) and np.all((xb[:, 1] >= 0) & (xb[:, 1] <= 2))
    # With a low-discrepancy sampler, the side and the time are not correlated.
    xb = np.asarray(st.sample_boundary(getkey(), 1000, P.Halton()))
    for side in (-1.0, 1.0):
        for early in (True, False):
            frac = np.mean((xb[:, 0] == side) & ((xb[:, 1] < 1.0) == early))
            assert abs(frac - 0.25) < 0.02, (side, early, frac)
    xi = np.asarray(st.sample(getkey(), 500, P.Halton()))
    assert np.all(np.abs(xi[:, 0]) <= 1) and np.all((xi[:, 1] >= 0) & (xi[:, 1] <= 2))
    pts, w = st.quadrature([P.GaussLegendre(4), P.Trapezoid(3)])
    np.testing.assert_allclose(jnp.sum(w), 4.0)


def test_domain_errors():
    with pytest.raises(ValueError, match="lower < upper"):
        P.Box([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="are empty"):
        P.Box([], [])
    with pytest.raises(ValueError, match="lower < upper"):
        P.Interval(1.0, 0.0)
    with pytest.raises(ValueError, match="SpaceTime"):
        P.SpaceTime(P.Interval(0.0, 1.0), 1.0, 1.0)
    with pytest.raises(TypeError, match="Box or Interval"):
        P.SpaceTime((0.0, 1.0), 0.0, 1.0)
    with pytest.raises(ValueError, match="positive int"):
        P.Box([0.0], [1.0]).sample(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="one rule or one per axis"):
        P.Box([0.0, 0.0], [1.0, 1.0]).quadrature([P.Trapezoid(3)])


# ----------------------------------------------------------------------------------
# Loss helpers


def test_weighted_sum():
    total, aux = P.weighted_sum({"a": jnp.asarray(2.0), "b": jnp.asarray(3.0)}, {"b": 10.0})
    np.testing.assert_allclose(total, 32.0)
    assert set(aux) == {"a", "b"}
    with pytest.raises(ValueError, match="not loss terms"):
        P.weighted_sum({"a": jnp.asarray(1.0)}, {"c": 1.0})


def test_grad_norm_weights():
    # Terms with gradient norms 10 and 1 at theta: weights 1:10 (jaxpi's rule,
    # w_i = mean_j |g_j| / |g_i| = 5.5 / 10 and 5.5 / 1).
    class M(eqx.Module):
        theta: jax.Array

    m = M(jnp.asarray([1.0, 0.0]))
    terms = lambda m: {"big": 10.0 * m.theta[0], "small": m.theta[0] + 0 * m.theta[1]}
    w = P.grad_norm_weights(terms, m)
    np.testing.assert_allclose(w["big"], 0.55)
    np.testing.assert_allclose(w["small"], 5.5)
    # No gradient flows into the weights.
    g = jax.grad(lambda th: P.grad_norm_weights(terms, M(th))["big"])(m.theta)
    np.testing.assert_array_equal(g, 0.0)
    # A term without gradient keeps weight 1 (it was mean / 0, ~1e37 in float32).
    flat = lambda m: {"big": 10.0 * m.theta[0], "const": jnp.asarray(2.0) + 0 * m.theta[0]}
    w = P.grad_norm_weights(flat, m)
    np.testing.assert_allclose(w["big"], 0.5)
    np.testing.assert_allclose(w["const"], 1.0)


def test_causal_weights():
    losses = jnp.asarray([0.5, 0.2, 1.0, 0.0, 0.3])
    w = P.causal_weights(losses, tol=2.0)
    np.testing.assert_allclose(w, np.exp(-2.0 * np.array([0, 0.5, 0.7, 1.7, 1.7])))
    assert w[0] == 1.0 and bool(jnp.all(jnp.diff(w) <= 0))
    np.testing.assert_array_equal(jax.grad(lambda v: P.causal_weights(v)[3])(losses), 0.0)
    # Binned version: residuals only in the last chunk leave early weights at 1.
    t = jnp.linspace(0.0, 1.0, 100)
    r2 = jnp.where(t > 0.5, 1.0, 0.0)
    loss, w = P.causal_loss(r2, t, 0.0, 1.0, chunks=4, tol=1.0)
    np.testing.assert_allclose(w, [1.0, 1.0, 1.0, np.exp(-1.0)])
    np.testing.assert_allclose(loss, (1.0 + np.exp(-1.0)) / 4)


def test_refinement(getkey):
    residual = lambda x: jnp.exp(-100 * (x[0] - 0.3) ** 2)
    cand = P.Interval(0.0, 1.0).sample(getkey(), 2000)
    pts = P.refine(residual, jnp.zeros((5, 1)), cand, 10)
    assert pts.shape == (15, 1)
    assert np.all(np.abs(np.asarray(pts[5:, 0]) - 0.3) < 0.01)
    drawn = P.sample_by_residual(getkey(), residual, cand, 4000, floor=0.0)
    # Density proportional to exp(-100 (x - 0.3)^2): mean 0.3, std 1/sqrt(200).
    np.testing.assert_allclose(jnp.mean(drawn), 0.3, atol=0.01)
    np.testing.assert_allclose(jnp.std(drawn), 1 / math.sqrt(200), rtol=0.1)
    with pytest.raises(ValueError, match="n_add"):
        P.refine(residual, pts, cand, 0)


# ----------------------------------------------------------------------------------
# A 1-D Poisson problem to 1e-4


def test_poisson_1d_to_1e4(getkey):
    # -u'' = pi^2 sin(pi x) on [0, 1], u(0) = u(1) = 0: u = sin(pi x).
    domain = P.Interval(0.0, 1.0)
    net = sciml.nn.MLP(1, "scalar", 20, 2, activation=jnp.tanh, key=getkey())
    model = sciml.nn.OutputTransform(net, lambda x, n: x[0] * (1 - x[0]) * n)
    points, _ = domain.quadrature(P.GaussLegendre(64))

    def loss(model, batch, *, key):
        x = domain.sample(key, 64, P.Halton()) if batch is None else batch

        def residual(xi):
            return -P.second_derivative(model, xi, 0) - jnp.pi**2 * jnp.sin(jnp.pi * xi[0])

        return jnp.mean(jax.vmap(residual)(x) ** 2)

    stages = [
        sciml.Stage(optax.adam(3e-3), 1000, data=None),
        sciml.Stage(optax.lbfgs(), 400, data=points),
    ]
    res = sciml.fit(model, loss, stages, key=getkey(), progress=False)
    x = jnp.linspace(0.0, 1.0, 501)[:, None]
    u = jax.vmap(res.model)(x)
    err = float(jnp.max(jnp.abs(u - jnp.sin(jnp.pi * x[:, 0]))))
    assert err < 1e-4, err


def _networks(key):
    k = jax.random.split(key, 6)
    mlp = sciml.nn.MLP(3, "scalar", 12, 3, activation=jnp.tanh, key=k[0])
    return {
        "mlp tanh": mlp,
        "mlp gelu, factorised, softplus output": sciml.nn.MLP(
            3, "scalar", 10, 2, activation=jax.nn.gelu, final_activation=jax.nn.softplus,
            factorisation=sciml.nn.RandomWeightFactorisation(), key=k[1]),
        "output transform": sciml.nn.OutputTransform(
            mlp, lambda x, n: x[0] * (1 - x[1] ** 2) * n + jnp.sin(x[2])),
        "fourier inputs, vector net": sciml.nn.OutputTransform(
            sciml.nn.MLP(8, 2, 10, 2, activation=jnp.sin, key=k[2]),
            lambda x, n: n[0] * jnp.exp(-x[1]) + n[1] ** 2,
            inputs=sciml.nn.FourierFeatures(3, 4, 1.5, key=k[3])),
        "plain function": f3,
    }


@eqx.filter_jit
def _taylor_and_truth(f, x, v, w1, w2):
    ours = P.directional_derivatives(f, x, v, (w1, w2))
    g, H = jax.grad(f)(x), jax.hessian(f)(x)
    return ours, (f(x), v @ g, v @ H @ v, (w1 @ g, w2 @ g))


@eqx.filter_jit
def _parameter_gradients(f, x, v, w):
    def residual(m, rule):
        if rule:
            _, _, uvv, (uw,) = P.directional_derivatives(m, x, v, (w,))
        else:
            uvv, uw = v @ jax.hessian(m)(x) @ v, w @ jax.grad(m)(x)
        return uvv + uw**2

    return (eqx.filter_grad(lambda m: residual(m, True))(f),
            eqx.filter_grad(lambda m: residual(m, False))(f))


@pytest.mark.parametrize("name", list(_networks(jax.random.key(0))))
def test_directional_derivatives_match_the_hessian(name):
    # Truth: jax.hessian / jax.grad of the same function, at random points and
    # directions; the layer-by-layer Taylor rules must give the same numbers.
    f = _networks(jax.random.key(0))[name]
    rng = np.random.default_rng(1)
    for _ in range(3):
        x, v, w1, w2 = (jnp.asarray(rng.normal(size=3)) for _ in range(4))
        (value, first, second, (d1, d2)), truth = _taylor_and_truth(f, x, v, w1, w2)
        np.testing.assert_allclose(value, truth[0], rtol=1e-12)
        np.testing.assert_allclose(first, truth[1], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(second, truth[2], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose([d1, d2], truth[3], rtol=1e-10, atol=1e-13)
    # Differentiable in the parameters, like the Hessian form (an independent path).
    if isinstance(f, eqx.Module):
        ga, gb = _parameter_gradients(f, x, v, w1)
        for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["mlp tanh", "mlp gelu, factorised, softplus output",
                                  "output transform"])
def test_directional_derivatives_under_vmap(name):
    # The layer rules keep the batch axis where vmap's dot_general puts it (a layout
    # choice); the numbers must not depend on it. Truth: vmapped jax.hessian/grad, with
    # per-point directions (batched, like boundary normals) and constant ones, and
    # per-point parameter gradients (vmap of grad) against the Hessian form.
    f = _networks(jax.random.key(0))[name]
    rng = np.random.default_rng(2)
    xs, vs, ws = (jnp.asarray(rng.normal(size=(7, 3))) for _ in range(3))
    w0 = jnp.asarray([0.3, -1.0, 0.5])

    @eqx.filter_jit
    def run(f):
        ours = jax.vmap(lambda x, v, w: P.directional_derivatives(f, x, v, (w, w0)))(xs, vs, ws)

        def truth(x, v, w):
            g, H = jax.grad(f)(x), jax.hessian(f)(x)
            return f(x), v @ g, v @ H @ v, (w @ g, w0 @ g)

        def grads(x, v, w):
            def r(m, rule):
                if rule:
                    _, first, second, (uw, _) = P.directional_derivatives(m, x, v, (w, w0))
                else:
                    g = jax.grad(m)(x)
                    first, second, uw = v @ g, v @ jax.hessian(m)(x) @ v, w @ g
                return second + first * uw

            return (eqx.filter_grad(lambda m: r(m, True))(f),
                    eqx.filter_grad(lambda m: r(m, False))(f))

        return ours, jax.vmap(truth)(xs, vs, ws), jax.vmap(grads)(xs, vs, ws)

    ours, truth, (ga, gb) = run(f)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(truth)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        assert a.shape[0] == 7
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_directional_derivatives_scalar_point_and_bad_input(getkey):
    net = sciml.nn.MLP("scalar", "scalar", 8, 2, activation=jnp.tanh, key=getkey())
    xs = jnp.linspace(-1.0, 1.0, 5)

    @jax.jit
    def both(xs):
        _, d1, d2, _ = jax.vmap(lambda x: P.directional_derivatives(net, x, 1.0))(xs)
        return d1, d2, jax.vmap(jax.grad(net))(xs), jax.vmap(jax.grad(jax.grad(net)))(xs)

    d1, d2, t1, t2 = both(xs)
    np.testing.assert_allclose(d1, t1, rtol=1e-10)
    np.testing.assert_allclose(d2, t2, rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="direction `v`"):
        P.directional_derivatives(f3, jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match="scalar per-point"):
        P.directional_derivatives(lambda x: x, jnp.zeros(3), jnp.ones(3))
    vec = sciml.nn.MLP(3, 2, 8, 2, activation=jnp.tanh, key=getkey())
    with pytest.raises(ValueError, match="scalar per-point"):
        P.directional_derivatives(vec, jnp.zeros(3), jnp.ones(3))
