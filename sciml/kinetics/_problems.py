"""Shared body of the `kinetics-*` problem scripts and of benchmarks/kinetics.py."""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np

from ._benchmarks import BENCHMARKS, score, synthetic_observations


def run_case(name: str, scenario: str, estimator, *, seed: int = 0, out=None) -> dict:
    """Fits benchmark `name` under `scenario` with `estimator` from the paper's protocol
    (first guess ln k = true + N(0, 1), noise key fixed by `seed`); returns the Table-5
    figures, wall time and, if `out` is given, writes a parity and an ln k plot there."""
    key = jax.random.key(seed)
    knoise, kfit = jax.random.split(key)
    mech, obs, true_log_k = synthetic_observations(name, scenario, key=knoise)
    rng = np.random.default_rng(seed + 1)
    init = true_log_k + rng.normal(size=true_log_k.shape)
    t0 = time.perf_counter()
    est = estimator.estimate(mech, obs, key=kfit, init_log_k=init)
    wall = time.perf_counter() - t0
    metrics = score(est, true_log_k, mech)
    metrics["method"] = est.method
    metrics["wall_time_s"] = wall
    metrics["data_rmse"] = est.diagnostics["data_rmse"]
    if "ode_data_rmse" in est.diagnostics:  # KINN: the mechanism at the surrogate's constants
        metrics["ode_data_rmse"] = est.diagnostics["ode_data_rmse"]
        metrics["mechanism_misfit"] = bool(est.diagnostics["mechanism_misfit"])
        metrics["unidentified"] = list(est.diagnostics["unidentified"])
    if "polish_start" in est.diagnostics:  # KINN polished: which start won
        metrics["polish_start"] = est.diagnostics["polish_start"]
        metrics["polish_starts"] = dict(est.diagnostics["polish_starts"])
    # The paper's only noisy g case is gas-only with noise (g has no surface).
    table_key = "SQ+n" if name == "g" and scenario.endswith("+n") else scenario
    metrics["paper"] = BENCHMARKS[name].table5.get(table_key, {})
    if out is not None:
        plot_estimate(pathlib.Path(out), f"{name}-{scenario}-{est.method}", est, true_log_k)
    return metrics


def plot_estimate(out: pathlib.Path, tag: str, est, true_log_k) -> None:
    from .. import plot

    fig, ax = plot.figure(figsize=(5, 4.5))
    lo = min(np.min(true_log_k), np.min(est.log_k)) - 1
    hi = max(np.max(true_log_k), np.max(est.log_k)) + 1
    ax.errorbar(
        true_log_k, est.log_k, yerr=2 * np.minimum(est.log_std, 50), fmt="o", ms=4, capsize=2
    )
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("true ln k")
    ax.set_ylabel("fitted ln k (+- 2 std)")
    ax.set_title(tag)
    plot.save(fig, out / f"{tag}-lnk.png")


def run_benchmark_problem(mechanism: str, options) -> dict:
    """The `kinetics-<mechanism>` problems: the paper's scenarios and estimators.

    `--quick` runs the direct fit on the noisy scenario only; a full run adds ES-MDA and
    KINN and the noise-free scenarios. Float64 is switched on for the run (stiff
    kinetics); `sciml run` restores the setting afterwards.
    """
    import sciml.kinetics as kin

    jax.config.update("jax_enable_x64", True)
    scenarios = ("Q+n",) if mechanism == "g" else ("SQ+n",)
    estimators = {"direct": kin.DirectFit()}
    if not options.quick:
        scenarios = ("Q", "Q+n") if mechanism == "g" else ("Q", "SQ", "SQ+n")
        steps = options.steps_or(3000)
        estimators.update(
            esmda=kin.ESMDA(),
            kinn=kin.KINN(steps_per_stage=steps, progress=options.progress),
        )
    metrics = {}
    for scenario in scenarios:
        for label, est in estimators.items():
            m = run_case(mechanism, scenario, est, seed=options.seed, out=options.out)
            metrics[f"{scenario}/{label}"] = {k: v for k, v in m.items() if k != "paper"}
            metrics[f"{scenario}/paper"] = m["paper"]
    return metrics
