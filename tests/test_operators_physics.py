"""Physics-informed DeepONet: losses against hand-computed residuals, and the
physics-only network against the closed-form antiderivative."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml
import sciml.operators as so
import sciml.pinn


def _ode(field, y, u_y):
    _, s_y = sciml.pinn.derivative(field, y, 0)
    return s_y - u_y


def _polynomials(coef, x):
    """u = a + b x + c x^2 at x, and its antiderivative from 0."""
    a, b, c = (coef[:, i : i + 1] for i in range(3))
    return a + b * x + c * x**2, a * x + b * x**2 / 2 + c * x**3 / 3


def _antiderivative_data(coef, m):
    x = np.linspace(0, 1, m)
    u, _ = _polynomials(coef, x)
    return so.PhysicsData(u, {
        "residual": so.Points(x[:, None], u),  # ds/dy = u at the sensors, shared points
        "initial": so.Points(np.zeros((1, 1))),  # s(0) = 0, target 0
    }), x


def test_loss_terms_match_hand_computation(getkey):
    """A DeepONet whose output is known in closed form: s(u)(y) = (b . W u)(y ...)."""
    rng = np.random.default_rng(0)
    coef = rng.standard_normal((3, 3))
    data, x = _antiderivative_data(coef, 5)
    model = so.DeepONet([5, 4], [1, 4], activation=jnp.tanh, key=getkey())
    # Reference by finite differences of the model itself at each (function, point).
    u = np.asarray(data.u)
    h = 1e-6
    call = jax.jit(lambda ui, y: model(ui, jnp.reshape(y, (1,))))
    ref_res = []
    for ui in map(jnp.asarray, u):
        for j, xj in enumerate(x):
            d = (call(ui, xj + h) - call(ui, xj - h)) / (2 * h)
            ref_res.append(float(d) - float(ui[j]))
    ref_init = [float(call(jnp.asarray(ui), 0.0)) for ui in u]
    loss = so.PhysicsInformedLoss({"residual": _ode, "initial": so.value_residual},
                                  weights={"initial": 3.0})
    total, aux = eqx.filter_jit(loss)(model, jax.tree.map(jnp.asarray, data))
    np.testing.assert_allclose(aux["residual"], np.mean(np.square(ref_res)), rtol=1e-7)
    np.testing.assert_allclose(aux["initial"], np.mean(np.square(ref_init)), rtol=1e-10)
    np.testing.assert_allclose(total, aux["residual"] + 3 * aux["initial"], rtol=1e-12)
    # Labelled values per function (the reference notebook's operator term).
    labels = so.PhysicsData(u, {"data": so.Points(np.full((3, 1), 0.5), np.ones((3, 1)),
                                                  per_function=True)})
    _, aux = eqx.filter_jit(so.PhysicsInformedLoss({"data": so.value_residual}))(model, labels)
    ref = np.mean([(float(call(jnp.asarray(ui), 0.5)) - 1) ** 2 for ui in u])
    np.testing.assert_allclose(aux["data"], ref, rtol=1e-10)


def test_physics_only_deeponet_learns_the_antiderivative(getkey):
    """Trained from ds/dy = u and s(0) = 0 alone (no solution values), the network
    integrates functions it never saw: compared with the closed form."""
    rng = np.random.default_rng(1)
    m = 10
    data, _ = _antiderivative_data(rng.uniform(-1, 1, (16, 3)), m)
    # G is linear in u: a linear branch and a tanh trunk can represent it.
    model = so.DeepONet([m, 16], [1, 24, 16], activation=jnp.tanh, key=jax.random.key(0))
    loss = so.PhysicsInformedLoss({"residual": _ode, "initial": so.value_residual})
    # Steps of 16 functions x 10 points cost microseconds: compilation dominates.
    result = sciml.fit(model, loss, optax.adam(optax.cosine_decay_schedule(1e-2, 8000)),
                       steps=8000, data=jax.tree.map(jnp.asarray, data), key=getkey(),
                       progress=False)
    test = np.array([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0], [0.5, -1.0, 0.7]])
    y = np.linspace(0, 1, 41)
    u, _ = _polynomials(test, np.linspace(0, 1, m))
    _, s_exact = _polynomials(test, y)
    pred = np.asarray(result.model.cartesian(jnp.asarray(u), jnp.asarray(y[:, None])))
    rel = np.linalg.norm(pred - s_exact, axis=1) / np.linalg.norm(s_exact, axis=1)
    # 1.5e-2: a 24-wide network after 8000 Adam steps (seeds gave 1e-3 to 8e-3).
    assert np.max(rel) < 1.5e-2, rel
    assert set(result.history) >= {"residual", "initial"}


def test_physics_batches_keep_shared_points_whole(getkey):
    rng = np.random.default_rng(2)
    data, x = _antiderivative_data(rng.standard_normal((10, 3)), 6)
    source = so.PhysicsBatches(data, 4)
    state = source.init(getkey(), 0)
    batch, _ = source.batch(state, getkey(), jnp.asarray(0))
    assert batch.u.shape == (4, 6) and batch.terms["residual"].values.shape == (4, 6)
    np.testing.assert_array_equal(batch.terms["residual"].points[:, 0], x)
    # Each batch row is one function's row: its values are its own sensor values.
    np.testing.assert_array_equal(batch.terms["residual"].values, batch.u)


def test_bad_physics_data_errors():
    u = np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"term 'r': `values` has 3 functions"):
        so.PhysicsData(u, {"r": so.Points(np.zeros((5, 1)), np.zeros((3, 5)))})
    with pytest.raises(ValueError, match=r"`values` must be \(N, 5\)"):
        so.Points(np.zeros((5, 1)), np.zeros((4, 6)))
    with pytest.raises(ValueError, match="per_function=False or True"):
        so.Points(np.zeros(5))
    with pytest.raises(ValueError, match=r"names terms \['x'\] that are not in"):
        so.PhysicsInformedLoss({"r": so.value_residual}, weights={"x": 1.0})
    data = so.PhysicsData(u, {"r": so.Points(np.zeros((5, 1)))})
    loss = so.PhysicsInformedLoss({"initial": so.value_residual})
    model = so.DeepONet([5, 3], [1, 3], key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"no points for terms \['initial'\]"):
        loss(model, data)


@pytest.mark.slow  # ~25 s at load 10 on 2 cores (compilation); the tests above cover the path
def test_readme_physics_informed_example_runs():
    """The README's example, at a few functions and steps: it runs and lowers the loss."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (code,) = [b for b in blocks if "PhysicsInformedLoss(" in b]
    small = code.replace("num=1000", "num=20").replace("steps=2000", "steps=50")
    small = small.replace("PhysicsBatches(data, 100)", "PhysicsBatches(data, 10)")
    assert "num=20" in small and "steps=50" in small and "(data, 10)" in small
    scope = {}
    exec(compile(small, "README.md", "exec"), scope)
    loss = scope["result"].history["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
