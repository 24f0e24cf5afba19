"""FNO learns Burgers' solution operator u0 -> u(., 1), nu = 0.1 (Li et al., ICLR 2021).

The paper's set (GRF initial data, periodic, pseudo-spectral solve) at the paper's
s = 256 training resolution, modes 16, width 64, 4 Fourier layers, batches of 20,
Adam 1e-3 halved every tenth of the run; tested at 256 points and, with the same
weights, at 512 and 1024 (zero-shot super-resolution). Paper: relative L2 1.49e-2 at
s = 256 with 1000 training functions and 500 epochs (25000 steps).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml
import sciml.cli
import sciml.data as sd
import sciml.operators as so


NAME = "fno-burgers"


def _loss(model, batch, *, key):
    a, u = batch
    return jnp.mean((jax.vmap(model)(a) - u) ** 2)


def _rel_l2(model, a, u):
    run = jax.jit(jax.vmap(model))
    pred = np.concatenate([np.asarray(run(a[i : i + 25])) for i in range(0, len(a), 25)])
    err = np.linalg.norm(pred - np.asarray(u), axis=-1) / np.linalg.norm(np.asarray(u), axis=-1)
    return float(np.mean(err)), pred[:, 0]


def run(options: sciml.cli.RunOptions) -> dict:
    key = jax.random.key(options.seed)
    dkey, tkey, mkey, fkey = jax.random.split(key, 4)
    n_train, n_test = options.pick(200, 1000), options.pick(50, 200)
    steps = options.steps_or(options.pick(600, 25000))
    with jax.enable_x64(True):  # float64 reference data, stored as float32 below
        train = sd.burgers_periodic(num=n_train, key=dkey, grid=1024, stride=4)
        tests = {s: sd.burgers_periodic(num=n_test, key=tkey, grid=1024, stride=1024 // s)
                 for s in (256, 512, 1024)}
    f32 = lambda v: jnp.asarray(v, jnp.float32)[:, None]  # noqa: E731
    a, u = f32(train.branch), f32(train.y)
    model = so.FNO(1, 1, 16, 64, key=mkey, dtype=jnp.float32)
    schedule = optax.exponential_decay(1e-3, max(steps // 10, 1), 0.5)
    result = sciml.fit(model, _loss, optax.adam(schedule), steps=steps,
                       data=sciml.Minibatches((a, u), 20), key=fkey, progress=options.progress)
    errors, preds = {}, {}
    for s, data in tests.items():
        errors[s], preds[s] = _rel_l2(result.model, f32(data.branch), f32(data.y))
    train_err, _ = _rel_l2(result.model, a, u)

    t = tests[256]
    so.plot_predictions(t.trunk[:, 0], t.branch, t.y, {"FNO": preds[256]},
                        options.out / "predictions.png",
                        title="Burgers nu = 0.1: FNO at the training resolution")
    fig, ax = sciml.plot.figure(figsize=(4.5, 3.5))
    ax.plot(list(errors), list(errors.values()), "o-", label="FNO, trained at 256")
    ax.axhline(1.49e-2, color="k", ls=":", label="paper at 256 (1.49e-2)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("evaluation grid")
    ax.set_ylabel("mean relative L2")
    ax.legend()
    sciml.plot.save(fig, options.out / "error_vs_resolution.png")
    sciml.plot.history(result.history, options.out / "loss.png", title=NAME)
    return {
        "train_resolution": 256,
        "test_rel_l2_train_res": errors[256],
        "test_rel_l2_2x": errors[512],
        "test_rel_l2_4x": errors[1024],
        "train_rel_l2": train_err,
        "paper_rel_l2_256": 1.49e-2,
        "train_functions": n_train,
        "test_functions": n_test,
        "steps": steps,
        "train_s": result.timings["total"],
        "compile_s": result.timings["compile"],
        "steps_per_s": result.timings["steps_per_second"],
    }


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
