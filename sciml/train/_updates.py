"""The update protocol: how one step of `fit` moves the parameters.

The loop knows an update only through `AbstractUpdate`: it calls `init` at the start of
a stage and `step` once per step, inside the compiled loop. An optax
`GradientTransformation` is wrapped as a `GradientUpdate`; sciml's other updates (the
ensemble Kalman methods, and any update of yours) implement the protocol directly.

**The residual convention.** An update with `residual = True` takes a loss that returns
a residual vector `r` (any shape, read flattened), or `(r, aux)` with `aux` a dict of
named scalars, instead of a scalar; its objective is `½‖r‖²` unless the update says
otherwise (an ensemble's residuals are whitened misfits of one member). Every other
update takes a loss that returns a scalar, or `(scalar, aux)`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax


PyTree = Any


class Objective:
    """What an update evaluates at a step: `objective(params) -> (out, aux)`.

    `out` is the loss's scalar (or, for a residual update, its residual array) and `aux`
    the dict of the loss's named scalar terms (empty if it returns none). The frozen
    part of the model is bound: `fn(params, frozen)` takes it explicitly, for updates
    that map over copies of the model (an ensemble's members each carry their own).

    **Attributes:**

    - `fn`: `fn(params, frozen) -> (out, aux)`.
    - `frozen`: the model's frozen arrays.
    - `has_aux`: whether the loss returns named terms.
    - `varies`: whether the objective may change from step to step (fresh batches or
      loss keys, or a loss reading `step`). A line search's cached value and gradient
      are reusable only when it does not.
    """

    __slots__ = ("fn", "frozen", "has_aux", "varies")

    def __init__(self, fn: Callable, frozen: PyTree, *, has_aux: bool, varies: bool):
        self.fn = fn
        self.frozen = frozen
        self.has_aux = has_aux
        self.varies = varies

    def __call__(self, params):
        return self.fn(params, self.frozen)


class AbstractUpdate(eqx.Module):
    """How a step moves the trainable parameters: pass one to `sciml.fit` (or a
    `sciml.Stage`) where an optax optimiser goes.

    Implement `init` and `step`. The class variables and the other methods have
    defaults that suit a gradient-style update:

    - `residual`: True if the loss returns a residual vector (see the module's residual
      convention); False for a scalar loss.
    - `terms`: names of the scalars this update adds to `aux` at every step (they become
      history columns, e.g. a damping parameter).
    - `member_axis`: True if every trainable array carries a leading member axis (an
      ensemble): the loss is called with one member, and `devices=` shards the
      members instead of the batch.
    - `needs_key`: True if `step` draws random numbers from its key (the key is then a
      fresh one at every step).

    An update that can tell when it has converged overrides `done(state)`; the compiled
    loop checks it after every step, so a stopping test costs no host round trip.

    **Example** (plain gradient descent):

    ```python
    class GradientDescent(sciml.train.AbstractUpdate):
        learning_rate: float

        def init(self, params):
            return None

        def step(self, objective, params, state, key):
            (value, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
            params = jax.tree.map(lambda p, g: p - self.learning_rate * g, params, grads)
            return value, aux, params, state

    result = sciml.fit(model, loss, GradientDescent(0.1), steps=500, key=key)
    ```
    """

    residual: ClassVar[bool] = False
    terms: ClassVar[tuple[str, ...]] = ()
    member_axis: ClassVar[bool] = False
    needs_key: ClassVar[bool] = False

    @abc.abstractmethod
    def init(self, params: PyTree) -> PyTree:
        """The update's state for a stage that starts at `params`."""

    @abc.abstractmethod
    def step(self, objective: Objective, params: PyTree, state: PyTree, key) -> tuple:
        """One step from `params`: returns `(value, aux, new_params, new_state)`.

        `value` is the scalar recorded as the history's `loss` (the objective at
        `params`, before the step); `aux` holds the loss's terms at `params` and this
        update's `terms`. `key` is the loss key of the step.
        """

    def done(self, state: PyTree) -> jax.Array | bool:
        """True once the update has converged, read from its state after every step
        inside the compiled loop: the stage then ends (the next stage, if any, starts
        from there). The default never converges; `sciml.GaussNewton` does when given
        tolerances."""
        del state
        return False

    def for_stage(self, steps: int, data, where: str) -> AbstractUpdate:
        """This update configured for a stage of `steps` steps over the data source
        `data` (an `AbstractData`), checked before any training; `where` names the stage
        in error messages. The default returns the update unchanged."""
        del steps, data, where
        return self

    def fixed_objective(self, params: PyTree) -> bool:
        """True if every step of a stage must see one objective (one batch and one loss
        key, drawn at the stage start), as a line search over a quasi-Newton model does."""
        del params
        return False

    def diagnose(self, objective: Objective, params, state, key) -> tuple:
        """After a divergence: `(gradient finite, updated parameters finite)` for the step
        from `params`. The default has no gradient to blame."""
        _, _, new_params, _ = self.step(objective, params, state, key)
        return jnp.asarray(True), all_finite(new_params)

    def divergence_hint(self, terms: dict[str, float]) -> str:
        """Advice added to the divergence message when the loss went non-finite."""
        del terms
        return ""

    def model_seen_by_loss(self, model: PyTree) -> PyTree:
        """The model the loss is called with: the model itself, or one member when
        `member_axis` is set."""
        if self.member_axis:
            return jax.tree.map(lambda x: x[0] if eqx.is_array(x) else x, model)
        return model

    def fingerprint_of(self) -> Any:
        """What identifies this update in a checkpoint's fingerprint (itself)."""
        return self


def all_finite(tree) -> jax.Array:
    """True if every inexact array in `tree` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if eqx.is_inexact_array(x)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.stack(leaves).all()


def stored_value(opt_state, name="value"):
    """The objective value (or `name`) a line search keeps in its state (None if none)."""
    try:
        return optax.tree.get(opt_state, name, None)
    except KeyError:  # several line searches chained: do not reuse their values
        return None


class GradientUpdate(AbstractUpdate):
    """An optax `GradientTransformation` as an update; `fit` wraps optax optimisers in it.

    Line-search optimisers (`optax.lbfgs()`, `optax.scale_by_zoom_linesearch`, ...) get
    the `value`, `grad` and `value_fn` they ask for and see one fixed objective per
    stage; when the objective does not vary, the value and gradient their line search
    computed at the accepted point are reused as the next step's.

    **Arguments:**

    - `optimiser`: the optax transformation.
    """

    optimiser: optax.GradientTransformation = eqx.field(static=True)

    def init(self, params):
        return self.optimiser.init(params)

    def fixed_objective(self, params):
        return stored_value(jax.eval_shape(self.optimiser.init, params)) is not None

    def _value_and_grad(self, objective, params, state):
        def value_fn(p):
            return objective(p)[0]

        # A line search keeps the value and gradient at the point it accepted (unless it
        # is told not to keep the gradient, as backtracking's store_grad=False does).
        cached = (
            not objective.varies
            and stored_value(state) is not None
            and stored_value(state, "grad") is not None
        )
        if cached:
            value, grads = optax.value_and_grad_from_state(value_fn)(params, state=state)
            aux = objective(params)[1] if objective.has_aux else {}
        else:
            (value, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return value, aux, grads, value_fn

    def step(self, objective, params, state, key):
        del key
        value, aux, grads, value_fn = self._value_and_grad(objective, params, state)
        tx = optax.with_extra_args_support(self.optimiser)
        updates, state = tx.update(grads, state, params, value=value, grad=grads,
                                   value_fn=value_fn)
        return value, aux, optax.apply_updates(params, updates), state

    def diagnose(self, objective, params, state, key):
        _, _, grads, _ = self._value_and_grad(objective, params, state)
        _, _, new_params, _ = self.step(objective, params, state, key)
        return all_finite(grads), all_finite(new_params)

    def fingerprint_of(self):
        return self.optimiser


def as_update(optimiser, where: str) -> AbstractUpdate:
    """`fit`'s optimiser argument as an update: optax transformations are wrapped."""
    if isinstance(optimiser, AbstractUpdate):
        return optimiser
    if isinstance(optimiser, optax.GradientTransformation):
        return GradientUpdate(optimiser)
    raise TypeError(
        f"sciml.fit: {where} must be an optax.GradientTransformation such as "
        "optax.adam(1e-3) or optax.lbfgs(), or an update such as "
        f"sciml.ensemble.ESMDA(); got {optimiser!r} ({type(optimiser).__name__}). "
        "Strategies are objects, not strings."
    )
