"""Minibatches of operator data for `sciml.fit`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..train import AbstractData, Minibatches
from ._layouts import Triple, TripleCartesianProd


class FunctionBatches(AbstractData):
    """Minibatches of operator data, reshuffled every epoch (a `sciml.fit` data source).

    For a `TripleCartesianProd` a batch is `batch_size` whole functions (rows of
    branch and y) against the full shared trunk, which is never copied; for a
    `Triple` it is `batch_size` rows.

    **Arguments:**

    - `data`: a `Triple` or `TripleCartesianProd`.
    - `batch_size`: functions (cartesian) or rows (triple) per step.
    """

    rows: Minibatches
    template: TripleCartesianProd | Triple

    def __init__(self, data, batch_size: int):
        if not isinstance(data, Triple | TripleCartesianProd):
            raise TypeError(
                "sciml.data.FunctionBatches: `data` must be a Triple or TripleCartesianProd, "
                f"got {type(data).__name__}."
            )
        data = jax.tree.map(jnp.asarray, data)
        if isinstance(data, Triple):
            self.rows = Minibatches(data, batch_size)
        else:
            self.rows = Minibatches((data.branch, data.y), batch_size)
        self.template = data

    def init(self, key, step):
        return self.rows.init(key, step)

    def batch(self, state, key, step):
        rows, state = self.rows.batch(state, key, step)
        if isinstance(self.template, Triple):
            return rows, state
        branch, y = rows
        return eqx.tree_at(lambda d: (d.branch, d.y), self.template, (branch, y)), state

    def fixed_batch(self, key):
        return self.rows.fixed_batch(key)
