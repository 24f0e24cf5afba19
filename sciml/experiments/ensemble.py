"""The regressions of Chen et al. (2020/2022): ES-MDA, EnKF and Adam side by side.

Shared by the problems `ensemble-sine` and `ensemble-mexican-hat` and by
`benchmarks/training_dynamics.py`. Every method trains the same network architecture
from the same data at an equal budget of forward evaluations (network evaluations
at one data point): an ensemble of N members over `passes` full-data ES-MDA steps
costs N x passes x n_data, Adam the same number in full-batch steps (Adam's backward
passes come on top: gradients cost about two more forward evaluations each).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..ensemble import ESMDA, EnKF, predict, sample
from ..train import Minibatches, fit


TARGETS: dict[str, tuple[Callable, tuple[float, float]]] = {
    "sine": (jnp.sin, (-np.pi, np.pi)),
    "mexican-hat": (lambda x: (1 - x**2) * jnp.exp(-(x**2) / 2), (-5.0, 5.0)),
}


@dataclasses.dataclass(frozen=True)
class RegressionSetup:
    """Sizes of one side-by-side run (defaults: the full problem)."""

    n_data: int = 200
    noise: float = 0.05
    width: int = 32
    depth: int = 2
    members: int = 100
    passes: int = 40  # full-data assimilations (ES-MDA steps); sets the budget
    enkf_batch: int = 20
    adam_lr: float = 3e-3


def _network(key, setup):
    return eqx.nn.MLP(1, "scalar", setup.width, setup.depth, activation=jnp.tanh, key=key)


def _metrics(pred, truth):
    pred, truth = np.asarray(pred), np.asarray(truth)
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2)))
    r2 = float(1 - np.sum((pred - truth) ** 2) / np.sum((truth - truth.mean()) ** 2))
    return rmse, r2


def compare(target: str, setup: RegressionSetup = RegressionSetup(), *, seed: int = 0,
            progress: bool = False) -> dict:
    """Trains ES-MDA, EnKF and Adam on one regression; returns metrics and predictions.

    Returns `{method: {"rmse", "r2", "time", "forward_evals", "coverage", ...}}` (test
    RMSE and R^2 against the noise-free target on a fine grid; `coverage`: fraction of
    test points within two ensemble standard deviations, ensembles only) and
    `"_curves"` with the test grid, truth, data and the predictions for plotting.
    """
    if target not in TARGETS:
        raise ValueError(
            f"sciml.ensemble: unknown regression target {target!r}; choose one of "
            f"{sorted(TARGETS)}."
        )
    fn, (lo, hi) = TARGETS[target]
    k_data, k_noise, k_init, k_fit = jax.random.split(jax.random.key(seed), 4)
    x = jax.random.uniform(k_data, (setup.n_data, 1), minval=lo, maxval=hi)
    y = fn(x[:, 0]) + setup.noise * jax.random.normal(k_noise, (setup.n_data,))
    x_test = jnp.linspace(lo, hi, 400)[:, None]
    y_test = fn(x_test[:, 0])
    budget = setup.members * setup.passes * setup.n_data

    def residual(m, batch, *, key):
        xb, yb = batch
        return (jax.vmap(m)(xb) - yb) / setup.noise

    def mse(m, batch, *, key):
        xb, yb = batch
        return jnp.mean((jax.vmap(m)(xb) - yb) ** 2)

    def evaluate(m):
        return jax.vmap(m)(x_test)

    ensemble = sample(lambda k: _network(k, setup), setup.members, key=k_init)
    out, curves = {}, {"x": x_test[:, 0], "truth": y_test, "x_data": x[:, 0], "y_data": y}
    per_epoch = setup.n_data // setup.enkf_batch
    runs = {
        "ES-MDA": (ESMDA(4), setup.passes, (x, y)),
        # Each datum is seen once per epoch: `epochs` inflates the noise to count it once.
        "EnKF": (EnKF(epochs=setup.passes), setup.passes * per_epoch,
                 Minibatches((x, y), setup.enkf_batch)),
    }
    for name, (method, steps, data) in runs.items():
        t0 = time.perf_counter()
        res = fit(ensemble, residual, method, steps=steps, key=k_fit, data=data,
                  progress=progress)
        pred = predict(evaluate, res.model)
        jax.block_until_ready(pred.mean)
        wall = time.perf_counter() - t0
        rmse, r2 = _metrics(pred.mean, y_test)
        inside = np.abs(np.asarray(pred.mean - y_test)) <= 2 * np.asarray(pred.std)
        out[name] = dict(rmse=rmse, r2=r2, time=wall, forward_evals=budget,
                         coverage=float(inside.mean()), mean_std=float(pred.std.mean()),
                         steps=steps, members=setup.members)
        curves[name] = (np.asarray(pred.mean), np.asarray(pred.std))
    # Adam: one network (member 0's initialisation), same budget of forward evaluations.
    single = jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, ensemble)
    adam_steps = budget // setup.n_data
    t0 = time.perf_counter()
    res = fit(single, mse, optax.adam(setup.adam_lr), steps=adam_steps, key=k_fit,
              data=(x, y), progress=progress)
    pred = evaluate(res.model)
    jax.block_until_ready(pred)
    wall = time.perf_counter() - t0
    rmse, r2 = _metrics(pred, y_test)
    out["Adam"] = dict(rmse=rmse, r2=r2, time=wall, forward_evals=budget, steps=adam_steps,
                       members=1)
    curves["Adam"] = (np.asarray(pred), None)
    out["_curves"] = curves
    return out


def plot(result: dict, path, title: str) -> None:
    """Predictions of every method with the ensembles' two-sigma bands."""
    from .. import plot as _plot

    c = result["_curves"]
    fig, ax = _plot.figure(figsize=(7, 4))
    ax.plot(c["x_data"], c["y_data"], ".", color="0.6", ms=3, label="data")
    ax.plot(c["x"], c["truth"], "k-", lw=1, label="truth")
    for name, colour in (("ES-MDA", "C0"), ("EnKF", "C1"), ("Adam", "C2")):
        mean, std = c[name]
        label = f"{name} (RMSE {result[name]['rmse']:.3f})"
        ax.plot(c["x"], mean, color=colour, lw=1.5, label=label)
        if std is not None:
            ax.fill_between(c["x"], mean - 2 * std, mean + 2 * std, color=colour, alpha=0.2)
    ax.set_title(title)
    ax.legend(fontsize=8)
    _plot.save(fig, path)


def run_regression_problem(target: str, options) -> dict:
    """The `ensemble-<target>` problems (sizes from `options`)."""
    setup = RegressionSetup()
    if options.quick:
        setup = dataclasses.replace(setup, members=48, passes=12, n_data=100)
    if options.steps is not None:
        setup = dataclasses.replace(setup, passes=max(4, 4 * (options.steps // 4)))
    result = compare(target, setup, seed=options.seed, progress=options.progress)
    plot(result, options.out / f"ensemble_{target}.png", f"{target}: ES-MDA, EnKF, Adam")
    return {k: v for k, v in result.items() if k != "_curves"}


def shortfall(metrics: dict, *, rmse_factor: float = 1.6, coverage: float = 0.9) -> list[str]:
    """What a run of the `ensemble-<target>` problems falls short of, from its metrics.

    The methods' effect: both ensembles reach test RMSEs close to Adam's at the same
    budget of forward evaluations, and their spread covers the errors. At full size
    (benchmarks/RESULTS.md, "EnKF over several epochs") the ensembles' RMSEs were
    0.72x-1.51x Adam's and their two-sigma coverage 0.97-1.00.

    **Arguments:**

    - `metrics`: the problem's metrics (`{method: {"rmse", "coverage", ...}}`).
    - `rmse_factor`: largest ensemble RMSE, as a multiple of Adam's, that shows it.
    - `coverage`: smallest two-sigma coverage that shows it.

    **Returns:**

    One phrase per shortfall (empty: the run shows the effect).
    """
    adam = metrics["Adam"]["rmse"]
    found = []
    for name in ("ES-MDA", "EnKF"):
        m = metrics[name]
        if m["rmse"] > rmse_factor * adam:
            found.append(f"{name}'s test RMSE {m['rmse']:.3g} is {m['rmse'] / adam:.1f}x "
                         f"Adam's {adam:.3g}")
        if m["coverage"] < coverage:
            found.append(f"{name}'s two-sigma band covers {m['coverage']:.0%} of the errors")
    return found


def size_note(metrics: dict, full: str) -> str | None:
    """The `ensemble-<target>` problems' report note when a run misses the effect.

    **Arguments:**

    - `metrics`: the problem's metrics.
    - `full`: the full run's recorded figures, as a phrase.

    **Returns:**

    The note (the runner adds the full-size command and RESULTS_SECTION), or None when
    the run shows the effect.
    """
    found = shortfall(metrics)
    if not found:
        return None
    members, passes = metrics["ES-MDA"]["members"], metrics["ES-MDA"]["steps"]
    return (f"{'; '.join(found)}: with {members} members over {passes} passes the "
            f"ensembles are not converged yet. The full run (100 members, 40 passes; mean "
            f"of seeds 0-2) gives {full}.")
