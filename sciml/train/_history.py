"""The history of a run: one row per step, one column per loss term."""

from __future__ import annotations

import numpy as np


class History:
    def __init__(self, aux_names_per_stage):
        self.cols = {"step": [], "stage": [], "loss": [], "time": []}
        for names in aux_names_per_stage:
            for n in names:
                self.cols.setdefault(n, [])

    def extend(self, stage, first_step, rows, aux_names, t0, t1):
        n = rows.shape[0]
        if n == 0:
            return
        if np.dtype(rows.dtype) not in (np.float32, np.float64):
            # bfloat16/float16 losses: numpy's npz cannot store bfloat16, so a checkpoint
            # of this history would not load back.
            rows = np.asarray(rows, np.float32)
        self.cols["step"].append(np.arange(first_step, first_step + n, dtype=np.int64))
        self.cols["stage"].append(np.full(n, stage, dtype=np.int64))
        self.cols["loss"].append(np.asarray(rows[:, 0]))
        self.cols["time"].append(t0 + (t1 - t0) * np.arange(1, n + 1) / n)
        present = set(aux_names)
        for j, name in enumerate(aux_names):
            self.cols[name].append(np.asarray(rows[:, j + 1]))
        for name in self.cols:
            if name not in ("step", "stage", "loss", "time") and name not in present:
                self.cols[name].append(np.full(n, np.nan))

    def log(self, step, name, value):
        """Sets column `name` (created, NaN-filled, if new) at the row of `step`."""
        if not isinstance(name, str) or name in ("step", "stage", "loss", "time"):
            raise ValueError(
                f"FitInfo.log: `name` must be a string other than step/stage/loss/time, "
                f"got {name!r}."
            )
        try:
            value = float(value)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"FitInfo.log: the value logged as {name!r} must be a real scalar, got "
                f"{value!r}."
            ) from e
        steps = self.cols["step"]
        if name not in self.cols or len(self.cols[name]) != len(steps):
            self.cols[name] = [np.full(len(part), np.nan) for part in steps]
        for i in range(len(steps) - 1, -1, -1):
            hit = np.nonzero(steps[i] == step)[0]
            if hit.size:
                part = np.array(self.cols[name][i], dtype=np.float64, copy=True)
                part[hit[-1]] = value
                self.cols[name][i] = part
                return
        raise ValueError(f"FitInfo.log: no history row for step {step}.")

    def arrays(self, before=None):
        """The columns; with `before`, only the rows of steps before it."""
        out = {}
        for name, parts in self.cols.items():
            if parts:
                out[name] = np.concatenate(parts)
            else:
                out[name] = np.zeros(0, np.int64 if name in ("step", "stage") else np.float64)
        if before is not None:
            keep = out["step"] < before
            out = {name: col[keep] for name, col in out.items()}
        return out

    def load(self, arrays):
        for name, value in arrays.items():
            self.cols.setdefault(name, [])
            self.cols[name] = [np.asarray(value)]
