"""Operator data as fields on one uniform grid: the layout of grid operators (the FNO)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._layouts import TripleCartesianProd


def _check_array(x, name, where):
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{where}: `{name}` must hold real numbers, got dtype {x.dtype}.")
    if not np.all(np.isfinite(x)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(
            f"{where}: `{name}` has {int(np.sum(~np.isfinite(x)))} NaN/inf value(s), the "
            f"first at index {bad}; drop or fill those functions first."
        )
    return x


def _check_coords(coords, grid, where):
    if coords is None:
        return tuple(np.linspace(0.0, 1.0, n) for n in grid)
    coords = tuple(np.asarray(c, np.float64) for c in coords)
    if len(coords) != len(grid):
        raise ValueError(
            f"{where}: `coords` needs one 1-D array per grid axis ({len(grid)}), got "
            f"{len(coords)}."
        )
    for axis, (c, n) in enumerate(zip(coords, grid)):
        if c.shape != (n,):
            raise ValueError(
                f"{where}: `coords[{axis}]` has shape {c.shape}, but grid axis {axis} of the "
                f"fields has {n} points; pass the {n} coordinates of that axis."
            )
        steps = np.diff(c)
        if not np.all(np.isfinite(c)) or np.any(steps <= 0) or np.ptp(steps) > 1e-3 * steps.mean():
            raise ValueError(
                f"{where}: `coords[{axis}]` must be increasing and equispaced (the FNO's "
                f"uniform grid); its spacing runs from {steps.min():.4g} to "
                f"{steps.max():.4g}. Interpolate the data onto a uniform grid first."
            )
    return coords


class Fields(eqx.Module):
    """Operator data as fields on one uniform grid: input `a` and output `u` per function.

    The layout of grid operators such as `sciml.operators.FNO` (one grid for the input
    and the output of every function); `to_cartesian` gives the same data to a
    DeepONet.

    **Arguments:**

    - `a`: `(N, n)` (1-D) or `(N, nx, ny)` (2-D), the input function on the grid.
    - `u`: the output function on the same grid, the shape of `a`.
    - `coords`: one increasing, equispaced 1-D array per grid axis (default
      `linspace(0, 1, n)` per axis).

    Values must be finite; bad shapes and grids raise a `ValueError` naming them.
    """

    a: Array
    u: Array
    coords: tuple[Array, ...]

    def __init__(self, a, u, coords=None):
        where = "sciml.data.Fields"
        a, u = _check_array(a, "a", where), _check_array(u, "u", where)
        if a.ndim not in (2, 3) or u.shape != a.shape:
            raise ValueError(
                f"{where}: need `a` and `u` of one shape (N, n) or (N, nx, ny); got a "
                f"{a.shape} and u {u.shape}."
            )
        if a.shape[0] < 1 or min(a.shape[1:]) < 2:
            raise ValueError(
                f"{where}: need at least one function on a grid of 2 or more points per "
                f"axis, got shape {a.shape}."
            )
        self.a, self.u = a, u
        self.coords = _check_coords(coords, a.shape[1:], where)

    def __len__(self):
        return self.a.shape[0]

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.a.shape[1:])

    @property
    def dim(self) -> int:
        return self.a.ndim - 1

    def points(self) -> Array:
        """The grid's points, `(n1 * n2 ..., dim)`, in the order of `u.reshape(N, -1)`."""
        mesh = jnp.meshgrid(*self.coords, indexing="ij")
        return jnp.stack([m.reshape(-1) for m in mesh], axis=-1)

    def to_cartesian(self) -> TripleCartesianProd:
        """The same data for a DeepONet: sensors and output points both the grid."""
        n = len(self)
        return TripleCartesianProd(
            np.reshape(self.a, (n, -1)), np.asarray(self.points()), np.reshape(self.u, (n, -1))
        )
