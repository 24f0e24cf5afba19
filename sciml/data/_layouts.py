"""Operator data in DeepXDE's two layouts, and their npz files.

- `Triple`: one row per (function, point) pair: branch (N, m), trunk (N, d), y (N, 1)
  (DeepXDE's `dde.data.Triple`).
- `TripleCartesianProd`: every function against one shared set of points:
  branch (N1, m), trunk (N2, d), y (N1, N2) (DeepXDE's `dde.data.TripleCartesianProd`).

Files (`load_npz`, `save_npz`), three ways of storing the arrays:

- `X_branch`, `X_trunk`, `y`: plain arrays, read without unpickling; what `save_npz`
  writes and the recommended layout;
- split keys `X_<s>0`, `X_<s>1`, `y_<s>` (DeepXDE's `antiderivative_unaligned`
  example; any suffix such as `train`), plain arrays too;
- key `X` holding an object array (branch, trunk) plus `y` (DeepXDE's
  `antiderivative_aligned` example). Reading an object array unpickles it, which runs
  any code the file carries, so it loads only with `allow_pickle=True`.
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


_PLAIN_KEYS = ("X_branch", "X_trunk", "y")


def _refuse_empty(path, named):
    """Refuses arrays without functions, sensors or points, naming the key and shape."""
    for key, a, axes in named:
        for axis, what in axes:
            if a.ndim > axis and a.shape[axis] == 0:
                raise ValueError(
                    f"sciml.data.load_npz: {path!r}: key {key!r} has shape {a.shape}: no "
                    f"{what}. Operator data needs at least one input function, one sensor "
                    "and one output point; write the file again from non-empty data (e.g. "
                    "sciml.data.save_npz(path, data))."
                )


def _read(archive, path, keys):
    out = []
    for key in keys:
        try:
            out.append(archive[key])
        except ValueError as e:
            if "allow_pickle" not in str(e):
                raise
            raise ValueError(
                f"sciml.data.load_npz: {path!r}: key {key!r} is an object array (as in "
                "DeepXDE's aligned example), and reading one unpickles it, which runs any "
                "code the file carries. If you made or trust the file, pass "
                "allow_pickle=True (`sciml operator train --allow-pickle`), then save it "
                "again without pickles with sciml.data.save_npz(path, data) (keys "
                "X_branch, X_trunk, y)."
            ) from None
    return out


def load_npz(path: str | os.PathLike, *, suffix: str | None = None, allow_pickle: bool = False):
    """Reads an operator-data npz file.

    Keys `X_branch`, `X_trunk`, `y` (what `save_npz` writes), split keys `X_<s>0`,
    `X_<s>1`, `y_<s>` for a suffix such as `train` or `test`, or, with
    `allow_pickle=True` only, DeepXDE's key `X` holding an object array
    `(branch, trunk)` plus `y`. The layout follows from the shapes: `Triple` when
    branch, trunk and y have one leading length N and y is `(N, 1)`, otherwise
    `TripleCartesianProd` (y `(N1, N2)`).

    **Arguments:**

    - `path`: the file.
    - `suffix`: which split-key set to read when the file holds several (e.g.
      `"train"` and `"test"` in one file); not needed when it holds one.
    - `allow_pickle`: read object arrays (default False). Unpickling runs any code
      stored in the file: pass True only for files you made or trust. Files that are
      not zip archives are refused either way.

    **Returns:**

    A `Triple` or a `TripleCartesianProd`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"sciml.data.load_npz: no such file {path!r}.")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ValueError(f"sciml.data.load_npz: cannot read {path!r}: {e.strerror or e}.") from None
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
        try:
            names, (branch, trunk, y) = _pick(archive, path, keys, suffix)
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise ValueError(f"sciml.data.load_npz: cannot read {path!r}: {e}") from e
    if len(names) == 1:  # branch and trunk both came from the object array X
        names = (f"{names[0]}[0]", f"{names[0]}[1]", "y")
    _refuse_empty(path, [
        (names[0], np.asarray(branch), ((0, "input functions"), (1, "sensors"))),
        (names[1], np.asarray(trunk), ((0, "output points"), (1, "output coordinates"))),
        (names[2], np.asarray(y), ((0, "values"), (1, "values"))),
    ])
    return make_layout(branch, trunk, y, where=f"sciml.data.load_npz({path!r})")


def _pick(archive, path, keys, suffix):
    """The key names and the (branch, trunk, y) arrays of the file's layout."""
    if suffix is not None:
        if suffix not in _split_suffixes(keys):
            raise ValueError(
                f"sciml.data.load_npz: {path!r} has no keys X_{suffix}0, X_{suffix}1, "
                f"y_{suffix} for `suffix={suffix!r}`; its split-key sets are "
                f"{sorted(_split_suffixes(keys))} (keys {sorted(keys)})."
            )
        names = (f"X_{suffix}0", f"X_{suffix}1", f"y_{suffix}")
        return names, _read(archive, path, names)
    if all(k in keys for k in _PLAIN_KEYS):
        return _PLAIN_KEYS, _read(archive, path, _PLAIN_KEYS)
    if "X" in keys and "y" in keys:
        x, y = _read(archive, path, ("X", "y"))
        if x.dtype != object and x.ndim >= 2 and x.shape[0] == 2:
            # numpy stacks a (branch, trunk) pair of equal shapes into one array.
            x = np.array([x[0], x[1], None], dtype=object)[:2]
        if x.dtype != object or x.shape != (2,):
            raise ValueError(
                f"sciml.data.load_npz: {path!r}: key 'X' must be an object array of two "
                f"entries (branch, trunk); got dtype {x.dtype} shape {x.shape}."
            )
        return ("X",), (np.asarray(x[0]), np.asarray(x[1]), y)
    suffixes = _split_suffixes(keys)
    if len(suffixes) > 1:
        raise ValueError(
            f"sciml.data.load_npz: {path!r} holds several split-key sets "
            f"{sorted(suffixes)}; choose one with `suffix=`, e.g. "
            f"`load_npz(path, suffix={sorted(suffixes)[0]!r})`."
        )
    if len(suffixes) != 1:
        raise ValueError(
            f"sciml.data.load_npz: {path!r} has keys {sorted(keys)}; expected 'X_branch', "
            "'X_trunk' and 'y' (what sciml.data.save_npz writes), one set of 'X_<s>0', "
            "'X_<s>1', 'y_<s>' (e.g. X_train0, X_train1, y_train), or DeepXDE's 'X' "
            "(object array of branch and trunk) and 'y'."
        )
    (s,) = suffixes
    names = (f"X_{s}0", f"X_{s}1", f"y_{s}")
    return names, _read(archive, path, names)


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
    object_array: bool = False,
    dtype=np.float32,
) -> str:
    """Writes operator data to an npz file that `load_npz` reads back without pickles.

    **Arguments:**

    - `path`: the file (`.npz`).
    - `data`: a `Triple` or `TripleCartesianProd`.
    - `suffix`: `None` (default) writes plain arrays `X_branch`, `X_trunk` and `y`; a
      name such as `"train"` writes DeepXDE's split keys `X_train0`, `X_train1`,
      `y_train` (its unaligned example).
    - `object_array`: write DeepXDE's aligned layout instead, key `X` an object array
      of branch and trunk plus `y`, for DeepXDE scripts that read `d["X"][0]`. Reading
      it back needs `allow_pickle=True` (numpy's and `load_npz`'s).
    - `dtype`: the float type stored (default float32, as DeepXDE's files).

    **Returns:**

    The path written.
    """
    if not isinstance(data, Triple | TripleCartesianProd):
        raise TypeError(
            f"sciml.data.save_npz: `data` must be a Triple or TripleCartesianProd, got "
            f"{type(data).__name__}."
        )
    if object_array and suffix is not None:
        raise ValueError(
            "sciml.data.save_npz: `object_array=True` writes keys X and y, with no suffix; "
            f"got suffix={suffix!r}. Pass one of the two."
        )
    path = os.fspath(path)
    branch, trunk, y = (np.asarray(a, dtype) for a in (data.branch, data.trunk, data.y))
    if object_array:
        x = np.empty(2, dtype=object)
        x[0], x[1] = branch, trunk
        np.savez(path, X=x, y=y)
    elif suffix is None:
        np.savez(path, X_branch=branch, X_trunk=trunk, y=y)
    else:
        if not isinstance(suffix, str) or not suffix.isidentifier():
            raise ValueError(
                f"sciml.data.save_npz: `suffix` must be a name such as 'train', got {suffix!r}."
            )
        np.savez(path, **{f"X_{suffix}0": branch, f"X_{suffix}1": trunk, f"y_{suffix}": y})
    return path if path.endswith(".npz") else path + ".npz"
