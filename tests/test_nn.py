"""sciml.nn blocks against their definitions."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml


def test_mlp_matches_hand_written_layers(getkey):
    mlp = sciml.nn.MLP(3, 2, 5, 2, activation=jnp.tanh, key=getkey())
    x = jax.random.normal(getkey(), (3,))
    h = x
    for layer in mlp.layers[:-1]:
        h = jnp.tanh(layer.weight @ h + layer.bias)
    out = mlp.layers[-1].weight @ h + mlp.layers[-1].bias
    np.testing.assert_allclose(mlp(x), out, rtol=1e-12)
    assert mlp(x).shape == (2,)
    scalar = sciml.nn.MLP("scalar", "scalar", 4, 1, key=getkey())
    assert scalar(jnp.asarray(0.3)).shape == ()


def test_glorot_normal_statistics(getkey):
    # Glorot normal: Var(w) = 2 / (fan_in + fan_out), zero mean, zero biases.
    mlp = sciml.nn.MLP(300, 200, 400, 1, key=getkey())
    w = np.asarray(mlp.layers[0].weight)
    assert w.shape == (400, 300)
    np.testing.assert_allclose(w.var(), 2 / (300 + 400), rtol=0.03)  # 120k samples: ~1% s.e.
    assert abs(w.mean()) < 3 * math.sqrt(2 / 700 / w.size)
    np.testing.assert_array_equal(mlp.layers[0].bias, 0.0)
    he = sciml.nn.MLP(300, 200, 400, 1, weight_init=sciml.nn.he_normal(), key=getkey())
    np.testing.assert_allclose(np.asarray(he.layers[0].weight).var(), 2 / 300, rtol=0.03)


def test_random_weight_factorisation_is_the_dense_layer(getkey):
    layer = sciml.nn.Linear(4, 3, factorisation=sciml.nn.RandomWeightFactorisation(1.0, 0.1),
                            key=getkey())
    x = jax.random.normal(getkey(), (4,))
    w = jnp.exp(layer.log_scale)[:, None] * layer.weight
    np.testing.assert_allclose(layer(x), w @ x + layer.bias, rtol=1e-12)
    plain = sciml.nn.Linear(4, 3, key=jax.random.key(0))
    fact = sciml.nn.Linear(4, 3, factorisation=sciml.nn.RandomWeightFactorisation(),
                           key=jax.random.key(0))
    # Same initial function: factorisation only reparametrises W.
    np.testing.assert_allclose(plain(x), fact(x), rtol=1e-12)


def test_fourier_features(getkey):
    ff = sciml.nn.FourierFeatures(2, 8, scale=2.0, key=getkey())
    x = jnp.array([0.3, -0.7])
    z = x @ ff.frequencies
    np.testing.assert_allclose(ff(x), jnp.concatenate([jnp.cos(z), jnp.sin(z)]), rtol=1e-12)
    assert ff(x).shape == (ff.out_size,) == (16,)
    big = sciml.nn.FourierFeatures(1, 20000, scale=2.0, key=getkey())
    np.testing.assert_allclose(np.std(np.asarray(big.frequencies)), 2.0, rtol=0.03)


def test_periodic_embedding_is_exactly_periodic(getkey):
    emb = sciml.nn.PeriodicEmbedding(axes=[0], periods=[2.0])
    net = sciml.nn.Chain(emb, sciml.nn.MLP(3, "scalar", 8, 2, key=getkey()))
    x = jnp.array([0.37, 1.5])
    shifted = x.at[0].add(2.0)
    np.testing.assert_allclose(net(x), net(shifted), rtol=1e-12)
    with pytest.raises(ValueError, match="periods must be > 0"):
        sciml.nn.PeriodicEmbedding(axes=[0], periods=[0.0])
    # A negative axis counts from the end, as in numpy: (x0, cos, sin) of x1.
    last = sciml.nn.PeriodicEmbedding(axes=[-1], periods=[1.0])
    np.testing.assert_allclose(last(x), [0.37, np.cos(3.0 * np.pi), np.sin(3.0 * np.pi)],
                               atol=1e-12)
    np.testing.assert_allclose(last(x.at[1].add(1.0)), last(x), atol=1e-12)
    with pytest.raises(ValueError, match="do not all index"):
        sciml.nn.PeriodicEmbedding(axes=[2], periods=[1.0])(x)
    with pytest.raises(ValueError, match="repeat"):
        sciml.nn.PeriodicEmbedding(axes=[1, -1], periods=[1.0, 1.0])(x)


def test_rescale_and_output_transform(getkey):
    # Built inside a jitted function, the bounds are traced: no comparison at build time.
    built = eqx.filter_jit(lambda lo, hi, x: sciml.nn.Rescale(lo, hi)(x))
    np.testing.assert_allclose(built(jnp.array([0.0]), jnp.array([4.0]), jnp.array([1.0])), [-0.5])
    r = sciml.nn.Rescale([0.0, -2.0], [1.0, 2.0])
    np.testing.assert_allclose(r(jnp.array([0.0, -2.0])), [-1.0, -1.0])
    np.testing.assert_allclose(r(jnp.array([1.0, 2.0])), [1.0, 1.0])
    with pytest.raises(ValueError, match="lower < upper"):
        sciml.nn.Rescale([1.0], [0.0])
    net = sciml.nn.MLP("scalar", "scalar", 8, 2, key=getkey())
    u = sciml.nn.OutputTransform(net, lambda x, n: x * (1 - x) * n,
                                 inputs=sciml.nn.Rescale(0.0, 1.0))
    assert float(u(jnp.asarray(0.0))) == 0.0 and float(u(jnp.asarray(1.0))) == 0.0
    # jit, vmap and grad go through every block
    xs = jnp.linspace(0, 1, 5)
    g = jax.vmap(jax.grad(u))(xs)
    fd = (jax.vmap(u)(xs + 1e-6) - jax.vmap(u)(xs - 1e-6)) / 2e-6
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    assert eqx.filter_jit(u)(jnp.asarray(0.5)).shape == ()


def test_modified_mlp(getkey):
    m = sciml.nn.ModifiedMLP(2, "scalar", 16, 3, key=getkey())
    x = jnp.array([0.1, 0.2])
    u = jnp.tanh(m.encoder_u(x))
    v = jnp.tanh(m.encoder_v(x))
    h = x
    for layer in m.hidden:
        z = jnp.tanh(layer(h))
        h = z * u + (1 - z) * v
    np.testing.assert_allclose(m(x), m.output(h), rtol=1e-12)


def test_float32_by_default():
    # The suite runs in float64; layers follow the x64 setting like equinox does.
    m = sciml.nn.MLP(2, 2, 4, 1, key=jax.random.key(0))
    assert m.layers[0].weight.dtype == jnp.float64
    m32 = sciml.nn.MLP(2, 2, 4, 1, dtype=jnp.float32, key=jax.random.key(0))
    assert m32.layers[0].weight.dtype == jnp.float32


def test_mlp_under_vmap_keeps_points_on_the_last_axis(getkey):
    # Layout, not values: a vmapped MLP must not transpose its hidden activations
    # (points-major runs about 2x slower on XLA:CPU; benchmarks/RESULTS.md, PINNs).
    # Only the final output is moved to the front by vmap. Values: against the
    # per-point loop.
    net = sciml.nn.MLP(3, 2, 16, 3, activation=jnp.tanh, key=getkey())
    xs = jax.random.normal(getkey(), (9, 3))
    jaxpr = str(jax.make_jaxpr(jax.vmap(net))(xs))
    assert jaxpr.count("transpose") <= 1, jaxpr
    np.testing.assert_allclose(jax.vmap(net)(xs), np.stack([net(x) for x in xs]),
                               rtol=1e-6, atol=1e-7)
