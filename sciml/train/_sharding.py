"""Data parallelism: `fit`'s `devices=` as a one-axis mesh.

The batch axis (the leading axis of every batch leaf) is sharded over the devices and
the parameters are replicated; an update with a member axis (an ensemble) shards its
members instead, so each device holds and forecasts a slice of them and the update's
sums over members become cross-device reductions.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._data import FixedData, NoData


PyTree = Any


def _put(tree, sharding):
    return tree if sharding is None else jax.device_put(tree, sharding)


class Devices:
    """The devices of a run (a one-axis mesh named "batch"), or none (one device).

    **Arguments:**

    - `devices`: `fit`'s `devices=`: None, a number of devices or a list of them.
    """

    def __init__(self, devices):
        self.mesh = _make_mesh(devices)
        self.count = 1 if self.mesh is None else self.mesh.size
        spec, named = jax.sharding.PartitionSpec, jax.sharding.NamedSharding
        self.replicated = None if self.mesh is None else named(self.mesh, spec())
        self.split = None if self.mesh is None else named(self.mesh, spec("batch"))

    def check_stage(self, update, source, batch0, model, where):
        """Refuses a stage that cannot be split over the devices."""
        if self.mesh is None:
            return
        if update.member_axis:
            members = jax.tree.leaves(model)[0].shape[0]
            if members % self.count:
                raise ValueError(
                    f"sciml.fit: `devices=` shards an ensemble's {members} members over "
                    f"{self.count} devices; make the number of members a multiple of "
                    f"{self.count}."
                )
            return
        if isinstance(source, NoData):
            raise ValueError(
                "sciml.fit: `devices=` shards the batch axis of `data`, but `data=None`. "
                "Pass the points as data (an array pytree, Minibatches or a resampler)."
            )
        if batch0 is not None:
            _check_batch_sharding(jax.eval_shape(lambda: batch0), self.count, where)

    def batch_sharding(self, update):
        """What a step's batch is constrained to (an ensemble shards members instead)."""
        return None if update.member_axis else self.split

    def place_model(self, params, frozen, member_axis: bool):
        """Parameters and frozen arrays on the devices (replicated, or split by member)."""
        where = self.split if member_axis else self.replicated
        return _put(params, where), _put(frozen, where)

    def replicate(self, tree):
        return _put(tree, self.replicated)

    def place_batch(self, batch):
        return _put(batch, self.split)

    def place_data(self, source, data_arrays, program):
        """The source with its arrays placed: a fixed batch is sharded once; minibatch
        pools stay replicated, and each gathered batch is constrained inside the step."""
        if self.mesh is None or data_arrays is None:
            return source, data_arrays
        shard = isinstance(source, FixedData) and program.batch_sharding is not None
        sharding = self.split if shard else self.replicated
        data_arrays = jax.tree.map(
            lambda x: jax.device_put(x, sharding if jnp.ndim(x) else self.replicated),
            data_arrays,
        )
        return eqx.combine(data_arrays, eqx.partition(source, eqx.is_array)[1]), data_arrays


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
