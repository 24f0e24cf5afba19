"""Mass-action rates and forward solves against hand values and scipy."""

import logging

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml.experiments.kinetics as kx
import sciml.kinetics as kin


def test_rates_by_hand():
    m = kin.Mechanism.from_text("A + * <=> A*\nB2 + 2 * <=> 2 B*\nA* + B* -> AB* + *\n")
    # species: A, B2, A*, B*, AB*, *
    x = jnp.array([0.3, 0.7, 0.2, 0.1, 0.05, 0.65])
    k = jnp.array([2.0, 3.0, 5.0, 7.0, 11.0])
    a, b2, a_s, b_s, ab_s, v = np.asarray(x)
    expected = np.array([2.0 * a * v, 3.0 * a_s, 5.0 * b2 * v**2, 7.0 * b_s**2, 11.0 * a_s * b_s])
    r = kin.rates(m, jnp.log(k), x)
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    xdot = kin.rhs(m, jnp.log(k), x)
    r0, r1, r2, r3, r4 = expected
    by_hand = np.array(
        [
            -r0 + r1,
            -r2 + r3,
            r0 - r1 - r4,
            2 * r2 - 2 * r3 - r4,
            r4,
            -r0 + r1 - 2 * r2 + 2 * r3 + r4,
        ]
    )
    np.testing.assert_allclose(xdot, by_hand, rtol=1e-12, atol=1e-15)
    # Gradients stay finite at an empty surface (x = 0 with integer orders).
    g = jax.grad(lambda x: jnp.sum(kin.rhs(m, jnp.log(k), x)))(jnp.zeros(6))
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("name", ["g", "da", "dc", "dcs"])
def test_forward_matches_scipy(name):
    bench = kx.BENCHMARKS[name]
    m = bench.mechanism
    log_k = jnp.asarray(bench.log_k(m))
    x0 = jnp.asarray(bench.initial_states(m))
    ts = jnp.asarray(kx.paper_times())
    sim = kin.Simulator(m, stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12))
    ys = np.asarray(jax.jit(jax.vmap(sim, in_axes=(None, 0, None)))(log_k, x0, ts))
    for e in range(x0.shape[0]):
        for method in ("Radau", "LSODA"):
            ref = kin.reference_solve(m, log_k, x0[e], ts, method=method)
            np.testing.assert_allclose(ys[e], ref, rtol=0, atol=1e-6)
    # Every conservation law (the site balance among them) holds along the solution.
    laws = ys @ m.conservation.T.astype(float)
    np.testing.assert_allclose(laws, np.broadcast_to(laws[:, :1], laws.shape), rtol=0, atol=1e-10)
    if m.site_balance is not None:
        np.testing.assert_allclose(ys[..., m.surface].sum(-1), 1.0, rtol=0, atol=1e-10)


def test_float32_solves_with_tolerances_it_can_honour():
    # JAX's default precision: rtol 1e-8 is below float32's rounding error and would stall
    # the controller at its step budget; the default loosens to 1000 eps (1.2e-4). Checked
    # against scipy in float64 and against the site balance, to that accuracy.
    bench = kx.BENCHMARKS["dc"]
    m = bench.mechanism
    log_k, x0 = bench.log_k(m), bench.initial_states(m)[0]
    ts = np.asarray(kx.paper_times(30))
    with jax.enable_x64(False):
        ys = kin.simulate(m, jnp.asarray(log_k), jnp.asarray(x0), jnp.asarray(ts))
        assert ys.dtype == jnp.float32
        sim = kin.Simulator(m)
        np.testing.assert_array_equal(np.asarray(sim(log_k, x0, ts)), np.asarray(ys))
    ref = kin.reference_solve(m, log_k, x0, ts)
    np.testing.assert_allclose(np.asarray(ys), ref, rtol=0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(ys)[:, m.surface].sum(-1), 1.0, rtol=0, atol=1e-5)
    with jax.enable_x64(False):
        obs = kin.Observations.make(
            m, ts[None], np.asarray(ys)[None, :, :1], x0[None], species=[m.species[0]]
        )
        for estimator in (kin.DirectFit(), kin.ESMDA(), kin.KINN()):
            with pytest.raises(ValueError, match="jax_enable_x64"):
                estimator.estimate(m, obs, key=jax.random.key(0))
        with pytest.raises(ValueError, match=r"float64.*jax.enable_x64\(True\)"):
            kx.synthetic_observations("g", "Q")


def test_simulate_input_errors():
    m = kx.BENCHMARKS["g"].mechanism
    with pytest.raises(ValueError, match="log_k"):
        kin.simulate(m, jnp.zeros(3), jnp.ones(3), jnp.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="x0"):
        kin.simulate(m, jnp.zeros(2), jnp.ones(4), jnp.linspace(0, 1, 3))
    with pytest.raises(TypeError, match="Mechanism"):
        kin.simulate("A -> B", jnp.zeros(2), jnp.ones(3), jnp.linspace(0, 1, 3))


def _compiles(caplog, fn):
    """Runs `fn` and returns the log lines of every XLA compilation it triggered."""
    caplog.clear()
    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        fn()
    return [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]


def test_repeated_solves_reuse_one_compilation(caplog):
    # A mechanism parsed twice from the same text is the same mechanism: its solves, the
    # direct fit's least squares and ES-MDA's forecasts compile once, then serve other
    # constants, starts, keys and data sets of the same shape.
    text = "A <=> B ; k1f, k1b\nB -> C ; k2\n"
    m1, m2 = kin.Mechanism.from_text(text), kin.Mechanism.from_text(text)
    assert m1 == m2 and hash(m1) == hash(m2)
    assert m1 != kin.Mechanism.from_text("A <=> B ; k1f, k1b\nB -> C ; k3\n")
    ts = jnp.linspace(0.0, 2.0, 9)
    x0 = jnp.array([1.0, 0.0, 0.0])
    other = (jnp.ones(3), jnp.array([0.5, 0.5, 0.0]))
    kin.simulate(m1, jnp.zeros(3), x0, ts)
    assert _compiles(caplog, lambda: kin.simulate(m2, *other, ts)) == []

    true = np.log([2.0, 0.5, 1.0])
    ys = np.asarray(kin.simulate(m1, jnp.asarray(true), x0, ts))
    obs = kin.Observations.make(m1, ts[None], ys[None], x0[None], species=["A", "B", "C"])
    first = kin.DirectFit().estimate(m1, obs, init_log_k=true + 0.5)
    np.testing.assert_allclose(first.log_k, true, atol=1e-6)
    obs2 = kin.Observations.make(m2, ts[None], ys[None] * 1.01, x0[None], species=["A", "B", "C"])
    second = []
    assert _compiles(
        caplog, lambda: second.append(kin.DirectFit().estimate(m2, obs2, init_log_k=true - 0.5))
    ) == []
    assert np.all(np.isfinite(second[0].log_std))
    # The ensemble's vmapped forecasts, likewise.
    esmda = kin.ESMDA(n_members=20, alphas=(2.0, 2.0))
    esmda.estimate(m1, obs, key=jax.random.key(0), init_log_k=true)
    assert _compiles(
        caplog, lambda: esmda.estimate(m2, obs2, key=jax.random.key(1), init_log_k=true + 0.1)
    ) == []
