"""`sciml.koopman`: DMD against known spectra (linear maps, a nonlinear map's Jacobian
from `jax.jacfwd`), and the monitor inside `sciml.fit` against gradient descent's
known linear map on a quadratic (eigenvalues `(1 - lr h_i)**every`)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml
from sciml.koopman import DMD, KoopmanMonitor, dmd, plot_spectrum


def _real_map(eigs, seed=0):
    """A real matrix with the given real eigenvalues and (modulus, angle) pairs."""
    rng = np.random.default_rng(seed)
    blocks = []
    for e in eigs:
        if isinstance(e, tuple):
            r, t = e
            blocks.append(r * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]))
        else:
            blocks.append(np.array([[e]]))
    n = sum(b.shape[0] for b in blocks)
    D = np.zeros((n, n))
    i = 0
    for b in blocks:
        k = b.shape[0]
        D[i:i + k, i:i + k] = b
        i += k
    V = rng.normal(size=(n, n))
    A = V @ D @ np.linalg.inv(V)
    truth = []
    for e in eigs:
        if isinstance(e, tuple):
            truth += [e[0] * np.exp(1j * e[1]), e[0] * np.exp(-1j * e[1])]
        else:
            truth.append(complex(e))
    return A, np.array(truth)


def _orbit(A, x0, n, c=None):
    xs = [np.asarray(x0, float)]
    for _ in range(n - 1):
        xs.append(A @ xs[-1] + (0 if c is None else c))
    return np.array(xs)


def _sorted(z):
    z = np.asarray(z)
    return z[np.lexsort((-z.imag, -np.round(np.abs(z), 12)))]


def test_dmd_linear_map_with_complex_pair_recovers_eigenvalues_and_modes():
    A, truth = _real_map([0.95, (0.8, 0.6), 0.5, -0.3, (0.4, 2.0)])
    x = _orbit(A, np.random.default_rng(1).normal(size=7), 30)
    result = dmd(x)
    assert isinstance(result, DMD) and result.rank == 7
    np.testing.assert_allclose(result.eigenvalues, _sorted(truth), rtol=0, atol=1e-8)
    assert np.all(np.diff(np.abs(result.eigenvalues)) <= 1e-12)  # sorted by modulus
    # Exact DMD modes are eigenvectors of A (Tu et al. 2014, Theorem 1).
    np.testing.assert_allclose(A @ result.modes, result.modes * result.eigenvalues,
                               atol=1e-8)
    np.testing.assert_allclose(result.predict(np.arange(30)), x, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(result.predict(40), np.linalg.matrix_power(A, 40) @ x[0],
                               atol=1e-8)


def test_dmd_rank_deficient_high_dimensional_data():
    # A 4-d linear system seen through 60 random observables: X has numerical rank 4.
    A, truth = _real_map([0.9, (0.7, 0.3), 0.2], seed=2)
    C = np.random.default_rng(3).normal(size=(60, 4))
    y = _orbit(A, np.ones(4), 25) @ C.T
    result = dmd(y)
    assert result.rank == 4
    np.testing.assert_allclose(result.eigenvalues, _sorted(truth), atol=1e-8)
    np.testing.assert_allclose(result.predict(np.arange(25)), y, rtol=1e-8, atol=1e-8)
    # An eigenvalue 0 (a nilpotent direction) and an explicit rank truncation.
    B, truth_b = _real_map([0.9, 0.6, 0.0], seed=4)
    zb = dmd(_orbit(B, np.ones(3), 12))
    np.testing.assert_allclose(zb.eigenvalues, _sorted(truth_b), atol=1e-8)
    assert dmd(y, rank=2).rank == 2
    assert dmd(np.ones((5, 3))).rank == 1  # constant: eigenvalue 1
    np.testing.assert_allclose(dmd(np.ones((5, 3))).eigenvalues, [1.0], atol=1e-12)
    assert dmd(np.zeros((5, 3))).rank == 0


def test_affine_dmd_removes_the_fixed_point_eigenvalue():
    A, truth = _real_map([0.9, (0.7, 0.5), 0.3], seed=5)
    c = np.array([1.0, -2.0, 0.5, 3.0])
    x = _orbit(A, np.zeros(4), 25, c)
    fixed = np.linalg.solve(np.eye(4) - A, c)
    affine = dmd(x, affine=True)
    np.testing.assert_allclose(affine.eigenvalues, _sorted(truth), atol=1e-8)
    np.testing.assert_allclose(affine.fixed_point, fixed, rtol=1e-8)
    np.testing.assert_allclose(affine.predict(np.arange(25)), x, rtol=1e-8, atol=1e-8)
    # Plain DMD of the same snapshots has the same eigenvalues plus 1, the fixed point,
    # once the observables can hold the constant (here: one constant observable added).
    plain = dmd(np.c_[x, np.ones(len(x))])
    np.testing.assert_allclose(plain.eigenvalues, _sorted(np.r_[truth, 1.0]), atol=1e-8)
    with pytest.raises(ValueError, match="affine"):
        plain.fixed_point


def _nonlinear_map(x):
    W = jnp.array([[0.5, -0.3, 0.2], [0.4, 0.3, -0.1], [-0.2, 0.1, 0.6]])
    return jnp.tanh(W @ x + jnp.array([0.3, -0.2, 0.1]))


def test_dmd_of_nonlinear_trajectory_recovers_jacobian_at_fixed_point():
    x = jnp.zeros(3)
    for _ in range(500):
        x = _nonlinear_map(x)
    fixed = np.asarray(x)
    truth = _sorted(np.linalg.eigvals(np.asarray(jax.jacfwd(_nonlinear_map)(x))))

    def error(eps):
        xs = [fixed + eps * np.array([1.0, -0.5, 0.7])]
        for _ in range(15):
            xs.append(np.asarray(_nonlinear_map(jnp.asarray(xs[-1]))))
        # Affine: a trajectory near x* follows x* + J (x - x*) + O(|x - x*|^2).
        return np.max(np.abs(dmd(np.array(xs), affine=True).eigenvalues - truth))

    e1, e2 = error(1e-3), error(1e-4)
    # The quadratic remainder perturbs the fitted map by O(eps): the error is of the
    # size of the deviation and falls linearly with it (first order in eps).
    assert e1 < 1e-2
    assert e2 < 1e-3
    assert 5 < e1 / e2 < 20


def test_dmd_bad_arguments():
    with pytest.raises(ValueError, match="n_snapshots, dim"):
        dmd(np.ones(5))
    with pytest.raises(ValueError, match="at least 3"):
        dmd(np.ones((2, 4)), affine=True)
    with pytest.raises(ValueError, match="NaN"):
        dmd(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="rank"):
        dmd(np.ones((5, 3)), rank=0)
    with pytest.raises(ValueError, match="tol"):
        dmd(np.ones((5, 3)), tol=2.0)
    with pytest.raises(TypeError, match="affine"):
        dmd(np.ones((5, 3)), affine="yes")
    with pytest.raises(ValueError, match="non-negative"):
        dmd(np.eye(3)).predict(-1)


# ------------------------------------------------------------------- the monitor


def _quadratic(d=5, lr=0.1, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    h = np.linspace(0.2, 2.0, d)  # lr * h in [0.02, 0.2]
    H = jnp.asarray(Q @ np.diag(h) @ Q.T)
    wstar = jnp.asarray(rng.normal(size=d))

    def loss(w, batch, *, key):
        r = w - wstar
        return 0.5 * r @ (H @ r)

    return loss, h, np.asarray(wstar)


def test_monitor_spectrum_is_gradient_descents_linear_map(getkey):
    # Gradient descent on 0.5 (w - w*)ᵀ H (w - w*) is the affine map
    # w ↦ w - lr H (w - w*): per `every` steps its eigenvalues are (1 - lr h_i)**every.
    loss, h, wstar = _quadratic()
    lr, every = 0.1, 5
    monitor = KoopmanMonitor(every, 14, key=getkey())
    result = sciml.fit(jnp.zeros(5), loss, optax.sgd(lr), steps=120, key=getkey(),
                       callbacks=[monitor], progress=False)
    truth = np.sort((1 - lr * h) ** every)[::-1]
    first = monitor.spectra[0]
    assert first.step == 14 * every and first.rank == 5
    np.testing.assert_allclose(first.eigenvalues, truth, atol=1e-8)
    # Logged into the history at the DMD steps, NaN elsewhere.
    hist = result.history
    logged = ~np.isnan(hist["koopman_rho1"])
    np.testing.assert_array_equal(hist["step"][logged] + 1, [r.step for r in monitor.spectra])
    np.testing.assert_allclose(hist["koopman_rho1"][logged][0], truth[0], atol=1e-8)
    np.testing.assert_allclose(hist["koopman_rho3"][logged][0], truth[2], atol=1e-8)
    assert {"koopman_remaining", "koopman_decay", "koopman_rank"} <= set(hist)
    assert monitor.poor_init is False
    # Bounded work: one snapshot per `every` steps, a DMD once the window is full and
    # then every `dmd_every` snapshots; memory is one window.
    assert monitor.n_snapshots == 120 // every
    assert monitor.n_dmd == 1 + (120 // every - 14) // monitor.dmd_every
    assert len(monitor.snapshots) == 14


def test_monitor_stops_converged_run_and_not_an_unconverged_one(getkey):
    loss, h, wstar = _quadratic()
    key = getkey()
    monitor = KoopmanMonitor(5, 12, key=key, stop=True)
    result = sciml.fit(jnp.zeros(5), loss, optax.sgd(0.1), steps=5000, key=getkey(),
                       callbacks=[monitor], progress=False)
    assert result.stopped == f"callback koopman at step {len(result.history['step'])}"
    n = len(result.history["step"])
    assert n < 1000
    # Stopped close to the optimum: slowest contraction 1 - lr h_min = 0.98 per step.
    dist = np.linalg.norm(np.asarray(result.model) - wstar)
    assert dist < 1e-2 * np.linalg.norm(wstar)
    # The same problem with a learning rate 1000x smaller is still far from w* after
    # the same budget: the drift (an eigenvalue near 1) keeps the monitor from stopping
    # (and, as nothing decays, it flags the start as poor).
    slow = KoopmanMonitor(5, 12, key=key, stop=True)
    with pytest.warns(RuntimeWarning, match="no decaying"):
        result = sciml.fit(jnp.zeros(5), loss, optax.sgd(1e-4), steps=1000, key=getkey(),
                           callbacks=[slow], progress=False)
    assert result.stopped is None
    assert np.linalg.norm(np.asarray(result.model) - wstar) > 0.5 * np.linalg.norm(wstar)
    assert slow.n_dmd > 5
    assert min(r.remaining for r in slow.spectra) > slow.rtol


def test_monitor_flags_poor_initialisation(getkey):
    loss, _, _ = _quadratic()
    monitor = KoopmanMonitor(5, 12, key=getkey())
    with pytest.warns(RuntimeWarning, match="no decaying Koopman modes"):
        sciml.fit(jnp.zeros(5), loss, optax.sgd(1e-4), steps=60, key=getkey(),
                  callbacks=[monitor], progress=False)
    assert monitor.poor_init is True


def test_monitor_projection_is_fixed_by_key_and_bounded(getkey):
    model = sciml.nn.MLP("scalar", "scalar", 16, 2, activation=jnp.tanh, key=getkey())
    n = sum(x.size for x in jax.tree.leaves(model) if hasattr(x, "size"))
    assert n > 64
    a = KoopmanMonitor(key=jax.random.key(3)).project(model)
    b = KoopmanMonitor(key=jax.random.key(3)).project(model)
    c = KoopmanMonitor(key=jax.random.key(4)).project(model)
    assert a.shape == (64,)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # The count sketch is linear in the weights and keeps the sum of squares in
    # expectation; here check linearity exactly.
    doubled = jax.tree.map(lambda x: 2 * x if eqx.is_inexact_array(x) else x, model)
    np.testing.assert_allclose(KoopmanMonitor(key=jax.random.key(3)).project(doubled), 2 * a,
                               rtol=1e-12)
    # Few weights: taken whole.
    np.testing.assert_array_equal(KoopmanMonitor(key=getkey()).project(jnp.arange(5.0)),
                                  np.arange(5.0))


def test_monitor_reset_and_plot(getkey, tmp_path):
    loss, _, _ = _quadratic()
    monitor = KoopmanMonitor(5, 8, key=getkey())
    sciml.fit(jnp.zeros(5), loss, optax.sgd(0.1), steps=100, key=getkey(), callbacks=[monitor],
              progress=False)
    path = plot_spectrum(monitor, tmp_path / "spectrum.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    monitor.reset()
    assert monitor.n_snapshots == 0 and monitor.spectra == [] and monitor.first is None
    with pytest.raises(ValueError, match="no spectra yet"):
        plot_spectrum(monitor, tmp_path / "empty.png")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(every=0), ValueError, "every"),
        (dict(window=3), ValueError, "window"),
        (dict(dim=0), ValueError, "dim"),
        (dict(rtol=-1.0), ValueError, "rtol"),
        (dict(patience=0), ValueError, "patience"),
        (dict(stop="yes"), TypeError, "stop"),
        (dict(key=0), TypeError, "key"),
        (dict(tol=2.0), ValueError, "tol"),
        (dict(decay_threshold=2.0), ValueError, "decay_threshold"),
    ],
)
def test_monitor_bad_arguments(kwargs, error, match):
    kwargs = {"key": jax.random.key(0), **kwargs}
    with pytest.raises(error, match=match):
        KoopmanMonitor(**kwargs)


def test_monitor_needs_a_key():
    with pytest.raises(TypeError):
        KoopmanMonitor(10)
    assert math.isfinite(KoopmanMonitor(key=jax.random.key(0)).rtol)


def test_monitor_snapshots_inside_the_compiled_steps(getkey):
    # The monitor's overhead budget (under 5 % of a run, benchmarks/koopman_stop.py)
    # rests on this: snapshots every `every` steps are taken by `fit`'s recorder inside
    # the compiled loop, and the host is called only where a DMD can fall.
    loss, _, _ = _quadratic()
    calls = []

    class Counting(KoopmanMonitor):
        def __call__(self, info):
            calls.append((info.step, [s for s, _ in info.records]))
            return super().__call__(info)

    monitor = Counting(key=getkey())  # defaults: every=50, window=20, dmd_every=5
    assert (monitor.snapshot_every, monitor.every) == (50, 250)
    sciml.fit(jnp.zeros(5), loss, optax.sgd(1e-3), steps=1600, key=getkey(),
              callbacks=[monitor], progress=False)
    assert [step for step, _ in calls] == [250, 500, 750, 1000, 1250, 1500, 1600]
    assert [s for _, rec in calls for s in rec] == list(range(50, 1601, 50))
    assert [r.step for r in monitor.spectra] == [1000, 1250, 1500]
    # The recorded snapshot is the host projection of the weights at that step.
    grad = jax.grad(lambda p: loss(p, None, key=None))
    w = jax.lax.fori_loop(0, 1600, lambda i, p: p - 1e-3 * grad(p), jnp.zeros(5))
    np.testing.assert_allclose(monitor.snapshots[-1], monitor.project(w), rtol=1e-9)
