"""`KoopmanMonitor`: a `sciml.fit` callback that watches the Koopman spectrum of
training and can stop a run that has converged."""

from __future__ import annotations

import collections
import dataclasses
import math
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._dmd import DMD, dmd


@dataclasses.dataclass(frozen=True)
class SpectrumRecord:
    """One DMD of the monitor's window.

    **Attributes:**

    - `step`: the training step of the last snapshot in the window.
    - `eigenvalues`: complex, per snapshot interval (`every` steps), largest modulus
      first (affine DMD: the fixed point's eigenvalue 1 is not among them).
    - `amplitudes`: `|b_i|`, the size of each mode in the window.
    - `rank`: DMD rank.
    - `remaining`: predicted motion over the next `horizon` snapshots divided by the
      distance travelled since the first snapshot.
    - `decay`: fraction of the window's motion carried by decaying modes.
    """

    step: int
    eigenvalues: np.ndarray
    amplitudes: np.ndarray
    rank: int
    remaining: float
    decay: float


class _Projection(eqx.Module):
    """The monitor's snapshot of a model: its selected weights, taken whole when there
    are at most `dim` of them, otherwise a fixed count-sketch projection to `dim`
    numbers, `z[b] = Σ_{i: bucket(i) = b} sign(i) w_i` (a sparse Johnson-Lindenstrauss
    map: distances are preserved in expectation, every weight contributes, and it is
    linear, so linear training dynamics stay linear).

    A JAX function of the model: `sciml.fit` evaluates it inside the compiled steps
    (the monitor's `recorder`), so watching the weights costs no chunk boundaries.
    """

    trainable: Any
    buckets: tuple | None
    signs: tuple | None
    dim: int = eqx.field(static=True)

    def __call__(self, model):
        leaves = _selected(model, self.trainable)
        if self.buckets is None:
            return jnp.concatenate([jnp.ravel(x) for x in leaves])
        out = 0
        for leaf, b, s in zip(leaves, self.buckets, self.signs):
            w = jnp.ravel(leaf)
            out = out + jax.ops.segment_sum(s.astype(w.dtype) * w, b, num_segments=self.dim)
        return out


def _selected(model, trainable):
    try:
        params = eqx.filter(model, trainable)
    except Exception as e:
        raise ValueError(f"KoopmanMonitor: `trainable` does not match the model: {e}") from e
    leaves = [x for x in jax.tree.leaves(params) if eqx.is_inexact_array(x)]
    if not leaves:
        raise ValueError(
            "KoopmanMonitor: `trainable` selects no floating-point arrays of the model."
        )
    return leaves


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(
            f"KoopmanMonitor: `{name}` must be an integer >= {minimum}, got {value!r}."
        )
    return int(value)


def _positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not (
        value > 0 and math.isfinite(value)
    ):
        raise ValueError(f"KoopmanMonitor: `{name}` must be a positive number, got {value!r}.")
    return float(value)


class KoopmanMonitor:
    """A `sciml.fit` callback: Koopman (DMD) spectrum of the weights during training,
    logged into the history, with an optional convergence stop.

    Every `every` steps the monitor records a snapshot of the selected weights: all
    of them when there are at most `dim`, otherwise a fixed count-sketch projection
    to `dim` numbers, drawn once from `key` (same key and model structure, same
    projection). It keeps the last `window` snapshots, so memory is `window * dim`
    numbers whatever the model size. Once the window is full, and then every
    `dmd_every` snapshots, it runs an *affine* DMD of the window
    (`sciml.koopman.dmd(..., affine=True)`): each snapshot interval is one application
    of the training map, and the eigenvalues are those of its linearisation about the
    point the weights are heading to (the plain DMD spectrum minus that point's
    eigenvalue 1; see `sciml.koopman.dmd`).

    **Reading the spectrum** (per `every` steps): `|λ| < 1` modes are contracting;
    for gradient descent on a quadratic with Hessian eigenvalues `h_i` they are
    `(1 - lr h_i)**every`. An eigenvalue at 1 carrying weight means the weights still
    drift at constant velocity; `|λ| > 1`, growth. Converged training has every mode
    of any size decayed. As a decaying learning rate shrinks the steps, the map per
    snapshot approaches the identity and late eigenvalues cluster near 1 (the
    clustering Manojlović et al. 2020 read as convergence) while the amplitudes
    shrink; the stop rule below weighs both, through the motion they predict.

    **Stop rule** (`stop=True`): the DMD model of the window predicts how far the
    weights will move over the next `horizon` snapshots, `‖x̂_{m+horizon} - x̂_m‖`.
    Training has converged when this predicted motion is at most `rtol` times the
    distance the weights have travelled since the monitor's first snapshot, on
    `patience` consecutive DMDs. Decayed modes predict almost no motion; a drift
    (eigenvalue 1) predicts `horizon` times its velocity, so a run still making
    steady progress is not stopped; noise (SGD, resampled points) contributes
    motion of the size of its fluctuations, so a run stops only once those are
    small against the distance already travelled. A growing mode (`|λ| > 1`, often
    a fitting artefact of a nonlinear window) is counted as a drift at its current
    speed. The quantity is logged as `<name>_remaining`.

    **Poor initialisation** (diagnostic, never stops): a mode decays if it shrinks by
    at least `e` over the window (`|λ|**window < 1/e`). If on the first full window
    less than `decay_threshold` of the motion is carried by decaying modes, training
    is not contracting at all (a plateau, saturated units, or a learning rate far too
    small): the monitor sets `.poor_init = True` and warns once, as a restart with a
    different initialisation or learning rate is likely worth it. The fraction is
    logged as `<name>_decay`.

    Logged history columns (at the steps where a DMD ran): `<name>_rho1`, ...,
    `<name>_rho<n_log>` (leading eigenvalue moduli), `<name>_remaining`,
    `<name>_decay`, `<name>_rank`. `.spectra` holds every `SpectrumRecord` for
    `sciml.koopman.plot_spectrum`.

    One monitor instance records one run: it keeps the snapshots it has seen. Call
    `reset()` (or make a new monitor) before using it in another `fit`. When the
    training stage changes (`sciml.Stage`), the window restarts, since the map changes.
    A stop ends the whole `fit`, later stages included.

    **Arguments:**

    - `every`: steps between snapshots (kept as `.snapshot_every`). The snapshots are
      taken inside `fit`'s compiled steps (`recorder`); `fit` calls the monitor only
      where a DMD can fall, every `.every = every * gcd(window, dmd_every)` steps, so
      at the defaults a call (a chunk boundary, about a millisecond of host work and
      a DMD) comes every 250 steps (overhead: benchmarks/koopman_stop.py).
    - `window`: snapshots per DMD (at least 4).
    - `dim`: size of the projected snapshot.
    - `key`: PRNG key of the projection (keyword-only).
    - `stop`: stop `fit` when the rule above holds.
    - `rtol`: relative tolerance of the stop rule.
    - `patience`: consecutive DMDs on which the rule must hold.
    - `dmd_every`: snapshots between DMDs once the window is full (default
      `max(1, window // 4)`).
    - `horizon`: snapshots of prediction in the stop rule (default `window`).
    - `rank`: largest DMD rank (default `(window - 1) // 2`, so that the window has
      at least twice as many snapshot pairs as modes: a least-squares fit, not an
      interpolation whose spurious roots would sit anywhere near the unit circle).
    - `tol`: DMD singular-value cut-off relative to the largest (default `100 * eps`
      of the weights' dtype, i.e. float32 rounding is not modelled).
    - `trainable`: filter spec of the leaves to watch (as in `sciml.fit`).
    - `decay_threshold`: poor-initialisation threshold on the decaying fraction.
    - `n_log`: number of leading eigenvalue moduli logged.
    - `name`: prefix of the history columns (and of the stop message).
    """

    def __init__(
        self,
        every: int = 50,
        window: int = 20,
        dim: int = 64,
        *,
        key: jax.Array,
        stop: bool = False,
        rtol: float = 1e-3,
        patience: int = 2,
        dmd_every: int | None = None,
        horizon: int | None = None,
        rank: int | None = None,
        tol: float | None = None,
        trainable: Any = eqx.is_inexact_array,
        decay_threshold: float = 0.1,
        n_log: int = 3,
        name: str = "koopman",
    ):
        self.snapshot_every = _positive_int("every", every)
        self.window = _positive_int("window", window, 4)
        self.dim = _positive_int("dim", dim)
        if not isinstance(key, jax.Array) or not (
            (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ())
            or (key.dtype == jnp.uint32 and key.shape == (2,))
        ):
            raise TypeError(
                f"KoopmanMonitor: `key` must be a JAX PRNG key, e.g. jax.random.key(0); "
                f"got {key!r}."
            )
        self.key = key
        if not isinstance(stop, bool | np.bool_):
            raise TypeError(f"KoopmanMonitor: `stop` must be True or False, got {stop!r}.")
        self.stop = bool(stop)
        self.rtol = _positive_float("rtol", rtol)
        self.patience = _positive_int("patience", patience)
        self.dmd_every = _positive_int(
            "dmd_every", max(1, self.window // 4) if dmd_every is None else dmd_every
        )
        self.horizon = _positive_int("horizon", self.window if horizon is None else horizon)
        self.rank = _positive_int("rank", (self.window - 1) // 2 if rank is None else rank)
        if tol is not None and (
            isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol < 1
        ):
            raise ValueError(f"KoopmanMonitor: `tol` must be a float in [0, 1), got {tol!r}.")
        self.tol = tol
        if not callable(trainable) and not isinstance(trainable, eqx.Module | dict | list | tuple):
            raise TypeError(
                "KoopmanMonitor: `trainable` must be a filter spec (a callable leaf -> bool "
                f"or a pytree of bools), got {trainable!r}."
            )
        self.trainable = trainable
        if not 0 <= decay_threshold <= 1:
            raise ValueError(
                f"KoopmanMonitor: `decay_threshold` must be in [0, 1], got {decay_threshold!r}."
            )
        self.decay_threshold = float(decay_threshold)
        self.n_log = _positive_int("n_log", n_log, 0)
        if not isinstance(name, str) or not name:
            raise TypeError(f"KoopmanMonitor: `name` must be a non-empty string, got {name!r}.")
        self.name = name
        self.__name__ = name
        # `sciml.fit` calls the monitor every `self.every` steps: on every step where a
        # DMD can fall (snapshots `window + k dmd_every`), so a stop is decided at the
        # step whose DMD triggers it. The snapshots in between are taken inside the
        # compiled steps (`recorder`), not at chunk boundaries.
        self.every = self.snapshot_every * math.gcd(self.window, self.dmd_every)
        self._tol = None
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forgets every snapshot and record (the projection is kept: it depends only
        on `key` and the model structure)."""
        self.snapshots: collections.deque = collections.deque(maxlen=self.window)
        self.steps: collections.deque = collections.deque(maxlen=self.window)
        self.spectra: list[SpectrumRecord] = []
        self.first: np.ndarray | None = None
        self.n_snapshots = 0
        self.n_dmd = 0
        self.poor_init: bool | None = None
        self.last: DMD | None = None
        self._since_dmd = 0
        self._streak = 0
        self._stage = None

    # ------------------------------------------------------------ projection

    def projection(self, model) -> _Projection:
        """The snapshot map of models shaped like `model` (a JAX function of the model;
        the count-sketch buckets and signs depend only on `key` and the weight sizes)."""
        leaves = _selected(model, self.trainable)
        sizes = [int(x.size) for x in leaves]
        if sum(sizes) <= self.dim:
            return _Projection(self.trainable, None, None, self.dim)
        if jax.dtypes.issubdtype(self.key.dtype, jax.dtypes.prng_key):
            seed = np.asarray(jax.random.key_data(self.key))
        else:
            seed = np.asarray(self.key)
        seed = [int(v) for v in seed.ravel()]
        buckets, signs = [], []
        for i, n in enumerate(sizes):
            rng = np.random.default_rng([*seed, i])
            buckets.append(jnp.asarray(rng.integers(0, self.dim, size=n), jnp.int32))
            signs.append(jnp.asarray(rng.choice(np.array([-1, 1], np.int8), size=n)))
        return _Projection(self.trainable, tuple(buckets), tuple(signs), self.dim)

    def recorder(self, model):
        """For `sciml.fit`: the snapshot map, evaluated inside the compiled steps every
        `snapshot_every` steps (the snapshots reach the monitor in `info.records`)."""
        self._set_tol(model)
        return self.projection(model), self.snapshot_every

    def project(self, model) -> np.ndarray:
        """The snapshot of `model` (float64, `(min(dim, n_weights),)`)."""
        return np.asarray(self.projection(model)(model), dtype=np.float64)

    def _set_tol(self, model):
        eps = max(float(jnp.finfo(x.dtype).eps) for x in _selected(model, self.trainable))
        self._tol = 100 * eps if self.tol is None else self.tol

    # -------------------------------------------------------------- callback

    def __call__(self, info) -> bool:
        if self._stage is not None and info.stage != self._stage:
            self.snapshots.clear()
            self.steps.clear()
            self._since_dmd = 0
            self._streak = 0
        self._stage = info.stage
        if self._tol is None:
            self._set_tol(info.model)
        stop = False
        for step, z in info.records:
            stop = self._snapshot(info, int(step), np.asarray(z, dtype=np.float64)) or stop
        return stop

    def _snapshot(self, info, step, z) -> bool:
        if self.first is None:
            self.first = z
        self.snapshots.append(z)
        self.steps.append(step)
        self.n_snapshots += 1
        self._since_dmd += 1
        if len(self.snapshots) < self.window:
            return False
        if self.n_dmd and self._since_dmd < self.dmd_every:
            return False
        self._since_dmd = 0
        record = self._analyse(step)
        for i in range(self.n_log):
            value = abs(record.eigenvalues[i]) if i < record.rank else math.nan
            info.log(f"{self.name}_rho{i + 1}", value, step=step)
        info.log(f"{self.name}_remaining", record.remaining, step=step)
        info.log(f"{self.name}_decay", record.decay, step=step)
        info.log(f"{self.name}_rank", record.rank, step=step)
        if self.poor_init is None:
            self.poor_init = record.decay < self.decay_threshold
            if self.poor_init:
                warnings.warn(
                    f"KoopmanMonitor: no decaying Koopman modes in the first window (steps "
                    f"{self.steps[0]}-{self.steps[-1]}): only {record.decay:.0%} of the "
                    "weights' motion decays. Training is not contracting; a different "
                    "initialisation or learning rate is likely worth trying.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        self._streak = self._streak + 1 if record.remaining <= self.rtol else 0
        return self.stop and self._streak >= self.patience

    def _analyse(self, step) -> SpectrumRecord:
        z = np.stack(self.snapshots)
        result = dmd(z, rank=self.rank, tol=self._tol, affine=True)
        self.last = result
        self.n_dmd += 1
        m = z.shape[0] - 1
        travelled = float(np.linalg.norm(z[-1] - self.first))
        if result.rank == 0:
            motion = 0.0
        else:
            # A growing mode (|λ| > 1, often a fitting artefact of a nonlinear window)
            # is counted as a drift at its current speed: bounded, and never a stop.
            mu = result.eigenvalues
            clipped = np.where(np.abs(mu) > 1, mu / np.abs(mu), mu)
            ahead = eqx.tree_at(lambda r: r.eigenvalues, result, clipped).predict(
                np.array([m, m + self.horizon])
            )
            motion = float(np.linalg.norm(ahead[1] - ahead[0]))
        if travelled > 0:
            remaining = motion / travelled
        else:
            remaining = 0.0 if motion == 0 else math.inf
        size = np.abs(result.amplitudes)
        decaying = np.abs(result.eigenvalues) ** self.window < math.exp(-1)
        total = float(size.sum())
        decay = float(size[decaying].sum() / total) if total > 0 else 1.0
        record = SpectrumRecord(
            step=step,
            eigenvalues=result.eigenvalues,
            amplitudes=size,
            rank=result.rank,
            remaining=remaining,
            decay=decay,
        )
        self.spectra.append(record)
        return record
