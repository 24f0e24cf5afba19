"""The compiled program of one stage: `n` steps of an update in a `lax.while_loop`.

The trip count `n` is a runtime argument, so one executable serves every chunk length:
one step first (to measure compile time), then chunks sized to take a fraction of a
second. A dynamic-length loop compiled as fast as a single jitted step and ran faster
(benchmarks/fit_overhead.py), because Python dispatch leaves the hot loop. Every chunk
runs the same executable, so results do not depend on how the steps were chunked, which
is what makes resume bit-exact. Per-step loss terms go into a small on-device buffer,
fetched once per chunk.

A step whose loss is non-finite stops the loop; which part failed, and the last finite
state, are worked out afterwards by replaying the chunk (`recover`), so a healthy step
pays one scalar check for the guard.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checkpoint import closure
from ._updates import AbstractUpdate, GradientUpdate, Objective


PyTree = Any


class Dynamic(eqx.Module):
    """The arrays a stage's program reads but never changes (arguments, not constants)."""

    frozen: PyTree  # the model's frozen arrays
    loss: PyTree  # arrays held by the loss (e.g. a bound method of a module)
    data: PyTree  # the data source's arrays
    key_loss: jax.Array
    key_data: jax.Array
    batch: PyTree  # the stage's one batch, for a fixed-objective stage (else None)
    rec: tuple  # arrays of each recorder


class LoopState(eqx.Module):
    """What one step hands to the next."""

    params: PyTree
    opt_state: PyTree
    data_state: PyTree
    step: jax.Array  # int32: updates done so far, over all stages
    finite: jax.Array  # False once a step's loss is non-finite
    hist: jax.Array  # (BUFFER, 1 + terms): the loss and terms of the chunk's steps
    rec: tuple  # one buffer per recorder
    rec_n: tuple  # rows filled in each recorder buffer in this chunk


# ----------------------------------------------------------------------------------
# Program identity: equal programs share one compiled executable


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


def update_key(update: AbstractUpdate):
    """A hashable key of an update by what it computes.

    An optax optimiser rebuilt with the same arguments (`optax.adam(1e-3)` written inline
    in a second call) finds the compiled program of the first: only optax's own
    functions are compared by code, defaults and closure values (their globals are
    optax's modules, taken as constant); plain values and containers of them by value,
    jax arrays (immutable) and classes by identity. Anything else (a user's function,
    which may read a global that changed; an object that may be mutated in place) keys
    the whole optimiser by identity: a program is never reused for an optimiser that
    could differ. Other updates are keyed by themselves when they hash (equinox modules
    with static fields do), else by identity.
    """
    if isinstance(update, GradientUpdate):
        try:
            return ("optax", _snapshot(update.optimiser, {}))
        except _Unkeyable:
            return ("id", _Identity(update.optimiser))
    try:
        hash(update)
    except TypeError:
        return ("id", _Identity(update))
    return ("update", update)


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
                closure(obj, rec), rec(obj.__dict__ or None))
    if isinstance(obj, functools.partial):
        return ("partial", rec(obj.func), rec(obj.args), rec(obj.keywords or None))
    if type(obj) in (tuple, list) or (isinstance(obj, tuple) and hasattr(obj, "_fields")):
        return ("seq", type(obj), tuple(rec(x) for x in obj))
    if type(obj) is dict:
        return ("dict", tuple((rec(k), rec(v)) for k, v in obj.items()))
    raise _Unkeyable


def _check_hashable(static, data_static, recorders):
    """Names the non-array leaf that stops a program from hashing."""
    for where, tree in (("model", static), ("data", data_static), ("recorder", recorders)):
        for leaf in jax.tree.leaves(tree):
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


# ----------------------------------------------------------------------------------
# The program


class Program:
    """The static half of one training stage: hashable, so `jax.jit` caches on it.

    Two `fit` calls with the same loss, update, model structure and data layout build
    equal programs and reuse one compiled executable.

    **Arguments:**

    - `loss`: the loss without its arrays (those are `Dynamic.loss`).
    - `update`: the stage's `AbstractUpdate`.
    - `static`: the model's non-array leaves.
    - `data_static`: the data source without its arrays.
    - `has_aux`, `aux_names`: whether the loss returns terms, and the history's term
      columns (the loss's and the update's).
    - `pass_step`: the loss takes `step=`.
    - `uses_key`: a fresh loss key every step (else one key for the stage).
    - `fixed`: one batch and loss key for the whole stage.
    - `hist_dtype`: dtype of the history rows.
    - `batch_sharding`: sharding the batch is constrained to (None: one device).
    - `recorders`: `(static part of fn, every)` per recorder.
    """

    def __init__(self, *, loss, update, static, data_static, has_aux, aux_names, pass_step,
                 uses_key, fixed, hist_dtype, batch_sharding, recorders=()):
        self.loss = loss
        self.update = update
        self.static = static
        self.data_static = data_static
        self.has_aux = has_aux
        self.aux_names = aux_names
        self.pass_step = pass_step
        self.uses_key = uses_key
        self.fixed = fixed
        self.hist_dtype = hist_dtype
        self.batch_sharding = batch_sharding
        self.recorders = recorders
        flat = [jax.tree.flatten(t) for t in (static, data_static, recorders)]
        self._key = (
            loss, update_key(update), has_aux, aux_names, pass_step, uses_key, fixed,
            np.dtype(hist_dtype).str, batch_sharding,
            *((treedef, tuple(leaves)) for leaves, treedef in flat),
        )
        try:
            self._hash = hash(self._key)
        except TypeError:
            _check_hashable(static, data_static, recorders)
            raise

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (isinstance(other, Program) and self._key == other._key)

    def call_loss(self, loss_arrays, model, batch, key, step):
        kwargs = {"step": step} if self.pass_step else {}
        out = eqx.combine(loss_arrays, self.loss)(model, batch, key=key, **kwargs)
        return out if self.has_aux else (out, {})

    def objective(self, dyn: Dynamic, state: LoopState):
        """The objective of the current step, the next data state and the step's key."""
        step = state.step
        if self.fixed:
            batch, data_state, key = dyn.batch, state.data_state, dyn.key_loss
        else:
            source = eqx.combine(dyn.data, self.data_static)
            batch, data_state = source.batch(state.data_state, dyn.key_data, step)
            # A loss that ignores its key gets the same one every step (see `trace_loss`).
            key = jax.random.fold_in(dyn.key_loss, step) if self.uses_key else dyn.key_loss
        if self.batch_sharding is not None and batch is not None:
            batch = jax.tree.map(
                lambda x: jax.lax.with_sharding_constraint(x, self.batch_sharding)
                if jnp.ndim(x) > 0 else x,
                batch,
            )

        def fn(p, frozen):
            model = eqx.combine(p, frozen, self.static)
            return self.call_loss(dyn.loss, model, batch, key, step)

        varies = self.pass_step or not self.fixed
        return Objective(fn, dyn.frozen, has_aux=self.has_aux, varies=varies), data_state, key

    def one_step(self, dyn: Dynamic, state: LoopState, i) -> LoopState:
        objective, data_state, key = self.objective(dyn, state)
        value, aux, params, opt_state = self.update.step(
            objective, state.params, state.opt_state, key
        )
        row = jnp.stack(
            [jnp.asarray(value, self.hist_dtype)]
            + [jnp.asarray(aux[k], self.hist_dtype) for k in self.aux_names]
        )
        step = state.step + 1
        rec, rec_n = self._record(dyn, state, params, step)
        return LoopState(
            params=params, opt_state=opt_state, data_state=data_state, step=step,
            finite=jnp.isfinite(value), hist=state.hist.at[i].set(row), rec=rec, rec_n=rec_n,
        )

    def _record(self, dyn, state, params, step):
        """Evaluates each recorder whose cadence divides `step` into its buffer."""
        if not self.recorders:
            return state.rec, state.rec_n
        model = eqx.combine(params, dyn.frozen, self.static)
        bufs, counts = [], []
        for arrays, (fn_static, every), buf, n in zip(
            dyn.rec, self.recorders, state.rec, state.rec_n
        ):
            fn = eqx.combine(arrays, fn_static)

            def write(carry, fn=fn):
                b, c = carry
                return b.at[c].set(jnp.asarray(fn(model), b.dtype)), c + 1

            buf, n = jax.lax.cond(step % every == 0, write, lambda carry: carry, (buf, n))
            bufs.append(buf)
            counts.append(n)
        return tuple(bufs), tuple(counts)

    def diagnose(self, dyn: Dynamic, state: LoopState):
        """Finiteness of the loss, gradient and update of one step (after a divergence)."""
        objective, _, key = self.objective(dyn, state)
        value = self.update.step(objective, state.params, state.opt_state, key)[0]
        grad_ok, update_ok = self.update.diagnose(
            objective, state.params, state.opt_state, key
        )
        return jnp.isfinite(value), grad_ok, update_ok


def _run_impl(program: Program, dyn: Dynamic, state: LoopState, n):
    # Recorder buffers are filled from row 0 in every chunk.
    state = dataclasses.replace(state, rec_n=tuple(jnp.zeros_like(c) for c in state.rec_n))

    def cond(carry):
        i, st = carry
        return (i < n) & st.finite & ~jnp.asarray(program.update.done(st.opt_state), bool)

    def body(carry):
        i, st = carry
        return i + 1, program.one_step(dyn, st, i)

    return jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), state))


# No buffer donation: the input state of a chunk stays alive as the snapshot that a
# divergence is replayed from.
run = jax.jit(_run_impl, static_argnums=0)
_diagnose = jax.jit(lambda program, dyn, state: program.diagnose(dyn, state), static_argnums=0)


def recover(program: Program, dyn: Dynamic, snapshots, bad_step: int):
    """The state at step `bad_step - 1` (last finite loss) and what went wrong next:
    1 the loss, 2 the gradient, 3 the update.

    `snapshots` are `(first_step, state)` pairs of recent chunk starts. Replaying with
    the same executable reproduces the original steps bit for bit.
    """
    target = max(bad_step - 1, 0)
    usable = [s for s in snapshots if s[0] <= target]
    if not usable:  # the first step of a stage: its start state is all there is
        return min(snapshots, key=lambda s: s[0])[1], 1
    start, snap = max(usable, key=lambda s: s[0])
    _, state = run(program, dyn, snap, jnp.asarray(target - start, jnp.int32))
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
