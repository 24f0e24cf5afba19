"""Plots of operator predictions (PNG, headless)."""

from __future__ import annotations

import os

import numpy as np

from .. import plot as _plot


def plot_predictions(
    x,
    inputs,
    truth,
    predictions: dict,
    path: str | os.PathLike,
    *,
    num: int = 3,
    title: str | None = None,
    input_x=None,
) -> str:
    """Input functions (top) and G(u) against predictions (bottom), a few examples.

    **Arguments:**

    - `x`: output locations `(n,)`; `input_x`: sensor locations (default `x` when there
      are as many sensors as output points, else the sensor index: DeepXDE's files do not
      store where the sensors are).
    - `inputs`: sensor values `(N, m)`; `truth`: `(N, n)`.
    - `predictions`: `{label: (N, n) array}`, one dashed line style per model.
    - `path`: the PNG file; `num`: how many functions; `title`: figure title.

    **Returns:**

    The path written.
    """
    x = np.asarray(x)
    inputs = np.asarray(inputs)
    if input_x is None:
        same = inputs.shape[-1] == len(x)
        input_x, input_label = (x, "x") if same else (np.arange(inputs.shape[-1]), "sensor")
    else:
        input_x, input_label = np.asarray(input_x), "x"
    num = min(num, len(truth))
    fig, axes = _plot.figure(2, num, figsize=(3.6 * num, 5.5), squeeze=False)
    for j in range(num):
        axes[0, j].plot(input_x, inputs[j], "k-", lw=1)
        axes[0, j].set_title(f"u #{j}", fontsize=9)
        axes[0, j].set_xlabel(input_label)
        axes[1, j].plot(x, np.asarray(truth)[j], "k-", lw=2, label="reference")
        for i, (label, pred) in enumerate(predictions.items()):
            axes[1, j].plot(x, np.asarray(pred)[j], f"C{i}--", lw=1.5, label=label)
        axes[1, j].set_xlabel("x")
    axes[0, 0].set_ylabel("u(x)")
    axes[1, 0].set_ylabel("G(u)(x)")
    axes[1, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _plot.save(fig, path)


def plot_rates(rows, path: str | os.PathLike, *, title: str | None = None) -> str:
    """Relative L2 error against sampling rate, with and without dt rescaling.

    `rows`: list of `(m, rel_l2_rescaled, rel_l2_unrescaled)`.
    """
    rows = sorted(rows)
    m = [r[0] for r in rows]
    fig, ax = _plot.figure(figsize=(5.5, 4))
    ax.loglog(m, [r[1] for r in rows], "o-", label="dt rescaled")
    ax.loglog(m, [r[2] for r in rows], "s--", label="dt not rescaled")
    ax.set_xlabel("samples per unit interval (m)")
    ax.set_ylabel("mean relative L2 error")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    if title:
        ax.set_title(title)
    return _plot.save(fig, path)
