"""Microkinetic inverse problems beside the KINN paper's Table 5.

For each mechanism (g, da, dc, dcs), scenario (Q, SQ, SQ+n; g: Q, Q+n) and estimator
(direct ODE fit, ES-MDA, KINN surrogate): MAE of ln k per reaction group, correlation
rho of fitted vs true ln k, the uncertainty check (fraction of constants within 2
reported std) and wall time on this machine, next to the paper's figures.

    python benchmarks/kinetics.py [--mechanisms g da dc dcs] [--estimators direct esmda kinn]
                                  [--kinn-steps 3000] [--kinn-alphas 1 10 ...]
                                  [--kinn-lm-steps 300] [--kinn-seeds 1] [--kinn-polish]
                                  [--markdown benchmarks/kinetics.md]
"""

import argparse
import sys

import jax


jax.config.update("jax_enable_x64", True)

import sciml.kinetics as kin  # noqa: E402
from sciml.kinetics._problems import run_case  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mechanisms", nargs="+", default=["g", "da", "dc", "dcs"])
    p.add_argument("--scenarios", nargs="+", default=None)
    p.add_argument("--estimators", nargs="+", default=["direct", "esmda", "kinn"])
    p.add_argument("--kinn-steps", type=int, default=3000)
    p.add_argument(
        "--kinn-alphas", type=float, nargs="+", default=None,
        help="KINN's Adam-stage data weights (default: 1 to 1000; to 100 on noisy data)",
    )
    p.add_argument(
        "--kinn-lm-steps", type=int, default=None,
        help="KINN's Levenberg-Marquardt steps (default: KINN's own, 300; 0 = Adam + L-BFGS only)",
    )
    p.add_argument(
        "--kinn-seeds", type=int, default=1,
        help="KINN fits per cell from different network seeds (mean and spread)",
    )
    p.add_argument(
        "--kinn-polish", action="store_true",
        help="KINN(polish=True): refine the surrogate's constants by the ODE-constrained fit",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", default=None)
    args = p.parse_args(argv)
    makers = {
        "direct": lambda: kin.DirectFit(),
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
        "| ODE RMSE at surrogate's k | wall (s) | paper (MAE by group, rho) |"
    )
    print(header)
    rows.append(header)
    rows.append("|" + "---|" * 11)
    for name in args.mechanisms:
        scenarios = args.scenarios or (["Q", "Q+n"] if name == "g" else ["Q", "SQ", "SQ+n"])
        for scen in scenarios:
            for method in args.estimators:
                m = run_case(name, scen, makers[method](), seed=args.seed)
                label = "kinn+ode" if method == "kinn" and args.kinn_polish else method
                groups = ", ".join(f"{k[4:]} {v:.3g}" for k, v in m.items() if k.startswith("mae_"))
                paper = m["paper"]
                paper_txt = ", ".join(f"{k} {v:.3g}" for k, v in paper.items()) if paper else "-"
                row = (
                    f"| {name} | {scen} | {label} | {groups} | {m.get('rho', float('nan')):.3f} | "
                    f"{m['covered']:.2f} | {m['max_log_std']:.3g} | {m['data_rmse']:.3g} | "
                    f"{m.get('ode_data_rmse', float('nan')):.3g} | {m['wall_time_s']:.1f} | "
                    f"{paper_txt} |"
                )
                print(row, flush=True)
                rows.append(row)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
