"""Microkinetic inverse problems beside the KINN paper's Table 5.

For each mechanism (g, da, dc, dcs), scenario (Q, SQ, SQ+n; g: Q, Q+n) and estimator
(direct ODE fit, ES-MDA, KINN surrogate): MAE of ln k per reaction group, correlation
rho of fitted vs true ln k, the uncertainty check (fraction of constants within 2
reported std) and wall time on this machine, next to the paper's figures and, for noisy
cells, the Cramér-Rao floor (`kx.information_floor`: the mean |error| of an
efficient unbiased estimator under that noise).

    python benchmarks/kinetics.py [--mechanisms g da dc dcs] [--estimators direct esmda kinn]
                                  [--kinn-steps 3000] [--kinn-alphas 1 10 ...]
                                  [--kinn-lm-steps 300] [--kinn-seeds 1]
                                  [--kinn-polish [auto|always|never]] [--direct-starts 4]
                                  [--seed 0] [--noise-draws 1]
                                  [--markdown benchmarks/kinetics.md]
"""

import argparse
import sys

import jax
import numpy as np


jax.config.update("jax_enable_x64", True)

import sciml.experiments.kinetics as kx  # noqa: E402
import sciml.kinetics as kin  # noqa: E402
from sciml.experiments.kinetics import run_case  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mechanisms", nargs="+", default=["g", "da", "dc", "dcs"])
    p.add_argument("--scenarios", nargs="+", default=None)
    p.add_argument("--estimators", nargs="+", default=["direct", "esmda", "kinn"])
    p.add_argument("--kinn-steps", type=int, default=3000)
    p.add_argument(
        "--kinn-alphas",
        type=float,
        nargs="+",
        default=None,
        help="KINN's Adam-stage data weights (default: 1 to 1000; to 100 on noisy data)",
    )
    p.add_argument(
        "--kinn-lm-steps",
        type=int,
        default=None,
        help="KINN's Levenberg-Marquardt steps (default: KINN's own, 300; 0 = Adam + L-BFGS only)",
    )
    p.add_argument(
        "--kinn-seeds",
        type=int,
        default=1,
        help="KINN fits per cell from different network seeds (mean and spread)",
    )
    p.add_argument(
        "--kinn-polish",
        nargs="?",
        const="always",
        default="auto",
        choices=("auto", "always", "never"),
        help="KINN(polish=...): refine the surrogate's constants by the ODE-constrained fit "
        "when the mechanism misfits at them or leaves a constant unidentified (auto, KINN's "
        "default), always (also plain "
        "--kinn-polish) or never (the surrogate alone)",
    )
    p.add_argument(
        "--direct-starts",
        type=int,
        default=None,
        help="DirectFit(n_starts=...): first guesses of the direct fit, the best misfit "
        "kept (default: DirectFit's own, 4)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--noise-draws",
        type=int,
        default=1,
        help="average each cell over this many seeds (noise draws and first guesses) from "
        "--seed on: a single draw of 2-14 constants is far from the mean error",
    )
    p.add_argument("--markdown", default=None)
    args = p.parse_args(argv)
    makers = {
        "direct": lambda: kin.DirectFit(
            **({} if args.direct_starts is None else {"n_starts": args.direct_starts})
        ),
        "esmda": lambda: kin.ESMDA(),
        "kinn": lambda: kin.KINN(
            steps_per_stage=args.kinn_steps,
            **({} if args.kinn_alphas is None else {"alphas": tuple(args.kinn_alphas)}),
            **({} if args.kinn_lm_steps is None else {"lm_steps": args.kinn_lm_steps}),
            n_seeds=args.kinn_seeds,
            polish=args.kinn_polish,
        ),
    }
    rows = []
    header = (
        "| mech | scen | method | MAE by group | rho | within 2 std | max std | data RMSE "
        "| ODE RMSE at surrogate's k | wall (s) | paper (MAE by group, rho) "
        "| Cramér-Rao floor (MAE by group) |"
    )
    print(header)
    rows.append(header)
    rows.append("|" + "---|" * 12)
    for name in args.mechanisms:
        scenarios = args.scenarios or (["Q", "Q+n"] if name == "g" else ["Q", "SQ", "SQ+n"])
        for scen in scenarios:
            # The mean |error| of an efficient unbiased estimator under this noise (0 on
            # noise-free data): how far below it a published figure can honestly be.
            floor = (
                ", ".join(f"{g} {v:.3g}" for g, v in kx.information_floor(name, scen).items())
                if scen.endswith("+n")
                else "0"
            )
            for method in args.estimators:
                draws = [
                    run_case(name, scen, makers[method](), seed=args.seed + d)
                    for d in range(args.noise_draws)
                ]
                m = _mean_metrics(draws)
                # KINN's "auto" polish may refine some draws and not others.
                label = "/".join(dict.fromkeys(d["method"] for d in draws))
                groups = ", ".join(f"{k[4:]} {v:.3g}" for k, v in m.items() if k.startswith("mae_"))
                paper = m["paper"]
                paper_txt = ", ".join(f"{k} {v:.3g}" for k, v in paper.items()) if paper else "-"
                row = (
                    f"| {name} | {scen} | {label} | {groups} | {m.get('rho', float('nan')):.3f} | "
                    f"{m['covered']:.2f} | {m['max_log_std']:.3g} | {m['data_rmse']:.3g} | "
                    f"{m.get('ode_data_rmse', float('nan')):.3g} | {m['wall_time_s']:.1f} | "
                    f"{paper_txt} | {floor} |"
                )
                print(row, flush=True)
                rows.append(row)
                if m.get("unidentified") or m.get("mechanism_misfit"):
                    print(
                        f"  mechanism check: misfit {m['mechanism_misfit']}, unidentified "
                        f"{m['unidentified']}",
                        flush=True,
                    )
                if "polish_start" in m:
                    starts = ", ".join(f"{k} {v:.3g}" for k, v in m["polish_starts"].items())
                    print(
                        f"  polish kept the start '{m['polish_start']}' (data RMSE by start: "
                        f"{starts})",
                        flush=True,
                    )
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(rows) + "\n")
    return 0


def _mean_metrics(draws):
    """One row from several draws: mean errors, coverage and misfit, the largest std,
    the total wall time (a single draw is returned as is)."""
    if len(draws) == 1:
        return draws[0]
    m = dict(draws[0])
    for k, v in draws[0].items():
        if isinstance(v, float):
            m[k] = float(np.mean([d.get(k, np.nan) for d in draws]))
    m["max_log_std"] = max(d["max_log_std"] for d in draws)
    m["wall_time_s"] = sum(d["wall_time_s"] for d in draws)
    m.pop("polish_start", None)
    return m


if __name__ == "__main__":
    sys.exit(main())
