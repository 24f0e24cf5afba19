"""Parameter groups for `optax.multi_transform`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax


PyTree = Any


def param_labels(model: PyTree, groups: dict[str, Callable], *, default: str = "default"):
    """Labels for `optax.multi_transform`, one per parameter leaf.

    **Arguments:**

    - `model`: the model (or its trainable part).
    - `groups`: `{label: where}` where `where(model)` returns the leaf or subtree that
      gets `label` (as in `eqx.tree_at`).
    - `default`: label of every other leaf.

    **Returns:**

    A function `params -> labels` for `optax.multi_transform(transforms, labels)`.

    **Example:**

    ```python
    labels = sciml.param_labels(model, {"physics": lambda m: m.log_k}, default="net")
    opt = optax.multi_transform({"net": optax.adam(1e-3), "physics": optax.adam(1e-2)}, labels)
    ```
    """

    def labels(params):
        out = jax.tree.map(lambda _: default, params)
        for label, where in groups.items():
            try:
                out = eqx.tree_at(
                    where, out, replace_fn=lambda sub: jax.tree.map(lambda _: label, sub)
                )
            except Exception as e:
                raise ValueError(
                    f"sciml.param_labels: the selector for group {label!r} does not "
                    f"select a part of the parameters: {e}"
                ) from e
        return out

    del model
    return labels
