"""Training dynamics: gradient-free ensemble training against Adam, and the Koopman stop rule.

Part 1 (ensemble): ES-MDA, EnKF and Adam on the regressions of Chen et al. (y = sin x
and the Mexican hat), same network, same data, equal budget of forward evaluations
(network evaluations at one data point; Adam's backward passes are extra), several
seeds, side by side in one run. Prints RMSE, R^2, wall time and wall time relative to
Adam, and the ensembles' two-sigma coverage of the truth.

Part 2 (koopman): runs benchmarks/koopman_stop.py (steps saved by the Koopman stop
rule on a PINN, a DeepONet and a NODE, and the monitor's overhead).

    python benchmarks/training_dynamics.py [--quick] [--part ensemble|koopman|all]
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import runpy
import sys

import jax
import numpy as np


def ensemble_part(quick: bool) -> str:
    from sciml.experiments.ensemble import RegressionSetup, compare

    setup = RegressionSetup()
    seeds = (0, 1, 2)
    if quick:
        setup = dataclasses.replace(setup, members=48, passes=12, n_data=100)
        seeds = (0,)
    lines = [
        f"Equal budget: {setup.members} members x {setup.passes} full-data passes x "
        f"{setup.n_data} points = {setup.members * setup.passes * setup.n_data} forward "
        f"evaluations per method; MLP 1-{setup.width}x{setup.depth}-1 tanh; noise std "
        f"{setup.noise}; seeds {list(seeds)} (mean +- sd over seeds).",
        "",
        "| target | method | test RMSE | R^2 | wall s | time / Adam | 2-sigma coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    for target in ("sine", "mexican-hat"):
        rows = {}
        for seed in seeds:
            res = compare(target, setup, seed=seed)
            for name in ("ES-MDA", "EnKF", "Adam"):
                rows.setdefault(name, []).append(res[name])
        adam_time = np.mean([r["time"] for r in rows["Adam"]])
        for name, rs in rows.items():
            rmse = np.array([r["rmse"] for r in rs])
            r2 = np.array([r["r2"] for r in rs])
            t = np.mean([r["time"] for r in rs])
            cov = (
                f"{np.mean([r['coverage'] for r in rs]):.2f}" if "coverage" in rs[0] else "-"
            )
            lines.append(
                f"| {target} | {name} | {rmse.mean():.4f} +- {rmse.std():.4f} | "
                f"{r2.mean():.4f} | {t:.2f} | {t / adam_time:.2f}x | {cov} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=("ensemble", "koopman", "all"), default="all")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", False)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    if args.part in ("ensemble", "all"):
        print("\n## Ensemble training (ES-MDA, EnKF) against Adam\n")
        print(ensemble_part(args.quick), flush=True)
    if args.part in ("koopman", "all"):
        script = pathlib.Path(__file__).with_name("koopman_stop.py")
        print("\n## Koopman stop rule\n", flush=True)
        saved = sys.argv
        sys.argv = [str(script)] + (["--quick"] if args.quick else [])
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as e:
            if e.code not in (0, None):
                return int(e.code)
        finally:
            sys.argv = saved
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
