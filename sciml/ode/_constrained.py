"""Fewest solver steps subject to a data loss: a constrained fit with `sciml.fit`.

A penalty `loss + w · cost` trades accuracy for solver cost along one curve, and which
point it lands on depends on `w`. The constrained form asks for what a user wants:
the cheapest model whose loss is at most a target. Polyak's switching gradient method
solves it with no parameter beyond the optimiser's: each step descends the constraint
`c = loss / target - 1` while it is violated, and the cost while it holds.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp


def fewest_steps(loss: Callable, target: float) -> Callable:
    """Turns a data loss into the switching objective "fewest solver steps subject to
    loss <= target", for `sciml.fit`.

    `loss(model, batch, *, key, step)` returns `(value, aux)`, the data loss without
    any penalty, and `aux` must hold the model's `"step_count"` (its stats from a
    `NeuralODE` with a `StepCountRegulariser`, any weight) and `"num_steps"`. The
    returned loss is `c = value / target - 1` where `c > 0` and `aux["step_count"]`
    elsewhere; its aux adds `"data_loss"` (the value) and `"constraint"` (c). Pair it
    with `KeepFewestSteps(target)`, which keeps the feasible iterate with the fewest
    steps (the switching iterates hover at the boundary, on both sides).

    **Arguments:** `loss`, `target` (> 0, e.g. `1.1 *` the loss of a vanilla fit).
    """
    if not callable(loss):
        raise TypeError(f"sciml.ode.fewest_steps: `loss` must be callable, got {loss!r}.")
    target = _check_target(target, "sciml.ode.fewest_steps")

    def constrained(model, batch, *, key, step):
        value, aux = loss(model, batch, key=key, step=step)
        missing = [k for k in ("step_count", "num_steps") if k not in aux]
        if missing:
            raise ValueError(
                f"sciml.ode.fewest_steps: the loss's aux lacks {missing}. Return the "
                "model's stats['step_count'] and stats['num_steps'] in it, from a "
                "NeuralODE with regulariser=sciml.ode.StepCountRegulariser()."
            )
        c = value / target - 1
        count = jnp.asarray(aux["step_count"], jnp.result_type(value))
        objective = jnp.where(c > 0, c, count)
        return objective, {**aux, "data_loss": value, "constraint": c}

    return constrained


class KeepFewestSteps:
    """A `sciml.fit` callback that keeps the iterate with the fewest solver steps among
    those whose data loss is at most `target`; read it as `.model` after the fit
    (None if no iterate met the target), its steps as `.num_steps` and the training
    step it was taken at as `.step`.

    It runs after every step (`every = 1`): the terms of a step belong to the model
    before that step's update, which it holds until the next call; pass the model
    `fit` starts from as `start=` to have it considered too. The loss's aux must hold
    `"num_steps"` and `"data_loss"` (as `fewest_steps` provides) or `data_key` naming
    the data loss.
    """

    every = 1

    def __init__(self, target: float, *, start=None, data_key: str = "data_loss"):
        self.target = _check_target(target, "sciml.ode.KeepFewestSteps")
        self.data_key = data_key
        self.model = None
        self.num_steps = None
        self.step = None
        self._previous = start

    def __call__(self, info):
        previous, self._previous = self._previous, info.model
        if previous is None:
            return None
        terms = info.terms
        for k in (self.data_key, "num_steps"):
            if k not in terms:
                raise ValueError(
                    f"sciml.ode.KeepFewestSteps: the loss's aux has no {k!r} (it has "
                    f"{sorted(terms)}); return it, or wrap the loss in fewest_steps."
                )
        n = int(terms["num_steps"])
        if terms[self.data_key] <= self.target and (self.num_steps is None or n < self.num_steps):
            self.model, self.num_steps, self.step = previous, n, info.step - 1
        return None


def _check_target(target, where):
    try:
        target = float(target)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: `target` must be a positive float, got {target!r}.") from None
    if not (target > 0 and target < float("inf")):
        raise ValueError(f"{where}: `target` must be a positive finite float, got {target}.")
    return target
