"""Argument checks shared by the `sciml` commands: number parsers, and output places
checked before any work (a refused run leaves no empty folder behind)."""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import tempfile


class CLIError(Exception):
    """A bad option or file: printed as `sciml: error: ...`, exit status 2."""


def first_missing(path: pathlib.Path) -> pathlib.Path | None:
    """The outermost folder of `path` that does not exist yet (None if it exists)."""
    path = pathlib.Path(os.path.abspath(path))
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def remove_if_empty(path: pathlib.Path, top: pathlib.Path | None) -> None:
    """Removes the empty folders from `path` up to `top` (folders this run created), so
    a refused or failed run leaves no empty output directory behind."""
    if top is None:
        return
    path = pathlib.Path(os.path.abspath(path))
    while True:
        try:
            path.rmdir()  # only if empty
        except OSError:
            return
        if path == top or path == path.parent:
            return
        path = path.parent


def check_out_dir(path: pathlib.Path) -> None:
    """Refuses an `--out` that cannot take the results, before any work: a file, a
    directory that cannot be created, or one that cannot be written to."""
    if path.exists() and not path.is_dir():
        raise CLIError(f"--out {path}: is a file; name a directory for the results.")
    created = first_missing(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        remove_if_empty(path, created)
        raise CLIError(
            f"--out {path}: cannot write results there ({e.strerror or e}); name a "
            "directory you can write to."
        ) from None


# What a problem run writes besides its plots; finding them means an earlier run's
# results (or a user's own report.md) would be overwritten.
RESULT_FILES = ("metrics.json", "report.md")


def refuse_earlier_results(folders, force: bool, extra=()) -> None:
    """Refuses, before any work, output folders that hold an earlier run's results,
    unless `--force`."""
    if force:
        return
    taken = [pathlib.Path(f) / n for f in folders for n in RESULT_FILES]
    taken = [p for p in (*taken, *map(pathlib.Path, extra)) if p.exists()]
    if taken:
        listed = ", ".join(map(str, taken[:4])) + (", ..." if len(taken) > 4 else "")
        raise CLIError(
            f"--out: {listed} already exist (results of an earlier run?). Pass --force to "
            "replace them, or name another --out."
        )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def step_count(text: str) -> int:
    """`--steps`: a positive int that the int32 step counter of `sciml.fit` holds."""
    value = positive_int(text)
    if value > 2**31 - 1:
        raise argparse.ArgumentTypeError(
            f"expected at most 2147483647 steps (the training step counter is int32), "
            f"got {value}"
        )
    return value


def prng_seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    # jax.random.key takes the seed modulo 2**32 (without float64), so a larger one
    # silently repeats a smaller one's numbers.
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {value}")
    return value
