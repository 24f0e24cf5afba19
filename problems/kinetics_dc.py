"""KINN benchmark 'dc' (Gusmão et al. 2022): recover ln k from synthetic transients."""

import sciml.cli
from sciml.experiments.kinetics import run_benchmark_problem


NAME = "kinetics-dc"


def run(options: sciml.cli.RunOptions) -> dict:
    return run_benchmark_problem("dc", options)


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
