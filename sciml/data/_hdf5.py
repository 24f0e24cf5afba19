"""PDEBench's HDF5 files (Takamoto et al., NeurIPS 2022 Datasets and Benchmarks) as
operator data on one grid.

Two of PDEBench's single-field layouts, both with `x-coordinate` (and `y-coordinate`)
holding the grid:

- time series, `tensor` of shape `(N, nt, nx)` (1-D: Burgers, advection, diffusion-
  sorption, ...) or `(N, nt, nx, ny)` (2-D), with `t-coordinate` of `nt` or `nt + 1`
  entries (PDEBench's 1-D files store one more time than snapshots); the operator maps
  the snapshot at `input_time` to the one at `output_time`;
- steady 2-D Darcy flow, `nu` `(N, nx, ny)` (the coefficient, the input) and `tensor`
  `(N, 1, nx, ny)` (the solution, the output).

h5py is an optional dependency (`pip install 'sciml[hdf5]'`), imported only here.
"""

from __future__ import annotations

import os

import numpy as np

from ._fields import Fields


_WHERE = "sciml.data.load_pdebench"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(
            f"{_WHERE}: reading HDF5 files needs h5py, an optional dependency of sciml; "
            "install it with `pip install 'sciml[hdf5]'` (or `pip install h5py`)."
        ) from None
    return h5py


def _dataset(f, path, key, ndims):
    if key not in f:
        raise ValueError(
            f"{_WHERE}({path!r}): no dataset {key!r}; the file holds {sorted(f.keys())}. "
            "Expected PDEBench's single-field layout: 'tensor' (N, nt, nx) or (N, nt, nx, "
            "ny) with 'x-coordinate' (and 'y-coordinate', 't-coordinate'), or 2-D Darcy "
            "'nu' (N, nx, ny) with 'tensor' (N, 1, nx, ny)."
        )
    obj = f[key]
    shape = getattr(obj, "shape", None)
    if shape is None or len(shape) not in ndims:
        raise ValueError(
            f"{_WHERE}({path!r}): {key!r} must have {' or '.join(map(str, ndims))} axes, got "
            f"{'a group' if shape is None else f'shape {shape}'}."
        )
    return obj


def _coordinate(f, path, key, n):
    c = np.asarray(_dataset(f, path, key, (1,))[()], np.float64)
    if c.shape != (n,):
        raise ValueError(
            f"{_WHERE}({path!r}): {key!r} has {c.shape[0]} entries but the fields have {n} "
            f"points along that axis; the grid and the data do not match."
        )
    return c


def _snapshot(tensor, path, index, name):
    nt = tensor.shape[1]
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or not -nt <= index < nt:
        raise ValueError(
            f"{_WHERE}({path!r}): `{name}` must be an int in [{-nt}, {nt - 1}] (the file "
            f"has {nt} snapshots), got {index!r}."
        )
    return int(index) % nt


def _finite(arr, path, key, what):
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{_WHERE}({path!r}): {key!r} ({what}) has {int(bad.sum())} NaN/inf value(s) "
            f"in the samples read, the first in sample {first[0]} at grid index "
            f"{first[1:]}; drop those samples or fix the file."
        )


def load_pdebench(
    path: str | os.PathLike,
    *,
    input_time: int = 0,
    output_time: int = -1,
    num: int | None = None,
    stride: int = 1,
) -> Fields:
    """Reads a PDEBench HDF5 file as operator data on one grid (`Fields`).

    **Arguments:**

    - `path`: the `.hdf5` / `.h5` file.
    - `input_time`, `output_time`: time series only: the snapshots the operator maps
      from and to (default the first and the last).
    - `num`: read only the first `num` samples (default all).
    - `stride`: keep every `stride`-th grid point per axis (PDEBench's
      `reduced_resolution`; default 1).

    **Returns:**

    `Fields` with `a` the input and `u` the output, `(N, nx)` or `(N, nx, ny)`, in
    float64, and `coords` the file's coordinates. Files that are not in one of the two
    layouts, whose coordinates do not match the data, or with NaN/inf values among
    the samples read, raise a `ValueError` naming the key before anything is trained.
    """
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{_WHERE}: no such file {path!r}.")
    for name, value, low in (("num", num, 1), ("stride", stride, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low):
            raise ValueError(f"{_WHERE}: `{name}` must be a positive int, got {value!r}.")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{_WHERE}: cannot read {path!r} as an HDF5 file: {e}") from None
    with f:
        darcy = "nu" in f
        tensor = _dataset(f, path, "tensor", (4,) if darcy else (3, 4))
        n = tensor.shape[0] if num is None else min(num, tensor.shape[0])
        grid_axes = tensor.ndim - 2
        sub = (slice(None),) + (slice(None, None, stride),) * grid_axes
        if darcy:
            nu = _dataset(f, path, "nu", (3,))
            if tensor.shape[1] != 1 or nu.shape[0] != tensor.shape[0] or (
                nu.shape[1:] != tensor.shape[2:]
            ):
                raise ValueError(
                    f"{_WHERE}({path!r}): Darcy files need 'nu' (N, nx, ny) and 'tensor' "
                    f"(N, 1, nx, ny) on one grid; got 'nu' {nu.shape} and 'tensor' "
                    f"{tensor.shape}."
                )
            a, u = nu[:n], tensor[:n, 0]
            what = ("the input", "the output")
        else:
            i = _snapshot(tensor, path, input_time, "input_time")
            j = _snapshot(tensor, path, output_time, "output_time")
            if i == j:
                raise ValueError(
                    f"{_WHERE}({path!r}): `input_time` and `output_time` are both snapshot "
                    f"{i}; pick two different snapshots."
                )
            a, u = tensor[:n, i], tensor[:n, j]
            what = (f"snapshot {i}, the input", f"snapshot {j}, the output")
            if "t-coordinate" in f:
                t = np.asarray(_dataset(f, path, "t-coordinate", (1,))[()])
                if t.shape[0] not in (tensor.shape[1], tensor.shape[1] + 1):
                    raise ValueError(
                        f"{_WHERE}({path!r}): 't-coordinate' has {t.shape[0]} entries but "
                        f"'tensor' has {tensor.shape[1]} snapshots (PDEBench stores nt or "
                        "nt + 1 times)."
                    )
        keys = ("x-coordinate", "y-coordinate")[:grid_axes]
        coords = [_coordinate(f, path, k, m) for k, m in zip(keys, a.shape[1:])]
    a, u = np.asarray(a, np.float64), np.asarray(u, np.float64)
    _finite(a, path, "nu" if darcy else "tensor", what[0])
    _finite(u, path, "tensor", what[1])
    a, u = a[sub], u[sub]
    coords = tuple(c[::stride] for c in coords)
    try:
        return Fields(a, u, coords)
    except ValueError as e:
        raise ValueError(f"{_WHERE}({path!r}): {e}") from None
