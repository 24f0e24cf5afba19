"""Pictures of 2-D PINN solutions: fields on a grid over a domain, and sampled points."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .. import plot
from ._domains import AbstractDomain


def grid_values(
    f: Callable, domain: AbstractDomain, xs: np.ndarray, ys: np.ndarray
) -> np.ndarray:
    """`f` at the points of the grid `xs x ys` inside `domain`, NaN outside.

    **Arguments:**

    - `f`: `f(x) -> scalar or (m,)` at one point (e.g. a trained model).
    - `domain`: a 2-D domain.
    - `xs`, `ys`: the grid's coordinates (1-D).

    **Returns:**

    An array `(len(xs), len(ys))` (or `(..., m)`), indexed `[i, j] -> (xs[i], ys[j])`.
    """
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    pts = jnp.asarray(np.stack([X.ravel(), Y.ravel()], 1))
    inside = np.asarray(jax.jit(jax.vmap(domain.contains))(pts))
    vals = np.array(jax.jit(jax.vmap(f))(pts), np.float64)
    vals[~inside] = np.nan
    return vals.reshape(X.shape + vals.shape[1:])


def plot_fields(
    path: str | os.PathLike,
    xs: np.ndarray,
    ys: np.ndarray,
    fields: Mapping[str, np.ndarray],
    *,
    points: Mapping[str, np.ndarray] | None = None,
    cmap: str = "viridis",
) -> str:
    """One panel per field on the grid `xs x ys` (NaN shows as blank), then one panel of
    sampled point sets, saved as a PNG.

    **Arguments:**

    - `path`: where to save.
    - `xs`, `ys`: the grid (as `grid_values`).
    - `fields`: `{title: (len(xs), len(ys)) array}`.
    - `points`: `{label: (n, 2) points}` (e.g. interior and boundary samples), or None.
    """
    panels = len(fields) + (1 if points else 0)
    fig, axes = plot.figure(1, panels, figsize=(4.6 * panels, 4), layout="constrained")
    axes = np.atleast_1d(axes)
    ext = [xs[0], xs[-1], ys[0], ys[-1]]
    for ax, (title, val) in zip(axes, fields.items()):
        im = ax.imshow(np.asarray(val).T, origin="lower", extent=ext, cmap=cmap,
                       aspect="equal")
        ax.set_title(title)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        fig.colorbar(im, ax=ax, shrink=0.8)
    if points:
        ax = axes[-1]
        for k, (label, p) in enumerate(points.items()):
            p = np.asarray(p)
            ax.scatter(p[:, 0], p[:, 1], s=2 if k == 0 else 4, label=f"{label} ({len(p)})")
        ax.set_aspect("equal")
        ax.set_xlim(ext[0], ext[1])
        ax.set_ylim(ext[2], ext[3])
        ax.set_title("sampled points")
        ax.legend(fontsize=7, loc="upper right")
    return plot.save(fig, path)
