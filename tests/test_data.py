"""sciml.data: GRF sampler, reference solvers and DeepXDE npz layouts, against independent truth."""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.interpolate

import sciml.data as sd


def test_grf_sample_covariance_matches_kernel(getkey):
    grf = sd.GRF(0.2, grid=40)
    n = 20000
    u = np.asarray(grf.sample(getkey(), n))
    assert u.shape == (n, 40)
    x = np.asarray(grf.grid)
    kernel = np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / 0.2**2)
    cov = u.T @ u / n
    # Monte Carlo: the standard error of a covariance entry is <= sqrt(2 / n) = 0.01.
    np.testing.assert_allclose(cov, kernel, atol=0.04)
    np.testing.assert_allclose(u.mean(0), 0.0, atol=0.04)
    assert grf.length_scale == 0.2


def test_grf_length_scale_controls_smoothness(getkey):
    key = getkey()
    rough = np.asarray(sd.GRF(0.05, grid=200).sample(key, 200))
    smooth = np.asarray(sd.GRF(0.5, grid=200).sample(key, 200))
    assert np.mean(np.diff(rough, axis=1) ** 2) > 10 * np.mean(np.diff(smooth, axis=1) ** 2)


def test_grf_bad_input():
    with pytest.raises(ValueError, match="length_scale"):
        sd.GRF(-1.0)
    with pytest.raises(ValueError, match="jitter"):
        sd.GRF(0.2, grid=400, jitter=0.0)
    with pytest.raises(ValueError, match="domain"):
        sd.GRF(0.2, domain=(1.0, 0.0))


def test_cubic_interpolation_exact_for_cubics_and_fourth_order():
    grid = np.linspace(-1.0, 2.0, 31)
    poly = lambda x: 1.0 - 2 * x + 0.5 * x**2 + 0.3 * x**3
    x = np.linspace(-1.0, 2.0, 577)
    got = sd.cubic_interpolate(jnp.asarray(poly(grid)), (-1.0, 2.0), jnp.asarray(x))
    np.testing.assert_allclose(got, poly(x), rtol=1e-10, atol=1e-12)
    prim = lambda x: x - x**2 + x**3 / 6 + 0.075 * x**4 - poly_prim0
    poly_prim0 = -1.0 - 1.0 - 1.0 / 6 + 0.075
    got = sd.cubic_antiderivative(jnp.asarray(poly(grid)), (-1.0, 2.0), jnp.asarray(x))
    np.testing.assert_allclose(got, prim(x), rtol=1e-10, atol=1e-12)
    errors = []
    for g in (41, 81):
        grid = np.linspace(0.0, 1.0, g)
        x01 = np.linspace(0.0, 1.0, 577)
        got = sd.cubic_interpolate(jnp.asarray(np.sin(5 * grid)), (0.0, 1.0), jnp.asarray(x01))
        errors.append(np.max(np.abs(np.asarray(got) - np.sin(5 * x01))))
    assert 12 < errors[0] / errors[1] < 20  # O(h^4): 16x per halving


def test_grf_antiderivative_matches_spline_quadrature(getkey):
    grf = sd.GRF(0.2)
    f = grf.sample(getkey(), 3)
    x = np.linspace(0.0, 1.0, 57)
    for row in np.asarray(f):
        got = np.asarray(grf.antiderivative(jnp.asarray(row), jnp.asarray(x)))
        # scipy's not-a-knot spline through the same nodes differs from our local
        # cubic by O(h^4 u'''') ~ 1e-10 for h = 1e-3, l = 0.2.
        ref = scipy.interpolate.CubicSpline(np.asarray(grf.grid), row).antiderivative()(x)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8)


def test_chebyshev_space_against_numpy(getkey):
    space = sd.Chebyshev(7, 1.0, domain=(0.0, 2.0))
    coef = np.asarray(space.sample(getkey(), 4))
    assert np.all(np.abs(coef) <= 1.0)
    x = np.linspace(0.0, 2.0, 33)
    for c in coef:
        cheb = np.polynomial.Chebyshev(c, domain=[0.0, 2.0])
        np.testing.assert_allclose(space.evaluate(jnp.asarray(c), jnp.asarray(x)), cheb(x),
                                   rtol=1e-10, atol=1e-12)
        prim = cheb.integ(lbnd=0.0)
        np.testing.assert_allclose(
            space.antiderivative(jnp.asarray(c), jnp.asarray(x)), prim(x), rtol=1e-10, atol=1e-12
        )


def test_antiderivative_dataset_layouts(getkey):
    space = sd.Chebyshev(5)
    key = getkey()
    data = sd.antiderivative(space, num=6, sensors=20, points=15, key=key)
    assert isinstance(data, sd.TripleCartesianProd)
    assert data.branch.shape == (6, 20) and data.trunk.shape == (15, 1) and data.y.shape == (6, 15)
    # The sensors see the same functions the targets integrate: recover the coefficients.
    xs = np.linspace(0.0, 1.0, 20)
    vander = np.polynomial.chebyshev.chebvander(2 * xs - 1, 4)
    coef = np.linalg.lstsq(vander, data.branch.T, rcond=None)[0].T
    for c, y in zip(coef, data.y):
        prim = np.polynomial.Chebyshev(c, domain=[0.0, 1.0]).integ(lbnd=0.0)
        np.testing.assert_allclose(y, prim(data.trunk[:, 0]), rtol=1e-8, atol=1e-10)
    aligned = sd.antiderivative(space, num=3, sensors=10, key=key)
    np.testing.assert_allclose(aligned.trunk[:, 0], np.linspace(0, 1, 10))
    triple = sd.antiderivative(space, num=4, sensors=10, points=sd.RandomPoints(3), key=key)
    assert isinstance(triple, sd.Triple)
    assert triple.branch.shape == (12, 10) and triple.trunk.shape == (12, 1)
    assert triple.y.shape == (12, 1)
    assert np.all((triple.trunk >= 0) & (triple.trunk <= 1))


def _scipy_reference(space, feats, rhs, y0, t_eval):
    # The input u is a cubic between the GRF's grid nodes, so its derivative jumps at
    # every node; a high-order adaptive solver stepping across the kinks is only good to
    # ~1e-7 there. Integrate node to node instead, where u is smooth, restarting at each
    # node: DOP853 at 1e-13 is then accurate to ~1e-11.
    u = jax.jit(lambda t: space.evaluate(feats, t))
    nodes = np.asarray(space.grid)
    t_eval = np.asarray(t_eval)
    breaks = np.unique(np.concatenate([nodes[nodes < t_eval[-1]], t_eval]))
    y = np.asarray(y0, dtype=float)
    out = {}
    for a, b in zip(breaks[:-1], breaks[1:]):
        if a in t_eval:
            out[a] = y.copy()
        sol = scipy.integrate.solve_ivp(
            lambda t, y: rhs(t, y, float(u(t))), (a, b), y, method="DOP853",
            rtol=1e-13, atol=1e-13,
        )
        assert sol.success
        y = sol.y[:, -1]
    out[breaks[-1]] = y.copy()
    if breaks[0] == t_eval[0] and t_eval[0] not in out:
        out[t_eval[0]] = np.asarray(y0, dtype=float)
    return np.stack([out[t] for t in t_eval], axis=1)


def test_nonlinear_ode_against_scipy(getkey):
    space = sd.GRF(0.2, grid=200)
    feats = space.sample(getkey(), 2)
    x = np.linspace(0.0, 1.0, 11)
    for f in feats:
        got = sd.solve_ode(lambda t, s: -(s**2) + space.evaluate(f, t), jnp.zeros(()),
                           jnp.asarray(x), t0=0.0, step_ts=space.kinks)
        ref = _scipy_reference(space, f, lambda t, y, u: [-y[0] ** 2 + u], [0.0], x)[0]
        # Steps land on the input's kinks, so Tsit5 at 1e-10 holds ~1e-10.
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-10)


def test_nonlinear_ode_dataset_filters_blowups(getkey):
    # On [0, 3] many GRF inputs drive s to -infinity in finite time.
    space = sd.GRF(0.3, domain=(0.0, 3.0), grid=300)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = sd.nonlinear_ode(space, num=40, sensors=30, key=getkey())
    assert data.y.shape == (40, 30)
    assert np.all(np.isfinite(data.y)) and np.all(np.abs(data.y) <= 10.0)
    dropped = [w for w in caught if "dropped" in str(w.message)]
    assert dropped, "expected some blow-ups on [0, 3] to be dropped and reported"


def test_pendulum_against_scipy(getkey):
    space = sd.GRF(0.2, grid=200)
    key = getkey()
    data = sd.pendulum(space, num=2, sensors=200, points=9, key=key)
    # Same functions: the generator's first round uses fold_in(key, 0) split in two.
    fkey, _ = jax.random.split(jax.random.fold_in(key, 0))
    feats = space.sample(fkey, 2)
    sensors = jax.vmap(lambda f: space.evaluate(f, jnp.linspace(0.0, 1.0, 200)))(feats)
    np.testing.assert_allclose(data.branch, sensors, rtol=1e-12)
    x = np.linspace(0.0, 1.0, 9)
    for f, y in zip(feats, data.y):
        ref = _scipy_reference(
            space, f, lambda t, s, u: [s[1], -np.sin(s[0]) + u], [0.0, 0.0], x
        )[0]
        # The generator steps onto u's kinks (the grid nodes): ~1e-10 holds.
        np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-10)


def test_nonlinear_ode_random_points_against_scipy(getkey):
    # DeepONet's ODE data: fresh random output points per function (a Triple).
    space = sd.GRF(0.2, grid=200)
    key = getkey()
    data = sd.nonlinear_ode(space, num=2, sensors=10, points=sd.RandomPoints(3), key=key)
    assert isinstance(data, sd.Triple) and data.y.shape == (6, 1)
    fkey, _ = jax.random.split(jax.random.fold_in(key, 0))
    feats = space.sample(fkey, 2)
    for i, f in enumerate(feats):
        x = data.trunk[3 * i : 3 * i + 3, 0]
        assert np.all(np.diff(x) >= 0)
        ref = _scipy_reference(space, f, lambda t, y, u: [-y[0] ** 2 + u], [0.0], x)[0]
        # The generator steps onto u's kinks (the grid nodes): ~1e-10 holds.
        np.testing.assert_allclose(data.y[3 * i : 3 * i + 3, 0], ref, rtol=1e-9, atol=1e-10)


def _mol_reference(u, nx, t_eval, D=0.01, k=0.01):
    h = 1.0 / (nx - 1)

    def rhs(t, s):
        p = np.concatenate([[0.0], s, [0.0]])
        return D * (p[:-2] - 2 * s + p[2:]) / h**2 + k * s**2 + u[1:-1]

    sol = scipy.integrate.solve_ivp(rhs, (0, 1), np.zeros(nx - 2), method="DOP853",
                                    t_eval=t_eval, rtol=1e-12, atol=1e-13)
    return sol.y.T


def test_diffusion_reaction_second_order_in_time():
    nx = 41
    x = np.linspace(0, 1, nx)
    u = np.sin(np.pi * x) + 0.5 * np.cos(3 * x)
    ref = _mol_reference(u, nx, [1.0])[-1]
    errors = []
    for nt in (21, 41):
        s = np.asarray(sd.solve_diffusion_reaction(jnp.asarray(u), nt=nt))
        assert s.shape == (nt, nx)
        np.testing.assert_array_equal(s[0], 0.0)
        np.testing.assert_array_equal(s[:, [0, -1]], 0.0)
        errors.append(np.max(np.abs(s[-1, 1:-1] - ref)))
    assert errors[1] < 1e-4
    assert 3.5 < errors[0] / errors[1] < 4.5  # Crank-Nicolson: O(dt^2)


def test_diffusion_reaction_dataset(getkey):
    data = sd.diffusion_reaction(sd.GRF(0.2, grid=100), num=3, sensors=20, grid=(11, 6),
                                 key=getkey())
    assert data.branch.shape == (3, 20) and data.trunk.shape == (66, 2) and data.y.shape == (3, 66)
    # x varies fastest; t = 0 rows are the zero initial value.
    np.testing.assert_allclose(data.trunk[:11, 0], np.linspace(0, 1, 11))
    np.testing.assert_allclose(data.trunk[:11, 1], 0.0)
    np.testing.assert_allclose(data.y[:, :11], 0.0)
    tri = sd.diffusion_reaction(sd.GRF(0.2, grid=100), num=3, sensors=20, grid=(11, 6),
                                points=sd.RandomPoints(5), key=getkey())
    assert isinstance(tri, sd.Triple) and tri.y.shape == (15, 1) and tri.trunk.shape == (15, 2)


# ---------------------------------------------------------------------------------
# DeepXDE npz layouts


def test_npz_round_trip_cartesian_plain_arrays(tmp_path):
    rng = np.random.default_rng(0)
    data = sd.TripleCartesianProd(rng.normal(size=(7, 10)), np.linspace(0, 1, 10)[:, None],
                                  rng.normal(size=(7, 10)))
    path = sd.save_npz(tmp_path / "train.npz", data)
    raw = np.load(path)  # plain arrays: numpy reads them without pickles
    assert sorted(raw.files) == ["X_branch", "X_trunk", "y"]
    assert raw["X_branch"].shape == (7, 10) and raw["X_trunk"].shape == (10, 1)
    assert raw["y"].shape == (7, 10) and raw["y"].dtype == np.float32
    back = sd.load_npz(path)
    assert isinstance(back, sd.TripleCartesianProd)
    np.testing.assert_allclose(back.branch, data.branch, rtol=1e-6)
    np.testing.assert_allclose(back.y, data.y, rtol=1e-6)


def test_npz_object_array_only_when_asked(tmp_path):
    rng = np.random.default_rng(0)
    data = sd.TripleCartesianProd(rng.normal(size=(3, 4)), np.linspace(0, 1, 4)[:, None],
                                  rng.normal(size=(3, 4)))
    path = sd.save_npz(tmp_path / "a.npz", data, object_array=True)
    raw = np.load(path, allow_pickle=True)
    # Exactly DeepXDE's antiderivative_aligned layout.
    assert sorted(raw.files) == ["X", "y"]
    assert raw["X"].dtype == object and raw["X"].shape == (2,)
    assert raw["X"][0].shape == (3, 4) and raw["X"][1].shape == (4, 1)
    with pytest.raises(ValueError, match=r"key 'X' is an object array.*allow_pickle=True"):
        sd.load_npz(path)
    back = sd.load_npz(path, allow_pickle=True)
    np.testing.assert_allclose(back.y, data.y, rtol=1e-6)
    with pytest.raises(ValueError, match="object_array"):
        sd.save_npz(tmp_path / "b.npz", data, object_array=True, suffix="train")


def test_npz_round_trip_triple_split_keys(tmp_path):
    rng = np.random.default_rng(1)
    data = sd.Triple(rng.normal(size=(12, 5)), rng.uniform(size=(12, 1)), rng.normal(size=(12, 1)))
    path = sd.save_npz(tmp_path / "test.npz", data, suffix="test")
    raw = np.load(path)  # no pickle needed
    assert sorted(raw.files) == ["X_test0", "X_test1", "y_test"]
    assert raw["X_test0"].shape == (12, 5) and raw["X_test1"].shape == (12, 1)
    assert raw["y_test"].shape == (12, 1)
    back = sd.load_npz(path, allow_pickle=False)
    assert isinstance(back, sd.Triple)
    np.testing.assert_allclose(back.trunk, data.trunk, rtol=1e-6)


def test_load_files_written_like_deepxde_users(tmp_path):
    # The aligned example's files: X an object *tuple* array, float32 entries.
    X = np.empty(2, dtype=object)
    X[0] = np.ones((4, 100), np.float32)
    X[1] = np.linspace(0, 1, 100, dtype=np.float32)[:, None]
    np.savez(tmp_path / "a.npz", X=X, y=np.zeros((4, 100), np.float32))
    data = sd.load_npz(tmp_path / "a.npz", allow_pickle=True)
    assert isinstance(data, sd.TripleCartesianProd) and data.y.shape == (4, 100)
    # The unaligned example's files: split keys with the train suffix.
    np.savez(tmp_path / "u.npz", X_train0=np.ones((9, 100)), X_train1=np.ones((9, 1)),
             y_train=np.ones((9, 1)))
    data = sd.load_npz(tmp_path / "u.npz")
    assert isinstance(data, sd.Triple) and len(data) == 9
    with pytest.raises(ValueError, match="allow_pickle"):
        sd.load_npz(tmp_path / "a.npz")
    np.savez(tmp_path / "bad.npz", foo=np.ones(3))
    with pytest.raises(ValueError, match="X_train0"):
        sd.load_npz(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="no such file"):
        sd.load_npz(tmp_path / "missing.npz")
    # X written as a tuple of two equal-shape arrays (numpy stacks them), and a branch
    # of one sensor stored as (N,).
    np.savez(tmp_path / "eq.npz", X=(np.ones((4, 3)), 2 * np.ones((4, 3))), y=np.ones((4, 4)))
    data = sd.load_npz(tmp_path / "eq.npz")  # numeric, no pickle
    assert data.branch.shape == (4, 3) and data.trunk.shape == (4, 3) and data.trunk[0, 0] == 2
    np.savez(tmp_path / "one.npz", X_a0=np.ones(5), X_a1=np.ones((5, 1)), y_a=np.ones((5, 1)))
    assert sd.load_npz(tmp_path / "one.npz").branch.shape == (5, 1)
    # Train and test in one file: the suffix chooses.
    np.savez(tmp_path / "both.npz", X_train0=np.ones((9, 100)), X_train1=np.ones((9, 1)),
             y_train=np.ones((9, 1)), X_test0=np.zeros((3, 100)), X_test1=np.ones((3, 1)),
             y_test=np.ones((3, 1)))
    assert len(sd.load_npz(tmp_path / "both.npz", suffix="test")) == 3
    with pytest.raises(ValueError, match="suffix="):
        sd.load_npz(tmp_path / "both.npz")
    with pytest.raises(ValueError, match="'test', 'train'"):
        sd.load_npz(tmp_path / "both.npz", suffix="val")


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.mkdir, (self.target,))


def test_load_npz_never_unpickles_a_file_that_is_not_an_archive(tmp_path):
    import pickle

    evil = _RunsCode()
    evil.target = str(tmp_path / "ran")
    (tmp_path / "evil.npz").write_bytes(pickle.dumps(evil))
    with pytest.raises(ValueError, match="not an npz"):
        sd.load_npz(tmp_path / "evil.npz")
    assert not (tmp_path / "ran").exists()
    # A pickle with a zip archive appended passes zipfile.is_zipfile; still refused.
    np.savez(tmp_path / "ok.npz", a=np.ones(2))
    (tmp_path / "mixed.npz").write_bytes(pickle.dumps(evil) + (tmp_path / "ok.npz").read_bytes())
    with pytest.raises(ValueError, match="not an npz"):
        sd.load_npz(tmp_path / "mixed.npz")
    assert not (tmp_path / "ran").exists()
    (tmp_path / "data.csv").write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="not an npz"):
        sd.load_npz(tmp_path / "data.csv")


def test_load_npz_never_unpickles_an_object_array_by_default(tmp_path):
    # A zip archive whose X entry, unpickled, would create a directory.
    evil = _RunsCode()
    evil.target = str(tmp_path / "ran")
    x = np.empty(2, dtype=object)
    x[0], x[1] = evil, np.ones((3, 1))
    np.savez(tmp_path / "evil.npz", X=x, y=np.ones((2, 3)))
    with pytest.raises(ValueError, match="key 'X' is an object array"):
        sd.load_npz(tmp_path / "evil.npz")
    assert not (tmp_path / "ran").exists()
    # An object array under a plain or split key is refused the same way.
    np.savez(tmp_path / "split.npz", X_train0=np.ones((2, 3)), X_train1=np.ones((3, 1)),
             y_train=x)
    with pytest.raises(ValueError, match="key 'y_train' is an object array"):
        sd.load_npz(tmp_path / "split.npz")
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "arrays, key, shape, what",
    [
        ({"X_branch": np.ones((0, 4)), "X_trunk": np.ones((4, 1)), "y": np.ones((0, 4))},
         "X_branch", (0, 4), "input functions"),
        ({"X_branch": np.ones((3, 0)), "X_trunk": np.ones((4, 1)), "y": np.ones((3, 4))},
         "X_branch", (3, 0), "sensors"),
        ({"X_branch": np.ones((3, 4)), "X_trunk": np.ones((0, 1)), "y": np.ones((3, 0))},
         "X_trunk", (0, 1), "output points"),
        ({"X_t0": np.ones((0, 4)), "X_t1": np.ones((0, 1)), "y_t": np.ones((0, 1))},
         "X_t0", (0, 4), "input functions"),
    ],
)
def test_load_npz_refuses_empty_data(tmp_path, arrays, key, shape, what):
    np.savez(tmp_path / "e.npz", **arrays)
    pattern = f"key '{key}' has shape {re.escape(str(shape))}: no {what}"
    with pytest.raises(ValueError, match=pattern):
        sd.load_npz(tmp_path / "e.npz")


def test_layout_refuses_nan_and_non_numbers():
    y = np.ones((3, 5))
    y[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"y has 1 NaN/inf .* at index \(1, 2\)"):
        sd.make_layout(np.ones((3, 4)), np.ones((5, 1)), y)
    with pytest.raises(ValueError, match="branch must hold real numbers"):
        sd.make_layout(np.full((3, 4), "a"), np.ones((5, 1)), np.ones((3, 5)))


def test_layout_shape_checks():
    with pytest.raises(ValueError, match="TripleCartesianProd"):
        sd.Triple(np.ones((3, 4)), np.ones((5, 1)), np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"y \(N1, N2\)"):
        sd.TripleCartesianProd(np.ones((3, 4)), np.ones((5, 1)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="match neither"):
        sd.make_layout(np.ones((3, 4)), np.ones((5, 1)), np.ones((2, 2)))
    cart = sd.TripleCartesianProd(np.ones((3, 4)), np.arange(5.0)[:, None],
                                  np.arange(15.0).reshape(3, 5))
    tri = cart.to_triple()
    assert tri.branch.shape == (15, 4) and tri.y[7, 0] == 7.0 and tri.trunk[7, 0] == 2.0


def test_function_batches_cover_every_function_once_per_epoch(getkey):
    data = sd.TripleCartesianProd(np.arange(12.0)[:, None] * np.ones((1, 3)),
                                  np.linspace(0, 1, 4)[:, None],
                                  np.arange(12.0)[:, None] * np.ones((1, 4)))
    source = sd.FunctionBatches(data, 4)
    key = getkey()
    state = source.init(key, 0)
    seen = []
    for step in range(3):
        batch, state = source.batch(state, key, jnp.asarray(step))
        assert isinstance(batch, sd.TripleCartesianProd)
        assert batch.branch.shape == (4, 3) and batch.trunk.shape == (4, 1)
        # Rows stay paired: y row i belongs to branch row i.
        np.testing.assert_array_equal(batch.branch[:, 0], batch.y[:, 0])
        seen += list(np.asarray(batch.y[:, 0]))
    assert sorted(seen) == list(range(12))
    triple = sd.FunctionBatches(data.to_triple(), 5)
    batch, _ = triple.batch(triple.init(key, 0), key, jnp.asarray(0))
    assert batch.branch.shape == (5, 3) and batch.y.shape == (5, 1)
