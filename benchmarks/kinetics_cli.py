"""`sciml kinetics fit` as a user runs it, on a mechanism no test names.

A 4-step mechanism (A + B -> C, C -> D, D -> A + E, E + B -> F), two experiments of 60
times, every species observed with Gaussian noise of std 0.01 (so the species near zero
get negative readings). The files are written by `sciml kinetics simulate` plus the
noise; the fit runs as a fresh `sciml kinetics fit` process (start-up and compilation
included) with the method's defaults. Printed: wall time, ln k error against the true
constants, the reported std beside the Cramér-Rao std (`sciml.kinetics.cramer_rao`).

    python benchmarks/kinetics_cli.py [--methods default esmda kinn] [--seed 0]
                                      [--keep DIR]
"""

import argparse
import csv
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np


jax.config.update("jax_enable_x64", True)

import sciml.kinetics as kin  # noqa: E402


MECHANISM = """\
A + B -> C ; k1
C -> D ; k2
D -> A + E ; k3
E + B -> F ; k4
"""
RATES = {"k1": 2.0, "k2": 0.8, "k3": 1.5, "k4": 0.5}
INITIAL = {"run1": {"A": 1.0, "B": 1.0}, "run2": {"A": 0.6, "B": 1.2, "C": 0.3}}
T_END, N_TIMES, SIGMA = 8.0, 60, 0.01


def _sciml(*argv):
    """Runs the `sciml` command in a fresh process; returns its wall time in seconds."""
    cmd = [sys.executable, "-m", "sciml.cli", *map(str, argv)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return wall


def write_case(d: pathlib.Path, seed: int):
    """M.txt, R.json, I.csv and the noisy D.csv in `d`; returns the clean and noisy rows."""
    mech = kin.Mechanism.from_text(MECHANISM)
    (d / "M.txt").write_text(MECHANISM)
    (d / "R.json").write_text(json.dumps(RATES))
    with open(d / "I.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", *mech.species])
        for name, x in INITIAL.items():
            w.writerow([name, *(x.get(s, 0.0) for s in mech.species)])
    _sciml(
        "kinetics",
        "simulate",
        "--mechanism",
        d / "M.txt",
        "--rates",
        d / "R.json",
        "--initial",
        d / "I.csv",
        "--t-end",
        T_END,
        "--points",
        N_TIMES + 1,
        "--out",
        d / "S.csv",
        "--force",
    )
    with open(d / "S.csv") as f:
        rows = [r for r in csv.DictReader(f) if float(r["t"]) > 0]
    rng = np.random.default_rng(seed)
    clean = np.array([[float(r[s]) for s in mech.species] for r in rows])
    noisy = clean + SIGMA * rng.standard_normal(clean.shape)
    with open(d / "D.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "t", *mech.species])
        for r, y in zip(rows, noisy):
            w.writerow([r["experiment"], r["t"], *(repr(float(v)) for v in y)])
    return mech, rows, noisy


def cramer_rao_std(mech, rows):
    """The Cramér-Rao std of ln k for this design at the true constants."""
    names = list(INITIAL)
    t = np.array([[0.0] + [float(r["t"]) for r in rows if r["experiment"] == e] for e in names])
    values = np.zeros(t.shape + (mech.n_species,))
    values[:, 0] = np.nan  # t = 0 is the initial state, not a measurement
    x0 = np.array([[INITIAL[e].get(s, 0.0) for s in mech.species] for e in names])
    obs = kin.Observations.make(mech, t, values, x0, species=mech.species, noise_std=SIGMA)
    log_k = np.log([RATES[c] for c in mech.constants])
    return np.sqrt(np.diag(kin.cramer_rao(mech, obs, log_k)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["default"])
    p.add_argument("--seed", type=int, default=0, help="noise draw")
    p.add_argument("--keep", default=None, help="write the files and results here")
    args = p.parse_args(argv)
    d = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="kinetics_cli_"))
    d.mkdir(parents=True, exist_ok=True)
    mech, rows, noisy = write_case(d, args.seed)
    print(f"{len(rows)} rows, {int(np.sum(noisy < 0))} negative readings (min {noisy.min():.4f})")
    cr = cramer_rao_std(mech, rows)
    truth = np.log([RATES[c] for c in mech.constants])
    print(
        "| method | wall (s) | ln k MAE | ln k error | reported std | Cramér-Rao std "
        "| within 2 std |"
    )
    print("|---|---|---|---|---|---|---|")
    for method in args.methods:
        out = d / f"fit-{method}"
        extra = [] if method == "default" else ["--method", method]
        wall = _sciml(
            "kinetics",
            "fit",
            "--mechanism",
            d / "M.txt",
            "--data",
            d / "D.csv",
            "--initial",
            d / "I.csv",
            *extra,
            "--out",
            out,
            "--force",
        )
        est = json.loads((out / "estimates.json").read_text())
        err = np.log([est[c]["value"] for c in mech.constants]) - truth
        std = np.array([est[c]["log_std"] for c in mech.constants])
        ran = (out / "report.md").read_text().split("- method: ", 1)[1].split(",", 1)[0]
        fmt = lambda v: ", ".join(f"{x:.3g}" for x in v)  # noqa: E731
        print(
            f"| {method} ({ran}) | {wall:.1f} | {np.mean(np.abs(err)):.4f} | {fmt(err)} | "
            f"{fmt(std)} | {fmt(cr)} | {np.mean(np.abs(err) <= 2 * std):.2f} |"
        )


if __name__ == "__main__":
    main()
