"""The public types of the loop: stages, what callbacks see, what `fit` returns, and
the divergence error."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np


PyTree = Any


class DivergenceError(FloatingPointError):
    """Raised by `fit` when a step produces a non-finite loss, gradient or update.

    **Attributes:**

    - `step`: the global step (0-based) whose update was refused.
    - `terms`: `{name: value}` of the loss and each aux term at that step.
    - `model`: the last model with a finite loss (the parameters entering the step
      whose update made the loss non-finite), recovered by replaying the chunk with the
      same compiled program, so it is bit-identical to the one the run had.
    - `history`: the history up to and including the bad step.
    - `checkpoint`: path of the checkpoint holding the last finite state, or None.
    """

    def __init__(self, message, *, step, terms, model, history, checkpoint=None):
        super().__init__(message)
        self.step = step
        self.terms = terms
        self.model = model
        self.history = history
        self.checkpoint = checkpoint


@dataclasses.dataclass(frozen=True)
class Stage:
    """One phase of training: an optimiser run for a number of steps.

    Pass a sequence of stages as `fit`'s `optimiser` to run, e.g., Adam then L-BFGS
    without writing a loop. The optimiser state starts fresh in each stage; the model
    carries over.

    **Arguments:**

    - `optimiser`: the update of this stage: any `optax.GradientTransformation`
      (`optax.lbfgs()` included) or a `sciml.train.AbstractUpdate` (an ensemble method,
      your own update).
    - `steps`: number of steps in this stage.
    - `loss`: optional loss for this stage only (e.g. a different loss weight);
      defaults to `fit`'s `loss`.
    - `data`: optional data for this stage only; defaults to `fit`'s `data`.
    """

    optimiser: Any
    steps: int
    loss: Callable | None = None
    data: Any = dataclasses.field(default=None, repr=False)
    has_data: bool = dataclasses.field(default=False, repr=False)

    def __init__(self, optimiser, steps, *, loss=None, data=...):
        object.__setattr__(self, "optimiser", optimiser)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "data", None if data is ... else data)
        object.__setattr__(self, "has_data", data is not ...)


@dataclasses.dataclass(frozen=True)
class FitInfo:
    """What a callback sees between chunks.

    `loss` and `terms` are those of the last step run; `history` is the history so far
    (numpy arrays); returning `True` from a callback stops training.

    `info.log(name, value)` records a scalar in the history column `name` at the last
    step run (NaN at the steps where nothing was logged), e.g. a monitor's diagnostics.

    `records` holds what the callback's recorder (see `sciml.fit`) measured inside the
    compiled steps since its previous call: `(step, value)` pairs in step order, `step`
    being the number of updates done when `value` was taken (empty for a callback
    without a recorder).
    """

    step: int
    stage: int
    model: PyTree
    loss: float
    terms: dict
    history: dict
    elapsed: float
    records: tuple = ()
    _log: Callable = dataclasses.field(default=None, repr=False, compare=False)

    def log(self, name: str, value, *, step: int | None = None) -> None:
        """Records `value` (a real scalar) in history column `name` at the history row
        of the update that brought the count to `step` (default: the last step run, i.e.
        `self.step`; a record's step logs next to the record)."""
        if self._log is None:
            raise RuntimeError("FitInfo.log: this FitInfo is not attached to a run.")
        if step is None:
            step = self.step
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or not (
            0 < step <= self.step
        ):
            raise ValueError(
                f"FitInfo.log: `step` must be an int in [1, {self.step}] (a step already "
                f"run), got {step!r}."
            )
        self._log(int(step) - 1, name, value)


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What `fit` returns.

    **Attributes:**

    - `model`: the trained model, same structure as the input model.
    - `history`: dict of numpy arrays, one entry per step: `"step"`, `"stage"`,
      `"loss"`, one entry per aux term, `"time"` (seconds since the start of `fit`).
    - `opt_state`: the optimiser state at the end of the last stage.
    - `stopped`: `None` if every step ran, otherwise why training stopped early.
    - `timings`: `"compile"` (seconds spent compiling, summed over stages),
      `"total"` (wall time of `fit`), `"steps_per_second"` (steady state, compile
      excluded).
    """

    model: PyTree
    history: dict
    opt_state: PyTree
    stopped: str | None
    timings: dict


def divergence_error(code, bad_step, terms, model, history, ckpt_path, hint=""):
    """The `DivergenceError` of a run stopped at `bad_step`.

    `code` 1: the loss at `bad_step` is non-finite; 2/3: the gradient/update of the step
    before it was, which made the loss at `bad_step` non-finite. `hint` is what the
    update adds for a non-finite loss (`AbstractUpdate.divergence_hint`).
    """
    bad_terms = [k for k, v in terms.items() if not math.isfinite(v)]
    listed = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
    nonfinite = f" Non-finite terms: {', '.join(bad_terms)}." if bad_terms else ""
    if code == 1:
        step = bad_step
        head = f"the loss became non-finite at step {step} ({listed}).{nonfinite}"
        head += f" {hint}" if hint else ""
    else:
        step = bad_step - 1
        what = "gradient" if code == 2 else "updated parameters"
        head = (
            f"the {what} became non-finite at step {step} while its loss was finite; the "
            f"update made the loss at step {bad_step} non-finite ({listed}).{nonfinite} "
            "Look at the gradient of the loss terms or lower the learning rate."
        )
    where = f" It was also saved to {ckpt_path!r}." if ckpt_path else ""
    msg = (
        f"sciml.fit: {head} Training stopped; the last model with a finite loss is on "
        f"`error.model`.{where}"
    )
    return DivergenceError(
        msg, step=step, terms=terms, model=model, history=history.arrays(), checkpoint=ckpt_path
    )
