"""`sciml operator train`: train a DeepONet or an LSSL on DeepXDE-layout npz files.

    sciml operator train --train FILE --test FILE [--model deeponet|lssl]
                         [--steps N] [--seed S] --out DIR

Writes `metrics.json` (test MSE, mean relative L2, wall time), `predictions.npz`
(key `y_pred`, shaped like the test `y`), `predictions.png` and `loss.png`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from collections.abc import Sequence

import numpy as np

from ..cli import _positive_float, _positive_int, _seed


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Operator learning on DeepXDE-layout npz files."
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    t = sub.add_parser(
        "train",
        help="train a DeepONet or an LSSL and evaluate it on a test file",
        description=(
            "Reads DeepXDE npz files (key X = object array (branch, trunk) and y, or "
            "X_train0/X_train1/y_train), in the Triple layout (N, m), (N, d) -> (N, 1) or "
            "the TripleCartesianProd layout (N1, m), (N2, d) -> (N1, N2); trains with "
            "sciml.fit (Adam); writes metrics.json, predictions.npz and plots to --out."
        ),
    )
    t.add_argument("--train", required=True, help="training data (.npz)")
    t.add_argument("--test", required=True, help="test data (.npz)")
    t.add_argument("--model", choices=("deeponet", "lssl"), default="deeponet",
                   help="deeponet (default; any layout) or lssl (aligned data only)")
    t.add_argument("--steps", type=_positive_int, default=10000, help="Adam steps (10000)")
    t.add_argument("--seed", type=_seed, default=0, help="PRNG seed (0)")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (deeponet 1e-3, lssl 3e-3, decayed)")
    t.add_argument("--width", type=_positive_int, default=None,
                   help="hidden width (deeponet 40 = p; lssl 16 features)")
    t.add_argument("--depth", type=_positive_int, default=None,
                   help="hidden layers per net (deeponet 2) or LSSL blocks (lssl 2)")
    t.add_argument("--batch-size", type=_positive_int, default=None,
                   help="functions (cartesian) or rows (triple) per step (default: all)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


class _Refused(Exception):
    pass


def _load(path, what):
    import sciml.data as sd

    try:
        return sd.load_npz(path)
    except ValueError as e:
        raise _Refused(f"--{what}: {e}") from None


def _train(args) -> dict:
    import equinox as eqx
    import jax
    import optax

    import sciml
    import sciml.data as sd
    import sciml.operators as so

    t_start = time.perf_counter()
    train = _load(args.train, "train")
    test = _load(args.test, "test")
    if args.model == "deeponet":
        if train.sensors != test.sensors or train.dim != test.dim:
            raise _Refused(
                f"train and test disagree: {train.sensors} vs {test.sensors} sensors, "
                f"output dimension {train.dim} vs {test.dim}. A DeepONet needs the same "
                "sensors in both files."
            )
        dt_scale = 1.0
    else:
        try:
            h_train = so.check_aligned(train, where="--model lssl (--train)")
            h_test = so.check_aligned(test, where="--model lssl (--test)")
        except ValueError as e:
            raise _Refused(str(e)) from None
        # The continuous view: a test file at another sampling rate runs the same model
        # with the step rescaled.
        dt_scale = h_test / h_train
    train_a, test_a = so.as_arrays(train), so.as_arrays(test)
    key = jax.random.key(args.seed)
    mkey, fkey = jax.random.split(key)
    if args.model == "deeponet":
        width = args.width or 40
        depth = args.depth or 2
        model = so.DeepONet(
            [train.sensors] + [width] * depth, [train.dim] + [width] * depth, key=mkey
        )
        lr = args.lr or 1e-3
    else:
        width = args.width or 16
        depth = args.depth or 2
        model = so.DeepLSSL(
            "scalar", "scalar", features=width, state_size=32, depth=depth,
            lssl_kwargs=dict(init=so.LegS(), dt_min=h_train / 2, dt_max=2 * h_train), key=mkey,
        )
        lr = args.lr or 3e-3
    schedule = optax.exponential_decay(lr, max(args.steps // 4, 1), 0.5)
    size = len(train)
    if args.batch_size is not None and args.batch_size < size:
        data = sd.FunctionBatches(train_a, args.batch_size)
    else:
        data = train_a
    result = sciml.fit(
        model, so.mse_loss, optax.adam(schedule), steps=args.steps, data=data, key=fkey,
        progress=not args.quiet,
    )
    pred = np.asarray(eqx.filter_jit(so.predict)(result.model, test_a, dt_scale=dt_scale))
    test_metrics = so.metrics(pred, test.y)
    train_metrics = so.evaluate(result.model, train_a)
    out = pathlib.Path(args.out)
    np.savez(out / "predictions.npz", y_pred=pred.reshape(np.shape(test.y)).astype(np.float32))
    if isinstance(test, sd.TripleCartesianProd) and test.dim == 1:
        so.plot_predictions(test.trunk[:, 0], test.branch, test.y, {args.model: pred},
                            out / "predictions.png", title=f"{args.model} on {args.test}")
    else:
        _scatter(test.y, pred, out / "predictions.png", args.model)
    sciml.plot.history(result.history, out / "loss.png", title=f"{args.model} training")
    return {
        "model": args.model,
        "test_mse": test_metrics["mse"],
        "test_mean_rel_l2": test_metrics["rel_l2"],
        "train_mse": train_metrics["mse"],
        "layout": type(train).__name__,
        "train_size": size,
        "test_size": len(test),
        "steps": args.steps,
        "seed": args.seed,
        "dt_scale": dt_scale,
        "train_time_s": result.timings["total"],
        "wall_time_s": time.perf_counter() - t_start,
    }


def _scatter(y, pred, path, label):
    import sciml.plot

    y, pred = np.ravel(y), np.ravel(pred)
    fig, ax = sciml.plot.figure(figsize=(4.5, 4.5))
    ax.plot(y, pred, ".", ms=2, alpha=0.5, label=label)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k-", lw=1)
    ax.set_xlabel("reference")
    ax.set_ylabel("prediction")
    ax.legend()
    sciml.plot.save(fig, path)


def main(argv: Sequence[str] | None = None, prog: str = "sciml operator") -> int:
    """Entry point of `sciml operator ...`; returns the exit status."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        parser.exit(2, f"{prog}: error: --out {args.out!r} exists and is not a directory.\n")
    for what in ("train", "test"):
        if not pathlib.Path(getattr(args, what)).is_file():
            parser.exit(2, f"{prog}: error: --{what} {getattr(args, what)!r}: no such file.\n")
    out.mkdir(parents=True, exist_ok=True)
    try:
        metrics = _train(args)
    except _Refused as e:
        parser.exit(2, f"{prog}: error: {e}\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(
        f"{args.model}: test MSE {metrics['test_mse']:.3g}, mean relative L2 "
        f"{metrics['test_mean_rel_l2']:.3g}, {metrics['wall_time_s']:.1f} s; wrote {out}/"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
