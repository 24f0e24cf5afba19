"""Physics-informed DeepONet (Wang, Wang and Perdikaris, Sci. Adv. 7:eabi8605, 2021,
arXiv 2103.10974): an operator network trained from the operator's equation.

For each input function u (its sensor values), the network's output y -> G(u)(y) is a
function of the trunk input; its residual at collocation points, its initial and
boundary conditions and any labelled values are each a named term of one loss,

    L = sum_k w_k mean_{functions, points} |r_k(G(u), y, v)|^2,

where r_k is written by the user with the forward-mode derivative helpers of
`sciml.pinn` (e.g. `sciml.pinn.derivative(field, y, 0)` for ds/dy), and v is the
per-point data the term reads (u at the point, a target value). Paired data are one
more term (`value_residual`), so the same loss trains with or without them.

Points shared by every function (a grid, an initial point) are stored once: under
`vmap` the trunk and its derivatives then run once per point, not once per
(function, point) pair, and only the branch runs per function.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..train import AbstractData, Minibatches


class Points(eqx.Module):
    """Points of the trunk input for one loss term, and the values the term reads there.

    **Arguments:**

    - `points`: `(Q, d)` points shared by every function, or `(N, Q, d)` points per
      function (a 1-D trunk input may drop the last axis: `(Q,)` or `(N, Q)` with
      `per_function=True`).
    - `values`: `None`, or per-function values at the points, `(N, Q)` or `(N, Q, k)`
      (e.g. the input function u at a collocation point, or a target value).
    - `per_function`: only needed for 1-D points given without their last axis.
    """

    points: Array
    values: Array | None
    shared: bool = eqx.field(static=True)

    def __init__(self, points, values=None, *, per_function: bool | None = None):
        points = np.asarray(points)
        if per_function is not None and points.ndim == (2 if per_function else 1):
            points = points[..., None]
        if points.ndim not in (2, 3) or not np.issubdtype(points.dtype, np.floating):
            raise ValueError(
                "sciml.operators.Points: `points` must be floating point, (Q, d) shared by "
                f"every function or (N, Q, d) per function; got shape {points.shape} and "
                f"dtype {points.dtype}. For 1-D points of shape (Q,) or (N, Q) pass "
                "per_function=False or True."
            )
        if values is not None:
            values = np.asarray(values)
            q = points.shape[-2]
            if values.ndim < 2 or values.shape[1] != q:
                raise ValueError(
                    f"sciml.operators.Points: `values` must be (N, {q}) or (N, {q}, k), one "
                    f"value per function and point; got shape {values.shape}."
                )
        self.points, self.values = points, values
        self.shared = points.ndim == 2


class PhysicsData(eqx.Module):
    """Training data of a physics-informed DeepONet: input functions and, per loss
    term, its points.

    **Arguments:**

    - `u`: `(N, m)`, the input functions at the m sensors.
    - `terms`: a dict `name -> Points`; the names are those of the
      `PhysicsInformedLoss`'s terms.
    """

    u: Array
    terms: dict[str, Points]

    def __init__(self, u, terms: dict[str, Points]):
        where = "sciml.operators.PhysicsData"
        u = np.asarray(u)
        if u.ndim != 2:
            raise ValueError(f"{where}: `u` must be (N, m) sensor values, got shape {u.shape}.")
        n = u.shape[0]
        if not isinstance(terms, dict) or not terms:
            raise ValueError(f"{where}: `terms` must be a non-empty dict name -> Points.")
        for name, term in terms.items():
            if not isinstance(term, Points):
                raise TypeError(
                    f"{where}: term {name!r} must be sciml.operators.Points, got "
                    f"{type(term).__name__}."
                )
            rows = [("values", term.values)] + ([] if term.shared else [("points", term.points)])
            for what, arr in rows:
                if arr is not None and arr.shape[0] != n:
                    raise ValueError(
                        f"{where}: term {name!r}: `{what}` has {arr.shape[0]} functions "
                        f"(shape {arr.shape}) but `u` has {n}; give one row per function."
                    )
        self.u, self.terms = u, dict(terms)

    def __len__(self):
        return self.u.shape[0]


def _per_function(data: PhysicsData):
    """The filter spec of the leaves with one row per function."""
    spec = jax.tree.map(lambda _: True, data)
    return eqx.tree_at(
        lambda d: [t.points for t in d.terms.values() if t.shared],
        spec,
        [False for t in data.terms.values() if t.shared],
    )


class PhysicsBatches(AbstractData):
    """Minibatches of `batch_size` functions of `PhysicsData`, reshuffled every epoch
    (a `sciml.fit` data source); shared points go into every batch whole.

    **Arguments:**

    - `data`: `PhysicsData`.
    - `batch_size`: functions per step.
    """

    rows: Minibatches
    shared: PhysicsData

    def __init__(self, data: PhysicsData, batch_size: int):
        if not isinstance(data, PhysicsData):
            raise TypeError(
                "sciml.operators.PhysicsBatches: `data` must be sciml.operators.PhysicsData, "
                f"got {type(data).__name__}."
            )
        data = jax.tree.map(jnp.asarray, data)
        rows, self.shared = eqx.partition(data, _per_function(data))
        self.rows = Minibatches(rows, batch_size)

    def init(self, key, step):
        return self.rows.init(key, step)

    def batch(self, state, key, step):
        rows, state = self.rows.batch(state, key, step)
        return eqx.combine(rows, self.shared), state

    def fixed_batch(self, key):
        return eqx.combine(self.rows.fixed_batch(key), self.shared)


def value_residual(field: Callable, y: Array, target: Array) -> Array:
    """`field(y) - target`: a labelled value, or an initial or Dirichlet condition.
    A term's residual function of a `PhysicsInformedLoss` (target 0 when the term's
    `values` are None)."""
    value = field(y)
    return value if target is None else value - jnp.reshape(target, jnp.shape(value))


def term_residuals(model, fn: Callable, u: Array, term: Points) -> Array:
    """The residuals `fn(field, y, v)` of one term at its points, for every function.

    **Arguments:**

    - `model`: an operator network `model(u, y) -> scalar` (a `DeepONet`).
    - `fn`: `fn(field, y, v) -> residual` (scalar or vector), with `field(y) =
      model(u_i, y)` a scalar function of one point `y` `(d,)`, and `v` the term's
      value at the point (None without values).
    - `u`: `(N, m)` sensor values.
    - `term`: `Points`.

    **Returns:**

    `(N, Q, ...)` residuals.
    """

    def one_function(u_i, points, values):
        field = lambda y: model(u_i, y)  # noqa: E731
        return jax.vmap(lambda y, v: fn(field, y, v))(points, values)

    axes = (0, None if term.shared else 0, None if term.values is None else 0)
    return jax.vmap(one_function, in_axes=axes)(u, term.points, term.values)


class PhysicsInformedLoss(eqx.Module):
    """The physics-informed DeepONet loss, a `sciml.fit` loss on `PhysicsData` batches.

    `loss(model, batch, *, key) -> (total, aux)`: `aux[name]` is the mean square of
    term `name`'s residuals over the batch's functions and the term's points, and
    `total = sum_name weights[name] * aux[name]` (Wang, Wang and Perdikaris 2021).

    **Arguments:**

    - `terms`: a dict `name -> fn(field, y, v)` of residual functions (see
      `term_residuals`); e.g. `{"residual": ode, "initial": value_residual}`, plus
      `"data": value_residual` for paired data.
    - `weights`: optional dict `name -> weight` (default 1 for every term).

    Example, the antiderivative ds/dy = u(y), s(0) = 0:

        def ode(field, y, u_y):
            s, s_y = sciml.pinn.derivative(field, y, 0)
            return s_y - u_y

        loss = PhysicsInformedLoss({"residual": ode, "initial": value_residual})
    """

    # Tuples, not dicts: sciml.fit hashes the loss to reuse its compiled program.
    names: tuple[str, ...] = eqx.field(static=True)
    fns: tuple[Callable, ...] = eqx.field(static=True)
    weights: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, terms: dict[str, Callable], weights: dict[str, float] | None = None):
        where = "sciml.operators.PhysicsInformedLoss"
        if not isinstance(terms, dict) or not terms:
            raise ValueError(f"{where}: `terms` must be a non-empty dict name -> fn.")
        for name, fn in terms.items():
            if not callable(fn):
                raise TypeError(f"{where}: term {name!r} is not callable: {fn!r}.")
        weights = {} if weights is None else dict(weights)
        unknown = sorted(set(weights) - set(terms))
        if unknown:
            raise ValueError(
                f"{where}: `weights` names terms {unknown} that are not in `terms` "
                f"({sorted(terms)})."
            )
        self.names, self.fns = tuple(terms), tuple(terms.values())
        self.weights = tuple(float(weights.get(name, 1.0)) for name in terms)

    @property
    def terms(self) -> dict[str, Callable]:
        return dict(zip(self.names, self.fns))

    def __call__(self, model, batch: PhysicsData, *, key=None):
        del key
        missing = sorted(set(self.names) - set(batch.terms))
        if missing:
            raise ValueError(
                f"sciml.operators.PhysicsInformedLoss: the batch has no points for terms "
                f"{missing}; its terms are {sorted(batch.terms)}. Give PhysicsData one "
                "Points per loss term."
            )
        aux = {
            name: jnp.mean(term_residuals(model, fn, batch.u, batch.terms[name]) ** 2)
            for name, fn in zip(self.names, self.fns)
        }
        total = sum(w * aux[name] for name, w in zip(self.names, self.weights))
        return total, aux
