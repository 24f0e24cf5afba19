"""Named, weighted loss terms; grad-norm balancing, causal weighting, adaptive refinement.

Everything here is a pure function usable inside a `sciml.fit` loss: adaptive weights
are computed from the current model under `jax.lax.stop_gradient`, so they steer the
optimiser without being optimised themselves, and no state lives outside the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray


def weighted_sum(
    terms: Mapping[str, Array], weights: Mapping[str, Array | float] | None = None
) -> tuple[Array, dict[str, Array]]:
    """Total loss `sum_k w_k L_k` and the named terms, in the form `fit` expects.

    **Arguments:**

    - `terms`: `{name: scalar loss}`.
    - `weights`: `{name: weight}`; missing names weigh 1. A name not in `terms`
      is an error (a misspelt weight would silently do nothing).

    **Returns:**

    `(total, aux)` where `aux` holds every unweighted term, plus `"w_<name>"` for
    each weight that is an array (adaptive weights), so they appear in the history.
    """
    weights = {} if weights is None else dict(weights)
    unknown = sorted(set(weights) - set(terms))
    if unknown:
        raise ValueError(
            f"sciml.pinn.weighted_sum: weights given for {unknown}, which are not loss "
            f"terms; the terms are {sorted(terms)}."
        )
    if not terms:
        raise ValueError("sciml.pinn.weighted_sum: `terms` is empty.")
    total = sum(weights.get(k, 1.0) * v for k, v in terms.items())
    aux = dict(terms)
    for k, w in weights.items():
        if isinstance(w, jax.Array):
            aux[f"w_{k}"] = w
    return total, aux


def grad_norm_weights(
    terms_fn: Callable[[eqx.Module], Mapping[str, Array]],
    model: eqx.Module,
    *,
    filter_spec: Callable = eqx.is_inexact_array,
) -> dict[str, Array]:
    """Gradient-norm loss balancing (Wang et al. 2023, jaxpi's `compute_weights`).

    `w_i = mean_j |grad L_j| / |grad L_i|`, so that every weighted term has the same
    gradient norm. Computed under `stop_gradient`, so the weights are constants to the
    optimiser. It costs one backward pass per term; jaxpi refreshes its weights every
    1000 steps with a moving average, which here is the same as calling this inside a
    `jax.lax.cond` on the step (the loss receives `step` when it asks for it).

    **Arguments:**

    - `terms_fn`: `model -> {name: scalar loss}`.
    - `model`: the current model.
    - `filter_spec`: which leaves count as parameters (default: inexact arrays).

    **Returns:**

    `{name: weight}` (scalars, no gradient).
    """
    params, rest = eqx.partition(model, filter_spec)
    names = list(terms_fn(model).keys())
    norms = []
    for name in names:
        g = jax.grad(lambda p: terms_fn(eqx.combine(p, rest))[name])(params)
        leaves = [jnp.sum(x**2) for x in jax.tree.leaves(g)]
        norms.append(jnp.sqrt(sum(leaves)))
    norms = jax.lax.stop_gradient(jnp.stack(norms))
    # A term with no gradient (e.g. a boundary term a hard constraint meets exactly)
    # has nothing to balance: weight 1, not mean / 0 (3e37 in float32, which blew up the
    # first step where its gradient came back).
    zero = norms == 0
    w = jnp.where(zero, 1.0, jnp.mean(norms) / jnp.where(zero, 1.0, norms))
    return {name: w[i] for i, name in enumerate(names)}


def causal_weights(chunk_losses: Array, tol: float = 1.0) -> Array:
    """Causal weights `w_i = exp(-tol * sum_{k<i} L_k)` (Wang, Sankaran & Perdikaris 2022).

    A time chunk's residual counts only once the earlier chunks are resolved.
    `w_0 = 1`; the weights are non-increasing and carry no gradient.

    **Arguments:**

    - `chunk_losses`: mean squared residual per time chunk, in time order, shape `(M,)`.
    - `tol`: the causality parameter epsilon (jaxpi: 1.0; 0.1 for stiff problems).
    """
    losses = jax.lax.stop_gradient(chunk_losses)
    before = jnp.cumsum(losses) - losses
    return jnp.exp(-tol * before)


def causal_loss(
    residual_sq: Array, t: Array, t0: float, t1: float, *, chunks: int = 32, tol: float = 1.0
) -> tuple[Array, Array]:
    """Causally weighted residual loss from per-point squared residuals and their times.

    Points are binned into `chunks` equal time windows of `[t0, t1]`; the loss is
    `mean_i w_i L_i` over the chunks with `w = causal_weights(L, tol)`. Works with
    random points (empty chunks count as resolved, L_i = 0).

    **Returns:**

    `(loss, weights)`.
    """
    idx = jnp.clip(((t - t0) / (t1 - t0) * chunks).astype(jnp.int32), 0, chunks - 1)
    sums = jax.ops.segment_sum(residual_sq, idx, num_segments=chunks)
    counts = jax.ops.segment_sum(jnp.ones_like(residual_sq), idx, num_segments=chunks)
    chunk_losses = sums / jnp.maximum(counts, 1)
    w = causal_weights(chunk_losses, tol)
    return jnp.mean(w * chunk_losses), w


def refine(
    residual: Callable[[Array], Array], points: Array, candidates: Array, n_add: int
) -> Array:
    """Residual-based adaptive refinement (RAR, Lu et al. 2021): greedy version.

    Adds the `n_add` candidates with the largest |residual| to `points`. Use between
    rounds of `fit` (the set of points grows, so its shape changes).

    **Arguments:**

    - `residual`: per-point residual `r(x) -> scalar` (e.g. of the trained model).
    - `points`: current collocation points `(n, d)`.
    - `candidates`: points to choose from `(m, d)`, e.g. `domain.sample(key, 10000)`.
    - `n_add`: how many to add (`<= m`).

    **Returns:**

    `(n + n_add, d)` points.
    """
    if not 1 <= n_add <= candidates.shape[0]:
        raise ValueError(
            f"sciml.pinn.refine: `n_add` must be between 1 and the number of candidates "
            f"({candidates.shape[0]}), got {n_add}."
        )
    r = jnp.abs(jax.vmap(residual)(candidates))
    _, idx = jax.lax.top_k(r, n_add)
    return jnp.concatenate([points, candidates[idx]], axis=0)


def sample_by_residual(
    key: PRNGKeyArray,
    residual: Callable[[Array], Array],
    candidates: Array,
    n: int,
    *,
    power: float = 1.0,
    floor: float = 1.0,
) -> Array:
    """Residual-based adaptive distribution (RAD, Wu et al. 2023): fixed-size resampling.

    Draws `n` of the candidates with probability proportional to
    `|r|^power / mean(|r|^power) + floor`. The number of points stays fixed, so this
    runs inside the loss at every step (under `stop_gradient`): the training points
    follow the residual without leaving `fit`'s compiled loop.

    **Returns:**

    `(n, d)` points.
    """
    r = jax.lax.stop_gradient(jnp.abs(jax.vmap(residual)(candidates)) ** power)
    p = r / jnp.maximum(jnp.mean(r), jnp.finfo(r.dtype).tiny) + floor
    idx = jax.random.choice(key, candidates.shape[0], (n,), replace=True, p=p / jnp.sum(p))
    return candidates[idx]
