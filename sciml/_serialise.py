"""`sciml.save` / `sciml.load`: pytrees to and from files (equinox serialisation)."""

from __future__ import annotations

import os
from typing import Any

import equinox as eqx
import jax


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


# Typed PRNG keys (`jax.random.key`, e.g. in optax.add_noise's state) have no numpy
# dtype: they are stored as their key data and rebuilt with the key type of `like`.
def _save_leaf(f, x):
    return eqx.default_serialise_filter_spec(f, jax.random.key_data(x) if _is_key(x) else x)


def _load_leaf(f, x):
    if _is_key(x):
        data = eqx.default_deserialise_filter_spec(f, jax.random.key_data(x))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return eqx.default_deserialise_filter_spec(f, x)


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


def load(path: str | os.PathLike, like: Any) -> Any:
    """Loads a pytree saved by `sciml.save`.

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
    try:
        with open(path, "rb") as f:
            return eqx.tree_deserialise_leaves(f, like, filter_spec=_load_leaf)
    except Exception as e:
        raise ValueError(
            f"sciml.load: {path!r} does not match the structure of `like` ({e}). Pass a "
            "`like` built the same way as the saved pytree (same sizes, dtypes and "
            "float64 setting)."
        ) from e
