"""KINN benchmark 'g' (Gusmão et al. 2022): recover ln k from synthetic transients."""

import jax

import sciml.cli
import sciml.kinetics as kin
from sciml.kinetics._problems import run_case


NAME = "kinetics-g"
MECHANISM = "g"


def run(options: sciml.cli.RunOptions) -> dict:
    jax.config.update("jax_enable_x64", True)  # a script may choose float64 (stiff kinetics)
    scenarios = ("Q+n",) if MECHANISM == "g" else ("SQ+n",)
    estimators = {"direct": kin.DirectFit()}
    if not options.quick:
        scenarios = ("Q", "Q+n") if MECHANISM == "g" else ("Q", "SQ", "SQ+n")
        steps = options.steps_or(3000)
        estimators.update(
            esmda=kin.ESMDA(n_members=150),
            kinn=kin.KINN(steps_per_stage=steps, progress=options.progress),
        )
    metrics = {}
    for scenario in scenarios:
        for label, est in estimators.items():
            m = run_case(MECHANISM, scenario, est, seed=options.seed, out=options.out)
            metrics[f"{scenario}/{label}"] = {k: v for k, v in m.items() if k != "paper"}
            metrics[f"{scenario}/paper"] = m["paper"]
    return metrics


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
