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


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
