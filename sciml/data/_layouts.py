"""Operator data in DeepXDE's two layouts, and their npz files.

- `Triple`: one row per (function, point) pair: branch (N, m), trunk (N, d), y (N, 1)
  (DeepXDE's `dde.data.Triple`).
- `TripleCartesianProd`: every function against one shared set of points:
  branch (N1, m), trunk (N2, d), y (N1, N2) (DeepXDE's `dde.data.TripleCartesianProd`).

DeepXDE users keep these in `.npz` files written one of two ways, and both load here
unchanged: key `X` holding an object array of two entries (branch, trunk) plus `y`
(the `antiderivative_aligned` example), or split keys `X_train0`, `X_train1`,
`y_train` (the `antiderivative_unaligned` example; any suffix such as `test`).
"""

from __future__ import annotations

import os
import zipfile

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, PRNGKeyArray


def _as_2d(x, name, where):
    x = np.asarray(x)
    if x.dtype == object:
        raise TypeError(f"{where}: `{name}` is an object array; pass a numeric array.")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{where}: `{name}` must be 2-d, got shape {x.shape}.")
    return x


class Triple(eqx.Module):
    """Operator data as (function, point, value) triples, DeepXDE's `Triple` layout.

    **Arguments:**

    - `branch`: `(N, m)`, the input function of each row at the m sensors.
    - `trunk`: `(N, d)`, the output location of each row.
    - `y`: `(N, 1)` (or `(N,)`), the operator's value there.
    """

    branch: Array
    trunk: Array
    y: Array

    def __init__(self, branch, trunk, y):
        where = "sciml.data.Triple"
        branch = _as_2d(branch, "branch", where)
        trunk = _as_2d(trunk, "trunk", where)
        y = _as_2d(y, "y", where)
        n = branch.shape[0]
        if trunk.shape[0] != n or y.shape != (n, 1):
            raise ValueError(
                f"{where}: need branch (N, m), trunk (N, d) and y (N, 1) with one N; got "
                f"branch {branch.shape}, trunk {trunk.shape}, y {y.shape}. For one set of "
                "points shared by every function use sciml.data.TripleCartesianProd."
            )
        self.branch, self.trunk, self.y = branch, trunk, y

    def __len__(self):
        return self.branch.shape[0]

    @property
    def sensors(self) -> int:
        return self.branch.shape[1]

    @property
    def dim(self) -> int:
        return self.trunk.shape[1]


class TripleCartesianProd(eqx.Module):
    """Operator data on a shared point set, DeepXDE's `TripleCartesianProd` layout.

    **Arguments:**

    - `branch`: `(N1, m)`, N1 input functions at the m sensors.
    - `trunk`: `(N2, d)`, the N2 output locations shared by every function.
    - `y`: `(N1, N2)`, the operator's value of function i at point j.
    """

    branch: Array
    trunk: Array
    y: Array

    def __init__(self, branch, trunk, y):
        where = "sciml.data.TripleCartesianProd"
        branch = _as_2d(branch, "branch", where)
        trunk = _as_2d(trunk, "trunk", where)
        y = np.asarray(y)
        if y.shape != (branch.shape[0], trunk.shape[0]):
            raise ValueError(
                f"{where}: need branch (N1, m), trunk (N2, d) and y (N1, N2); got branch "
                f"{branch.shape}, trunk {trunk.shape}, y {y.shape}."
            )
        self.branch, self.trunk, self.y = branch, trunk, y

    def __len__(self):
        return self.branch.shape[0]

    @property
    def sensors(self) -> int:
        return self.branch.shape[1]

    @property
    def dim(self) -> int:
        return self.trunk.shape[1]

    def to_triple(self) -> Triple:
        """Every (function, point) pair as one row: N1 * N2 rows."""
        n1, n2 = self.y.shape
        return Triple(
            np.repeat(self.branch, n2, axis=0),
            np.tile(self.trunk, (n1, 1)),
            self.y.reshape(n1 * n2, 1),
        )

    def sample_points(self, per_function: int, *, key: PRNGKeyArray) -> Triple:
        """`per_function` distinct random points of each function, as a `Triple`."""
        n1, n2 = self.y.shape
        kind = np.asarray(per_function).dtype
        if (
            isinstance(per_function, bool)
            or np.ndim(per_function) != 0
            or not np.issubdtype(kind, np.integer)
            or not 1 <= int(per_function) <= n2
        ):
            raise ValueError(
                f"TripleCartesianProd.sample_points: `per_function` must be an int in "
                f"[1, {n2}], got {per_function!r}."
            )
        per_function = int(per_function)
        keys = jax.random.split(key, n1)
        idx = np.stack(
            [np.asarray(jax.random.permutation(k, n2))[:per_function] for k in keys]
        )
        rows = np.repeat(np.arange(n1), per_function)
        cols = idx.reshape(-1)
        return Triple(self.branch[rows], self.trunk[cols], self.y[rows, cols][:, None])


# ----------------------------------------------------------------------------------
# npz files


def _split_suffixes(keys):
    out = []
    for k in keys:
        if k.startswith("X_") and k.endswith("0"):
            suffix = k[2:-1]
            if f"X_{suffix}1" in keys and f"y_{suffix}" in keys:
                out.append(suffix)
    return out


def load_npz(path: str | os.PathLike, *, suffix: str | None = None, allow_pickle: bool = True):
    """Reads a DeepXDE operator-data npz file.

    Both ways DeepXDE users write them load: key `X` holding an object array
    `(branch, trunk)` plus `y`, or split keys `X_<s>0`, `X_<s>1`, `y_<s>` for a suffix
    such as `train` or `test`. The layout follows from the shapes: `Triple` when
    branch, trunk and y have one leading length N and y is `(N, 1)`, otherwise
    `TripleCartesianProd` (y `(N1, N2)`).

    **Arguments:**

    - `path`: the file.
    - `suffix`: which split-key set to read when the file holds several (e.g.
      `"train"` and `"test"` in one file); not needed when it holds one.
    - `allow_pickle`: an `X` object array can only be read by unpickling, which can
      run code stored in the file; pass `False` for files you do not trust (then only
      split-key files load). Files that are not zip archives are refused either way.

    **Returns:**

    A `Triple` or a `TripleCartesianProd`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"sciml.data.load_npz: no such file {path!r}.")
    with open(path, "rb") as f:
        magic = f.read(4)
    # np.load unpickles any file that does not start as a zip archive (arbitrary code);
    # zipfile.is_zipfile would also pass a pickle with a zip appended.
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ValueError(
            f"sciml.data.load_npz: {path!r} is not an npz (zip) archive; write it with "
            "numpy.savez or sciml.data.save_npz (a CSV or a pickle is not read here)."
        )
    try:
        archive = np.load(path, allow_pickle=allow_pickle)
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ValueError(f"sciml.data.load_npz: cannot read {path!r} as an npz file: {e}") from e
    with archive:
        keys = set(archive.files)
        if suffix is not None:
            if suffix not in _split_suffixes(keys):
                raise ValueError(
                    f"sciml.data.load_npz: {path!r} has no keys X_{suffix}0, X_{suffix}1, "
                    f"y_{suffix} for `suffix={suffix!r}`; its split-key sets are "
                    f"{sorted(_split_suffixes(keys))} (keys {sorted(keys)})."
                )
            s = suffix
            branch, trunk, y = archive[f"X_{s}0"], archive[f"X_{s}1"], archive[f"y_{s}"]
        elif "X" in keys and "y" in keys:
            try:
                x = archive["X"]
            except ValueError as e:  # object array without allow_pickle
                raise ValueError(
                    f"sciml.data.load_npz: {path!r} stores X as an object array, which needs "
                    "allow_pickle=True; only pass it for files you trust."
                ) from e
            if x.dtype != object and x.ndim >= 2 and x.shape[0] == 2:
                # numpy stacks a (branch, trunk) pair of equal shapes into one array.
                x = np.array([x[0], x[1], None], dtype=object)[:2]
            if x.dtype != object or x.shape != (2,):
                raise ValueError(
                    f"sciml.data.load_npz: {path!r}: key 'X' must be an object array of two "
                    f"entries (branch, trunk); got dtype {x.dtype} shape {x.shape}."
                )
            branch, trunk, y = np.asarray(x[0]), np.asarray(x[1]), archive["y"]
        else:
            suffixes = _split_suffixes(keys)
            if len(suffixes) > 1:
                raise ValueError(
                    f"sciml.data.load_npz: {path!r} holds several split-key sets "
                    f"{sorted(suffixes)}; choose one with `suffix=`, e.g. "
                    f"`load_npz(path, suffix={sorted(suffixes)[0]!r})`."
                )
            if len(suffixes) != 1:
                raise ValueError(
                    f"sciml.data.load_npz: {path!r} has keys {sorted(keys)}; expected 'X' "
                    "(object array of branch and trunk) and 'y', or one set of 'X_<s>0', "
                    "'X_<s>1', 'y_<s>' (e.g. X_train0, X_train1, y_train)."
                )
            (s,) = suffixes
            branch, trunk, y = archive[f"X_{s}0"], archive[f"X_{s}1"], archive[f"y_{s}"]
    return make_layout(branch, trunk, y, where=f"sciml.data.load_npz({path!r})")


def make_layout(branch, trunk, y, *, where="sciml.data.make_layout"):
    """`Triple` or `TripleCartesianProd`, whichever the shapes describe."""
    branch, trunk, y = np.asarray(branch), np.asarray(trunk), np.asarray(y)
    for name, a in (("branch", branch), ("trunk", trunk), ("y", y)):
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{where}: {name} must hold real numbers, got dtype {a.dtype}.")
        if not np.all(np.isfinite(a)):
            bad = np.argwhere(~np.isfinite(a))[0]
            raise ValueError(
                f"{where}: {name} has {int(np.sum(~np.isfinite(a)))} NaN/inf value(s), the "
                f"first at index {tuple(int(i) for i in bad)}; drop or fill them first."
            )
    if trunk.ndim == 1:
        trunk = trunk[:, None]
    if branch.ndim == 1:  # one sensor per function
        branch = branch[:, None]
    if branch.ndim != 2 or trunk.ndim != 2 or y.ndim not in (1, 2):
        raise ValueError(
            f"{where}: need branch (N, m), trunk (N or N2, d) and y; got shapes "
            f"{branch.shape}, {trunk.shape}, {y.shape}."
        )
    n = branch.shape[0]
    if trunk.shape[0] == n and y.reshape(-1).shape == (n,) and (y.ndim == 1 or y.shape[1] == 1):
        return Triple(branch, trunk, y.reshape(n, 1))
    if y.shape == (n, trunk.shape[0]):
        return TripleCartesianProd(branch, trunk, y)
    raise ValueError(
        f"{where}: shapes branch {branch.shape}, trunk {trunk.shape}, y {y.shape} match "
        "neither Triple (N, m), (N, d) -> (N, 1) nor TripleCartesianProd "
        "(N1, m), (N2, d) -> (N1, N2)."
    )


def save_npz(
    path: str | os.PathLike,
    data: Triple | TripleCartesianProd,
    *,
    suffix: str | None = None,
    dtype=np.float32,
) -> str:
    """Writes operator data the way DeepXDE's examples read it.

    **Arguments:**

    - `path`: the file (`.npz`).
    - `data`: a `Triple` or `TripleCartesianProd`.
    - `suffix`: `None` writes `X` (object array of branch and trunk) and `y`, as in
      DeepXDE's aligned example; a string such as `"train"` writes split keys
      `X_train0`, `X_train1`, `y_train`, as in the unaligned example (no pickle).
    - `dtype`: the float type stored (default float32, as DeepXDE's files).

    **Returns:**

    The path written.
    """
    if not isinstance(data, Triple | TripleCartesianProd):
        raise TypeError(
            f"sciml.data.save_npz: `data` must be a Triple or TripleCartesianProd, got "
            f"{type(data).__name__}."
        )
    path = os.fspath(path)
    branch, trunk, y = (np.asarray(a, dtype) for a in (data.branch, data.trunk, data.y))
    if suffix is None:
        x = np.empty(2, dtype=object)
        x[0], x[1] = branch, trunk
        np.savez(path, X=x, y=y)
    else:
        if not isinstance(suffix, str) or not suffix.isidentifier():
            raise ValueError(
                f"sciml.data.save_npz: `suffix` must be a name such as 'train', got {suffix!r}."
            )
        np.savez(path, **{f"X_{suffix}0": branch, f"X_{suffix}1": trunk, f"y_{suffix}": y})
    return path if path.endswith(".npz") else path + ".npz"
