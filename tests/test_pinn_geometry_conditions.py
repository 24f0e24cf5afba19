"""Boundary conditions on domain pieces, and derivative helpers for vector fields and
the incompressible Navier-Stokes equations, against closed forms."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml
import sciml.pinn as P


def _vm(f, x):
    return np.asarray(jax.jit(jax.vmap(f))(jnp.asarray(x)))


def _field(x):
    # A field with hand-computed derivatives: f = (sin x cos y, x^2 y^3).
    return jnp.stack([jnp.sin(x[0]) * jnp.cos(x[1]), x[0] ** 2 * x[1] ** 3])


def test_field_derivatives_divergence_curl_laplacian(getkey):
    pts = np.asarray(jax.random.uniform(getkey(), (20, 2), minval=-1, maxval=1))
    value, jac, sec = jax.vmap(lambda p: P.field_derivatives(_field, p))(jnp.asarray(pts))
    x, y = pts[:, 0], pts[:, 1]
    np.testing.assert_allclose(value, np.stack([np.sin(x) * np.cos(y), x**2 * y**3], 1))
    jac_exact = np.stack([
        np.stack([np.cos(x) * np.cos(y), -np.sin(x) * np.sin(y)], 1),
        np.stack([2 * x * y**3, 3 * x**2 * y**2], 1),
    ], 1)
    np.testing.assert_allclose(jac, jac_exact, rtol=1e-12, atol=1e-14)
    sec_exact = np.stack([
        np.stack([-np.sin(x) * np.cos(y), -np.sin(x) * np.cos(y)], 1),
        np.stack([2 * y**3, 6 * x**2 * y], 1),
    ], 1)
    np.testing.assert_allclose(sec, sec_exact, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(_vm(lambda p: P.divergence(_field, p), pts),
                               np.cos(x) * np.cos(y) + 3 * x**2 * y**2, rtol=1e-12)
    np.testing.assert_allclose(_vm(lambda p: P.curl(_field, p), pts),
                               2 * x * y**3 + np.sin(x) * np.sin(y), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(_vm(lambda p: P.vector_laplacian(_field, p), pts),
                               np.stack([-2 * np.sin(x) * np.cos(y), 2 * y**3 + 6 * x**2 * y], 1),
                               rtol=1e-12, atol=1e-14)
    # 3-D curl of (y z, x z, x y) = grad(x y z) is zero; of (-y, x, 0) it is (0, 0, 2).
    p3 = jnp.asarray([0.3, -0.7, 1.1])
    np.testing.assert_allclose(P.curl(lambda q: jnp.stack([q[1] * q[2], q[0] * q[2],
                                                           q[0] * q[1]]), p3), 0.0, atol=1e-15)
    np.testing.assert_allclose(P.curl(lambda q: jnp.stack([-q[1], q[0], 0 * q[2]]), p3),
                               [0, 0, 2])


def test_field_derivatives_through_a_network_match_jax(getkey):
    # The Taylor pass through sciml.nn networks with vector outputs, some axes first order.
    net = sciml.nn.MLP(3, 4, 16, 2, activation=jnp.tanh, key=getkey())
    pts = jax.random.normal(getkey(), (10, 3))
    value, jac, sec = jax.vmap(lambda p: P.field_derivatives(net, p, second=(0, 1)))(pts)
    np.testing.assert_allclose(value, jax.vmap(net)(pts), rtol=1e-12)
    np.testing.assert_allclose(jac, jax.vmap(jax.jacfwd(net))(pts), rtol=1e-10, atol=1e-12)
    hess = jax.vmap(jax.hessian(net))(pts)  # (n, 4, 3, 3)
    np.testing.assert_allclose(sec, np.stack([hess[:, :, 0, 0], hess[:, :, 1, 1]], -1),
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="distinct axes"):
        P.field_derivatives(net, pts[0], second=(0, 3))
    with pytest.raises(ValueError, match="one output per coordinate"):
        P.divergence(net, pts[0])


def kovasznay(re):
    lam = re / 2 - math.sqrt(re**2 / 4 + 4 * math.pi**2)

    def f(x):
        e = jnp.exp(lam * x[0])
        u = 1 - e * jnp.cos(2 * jnp.pi * x[1])
        v = lam / (2 * jnp.pi) * e * jnp.sin(2 * jnp.pi * x[1])
        p = 0.5 * (1 - jnp.exp(2 * lam * x[0]))
        return jnp.stack([u, v, p])

    return f


def test_navier_stokes_residual_vanishes_on_exact_solutions(getkey):
    pts = jax.random.uniform(getkey(), (50, 2), minval=-0.5, maxval=1.0)
    r = _vm(lambda p: P.navier_stokes_residual(kovasznay(20.0), p, 1 / 20), pts)
    assert r.shape == (50, 3)
    np.testing.assert_allclose(r, 0.0, atol=1e-11)
    # A wrong viscosity leaves a residual of the size of the viscous term.
    assert np.max(np.abs(_vm(lambda p: P.navier_stokes_residual(kovasznay(20.0), p, 0.1),
                             pts))) > 1e-2

    # Taylor-Green vortex: unsteady, time last.
    nu = 0.05

    def tg(z):
        x, y, t = z
        u = -jnp.cos(x) * jnp.sin(y) * jnp.exp(-2 * nu * t)
        v = jnp.sin(x) * jnp.cos(y) * jnp.exp(-2 * nu * t)
        p = -0.25 * (jnp.cos(2 * x) + jnp.cos(2 * y)) * jnp.exp(-4 * nu * t)
        return jnp.stack([u, v, p])

    pts3 = jax.random.uniform(getkey(), (50, 3), minval=0, maxval=3)
    r = _vm(lambda p: P.navier_stokes_residual(tg, p, nu, time=True), pts3)
    np.testing.assert_allclose(r, 0.0, atol=1e-13)
    with pytest.raises(ValueError, match=r"\(u_1, \.\.\., u_2, p\)"):
        P.navier_stokes_residual(lambda p: p, jnp.ones(2), 0.1)


def test_boundary_conditions_vanish_on_their_closed_forms(getkey):
    box = P.Box([0, 0], [1, 1])
    right = box.boundary(where=lambda x: x[0] > 1 - 1e-9)
    u = lambda x: x[0] ** 2 * x[1] + jnp.sin(x[1])  # noqa: E731
    # du/dn on the right face is du/dx = 2 x y = 2 y.
    conds = {
        "dirichlet": P.DirichletBC(box, lambda x: x[0] ** 2 * x[1] + jnp.sin(x[1]), 64),
        "neumann": P.NeumannBC(right, lambda x: 2 * x[1], 64),
        "robin": P.RobinBC(right, 2.0, 3.0, lambda x: 2 * (x[1] + jnp.sin(x[1])) + 6 * x[1],
                           64),
    }
    for name, c in conds.items():
        x = c.sample(getkey(), c.points)
        assert x.shape == (64, 2)
        np.testing.assert_allclose(c.residuals(u, x), 0.0, atol=1e-13, err_msg=name)
    # Wrong data shows: the flux off by one gives residual -1 everywhere.
    bad = P.NeumannBC(right, lambda x: 2 * x[1] + 1, 16)
    np.testing.assert_allclose(bad.residuals(u, bad.sample(getkey(), 16)), -1.0, rtol=1e-12)

    # A hole's Neumann condition uses the normal into the hole: u = |x - c|^2 has
    # du/dn = -2 r there.
    c, r = jnp.asarray([0.5, 0.5]), 0.2
    holed = box - P.Disk(c, r)
    hole = P.NeumannBC(holed.boundary(part=holed.b), -2 * r, 32)
    x = hole.sample(getkey(), 32)
    np.testing.assert_allclose(hole.residuals(lambda p: jnp.sum((p - c) ** 2), x), 0.0,
                               atol=1e-12)

    # Periodic in x: sin(2 pi x) + y matches value and slope across; x does not.
    left = box.boundary(where=lambda x: x[0] < 1e-9)
    per = P.PeriodicBC(left, (1.0, 0.0), 32)
    x = per.sample(getkey(), 32)
    np.testing.assert_allclose(per.residuals(lambda p: jnp.sin(2 * jnp.pi * p[0]) + p[1], x),
                               0.0, atol=1e-12)
    np.testing.assert_allclose(per.residuals(lambda p: p[0], x)[:, 0], -1.0)

    # Vector fields: a condition on one component.
    vec = P.DirichletBC(box, lambda x: x[0], 16, component=1)
    np.testing.assert_allclose(vec.residuals(lambda p: p[::-1] * 1.0, vec.sample(getkey(), 16)),
                               0.0)
    with pytest.raises(ValueError, match="component="):
        P.DirichletBC(box, 0.0, 8).residual(lambda p: p, jnp.zeros(2))
    with pytest.raises(ValueError, match="positive int"):
        P.DirichletBC(box, 0.0, 0)
    with pytest.raises(TypeError, match="must be a domain or a piece"):
        P.NeumannBC(lambda x: x, 0.0, 8)
    with pytest.raises(ValueError, match="nonzero vector of 2"):
        P.PeriodicBC(left, (1.0, 0.0, 0.0))


def test_conditions_train_with_balancing_and_causal_weights(getkey):
    # Heat equation u_t = u_xx + u_yy on a disk, u = 0 on the circle, u(., 0) given:
    # conditions as PDELoss constraints, grad-norm balanced, initial term causal.
    disk = P.Disk([0.0, 0.0], 1.0)
    st = P.SpaceTime(disk, 0.0, 0.5)
    bc = P.DirichletBC(st, 0.0, 32)
    ic = P.InitialCondition(st, lambda z: 1 - z[0] ** 2 - z[1] ** 2, 32)

    def residual(u, z):
        _, jac, sec = P.field_derivatives(u, z, second=(0, 1))
        return jac[2] - sec[0] - sec[1]

    loss = P.PDELoss(residual, st, 64, constraints={"boundary": bc, "initial": ic})
    model = sciml.nn.MLP(3, "scalar", 16, 2, key=getkey())
    batch = loss.sample(getkey())

    @eqx.filter_jit
    def check(model, batch):
        terms = loss.terms(model, batch)
        w = P.grad_norm_weights(lambda m: loss.terms(m, batch), model)
        total, aux = P.weighted_sum(terms, w)
        # Causal weighting of the boundary residuals by their times.
        xb = batch["boundary"]
        causal = P.causal_loss(bc.residuals(model, xb) ** 2, xb[:, -1], st.t0, st.t1, chunks=4)
        return terms, bc.loss(model, xb), total, aux, causal

    terms, bc_loss, total, aux, (causal, cw) = check(model, batch)
    assert set(terms) == {"residual", "boundary", "initial"}
    np.testing.assert_allclose(terms["boundary"], bc_loss)
    assert np.isfinite(total) and {"w_residual", "w_boundary", "w_initial"} <= set(aux)
    assert cw.shape == (4,) and cw[0] == 1 and np.isfinite(causal)
    res = sciml.fit(model, loss, optax.adam(3e-3), steps=100, key=getkey(), progress=False)
    h = res.history
    # Every term is driven down from the start (100 steps: not to convergence).
    for name in ("loss", "initial"):
        assert np.mean(h[name][-10:]) < 0.5 * h[name][0], name
