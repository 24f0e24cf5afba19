"""Solver-heuristic regularisation of neural ODEs (Pal et al., ICML 2021), side by side.

Digits (sklearn 8x8; 64->100->64 tanh dynamics with time input, linear head, Tsit5 at
rtol = atol = 1.4e-8, float64, Adam 3e-3, batch 128, 20 epochs): vanilla, ERNODE,
SRNODE, RNODE and TayNODE, for each seed, all in one run. Spiral ODE: vanilla against
ERNODE. Prints the table (and writes it as markdown with --out) with the ratios the
issue asks for:

- ERNODE prediction NFE <= 0.6x vanilla at test accuracy >= vanilla - 1 point;
- ERNODE training wall time <= 1.1x vanilla;
- spiral: NFE at least 30 % lower at MSE within 10 % of vanilla.

    python benchmarks/node_regularisation.py [--seeds 0 1] [--epochs 20] [--lock FILE]

`--lock FILE` holds an exclusive flock on FILE around each training run, so that runs
sharing a machine are timed one at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import pathlib
import sys

import jax


jax.config.update("jax_enable_x64", True)


import jax.numpy as jnp  # noqa: E402

import sciml.experiments.node as node  # noqa: E402
import sciml.ode as so  # noqa: E402
from sciml.experiments.node import SPIRAL_A  # noqa: E402


def _lock(path):
    @contextlib.contextmanager
    def hold():
        if path is None:
            yield
            return
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return hold


def digits(seeds, epochs, lock, methods=None, on_row=None):
    data = node.load_digits_split()
    # Warm-up: the first fit of a process pays one-time costs that would bias the
    # timing of whichever method runs first.
    with lock():
        node.train_digits(node.Method("warm-up", None), steps=2, tol=1e-5, data=data)
    methods = methods or node.paper_methods()
    # Vanilla and ERNODE (the criteria) for every seed first, then the rest.
    order = [(s, m) for s in seeds for m in methods[:2]]
    order += [(s, m) for s in seeds for m in methods[2:]]
    rows = []
    for seed, m in order:
        r = node.train_digits(m, seed=seed, epochs=epochs, data=data, lock=lock)
        r = {k: v for k, v in r.items() if k not in ("history", "model")}
        rows.append(r)
        print(
            f"digits seed {seed} {m.name:8s} acc {100 * r['test_accuracy']:.2f}% "
            f"NFE {r['test_nfe']:4d} train {r['train_s']:.1f}s "
            f"(compile {r['compile_s']:.1f}s) predict {1e3 * r['predict_s']:.1f}ms",
            flush=True,
        )
        if on_row is not None:
            on_row(rows)
    return rows


def spiral_methods(steps, sweep):
    import optax

    er, sr = so.ErrorEstimateRegulariser, so.StiffnessRegulariser
    methods = [
        node.Method("vanilla", None),
        node.Method("ernode", er(optax.exponential_decay(0.1, steps, 0.1))),
    ]
    if sweep:
        # The trade-off curve: constant weights of each regulariser and their sum.
        methods += [
            node.Method("er 0.01", er(0.01)),
            node.Method("er 0.03", er(0.03)),
            node.Method("er 0.1", er(0.1)),
            node.Method("sr 0.01", sr(0.01, form="sum")),
            node.Method("er+sr 0.03", (er(0.03), sr(0.03, form="sum"))),
            # Annealed to zero over the run, so the last steps fit the data alone.
            node.Method("er 0.01->0", er(optax.linear_schedule(0.01, 0.0, steps))),
            node.Method("er 0.03->0", er(optax.linear_schedule(0.03, 0.0, steps))),
        ]
    return methods


def true_field_nfe(data, tol=1e-7):
    """NFE of the true spiral field under the training solver (MSE 0 by definition)."""
    import diffrax

    ts, ys = data
    a = jnp.asarray(SPIRAL_A, ys.dtype)
    node = so.NeuralODE(
        lambda t, u, args: a @ u**3,
        stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
        t0=0.0,
        t1=float(ts[-1]),
    )
    _, stats = node(ys[0], ts, regularise=False)
    return int(stats["nfe"])


def time_only_field(data, tol=1e-7):
    """NFE and MSE of `u' = g(t)`, `g(t) = A u*(t)³` along the exact solution `u*`.

    It has the same trajectory as the true field (so it fits the data to the reference
    solve's accuracy) but no dependence on `u`, so the solver's error estimate sees other
    elementary differentials: what a solver costs is a property of the field, not of the
    trajectory alone. `u*` is a Dopri8 solve at rtol = atol = 1e-13, evaluated densely.
    """
    import diffrax

    ts, ys = data
    a = jnp.asarray(SPIRAL_A, ys.dtype)
    ref = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, u, args: a @ u**3),
        diffrax.Dopri8(),
        0.0,
        float(ts[-1]),
        None,
        ys[0],
        saveat=diffrax.SaveAt(dense=True),
        stepsize_controller=diffrax.PIDController(rtol=1e-13, atol=1e-13),
        max_steps=100_000,
    )
    node = so.NeuralODE(
        lambda t, u, args: a @ ref.evaluate(t) ** 3,
        stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
        t0=0.0,
        t1=float(ts[-1]),
    )
    pred, stats = node(ys[0], ts, regularise=False)
    return int(stats["nfe"]), float(jnp.mean((pred - ys) ** 2))


# Rows that are fields written down, not fits: no pass/fail check.
_REFERENCE_ROWS = ("true field", "time-only field, same trajectory")


def spiral(steps, lock, seeds=(0,), lr=1e-2, sweep=False, time_input=False):
    data = node.spiral_data()
    rows = []
    truth = true_field_nfe(data)
    quad_nfe, quad_mse = time_only_field(data)
    print(
        f"spiral: the true field costs {truth} NFE at tol 1e-7; u' = A u*(t)^3 along the "
        f"same trajectory {quad_nfe} NFE (MSE {quad_mse:.1e})",
        flush=True,
    )
    for seed in seeds:
        rows.append(
            {"method": "true field", "seed": seed, "mse": 0.0, "nfe": truth, "train_s": 0.0}
        )
        rows.append(
            {
                "method": _REFERENCE_ROWS[1],
                "seed": seed,
                "mse": quad_mse,
                "nfe": quad_nfe,
                "train_s": 0.0,
            }
        )
        for m in spiral_methods(steps, sweep):
            with lock():
                field = so.CubicField(2, 50, time_input=time_input, key=jax.random.key(seed))
                r = node.train_spiral(m, seed=seed, steps=steps, lr=lr, data=data, field=field)
            r = {k: v for k, v in r.items() if k not in ("history", "model", "ys")}
            rows.append(r)
            print(
                f"spiral seed {seed} {m.name:10s} MSE {r['mse']:.4g} NFE {r['nfe']} "
                f"train {r['train_s']:.1f}s",
                flush=True,
            )
    return rows


def table(digit_rows, spiral_rows) -> str:
    lines = (
        [
            "| seed | method | test acc % | pred. NFE | NFE / vanilla | train s | train / vanilla "
            "| pred. ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        if digit_rows
        else []
    )
    checks = []
    for seed in sorted({r["seed"] for r in digit_rows}):
        rs = [r for r in digit_rows if r["seed"] == seed]
        base = next(r for r in rs if r["method"] == "vanilla")
        for r in rs:
            nfe_ratio = r["test_nfe"] / base["test_nfe"]
            time_ratio = r["train_s"] / base["train_s"]
            lines.append(
                f"| {seed} | {r['method']} | {100 * r['test_accuracy']:.2f} | {r['test_nfe']} | "
                f"{nfe_ratio:.2f} | {r['train_s']:.1f} | {time_ratio:.2f} | "
                f"{1e3 * r['predict_s']:.1f} |"
            )
            if r["method"] == "ernode":
                acc_ok = r["test_accuracy"] >= base["test_accuracy"] - 0.01
                checks.append(
                    f"seed {seed}: ERNODE NFE ratio {nfe_ratio:.2f} (<= 0.6: "
                    f"{'yes' if nfe_ratio <= 0.6 else 'NO'}), accuracy "
                    f"{100 * r['test_accuracy']:.2f} vs {100 * base['test_accuracy']:.2f} "
                    f"(>= vanilla - 1: {'yes' if acc_ok else 'NO'}), train-time ratio "
                    f"{time_ratio:.2f} (<= 1.1: {'yes' if time_ratio <= 1.1 else 'NO'})"
                )
    if spiral_rows:
        lines += [""] if lines else []
        lines += [
            "| seed | spiral | MSE | NFE | NFE / vanilla | MSE / vanilla | train s |",
            "|---|---|---|---|---|---|---|",
        ]
        for seed in sorted({r["seed"] for r in spiral_rows}):
            rs = [r for r in spiral_rows if r["seed"] == seed]
            base = next(r for r in rs if r["method"] == "vanilla")
            for r in rs:
                lines.append(
                    f"| {seed} | {r['method']} | {r['mse']:.4g} | {r['nfe']} | "
                    f"{r['nfe'] / base['nfe']:.2f} | {r['mse'] / base['mse']:.2f} | "
                    f"{r['train_s']:.1f} |"
                )
                if r["method"] != "vanilla" and r["method"] not in _REFERENCE_ROWS:
                    ok = r["nfe"] <= 0.7 * base["nfe"] and r["mse"] <= 1.1 * base["mse"]
                    checks.append(
                        f"spiral seed {seed}: {r['method']} NFE ratio "
                        f"{r['nfe'] / base['nfe']:.2f}, MSE ratio {r['mse'] / base['mse']:.2f} "
                        f"(NFE -30 % at MSE within 10 %: {'yes' if ok else 'NO'})"
                    )
    if spiral_rows and len({r["seed"] for r in spiral_rows}) > 1:
        lines += ["", *_spiral_medians(spiral_rows)]
    return "\n".join(lines + [""] + [f"- {c}" for c in checks]) + "\n"


def _spiral_medians(rows):
    """Per method, the median over seeds of its NFE and MSE ratios to that seed's
    vanilla: vanilla's own MSE spreads ~5x across seeds, so one seed decides little."""
    import numpy as np

    base = {r["seed"]: r for r in rows if r["method"] == "vanilla"}
    methods = [r["method"] for r in rows if r["seed"] == rows[0]["seed"]]
    out = [
        "| spiral, median over seeds | seeds | NFE / vanilla | MSE / vanilla | both targets |",
        "|---|---|---|---|---|",
    ]
    for name in methods:
        if name == "vanilla" or name in _REFERENCE_ROWS:
            continue
        rs = [r for r in rows if r["method"] == name]
        nfe = float(np.median([r["nfe"] / base[r["seed"]]["nfe"] for r in rs]))
        mse = float(np.median([r["mse"] / base[r["seed"]]["mse"] for r in rs]))
        ok = nfe <= 0.7 and mse <= 1.1
        out.append(f"| {name} | {len(rs)} | {nfe:.2f} | {mse:.2f} | {'yes' if ok else 'no'} |")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--spiral-steps", type=int, default=500)
    p.add_argument("--spiral-lr", type=float, default=1e-2)
    p.add_argument(
        "--spiral-sweep",
        action="store_true",
        help="also constant-weight ER, SR and ER+SR and ER annealed to zero on the spiral "
        "(the trade-off curve; with several --seeds, the medians over seeds)",
    )
    p.add_argument(
        "--spiral-time-input",
        action="store_true",
        help="spiral field of (t, u^3) instead of u^3 alone, for every method",
    )
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--skip-spiral", action="store_true")
    p.add_argument("--lock", default=None, help="file to flock around each training run")
    p.add_argument("--out", default=None, help="write the markdown table here")
    args = p.parse_args(argv)
    if args.epochs <= 0 or args.spiral_steps <= 0:
        p.error("--epochs and --spiral-steps must be positive")
    lock = _lock(args.lock)

    def write(digit_rows, spiral_rows):
        text = table(digit_rows, spiral_rows)
        if args.out:
            pathlib.Path(args.out).write_text(
                f"# node_regularisation\n\n`python {' '.join(sys.argv)}`\n\n{text}"
            )
        return text

    digit_rows = (
        []
        if args.skip_digits
        else digits(args.seeds, args.epochs, lock, on_row=lambda rows: write(rows, []))
    )
    spiral_rows = (
        []
        if args.skip_spiral
        else spiral(
            args.spiral_steps,
            lock,
            seeds=args.seeds,
            lr=args.spiral_lr,
            sweep=args.spiral_sweep,
            time_input=args.spiral_time_input,
        )
    )
    print(write(digit_rows, spiral_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
