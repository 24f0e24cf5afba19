"""Vector fields of the neural-ODE experiments that are useful beyond them: a field
with time as an input, the spiral's cubic field and a diagonal linear diffusion."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


def _add_bias(x, b):
    # Explicit broadcast over leading (batch) axes: no implicit rank promotion.
    return x + jnp.reshape(b, (1,) * (x.ndim - 1) + b.shape)


class TimeConcatField(eqx.Module):
    """`f(t, y) = tanh(W2 [tanh(W1 [y; t] + b1); t] + b2)`, the paper's MNIST dynamics.

    Acts on the last axis of `y`, so a batch `(B, d)` is one ODE state that shares one
    step-size sequence, as in the paper.

    **Arguments:** `dim` (state size), `hidden` (width), `key`, `dtype`.
    """

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array

    def __init__(self, dim: int, hidden: int, *, key, dtype=None):
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        k1, k2 = jax.random.split(key)
        init = jax.nn.initializers.glorot_uniform()
        self.w1 = init(k1, (dim + 1, hidden), dtype)
        self.b1 = jnp.zeros((hidden,), dtype)
        self.w2 = init(k2, (hidden + 1, dim), dtype)
        self.b2 = jnp.zeros((dim,), dtype)

    def __call__(self, t, y, args):
        tt = jnp.broadcast_to(jnp.asarray(t, y.dtype), y.shape[:-1] + (1,))
        h = jnp.tanh(_add_bias(jnp.concatenate([y, tt], axis=-1) @ self.w1, self.b1))
        return jnp.tanh(_add_bias(jnp.concatenate([h, tt], axis=-1) @ self.w2, self.b2))


class CubicField(eqx.Module):
    """`f(y) = W2 tanh(W1 y³ + b1) + b2`, the DiffEqFlux spiral network (acts on the
    last axis); with `time_input=True`, `f(t, y) = W2 tanh(W1 [y³; t] + b1) + b2`.

    A field of `t` as well as `y` can follow the same trajectory as an autonomous one
    with another error estimate at every step (the solver's cost is a property of the
    field, not of the trajectory), which is what an error-estimate regulariser can use.

    **Arguments:** `dim` (state size), `hidden` (width), `time_input`, `key`, `dtype`.
    """

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array
    time_input: bool = eqx.field(static=True)

    def __init__(
        self, dim: int = 2, hidden: int = 50, *, time_input: bool = False, key, dtype=None
    ):
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        k1, k2 = jax.random.split(key)
        init = jax.nn.initializers.glorot_uniform()
        self.time_input = bool(time_input)
        self.w1 = init(k1, (dim + self.time_input, hidden), dtype)
        self.b1 = jnp.zeros((hidden,), dtype)
        self.w2 = init(k2, (hidden, dim), dtype)
        self.b2 = jnp.zeros((dim,), dtype)

    def __call__(self, t, y, args):
        z = y**3
        if self.time_input:
            tt = jnp.broadcast_to(jnp.asarray(t, y.dtype), y.shape[:-1] + (1,))
            z = jnp.concatenate([z, tt], axis=-1)
        return _add_bias(jnp.tanh(_add_bias(z @ self.w1, self.b1)) @ self.w2, self.b2)


class DiagonalLinear(eqx.Module):
    """`σ(y) = s ⊙ y`: the linear diagonal diffusion of the paper's spiral SDE."""

    scale: jax.Array

    def __call__(self, t, y, args):
        return self.scale * y
