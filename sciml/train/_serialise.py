"""`sciml.save` / `sciml.load`: pytrees to and from files (equinox's leaf format).

A file is the array leaves of a pytree, one `.npy` record after another in the order of
`jax.tree.leaves`. `load` reads it record by record against a `like` pytree, checking
each header (shape, dtype) before reading its data, so a damaged or hand-made file is
refused with the leaf it fails at instead of being cast, truncated or padded silently.
"""

from __future__ import annotations

import math
import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


# Typed PRNG keys (`jax.random.key`, e.g. in optax.add_noise's state) have no numpy
# dtype: they are stored as their key data and rebuilt with the key type of `like`.
def _save_leaf(f, x):
    return eqx.default_serialise_filter_spec(f, jax.random.key_data(x) if _is_key(x) else x)


def save(path: str | os.PathLike, pytree: Any) -> None:
    """Saves the array leaves of a pytree to `path`.

    The write is atomic (a temporary file renamed into place), so an interrupted save
    never leaves a truncated file. Load it back with `sciml.load(path, like)`.

    **Arguments:**

    - `path`: file to write; parent directories are created.
    - `pytree`: any pytree, e.g. a model or a `FitResult.model`.
    """
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            eqx.tree_serialise_leaves(f, pytree, filter_spec=_save_leaf)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class UnreadableArray(ValueError):
    """A `.npy` record that cannot be read: damaged, truncated or not an array."""


def read_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """`(shape, fortran_order, dtype)` of the `.npy` record at the position of `f`."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version} is not one sciml writes")
    except (ValueError, EOFError, SyntaxError, TypeError) as e:
        raise UnreadableArray(f"no array record there ({e})") from None
    if header[2].hasobject:
        # Object arrays are pickles: loading one could run code.
        raise UnreadableArray("the record holds Python objects (pickled data), never loaded")
    return header


def read_body(f, shape, fortran: bool, dtype: np.dtype, available: int) -> np.ndarray:
    """The data of a record whose header `read_header` returned; `available` is the
    number of bytes left in the stream, checked before anything is allocated."""
    n = math.prod(shape) * dtype.itemsize
    if n > available:
        raise UnreadableArray(
            f"the record needs {n} bytes of data but only {available} remain: the file "
            "is truncated"
        )
    data = f.read(n)
    if len(data) != n:
        raise UnreadableArray(f"the record ends early ({len(data)} of {n} bytes)")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C").copy()


def _template(x):
    """`(shape, dtype)` a stored leaf must have to replace `x`, or None for a leaf that
    is not stored (non-array leaves keep their value from `like`)."""
    if _is_key(x):
        x = jax.random.key_data(x)
    if isinstance(x, jax.Array | np.ndarray | np.generic | jax.ShapeDtypeStruct):
        return tuple(x.shape), np.dtype(x.dtype)
    if isinstance(x, bool | int | float | complex):
        return (), None
    return None


def _rebuild(x, value):
    if _is_key(x):
        return jax.random.wrap_key_data(jnp.asarray(value), impl=jax.random.key_impl(x))
    if isinstance(x, np.ndarray):
        return value
    if isinstance(x, np.generic):
        return x.dtype.type(value[()])
    if isinstance(x, bool | int | float | complex):
        return type(x)(value.item())
    return jnp.asarray(value)


# Python scalars are stored at the default precision of the time: any dtype of the kind.
_KINDS = ((bool, "b"), (int, "biu"), (float, "f"), (complex, "fc"))


def _check_leaf(where, x, shape, dtype, want_shape, want_dtype) -> np.dtype:
    """The dtype to read a record as (checked against the leaf `x` of `like`)."""
    if shape != want_shape:
        raise ValueError(
            f"leaf {where} is stored with shape {shape} but `like` has shape {want_shape}. "
            "Build `like` with the sizes of the saved pytree."
        )
    if want_dtype is None:
        if dtype.kind not in next(kinds for t, kinds in _KINDS if isinstance(x, t)):
            raise ValueError(
                f"leaf {where} is stored as {dtype} but `like` has a Python "
                f"{type(x).__name__} there. Build `like` the way the saved pytree was built."
            )
        return dtype
    # bfloat16 and the other ml_dtypes are stored as raw bytes (numpy void).
    if dtype.kind == "V" and want_dtype.kind == "V" and dtype.itemsize == want_dtype.itemsize:
        return want_dtype
    if dtype != want_dtype:
        hint = (
            " For float64, build `like` under `jax.enable_x64(True)`."
            if np.dtype(dtype).itemsize == 8 and dtype.kind in "fciu" else ""
        )
        raise ValueError(
            f"leaf {where} is stored as {dtype} but `like` has {want_dtype}; sciml.load "
            f"does not cast. Build `like` with dtype {dtype}, then cast the loaded "
            f"pytree if you need {want_dtype}.{hint}"
        )
    return dtype


def _read_leaves(f, like, size):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    out = []
    for i, (path, x) in enumerate(leaves):
        template = _template(x)
        if template is None:
            out.append(x)
            continue
        where = f"{jax.tree_util.keystr(path) or '(root)'} (leaf {i} of {len(leaves)})"
        if f.tell() == size:
            raise ValueError(
                f"the file ends before leaf {where}: it holds fewer leaves than `like` (a "
                "smaller model?) or was truncated. Pass a `like` built the same way as "
                "the saved pytree."
            )
        try:
            shape, fortran, dtype = read_header(f)
            dtype = _check_leaf(where, x, shape, dtype, *template)
            value = read_body(f, shape, fortran, dtype, size - f.tell())
        except UnreadableArray as e:
            raise ValueError(
                f"leaf {where}: {e}. The file is damaged or was not written by sciml.save."
            ) from None
        out.append(_rebuild(x, value))
    if f.tell() != size:
        raise ValueError(
            f"{size - f.tell()} bytes follow the last leaf of `like`: the file holds more "
            "leaves than `like` (a bigger model?) or something was appended to it. Pass "
            "a `like` built the same way as the saved pytree."
        )
    return jax.tree.unflatten(treedef, out)


def load(path: str | os.PathLike, like: Any) -> Any:
    """Loads a pytree saved by `sciml.save`.

    Each stored leaf must have the shape and dtype of the matching leaf of `like`:
    nothing is cast (a float64 file does not load into a float32 model), and a file
    with leaves missing or left over is refused, naming the leaf.

    **Arguments:**

    - `path`: file written by `sciml.save`.
    - `like`: a pytree with the same structure, shapes and dtypes (e.g. a freshly
      initialised model); its leaves are replaced by the saved ones.

    **Returns:**

    A pytree like `like` holding the saved values.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sciml.load: no file at {path!r}.")
    with open(path, "rb") as f:
        try:
            return _read_leaves(f, like, os.fstat(f.fileno()).st_size)
        except ValueError as e:
            raise ValueError(f"sciml.load: {path!r}: {e}") from None
