"""`sciml.fit` against independent truth: normal equations, Rosenbrock's minimum, a
trajectory computed by hand, an uninterrupted run (for resume), a single device (for
data parallelism)."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml


class Linear(eqx.Module):
    w: jax.Array
    b: jax.Array

    def __call__(self, x):
        return x @ self.w + self.b


def _regression_data(n=200, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ np.arange(1.0, d + 1) + 0.3 + 0.1 * rng.normal(size=n)
    return jnp.asarray(X), jnp.asarray(y)


def mse_loss(model, batch, *, key):
    X, y = batch
    r = jax.vmap(model)(X) - y
    return jnp.mean(r**2), {"max_abs": jnp.max(jnp.abs(r))}


def test_least_squares_reaches_normal_equations(getkey):
    X, y = _regression_data()
    model = Linear(jnp.zeros(5), jnp.zeros(()))
    stages = [sciml.Stage(optax.adam(0.05), 300), sciml.Stage(optax.lbfgs(), 50)]
    result = sciml.fit(model, mse_loss, stages, key=getkey(), data=(X, y), progress=False)
    A = np.c_[np.asarray(X), np.ones(len(y))]
    coef = np.linalg.solve(A.T @ A, A.T @ np.asarray(y))  # normal equations
    np.testing.assert_allclose(result.model.w, coef[:-1], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(result.model.b, coef[-1], rtol=1e-8, atol=1e-10)
    h = result.history
    assert set(h) == {"step", "stage", "loss", "time", "max_abs"}
    assert len(h["loss"]) == 350
    np.testing.assert_array_equal(h["step"], np.arange(350))
    np.testing.assert_array_equal(h["stage"], np.r_[np.zeros(300), np.ones(50)])
    assert np.all(np.diff(h["time"]) >= 0)


def test_minibatch_adam_approaches_least_squares(getkey):
    X, y = _regression_data(n=256)
    model = Linear(jnp.zeros(5), jnp.zeros(()))
    data = sciml.Minibatches((X, y), 32)
    result = sciml.fit(model, mse_loss, optax.adam(1e-2), steps=2000, key=getkey(), data=data,
                       progress=False)
    A = np.c_[np.asarray(X), np.ones(len(y))]
    coef = np.linalg.lstsq(A, np.asarray(y), rcond=None)[0]
    # Stochastic gradients: close to, not at, the optimum (noise level 0.1, 256 examples).
    np.testing.assert_allclose(result.model.w, coef[:-1], atol=2e-2)


def test_lbfgs_reaches_rosenbrock_minimum(getkey):
    def rosenbrock(p, batch, *, key):
        return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2

    result = sciml.fit(jnp.array([-1.2, 1.0]), rosenbrock, optax.lbfgs(), steps=200,
                       key=getkey(), progress=False)
    np.testing.assert_allclose(result.model, [1.0, 1.0], atol=1e-6)


def _plain_optax(opt, value_fn, p, n):
    """n steps of a hand-written optax loop (value, grad and value_fn forwarded)."""
    state = opt.init(p)
    for _ in range(n):
        v, g = jax.value_and_grad(value_fn)(p)
        u, state = opt.update(g, state, p, value=v, grad=g, value_fn=value_fn)
        p = optax.apply_updates(p, u)
    return p


def test_line_searches_match_a_plain_optax_loop(getkey):
    X = jax.random.normal(getkey(), (20, 3))
    y = X @ jnp.array([1.0, -2.0, 0.5])

    def loss(m, batch, *, key):
        Xb, yb = batch
        return jnp.mean((Xb @ m - yb) ** 2)

    # Backtracking keeps the value but not the gradient by default (store_grad=False);
    # fit used to ask the state for both and fail.
    for store_grad in (False, True):
        opt = optax.chain(optax.sgd(1.0), optax.scale_by_backtracking_linesearch(
            max_backtracking_steps=15, store_grad=store_grad))
        r = sciml.fit(jnp.zeros(3), loss, opt, steps=12, key=getkey(), data=(X, y),
                      progress=False)
        want = _plain_optax(opt, lambda m: loss(m, (X, y), key=None), jnp.zeros(3), 12)
        np.testing.assert_allclose(r.model, want, rtol=1e-10)


def test_lbfgs_history_of_a_loss_that_changes_with_the_step(getkey):
    # A line search's value at the accepted point belongs to the step that ran it; with
    # a step-dependent loss the next step's loss must be evaluated afresh.
    def loss(m, batch, *, key, step):
        w = 1.0 + step
        v = w * jnp.sum((m - 1.0) ** 2)
        return v, {"w": w, "by_hand": w * jnp.sum((m - 1.0) ** 2)}

    r = sciml.fit(jnp.full(2, 3.0), loss, optax.lbfgs(), steps=4, key=getkey(),
                  progress=False)
    np.testing.assert_allclose(r.history["w"], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(r.history["loss"], r.history["by_hand"], rtol=1e-12)


def _blowup_problem():
    # x follows plain gradient descent on -x + eps*log(c - x); the log turns NaN once
    # x exceeds c, at a step we compute by hand below.
    c, eps, lr = 10.5, 1e-3, 1.0

    def loss(x, batch, *, key):
        blow = eps * jnp.log(c - x)
        return -x + blow, {"linear": -x, "log_term": blow}

    xs = [0.0]
    while xs[-1] <= c:
        x = xs[-1]
        xs.append(x - lr * (-1.0 - eps / (c - x)))
    return loss, lr, xs


def test_divergence_guard_stops_at_known_step(getkey, tmp_path):
    loss, lr, xs = _blowup_problem()
    bad_step = len(xs) - 1  # first step whose parameters make the loss NaN
    with pytest.raises(FloatingPointError) as info:
        sciml.fit(jnp.asarray(0.0), loss, optax.sgd(lr), steps=100, key=getkey(),
                  progress=False, checkpoint=tmp_path / "ckpt")
    err = info.value
    assert isinstance(err, sciml.DivergenceError)
    assert err.step == bad_step
    assert f"step {bad_step}" in str(err) and "log_term" in str(err)
    assert "linear" not in str(err).split("Non-finite terms:")[1]
    # The last model with a finite loss, and the history up to the bad step.
    np.testing.assert_allclose(err.model, xs[bad_step - 1], rtol=1e-12)
    assert len(err.history["loss"]) == bad_step + 1
    assert np.isnan(err.history["loss"][-1]) and np.all(np.isfinite(err.history["loss"][:-1]))
    assert err.checkpoint is not None and os.path.isdir(err.checkpoint)


def test_divergence_guard_on_gradient(getkey):
    def loss(x, batch, *, key):
        # finite value, infinite gradient at x = 0 (sqrt), reached at step 0
        return jnp.sqrt(jnp.abs(x))

    with pytest.raises(sciml.DivergenceError, match="gradient became non-finite at step 0"):
        sciml.fit(jnp.asarray(0.0), loss, optax.sgd(0.1), steps=10, key=getkey(), progress=False)


def _stochastic_problem(getkey):
    X, y = _regression_data(n=96)
    model = sciml.nn.MLP(5, "scalar", 8, 1, key=getkey())

    def loss(m, batch, *, key):
        Xb, yb = batch
        noise = 1e-3 * jax.random.normal(key, yb.shape)  # the loss uses its key
        r = jax.vmap(m)(Xb) - yb + noise
        return jnp.mean(r**2), {"bias": jnp.mean(r)}

    return model, loss, sciml.Minibatches((X, y), 16)


def test_resume_is_bit_exact(getkey, tmp_path):
    model, loss, data = _stochastic_problem(getkey)
    key = getkey()
    stages = [sciml.Stage(optax.adam(1e-2), 70), sciml.Stage(optax.lbfgs(), 30,
                                                              data=data.data)]
    full = sciml.fit(model, loss, stages, key=key, data=data, progress=False)

    class StopAt:
        every = 45

        def __call__(self, info):
            return info.step == 45

    ckpt = tmp_path / "run"
    first = sciml.fit(model, loss, stages, key=key, data=data, progress=False,
                      checkpoint=ckpt, callbacks=[StopAt()])
    assert first.stopped is not None and len(first.history["loss"]) == 45
    resumed = sciml.fit(model, loss, stages, key=key, data=data, progress=False,
                        checkpoint=ckpt, resume=True)
    for a, b in zip(jax.tree.leaves(full.model), jax.tree.leaves(resumed.model)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(full.history["loss"], resumed.history["loss"])
    np.testing.assert_array_equal(full.history["bias"], resumed.history["bias"])


class _StopAt:
    every = 1

    def __init__(self, step):
        self.step = step

    def __call__(self, info):
        return info.step == self.step


def test_resume_after_a_divergence_equals_an_uninterrupted_run(getkey, tmp_path):
    # The checkpoint written at a divergence holds the last finite state, one step
    # behind the history; its history used to keep the steps after it, so a resumed
    # run listed them twice.
    def loss(m, batch, *, key, step):
        return jnp.sum((m - 1.0) ** 2) + jnp.where(step == 25, jnp.nan, 0.0)

    def healed(m, batch, *, key, step):
        return jnp.sum((m - 1.0) ** 2)

    key, ckpt = getkey(), tmp_path / "run"
    with pytest.raises(sciml.DivergenceError):
        sciml.fit(jnp.zeros(2), loss, optax.sgd(0.01), steps=40, key=key, progress=False,
                  checkpoint=ckpt)
    resumed = sciml.fit(jnp.zeros(2), healed, optax.sgd(0.01), steps=40, key=key,
                        progress=False, checkpoint=ckpt, resume=True)
    full = sciml.fit(jnp.zeros(2), healed, optax.sgd(0.01), steps=40, key=key,
                     progress=False)
    np.testing.assert_array_equal(resumed.history["step"], np.arange(40))
    np.testing.assert_array_equal(resumed.history["loss"], full.history["loss"])
    np.testing.assert_array_equal(resumed.model, full.model)


def test_bfloat16_run_resumes(getkey, tmp_path):
    def loss(m, batch, *, key):
        return jnp.sum((m - 1.0) ** 2)

    m0, key, ckpt = jnp.zeros(2, jnp.bfloat16), getkey(), tmp_path / "run"
    full = sciml.fit(m0, loss, optax.sgd(0.1), steps=10, key=key, progress=False)
    sciml.fit(m0, loss, optax.sgd(0.1), steps=10, key=key, progress=False, checkpoint=ckpt,
              callbacks=[_StopAt(5)])
    resumed = sciml.fit(m0, loss, optax.sgd(0.1), steps=10, key=key, progress=False,
                        checkpoint=ckpt, resume=True)
    np.testing.assert_array_equal(resumed.history["loss"], full.history["loss"])
    np.testing.assert_array_equal(resumed.model.astype(jnp.float32),
                                  full.model.astype(jnp.float32))
    # By hand: 1 - m_k = 0.8^k in exact arithmetic, loss 2 (1 - m)^2, to bfloat16 rounding.
    np.testing.assert_allclose(full.history["loss"], 2 * 0.64 ** np.arange(10), rtol=3e-2)


def test_resume_refuses_other_schedule(getkey, tmp_path):
    model, loss, data = _stochastic_problem(getkey)
    key = getkey()
    sciml.fit(model, loss, optax.adam(1e-2), steps=20, key=key, data=data, progress=False,
              checkpoint=tmp_path / "c")
    with pytest.raises(ValueError, match="stages ending at steps"):
        sciml.fit(model, loss, optax.adam(1e-2), steps=30, key=key, data=data,
                  progress=False, checkpoint=tmp_path / "c", resume=True)
    with pytest.raises(ValueError, match="different `key`"):
        sciml.fit(model, loss, optax.adam(1e-2), steps=20, key=getkey(), data=data,
                  progress=False, checkpoint=tmp_path / "c", resume=True)


def test_same_key_same_numbers(getkey):
    model, loss, data = _stochastic_problem(getkey)
    key = getkey()
    a = sciml.fit(model, loss, optax.adam(1e-2), steps=50, key=key, data=data, progress=False)
    b = sciml.fit(model, loss, optax.adam(1e-2), steps=50, key=key, data=data, progress=False)
    c = sciml.fit(model, loss, optax.adam(1e-2), steps=50, key=getkey(), data=data,
                  progress=False)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])
    assert not np.array_equal(a.history["loss"], c.history["loss"])


def test_second_call_does_not_recompile(getkey, count_compiles):
    X, y = _regression_data()
    model = Linear(jnp.zeros(5), jnp.zeros(()))
    opt = optax.adam(1e-2)
    with count_compiles() as first:
        sciml.fit(model, mse_loss, opt, steps=5, key=getkey(), data=(X, y), progress=False)
    assert first.count > 0
    # Same shapes, other values, other key, other step count: no new executable.
    model2 = Linear(jnp.ones(5), jnp.ones(()))
    key2, X2 = getkey(), X + 1.0
    with count_compiles() as second:
        sciml.fit(model2, mse_loss, opt, steps=17, key=key2, data=(X2, y), progress=False)
    assert second.count == 0


_RATE = None


def test_rebuilt_optimiser_reuses_the_program_only_when_equal(getkey, count_compiles):
    X, y = _regression_data()
    model = Linear(jnp.zeros(5), jnp.zeros(()))

    def run(opt, loss=mse_loss):
        return sciml.fit(model, loss, opt, steps=7, key=jax.random.key(0), data=(X, y),
                         progress=False).model.w

    def plain_optax(opt, scale=1.0):
        params, state = model, opt.init(model)
        for _ in range(7):
            g = jax.grad(lambda m: scale * mse_loss(m, (X, y), key=None)[0])(params)
            u, state = opt.update(g, state, params)
            params = optax.apply_updates(params, u)
        return params.w

    first = run(optax.adam(optax.exponential_decay(1e-2, 3, 0.5)))
    # Rebuilt inline, as in a re-run notebook cell: the same program, the same numbers.
    with count_compiles() as c:
        again = run(optax.adam(optax.exponential_decay(1e-2, 3, 0.5)))
    assert c.count == 0
    np.testing.assert_array_equal(again, first)
    # Other hyperparameters: each its own program, with the numbers of a plain optax
    # loop (equal to rounding: Adam divides by sqrt(v), 5e-9 apart measured; another
    # configuration differs in the first digits).
    for opt in (optax.adam(2e-2), optax.adam(optax.exponential_decay(1e-2, 3, 0.25))):
        with count_compiles() as c:
            trained = run(opt)
        assert c.count > 0
        np.testing.assert_allclose(trained, plain_optax(opt), rtol=1e-7)
    # A schedule of the user's reading a global, changed between calls, and a loss
    # rebuilt around another value: never the earlier program.
    global _RATE
    for _RATE in (1e-2, 5e-2):
        opt = optax.sgd(lambda step: _RATE)
        np.testing.assert_allclose(run(opt), plain_optax(opt), rtol=1e-7)

    def make_loss(scale):
        def loss(m, batch, *, key):
            value, aux = mse_loss(m, batch, key=key)
            return scale * value, aux

        return loss

    opt = optax.adam(2e-2)
    for scale in (1.0, 3.0):
        np.testing.assert_allclose(run(opt, make_loss(scale)), plain_optax(opt, scale),
                                   rtol=1e-7)


def test_minibatches_visit_every_example_once_per_epoch(getkey):
    n, bs = 48, 8
    data = sciml.Minibatches(jnp.arange(n, dtype=jnp.float64), bs)
    seen = []

    def loss(p, batch, *, key):
        return jnp.sum(p * 0) + jnp.sum(batch), {"first": batch[0]}

    result = sciml.fit(jnp.zeros(()), loss, optax.sgd(0.0), steps=3 * n // bs, key=getkey(),
                       data=data, progress=False)
    sums = result.history["loss"].reshape(3, n // bs).sum(axis=1)
    np.testing.assert_allclose(sums, n * (n - 1) / 2)  # each example exactly once per epoch
    seen = result.history["first"].reshape(3, n // bs)
    assert not np.array_equal(seen[0], seen[1])  # reshuffled


def test_resampler_and_step_keyword(getkey):
    def sampler(key):
        return jax.random.uniform(key, (4,))

    def loss(p, batch, *, key, step):
        return jnp.sum(p**2) + jnp.asarray(step, p.dtype) + 0 * jnp.sum(batch), {
            "batch_mean": jnp.mean(batch)}

    result = sciml.fit(jnp.asarray(0.0), loss, optax.sgd(0.0), steps=6, key=getkey(),
                       data=sampler, progress=False)
    np.testing.assert_allclose(result.history["loss"], np.arange(6.0))
    means = result.history["batch_mean"]
    assert len(set(np.round(means, 12))) == 6 and np.all((means > 0) & (means < 1))


def test_frozen_leaves_and_multi_transform(getkey):
    X, y = _regression_data()
    model = Linear(jnp.zeros(5), jnp.asarray(0.7))
    spec = Linear(True, False)
    frozen = sciml.fit(model, mse_loss, optax.adam(1e-2), steps=20, key=getkey(),
                       data=(X, y), trainable=spec, progress=False)
    assert float(frozen.model.b) == 0.7
    assert not np.allclose(frozen.model.w, 0.0)

    labels = sciml.param_labels(model, {"slow": lambda m: m.b}, default="fast")
    opt = optax.multi_transform({"fast": optax.adam(1e-2), "slow": optax.set_to_zero()},
                                labels)
    grouped = sciml.fit(model, mse_loss, opt, steps=20, key=getkey(), data=(X, y),
                        progress=False)
    assert float(grouped.model.b) == 0.7
    np.testing.assert_array_equal(grouped.model.w, frozen.model.w)


def test_callbacks_every_and_stop(getkey):
    X, y = _regression_data()
    calls = []

    class Every10:
        every = 10

        def __call__(self, info):
            calls.append((info.step, len(info.history["loss"])))
            assert np.isfinite(info.loss) and "max_abs" in info.terms

    def stop_late(info):
        return info.step >= 35

    result = sciml.fit(Linear(jnp.zeros(5), jnp.zeros(())), mse_loss, optax.adam(1e-2),
                       steps=100, key=getkey(), data=(X, y), progress=False,
                       callbacks=[Every10(), stop_late])
    assert [c[0] for c in calls][:3] == [10, 20, 30]
    assert all(step == n for step, n in calls)
    assert result.stopped and 35 <= len(result.history["loss"]) < 100
    # A numpy or JAX True stops training as Python's does (numpy's was ignored).
    for true in (np.bool_(True), jnp.asarray(True)):
        result = sciml.fit(Linear(jnp.zeros(5), jnp.zeros(())), mse_loss, optax.adam(1e-2),
                           steps=100, key=getkey(), data=(X, y), progress=False,
                           callbacks=[Every10(), lambda i, t=true: t if i.step >= 20 else None])
        assert result.stopped and 20 <= len(result.history["loss"]) < 100


def test_progress_bar_shows_terms(getkey, capsys):
    X, y = _regression_data()
    sciml.fit(Linear(jnp.zeros(5), jnp.zeros(())), mse_loss, optax.adam(1e-2), steps=30,
              key=getkey(), data=(X, y), progress=True)
    err = capsys.readouterr().err
    assert "30/30" in err and "max_abs=" in err


def test_save_load_round_trip(getkey, tmp_path):
    model = sciml.nn.MLP(3, 2, 8, 2, key=getkey())
    sciml.save(tmp_path / "m.eqx", model)
    like = sciml.nn.MLP(3, 2, 8, 2, key=getkey())
    back = sciml.load(tmp_path / "m.eqx", like)
    for a, b in zip(jax.tree.leaves(model), jax.tree.leaves(back)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"stored with shape \(8, 3\) but `like` has shape"):
        sciml.load(tmp_path / "m.eqx", sciml.nn.MLP(3, 2, 9, 2, key=getkey()))
    with pytest.raises(FileNotFoundError, match="no file"):
        sciml.load(tmp_path / "missing.eqx", like)


def test_typed_keys_save_and_resume(getkey, tmp_path):
    # Typed PRNG keys have no numpy dtype; they used to fail the save, which lost a
    # checkpointed run whose optimiser state holds one (optax.add_noise).
    tree = {"k": jax.random.key(3), "ks": jax.random.split(jax.random.key(5), 4),
            "rbg": jax.random.key(7, impl="rbg"), "raw": jax.random.PRNGKey(1)}
    sciml.save(tmp_path / "k.eqx", tree)
    like = {"k": jax.random.key(0), "ks": jax.random.split(jax.random.key(0), 4),
            "rbg": jax.random.key(0, impl="rbg"), "raw": jax.random.PRNGKey(0)}
    back = sciml.load(tmp_path / "k.eqx", like)
    for name in tree:
        np.testing.assert_array_equal(jax.random.key_data(back[name]),
                                      jax.random.key_data(tree[name]))
    assert str(jax.random.key_impl(back["rbg"])) == str(jax.random.key_impl(tree["rbg"]))
    np.testing.assert_array_equal(jax.random.normal(back["k"]), jax.random.normal(tree["k"]))

    def loss(m, batch, *, key):
        return jnp.sum((m - 1.0) ** 2)

    opt = optax.chain(optax.add_noise(0.01, 0.55, 0), optax.adam(0.05))
    key = getkey()
    full = sciml.fit(jnp.zeros(2), loss, opt, steps=30, key=key, progress=False)

    class StopAt:
        every = 10

        def __call__(self, info):
            return info.step == 10

    ckpt = tmp_path / "run"
    sciml.fit(jnp.zeros(2), loss, opt, steps=30, key=key, progress=False, checkpoint=ckpt,
              callbacks=[StopAt()])
    resumed = sciml.fit(jnp.zeros(2), loss, opt, steps=30, key=key, progress=False,
                        checkpoint=ckpt, resume=True)
    np.testing.assert_array_equal(full.model, resumed.model)


# ---------------------------------------------------------------------------------
# Bad input: each gets a clear error before training.


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(steps=0), ValueError, "positive number of optimiser steps, got 0"),
        (dict(steps=-3), ValueError, "got -3"),
        (dict(steps=2.5), TypeError, "`steps` must be a positive int"),
        (dict(steps=None), TypeError, "missing `steps=`"),
        (dict(optimiser="adam"), TypeError, "optax.GradientTransformation"),
        (dict(key=0), TypeError, "PRNG key"),
        (dict(devices=64), ValueError, "device"),
        (dict(resume=True), ValueError, "needs `checkpoint=`"),
        (dict(checkpoint_every=0), ValueError, "checkpoint_every"),
        (dict(trainable=lambda x: False), ValueError, "nothing to train"),
        (dict(callbacks=[3]), TypeError, "not callable"),
    ],
)
def test_bad_arguments(getkey, kwargs, error, match):
    X, y = _regression_data()
    args = dict(model=Linear(jnp.zeros(5), jnp.zeros(())), loss=mse_loss,
                optimiser=optax.adam(1e-2), steps=10, key=getkey(), data=(X, y),
                progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sciml.fit(**args)


def test_trainable_non_arrays_are_named(getkey):
    # A Python float and a function selected as trainable used to fail with a bare
    # AttributeError ("'float' object has no attribute 'dtype'").
    model = (jnp.zeros(2), 2.0, jnp.arange(3))

    def loss(m, batch, *, key):
        return jnp.sum((m[0] - m[1]) ** 2)

    with pytest.raises(ValueError, match=r"\(float, int(32|64)\).*jnp.asarray"):
        sciml.fit(model, loss, optax.adam(1e-2), steps=3, key=getkey(), progress=False,
                  trainable=lambda x: True)


def test_python_number_aux_terms_are_recorded(getkey):
    def loss(m, batch, *, key):
        return jnp.sum((m - 1.0) ** 2), {"c": 1.5, "n": 3, "r": jnp.sum(m)}

    r = sciml.fit(jnp.zeros(2), loss, optax.sgd(0.25), steps=4, key=getkey(), progress=False)
    np.testing.assert_array_equal(r.history["c"], 1.5)
    np.testing.assert_array_equal(r.history["n"], 3.0)
    # m_k = 1 - 0.5^k by hand.
    np.testing.assert_allclose(r.history["r"], 2 * (1 - 0.5 ** np.arange(4)), rtol=1e-12)


def test_unhashable_static_leaf_is_named(getkey):
    class Holder:  # an object that defines equality but no hash
        __hash__ = None

    model = (jnp.zeros(2), Holder())

    def loss(m, batch, *, key):
        return jnp.sum((m[0] - 1.0) ** 2)

    with pytest.raises(TypeError, match="non-array leaf of the model is a Holder"):
        sciml.fit(model, loss, optax.adam(1e-2), steps=3, key=getkey(), progress=False)


def test_bad_losses(getkey):
    X, y = _regression_data()
    model = Linear(jnp.zeros(5), jnp.zeros(()))
    fit = lambda loss, data=(X, y): sciml.fit(model, loss, optax.adam(1e-2), steps=5,
                                               key=getkey(), data=data, progress=False)
    with pytest.raises(ValueError, match=r"scalar \(shape \(\)\), but it returned shape \(200,\)"):
        fit(lambda m, b, *, key: jax.vmap(m)(b[0]) - b[1])
    with pytest.raises(ValueError, match="aux term 'r' .* must be a scalar"):
        fit(lambda m, b, *, key: (jnp.mean(jax.vmap(m)(b[0])), {"r": jax.vmap(m)(b[0])}))
    with pytest.raises(ValueError, match="scalar or \\(scalar, dict of scalars\\)"):
        fit(lambda m, b, *, key: (jnp.mean(jax.vmap(m)(b[0])), 3.0, 4.0))
    with pytest.raises(ValueError, match="The batch has shapes"):
        fit(mse_loss, data=(X[:, :3], y))  # 3 features for a 5-weight model
    with pytest.raises(TypeError, match="non-array leaves"):
        fit(mse_loss, data=("a", "b"))


def test_bad_minibatches():
    with pytest.raises(ValueError, match="same leading"):
        sciml.Minibatches((jnp.zeros((10, 2)), jnp.zeros(9)), 2)
    with pytest.raises(ValueError, match="between 1 and the number of examples \\(10\\)"):
        sciml.Minibatches(jnp.zeros((10, 2)), 11)


# ---------------------------------------------------------------------------------
# Data parallelism over two (fake CPU) devices.

_TWO_DEVICE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import equinox as eqx, jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_enable_x64", True)
    import sciml
    assert len(jax.devices()) == 2, jax.devices()
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(64, 3)))
    y = jnp.sin(X).sum(axis=1)
    model = sciml.nn.MLP(3, "scalar", 16, 2, key=jax.random.key(1))

    def loss(m, batch, *, key):
        Xb, yb = batch
        return jnp.mean((jax.vmap(m)(Xb) - yb) ** 2)

    out = {}
    def resample(k):
        return X[:32] + 0.01 * jax.random.normal(k, (32, 3)), y[:32]

    for name, data in [("fixed", (X, y)), ("mini", sciml.Minibatches((X, y), 16)),
                       ("resample", resample)]:
        runs = []
        for devices in (None, 2):
            r = sciml.fit(model, loss, optax.adam(1e-2), steps=40, key=jax.random.key(2),
                          data=data, devices=devices, progress=False)
            leaves = jax.tree.leaves(eqx.filter(r.model, eqx.is_array))
            runs.append([np.asarray(l).tolist() for l in leaves])
            runs.append(r.history["loss"].tolist())
        out[name] = runs
    print("RESULT" + json.dumps(out))
    """
)


def test_two_devices_match_one(tmp_path):
    script = tmp_path / "two.py"
    script.write_text(_TWO_DEVICE_SCRIPT)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    for name, (p1, h1, p2, h2) in out.items():
        # Sharded reductions sum in another order: equal to rounding, not bit for bit.
        for a, b in zip(p1, p2):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(h1, h2, rtol=1e-9, err_msg=name)


def test_devices_need_divisible_batch(getkey):
    X, y = _regression_data(n=7)
    with pytest.raises(ValueError, match="multiple of 1|data="):
        # one device divides everything; data=None cannot be sharded
        sciml.fit(Linear(jnp.zeros(5), jnp.zeros(())), lambda m, b, *, key: jnp.sum(m.w),
                  optax.adam(1e-2), steps=2, key=getkey(), devices=1, progress=False)


class _TargetLoss(eqx.Module):
    target: jax.Array

    def __call__(self, p, batch, *, key):
        return jnp.sum((p - self.target) ** 2)

    def method(self, p, batch, *, key):
        return jnp.sum((p - 2 * self.target) ** 2)


def test_loss_may_be_a_module_holding_arrays(getkey, count_compiles):
    opt = optax.adam(0.1)
    a = sciml.fit(jnp.zeros(3), _TargetLoss(jnp.arange(3.0)), opt, steps=400, key=getkey(),
                  progress=False)
    np.testing.assert_allclose(a.model, np.arange(3.0), atol=1e-3)
    # Other arrays, same structure: the same executable, and the new values are used.
    target, key = _TargetLoss(jnp.ones(3)), getkey()
    with count_compiles() as c:
        b = sciml.fit(jnp.zeros(3), target, opt, steps=400, key=key, progress=False)
    np.testing.assert_allclose(b.model, np.ones(3), atol=1e-3)
    assert c.count == 0
    # A bound method of such a module (how problems expose `problem.loss`).
    c = sciml.fit(jnp.zeros(3), _TargetLoss(jnp.ones(3)).method, opt, steps=400,
                  key=getkey(), progress=False)
    np.testing.assert_allclose(c.model, 2 * np.ones(3), atol=1e-3)


def test_callback_log_records_history_column(getkey):
    model = jnp.array([3.0, -1.0])

    def loss(p, batch, *, key):
        return jnp.sum(p**2)

    def monitor(info):
        info.log("norm", float(jnp.linalg.norm(info.model)))

    monitor.every = 5
    res = sciml.fit(model, loss, optax.sgd(0.1), steps=20, key=getkey(), callbacks=[monitor],
                    progress=False)
    col = res.history["norm"]
    assert col.shape == res.history["loss"].shape
    logged = np.nonzero(np.isfinite(col))[0]
    np.testing.assert_array_equal(res.history["step"][logged], [4, 9, 14, 19])
    # SGD on |p|^2 scales p by 0.8 per step: the logged norm after 5k steps is exact.
    np.testing.assert_allclose(col[logged], np.sqrt(10.0) * 0.8 ** np.array([5, 10, 15, 20]),
                               rtol=1e-12)


class _NormRecorder:
    """Records |p| inside the compiled steps every 3 steps; acts every 10."""

    every = 10

    def __init__(self):
        self.seen = []

    def recorder(self, model):
        return (lambda m: jnp.linalg.norm(m)[None]), 3

    def __call__(self, info):
        self.seen.append((info.step, [(s, float(v[0])) for s, v in info.records]))
        for s, v in info.records:
            info.log("rec_norm", v[0], step=s)


def test_recorder_values_arrive_in_order_at_their_steps(getkey):
    model = jnp.array([3.0, -1.0])

    def loss(p, batch, *, key):
        return jnp.sum(p**2)

    cb = _NormRecorder()
    res = sciml.fit(model, loss, optax.sgd(0.1), steps=25, key=getkey(), callbacks=[cb],
                    progress=False)
    # Called every 10 steps and at the end; each call gets the records since the last.
    assert [step for step, _ in cb.seen] == [10, 20, 25]
    steps = [s for _, recs in cb.seen for s, _ in recs]
    assert steps == [3, 6, 9, 12, 15, 18, 21, 24]
    # SGD on |p|^2 scales p by 0.8 per step: |p| after k steps is exact.
    values = np.array([v for _, recs in cb.seen for _, v in recs])
    np.testing.assert_allclose(values, np.sqrt(10.0) * 0.8 ** np.array(steps), rtol=1e-12)
    logged = np.isfinite(res.history["rec_norm"])
    np.testing.assert_array_equal(res.history["step"][logged] + 1, steps)
    # A recorder does not change training.
    plain = sciml.fit(model, loss, optax.sgd(0.1), steps=25, key=getkey(), progress=False)
    np.testing.assert_array_equal(res.model, plain.model)


def test_recorder_module_with_arrays_reuses_the_compiled_program(getkey, count_compiles):
    class Project(eqx.Module):
        w: jax.Array

        def __call__(self, model):
            return (self.w @ model.weight.ravel())[None]

    class Watch:
        def __init__(self, w):
            self.w, self.values = w, []

        def recorder(self, model):
            return Project(self.w), 5

        def __call__(self, info):
            self.values += [float(v[0]) for _, v in info.records]

    model = eqx.nn.Linear(3, 2, key=getkey())  # a model with non-array leaves

    def loss(m, batch, *, key):
        return jnp.sum(m.weight**2) + jnp.sum(m.bias**2)

    opt = optax.sgd(0.1)
    a = Watch(jnp.arange(6.0))
    sciml.fit(model, loss, opt, steps=10, key=getkey(), callbacks=[a], progress=False)
    b, key = Watch(jnp.ones(6)), getkey()
    with count_compiles() as c:
        sciml.fit(model, loss, opt, steps=10, key=key, callbacks=[b], progress=False)
    assert c.count == 0  # the projection's arrays are arguments
    w0 = np.asarray(model.weight).ravel()
    np.testing.assert_allclose(a.values, [np.arange(6.0) @ w0 * 0.8**k for k in (5, 10)],
                               rtol=1e-6)
    np.testing.assert_allclose(b.values, [w0.sum() * 0.8**k for k in (5, 10)], rtol=1e-6)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda m: (lambda x: x,), TypeError, "pair"),
        (lambda m: ((lambda x: x), 0), ValueError, "every"),
        (lambda m: ((lambda x: jnp.arange(3)), 2), ValueError, "floating-point"),
        (lambda m: ((lambda x: x.missing), 2), ValueError, "fails on the model"),
    ],
)
def test_recorder_bad_input(getkey, make, error, match):
    class Bad:
        def recorder(self, model):
            return make(model)

        def __call__(self, info):
            pass

    with pytest.raises(error, match=match):
        sciml.fit(jnp.zeros(3), lambda p, b, *, key: jnp.sum(p**2), optax.sgd(0.1), steps=5,
                  key=getkey(), callbacks=[Bad()], progress=False)


def test_fitinfo_log_refuses_a_step_not_yet_run(getkey):
    def ahead(info):
        info.log("x", 1.0, step=info.step + 1)

    with pytest.raises(ValueError, match="`step` must be an int in"):
        sciml.fit(jnp.zeros(2), lambda p, b, *, key: jnp.sum(p**2), optax.sgd(0.1), steps=3,
                  key=getkey(), callbacks=[ahead], progress=False)
