"""Plot of a `KoopmanMonitor`'s spectra over training."""

from __future__ import annotations

import os

import numpy as np

from .. import plot as _plot


def plot_spectrum(monitor, path: str | os.PathLike, *, title: str | None = None) -> str:
    """Draws the Koopman spectra a `KoopmanMonitor` recorded during training.

    Left: every DMD's eigenvalues in the complex plane with the unit circle, coloured
    by training step (marker area grows with the mode's amplitude). Middle: the
    leading eigenvalue moduli against the step. Right: the stop rule's predicted
    relative motion (`remaining`) against the step, with the monitor's `rtol`.

    **Arguments:**

    - `monitor`: a `sciml.koopman.KoopmanMonitor` after (or during) a `fit`.
    - `path`: where to write the PNG.
    - `title`: optional figure title.

    **Returns:**

    The path written.
    """
    records = getattr(monitor, "spectra", None)
    if records is None:
        raise TypeError(
            f"plot_spectrum: `monitor` must be a KoopmanMonitor, got {type(monitor).__name__}."
        )
    if not records:
        raise ValueError(
            "plot_spectrum: the monitor has no spectra yet: it runs its first DMD once "
            f"its window of {monitor.window} snapshots (every {monitor.snapshot_every} steps) is "
            "full. Train for longer or use a smaller `window`/`every`."
        )
    fig, (ax1, ax2, ax3) = _plot.figure(1, 3, figsize=(16.5, 4.4), layout="constrained")
    steps = np.array([r.step for r in records], dtype=float)
    lo, hi = steps.min(), max(steps.max(), steps.min() + 1)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    theta = np.linspace(0, 2 * np.pi, 400)
    ax1.plot(np.cos(theta), np.sin(theta), color="0.5", lw=1)
    for r in records:
        if not r.rank:
            continue
        amp = r.amplitudes / max(float(r.amplitudes.max()), 1e-300)
        ax1.scatter(r.eigenvalues.real, r.eigenvalues.imag, s=6 + 40 * amp,
                    color=cmap((r.step - lo) / (hi - lo)), alpha=0.7, lw=0)
    sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(lo, hi))
    fig.colorbar(sm, ax=ax1, label="step", fraction=0.046)
    ax1.set_aspect("equal")
    ax1.set_xlabel("Re λ")
    ax1.set_ylabel("Im λ")
    ax1.set_title(f"DMD eigenvalues (per {monitor.snapshot_every} steps)")
    n = min(3, max(r.rank for r in records))
    for i in range(n):
        mod = [abs(r.eigenvalues[i]) if i < r.rank else np.nan for r in records]
        ax2.plot(steps, mod, "o-", ms=3, label=f"|λ{i + 1}|")
    ax2.axhline(1.0, color="0.5", ls="--", lw=0.8)
    ax2.set_xlabel("step")
    ax2.set_ylabel("modulus")
    ax2.set_title("leading moduli")
    if n:
        ax2.legend(fontsize=8)
    remaining = np.array([r.remaining for r in records], dtype=float)
    ax3.semilogy(steps, np.maximum(remaining, 1e-300), "o-", ms=3, label="predicted motion")
    ax3.axhline(monitor.rtol, color="C3", ls="--", lw=1, label=f"rtol = {monitor.rtol:g}")
    ax3.set_xlabel("step")
    ax3.set_ylabel("next-window motion / distance travelled")
    ax3.set_title("stop rule")
    ax3.legend(fontsize=8)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _plot.save(fig, path)
