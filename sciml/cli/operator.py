"""`sciml operator train`: train a DeepONet, an FNO or an LSSL on operator-data npz files.

    sciml operator train --train FILE --test FILE [--model deeponet|fno|lssl]
                         [--steps N] [--seed S] [--allow-pickle] --out DIR [--force]

The FNO reads aligned 1-D files (every function on one equispaced grid, the output
points that grid) or 2-D fields: an npz with `X_branch` and `y` both `(N, nx, ny)` on
one grid of the unit square; training and test files may differ in resolution. Every
model also reads PDEBench's HDF5 files (`sciml.data.load_pdebench`: first snapshot to
last, or Darcy's `nu` to `tensor`; needs the `hdf5` extra), recognised by their
signature whatever their name.

Writes `metrics.json` (test MSE, mean relative L2, steps/s, wall time),
`predictions.npz` (key `y_pred`, shaped like the test `y`), `predictions.png` and
`loss.png`. Every input file and `--out` are checked before any training; a refused run
creates nothing. An output never replaces an input, and replaces an earlier result only
with `--force`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import zipfile
from collections.abc import Sequence

import numpy as np

from ._validators import (
    CLIError,
    check_out_dir,
    first_missing,
    positive_float,
    positive_int,
    prng_seed,
    refuse_earlier_results,
    remove_if_empty,
    step_count,
)


_OUTPUTS = ("metrics.json", "predictions.npz", "predictions.png", "loss.png")
# Functions per step of an LSSL unless --batch-size says otherwise. On a 2-core CPU,
# batches of 100 ran 7x the steps per second of full batches of 1000 functions, and
# with the learning rate 1e-2 (3e-3 for full batches) reached the same test error in
# the same number of steps (benchmarks/RESULTS.md, issue 25).
_LSSL_BATCH = 100
# The FNO paper's batch size and modes (16 in 1-D, 12 per axis in 2-D), widths 64 / 32.
_FNO_BATCH = 20
_FNO_MODES = {1: 16, 2: 12}
_FNO_WIDTH = {1: 64, 2: 32}


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Operator learning on DeepXDE-layout npz files."
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    t = sub.add_parser(
        "train",
        help="train a DeepONet, an FNO or an LSSL and evaluate it on a test file",
        description=(
            "Reads npz files with plain arrays X_branch, X_trunk, y (what "
            "sciml.data.save_npz writes) or DeepXDE's split keys X_train0/X_train1/y_train; "
            "DeepXDE's object-array key X only with --allow-pickle. Layouts: Triple "
            "(N, m), (N, d) -> (N, 1) or TripleCartesianProd (N1, m), (N2, d) -> (N1, N2); "
            "for --model fno also 2-D fields, X_branch and y of shape (N, nx, ny); and "
            "PDEBench's HDF5 files (first snapshot to last, or Darcy's nu to tensor; needs "
            "h5py, the hdf5 extra). "
            "Trains with sciml.fit (Adam); writes metrics.json, predictions.npz and plots "
            "to --out."
        ),
    )
    t.add_argument("--train", required=True, help="training data (.npz)")
    t.add_argument("--test", required=True, help="test data (.npz)")
    t.add_argument("--model", choices=("deeponet", "fno", "lssl"), default="deeponet",
                   help="deeponet (default; any layout), fno (aligned 1-D data or 2-D "
                        "fields, any resolution) or lssl (aligned data only)")
    t.add_argument("--steps", type=step_count, default=10000, help="Adam steps (10000)")
    t.add_argument("--seed", type=prng_seed, default=0, help="PRNG seed (0)")
    t.add_argument("--out", required=True, help="output directory (not holding the inputs)")
    t.add_argument("--force", action="store_true",
                   help="replace the results of an earlier run in --out")
    t.add_argument("--allow-pickle", action="store_true",
                   help="read DeepXDE's object-array key X; unpickling runs any code the file "
                        "carries, so only for files you made or trust")
    t.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (deeponet 1e-3, fno 1e-3, lssl 1e-2, decayed)")
    t.add_argument("--width", type=positive_int, default=None,
                   help="hidden width (deeponet 40 = p; fno 64 in 1-D, 32 in 2-D; lssl 16 "
                        "features)")
    t.add_argument("--depth", type=positive_int, default=None,
                   help="hidden layers per net (deeponet 2), Fourier layers (fno 4) or LSSL "
                        "blocks (lssl 2)")
    t.add_argument("--modes", type=positive_int, default=None,
                   help="fno: Fourier modes per axis (16 in 1-D, 12 in 2-D, at most half the "
                        "coarser grid)")
    t.add_argument("--batch-size", type=positive_int, default=None,
                   help="functions (cartesian) or rows (triple) per step (deeponet: all; "
                        f"fno: {_FNO_BATCH}; lssl: {_LSSL_BATCH})")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _refuse_out(args) -> pathlib.Path:
    """Refuses an `--out` that is a file, holds an input, or holds an earlier result
    (unless `--force`)."""
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {args.out}: is a file; name a directory for the results.")
    for what in ("train", "test"):
        given = pathlib.Path(getattr(args, what)).resolve()
        if out.resolve() in given.parents:
            raise CLIError(
                f"--out {args.out}: holds the --{what} file {getattr(args, what)}; name a "
                "separate directory for the results, so that they never replace an input."
            )
    refuse_earlier_results([], args.force, extra=[out / name for name in _OUTPUTS])
    return out


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == _HDF5_MAGIC
    except OSError:
        return False


def _load_hdf5(args, what):
    """A PDEBench HDF5 file as `sciml.data.Fields`, its problems as CLI errors."""
    import sciml.data as sd

    try:
        return sd.load_pdebench(getattr(args, what))
    except (ValueError, ImportError) as e:
        raise CLIError(f"--{what}: {e}") from None


def _load(args, what):
    import sciml.data as sd

    if _is_hdf5(getattr(args, what)):
        # DeepONets and LSSLs read the fields on their grid as aligned data.
        return _load_hdf5(args, what).to_cartesian()
    try:
        return sd.load_npz(getattr(args, what), allow_pickle=args.allow_pickle)
    except (ValueError, TypeError) as e:
        raise CLIError(f"--{what}: {e}") from None


def _load_checked(args):
    """The train and test data, refused here (before any work) if the model cannot use
    them; the test file's step relative to the training file's; and the training
    file's step (LSSL) or the name of its layout (FNO)."""
    import sciml.operators as so

    if args.model == "fno":
        (train, layout), (test, _) = _fno_fields(args, "train"), _fno_fields(args, "test")
        _fno_modes(args, train, test)
        return train, test, 1.0, layout
    if args.modes is not None:
        raise CLIError(f"--modes is for --model fno, not --model {args.model}.")
    train, test = _load(args, "train"), _load(args, "test")
    if args.model == "deeponet":
        if train.sensors != test.sensors or train.dim != test.dim:
            raise CLIError(
                f"train and test disagree: {train.sensors} vs {test.sensors} sensors, "
                f"output dimension {train.dim} vs {test.dim}. A DeepONet needs the same "
                "sensors in both files."
            )
        return train, test, 1.0, None
    try:
        h_train = so.check_aligned(train, where="--model lssl (--train)")
        h_test = so.check_aligned(test, where="--model lssl (--test)")
    except ValueError as e:
        raise CLIError(str(e)) from None
    # The continuous view: a test file at another sampling rate runs the same model
    # with the step rescaled.
    return train, test, h_test / h_train, h_train


def _read_2d_fields(args, what):
    """`sciml.data.Fields` from `X_branch` and `y` of shape (N, nx, ny) and no `X_trunk`,
    or None for other files (which `load_npz` then reads or refuses)."""
    path = getattr(args, what)
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            if "X_trunk" in keys or not {"X_branch", "y"} <= keys:
                return None
            a, u = archive["X_branch"], archive["y"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, AttributeError):
        return None
    if a.ndim != 3:
        return None
    where = f"--{what} {path}"
    if u.shape != a.shape:
        raise CLIError(
            f"{where}: X_branch has shape {a.shape} but y has {u.shape}; 2-D fields for "
            "--model fno need both (N, nx, ny) on one grid."
        )
    return _as_fields(where, ("X_branch", a), ("y", u))


def _as_fields(where, a, u, coords=None):
    """`sciml.data.Fields` of the named arrays `a = (key, array)` and `u`, its checks
    (real, finite, one grid) reported as CLI errors naming the file's keys."""
    import sciml.data as sd

    try:
        return sd.Fields(a[1], u[1], coords)
    except (ValueError, TypeError) as e:
        message = str(e).replace("sciml.data.Fields: ", "")
        message = message.replace("`a`", a[0]).replace("`u`", u[0])
        raise CLIError(f"{where}: {message}") from None


def _fno_fields(args, what):
    """The file as `sciml.data.Fields` for the FNO and the name of its layout, refused
    here (before any work) if it is not fields on one grid."""
    import sciml.data as sd

    if _is_hdf5(getattr(args, what)):
        return _load_hdf5(args, what), "PDEBench HDF5"
    fields = _read_2d_fields(args, what)
    if fields is not None:
        return fields, "fields (N, nx, ny)"
    data = _load(args, what)
    where = f"--model fno (--{what} {getattr(args, what)})"
    if not isinstance(data, sd.TripleCartesianProd):
        raise CLIError(
            f"{where}: the FNO needs every function on one grid (the aligned "
            "TripleCartesianProd layout, y of shape (N1, N2), or 2-D fields X_branch and y "
            "of shape (N, nx, ny)); this file has one random point per row. Use the DeepONet."
        )
    x = np.asarray(data.trunk, np.float64)
    if x.shape[1] != 1:
        raise CLIError(
            f"{where}: aligned files give the FNO 1-D grids, but the output points have "
            f"dimension {x.shape[1]}. Store 2-D fields as X_branch and y of shape (N, nx, ny)."
        )
    x = x[:, 0]
    if x.shape[0] != data.sensors:
        raise CLIError(
            f"{where}: the FNO maps a function on a grid to a function on the same grid, "
            f"but there are {data.sensors} sensors and {x.shape[0]} output points. Use the "
            "DeepONet, or resample the data."
        )
    steps = np.diff(x)
    if x.shape[0] < 2 or np.any(steps <= 0) or np.ptp(steps) > 1e-3 * abs(steps.mean()):
        raise CLIError(
            f"{where}: the FNO needs increasing, equispaced points (at least 2); these are "
            "not. Use the DeepONet."
        )
    fields = _as_fields(where, ("branch", data.branch), ("y", data.y), coords=(x,))
    return fields, type(data).__name__


def _fno_modes(args, train, test):
    """Refuses train and test files of different dimension, or --modes finer than a grid
    can hold; returns the modes per axis."""
    dim = len(train.grid)
    if len(test.grid) != dim:
        raise CLIError(
            f"train and test disagree: {dim}-D grids {train.grid} in --train, "
            f"{len(test.grid)}-D grids {test.grid} in --test."
        )
    coarsest = min(min(f.grid) for f in (train, test))
    if args.modes is not None and 2 * args.modes > coarsest:
        raise CLIError(
            f"--modes {args.modes}: the coarsest grid axis (train {train.grid}, test "
            f"{test.grid}) has {coarsest} points, which hold at most {coarsest // 2} modes; "
            "pass --modes of at most that."
        )
    modes = args.modes or min(_FNO_MODES[dim], coarsest // 2)
    if modes < 1:
        raise CLIError(f"the grids (train {train.grid}, test {test.grid}) are too coarse for "
                       "an FNO: it needs at least 2 points per axis.")
    return (modes,) * dim


def _train_fno(args, out, train, test, layout, t_start) -> dict:
    import equinox as eqx
    import jax
    import optax

    import sciml
    import sciml.data as sd
    import sciml.operators as so

    modes = _fno_modes(args, train, test)
    dim = len(modes)
    mkey, fkey = jax.random.split(jax.random.key(args.seed))
    model = so.FNO(1, 1, modes, args.width or _FNO_WIDTH[dim], layers=args.depth or 4,
                   key=mkey)
    train_a, test_a = so.as_arrays(train), so.as_arrays(test)
    size = len(train)
    batch = min(args.batch_size or _FNO_BATCH, size)
    data = sd.FunctionBatches(train_a, batch) if batch < size else train_a
    schedule = optax.exponential_decay(args.lr or 1e-3, max(args.steps // 4, 1), 0.5)
    result = sciml.fit(model, so.mse_loss, optax.adam(schedule), steps=args.steps, data=data,
                       key=fkey, progress=not args.quiet)
    pred = np.asarray(eqx.filter_jit(so.predict)(result.model, test_a, chunk=32))
    test_metrics = so.metrics(pred, test.u)
    train_metrics = so.evaluate(result.model, train_a)
    np.savez(out / "predictions.npz", y_pred=pred.astype(np.float32))
    if test.dim == 1:
        so.plot_predictions(test.coords[0], test.a, test.u, {"fno": pred},
                            out / "predictions.png", title=f"fno on {args.test}")
    else:
        _scatter(test.u, pred, out / "predictions.png", "fno")
    sciml.plot.history(result.history, out / "loss.png", title="fno training")
    return {
        "model": "fno",
        "test_mse": test_metrics["mse"],
        "test_mean_rel_l2": test_metrics["rel_l2"],
        "train_mse": train_metrics["mse"],
        "layout": layout,
        "train_grid": list(train.grid),
        "test_grid": list(test.grid),
        "modes": list(modes),
        "width": model.width,
        "train_size": size,
        "test_size": len(test),
        "batch_size": batch,
        "steps": args.steps,
        "seed": args.seed,
        "steps_per_s": result.timings["steps_per_second"],
        "compile_s": result.timings["compile"],
        "train_time_s": result.timings["total"],
        "wall_time_s": time.perf_counter() - t_start,
    }


def _model(args, train, h_train, key):
    import sciml.operators as so

    if args.model == "deeponet":
        width, depth = args.width or 40, args.depth or 2
        model = so.DeepONet(
            [train.sensors] + [width] * depth, [train.dim] + [width] * depth, key=key
        )
        return model, args.lr or 1e-3, args.batch_size
    model = so.DeepLSSL(
        "scalar", "scalar", features=args.width or 16, state_size=32, depth=args.depth or 2,
        lssl_kwargs=dict(init=so.LegS(), dt_min=h_train / 2, dt_max=2 * h_train), key=key,
    )
    return model, args.lr or 1e-2, args.batch_size or _LSSL_BATCH


def _train(args, out, train, test, dt_scale, h_train, t_start) -> dict:
    import equinox as eqx
    import jax
    import optax

    import sciml
    import sciml.data as sd
    import sciml.operators as so

    train_a, test_a = so.as_arrays(train), so.as_arrays(test)
    mkey, fkey = jax.random.split(jax.random.key(args.seed))
    model, lr, batch = _model(args, train, h_train, mkey)
    schedule = optax.exponential_decay(lr, max(args.steps // 4, 1), 0.5)
    size = len(train)
    batch = size if batch is None or batch >= size else batch
    data = sd.FunctionBatches(train_a, batch) if batch < size else train_a
    result = sciml.fit(
        model, so.mse_loss, optax.adam(schedule), steps=args.steps, data=data, key=fkey,
        progress=not args.quiet,
    )
    pred = np.asarray(eqx.filter_jit(so.predict)(result.model, test_a, dt_scale=dt_scale))
    test_metrics = so.metrics(pred, test.y)
    train_metrics = so.evaluate(result.model, train_a)
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
        "batch_size": batch,
        "steps": args.steps,
        "seed": args.seed,
        "dt_scale": dt_scale,
        "steps_per_s": result.timings["steps_per_second"],
        "compile_s": result.timings["compile"],
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


def _run(args, prog) -> dict:
    t_start = time.perf_counter()
    for what in ("train", "test"):
        if not pathlib.Path(getattr(args, what)).is_file():
            raise CLIError(f"--{what} {getattr(args, what)!r}: no such file.")
    out = _refuse_out(args)
    if args.allow_pickle:
        print(
            f"{prog}: warning: --allow-pickle reads object arrays by unpickling them, "
            "which runs any code the file carries; use it only for files you made or trust.",
            file=sys.stderr,
        )
    created = first_missing(out)
    check_out_dir(out)
    try:
        train, test, dt_scale, h_train = _load_checked(args)
        if args.model == "fno":
            metrics = _train_fno(args, out, train, test, h_train, t_start)
        else:
            metrics = _train(args, out, train, test, dt_scale, h_train, t_start)
    except BaseException:
        remove_if_empty(out, created)
        raise
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def main(argv: Sequence[str] | None = None, prog: str = "sciml operator") -> int:
    """Entry point of `sciml operator ...`; returns the exit status."""
    args = _parser(prog).parse_args(argv)
    try:
        metrics = _run(args, prog)
    except CLIError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(
        f"{args.model}: test MSE {metrics['test_mse']:.3g}, mean relative L2 "
        f"{metrics['test_mean_rel_l2']:.3g}; {metrics['steps']} steps at "
        f"{metrics['steps_per_s']:.0f} steps/s ({metrics['train_time_s']:.1f} s training, "
        f"{metrics['wall_time_s']:.1f} s in all); wrote {args.out}/"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
