"""Plots every problem shares (PNG files, matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(*args, **kwargs):
    """`matplotlib.pyplot.subplots` on a headless backend."""
    return _pyplot().subplots(*args, **kwargs)


def save(fig, path: str | os.PathLike) -> str:
    """Saves `fig` as a PNG (dpi 120, tight) and closes it; returns the path."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def history(
    hist: Mapping[str, np.ndarray] | Sequence[tuple[str, Mapping[str, np.ndarray]]],
    path: str | os.PathLike,
    *,
    terms: Sequence[str] | None = None,
    title: str | None = None,
) -> str:
    """Loss curves (log scale) from `FitResult.history`, one line per term.

    `hist` may also be a list of `(label, history)` pairs to compare runs; then only
    the total loss of each is drawn. Stage boundaries are marked.
    """
    fig, ax = figure(figsize=(6, 4))
    if isinstance(hist, Mapping):
        names = ["loss"] + [
            k for k in hist if k not in ("step", "stage", "loss", "time")
        ]
        if terms is not None:
            names = list(terms)
        for name in names:
            y = np.abs(np.asarray(hist[name], dtype=float))
            ax.semilogy(hist["step"], y, label=name, lw=1.5 if name == "loss" else 1.0)
        stage = np.asarray(hist.get("stage", []))
        for b in np.flatnonzero(np.diff(stage)) + 1:
            ax.axvline(hist["step"][b], color="0.6", ls="--", lw=0.8)
    else:
        for label, h in hist:
            ax.semilogy(h["step"], np.abs(np.asarray(h["loss"], dtype=float)), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save(fig, path)
