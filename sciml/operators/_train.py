"""Operator models on operator data: prediction, losses and metrics shared by the
problems, the `sciml operator` command and the notebook."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..data import Triple, TripleCartesianProd
from ._deeponet import DeepONet
from ._lssl import LSSL, AbstractView, DeepLSSL


def _default_float():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def as_arrays(data, dtype=None):
    """The same layout with JAX arrays of the default float (float32 unless x64)."""
    dtype = _default_float() if dtype is None else dtype
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), data)


def check_aligned(data, *, where: str = "sciml.operators") -> float:
    """Checks that `data` suits a sequence model; returns the grid spacing.

    Aligned data: a `TripleCartesianProd` whose output points are 1-d, as many as the
    sensors, and equispaced, so the output sequence sits on the sensor grid (the
    usual assumption of DeepXDE's aligned files, which do not store the sensors).
    """
    if not isinstance(data, TripleCartesianProd):
        raise ValueError(
            f"{where}: an LSSL needs aligned data (every function on one grid: the "
            f"TripleCartesianProd layout, y of shape (N1, N2)); got {type(data).__name__} "
            "with one random point per row. Use the DeepONet for unaligned data."
        )
    trunk = np.asarray(data.trunk, np.float64)
    m, n2 = data.branch.shape[1], trunk.shape[0]
    if trunk.shape[1] != 1:
        raise ValueError(
            f"{where}: an LSSL needs 1-d output points (a time or space axis); the trunk "
            f"has dimension {trunk.shape[1]}. Use the DeepONet."
        )
    if n2 != m:
        raise ValueError(
            f"{where}: an LSSL needs the output points to be the sensor grid, but there are "
            f"{m} sensors and {n2} output points. Use the DeepONet, or resample the data."
        )
    x = trunk[:, 0]
    steps = np.diff(x)
    if n2 < 2 or np.any(steps <= 0) or np.ptp(steps) > 1e-3 * abs(steps.mean()):
        raise ValueError(
            f"{where}: an LSSL needs increasing, equispaced output points; these are not "
            "(spacing from {:.3g} to {:.3g}). Use the DeepONet.".format(steps.min(), steps.max())
            if n2 >= 2
            else f"{where}: an LSSL needs at least 2 output points."
        )
    return float(steps.mean())


def sequence_apply(model, u, *, view: AbstractView | None = None, dt_scale=1.0):
    """A sequence model (`LSSL` with one feature and channel, or `DeepLSSL` with scalar
    input and output) on one sequence `u` (L,) -> (L,)."""
    if isinstance(model, LSSL):
        if model.features != 1 or model.channels != 1:
            raise ValueError(
                "sciml.operators: an LSSL used as an operator needs features=1 and "
                f"channels=1, got {model.features} and {model.channels}; use DeepLSSL."
            )
        return model(u[:, None], view=view, dt_scale=dt_scale)[:, 0]
    if isinstance(model, DeepLSSL):
        x = u if model.in_size == "scalar" else u[:, None]
        out = model(x, view=view, dt_scale=dt_scale)
        return out if model.out_size == "scalar" else out[:, 0]
    raise TypeError(f"sciml.operators: not a sequence model: {type(model).__name__}.")


def predict(model, data, *, view: AbstractView | None = None, dt_scale=1.0):
    """The model's prediction for `data`, shaped like `data.y`.

    **Arguments:**

    - `model`: a `DeepONet`, or a sequence model (`LSSL`, `DeepLSSL`) for aligned
      `TripleCartesianProd` data.
    - `data`: a `Triple` or `TripleCartesianProd`.
    - `view`, `dt_scale`: passed to sequence models.
    """
    if isinstance(model, DeepONet):
        if isinstance(data, TripleCartesianProd):
            return model.cartesian(data.branch, data.trunk)
        if isinstance(data, Triple):
            return jax.vmap(model)(data.branch, data.trunk)[:, None]
        raise TypeError(f"sciml.operators.predict: unknown data {type(data).__name__}.")
    if isinstance(data, Triple):
        raise ValueError(
            "sciml.operators.predict: sequence models need aligned TripleCartesianProd data."
        )
    return jax.vmap(lambda u: sequence_apply(model, u, view=view, dt_scale=dt_scale))(data.branch)


def mse_loss(model, batch, *, key=None):
    """Mean squared error of `predict(model, batch)` against `batch.y` (a `sciml.fit` loss)."""
    del key
    return jnp.mean((predict(model, batch) - batch.y) ** 2)


def metrics(pred, y) -> dict:
    """`{"mse", "rel_l2"}`: rel_l2 is the mean over functions of ||pred - y|| / ||y||
    for cartesian data (rows are functions), and ||pred - y|| / ||y|| over all rows
    for triples (y of shape (N, 1))."""
    pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
    mse = float(np.mean((pred - y) ** 2))
    if y.ndim == 2 and y.shape[1] > 1:
        num = np.linalg.norm(pred - y, axis=1)
        den = np.maximum(np.linalg.norm(y, axis=1), 1e-300)
        rel = float(np.mean(num / den))
    else:
        rel = float(np.linalg.norm(pred - y) / max(np.linalg.norm(y), 1e-300))
    return {"mse": mse, "rel_l2": rel}


@eqx.filter_jit
def _predict_jit(model, data, view, dt_scale):
    return predict(model, data, view=view, dt_scale=dt_scale)


def evaluate(model, data, *, view: AbstractView | None = None, dt_scale=1.0) -> dict:
    """`metrics(predict(model, data), data.y)`, compiled."""
    data = as_arrays(data)
    # An array, not a static float: one compilation serves every step scale.
    pred = _predict_jit(model, data, view, jnp.asarray(dt_scale, data.y.dtype))
    return metrics(pred, data.y)
