"""Gradient-free training (Chen et al.): ES-MDA, EnKF and Adam on the sine regression."""

import sciml.cli
from sciml.experiments.ensemble import run_regression_problem


NAME = "ensemble-sine"


def run(options: sciml.cli.RunOptions) -> dict:
    return run_regression_problem("sine", options)


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
