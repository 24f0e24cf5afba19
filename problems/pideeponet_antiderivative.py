"""Physics-informed DeepONet learns the antiderivative from ds/dx = u (Wang, Wang, Perdikaris 2021).

The setup of the authors' notebook: u ~ GP with the RBF kernel (length scale 0.2) on
[0, 1], m = 100 sensors, branch and trunk 5 x 50 tanh, no output bias, Adam 1e-3
decayed by 0.9 every 1000 steps, the residual ds/dx(x_j) = u(x_j) at the sensors. Two
variants: "physics + 1 label" adds one labelled value s(y) per function at a random y
(the notebook's operator term, 2.49e-3 test relative L2 after 40 000 steps on 10 000
functions); "physics only" replaces it by s(0) = 0 and uses no solution values.
Tested on held-out functions at the 100 sensor points.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml
import sciml.cli
import sciml.data as sd
import sciml.operators as so
import sciml.pinn


NAME = "pideeponet-antiderivative"
RESULTS_SECTION = "Physics-informed DeepONet"
PAPER = 2.49e-3


def _ode(field, x, u_x):
    _, s_x = sciml.pinn.derivative(field, x, 0)
    return s_x - u_x


def _data(labelled, x, with_labels):
    """PhysicsData: the residual at the sensors (shared points, u there as values), and
    either one labelled value per function (term "data") or s(0) = 0 ("initial")."""
    u = np.asarray(labelled.branch)
    terms = {"residual": so.Points(x[:, None], u)}
    if with_labels:
        terms["data"] = so.Points(np.asarray(labelled.trunk)[:, None], np.asarray(labelled.y))
    else:
        terms["initial"] = so.Points(np.zeros((1, 1)))
    return so.PhysicsData(u, terms)


def _train(with_labels, labelled, x, steps, batch, key, progress):
    mkey, fkey = jax.random.split(key)
    data = _data(labelled, x, with_labels)
    m = len(x)
    model = so.DeepONet([m] + [50] * 5, [1] + [50] * 5, activation=jnp.tanh, use_bias=False,
                        key=mkey)
    second = "data" if with_labels else "initial"
    loss = so.PhysicsInformedLoss({"residual": _ode, second: so.value_residual})
    schedule = optax.exponential_decay(1e-3, 1000, 0.9)
    return sciml.fit(model, loss, optax.adam(schedule), steps=steps,
                     data=so.PhysicsBatches(data, batch), key=fkey, progress=progress)


def _per_function(model, test):
    pred = np.asarray(eqx.filter_jit(so.predict)(model, test))
    y = np.asarray(test.y)
    return pred, np.linalg.norm(pred - y, axis=1) / np.linalg.norm(y, axis=1)


def _plots(out, x, test, preds, errors):
    so.plot_predictions(x, test.branch, test.y, preds, out / "predictions.png",
                        title="antiderivative: physics-informed DeepONet on test functions")
    fig, (ax0, ax1) = sciml.plot.figure(1, 2, figsize=(9, 3.5))
    y = np.asarray(test.y)
    for i, (label, pred) in enumerate(preds.items()):
        for j in range(3):
            ax0.plot(x, np.abs(pred[j] - y[j]), f"C{i}-", lw=1, alpha=0.8,
                     label=label if j == 0 else None)
        ax1.hist(np.log10(errors[label]), bins=30, alpha=0.5, color=f"C{i}", label=label)
    ax0.set_yscale("log")
    ax0.set_xlabel("x")
    ax0.set_ylabel("|prediction - reference|, 3 test functions")
    ax0.legend(fontsize=8)
    ax1.axvline(np.log10(PAPER), color="k", ls=":", label=f"paper mean {PAPER:.2g}")
    ax1.set_xlabel("log10 relative L2 per test function")
    ax1.legend(fontsize=8)
    sciml.plot.save(fig, out / "errors.png")


def run(options: sciml.cli.RunOptions) -> dict:
    key = jax.random.key(options.seed)
    dkey, tkey, akey, bkey = jax.random.split(key, 4)
    m = 100
    n_train, n_test = options.pick(500, 10000), options.pick(200, 1000)
    steps = options.steps_or(options.pick(1000, 40000))
    batch = min(100, n_train)  # 100 functions x 100 sensors: the notebook's 10 000 residual rows
    space = sd.GRF(0.2)
    # One random labelled point per function, with u at the sensors.
    labelled = sd.antiderivative(space, num=n_train, sensors=m, points=sd.RandomPoints(1),
                                 key=dkey)
    test = so.as_arrays(sd.antiderivative(space, num=n_test, sensors=m, key=tkey))
    x = np.linspace(0.0, 1.0, m)
    metrics, preds, errors, histories = {}, {}, {}, {}
    variants = (("physics + 1 label", "label", True, akey),
                ("physics only", "physics", False, bkey))
    for variant, tag, with_labels, k in variants:
        result = _train(with_labels, labelled, x, steps, batch, k, options.progress)
        pred, err = _per_function(result.model, test)
        preds[variant], errors[variant], histories[tag] = pred, err, result.history
        metrics[f"test_rel_l2_{tag}"] = float(np.mean(err))
        metrics[f"test_rel_l2_std_{tag}"] = float(np.std(err))
        metrics[f"train_s_{tag}"] = result.timings["total"]
        metrics[f"steps_per_s_{tag}"] = result.timings["steps_per_second"]
    _plots(options.out, x, test, preds, errors)
    for (variant, tag, _, _) in variants:
        sciml.plot.history(histories[tag], options.out / f"loss_{tag}.png",
                           title=f"{NAME}: {variant}")
    return {
        **metrics,
        "paper_rel_l2": PAPER,
        "train_functions": n_train,
        "test_functions": n_test,
        "functions_per_step": batch,
        "steps": steps,
    }


def size_note(metrics: dict, options: sciml.cli.RunOptions) -> str | None:
    """Why the run stayed far from the paper's 2.5e-3 (None: within 4x of it)."""
    best = min(metrics["test_rel_l2_label"], metrics["test_rel_l2_physics"])
    if best <= 4 * PAPER:
        return None
    return (f"Test relative L2 {metrics['test_rel_l2_label']:.2g} (physics + 1 label) and "
            f"{metrics['test_rel_l2_physics']:.2g} (physics only) after {metrics['steps']} "
            f"steps on {metrics['train_functions']} functions, against the paper's 2.5e-3 "
            "after 40 000 steps on 10 000: not trained yet. The full run's figures are in "
            "benchmarks/RESULTS.md.")


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
