"""Minibatches of operator data for `sciml.fit`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..train import AbstractData, Minibatches
from ._fields import Fields
from ._layouts import Triple, TripleCartesianProd


def _rows(data):
    """The per-function arrays of a layout with a shared grid or trunk."""
    return (data.a, data.u) if isinstance(data, Fields) else (data.branch, data.y)


class FunctionBatches(AbstractData):
    """Minibatches of operator data, reshuffled every epoch (a `sciml.fit` data source).

    For a `TripleCartesianProd` a batch is `batch_size` whole functions (rows of
    branch and y) against the full shared trunk, which is never copied; for `Fields`
    it is `batch_size` functions (a and u) on the shared grid; for a `Triple` it is
    `batch_size` rows.

    **Arguments:**

    - `data`: a `Triple`, `TripleCartesianProd` or `Fields`.
    - `batch_size`: functions (cartesian) or rows (triple) per step.
    """

    rows: Minibatches
    template: TripleCartesianProd | Triple | Fields

    def __init__(self, data, batch_size: int):
        if not isinstance(data, Triple | TripleCartesianProd | Fields):
            raise TypeError(
                "sciml.data.FunctionBatches: `data` must be a Triple, TripleCartesianProd or "
                f"Fields, got {type(data).__name__}."
            )
        data = jax.tree.map(jnp.asarray, data)
        if isinstance(data, Triple):
            self.rows = Minibatches(data, batch_size)
        else:
            self.rows = Minibatches(_rows(data), batch_size)
        self.template = data

    def init(self, key, step):
        return self.rows.init(key, step)

    def batch(self, state, key, step):
        rows, state = self.rows.batch(state, key, step)
        if isinstance(self.template, Triple):
            return rows, state
        return eqx.tree_at(_rows, self.template, rows), state

    def fixed_batch(self, key):
        return self.rows.fixed_batch(key)
