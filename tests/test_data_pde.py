"""sciml.data's FNO datasets: the Burgers and Darcy reference solvers against exact
solutions, the random inputs against their covariance operators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ive

import sciml.data as sd


def _cole_hopf_sine(x, t, amp, nu, terms=80):
    """Periodic Burgers from u0 = amp sin(2 pi x): u = -2 nu phi_x / phi with phi the heat
    solution from exp(amp cos(2 pi x) / (4 pi nu)), whose cosine series has modified
    Bessel coefficients I_n (scaled by e^-z in `ive`, which cancels in the ratio)."""
    z = amp / (4 * np.pi * nu)
    n = np.arange(1, terms)
    decay = ive(n, z) * np.exp(-nu * (2 * np.pi * n) ** 2 * t)
    num = 8 * np.pi * nu * np.sin(2 * np.pi * np.outer(x, n)) @ (n * decay)
    den = ive(0, z) + 2 * np.cos(2 * np.pi * np.outer(x, n)) @ decay
    return num / den


@pytest.mark.parametrize("drift", [0.0, 0.3])
def test_burgers_solver_against_cole_hopf(drift):
    # amp = 5, nu = 0.1: the front steepens to a gradient of ~25 by t = 0.2. A constant
    # drift c moves the solution: u(x, t) = c + u_c=0(x - c t, t) (Galilean invariance).
    x = np.arange(128) / 128
    amp, nu, t1 = 5.0, 0.1, 0.2
    exact = drift + _cole_hopf_sine(x - drift * t1, t1, amp, nu)
    solve = jax.jit(
        lambda u, steps: sd.solve_burgers_periodic(u, nu=nu, t1=t1, steps=steps),
        static_argnums=1,
    )
    u0 = jnp.asarray(amp * np.sin(2 * np.pi * x) + drift)
    errors = [np.max(np.abs(np.asarray(solve(u0, s)) - exact)) for s in (20, 40, 80)]
    # ETDRK4 is fourth order: each halving of the step divides the error by ~16.
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 3.5), (errors, orders)
    assert errors[-1] < 1e-6 * np.max(np.abs(exact)), errors


def test_burgers_conserves_the_mean(getkey):
    u0 = sd.periodic_grf(getkey(), 3, 64) + jnp.asarray([[0.0], [0.5], [-1.0]])
    u1 = jax.jit(jax.vmap(lambda u: sd.solve_burgers_periodic(u, steps=50)))(u0)
    np.testing.assert_allclose(u1.mean(axis=1), [0.0, 0.5, -1.0], atol=1e-13)


def test_periodic_grf_covariance(getkey):
    # C = sigma^2 (-Delta + tau^2)^-gamma on the periodic unit interval, mean mode removed:
    # C(x, x') = sum_k 2 sigma^2 ((2 pi k)^2 + tau^2)^-gamma cos 2 pi k (x - x'), k >= 1
    # (the eigenfunctions sqrt(2) cos, sqrt(2) sin); on 16 points k runs to 8.
    n, num, sigma, tau, gamma = 16, 20000, 25.0, 5.0, 2.0
    samples = np.asarray(sd.periodic_grf(getkey(), num, n, sigma=sigma, tau=tau, gamma=gamma))
    x = np.arange(n) / n
    k = np.arange(1, n // 2 + 1)
    eig = 2 * sigma**2 * ((2 * np.pi * k) ** 2 + tau**2) ** (-gamma)
    exact = np.cos(2 * np.pi * np.subtract.outer(x, x)[..., None] * k) @ eig
    empirical = samples.T @ samples / num
    # Each entry's standard error is at most sqrt(2 / num) C(0, 0): allow 5 of them.
    np.testing.assert_allclose(empirical, exact, atol=5 * np.sqrt(2 / num) * exact[0, 0])
    assert np.max(np.abs(samples.mean(axis=1))) < 1e-12  # no mean mode


def test_burgers_periodic_layout(getkey):
    key = getkey()
    data = sd.burgers_periodic(num=2, key=key, grid=64, stride=4, steps=20)
    assert data.branch.shape == (2, 16) and data.y.shape == (2, 16)
    np.testing.assert_allclose(data.trunk[:, 0], np.arange(16) / 16)
    # The inputs are the fine draw at every 4th point, and the outputs the fine solve there.
    u0 = sd.periodic_grf(key, 2, 64)
    np.testing.assert_allclose(data.branch, u0[:, ::4], rtol=1e-12)
    fine = jax.vmap(lambda u: sd.solve_burgers_periodic(u, steps=20))(u0)
    np.testing.assert_allclose(data.y, fine[:, ::4], rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="`stride` 3 does not divide `grid` = 64"):
        sd.burgers_periodic(num=1, key=key, grid=64, stride=3)


def _manufactured(s):
    # u = sin(pi x) sin(pi y), a = 1 + x^2 + y: f = -div(a grad u) by hand.
    x = np.linspace(0.0, 1.0, s)
    x, y = np.meshgrid(x, x, indexing="ij")
    a = 1 + x**2 + y
    sx, cx, sy, cy = np.sin(np.pi * x), np.cos(np.pi * x), np.sin(np.pi * y), np.cos(np.pi * y)
    f = 2 * np.pi**2 * a * sx * sy - 2 * x * np.pi * cx * sy - np.pi * sx * cy
    return a, f, sx * sy


def test_darcy_solver_second_order():
    errors = []
    for s in (17, 33, 65):
        a, f, exact = _manufactured(s)
        u = sd.solve_darcy(a, f)
        assert np.all(u[0] == 0) and np.all(u[:, -1] == 0)
        errors.append(np.max(np.abs(u - exact)))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    np.testing.assert_allclose(orders, 2.0, atol=0.1)  # second order, up to O(h^4) terms
    assert errors[-1] < 1e-3, errors


def test_neumann_grf_has_no_mean_mode(getkey):
    # Every cosine but the constant integrates to zero, and the trapezoid rule on the
    # nodes integrates cos(pi k x), k < 2 (s - 1), exactly.
    fields = np.asarray(sd.neumann_grf(getkey(), 3, 12))
    w = np.full(12, 1.0)
    w[[0, -1]] = 0.5
    assert np.max(np.abs(np.einsum("i,nij,j->n", w, fields, w))) < 1e-12
    assert np.all(np.std(fields, axis=(1, 2)) > 1e-3)


def test_darcy_flow_layout_and_maximum_principle(getkey):
    key = getkey()
    a, u = sd.darcy_flow(num=2, key=key, grid=17, stride=2)
    assert a.shape == u.shape == (2, 9, 9)
    assert set(np.unique(a)) <= {3.0, 12.0} and len(np.unique(a)) == 2
    # f = 1 > 0 and u = 0 on the boundary: u > 0 inside.
    assert np.all(u[:, 1:-1, 1:-1] > 0) and np.all(u[:, 0] == 0) and np.all(u[:, :, -1] == 0)
    field = np.asarray(sd.neumann_grf(key, 2, 17))
    fine = sd.solve_darcy(np.where(field[0] >= 0, 12.0, 3.0))
    np.testing.assert_allclose(u[0], fine[::2, ::2], rtol=1e-12)
    with pytest.raises(ValueError, match=r"`stride` 3 does not divide `grid - 1` = 16"):
        sd.darcy_flow(num=1, key=key, grid=17, stride=3)


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"`a` must be finite and > 0"):
        sd.solve_darcy(-np.ones((5, 5)))
    with pytest.raises(ValueError, match=r"s x s node grid.*got shape \(5, 4\)"):
        sd.solve_darcy(np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"`f` must be a number or shape \(5, 5\)"):
        sd.solve_darcy(np.ones((5, 5)), np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"even number.*got shape \(7,\)"):
        sd.solve_burgers_periodic(jnp.zeros(7))
    with pytest.raises(ValueError, match=r"got shape \(2, 8\)"):
        sd.solve_burgers_periodic(jnp.zeros((2, 8)))
    with pytest.raises(ValueError, match="`grid` must be even"):
        sd.periodic_grf(jax.random.key(0), 1, 9)
