"""Burgers: the Cole-Hopf reference, the residual helper and PDELoss."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml
import sciml.pinn as P
from sciml.data import burgers_cole_hopf, burgers_reference


NU = 0.01 / math.pi


def test_cole_hopf_published_max_slope():
    # Basdevant et al. (1986), Computers & Fluids 14, 23-41: the steepest gradient of this
    # benchmark is |u_x| = 152.00516 at x = 0, t = 1.6037 / pi.
    t = 1.6037 / math.pi
    h = 1e-6
    slope = (burgers_cole_hopf(h, t) - burgers_cole_hopf(-h, t)) / (2 * h)
    np.testing.assert_allclose(slope, -152.00516, rtol=1e-7)


@pytest.mark.parametrize("x, t", [(-0.7, 0.2), (0.4, 0.5), (0.8, 0.9), (0.05, 0.9), (-0.3, 0.05)])
def test_cole_hopf_satisfies_pde(x, t):
    # Finite-difference residual of u_t + u u_x - nu u_xx at smooth points. Central
    # differences with h = 1e-4 leave O(h^2 u''') ~ 1e-7 relative to the terms.
    h = 1e-4
    u = burgers_cole_hopf(x, t)
    ut = (burgers_cole_hopf(x, t + h) - burgers_cole_hopf(x, t - h)) / (2 * h)
    ux = (burgers_cole_hopf(x + h, t) - burgers_cole_hopf(x - h, t)) / (2 * h)
    uxx = (burgers_cole_hopf(x + h, t) - 2 * u + burgers_cole_hopf(x - h, t)) / h**2
    scale = abs(ut) + abs(u * ux) + abs(NU * uxx)
    assert abs(ut + u * ux - NU * uxx) < 1e-6 * scale


def test_cole_hopf_initial_boundary_and_convergence():
    x, t, u = burgers_reference(65, 11)
    np.testing.assert_allclose(u[0], -np.sin(np.pi * x), atol=1e-15)
    np.testing.assert_allclose(u[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(u[:, -1], 0.0, atol=1e-12)
    # Odd in x at every time.
    np.testing.assert_allclose(u, -u[:, ::-1], atol=1e-12)
    # Converged in the quadrature: doubling the nodes changes nothing.
    X, T = np.meshgrid(x, t)
    np.testing.assert_allclose(burgers_cole_hopf(X, T, points=3201), u, atol=1e-12)
    with pytest.raises(ValueError, match="t >= 0"):
        burgers_cole_hopf(0.0, -1.0)


def test_burgers_residual_on_exact_solution():
    # Travelling front u = c - a tanh(a (x - c t) / (2 nu)) solves viscous Burgers exactly.
    a, c, nu = 0.8, 0.3, 0.05

    def u(z):
        return c - a * jnp.tanh(a * (z[0] - c * z[1]) / (2 * nu))

    pts = jnp.asarray([[0.1, 0.2], [-0.4, 0.9], [0.35, 0.5]])
    r = jax.vmap(lambda z: P.burgers_residual(u, z, nu))(pts)
    np.testing.assert_allclose(r, 0.0, atol=1e-12)
    # A non-solution gives its analytic residual:
    # u = t sin(x) -> sin x + t^2 sin x cos x + nu t sin x.
    v = lambda z: z[1] * jnp.sin(z[0])
    x, t = 0.7, 0.4
    expected = math.sin(x) + t**2 * math.sin(x) * math.cos(x) + nu * t * math.sin(x)
    np.testing.assert_allclose(P.burgers_residual(v, jnp.asarray([x, t]), nu), expected)


def test_pde_loss_terms_and_training(getkey):
    # Heat equation u_t = u_xx with u(0, t) = u(1, t) = 0 as soft constraints: the exact
    # solution exp(-pi^2 t) sin(pi x) has zero loss; training lowers every named term.
    domain = P.SpaceTime(P.Interval(0.0, 1.0), 0.0, 0.5)

    def residual(u, z):
        _, grad, uxx = P.value_grad_and_second(u, z, 0)
        return grad[1] - uxx

    loss = P.PDELoss(
        residual,
        domain,
        128,
        constraints={
            "boundary": P.Constraint(domain.sample_boundary, lambda u, z: u(z), 32),
            "initial": P.Constraint(
                domain.sample_initial, lambda u, z: u(z) - jnp.sin(jnp.pi * z[0]), 32
            ),
        },
        weights={"initial": 10.0},
    )
    exact = lambda z: jnp.exp(-jnp.pi**2 * z[1]) * jnp.sin(jnp.pi * z[0])
    total, aux = loss(exact, None, key=getkey())
    assert set(aux) == {"residual", "boundary", "initial"}
    np.testing.assert_allclose(total, 0.0, atol=1e-20)
    with pytest.raises(ValueError, match="unknown terms"):
        P.PDELoss(residual, domain, 8, weights={"bc": 1.0})
    for bad in (0, 2.7, True):
        with pytest.raises(ValueError, match="`points` must be a positive int"):
            P.PDELoss(residual, domain, bad)
        with pytest.raises(ValueError, match="`points` must be a positive int"):
            P.Constraint(domain.sample_boundary, residual, bad)

    model = sciml.nn.MLP(2, "scalar", 16, 2, key=getkey())
    res = sciml.fit(model, loss, optax.adam(3e-3), steps=300, key=getkey(), progress=False)
    h = res.history
    # The total falls (300 Adam steps: by a factor > 2, not to convergence); the
    # residual term may first rise while the initial data is being fitted.
    assert np.mean(h["loss"][-20:]) < 0.5 * np.mean(h["loss"][:20])
    assert np.mean(h["initial"][-20:]) < 0.5 * np.mean(h["initial"][:20])
    np.testing.assert_allclose(
        h["loss"], h["residual"] + h["boundary"] + 10.0 * h["initial"], rtol=1e-10
    )


def test_grad_norm_weights_inside_fit(getkey):
    # Balanced weights computed under stop_gradient inside the loss work with fit, and
    # are recorded in the history as w_<name>.
    domain = P.Interval(0.0, 1.0)

    def loss(model, batch, *, key):
        x = domain.sample(key, 32)

        def terms(m):
            def res(xi):
                return P.second_derivative(m, xi, 0) + jnp.pi**2 * jnp.sin(jnp.pi * xi[0])

            r = jax.vmap(res)(x)
            ends = jnp.asarray([[0.0], [1.0]])
            return {"residual": jnp.mean(r**2), "boundary": jnp.mean(jax.vmap(m)(ends) ** 2)}

        return P.weighted_sum(terms(model), P.grad_norm_weights(terms, model))

    model = sciml.nn.MLP(1, "scalar", 16, 2, key=getkey())
    res = sciml.fit(model, loss, optax.adam(3e-3), steps=50, key=getkey(), progress=False)
    assert {"w_residual", "w_boundary"} <= set(res.history)
    # Two terms: w_r = (n_r + n_b) / (2 n_r), w_b = (n_r + n_b) / (2 n_b), so
    # 1 / w_r + 1 / w_b = 2 at every step.
    w_r, w_b = res.history["w_residual"], res.history["w_boundary"]
    np.testing.assert_allclose(1 / w_r + 1 / w_b, 2.0, rtol=1e-6)
