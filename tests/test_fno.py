"""sciml.operators.FNO and SpectralConv against dense DFTs, closed-form multipliers and
finite differences."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml.operators as so


def _random_weights(conv, rng):
    shape = conv.weight_real.shape
    return eqx.tree_at(
        lambda c: (c.weight_real, c.weight_imag),
        conv,
        (jnp.asarray(rng.standard_normal(shape)), jnp.asarray(rng.standard_normal(shape))),
    )


def _dense_spectral_conv(v, w, modes):
    """K v from its definition, with explicit DFT sums (no FFT).

    v: (c_in, *grid); w: (blocks, c_out, c_in, *modes) complex. The kept frequencies of
    the first of two axes are 0..m1-1 (block 0) and -m1..-1 (block 1); along the last
    axis 0..m-1, where each k > 0 stands for itself and its conjugate -k, hence the
    factor 2 (the output is real)."""
    grid = v.shape[1:]
    out = np.zeros((w.shape[1], *grid))
    last = np.arange(modes[-1])
    weight_last = np.where(last == 0, 1.0, 2.0)
    if len(grid) == 1:
        (n,) = grid
        j = np.arange(n)
        forward = np.exp(-2j * np.pi * np.outer(last, j) / n)  # (m, n)
        vh = v @ forward.T  # (c_in, m)
        y = np.einsum("oik,ik->ok", w[0], vh)
        back = np.exp(2j * np.pi * np.outer(j, last) / n)  # (n, m)
        return np.real((y * weight_last) @ back.T) / n
    n1, n2 = grid
    j1, j2 = np.arange(n1), np.arange(n2)
    m1 = modes[0]
    blocks = [np.arange(m1), np.arange(n1 - m1, n1)]
    f2 = np.exp(-2j * np.pi * np.outer(last, j2) / n2)  # (m2, n2)
    b2 = np.exp(2j * np.pi * np.outer(j2, last) / n2)  # (n2, m2)
    for block, k1 in enumerate(blocks):
        f1 = np.exp(-2j * np.pi * np.outer(k1, j1) / n1)  # (m1, n1)
        b1 = np.exp(2j * np.pi * np.outer(j1, k1) / n1)  # (n1, m1)
        vh = np.einsum("ka,iab,lb->ikl", f1, v, f2)
        y = np.einsum("oikl,ikl->okl", w[block], vh) * weight_last
        out += np.real(np.einsum("ak,okl,bl->oab", b1, y, b2)) / (n1 * n2)
    return out


@pytest.mark.parametrize("modes,grid", [((5,), (16,)), ((5,), (10,)), ((3, 4), (8, 9))])
def test_spectral_conv_matches_dense_dft(modes, grid, getkey):
    rng = np.random.default_rng(0)
    conv = _random_weights(so.SpectralConv(3, 2, modes, key=getkey()), rng)
    v = rng.standard_normal((3, *grid))
    w = np.asarray(conv.weight_real) + 1j * np.asarray(conv.weight_imag)
    np.testing.assert_allclose(
        eqx.filter_jit(conv)(jnp.asarray(v)), _dense_spectral_conv(v, w, modes), rtol=1e-10,
        atol=1e-12,
    )


def _band_limited(rng, grid, top):
    """A random real field whose frequencies are all below `top` per axis, on [0, 1)^d."""
    xs = [np.arange(n) / n for n in grid]
    field = np.zeros(grid)
    for _ in range(6):
        ks = rng.integers(0, top, size=len(grid))
        phase = sum(
            2 * np.pi * k * x.reshape([-1 if i == a else 1 for i in range(len(grid))])
            for a, (k, x) in enumerate(zip(ks, xs))
        ) + rng.uniform(0, 2 * np.pi)
        field = field + rng.standard_normal() * np.cos(phase)
    return field


def test_spectral_conv_identity_weights(getkey):
    # Weight 1 on every kept mode: the identity on fields band-limited below the modes.
    rng = np.random.default_rng(1)
    for modes, grid in [((6,), (32,)), ((4, 5), (12, 16))]:
        conv = so.SpectralConv(1, 1, modes, key=getkey())
        conv = eqx.tree_at(
            lambda c: (c.weight_real, c.weight_imag),
            conv,
            (jnp.ones_like(conv.weight_real), jnp.zeros_like(conv.weight_imag)),
        )
        v = _band_limited(rng, grid, min(modes))[None]
        np.testing.assert_allclose(eqx.filter_jit(conv)(jnp.asarray(v)), v, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------
# Learning a Fourier multiplier: real leaves descend, complex leaves do not


class _ComplexLeafConv(eqx.Module):
    """The same 1-D spectral convolution with its weights as one complex leaf."""

    weight: jax.Array

    def __call__(self, v):
        vh = jnp.fft.rfft(v, axis=-1)
        m = self.weight.shape[-1]
        out = jnp.zeros_like(vh).at[:, :m].set(jnp.einsum("oik,ik->ok", self.weight, vh[:, :m]))
        return jnp.fft.irfft(out, n=v.shape[-1], axis=-1)


_N, _MODES, _SHIFT, _NU = 32, 8, 0.13, 0.01


def _multiplier_data(rng, num, kind):
    """Inputs band-limited below _MODES and the outputs of a known multiplier."""
    x = np.arange(_N) / _N
    k = np.arange(_MODES)
    a, b = rng.standard_normal((2, num, _MODES))
    u = a @ np.cos(2 * np.pi * np.outer(k, x)) + b @ np.sin(2 * np.pi * np.outer(k, x))
    if kind == "shift":  # u(x - c)
        xs = x - _SHIFT
        y = a @ np.cos(2 * np.pi * np.outer(k, xs)) + b @ np.sin(2 * np.pi * np.outer(k, xs))
    else:  # the heat semigroup exp(nu t d_xx) at t = 1
        decay = np.exp(-_NU * (2 * np.pi * k) ** 2)
        y = (a * decay) @ np.cos(2 * np.pi * np.outer(k, x)) + (b * decay) @ np.sin(
            2 * np.pi * np.outer(k, x)
        )
    return jnp.asarray(u[:, None]), jnp.asarray(y[:, None])


def _train(model, u, y, steps, lr):
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, 1e-3))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    @eqx.filter_jit
    def loss(m):
        return jnp.mean((jax.vmap(m)(u) - y) ** 2)

    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            grads = jax.grad(lambda p: loss(eqx.combine(p, static)))(params)
            updates, state = opt.update(grads, state)
            return (optax.apply_updates(params, updates), state), None

        carry = (params, opt.init(params))
        return jax.lax.scan(step, carry, None, length=steps)[0][0]

    return eqx.combine(run(params), static), loss


@pytest.mark.parametrize("kind", ["shift", "heat"])
def test_one_layer_fno_learns_multiplier(kind, getkey):
    rng = np.random.default_rng(2)
    u, y = _multiplier_data(rng, 24, kind)
    # Linear throughout (identity activation), periodic coordinates: the multiplier is
    # in the model class exactly.
    model = so.FNO(
        1, 1, _MODES, 2, layers=1, projection=2, activation=lambda v: v, periodic=True,
        key=getkey(),
    )
    trained, loss = _train(model, u, y, 1000, 1e-2)
    ut, yt = _multiplier_data(rng, 8, kind)
    err = jnp.linalg.norm(jax.vmap(trained)(ut) - yt) / jnp.linalg.norm(yt)
    assert err < 1e-8, float(err)


def test_complex_leaf_trap(getkey):
    # A phase shift needs the imaginary parts of the multiplier exp(-2 pi i k c). With
    # real leaves (SpectralConv) Adam learns it; with one complex leaf it cannot: jax.grad
    # returns dL/dRe - i dL/dIm, so the update climbs the loss along the imaginary parts.
    rng = np.random.default_rng(3)
    u, y = _multiplier_data(rng, 24, "shift")
    conv = so.SpectralConv(1, 1, _MODES, key=getkey())
    trained, loss = _train(conv, u, y, 1000, 5e-2)
    assert loss(trained) < 1e-10 * loss(conv), (float(loss(conv)), float(loss(trained)))

    start = _ComplexLeafConv(jax.lax.complex(conv.weight_real, conv.weight_imag)[0])
    np.testing.assert_allclose(loss(start), loss(conv), rtol=1e-12)  # the same model
    stuck, _ = _train(start, u, y, 1000, 5e-2)
    assert loss(stuck) > 0.5 * loss(start), (float(loss(start)), float(loss(stuck)))
    # The conjugate of the complex gradient is the real-leaf gradient.
    g_real = eqx.filter_grad(loss)(conv)
    g_complex = eqx.filter_grad(loss)(start).weight
    np.testing.assert_allclose(g_complex.real, g_real.weight_real[0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g_complex.imag, -g_real.weight_imag[0], rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------------
# Resolution independence, gradients, bad input


@pytest.mark.parametrize("modes,grid", [((5,), (24,)), ((3, 4), (10, 12))])
def test_resolution_independence(modes, grid, getkey):
    # One Fourier layer (no activation between spectral convolutions) with periodic
    # coordinates maps a band-limited input to the same function on every grid: the
    # pointwise maps commute with restriction and K sees the same Fourier coefficients.
    rng = np.random.default_rng(4)
    fine = tuple(2 * n for n in grid)
    a_fine = _band_limited(rng, fine, min(grid) // 2)
    a_coarse = a_fine[tuple(slice(None, None, 2) for _ in grid)]
    batch = lambda a: jnp.asarray(np.stack([a, 2 * a]))[:, None]  # noqa: E731
    model = so.FNO(1, 2, modes, 6, layers=1, periodic=True, key=getkey())
    run = eqx.filter_jit(eqx.filter_vmap(model))
    coarse, fine_out = run(batch(a_coarse)), run(batch(a_fine))
    shared = fine_out[(slice(None), slice(None), *(slice(None, None, 2) for _ in grid))]
    assert coarse.shape == (2, 2, *grid)
    np.testing.assert_allclose(coarse, shared, rtol=1e-10, atol=1e-12)
    # With activations between Fourier layers, the harmonics they create above the kept
    # modes alias differently on each grid: close, not equal.
    deep = so.FNO(1, 2, modes, 6, layers=3, periodic=True, key=getkey())
    run = eqx.filter_jit(eqx.filter_vmap(deep))
    coarse, fine_out = run(batch(a_coarse)), run(batch(a_fine))
    shared = fine_out[(slice(None), slice(None), *(slice(None, None, 2) for _ in grid))]
    gap = float(jnp.max(jnp.abs(coarse - shared)) / jnp.max(jnp.abs(shared)))
    assert 1e-9 < gap < 0.1, gap


def test_gradient_matches_finite_differences(getkey):
    model = so.FNO(2, 1, (2, 3), 3, layers=2, projection=4, padding=0.25, key=getkey())
    rng = np.random.default_rng(5)
    a = jnp.asarray(rng.standard_normal((2, 6, 7)))
    target = jnp.asarray(rng.standard_normal((1, 6, 7)))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    direction = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.standard_normal(x.shape)), params)

    def loss(p):
        return jnp.sum((eqx.combine(p, static)(a) - target) ** 2)

    @jax.jit
    def both(params, direction, eps):
        grads = jax.grad(loss)(params)
        dots = jax.tree_util.tree_map(jnp.vdot, grads, direction)
        along = lambda e: loss(jax.tree_util.tree_map(lambda x, d: x + e * d, params, direction))  # noqa: E731
        return sum(jax.tree_util.tree_leaves(dots)), (along(eps) - along(-eps)) / (2 * eps)

    analytic, numeric = both(params, direction, 1e-5)
    # Central differences: O(eps^2) truncation and O(1e-16 / eps) rounding.
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7)


def test_padding_keeps_shape_and_changes_nothing_else(getkey):
    model = so.FNO(1, 1, 4, 5, padding=0.1, key=getkey())
    a = jnp.linspace(0.0, 1.0, 17)[None] ** 2
    out = eqx.filter_jit(model)(a)
    assert out.shape == (1, 17) and bool(jnp.all(jnp.isfinite(out)))


def test_bad_input_errors(getkey):
    model = so.FNO(1, 1, 8, 4, key=getkey())
    with pytest.raises(ValueError, match=r"15 points, fewer than 2 \* modes = 16"):
        model(jnp.zeros((1, 15)))
    with pytest.raises(ValueError, match=r"shape \(1, n\).*got shape \(32,\).*a\[None\]"):
        model(jnp.zeros(32))
    with pytest.raises(ValueError, match=r"got shape \(1, 32, 32\)"):
        model(jnp.zeros((1, 32, 32)))
    model2 = so.FNO(3, 1, (4, 4), 4, key=getkey())
    with pytest.raises(ValueError, match=r"shape \(3, n, n\).*got shape \(2, 8, 8\)"):
        model2(jnp.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match=r"axis 1 of the input has 7 points"):
        model2(jnp.zeros((3, 8, 7)))
    conv = so.SpectralConv(2, 2, 4, key=getkey())
    with pytest.raises(ValueError, match="at most n // 2 modes"):
        conv(jnp.zeros((2, 7)))
    with pytest.raises(ValueError, match="exactly one of `key` and `weights`"):
        so.SpectralConv(2, 2, 4)
    with pytest.raises(ValueError, match=r"shape \(1, 2, 2, 4\), got \(1, 2, 2, 3\)"):
        so.SpectralConv(2, 2, 4, weights=(jnp.zeros((1, 2, 2, 3)), jnp.zeros((1, 2, 2, 3))))
    for kwargs, pattern in [
        (dict(modes=0), "`modes` must be"),
        (dict(modes=(4, 4, 4)), "`modes` must be"),
        (dict(modes=4.0), "`modes` must be"),
        (dict(padding=-0.1), "`padding` is a fraction"),
        (dict(padding=0.1, periodic=True), "periodic=True"),
        (dict(width=0), "`width` must be a positive int"),
    ]:
        args = dict(in_channels=1, out_channels=1, modes=4, width=4) | kwargs
        with pytest.raises(ValueError, match=pattern):
            so.FNO(**args, key=getkey())


@pytest.mark.slow  # ~30 s on a loaded 2-core machine: sciml.fit's compilation dominates
def test_readme_fno_example_runs():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "so.FNO(" in b]
    small = code.replace("num=1000", "num=8").replace("steps=2000", "steps=3")
    small = small.replace("Minibatches((a, u), 20)", "Minibatches((a, u), 4)")
    assert small.count("num=8") == 1 and "steps=3" in small and "u), 4)" in small
    scope = {}
    exec(compile(small, "README.md", "exec"), scope)
    assert scope["pred"].shape == (4, 1, 1024)
    assert bool(jnp.all(jnp.isfinite(scope["pred"])))
    assert len(scope["result"].history["loss"]) >= 1


# ---------------------------------------------------------------------------------
# sciml operator train --model fno


def _cli(*args):
    from sciml.cli.operator import main

    return main(["train", *map(str, args)])


@pytest.fixture(scope="module")
def fno_files(tmp_path_factory):
    import sciml.data as sd

    d = tmp_path_factory.mktemp("fnodata")
    key = jax.random.key(7)
    # Burgers at t = 0.1 (less smoothing, so the map is not close to zero): training on
    # 32 points, testing on 64 (the same functions' law, twice the resolution).
    kw = dict(grid=64, t1=0.1, steps=20)
    sd.save_npz(d / "train.npz", sd.burgers_periodic(num=40, key=key, stride=2, **kw))
    sd.save_npz(d / "test.npz", sd.burgers_periodic(num=8, key=jax.random.key(8), stride=1, **kw))
    rng = np.random.default_rng(0)
    for name, n, grid in (("train2d", 24, 12), ("test2d", 6, 17)):
        a = rng.standard_normal((n, grid, grid))
        np.savez(d / f"{name}.npz", X_branch=a, y=a**2)
    bad = rng.standard_normal((4, 12, 12))
    np.savez(d / "nan2d.npz", X_branch=np.where(bad > 2.5, np.nan, bad), y=bad)
    np.savez(d / "mismatch2d.npz", X_branch=bad, y=bad[:, :10])
    sd.save_npz(d / "triple.npz", sd.load_npz(d / "test.npz").to_triple())
    return d


@pytest.mark.slow  # ~35 s at load 11 on 2 cores (300 steps); the 2-D test covers the path
def test_cli_fno_1d_at_another_resolution(fno_files, tmp_path):
    out = tmp_path / "run"
    code = _cli("--train", fno_files / "train.npz", "--test", fno_files / "test.npz",
                "--model", "fno", "--steps", "300", "--modes", "8", "--width", "16",
                "--lr", "3e-3", "--quiet", "--out", out)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_grid"] == [32] and metrics["test_grid"] == [64]
    assert metrics["batch_size"] == 20 and metrics["modes"] == [8]
    pred = np.load(out / "predictions.npz")["y_pred"]
    import sciml.data as sd

    y = sd.load_npz(fno_files / "test.npz").y
    assert pred.shape == y.shape == (8, 64)
    np.testing.assert_allclose(metrics["test_mse"], np.mean((pred - y) ** 2), rtol=1e-4)
    assert metrics["test_mean_rel_l2"] < 0.2, metrics["test_mean_rel_l2"]


def test_cli_fno_2d_fields(fno_files, tmp_path):
    out = tmp_path / "run"
    code = _cli("--train", fno_files / "train2d.npz", "--test", fno_files / "test2d.npz",
                "--model", "fno", "--steps", "5", "--width", "4", "--depth", "1", "--quiet",
                "--out", out)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # Default modes 12, capped at half the coarsest grid (12 points).
    assert metrics["modes"] == [6, 6] and metrics["test_grid"] == [17, 17]
    assert np.load(out / "predictions.npz")["y_pred"].shape == (6, 17, 17)


@pytest.mark.parametrize(
    "train,test,extra,message",
    [
        ("nan2d", "test2d", [], r"X_branch has \d+ NaN/inf value\(s\), the first at index"),
        ("mismatch2d", "test2d", [], r"X_branch has shape \(4, 12, 12\) but y has \(4, 10, 12\)"),
        ("train2d", "test", [], r"2-D grids \(12, 12\) in --train, 1-D grids \(64,\)"),
        ("train2d", "test2d", ["--modes", "7"], r"--modes 7: .* at most 6 modes"),
        ("train", "triple", [], r"one random point per row"),
    ],
)
def test_cli_fno_refusals(fno_files, tmp_path, capsys, train, test, extra, message):
    import re

    out = tmp_path / "run"
    code = _cli("--train", fno_files / f"{train}.npz", "--test", fno_files / f"{test}.npz",
                "--model", "fno", "--steps", "5", "--quiet", "--out", out, *extra)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("sciml operator: error: ")
    assert re.search(message, err), err
    assert not out.exists()


def test_cli_modes_only_for_fno(fno_files, tmp_path, capsys):
    out = tmp_path / "run"
    code = _cli("--train", fno_files / "train.npz", "--test", fno_files / "test.npz",
                "--modes", "4", "--quiet", "--out", out)
    assert code == 2 and "--modes is for --model fno" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------
# The operator entry points (predict, evaluate, mse_loss, FunctionBatches) with an FNO


def _small_fno(key, modes=(4,)):
    return so.FNO(1, 1, modes, 6, layers=2, projection=8, key=key)


def test_predict_and_evaluate_with_fno_on_aligned_data(getkey):
    import sciml.data as sd

    rng = np.random.default_rng(1)
    n, m = 5, 16
    x = np.linspace(0, 1, m)
    data = sd.TripleCartesianProd(rng.standard_normal((n, m)), x[:, None],
                                  rng.standard_normal((n, m)))
    model = _small_fno(getkey())
    one = eqx.filter_jit(model)
    direct = np.stack([np.asarray(one(jnp.asarray(b)[None]))[0] for b in data.branch])
    pred = eqx.filter_jit(so.predict)(model, so.as_arrays(data))
    np.testing.assert_allclose(pred, direct, rtol=1e-10, atol=1e-12)
    got = so.evaluate(model, data, chunk=2)
    rel = np.mean(np.linalg.norm(direct - data.y, axis=1) / np.linalg.norm(data.y, axis=1))
    np.testing.assert_allclose(got["rel_l2"], rel, rtol=1e-10)
    np.testing.assert_allclose(got["mse"], np.mean((direct - data.y) ** 2), rtol=1e-10)
    loss = eqx.filter_jit(so.mse_loss)(model, so.as_arrays(data))
    np.testing.assert_allclose(loss, got["mse"], rtol=1e-10)
    assert so.check_aligned(data, model="an FNO") == pytest.approx(1 / (m - 1))


def test_predict_fno_and_deeponet_on_2d_fields(getkey):
    import sciml.data as sd

    rng = np.random.default_rng(2)
    a, u = rng.standard_normal((3, 8, 10)), rng.standard_normal((3, 8, 10))
    fields = sd.Fields(a, u)
    model = _small_fno(getkey(), modes=(3, 4))
    one = eqx.filter_jit(model)
    direct = np.stack([np.asarray(one(jnp.asarray(ai)[None]))[0] for ai in a])
    # Chunks of 2 functions (lax.map, the last chunk padded) give the same values.
    got = so.evaluate(model, fields, chunk=2)
    rel = np.mean([np.linalg.norm(d - t) / np.linalg.norm(t) for d, t in zip(direct, u)])
    np.testing.assert_allclose(got["rel_l2"], rel, rtol=1e-10)
    # A DeepONet reads the same fields through to_cartesian: points (x_i, y_j) row-major.
    net = so.DeepONet([80, 5], [2, 5], key=getkey())
    cart = fields.to_cartesian()
    np.testing.assert_allclose(cart.trunk[10 * 2 + 3], [2 / 7, 3 / 9])
    np.testing.assert_allclose(eqx.filter_jit(so.predict)(net, so.as_arrays(fields)),
                               np.asarray(net.cartesian(cart.branch, cart.trunk)).reshape(3, 8, 10),
                               rtol=1e-10, atol=1e-12)


def test_fno_trains_through_function_batches(getkey):
    """sciml.fit on Fields minibatches with so.mse_loss learns a multiplier (a shift)."""
    import sciml
    import sciml.data as sd

    rng = np.random.default_rng(3)
    grid = 16
    x = np.arange(grid) / grid
    k = rng.integers(1, 4, size=(48, 1))
    a = np.cos(2 * np.pi * k * x + rng.uniform(0, 2 * np.pi, (48, 1)))
    u = np.roll(a, 2, axis=1)
    model = so.FNO(1, 1, 4, 8, layers=1, projection=8, periodic=True, key=getkey())
    fields = sd.Fields(a, u, coords=(x,))
    before = so.evaluate(model, fields)["rel_l2"]
    result = sciml.fit(model, so.mse_loss, optax.adam(1e-2), steps=300,
                       data=sd.FunctionBatches(so.as_arrays(fields), 16), key=getkey(),
                       progress=False)
    after = so.evaluate(result.model, fields)["rel_l2"]
    assert after < 0.1 * before and after < 0.1, (before, after)


def test_operator_entry_points_refuse_bad_data_for_fno(getkey):
    import sciml.data as sd

    rng = np.random.default_rng(4)
    model = _small_fno(getkey())
    triple = sd.Triple(rng.standard_normal((4, 16)), rng.uniform(size=(4, 1)),
                       rng.standard_normal((4, 1)))
    with pytest.raises(ValueError, match="needs every function on one grid"):
        so.predict(model, triple)
    fewer = sd.TripleCartesianProd(rng.standard_normal((4, 16)), np.linspace(0, 1, 8)[:, None],
                                   rng.standard_normal((4, 8)))
    with pytest.raises(ValueError, match="16 sensors and 8 output points"):
        so.predict(model, fewer)
    two_d = sd.Fields(rng.standard_normal((2, 8, 8)), rng.standard_normal((2, 8, 8)))
    with pytest.raises(ValueError, match=r"2-D modes for these 2-D inputs; got 1, 1 and mo"):
        so.predict(model, two_d)
    with pytest.raises(ValueError, match=r"`a` has 1 NaN/inf value\(s\), the first at index"):
        sd.Fields(np.where(np.eye(4) > 0.5, np.nan, 0.0)[:1], np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"a \(2, 8\) and u \(2, 7\)"):
        sd.Fields(np.zeros((2, 8)), np.zeros((2, 7)))
    with pytest.raises(ValueError, match=r"`coords\[0\]` has shape \(7,\)"):
        sd.Fields(np.zeros((2, 8)), np.zeros((2, 8)), coords=(np.linspace(0, 1, 7),))
    with pytest.raises(ValueError, match="increasing and equispaced"):
        sd.Fields(np.zeros((2, 4)), np.zeros((2, 4)), coords=([0, 0.1, 0.5, 1.0],))
