"""Checks of `fit`'s arguments, all made before any training starts."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax

from ._types import Stage
from ._updates import AbstractUpdate, GradientUpdate, as_update


PyTree = Any

# The step counter of the compiled loop is an int32: no run may count past it.
MAX_STEPS = 2**31 - 1
# History columns of every run.
RESERVED = ("loss", "step", "stage", "time")


def check_steps(steps, where):
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer):
        raise TypeError(f"sciml.fit: {where} must be a positive int, got {steps!r}.")
    if steps <= 0:
        raise ValueError(
            f"sciml.fit: {where} must be a positive number of optimiser steps, got {steps}."
        )


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage as given: its update (the user's object and its `AbstractUpdate`), its
    steps, loss and data."""

    given: Any  # the optimiser or update as passed (fingerprinted in checkpoints)
    update: AbstractUpdate
    steps: int
    loss: Any
    data: Any


def _is_update(x) -> bool:
    return isinstance(x, optax.GradientTransformation | AbstractUpdate)


def normalise_stages(optimiser, steps, loss, data) -> list[StageSpec]:
    """`fit`'s `optimiser`/`steps`/`loss`/`data` as a list of checked stages."""
    if isinstance(optimiser, Stage):
        optimiser = [optimiser]
    if isinstance(optimiser, Sequence) and not isinstance(optimiser, str | bytes) and not (
        _is_update(optimiser)
    ):
        if steps is not None:
            raise ValueError(
                "sciml.fit: `steps` is given twice: once as `steps=` and once in the "
                "stages. Give each sciml.Stage its steps and leave `steps` unset."
            )
        if not optimiser:
            raise ValueError("sciml.fit: `optimiser` is an empty sequence of stages.")
        stages = []
        for i, st in enumerate(optimiser):
            if not isinstance(st, Stage):
                raise TypeError(
                    f"sciml.fit: `optimiser[{i}]` must be a sciml.Stage(optimiser, steps), "
                    f"got {st!r}."
                )
            as_update(st.optimiser, f"`optimiser[{i}].optimiser`")
            check_steps(st.steps, f"`optimiser[{i}].steps`")
            stages.append(st)
    else:
        as_update(optimiser, "`optimiser`")
        if steps is None:
            raise TypeError("sciml.fit: missing `steps=`, the number of optimiser steps.")
        check_steps(steps, "`steps`")
        stages = [Stage(optimiser, int(steps))]
    total = sum(int(st.steps) for st in stages)
    if total > MAX_STEPS:
        raise ValueError(
            f"sciml.fit: the stages add up to {total} steps, more than the step counter of "
            f"the compiled loop holds (int32, at most {MAX_STEPS}). Train in several fit "
            "calls, each starting from the previous result's model."
        )
    return [
        StageSpec(
            given=st.optimiser,
            update=as_update(st.optimiser, "`optimiser`"),
            steps=int(st.steps),
            loss=st.loss if st.loss is not None else loss,
            data=st.data if st.has_data else data,
        )
        for st in stages
    ]


def normalise_key(key):
    if isinstance(key, jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return key
    raise TypeError(
        "sciml.fit: `key` must be a single JAX PRNG key, e.g. jax.random.key(0); "
        f"got {key!r}."
    )


def key_data(key) -> list[int]:
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return [int(x) for x in np.asarray(key).ravel()]


def accepts_step(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "step" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        or p.kind == p.VAR_KEYWORD
        for p in params
    )


def partition_model(model, trainable):
    """`(params, frozen, static)`: the trainable arrays, the other arrays, the rest."""
    try:
        params, rest = eqx.partition(model, trainable)
    except Exception as e:
        raise ValueError(
            "sciml.fit: `trainable` must be a callable leaf -> bool or a pytree of bools "
            f"shaped like `model`; partitioning failed with: {e}"
        ) from e
    frozen, static = eqx.partition(rest, eqx.is_array)
    if sum(x.size for x in jax.tree.leaves(params) if eqx.is_array(x)) == 0:
        raise ValueError(
            "sciml.fit: nothing to train: `trainable` selects no array leaves of `model`."
        )
    non_inexact = [
        str(x.dtype) if eqx.is_array(x) else type(x).__name__
        for x in jax.tree.leaves(params)
        if not eqx.is_inexact_array(x)
    ]
    if non_inexact:
        raise ValueError(
            "sciml.fit: `trainable` selects leaves that are not floating-point arrays "
            f"({', '.join(sorted(set(non_inexact)))}); only inexact arrays can train. Select "
            "with eqx.is_inexact_array (the default), and store a trainable Python float "
            "as an array (jnp.asarray(value))."
        )
    return params, frozen, static


# ----------------------------------------------------------------------------------
# The loss


@dataclasses.dataclass(frozen=True)
class LossInfo:
    """What tracing the loss once tells the loop."""

    has_aux: bool
    aux_names: tuple[str, ...]  # the history's term columns: the loss's, then the update's
    dtype: Any  # of the loss value
    uses_key: bool  # the loss reads its key


def _describe(tree) -> str:
    return str(jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", tree))


def trace_loss(loss, model, batch, key, kwargs):
    """Output shapes of the loss, and whether it reads `key` at all.

    A loss that never touches its key (fixed points, full-batch data) gets one key for
    every step: deriving a per-step key costs nothing at run time but a threefry
    computation in every compiled step (about 0.07 s of XLA compile on a small MLP).
    """
    jaxpr, out_dynamic, out_static = eqx.filter_make_jaxpr(
        lambda m, b, k: loss(m, b, key=k, **kwargs)
    )(model, batch, key)
    out = eqx.combine(out_dynamic, out_static)
    inner = jaxpr.jaxpr
    key_var = inner.invars[-1]
    var = jax.extend.core.Var
    read = {v for eqn in inner.eqns for v in eqn.invars if isinstance(v, var)}
    read |= {v for v in inner.outvars if isinstance(v, var)}
    return out, key_var in read


def check_loss(loss, update: AbstractUpdate, model, batch, key, pass_step) -> LossInfo:
    """Traces the loss once on the first batch and checks what it returns against what
    `update` takes: a scalar, or (the residual convention) a residual array."""
    if not callable(loss):
        raise TypeError(
            f"sciml.fit: `loss` must be a function loss(model, batch, *, key), got {loss!r}."
        )
    kwargs = {"step": jnp.asarray(0, jnp.int32)} if pass_step else {}
    seen = update.model_seen_by_loss(model)
    try:
        out, uses_key = trace_loss(loss, seen, batch, key, kwargs)
    except Exception as e:
        shapes = "None" if batch is None else _describe(jax.eval_shape(lambda: batch))
        who = (
            "`loss(member, batch, key=key)` is called on ONE member (the ensemble without "
            "its leading axis), and that call"
            if update.member_axis else "calling `loss(model, batch, key=key)`"
        )
        raise ValueError(
            f"sciml.fit: {who} on the first batch failed with {type(e).__name__}: {e}\n"
            f"The batch has shapes {shapes}. Check that `data` matches what the loss "
            "expects."
        ) from e
    has_aux = isinstance(out, tuple)
    what = "residual array" if update.residual else "scalar"
    if has_aux and (len(out) != 2 or not isinstance(out[1], dict)):
        raise ValueError(
            f"sciml.fit: `loss` must return a {what} or ({what}, dict of scalars); it "
            f"returned a tuple of {len(out)} items: {out}."
        )
    value, aux = out if has_aux else (out, {})
    _check_value(value, update)
    _check_aux(aux, update)
    names = tuple(sorted(aux)) + tuple(update.terms)
    return LossInfo(has_aux, names, value.dtype, uses_key or update.needs_key)


def _check_value(value, update):
    if update.residual:
        if not isinstance(value, jax.ShapeDtypeStruct) or value.ndim < 1 or (
            value.size < 1
        ) or not jnp.issubdtype(value.dtype, jnp.floating):
            raise ValueError(
                f"sciml.fit: {type(update).__name__} takes a loss that returns a residual "
                "vector r (the residual convention of sciml.train: objective ½‖r‖², so "
                "return the residuals, not their mean square; for an ensemble, the "
                "member's whitened residual "
                "vector (prediction - observation) / noise_std) as a float array, not a "
                f"scalar; got {getattr(value, 'shape', type(value).__name__)}."
            )
        return
    if not isinstance(value, jax.ShapeDtypeStruct) or value.shape != ():
        shape = getattr(value, "shape", type(value).__name__)
        raise ValueError(
            f"sciml.fit: `loss` must return a scalar (shape ()), but it returned shape "
            f"{shape}, and {_update_name(update)} takes a scalar loss. Reduce it, e.g. "
            "with jnp.mean(...); for a "
            "residual vector r, return 0.5 * jnp.sum(r**2), or train with an update that "
            "takes residuals (sciml.GaussNewton())."
        )
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise ValueError(f"sciml.fit: `loss` must return a float, got dtype {value.dtype}.")


def _update_name(update):
    if isinstance(update, GradientUpdate):
        return "an optax optimiser"
    return type(update).__name__


def _check_aux(aux, update):
    for name, v in aux.items():
        if not isinstance(name, str):
            raise ValueError(f"sciml.fit: aux keys must be strings, got {name!r}.")
        if isinstance(v, bool | int | float | np.number):
            continue  # a Python number (e.g. a constant term) is recorded as it is
        if not isinstance(v, jax.ShapeDtypeStruct) or v.shape != ():
            raise ValueError(
                f"sciml.fit: the aux term {name!r} returned by `loss` must be a scalar, got "
                f"shape {getattr(v, 'shape', type(v).__name__)}. Reduce it to one number."
            )
    reserved = set(RESERVED) | set(update.terms)
    if reserved & set(aux):
        raise ValueError(
            f"sciml.fit: aux terms may not be called {sorted(reserved)} (those are history "
            f"columns); got {sorted(aux)}."
        )


# ----------------------------------------------------------------------------------
# Callbacks and their recorders


@dataclasses.dataclass(frozen=True)
class Recorder:
    """A callback's recorder: `fn` split into arrays and static part, its cadence and the
    shape of what it returns."""

    arrays: PyTree
    static: PyTree
    every: int
    shape: jax.ShapeDtypeStruct


def check_callbacks(callbacks, model) -> tuple[list, list]:
    """`(callbacks, recorders)` with `recorders[i]` callback i's `Recorder` or None."""
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"sciml.fit: `callbacks[{i}]` is not callable: {cb!r}.")
        every = getattr(cb, "every", None)
        if every is not None:
            check_steps(every, f"`callbacks[{i}].every`")
    return callbacks, [_build_recorder(i, cb, model) for i, cb in enumerate(callbacks)]


def _build_recorder(i, cb, model) -> Recorder | None:
    make = getattr(cb, "recorder", None)
    if make is None:
        return None
    where = f"`callbacks[{i}].recorder(model)`"
    if not callable(make):
        raise TypeError(f"sciml.fit: {where} must be a method, got {make!r}.")
    out = make(model)
    if not (isinstance(out, tuple) and len(out) == 2 and callable(out[0])):
        raise TypeError(f"sciml.fit: {where} must return a pair (fn, every), got {out!r}.")
    fn, every = out
    check_steps(every, f"the `every` returned by {where}")
    try:
        shape = eqx.filter_eval_shape(fn, model)
    except Exception as e:
        raise ValueError(f"sciml.fit: the recorder of {where} fails on the model: {e}") from e
    if not (isinstance(shape, jax.ShapeDtypeStruct) and jnp.issubdtype(shape.dtype, jnp.inexact)):
        raise ValueError(
            f"sciml.fit: the recorder of {where} must return one floating-point array, "
            f"got {shape}."
        )
    arrays, static = eqx.partition(fn, eqx.is_array)
    return Recorder(arrays, static, int(every), shape)
