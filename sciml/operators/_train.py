"""Operator models on operator data: prediction, losses and metrics shared by the
problems, the `sciml operator` command and the notebook."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..data import Fields, Triple, TripleCartesianProd
from ._deeponet import DeepONet
from ._fno import FNO
from ._lssl import LSSL, AbstractView, DeepLSSL


def _default_float():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def as_arrays(data, dtype=None):
    """The same layout with JAX arrays of the default float (float32 unless x64)."""
    dtype = _default_float() if dtype is None else dtype
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), data)


def check_aligned(data, *, where: str = "sciml.operators", model: str = "an LSSL") -> float:
    """Checks that `data` suits a sequence or grid model; returns the grid spacing.

    Aligned data: a `TripleCartesianProd` whose output points are 1-d, as many as the
    sensors, and equispaced, so the output sequence sits on the sensor grid (the
    usual assumption of DeepXDE's aligned files, which do not store the sensors); or
    1-D `Fields`, whose grid is checked when they are made.

    **Arguments:**

    - `data`: the data.
    - `where`: the start of the error message (the caller's name).
    - `model`: the model named in the message (e.g. `"an FNO"`).

    **Returns:**

    The spacing of the grid.
    """
    if isinstance(data, Fields):
        if data.dim != 1:
            raise ValueError(
                f"{where}: {model} needs 1-D data on one axis here; these Fields are "
                f"{data.dim}-D (grid {data.grid})."
            )
        return float(np.mean(np.diff(np.asarray(data.coords[0], np.float64))))
    if not isinstance(data, TripleCartesianProd):
        raise ValueError(
            f"{where}: {model} needs aligned data (every function on one grid: the "
            f"TripleCartesianProd layout, y of shape (N1, N2)); got {type(data).__name__} "
            "with one random point per row. Use the DeepONet for unaligned data."
        )
    trunk = np.asarray(data.trunk, np.float64)
    m, n2 = data.branch.shape[1], trunk.shape[0]
    if trunk.shape[1] != 1:
        raise ValueError(
            f"{where}: {model} needs 1-d output points (a time or space axis); the trunk "
            f"has dimension {trunk.shape[1]}. Use the DeepONet."
        )
    if n2 != m:
        raise ValueError(
            f"{where}: {model} needs the output points to be the sensor grid, but there are "
            f"{m} sensors and {n2} output points. Use the DeepONet, or resample the data."
        )
    x = trunk[:, 0]
    steps = np.diff(x)
    if n2 < 2 or np.any(steps <= 0) or np.ptp(steps) > 1e-3 * abs(steps.mean()):
        raise ValueError(
            f"{where}: {model} needs increasing, equispaced output points; these are not "
            "(spacing from {:.3g} to {:.3g}). Use the DeepONet.".format(steps.min(), steps.max())
            if n2 >= 2
            else f"{where}: {model} needs at least 2 output points."
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


def _grid_inputs(model, data, where):
    """The input fields `(N, *grid)` of aligned or `Fields` data for a grid model,
    refused (from the shapes alone, so also under `jit`) if they are not on one grid."""
    if isinstance(data, Fields):
        return data.a
    if isinstance(data, Triple):
        raise ValueError(
            f"{where}: {type(model).__name__} needs every function on one grid "
            "(TripleCartesianProd or Fields), got a Triple (one random point per row). "
            "Use the DeepONet for unaligned data."
        )
    m, (n2, d) = data.branch.shape[1], data.trunk.shape
    if d != 1 or n2 != m:
        raise ValueError(
            f"{where}: {type(model).__name__} maps a function on a grid to a function on "
            f"the same 1-D grid, but the data have {m} sensors and {n2} output points of "
            f"dimension {d}. Use the DeepONet, or store 2-D data as sciml.data.Fields."
        )
    return data.branch


def _fno_apply(model, a, chunk):
    if model.in_channels != 1 or model.out_channels != 1 or a.ndim - 1 != model.dim:
        raise ValueError(
            "sciml.operators.predict: an FNO on operator data needs in_channels = "
            f"out_channels = 1 and {a.ndim - 1}-D modes for these {a.ndim - 1}-D inputs; "
            f"got {model.in_channels}, {model.out_channels} and modes {model.modes}."
        )
    run = lambda v: model(v[None])[0]  # noqa: E731
    # Chunks of functions bound the memory of the Fourier layers (width x grid each).
    if chunk is None or chunk >= a.shape[0]:
        return jax.vmap(run)(a)
    return jax.lax.map(run, a, batch_size=chunk)


def predict(model, data, *, view: AbstractView | None = None, dt_scale=1.0, chunk=None):
    """The model's prediction for `data`, shaped like its output (`data.y`, or `data.u`
    for `Fields`).

    **Arguments:**

    - `model`: a `DeepONet` (any layout); an `FNO` with one input and one output
      channel (aligned 1-D `TripleCartesianProd` data or `Fields` on its grid, any
      resolution); or a sequence model (`LSSL`, `DeepLSSL`) for aligned
      `TripleCartesianProd` or 1-D `Fields` data.
    - `data`: a `Triple`, `TripleCartesianProd` or `Fields`.
    - `view`, `dt_scale`: passed to sequence models.
    - `chunk`: FNO only: evaluate this many functions at a time (bounds the memory;
      default all at once).
    """
    where = "sciml.operators.predict"
    if not isinstance(data, Triple | TripleCartesianProd | Fields):
        raise TypeError(f"{where}: unknown data {type(data).__name__}.")
    if isinstance(model, DeepONet):
        if isinstance(data, Fields):
            n = data.a.shape[0]
            return model.cartesian(data.a.reshape(n, -1), data.points()).reshape(data.u.shape)
        if isinstance(data, TripleCartesianProd):
            return model.cartesian(data.branch, data.trunk)
        return jax.vmap(model)(data.branch, data.trunk)[:, None]
    if isinstance(model, FNO):
        return _fno_apply(model, _grid_inputs(model, data, where), chunk)
    u = _grid_inputs(model, data, where)
    if u.ndim != 2:
        raise ValueError(f"{where}: sequence models need 1-D data; got fields of shape {u.shape}.")
    return jax.vmap(lambda v: sequence_apply(model, v, view=view, dt_scale=dt_scale))(u)


def _target(data):
    return data.u if isinstance(data, Fields) else data.y


def mse_loss(model, batch, *, key=None):
    """Mean squared error of `predict(model, batch)` against the batch's output (`y`, or
    `u` for `Fields`); a `sciml.fit` loss."""
    del key
    return jnp.mean((predict(model, batch) - _target(batch)) ** 2)


def metrics(pred, y) -> dict:
    """`{"mse", "rel_l2"}`: rel_l2 is the mean over functions of ||pred - y|| / ||y||
    for cartesian data and fields (the first axis counts functions; the norm runs over
    the others), and ||pred - y|| / ||y|| over all rows for triples (y of shape (N, 1))."""
    pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
    mse = float(np.mean((pred - y) ** 2))
    if y.ndim >= 2 and np.prod(y.shape[1:]) > 1:
        pred, y = pred.reshape(len(pred), -1), y.reshape(len(y), -1)
        num = np.linalg.norm(pred - y, axis=1)
        den = np.maximum(np.linalg.norm(y, axis=1), 1e-300)
        rel = float(np.mean(num / den))
    else:
        rel = float(np.linalg.norm(pred - y) / max(np.linalg.norm(y), 1e-300))
    return {"mse": mse, "rel_l2": rel}


@eqx.filter_jit
def _predict_jit(model, data, view, dt_scale, chunk):
    return predict(model, data, view=view, dt_scale=dt_scale, chunk=chunk)


def evaluate(
    model, data, *, view: AbstractView | None = None, dt_scale=1.0, chunk: int | None = 32
) -> dict:
    """`metrics(predict(model, data), output)`, compiled (FNOs `chunk` functions at a
    time; `None` for all at once)."""
    data = as_arrays(data)
    target = _target(data)
    # An array, not a static float: one compilation serves every step scale.
    pred = _predict_jit(model, data, view, jnp.asarray(dt_scale, target.dtype), chunk)
    return metrics(pred, target)
