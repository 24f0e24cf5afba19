"""sciml.ode experiment blocks: data generators against scipy, fields, problem scripts."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import sciml.cli
import sciml.experiments.node as node
import sciml.ode as so


ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_spiral_data_matches_scipy():
    ts, ys = node.spiral_data(n=12, t1=1.5)
    a = node.SPIRAL_A
    ref = solve_ivp(lambda t, u: a @ u**3, (0.0, 1.5), [2.0, 0.0], t_eval=np.asarray(ts),
                    method="DOP853", rtol=1e-12, atol=1e-12)
    # Both solvers run at ~1e-10..1e-12 tolerances; the comparison allows for their sum.
    np.testing.assert_allclose(ys, ref.y.T, rtol=1e-7, atol=1e-8)


def test_time_concat_field_maps_the_batch():
    f = so.TimeConcatField(5, 7, key=jax.random.key(0))
    y = jax.random.normal(jax.random.key(1), (3, 5))
    batched = f(0.3, y, None)
    rows = jax.vmap(lambda r: f(0.3, r, None))(y)
    np.testing.assert_allclose(batched, rows, rtol=1e-12)


@pytest.mark.parametrize("time_input", [False, True])
def test_cubic_field_is_the_spiral_network(time_input):
    f = so.CubicField(2, 6, time_input=time_input, key=jax.random.key(0))
    assert f.w1.shape == (2 + time_input, 6)
    y, t = jnp.array([0.7, -1.2]), 0.4
    z = np.concatenate([np.asarray(y) ** 3, [t] if time_input else []])
    by_hand = np.tanh(z @ np.asarray(f.w1) + np.asarray(f.b1)) @ np.asarray(f.w2) + f.b2
    np.testing.assert_allclose(f(t, y, None), by_hand, rtol=1e-12)
    # A batch (B, 2) is rows of the same field; only the time-input field sees t.
    ys = jnp.stack([y, -y])
    np.testing.assert_allclose(f(t, ys, None), jax.vmap(lambda r: f(t, r, None))(ys),
                               rtol=1e-12)
    moved = np.max(np.abs(f(t + 0.5, y, None) - f(t, y, None)))
    assert (moved > 1e-3) if time_input else (moved == 0.0)


def test_digits_split():
    x_tr, y_tr, x_te, y_te = node.load_digits_split(1500)
    assert x_tr.shape == (1500, 64) and x_te.shape == (297, 64)
    assert float(x_tr.min()) == 0.0 and float(x_tr.max()) == 1.0
    assert set(np.unique(np.asarray(y_tr))) == set(range(10))


def test_digits_split_refuses_an_empty_test_set():
    for n in (1797, 5000, -5, 0):
        with pytest.raises(ValueError, match="n_train"):
            node.load_digits_split(n)


def test_train_spiral_starts_at_the_datas_first_time():
    # Data from t = ts[10]: the prediction there is the given initial state.
    ts, ys = node.spiral_data()
    r = node.train_spiral(node.Method("vanilla", None), steps=1, data=(ts[10:], ys[10:]))
    np.testing.assert_allclose(r["ys"][0], ys[10], rtol=1e-6)


def test_train_spiral_on_float32_data_under_x64():
    # The default field takes the data's dtype, not the global float64 default.
    ts, ys = node.spiral_data(dtype=jnp.float32)
    r = node.train_spiral(node.Method("vanilla", None), steps=2, data=(ts, ys))
    assert r["model"].vector_field.w1.dtype == jnp.float32
    assert np.isfinite(r["mse"]) and r["ys"].dtype == np.float32


def test_experiment_arguments_refused_before_training():
    v = node.Method("vanilla", None)
    with pytest.raises(ValueError, match="`tol`"):
        node.train_spiral(v, tol=-1.0)
    with pytest.raises(ValueError, match="`lr`"):
        node.train_spiral(v, lr=-1.0)
    with pytest.raises(TypeError, match="node.Method"):
        node.train_spiral(None)
    with pytest.raises(ValueError, match="n_eval_paths"):
        node.train_nsde_spiral(v, n_eval_paths=0)
    with pytest.raises(ValueError, match="`steps`"):
        node.train_nsde_spiral(v, steps=0)
    with pytest.raises(ValueError, match="n_paths"):
        node.spiral_sde_data(n_paths=0, key=jax.random.key(0))


def test_sde_spiral_paths_start_at_u0_and_differ(getkey):
    ts, paths = node.spiral_sde_data(n_paths=4, n=5, key=getkey())
    assert paths.shape == (4, 5, 2) and np.all(np.isfinite(paths))
    np.testing.assert_allclose(paths[:, 0], np.tile([2.0, 0.0], (4, 1)))
    assert float(jnp.std(paths[:, -1, 0])) > 0  # the noise acts


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "problems" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", ["node_spiral", "nsde_spiral", "node_digits"])
def test_problem_quick_runs(name, tmp_path):
    module = _load(name)
    options = sciml.cli.RunOptions(name=module.NAME, quick=True, out=tmp_path, progress=False)
    metrics = module.run(options)
    assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))
    assert list(tmp_path.glob("*.png"))
