"""How `fit` turns its `data=` argument into one batch per step.

A data source is a small strategy object: `init` builds whatever per-run state it
needs (e.g. the permutation of the current epoch), `batch` produces the batch of a
step inside the compiled loop. Keys are derived from the step number, so a run
resumed at step k sees the same batches as one that never stopped.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


PyTree = Any


class AbstractData(eqx.Module):
    """A source of batches for `sciml.fit`.

    `fit` partitions a source into its arrays (passed to the compiled loop as
    arguments, never baked in as constants) and the rest (static configuration).
    """

    @abc.abstractmethod
    def init(self, key: jax.Array, step: int) -> PyTree:
        """Per-run state of the source at `step` (e.g. the epoch permutation)."""

    @abc.abstractmethod
    def batch(self, state: PyTree, key: jax.Array, step: jax.Array):
        """Returns `(batch, new_state)` for global step `step`."""

    def fixed_batch(self, key: jax.Array) -> PyTree:
        """One batch that stays fixed for a whole line-search stage."""
        return self.batch(self.init(key, 0), key, jnp.asarray(0))[0]


class NoData(AbstractData):
    """`data=None`: the loss draws its own points from its key."""

    def init(self, key, step):
        return None

    def batch(self, state, key, step):
        return None, state


class FixedData(AbstractData):
    """A pytree of arrays used whole at every step."""

    data: PyTree

    def init(self, key, step):
        return None

    def batch(self, state, key, step):
        return self.data, state


class Resampler(AbstractData):
    """`data=fn`: a fresh batch `fn(key)` every step, from a key folded with the step."""

    fn: Callable

    def init(self, key, step):
        return None

    def batch(self, state, key, step):
        return self.fn(jax.random.fold_in(key, step)), state


class Minibatches(AbstractData):
    """Minibatches of a pytree of arrays, reshuffled every epoch from the key.

    Every leaf shares the leading (example) axis. An epoch is `len // batch_size`
    steps (the remainder of a shuffle is dropped, so every batch has one shape); the
    permutation of epoch `e` is drawn from the data key folded with `e`.

    **Arguments:**

    - `data`: pytree of arrays with a common leading axis.
    - `batch_size`: examples per step, `1 <= batch_size <= len`.
    """

    data: PyTree
    batch_size: int = eqx.field(static=True)
    size: int = eqx.field(static=True)

    def __init__(self, data: PyTree, batch_size: int):
        leaves = jax.tree.leaves(data)
        if not leaves:
            raise ValueError("sciml.Minibatches: `data` has no arrays; pass a pytree of arrays.")
        sizes = {np.shape(x)[0] if np.ndim(x) > 0 else None for x in leaves}
        if None in sizes or len(sizes) != 1:
            shapes = [tuple(np.shape(x)) for x in leaves]
            raise ValueError(
                "sciml.Minibatches: every array in `data` needs the same leading (example) "
                f"axis; got shapes {shapes}. Stack the examples along axis 0."
            )
        (size,) = sizes
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise TypeError(
                f"sciml.Minibatches: `batch_size` must be an int, got {batch_size!r}."
            )
        if not 1 <= batch_size <= size:
            raise ValueError(
                f"sciml.Minibatches: `batch_size` must be between 1 and the number of "
                f"examples ({size}); got {batch_size}."
            )
        self.data = jax.tree.map(jnp.asarray, data)
        self.batch_size = int(batch_size)
        self.size = int(size)

    @property
    def steps_per_epoch(self) -> int:
        return self.size // self.batch_size

    def _perm(self, key, epoch):
        return jax.random.permutation(jax.random.fold_in(key, epoch), self.size)

    def init(self, key, step):
        return self._perm(key, step // self.steps_per_epoch)

    def batch(self, perm, key, step):
        nb = self.steps_per_epoch
        epoch, within = step // nb, step % nb
        perm = jax.lax.cond(
            within == 0, lambda: self._perm(key, epoch), lambda: perm
        )
        idx = jax.lax.dynamic_slice_in_dim(perm, within * self.batch_size, self.batch_size)
        return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), self.data), perm

    def fixed_batch(self, key):
        raise ValueError(
            "sciml.fit: a line-search stage (e.g. optax.lbfgs) needs one fixed objective, "
            "but `data` is sciml.Minibatches. Pass the full arrays as `data` (or a "
            "resampler) for that stage with `sciml.Stage(..., data=arrays)`."
        )


def as_data(data) -> AbstractData:
    """Turns `fit`'s `data=` argument into a data source."""
    if data is None:
        return NoData()
    if isinstance(data, AbstractData):
        return data
    if callable(data):
        return Resampler(data)
    leaves = jax.tree.leaves(data)
    bad = [type(x).__name__ for x in leaves if not isinstance(x, jax.Array | np.ndarray)]
    if bad:
        raise TypeError(
            "sciml.fit: `data` must be None, a pytree of arrays, sciml.Minibatches(...) or a "
            f"resampler fn(key) -> batch; it holds non-array leaves of type {sorted(set(bad))}."
            " Convert them with jnp.asarray."
        )
    return FixedData(jax.tree.map(jnp.asarray, data))
