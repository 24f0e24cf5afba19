"""The usual PINN training recipe as `fit` stages, and the figures a run reports."""

from __future__ import annotations

from typing import Any

import numpy as np
import optax

from ..train import FitResult, Stage


def adam_then_lbfgs(
    adam_steps: int,
    lbfgs_steps: int,
    fixed_batch: Any,
    *,
    learning_rate: float = 1e-3,
    halve_every: int = 5000,
) -> list[Stage]:
    """Adam on collocation points resampled every step, then L-BFGS on one fixed batch.

    A line search needs one objective, so the L-BFGS stage trains on `fixed_batch`
    (e.g. `PDELoss.fixed_batch(key)`, usually larger than a per-step batch).

    **Arguments:**

    - `adam_steps`, `lbfgs_steps`: steps of each stage.
    - `fixed_batch`: the L-BFGS stage's data.
    - `learning_rate`: Adam's initial rate, halved every `halve_every` steps.

    **Returns:**

    Two `sciml.Stage`s for `sciml.fit`.
    """
    schedule = optax.exponential_decay(learning_rate, halve_every, 0.5)
    return [
        Stage(optax.adam(schedule), adam_steps, data=None),
        Stage(optax.lbfgs(), lbfgs_steps, data=fixed_batch),
    ]


def stage_summary(result: FitResult) -> dict:
    """Steps per stage, the final loss and the timings of a staged `fit`, for metrics."""
    stage = np.asarray(result.history["stage"])
    return {
        "adam_steps": int((stage == 0).sum()),
        "lbfgs_steps": int((stage == 1).sum()),
        "final_loss": float(result.history["loss"][-1]),
        "compile_s": result.timings["compile"],
        "train_s": result.timings["total"],
    }
