"""`sciml.fit`: the one training loop every model in sciml is trained by.

- The model is partitioned once into trainable leaves (the filter spec), frozen arrays
  (passed to the compiled program, never baked in as constants) and static non-array
  leaves (part of the program).
- Each stage runs its update's steps in chunks of one compiled program (`_program.py`);
  the progress meter, history, callbacks and checkpoints run between chunks, on the
  host, while the next chunk runs on the device.
- A step whose loss is non-finite is not applied; the loop stops there and `fit` raises
  `DivergenceError` carrying the last finite model.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _checkpoint
from ._checks import (
    LossInfo,
    StageSpec,
    accepts_step,
    check_callbacks,
    check_loss,
    check_steps,
    key_data as _key_data,
    normalise_key,
    normalise_stages,
    partition_model,
)
from ._data import AbstractData, as_data
from ._history import History
from ._program import Dynamic, LoopState, Program, recover, run
from ._progress import AbstractProgressMeter, as_meter
from ._sharding import Devices
from ._types import FitInfo, FitResult, Stage, divergence_error
from ._updates import AbstractUpdate


PyTree = Any

# Rows of the on-device history buffer, i.e. the most steps one chunk may run.
BUFFER = 4096
# Wall time a chunk aims for: short enough for a live progress bar, long enough that
# the per-chunk host round trip is negligible.
CHUNK_SECONDS = 0.25


def fit(
    model: PyTree,
    loss: Callable,
    optimiser: optax.GradientTransformation | AbstractUpdate | Sequence[Stage],
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
    progress: bool | AbstractProgressMeter = True,
) -> FitResult:
    """Trains any equinox pytree with any optax optimiser or sciml update.

    **Arguments:**

    - `model`: a pytree (usually an `eqx.Module`) whose inexact-array leaves are the
      parameters: network weights, eigenvalues, kinetic constants, time steps alike.
    - `loss`: `loss(model, batch, *, key) -> scalar` or `-> (scalar, aux)` where `aux`
      is a dict of named scalar terms, recorded in the history. For an update that
      takes residuals (`sciml.GaussNewton`, an ensemble method; see `sciml.train`'s
      residual convention) it returns a residual vector `r`, or `(r, aux)`. If it accepts a `step`
      keyword it also receives the global step (an int32 array), for weight schedules.
    - `optimiser`: an `optax.GradientTransformation` or another update (a
      `sciml.train.AbstractUpdate`, e.g. `sciml.GaussNewton()`, `sciml.SSBroyden2()`,
      `sciml.ensemble.ESMDA()`), run for `steps`
      steps; or a sequence of `sciml.Stage(optimiser, steps)` run one after the other
      (e.g. Adam, then `optax.lbfgs()`). An update that reports convergence (its
      `done(state)`, e.g. `sciml.GaussNewton(rtol=..., atol=...)`) ends its stage
      early and the next stage starts from there. A later call with the same shapes,
      the same loss object and an equal optimiser reuses the compiled program: an
      optax optimiser rebuilt
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
    - `progress`: show a progress bar with the current loss terms (True, the default),
      nothing (False), or a `sciml.train.AbstractProgressMeter` of your own.

    **Returns:**

    A `sciml.FitResult` with `.model`, `.history`, `.opt_state`, `.stopped` and
    `.timings`.

    **Raises:**

    `sciml.DivergenceError` (a `FloatingPointError`) if a step makes the loss,
    gradient or parameters non-finite; it names the step and terms and carries the
    last finite model (also saved to `checkpoint` if given).
    """
    t_start = time.perf_counter()
    key = normalise_key(key)
    specs = normalise_stages(optimiser, steps, loss, data)
    if checkpoint_every is not None:
        check_steps(checkpoint_every, "`checkpoint_every`")
    if (resume or overwrite) and checkpoint is None:
        flag = "resume" if resume else "overwrite"
        raise ValueError(f"sciml.fit: `{flag}=True` needs `checkpoint=` (a directory).")
    resume_from = None
    if checkpoint is not None:
        resume_from = _checkpoint.prepare(checkpoint, resume=resume, overwrite=overwrite)
    callbacks, recorders = check_callbacks(callbacks, model)
    params, frozen, static = partition_model(model, trainable)
    meter = as_meter(progress)
    devs = Devices(devices)
    keys = _Keys(*jax.random.split(key, 3))
    # Build and check every stage before any training starts.
    plans = [
        _plan_stage(s, spec, model, params, static, devs, keys, recorders)
        for s, spec in enumerate(specs)
    ]
    loop = _Loop(
        plans=plans, static=static, frozen=frozen, devices=devs, keys=keys,
        callbacks=callbacks, recorders=recorders, t_start=t_start,
        checkpoint=None if checkpoint is None else os.fspath(checkpoint),
        checkpoint_every=checkpoint_every,
    )
    loop.meta["key"] = _key_data(key)
    if checkpoint is not None:
        loop.meta["fingerprint"] = _checkpoint.fingerprint(
            params, [(p.update.fingerprint_of(), p.info.aux_names, p.source) for p in plans]
        )
    loop.start(params, resume_from)
    handle = meter.start(loop.boundaries[-1], loop.step) if jax.process_index() == 0 else None
    try:
        loop.run(meter, handle)
    finally:
        if handle is not None:
            meter.close(handle)
    return loop.result()


@dataclasses.dataclass(frozen=True)
class _Keys:
    loss: jax.Array  # the loss key of every step (folded with the step)
    data: jax.Array  # batches
    stage: jax.Array  # a fixed-objective stage's one loss key (folded with the stage)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """One stage, checked and ready to run."""

    spec: StageSpec
    update: AbstractUpdate  # configured for the stage (`for_stage`)
    program: Program
    info: LossInfo
    source: AbstractData
    data_arrays: PyTree
    loss_arrays: PyTree
    batch0: PyTree  # the one batch of a fixed-objective stage, else None
    key_loss: jax.Array


def _plan_stage(s, spec, model, params, static, devs, keys, recorders) -> _Plan:
    source = as_data(spec.data)
    where = f"the steps of stage {s}"
    update = spec.update.for_stage(spec.steps, source, where)
    fixed = update.fixed_objective(params)
    if fixed:
        batch0 = source.fixed_batch(keys.data)
    else:
        batch0, _ = source.batch(source.init(keys.data, 0), keys.data, jnp.asarray(0))
    pass_step = accepts_step(spec.loss)
    info = check_loss(spec.loss, update, model, batch0, keys.loss, pass_step)
    devs.check_stage(update, source, batch0, model, "the batch")
    data_arrays, data_static = eqx.partition(source, eqx.is_array)
    # A loss may be a pytree holding arrays (e.g. the bound method `problem.loss` of an
    # equinox module): its arrays are arguments, its structure keys the program.
    loss_arrays, loss_static = eqx.partition(spec.loss, eqx.is_array)
    program = Program(
        loss=loss_static, update=update, static=static, data_static=data_static,
        has_aux=info.has_aux, aux_names=info.aux_names, pass_step=pass_step,
        uses_key=info.uses_key, fixed=fixed, hist_dtype=jnp.result_type(info.dtype),
        batch_sharding=devs.batch_sharding(update),
        recorders=tuple((r.static, r.every) for r in recorders if r is not None),
    )
    return _Plan(
        spec=spec, update=update, program=program, info=info, source=source,
        data_arrays=data_arrays, loss_arrays=loss_arrays,
        batch0=batch0 if fixed else None,
        key_loss=jax.random.fold_in(keys.stage, s) if fixed else keys.loss,
    )


@dataclasses.dataclass
class _Chunk:
    """A dispatched chunk: where it starts, when, and its (future) results."""

    start: int
    n: int  # steps asked for; fewer ran if the loss diverged or the update converged
    t0: float
    ran: jax.Array
    state: LoopState  # the end state
    input: LoopState  # the start state, kept to replay a divergence


class _Loop:
    """The host side of a run: stages, chunks, history, callbacks and checkpoints."""

    def __init__(self, *, plans, static, frozen, devices, keys, callbacks, recorders,
                 t_start, checkpoint, checkpoint_every):
        self.plans, self.static, self.frozen = plans, static, frozen
        self.devices, self.keys, self.t_start = devices, keys, t_start
        self.callbacks = callbacks
        self.recorders = [r for r in recorders if r is not None]
        # rec_index[i]: the position of callback i's recorder, or None.
        it = iter(range(len(self.recorders)))
        self.rec_index = [None if r is None else next(it) for r in recorders]
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.boundaries = np.cumsum([0] + [p.spec.steps for p in plans]).tolist()
        self.meta = dict(version=_checkpoint.VERSION, boundaries=self.boundaries)
        self.history = History([p.info.aux_names for p in plans])
        self.compile_time, self.steady_steps, self.steady_time = 0.0, 0, 0.0
        self.stopped = None
        self.start_stage, self.step = 0, 0
        self.params = self.opt_state = self.loaded_opt_state = None
        self.last_saved = None

    def start(self, params, resume_from):
        """Places the parameters, from `resume_from`'s checkpoint if given."""
        if resume_from is not None:
            meta = _checkpoint.read_meta(resume_from)
            self.start_stage, self.step = meta["stage"], meta["step"]
            _checkpoint.check_resumable(resume_from, meta, self.meta)
            update = self.plans[self.start_stage].update
            like = {"params": params, "opt_state": update.init(params)}
            loaded = _checkpoint.read_state(resume_from, like)
            params, self.loaded_opt_state = loaded["params"], loaded["opt_state"]
            self.history.load(_checkpoint.read_history(resume_from, meta))
            self.last_saved = self.step
        # Our own copies: the loop donates its state buffers.
        params = jax.tree.map(lambda x: jnp.array(x, copy=True), params)
        member_axis = any(p.update.member_axis for p in self.plans)
        self.params, self.frozen = self.devices.place_model(params, self.frozen, member_axis)

    def model(self, params) -> PyTree:
        return eqx.combine(params, self.frozen, self.static)

    def run(self, meter, handle):
        for s, plan in enumerate(self.plans):
            if s < self.start_stage:
                continue
            if s == self.start_stage and self.loaded_opt_state is not None:
                self.opt_state = self.loaded_opt_state
            else:
                # Copied: an update's state may alias the parameter buffers (L-BFGS
                # keeps the iterate), and the loop donates both.
                self.opt_state = jax.tree.map(
                    lambda x: jnp.array(x, copy=True) if eqx.is_array(x) else x,
                    plan.update.init(self.params),
                )
                self.step = max(self.step, self.boundaries[s])
            if self.step < self.boundaries[s + 1]:
                _StageRun(self, s, plan, meter, handle).run()
            if self.checkpoint is not None and self.last_saved != self.step:
                self.save(s, self.params, self.opt_state, self.step)
            if self.stopped:
                break

    def save(self, stage, params, opt_state, step):
        if self.checkpoint is None:
            return
        _checkpoint.save(
            self.checkpoint,
            params=params,
            opt_state=opt_state,
            meta=dict(self.meta, stage=stage, step=step),
            # After a divergence the saved state is behind the history (its steps are
            # run again on resume).
            history=self.history.arrays(before=step),
        )
        self.last_saved = step

    def result(self) -> FitResult:
        history = self.history.arrays()
        for counter in _STEP_COUNTERS.get():
            counter.append(np.bincount(history["stage"], minlength=len(self.plans)).tolist())
        steady = self.steady_steps / self.steady_time if self.steady_time > 0 else math.nan
        return FitResult(
            model=self.model(self.params),
            history=history,
            opt_state=self.opt_state,
            stopped=self.stopped,
            timings=dict(compile=self.compile_time,
                         total=time.perf_counter() - self.t_start,
                         steps_per_second=steady),
        )


class _StageRun:
    """The chunks of one stage.

    Chunks are pipelined: chunk k+1 is dispatched before the results of chunk k are
    fetched, so the host work overlaps device work. Everything is still processed in
    order on the exact end state of each chunk; a chunk dispatched past a stop is
    discarded (past a divergence it runs 0 steps).
    """

    def __init__(self, loop: _Loop, s: int, plan: _Plan, meter, handle):
        self.loop, self.s, self.plan = loop, s, plan
        self.meter, self.handle = meter, handle
        self.hi = loop.boundaries[s + 1]
        devs, program = loop.devices, plan.program
        source, data_arrays = devs.place_data(plan.source, plan.data_arrays, program)
        self.dyn = Dynamic(
            frozen=loop.frozen,
            loss=devs.replicate(plan.loss_arrays),
            data=data_arrays,
            key_loss=plan.key_loss,
            key_data=loop.keys.data,
            batch=None if plan.batch0 is None else devs.place_batch(plan.batch0),
            rec=devs.replicate(tuple(r.arrays for r in loop.recorders)),
        )
        self.tip = self._initial_state(source)  # the state the next chunk starts from
        self.queue: collections.deque[_Chunk] = collections.deque()
        self.planned = loop.step  # the step that all dispatched chunks end at
        self.prev_input = None  # (start, input state) of the chunk before this one
        self.chunk, self.first, self.last_done = 1, True, None
        self.pending = [[] for _ in loop.recorders]  # recorded (step, value) pairs

    def _initial_state(self, source) -> LoopState:
        loop, program = self.loop, self.plan.program
        n_cols = 1 + len(self.plan.info.aux_names)
        rep = loop.devices.replicate
        return LoopState(
            params=loop.params,
            opt_state=rep(loop.opt_state),
            data_state=None if program.fixed else source.init(loop.keys.data, loop.step),
            step=jnp.asarray(loop.step, jnp.int32),
            finite=jnp.asarray(True),
            hist=rep(jnp.zeros((BUFFER, n_cols), program.hist_dtype)),
            rec=rep(tuple(jnp.zeros((BUFFER // r.every + 1, *r.shape.shape), r.shape.dtype)
                          for r in loop.recorders)),
            rec_n=tuple(jnp.zeros((), jnp.int32) for _ in loop.recorders),
        )

    def run(self):
        loop = self.loop
        while loop.step < self.hi:
            self._dispatch()
            state, stop = self._process(self.queue.popleft())
            if stop:
                self.queue.clear()
                break
        loop.params, loop.opt_state = state.params, state.opt_state

    def _dispatch(self):
        """Queues chunks until one (while timing) or two are in flight."""
        loop = self.loop
        while self.planned < self.hi and len(self.queue) < (
            1 if self.first or self.chunk <= 8 else 2
        ):
            limit = self.hi - self.planned
            cadences = [loop.checkpoint_every] + [getattr(cb, "every", None)
                                                  for cb in loop.callbacks]
            for every in cadences:
                if every is not None:
                    limit = min(limit, every - self.planned % every)
            n = min(self.chunk, limit, BUFFER)
            t0 = time.perf_counter()
            ran, out = run(self.plan.program, self.dyn, self.tip, jnp.asarray(n, jnp.int32))
            self.queue.append(_Chunk(self.planned, n, t0, ran, out, self.tip))
            self.planned += n
            self.tip = out

    def _process(self, chunk: _Chunk) -> tuple[LoopState, bool]:
        """Books a finished chunk; returns its end state and whether to stop."""
        loop, state = self.loop, chunk.state
        ran, finite, rows, rec, rec_n = jax.device_get(
            (chunk.ran, state.finite, state.hist, state.rec, state.rec_n)
        )
        t1 = time.perf_counter()
        ran = int(ran)
        if finite:
            self._collect_records(chunk.start, rec, rec_n)
        busy = t1 - (chunk.t0 if self.last_done is None else max(chunk.t0, self.last_done))
        self.last_done = t1
        loop.history.extend(self.s, loop.step, rows[:ran], self.plan.info.aux_names,
                            t1 - busy - loop.t_start, t1 - loop.t_start)
        self._time(ran, busy)
        last = rows[max(ran, 1) - 1]
        terms = {"loss": float(last[0])}
        terms.update({k: float(last[j + 1]) for j, k in enumerate(self.plan.info.aux_names)})
        if self.handle is not None:
            self.meter.update(self.handle, ran, terms)
        if not finite:
            self.queue.clear()
            raise self._divergence(chunk, ran, terms)
        self.prev_input = (chunk.start, chunk.input)
        loop.step += ran
        if loop.checkpoint_every is not None and loop.step % loop.checkpoint_every == 0:
            loop.save(self.s, state.params, state.opt_state, loop.step)
        # Fewer steps than asked with a finite loss: the update's `done` ended the stage.
        converged = ran < chunk.n
        return state, self._callbacks(state, terms, t1, converged) or converged

    def _time(self, ran, busy):
        loop = self.loop
        if self.first:
            self.first = False
            loop.compile_time += busy
            self.chunk = 8
        elif ran:
            loop.steady_steps += ran
            loop.steady_time += busy
            per_step = busy / ran
            self.chunk = int(min(BUFFER, max(1, CHUNK_SECONDS / max(per_step, 1e-9))))

    def _collect_records(self, start, rec, rec_n):
        for j, r in enumerate(self.loop.recorders):
            at = (start // r.every + 1) * r.every  # the chunk's first record
            self.pending[j].extend((at + k * r.every, rec[j][k]) for k in range(int(rec_n[j])))

    def _divergence(self, chunk, ran, terms):
        loop = self.loop
        bad_step = loop.step + ran - 1
        snapshots = [(chunk.start, chunk.input)]
        if self.prev_input is not None:
            snapshots.append(self.prev_input)
        good, code = recover(self.plan.program, self.dyn, snapshots, bad_step)
        loop.params = good.params
        loop.save(self.s, good.params, good.opt_state, int(good.step))
        return divergence_error(
            code, bad_step, terms, loop.model(good.params), loop.history, loop.checkpoint,
            hint=self.plan.update.divergence_hint(terms),
        )

    def _callbacks(self, state, terms, t1, stage_end) -> bool:
        loop, stop = self.loop, False
        for cb, j in zip(loop.callbacks, loop.rec_index):
            every = getattr(cb, "every", None)
            if every is not None and loop.step % every and loop.step != self.hi and not (
                stage_end
            ):
                continue
            records = ()
            if j is not None:
                records, self.pending[j] = tuple(self.pending[j]), []
            info = FitInfo(
                step=loop.step, stage=self.s, model=loop.model(state.params),
                loss=terms["loss"], terms=terms, history=loop.history.arrays(),
                elapsed=t1 - loop.t_start, records=records, _log=loop.history.log,
            )
            if _wants_stop(cb(info)):
                stop = True
                name = getattr(cb, "__name__", type(cb).__name__)
                loop.stopped = f"callback {name} at step {loop.step}"
        return stop


def _wants_stop(value) -> bool:
    """A callback's True stops training: Python's, numpy's or a 0-d JAX bool."""
    if value is None or isinstance(value, bool):
        return value is True
    dtype = getattr(value, "dtype", None)
    return dtype == np.bool_ and np.ndim(value) == 0 and bool(value)


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
