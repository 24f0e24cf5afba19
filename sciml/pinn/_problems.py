"""Residual problems: a PDE residual on a domain plus named soft constraints, as a loss.

`PDELoss` is the "problem is data plus a loss" object for forward PINNs: it samples
collocation points from its key at every step (or uses a fixed batch, e.g. for an
L-BFGS stage), evaluates per-point residuals with `jax.vmap`, and returns the weighted
sum with every term named, so `sciml.fit` records each one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ._derivatives import directional_derivatives
from ._domains import AbstractDomain
from ._losses import weighted_sum
from ._samplers import AbstractSampler, Halton


class Constraint(eqx.Module):
    """A soft constraint: a per-point residual on points drawn by `sample(key, n)`.

    **Arguments:**

    - `sample`: `sample(key, n) -> (n, d)` points, e.g. `domain.sample_boundary`.
    - `residual`: `residual(model, x) -> scalar` at one point (e.g. `u(x) - g(x)`).
    - `points`: how many points per step.
    """

    sample: Callable
    residual: Callable
    points: int = eqx.field(static=True)

    def __check_init__(self):
        _check_count(self.points, "sciml.pinn.Constraint", "points")


def _check_count(value, where, name):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{where}: `{name}` must be a positive int, got {value!r}.")


class PDELoss(eqx.Module):
    """Mean squared PDE residual plus weighted soft constraints, for `sciml.fit`.

    **Arguments:**

    - `residual`: `residual(model, x) -> scalar` at one interior point.
    - `domain`: where interior points are drawn from.
    - `points`: interior points per step.
    - `constraints`: `{name: Constraint(...)}` (boundary, initial, data, ...).
    - `weights`: `{name: weight}`; missing names weigh 1 (`"residual"` included).
    - `sampler`: the interior sampler (default `Halton()`, randomly shifted per step).

    Called as `loss(model, batch, *, key)`: with `batch=None` every point set is
    resampled from `key`; otherwise `batch` is `{"residual": (n, d), name: (m, d), ...}`
    (see `fixed_batch`), used as given.
    """

    residual: Callable
    domain: AbstractDomain
    points: int = eqx.field(static=True)
    # Tuples of (name, value) pairs rather than dicts: the loss is part of fit's compiled
    # program, whose cache key must be hashable.
    constraints: tuple[tuple[str, Constraint], ...]
    weights: tuple[tuple[str, float], ...] = eqx.field(static=True)
    sampler: AbstractSampler

    def __init__(
        self,
        residual: Callable,
        domain: AbstractDomain,
        points: int,
        *,
        constraints: Mapping[str, Constraint] | None = None,
        weights: Mapping[str, float] | None = None,
        sampler: AbstractSampler = Halton(),
    ):
        constraints = {} if constraints is None else dict(constraints)
        weights = {} if weights is None else {k: float(v) for k, v in weights.items()}
        if "residual" in constraints:
            raise ValueError("sciml.pinn.PDELoss: 'residual' is reserved for the PDE term.")
        unknown = sorted(set(weights) - set(constraints) - {"residual"})
        if unknown:
            raise ValueError(
                f"sciml.pinn.PDELoss: weights for unknown terms {unknown}; the terms are "
                f"{['residual'] + sorted(constraints)}."
            )
        self.residual = residual
        self.domain = domain
        _check_count(points, "sciml.pinn.PDELoss", "points")
        self.points = int(points)
        self.constraints = tuple(sorted(constraints.items()))
        self.weights = tuple(sorted(weights.items()))
        self.sampler = sampler

    def sample(self, key: PRNGKeyArray) -> dict[str, Array]:
        """One batch of every point set, drawn from `key`."""
        keys = jax.random.split(key, 1 + len(self.constraints))
        batch = {"residual": self.domain.sample(keys[0], self.points, self.sampler)}
        for k, (name, c) in zip(keys[1:], self.constraints):
            batch[name] = c.sample(k, c.points)
        return batch

    def fixed_batch(self, key: PRNGKeyArray) -> dict[str, Array]:
        """A batch to pass as `data=` (e.g. for an L-BFGS stage); same as `sample`."""
        return self.sample(key)

    def terms(self, model, batch) -> dict[str, Array]:
        r = jax.vmap(lambda x: self.residual(model, x))(batch["residual"])
        out = {"residual": jnp.mean(r**2)}
        for name, c in self.constraints:
            out[name] = jnp.mean(jax.vmap(lambda x: c.residual(model, x))(batch[name]) ** 2)
        return out

    def __call__(self, model, batch, *, key: PRNGKeyArray):
        if batch is None:
            batch = self.sample(key)
        return weighted_sum(self.terms(model, batch), dict(self.weights))


def burgers_residual(u: Callable, x: Array, nu: float) -> Array:
    """Residual `u_t + u u_x - nu u_xx` at one point `x = (x, t)`.

    `u`, `u_x`, `u_xx` and `u_t` in one forward pass (`directional_derivatives`): no
    reverse pass inside the residual.
    """
    x = jnp.asarray(x)
    e_x = jnp.zeros_like(x).at[0].set(1)
    e_t = jnp.zeros_like(x).at[1].set(1)
    value, ux, uxx, (ut,) = directional_derivatives(u, x, e_x, (e_t,))
    return ut + value * ux - nu * uxx
