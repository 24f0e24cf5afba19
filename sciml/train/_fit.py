"""`sciml.fit`: the one training loop every model in sciml is trained by.

Design (see DESIGN.md, "The shared loop"):

- The model is partitioned once into trainable leaves (the filter spec), frozen
  arrays (passed to the compiled program, never baked in as constants) and static
  non-array leaves (part of the program).
- One compiled program runs `n` optimiser steps in a `lax.while_loop` whose trip count
  `n` is a *runtime* argument, so the same executable serves every chunk length:
  one step (to measure compile time), then chunks sized to take a fraction of a
  second. A dynamic-length loop compiled as fast as a single jitted step here and ran
  faster (benchmarks/fit_overhead.py), because Python dispatch leaves the hot loop.
  Since every chunk runs the same executable, results do not depend on how the
  steps were chunked, which is what makes resume bit-exact.
- Python work (progress bar, history, callbacks, checkpoints) happens between chunks.
- Per-step loss terms are written into a small on-device buffer inside the loop and
  fetched once per chunk.
- A step whose loss, gradient or updated parameters are non-finite is not applied;
  the loop stops there and `fit` raises `DivergenceError` carrying the last finite
  model.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import math
import os
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from . import _checkpoint
from ._data import AbstractData, FixedData, Minibatches, NoData, as_data
from .ensemble._methods import (
    ENSEMBLE_TERMS as _ENSEMBLE_TERMS,
    AbstractEnsembleMethod as _EnsembleMethod,
    size as _ensemble_size,
)


PyTree = Any

# Rows of the on-device history buffer, i.e. the most steps one chunk may run.
_BUFFER = 4096
# Wall time a chunk aims for: short enough for a live progress bar, long enough that
# the per-chunk host round trip is negligible.
_CHUNK_SECONDS = 0.25
# The step counter of the compiled loop is an int32: no run may count past it.
_MAX_STEPS = 2**31 - 1


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

    - `optimiser`: any `optax.GradientTransformation`, `optax.lbfgs()` included.
    - `steps`: number of optimiser steps in this stage.
    - `loss`: optional loss for this stage only (e.g. a different loss weight);
      defaults to `fit`'s `loss`.
    - `data`: optional data for this stage only; defaults to `fit`'s `data`.
    """

    optimiser: optax.GradientTransformation
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


# ----------------------------------------------------------------------------------
# The compiled program


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if eqx.is_inexact_array(x)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.stack(leaves).all()


class _Identity:
    """Hashes and compares by identity (holding the object, so its id stays unique)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.obj is self.obj


_PLAIN = (type(None), bool, int, str, bytes, np.dtype)
_TRUSTED = ("optax",)


class _Unkeyable(Exception):
    pass


def _optimiser_key(optimiser):
    """A hashable snapshot of an optimiser by what it computes, so one rebuilt with the
    same arguments (`optax.adam(1e-3)` written inline in a second call) finds the
    compiled program of the first.

    Only optax's own functions are compared by code, defaults and closure values
    (their globals are optax's modules, taken as constant); plain values and tuples,
    lists and dicts of them by value, jax arrays (immutable) and classes by identity.
    Anything else (a user's function, which may read a global that changed; a numpy
    array or an object that may be mutated in place) keys the whole optimiser by
    identity, as before: a program is never reused for an optimiser that could differ.
    """
    try:
        return ("optax", _snapshot(optimiser, {}))
    except _Unkeyable:
        return ("id", _Identity(optimiser))


def _snapshot(obj, seen):
    if isinstance(obj, float):  # by bits: -0.0 apart from 0.0, NaN equal to itself
        return ("v", type(obj), float.hex(obj))
    if isinstance(obj, complex):
        return ("v", type(obj), float.hex(obj.real), float.hex(obj.imag))
    if isinstance(obj, _PLAIN):
        return ("v", type(obj), obj)
    if isinstance(obj, type | jax.Array):
        return ("id", _Identity(obj))
    if id(obj) in seen:  # a closure that refers to itself
        return ("cycle", seen[id(obj)])
    seen[id(obj)] = len(seen)

    def rec(x):
        return _snapshot(x, seen)

    if isinstance(obj, types.FunctionType):
        if (obj.__module__ or "").split(".")[0] not in _TRUSTED:
            raise _Unkeyable
        return ("fn", obj.__code__, rec(obj.__defaults__), rec(obj.__kwdefaults__),
                _checkpoint.closure(obj, rec), rec(obj.__dict__ or None))
    if isinstance(obj, functools.partial):
        return ("partial", rec(obj.func), rec(obj.args), rec(obj.keywords or None))
    if type(obj) in (tuple, list) or (isinstance(obj, tuple) and hasattr(obj, "_fields")):
        return ("seq", type(obj), tuple(rec(x) for x in obj))
    if type(obj) is dict:
        return ("dict", tuple((rec(k), rec(v)) for k, v in obj.items()))
    raise _Unkeyable


class _Program:
    """The static half of one training stage: hashable, so `jax.jit` caches on it.

    Two `fit` calls with the same loss, optimiser, model structure and data layout
    build equal programs and reuse one compiled executable.
    """

    def __init__(
        self,
        *,
        loss,
        optimiser,
        static,
        data_static,
        has_aux,
        aux_names,
        pass_step,
        linesearch,
        cache_value,
        hist_dtype,
        batch_sharding,
        uses_key=True,
        recorders=(),
    ):
        self.loss = loss
        self.optimiser = optimiser
        self.static = static
        self.data_static = data_static
        self.has_aux = has_aux
        self.aux_names = aux_names
        self.pass_step = pass_step
        self.uses_key = uses_key
        self.linesearch = linesearch
        self.cache_value = cache_value
        self.hist_dtype = hist_dtype
        self.batch_sharding = batch_sharding
        self.ensemble = isinstance(optimiser, _EnsembleMethod)
        # (static part of fn, every) per recorder; the arrays of fn are in dyn["rec"].
        self.recorders = recorders
        rec_leaves, rec_def = jax.tree.flatten(recorders)
        static_leaves, static_def = jax.tree.flatten(static)
        data_leaves, data_def = jax.tree.flatten(data_static)
        self._key = (
            loss,
            optimiser if self.ensemble else _optimiser_key(optimiser),
            static_def,
            tuple(static_leaves),
            data_def,
            tuple(data_leaves),
            has_aux,
            aux_names,
            pass_step,
            uses_key,
            linesearch,
            cache_value,
            np.dtype(hist_dtype).str,
            batch_sharding,
            rec_def,
            tuple(rec_leaves),
        )
        try:
            self._hash = hash(self._key)
        except TypeError:
            # Non-array leaves are part of the compiled program, so they must hash.
            for where, leaves in (("model", static_leaves), ("data", data_leaves),
                                  ("recorder", rec_leaves)):
                for leaf in leaves:
                    try:
                        hash(leaf)
                    except TypeError:
                        raise TypeError(
                            f"sciml.fit: a non-array leaf of the {where} is a "
                            f"{type(leaf).__name__}, which cannot be hashed; non-array leaves "
                            "are part of the compiled program. Store it as an array, as a "
                            "hashable value (a tuple, not a list or set), or outside the "
                            "pytree."
                        ) from None
            raise

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (isinstance(other, _Program) and self._key == other._key)

    def call_loss(self, loss_arrays, model, batch, key, step):
        kwargs = {"step": step} if self.pass_step else {}
        loss = eqx.combine(loss_arrays, self.loss)
        out = loss(model, batch, key=key, **kwargs)
        if self.has_aux:
            value, aux = out
        else:
            value, aux = out, {}
        return value, aux

    def _step_parts(self, dyn, state):
        """Batch, key and objective of the current step (shared by step and diagnosis)."""
        step = state["step"]
        if self.linesearch:
            batch, data_state = dyn["batch"], state["data_state"]
            key = dyn["key_loss"]
        else:
            source = eqx.combine(dyn["data"], self.data_static)
            batch, data_state = source.batch(state["data_state"], dyn["key_data"], step)
            # A loss that ignores its key gets the same one every step (see `_trace_loss`).
            key = jax.random.fold_in(dyn["key_loss"], step) if self.uses_key else dyn["key_loss"]
        if self.batch_sharding is not None and batch is not None:
            batch = jax.tree.map(
                lambda x: jax.lax.with_sharding_constraint(x, self.batch_sharding)
                if jnp.ndim(x) > 0
                else x,
                batch,
            )

        def objective(p, frozen=dyn["frozen"]):
            model = eqx.combine(p, frozen, self.static)
            return self.call_loss(dyn["loss"], model, batch, key, step)

        return objective, data_state, key

    def _update(self, objective, params, opt_state, key, frozen):
        if self.ensemble:
            return self._ensemble_update(objective, params, opt_state, key, frozen)

        def value_fn(p):
            return objective(p)[0]

        if self.cache_value:
            # A line search already evaluated value and gradient at the accepted point.
            value, grads = optax.value_and_grad_from_state(value_fn)(params, state=opt_state)
            aux = objective(params)[1] if self.has_aux else {}
        else:
            (value, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
        tx = optax.with_extra_args_support(self.optimiser)
        updates, new_opt_state = tx.update(
            grads, opt_state, params, value=value, grad=grads, value_fn=value_fn
        )
        return value, aux, grads, optax.apply_updates(params, updates), new_opt_state

    def _ensemble_update(self, objective, params, opt_state, key, frozen):
        # Every member sees the same batch and loss key; no gradients are taken.
        res, aux = jax.vmap(objective)(params, frozen)
        res = res.reshape(res.shape[0], -1)
        ok = jnp.all(jnp.isfinite(res), axis=1)
        n_ok = jnp.sum(ok)

        def ok_mean(x):  # mean over members with a finite forecast (NaN if none)
            x = x.reshape(x.shape[0], -1).mean(axis=1) if x.ndim > 1 else x
            return jnp.sum(jnp.where(ok, x, 0.0)) / n_ok

        # An update needs two finite forecasts; with fewer the step is non-finite, and
        # the divergence message names `ensemble_failed`.
        value = jnp.where(n_ok >= 2, ok_mean(jnp.mean(res**2, axis=1)), jnp.nan)
        mean_res = jnp.sum(jnp.where(ok[:, None], res, 0.0), axis=0) / n_ok
        flat = jax.vmap(lambda p: ravel_pytree(p)[0])(params)
        terms = {k: ok_mean(v) for k, v in aux.items()}
        terms.update(
            ensemble_failed=jnp.sum(~ok).astype(value.dtype),
            ensemble_mean_misfit=jnp.mean(mean_res**2),
            ensemble_spread=jnp.mean(jnp.std(flat, axis=0, ddof=1)).astype(value.dtype),
        )
        new_params, new_state = self.optimiser.update(
            params, res, opt_state, key=jax.random.fold_in(key, 0x5EED)
        )
        return value, terms, None, new_params, new_state

    def one_step(self, dyn, state, i):
        # The hot path checks one scalar: a non-finite loss stops the loop. Which part
        # failed, and the last finite model, are worked out on the host afterwards by
        # replaying the chunk (see `_recover`), so a healthy step pays nothing for the
        # guard.
        objective, data_state, key = self._step_parts(dyn, state)
        value, aux, _, params, opt_state = self._update(
            objective, state["params"], state["opt_state"], key, dyn["frozen"]
        )
        row = jnp.stack(
            [jnp.asarray(value, self.hist_dtype)]
            + [jnp.asarray(aux[k], self.hist_dtype) for k in self.aux_names]
        )
        step = state["step"] + 1
        return dict(
            params=params,
            opt_state=opt_state,
            data_state=data_state,
            step=step,
            finite=jnp.isfinite(value),
            hist=state["hist"].at[i].set(row),
            **self._record(dyn, state, params, step),
        )

    def _record(self, dyn, state, params, step):
        """Evaluates each recorder whose cadence divides `step` into its buffer."""
        if not self.recorders:
            return dict(rec=state["rec"], rec_n=state["rec_n"])
        model = eqx.combine(params, dyn["frozen"], self.static)
        bufs, counts = [], []
        for arrays, (fn_static, every), buf, n in zip(
            dyn["rec"], self.recorders, state["rec"], state["rec_n"]
        ):
            fn = eqx.combine(arrays, fn_static)

            def write(carry, fn=fn):
                b, c = carry
                return b.at[c].set(jnp.asarray(fn(model), b.dtype)), c + 1

            buf, n = jax.lax.cond(step % every == 0, write, lambda carry: carry, (buf, n))
            bufs.append(buf)
            counts.append(n)
        return dict(rec=tuple(bufs), rec_n=tuple(counts))

    def diagnose(self, dyn, state):
        """Finiteness of the loss, gradient and update of one step (after a divergence)."""
        objective, _, key = self._step_parts(dyn, state)
        value, aux, grads, params, _ = self._update(
            objective, state["params"], state["opt_state"], key, dyn["frozen"]
        )
        return jnp.isfinite(value), _all_finite(grads), _all_finite(params)


def _run_impl(program: _Program, dyn, state, n):
    # Recorder buffers are filled from row 0 in every chunk.
    state = dict(state, rec_n=tuple(jnp.zeros_like(c) for c in state["rec_n"]))

    def cond(carry):
        i, st = carry
        return (i < n) & st["finite"]

    def body(carry):
        i, st = carry
        return i + 1, program.one_step(dyn, st, i)

    return jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), state))


# No buffer donation: the input state of a chunk stays alive as the snapshot that a
# divergence is replayed from.
_run = jax.jit(_run_impl, static_argnums=0)
_diagnose = jax.jit(lambda program, dyn, state: program.diagnose(dyn, state), static_argnums=0)


def _recover(program, dyn, snapshots, bad_step):
    """The state at step `bad_step - 1` (last finite loss) and what went wrong next.

    `snapshots` are `(first_step, state)` pairs of recent chunk starts. Replaying with
    the same executable reproduces the original steps bit for bit.
    """
    target = max(bad_step - 1, 0)
    usable = [s for s in snapshots if s[0] <= target]
    if not usable:  # the first step of a stage: its start state is all there is
        return min(snapshots, key=lambda s: s[0])[1], 1
    start, snap = max(usable, key=lambda s: s[0])
    _, state = _run(program, dyn, snap, jnp.asarray(target - start, jnp.int32))
    if bad_step == 0:
        return state, 1
    loss_ok, grad_ok, update_ok = (bool(x) for x in _diagnose(program, dyn, state))
    if not loss_ok:  # only if the replay differs, which it should not
        return state, 1
    if not grad_ok:
        return state, 2
    if not update_ok:
        return state, 3
    return state, 1


# ----------------------------------------------------------------------------------
# Input checks


def _stored_value(opt_state, name="value"):
    """The objective value (or `name`) a line search keeps in its state (None if none)."""
    try:
        return optax.tree.get(opt_state, name, None)
    except KeyError:  # several line searches chained: do not reuse their values
        return None


def _check_steps(steps, where):
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer):
        raise TypeError(f"sciml.fit: {where} must be a positive int, got {steps!r}.")
    if steps <= 0:
        raise ValueError(
            f"sciml.fit: {where} must be a positive number of optimiser steps, got {steps}."
        )


def _check_optimiser(opt, where):
    if not isinstance(opt, optax.GradientTransformation | _EnsembleMethod):
        raise TypeError(
            f"sciml.fit: {where} must be an optax.GradientTransformation such as "
            f"optax.adam(1e-3) or optax.lbfgs(), or an ensemble method such as "
            f"sciml.ensemble.ESMDA(); got {opt!r} ({type(opt).__name__}). "
            "Strategies are objects, not strings."
        )


def _normalise_stages(optimiser, steps, loss, data):
    if isinstance(optimiser, Stage):
        optimiser = [optimiser]
    if isinstance(optimiser, str | bytes):
        _check_optimiser(optimiser, "`optimiser`")
    if isinstance(optimiser, Sequence) and not isinstance(
        optimiser, optax.GradientTransformation | _EnsembleMethod
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
            _check_optimiser(st.optimiser, f"`optimiser[{i}].optimiser`")
            _check_steps(st.steps, f"`optimiser[{i}].steps`")
            stages.append(st)
    else:
        _check_optimiser(optimiser, "`optimiser`")
        if steps is None:
            raise TypeError("sciml.fit: missing `steps=`, the number of optimiser steps.")
        _check_steps(steps, "`steps`")
        stages = [Stage(optimiser, int(steps))]
    total = sum(int(st.steps) for st in stages)
    if total > _MAX_STEPS:
        raise ValueError(
            f"sciml.fit: the stages add up to {total} steps, more than the step counter of "
            f"the compiled loop holds (int32, at most {_MAX_STEPS}). Train in several fit "
            "calls, each starting from the previous result's model."
        )
    out = []
    for st in stages:
        out.append(
            (
                st.optimiser,
                int(st.steps),
                st.loss if st.loss is not None else loss,
                st.data if st.has_data else data,
            )
        )
    return out


def _normalise_key(key):
    if isinstance(key, jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return key
    raise TypeError(
        "sciml.fit: `key` must be a single JAX PRNG key, e.g. jax.random.key(0); "
        f"got {key!r}."
    )


def _key_data(key):
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return [int(x) for x in np.asarray(key).ravel()]


def _accepts_step(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "step" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        or p.kind == p.VAR_KEYWORD
        for p in params
    )


def _describe(tree) -> str:
    return str(jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", tree))


def _check_loss(loss, model, batch, key, pass_step):
    if not callable(loss):
        raise TypeError(
            f"sciml.fit: `loss` must be a function loss(model, batch, *, key), got {loss!r}."
        )
    kwargs = {"step": jnp.asarray(0, jnp.int32)} if pass_step else {}
    try:
        out, uses_key = _trace_loss(loss, model, batch, key, kwargs)
    except Exception as e:
        shapes = "None" if batch is None else _describe(jax.eval_shape(lambda: batch))
        raise ValueError(
            "sciml.fit: calling `loss(model, batch, key=key)` on the first batch failed "
            f"with {type(e).__name__}: {e}\nThe batch has shapes {shapes}. Check that "
            "`data` matches what the loss expects."
        ) from e
    has_aux = isinstance(out, tuple)
    if has_aux:
        if len(out) != 2 or not isinstance(out[1], dict):
            raise ValueError(
                "sciml.fit: `loss` must return a scalar or (scalar, dict of scalars); it "
                f"returned a tuple of {len(out)} items: {out}."
            )
        value, aux = out
    else:
        value, aux = out, {}
    if not isinstance(value, jax.ShapeDtypeStruct) or value.shape != ():
        shape = getattr(value, "shape", type(value).__name__)
        raise ValueError(
            "sciml.fit: `loss` must return a scalar (shape ()), but it returned shape "
            f"{shape}. Reduce it, e.g. with jnp.mean(...)."
        )
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise ValueError(f"sciml.fit: `loss` must return a float, got dtype {value.dtype}.")
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
    if "loss" in aux or "step" in aux or "time" in aux or "stage" in aux:
        raise ValueError(
            "sciml.fit: aux terms may not be called 'loss', 'step', 'stage' or 'time' "
            f"(those are history columns); got {sorted(aux)}."
        )
    return has_aux, tuple(sorted(aux)), value.dtype, uses_key


def _trace_loss(loss, model, batch, key, kwargs):
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


def _check_residual_loss(loss, model, batch, key, pass_step):
    """Checks the loss of an ensemble stage: a residual vector per member, not a scalar."""
    if not callable(loss):
        raise TypeError(
            f"sciml.fit: `loss` must be a function loss(member, batch, *, key), got {loss!r}."
        )
    kwargs = {"step": jnp.asarray(0, jnp.int32)} if pass_step else {}
    one = jax.tree.map(lambda x: x[0] if eqx.is_array(x) else x, model)
    try:
        out = eqx.filter_eval_shape(lambda m, b, k: loss(m, b, key=k, **kwargs), one, batch, key)
    except Exception as e:
        raise ValueError(
            "sciml.fit: with an ensemble method, `loss(member, batch, key=key)` is called on "
            f"ONE member (the ensemble without its leading axis); that call failed with "
            f"{type(e).__name__}: {e}"
        ) from e
    has_aux = isinstance(out, tuple)
    value, aux = out if has_aux else (out, {})
    if has_aux and (len(out) != 2 or not isinstance(aux, dict)):
        raise ValueError(
            "sciml.fit: an ensemble `loss` must return residuals or (residuals, dict of "
            f"scalars); got a tuple of {len(out)} items."
        )
    if not isinstance(value, jax.ShapeDtypeStruct) or value.size < 1 or not jnp.issubdtype(
        value.dtype, jnp.floating
    ):
        raise ValueError(
            "sciml.fit: with an ensemble method the loss must return the member's whitened "
            "residual vector, (prediction - observation) / noise_std, as a float array; got "
            f"{getattr(value, 'shape', type(value).__name__)}."
        )
    for name, v in aux.items():
        if not isinstance(name, str) or not isinstance(v, jax.ShapeDtypeStruct) or v.shape:
            raise ValueError(
                f"sciml.fit: the aux term {name!r} returned by `loss` must be a scalar."
            )
    reserved = {"loss", "step", "stage", "time", *_ENSEMBLE_TERMS}
    if reserved & set(aux):
        raise ValueError(
            f"sciml.fit: aux terms may not be called {sorted(reserved)} (history columns); "
            f"got {sorted(aux)}."
        )
    # The analysis draws fresh perturbations every step: always a per-step key.
    return has_aux, tuple(sorted(aux)) + _ENSEMBLE_TERMS, value.dtype, True


def _build_recorder(i, cb, model):
    """`(fn arrays, fn static, every, output shape)` of a callback's recorder, or None."""
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
    _check_steps(every, f"the `every` returned by {where}")
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
    return arrays, static, int(every), shape


# ----------------------------------------------------------------------------------
# Devices


def _make_mesh(devices):
    if devices is None:
        return None
    if isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        available = jax.devices()
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"sciml.fit: `devices={devices}` but {len(available)} device(s) are "
                "available. On a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                "(set before importing jax) makes N devices."
            )
        devices = available[:devices]
    devices = list(devices)
    if not devices:
        raise ValueError("sciml.fit: `devices` is empty.")
    return jax.sharding.Mesh(np.asarray(devices), ("batch",))


def _check_batch_sharding(batch_shape, ndev, what):
    for path, leaf in jax.tree_util.tree_leaves_with_path(batch_shape):
        if leaf.ndim == 0:
            continue
        if leaf.shape[0] % ndev:
            raise ValueError(
                f"sciml.fit: data parallelism over {ndev} devices splits the leading "
                f"(batch) axis, but {what} leaf {jax.tree_util.keystr(path)} has shape "
                f"{leaf.shape}. Make the batch size a multiple of {ndev}."
            )


# ----------------------------------------------------------------------------------
# History


class _History:
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


# ----------------------------------------------------------------------------------
# The loop


def fit(
    model: PyTree,
    loss: Callable,
    optimiser: optax.GradientTransformation | Sequence[Stage],
    *,
    steps: int | None = None,
    key: jax.Array,
    data: Any = None,
    trainable: Any = eqx.is_inexact_array,
    callbacks: Sequence[Callable] = (),
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    devices: int | Sequence[jax.Device] | None = None,
    progress: bool = True,
) -> FitResult:
    """Trains any equinox pytree with any optax optimiser.

    **Arguments:**

    - `model`: a pytree (usually an `eqx.Module`) whose inexact-array leaves are the
      parameters: network weights, eigenvalues, kinetic constants, time steps alike.
    - `loss`: `loss(model, batch, *, key) -> scalar` or `-> (scalar, aux)` where `aux`
      is a dict of named scalar terms, recorded in the history. If it accepts a `step`
      keyword it also receives the global step (an int32 array), for weight schedules.
    - `optimiser`: an `optax.GradientTransformation` (run for `steps` steps), or a
      sequence of `sciml.Stage(optimiser, steps)` run one after the other (e.g. Adam,
      then `optax.lbfgs()`). A later call with the same shapes, the same loss object
      and an equal optimiser reuses the compiled program: an optax optimiser rebuilt
      with the same plain arguments is equal (its functions compare by code and closure
      values); one holding a function of yours compares by identity. Line-search
      optimisers get `value`, `grad` and
      `value_fn`; a line-search stage optimises one fixed objective (its batch and
      loss key are drawn once at the stage start), as quasi-Newton updates need.
    - `steps`: number of optimiser steps (only with a single optimiser).
    - `key`: PRNG key. The loss key and the batch of step `k` are derived from it and
      `k`, so the same key gives the same numbers, and a resumed run sees the same
      keys and batches as an uninterrupted one.
    - `data`: `None` (the loss samples its own points from its key), a pytree of arrays
      used whole, `sciml.Minibatches(arrays, batch_size)` (reshuffled every epoch), or
      a resampler `fn(key) -> batch` called every step.
    - `trainable`: filter spec selecting the leaves to train: a callable
      `leaf -> bool` or a pytree of bools shaped like `model`
      (default: every inexact array). Other leaves are left untouched. Per-group
      learning rates come from `optax.multi_transform` (see `sciml.param_labels`).
    - `callbacks`: callables `cb(info: sciml.FitInfo) -> bool | None` run between
      chunks of compiled steps; returning `True` stops training. A callback with an
      integer attribute `every` runs exactly every `every` steps. A callback that
      watches the weights more often than it needs to act can have a method
      `recorder(model) -> (fn, every)`: `fn(model)` (a JAX function, or an equinox
      module whose arrays become arguments of the compiled step) returns a small
      floating-point array and is evaluated *inside* the compiled loop after every
      `every`-th step, so it costs no chunk boundaries; the callback receives the
      values in `info.records` (e.g. `sciml.koopman.KoopmanMonitor`).
    - `checkpoint`: a directory to save the training state to (model, optimiser state,
      history), every `checkpoint_every` steps, at the end of each stage and when a
      run diverges. A path that is a file, or a directory holding anything but a
      checkpoint, is refused before training.
    - `checkpoint_every`: steps between checkpoints (default: stage ends only).
    - `resume`: if `True` and `checkpoint` exists, continue from it; the result is
      bit for bit that of an uninterrupted run with the same arguments. Resuming with
      another optimiser, other data, other loss terms or other trainable leaves than
      the checkpoint was written with is refused, naming what differs.
    - `overwrite`: if `True`, start afresh and replace an existing checkpoint. Without
      `resume` or `overwrite`, an existing checkpoint is refused, never overwritten.
    - `devices`: data parallelism: a number of devices or a list of them. The batch
      axis (leading axis of every batch leaf) is sharded over them and the parameters
      are replicated. Multi-host: call `jax.distributed.initialize()` first, then
      every process runs the same call with `devices=jax.device_count()`; process
      0 alone shows progress and writes checkpoints (resuming needs them on a file
      system every process reads).
    - `progress`: show a progress bar with the current loss terms.

    **Returns:**

    A `sciml.FitResult` with `.model`, `.history`, `.opt_state`, `.stopped` and
    `.timings`.

    **Raises:**

    `sciml.DivergenceError` (a `FloatingPointError`) if a step makes the loss,
    gradient or parameters non-finite; it names the step and terms and carries the
    last finite model (also saved to `checkpoint` if given).
    """
    t_start = time.perf_counter()
    key = _normalise_key(key)
    stages = _normalise_stages(optimiser, steps, loss, data)
    if checkpoint_every is not None:
        _check_steps(checkpoint_every, "`checkpoint_every`")
    if (resume or overwrite) and checkpoint is None:
        flag = "resume" if resume else "overwrite"
        raise ValueError(f"sciml.fit: `{flag}=True` needs `checkpoint=` (a directory).")
    resume_from = None
    if checkpoint is not None:
        resume_from = _checkpoint.prepare(checkpoint, resume=resume, overwrite=overwrite)
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"sciml.fit: `callbacks[{i}]` is not callable: {cb!r}.")
        every = getattr(cb, "every", None)
        if every is not None:
            _check_steps(every, f"`callbacks[{i}].every`")
    recorders, rec_index = [], []  # rec_index[i]: callback i's recorder, or None
    for i, cb in enumerate(callbacks):
        r = _build_recorder(i, cb, model)
        rec_index.append(None if r is None else len(recorders))
        if r is not None:
            recorders.append(r)
    rec_arrays = tuple(r[0] for r in recorders)
    rec_static = tuple((r[1], r[2]) for r in recorders)

    try:
        params, rest = eqx.partition(model, trainable)
    except Exception as e:
        raise ValueError(
            "sciml.fit: `trainable` must be a callable leaf -> bool or a pytree of bools "
            f"shaped like `model`; partitioning failed with: {e}"
        ) from e
    frozen, static = eqx.partition(rest, eqx.is_array)
    n_trainable = sum(
        x.size for x in jax.tree.leaves(params) if eqx.is_array(x)
    )
    if n_trainable == 0:
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

    mesh = _make_mesh(devices)
    ndev = 1 if mesh is None else mesh.size
    P, NamedSharding = jax.sharding.PartitionSpec, jax.sharding.NamedSharding
    replicated = None if mesh is None else NamedSharding(mesh, P())
    batch_sharding = None if mesh is None else NamedSharding(mesh, P("batch"))

    key_loss, key_data, key_stage = jax.random.split(key, 3)

    # Build and check every stage before any training starts.
    plans = []
    for s, (tx, n_steps, stage_loss, stage_data) in enumerate(stages):
        source: AbstractData = as_data(stage_data)
        ensemble = isinstance(tx, _EnsembleMethod)
        if ensemble:
            n_members = _ensemble_size(model)
            # The method configured for this stage (EnKF infers its inflation from it).
            tx = tx.for_stage(n_steps, source, f"the steps of stage {s}")
            if mesh is not None and n_members % ndev:
                raise ValueError(
                    f"sciml.fit: `devices=` shards an ensemble's {n_members} members over "
                    f"{ndev} devices; make the number of members a multiple of {ndev}."
                )
        if mesh is not None and isinstance(source, NoData) and not ensemble:
            raise ValueError(
                "sciml.fit: `devices=` shards the batch axis of `data`, but `data=None`. "
                "Pass the points as data (an array pytree, Minibatches or a resampler)."
            )
        opt_state_shape = jax.eval_shape(tx.init, params)
        linesearch = _stored_value(opt_state_shape) is not None
        stage_key = jax.random.fold_in(key_stage, s)
        if linesearch:
            batch0 = source.fixed_batch(key_data)
        else:
            batch0, _ = source.batch(source.init(key_data, 0), key_data, jnp.asarray(0))
        pass_step = _accepts_step(stage_loss)
        # The value and gradient a line search kept at the accepted point are reused as
        # the next step's, unless one of them is not kept (backtracking's default
        # store_grad=False) or the objective changes with the step.
        cache_value = (
            linesearch and _stored_value(opt_state_shape, "grad") is not None and not pass_step
        )
        check = _check_residual_loss if ensemble else _check_loss
        has_aux, aux_names, value_dtype, uses_key = check(
            stage_loss, model, batch0, key_loss, pass_step
        )
        if mesh is not None and batch0 is not None and not ensemble:
            _check_batch_sharding(jax.eval_shape(lambda: batch0), ndev, "the batch")
        data_arrays, data_static = eqx.partition(source, eqx.is_array)
        # A loss may be a pytree holding arrays (e.g. the bound method `problem.loss` of
        # an equinox module): its arrays are arguments, its structure keys the program.
        loss_arrays, loss_static = eqx.partition(stage_loss, eqx.is_array)
        program = _Program(
            loss=loss_static,
            optimiser=tx,
            static=static,
            data_static=data_static,
            has_aux=has_aux,
            aux_names=aux_names,
            pass_step=pass_step,
            uses_key=uses_key,
            linesearch=linesearch,
            cache_value=cache_value,
            hist_dtype=jnp.result_type(value_dtype),
            # An ensemble shards its members, not the batch (see `member_sharding`).
            batch_sharding=None if ensemble else batch_sharding,
            recorders=rec_static,
        )
        plans.append(
            dict(
                tx=tx,
                steps=n_steps,
                program=program,
                source=source,
                data_arrays=data_arrays,
                loss_arrays=loss_arrays,
                batch0=batch0 if linesearch else None,
                key_loss=stage_key if linesearch else key_loss,
                aux_names=aux_names,
            )
        )
    boundaries = np.cumsum([0] + [p["steps"] for p in plans]).tolist()
    total_steps = boundaries[-1]

    history = _History([p["aux_names"] for p in plans])
    start_stage, start_step, loaded_opt_state = 0, 0, None
    ckpt_path = None if checkpoint is None else os.fspath(checkpoint)
    meta_common = dict(
        version=_checkpoint.VERSION,
        boundaries=boundaries,
        key=_key_data(key),
    )
    if ckpt_path is not None:
        meta_common["fingerprint"] = _checkpoint.fingerprint(
            params, [(p["tx"], p["aux_names"], p["source"]) for p in plans]
        )
    if resume_from is not None:
        meta = _checkpoint.read_meta(resume_from)
        start_stage, start_step = meta["stage"], meta["step"]
        _check_resumable(resume_from, meta, meta_common)
        like = {"params": params, "opt_state": plans[start_stage]["tx"].init(params)}
        loaded = _checkpoint.read_state(resume_from, like)
        params, loaded_opt_state = loaded["params"], loaded["opt_state"]
        history.load(_checkpoint.read_history(resume_from, meta))

    def put(tree, sharding):
        if sharding is None:
            return tree
        return jax.device_put(tree, sharding)

    # Our own copies: the loop donates its state buffers.
    params = jax.tree.map(lambda x: jnp.array(x, copy=True), params)
    if mesh is not None and any(isinstance(p["tx"], _EnsembleMethod) for p in plans):
        # Large ensembles: each device holds and forecasts a slice of the members; the
        # Kalman update's sums over members become cross-device reductions.
        member_sharding = NamedSharding(mesh, P("batch"))
        params = put(params, member_sharding)
        frozen = put(frozen, member_sharding)
    else:
        params = put(params, replicated)
        frozen = put(frozen, replicated)

    progress_bar = None
    if progress and jax.process_index() == 0:  # one bar per run, not per host
        from tqdm.auto import tqdm

        progress_bar = tqdm(
            total=total_steps, initial=start_step, dynamic_ncols=True, leave=True, unit="step"
        )

    compile_time = 0.0
    steady_steps, steady_time = 0, 0.0
    stopped = None
    opt_state = loaded_opt_state
    step = start_step
    last_saved = start_step if resume_from is not None else None

    def full_model(p):
        return eqx.combine(p, frozen, static)

    def save(stage_index, st):
        nonlocal last_saved
        if ckpt_path is None:
            return
        _checkpoint.save(
            ckpt_path,
            params=st["params"],
            opt_state=st["opt_state"],
            meta=dict(meta_common, stage=stage_index, step=int(st["step"])),
            # After a divergence the saved state is behind the history (its steps are
            # run again on resume).
            history=history.arrays(before=int(st["step"])),
        )
        last_saved = int(st["step"])

    try:
        for s, plan in enumerate(plans):
            if s < start_stage:
                continue
            lo, hi = boundaries[s], boundaries[s + 1]
            if s == start_stage and loaded_opt_state is not None:
                opt_state = loaded_opt_state
            else:
                # Copied: an optimiser state may alias the parameter buffers (L-BFGS
                # keeps the iterate), and the loop donates both.
                opt_state = jax.tree.map(
                    lambda x: jnp.array(x, copy=True) if eqx.is_array(x) else x,
                    plan["tx"].init(params),
                )
                step = max(step, lo)
            if step >= hi:
                continue
            source, program = plan["source"], plan["program"]
            data_arrays = plan["data_arrays"]
            if mesh is not None and data_arrays is not None:
                # A fixed batch is sharded once; minibatch pools stay replicated and each
                # gathered batch is constrained to the batch sharding inside the step.
                shard_batch = isinstance(source, FixedData) and program.batch_sharding is not None
                sharding = batch_sharding if shard_batch else replicated
                data_arrays = jax.tree.map(
                    lambda x: jax.device_put(x, sharding if jnp.ndim(x) else replicated),
                    data_arrays,
                )
                source = eqx.combine(data_arrays, eqx.partition(source, eqx.is_array)[1])
            dyn = dict(
                frozen=frozen,
                loss=put(plan["loss_arrays"], replicated),
                data=data_arrays,
                key_loss=plan["key_loss"],
                key_data=key_data,
                batch=put(plan["batch0"], batch_sharding) if plan["batch0"] is not None else None,
                rec=put(rec_arrays, replicated),
            )
            n_cols = 1 + len(plan["aux_names"])
            data_state = None if program.linesearch else source.init(key_data, step)
            state = dict(
                params=params,
                opt_state=put(opt_state, replicated),
                data_state=data_state,
                step=jnp.asarray(step, jnp.int32),
                finite=jnp.asarray(True),
                hist=put(jnp.zeros((_BUFFER, n_cols), program.hist_dtype), replicated),
                rec=put(tuple(jnp.zeros((_BUFFER // r[2] + 1, *r[3].shape), r[3].dtype)
                              for r in recorders), replicated),
                rec_n=tuple(jnp.zeros((), jnp.int32) for _ in recorders),
            )
            # Chunks are pipelined: chunk k+1 is dispatched before the results of chunk k
            # are fetched, so the host work below overlaps device work. Everything is
            # still processed in order on the exact end state of each chunk; a chunk
            # dispatched past a stop is discarded (past a divergence it runs 0 steps).
            queue = collections.deque()
            planned = step  # the step that all dispatched chunks end at
            tip = state  # the state that the next chunk starts from
            prev_input = None  # input state of the chunk before the one processed
            chunk = 1
            first = True
            last_done = None
            pending = [[] for _ in recorders]
            while step < hi:
                while planned < hi and len(queue) < (1 if first or chunk <= 8 else 2):
                    limit = hi - planned
                    if checkpoint_every is not None:
                        limit = min(limit, checkpoint_every - planned % checkpoint_every)
                    for cb in callbacks:
                        every = getattr(cb, "every", None)
                        if every is not None:
                            limit = min(limit, every - planned % every)
                    n = min(chunk, limit, _BUFFER)
                    t0 = time.perf_counter()
                    ran, out = _run(program, dyn, tip, jnp.asarray(n, jnp.int32))
                    queue.append((planned, t0, ran, out, tip))
                    planned += n
                    tip = out
                start, t0, ran, state, chunk_input = queue.popleft()
                ran, finite, rows, rec, rec_n = jax.device_get(
                    (ran, state["finite"], state["hist"], state["rec"], state["rec_n"])
                )
                t1 = time.perf_counter()
                ran = int(ran)
                if finite:
                    for j, r in enumerate(recorders):
                        every = r[2]
                        at = (start // every + 1) * every  # the chunk's first record
                        pending[j].extend(
                            (at + k * every, rec[j][k]) for k in range(int(rec_n[j]))
                        )
                busy = t1 - (t0 if last_done is None else max(t0, last_done))
                last_done = t1
                history.extend(s, step, rows[:ran], plan["aux_names"], t1 - busy - t_start,
                               t1 - t_start)
                if first:
                    first = False
                    compile_time += busy
                    chunk = 8
                elif ran:
                    steady_steps += ran
                    steady_time += busy
                    per_step = busy / ran
                    chunk = int(min(_BUFFER, max(1, _CHUNK_SECONDS / max(per_step, 1e-9))))
                last = rows[max(ran, 1) - 1]
                terms = {"loss": float(last[0])}
                terms.update({k: float(last[j + 1]) for j, k in enumerate(plan["aux_names"])})
                if progress_bar is not None:
                    progress_bar.update(ran)
                    progress_bar.set_postfix(
                        {k: f"{v:.3e}" for k, v in list(terms.items())[:5]}, refresh=False
                    )
                if not finite:
                    queue.clear()
                    bad_step = step + ran - 1
                    snapshots = [(start, chunk_input)]
                    if prev_input is not None:
                        snapshots.append(prev_input)
                    good, code = _recover(program, dyn, snapshots, bad_step)
                    params = good["params"]
                    save(s, good)
                    raise _divergence(
                        code, bad_step, terms, full_model(params), history, ckpt_path
                    )
                prev_input = (start, chunk_input)
                step += ran
                if checkpoint_every is not None and step % checkpoint_every == 0:
                    save(s, state)
                stop = False
                for cb, j in zip(callbacks, rec_index):
                    every = getattr(cb, "every", None)
                    if every is not None and step % every and step != hi:
                        continue
                    records = ()
                    if j is not None:
                        records, pending[j] = tuple(pending[j]), []
                    info = FitInfo(
                        step=step,
                        stage=s,
                        model=full_model(state["params"]),
                        loss=terms["loss"],
                        terms=terms,
                        history=history.arrays(),
                        elapsed=t1 - t_start,
                        records=records,
                        _log=history.log,
                    )
                    if cb(info) is True:
                        stop = True
                        name = getattr(cb, "__name__", type(cb).__name__)
                        stopped = f"callback {name} at step {step}"
                if stop:
                    queue.clear()
                    break
            params, opt_state = state["params"], state["opt_state"]
            if ckpt_path is not None and last_saved != step:
                save(s, state)
            if stopped:
                break
    finally:
        if progress_bar is not None:
            progress_bar.close()

    final_history = history.arrays()
    for counter in _STEP_COUNTERS.get():
        counter.append(np.bincount(final_history["stage"], minlength=len(plans)).tolist())
    return FitResult(
        model=full_model(params),
        history=final_history,
        opt_state=opt_state,
        stopped=stopped,
        timings=dict(
            compile=compile_time,
            total=time.perf_counter() - t_start,
            steps_per_second=steady_steps / steady_time if steady_time > 0 else math.nan,
        ),
    )


def _check_resumable(path, meta, now):
    """Refuses a checkpoint written by a run other than this call would make."""
    fresh = (
        "or pass overwrite=True (with resume=False) to start afresh, replacing the "
        "checkpoint"
    )
    if meta["boundaries"] != now["boundaries"]:
        raise ValueError(
            f"sciml.fit: checkpoint {path!r} was written for stages ending at steps "
            f"{meta['boundaries']}, but this call has {now['boundaries']}. Resume with the "
            f"same stages and steps, {fresh}."
        )
    if meta["key"] != now["key"]:
        raise ValueError(
            f"sciml.fit: checkpoint {path!r} was written with a different `key`; resuming "
            f"needs the same key to reproduce the same batches. Pass that key, {fresh}."
        )
    if meta["version"] < 2:  # written before fingerprints
        return
    what = _checkpoint.differences(meta["fingerprint"], now["fingerprint"])
    if what is not None:
        raise ValueError(
            f"sciml.fit: cannot resume checkpoint {path!r}: {what}. Resume with the "
            f"arguments it was written with, {fresh}."
        )


# `sciml run` reports the steps a problem trained, whatever its script does with
# `--steps`: `counting_steps` collects, per `fit` call in the block, the steps of each
# stage. Context-local, and read only after a run: it changes no result.
_STEP_COUNTERS: contextvars.ContextVar[tuple] = contextvars.ContextVar(
    "sciml_fit_step_counters", default=()
)


@contextlib.contextmanager
def counting_steps():
    """Collects the steps run by every `fit` call inside the block.

    **Returns:**

    A list, filled as the block runs, with one entry per `fit` call that returned: the
    number of steps of each of its stages (a resumed run counts its steps before the
    checkpoint too).
    """
    calls: list[list[int]] = []
    token = _STEP_COUNTERS.set(_STEP_COUNTERS.get() + (calls,))
    try:
        yield calls
    finally:
        _STEP_COUNTERS.reset(token)


def _divergence(code, bad_step, terms, model, history, ckpt_path):
    # code 1: the loss at `bad_step` is non-finite; 2/3: the gradient/update of the
    # step before it was, which made the loss at `bad_step` non-finite.
    bad_terms = [k for k, v in terms.items() if not math.isfinite(v)]
    listed = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
    nonfinite = f" Non-finite terms: {', '.join(bad_terms)}." if bad_terms else ""
    if code == 1:
        step = bad_step
        head = f"the loss became non-finite at step {step} ({listed}).{nonfinite}"
        if "ensemble_failed" in terms:
            head += (
                f" {terms['ensemble_failed']:.0f} members had a non-finite forecast; an "
                "ensemble update needs at least two finite ones. Draw the members where "
                "the loss can be evaluated (or narrow their spread)."
            )
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


def param_labels(model: PyTree, groups: dict[str, Callable], *, default: str = "default"):
    """Labels for `optax.multi_transform`, one per parameter leaf.

    **Arguments:**

    - `model`: the model (or its trainable part).
    - `groups`: `{label: where}` where `where(model)` returns the leaf or subtree that
      gets `label` (as in `eqx.tree_at`).
    - `default`: label of every other leaf.

    **Returns:**

    A function `params -> labels` for `optax.multi_transform(transforms, labels)`.

    **Example:**

    ```python
    labels = sciml.param_labels(model, {"physics": lambda m: m.log_k}, default="net")
    opt = optax.multi_transform({"net": optax.adam(1e-3), "physics": optax.adam(1e-2)}, labels)
    ```
    """

    def labels(params):
        out = jax.tree.map(lambda _: default, params)
        for label, where in groups.items():
            try:
                out = eqx.tree_at(
                    where, out, replace_fn=lambda sub: jax.tree.map(lambda _: label, sub)
                )
            except Exception as e:
                raise ValueError(
                    f"sciml.param_labels: the selector for group {label!r} does not "
                    f"select a part of the parameters: {e}"
                ) from e
        return out

    del model
    return labels


__all__ = [
    "DivergenceError",
    "FitInfo",
    "FitResult",
    "Minibatches",
    "Stage",
    "fit",
    "param_labels",
]
