"""Reusable blocks: MLPs with initialisation choices, embeddings, input/output maps.

Everything takes one unbatched example; `jax.vmap` outside.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray


Initializer = Callable[..., Array]


def _default_float():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def batched_column(a: Array, x: Array) -> Array:
    """`a` (shape `(m,)`) as a column laid out like `W @ x`; equal to `a` in value.

    Under `jax.vmap` (one point in, vmap outside), `W @ x` batches to a `dot_general`
    whose output keeps the points as its last axis: the activations are stored
    feature-major, the layout XLA:CPU's elementwise loops run fastest on. Adding an
    unbatched `(m,)` array to it would make vmap transpose the points back to the
    front; adding `a[:, None] @ ones`, with `ones` a batched row of ones made from
    `x`, keeps them last. Training an MLP of width 20 on 2540 points ran 1.8x
    faster in a compiled-scan probe (benchmarks/RESULTS.md, PINNs). Outside vmap it
    is a 1-term product, exactly `a`.
    """
    ones = x[:1] * 0 + 1
    return a[:, None] @ ones.astype(a.dtype) if x.ndim == 1 else a


def _identity(x):
    return x


class RandomWeightFactorisation(eqx.Module):
    """Random weight factorisation W = diag(exp(s)) V (Wang et al., jaxpi).

    Each output unit's weight row is written as a scale exp(s) times a direction V;
    s is drawn from N(mean, std). Training (s, V) instead of W helps PINNs.

    **Arguments:**

    - `mean`, `std`: of the log-scales s (jaxpi: mean 0.5 or 1.0, std 0.1).
    """

    mean: float = 0.5
    std: float = 0.1


class Linear(eqx.Module):
    """Affine layer y = W x + b with a chosen initialiser and optional factorisation.

    **Arguments:**

    - `in_size`, `out_size`: ints, or `"scalar"` for a 0-d input/output.
    - `weight_init`: a `jax.nn.initializers` function (default Glorot normal), called
      with shape `(in, out)` so fan-in/fan-out follow the usual convention.
    - `bias_init`: initialiser of the bias (default zeros).
    - `factorisation`: `RandomWeightFactorisation(...)` to train W = exp(s) V.
    - `use_bias`: whether to add a bias.
    - `key`: PRNG key.
    """

    weight: Array
    bias: Array | None
    log_scale: Array | None
    in_size: int | Literal["scalar"] = eqx.field(static=True)
    out_size: int | Literal["scalar"] = eqx.field(static=True)

    def __init__(
        self,
        in_size,
        out_size,
        *,
        weight_init: Initializer = jax.nn.initializers.glorot_normal(),
        bias_init: Initializer = jax.nn.initializers.zeros,
        factorisation: RandomWeightFactorisation | None = None,
        use_bias: bool = True,
        dtype=None,
        key: PRNGKeyArray,
    ):
        dtype = _default_float() if dtype is None else dtype
        n_in = 1 if in_size == "scalar" else in_size
        n_out = 1 if out_size == "scalar" else out_size
        wkey, bkey, skey = jax.random.split(key, 3)
        w = weight_init(wkey, (n_in, n_out), dtype).T
        if factorisation is not None:
            s = factorisation.mean + factorisation.std * jax.random.normal(skey, (n_out,), dtype)
            self.log_scale = s
            self.weight = w / jnp.exp(s)[:, None]
        else:
            self.log_scale = None
            self.weight = w
        self.bias = bias_init(bkey, (n_out,), dtype) if use_bias else None
        self.in_size = in_size
        self.out_size = out_size

    def __call__(self, x: Array) -> Array:
        if self.in_size == "scalar":
            x = jnp.reshape(x, (1,))
        w = self.weight
        if self.log_scale is not None:
            w = jnp.exp(self.log_scale)[:, None] * w
        y = w @ x
        if self.bias is not None:
            y = y + batched_column(self.bias, x)
        if self.out_size == "scalar":
            y = y[0]
        return y


class MLP(eqx.Module):
    """Multilayer perceptron with initialisation and factorisation choices.

    **Arguments:**

    - `in_size`, `out_size`: ints, or `"scalar"`.
    - `width_size`: hidden width; `depth`: number of hidden layers.
    - `activation`: hidden activation (a function, e.g. `jnp.tanh`, `jax.nn.gelu`).
    - `final_activation`: applied to the output (default identity).
    - `weight_init`, `bias_init`: `jax.nn.initializers` functions (default Glorot
      normal weights and zero biases, as DeepXDE's "Glorot normal").
    - `factorisation`: `RandomWeightFactorisation(...)` for every layer, or None.
    - `key`: PRNG key.
    """

    layers: tuple[Linear, ...]
    activation: Callable
    final_activation: Callable
    in_size: int | Literal["scalar"] = eqx.field(static=True)
    out_size: int | Literal["scalar"] = eqx.field(static=True)

    def __init__(
        self,
        in_size,
        out_size,
        width_size: int,
        depth: int,
        *,
        activation: Callable = jnp.tanh,
        final_activation: Callable = _identity,
        weight_init: Initializer = jax.nn.initializers.glorot_normal(),
        bias_init: Initializer = jax.nn.initializers.zeros,
        factorisation: RandomWeightFactorisation | None = None,
        dtype=None,
        key: PRNGKeyArray,
    ):
        if depth < 0:
            raise ValueError(f"sciml.nn.MLP: `depth` must be >= 0, got {depth}.")
        sizes = [in_size] + [width_size] * depth + [out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            Linear(
                a,
                b,
                weight_init=weight_init,
                bias_init=bias_init,
                factorisation=factorisation,
                dtype=dtype,
                key=k,
            )
            for a, b, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.activation = activation
        self.final_activation = final_activation
        self.in_size = in_size
        self.out_size = out_size

    def __call__(self, x: Array) -> Array:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.final_activation(self.layers[-1](x))


class ModifiedMLP(eqx.Module):
    """The "modified MLP" of Wang, Teng & Perdikaris (2021), used by jaxpi.

    Two encoders U = act(W_u x), V = act(W_v x) gate every hidden layer:
    h <- act(W h) * U + (1 - act(W h)) * V.

    **Arguments:** as `MLP`.
    """

    encoder_u: Linear
    encoder_v: Linear
    hidden: tuple[Linear, ...]
    output: Linear
    activation: Callable
    in_size: int | Literal["scalar"] = eqx.field(static=True)
    out_size: int | Literal["scalar"] = eqx.field(static=True)

    def __init__(
        self,
        in_size,
        out_size,
        width_size: int,
        depth: int,
        *,
        activation: Callable = jnp.tanh,
        weight_init: Initializer = jax.nn.initializers.glorot_normal(),
        factorisation: RandomWeightFactorisation | None = None,
        dtype=None,
        key: PRNGKeyArray,
    ):
        if depth < 1:
            raise ValueError(f"sciml.nn.ModifiedMLP: `depth` must be >= 1, got {depth}.")
        keys = jax.random.split(key, depth + 3)
        kw = dict(weight_init=weight_init, factorisation=factorisation, dtype=dtype)
        self.encoder_u = Linear(in_size, width_size, key=keys[0], **kw)
        self.encoder_v = Linear(in_size, width_size, key=keys[1], **kw)
        first = Linear(in_size, width_size, key=keys[2], **kw)
        rest = tuple(Linear(width_size, width_size, key=k, **kw) for k in keys[3 : depth + 2])
        self.hidden = (first,) + rest
        self.output = Linear(width_size, out_size, key=keys[-1], **kw)
        self.activation = activation
        self.in_size = in_size
        self.out_size = out_size

    def __call__(self, x: Array) -> Array:
        u = self.activation(self.encoder_u(x))
        v = self.activation(self.encoder_v(x))
        h = x
        for layer in self.hidden:
            z = self.activation(layer(h))
            h = z * u + (1 - z) * v
        return self.output(h)


class FourierFeatures(eqx.Module):
    """Random Fourier features x -> [cos(B^T x), sin(B^T x)] (Tancik et al. 2020).

    B has entries N(0, scale^2). B is an ordinary array leaf, so it trains with the
    rest of the model (as in jaxpi); freeze it with `fit`'s `trainable` filter.

    **Arguments:**

    - `in_size`: input dimension (or `"scalar"`).
    - `num`: number of frequencies; the output has size `2 * num`.
    - `scale`: standard deviation of the frequencies (1-2 for smooth space-time
      problems, 10 or more for fine-scale features).
    - `key`: PRNG key.
    """

    frequencies: Array
    in_size: int | Literal["scalar"] = eqx.field(static=True)

    def __init__(self, in_size, num: int, scale: float = 1.0, *, dtype=None, key: PRNGKeyArray):
        dtype = _default_float() if dtype is None else dtype
        n_in = 1 if in_size == "scalar" else in_size
        self.frequencies = scale * jax.random.normal(key, (n_in, num), dtype)
        self.in_size = in_size

    @property
    def out_size(self) -> int:
        return 2 * self.frequencies.shape[1]

    def __call__(self, x: Array) -> Array:
        if self.in_size == "scalar":
            x = jnp.reshape(x, (1,))
        z = x @ self.frequencies
        return jnp.concatenate([jnp.cos(z), jnp.sin(z)])


class PeriodicEmbedding(eqx.Module):
    """Exact periodicity: coordinate x_i -> (cos(w_i x_i), sin(w_i x_i)) on chosen axes.

    A network of the embedded input is exactly periodic with period 2 pi / w_i in
    those coordinates. Other coordinates pass through unchanged.

    **Arguments:**

    - `axes`: indices of the periodic coordinates.
    - `periods`: one period per axis.
    """

    axes: tuple[int, ...] = eqx.field(static=True)
    omega: Array

    def __init__(self, axes: Sequence[int], periods: Sequence[float], *, dtype=None):
        if len(axes) != len(periods):
            raise ValueError(
                f"sciml.nn.PeriodicEmbedding: {len(axes)} axes but {len(periods)} periods."
            )
        if any(p <= 0 for p in periods):
            raise ValueError(f"sciml.nn.PeriodicEmbedding: periods must be > 0, got {periods}.")
        dtype = _default_float() if dtype is None else dtype
        self.axes = tuple(int(a) for a in axes)
        self.omega = jnp.asarray([2 * math.pi / p for p in periods], dtype)

    def __call__(self, x: Array) -> Array:
        n = x.shape[0]
        if any(not -n <= a < n for a in self.axes):
            raise ValueError(
                f"sciml.nn.PeriodicEmbedding: axes {self.axes} do not all index an input of "
                f"{n} coordinates."
            )
        # Negative axes count from the end, as in numpy (-1 used to keep the raw
        # coordinate beside its embedding, and the result was not periodic).
        axes = tuple(a % n for a in self.axes)
        if len(set(axes)) != len(axes):
            raise ValueError(f"sciml.nn.PeriodicEmbedding: axes {self.axes} repeat a coordinate.")
        keep = [x[i : i + 1] for i in range(n) if i not in axes]
        periodic = [
            jnp.stack([jnp.cos(w * x[a]), jnp.sin(w * x[a])]) for a, w in zip(axes, self.omega)
        ]
        return jnp.concatenate(keep + periodic)


class Rescale(eqx.Module):
    """Affine map of a box [lower, upper] onto [-1, 1]^d: keeps tanh networks in range."""

    lower: Array
    upper: Array

    def __init__(self, lower, upper, *, dtype=None):
        dtype = _default_float() if dtype is None else dtype
        lower = jnp.atleast_1d(jnp.asarray(lower, dtype))
        upper = jnp.atleast_1d(jnp.asarray(upper, dtype))
        # Bounds traced under jit cannot be compared here; their shapes still can.
        traced = isinstance(lower, jax.core.Tracer) or isinstance(upper, jax.core.Tracer)
        if lower.shape != upper.shape or (not traced and bool(jnp.any(upper <= lower))):
            raise ValueError(
                f"sciml.nn.Rescale: need lower < upper elementwise, got {lower} and {upper}."
            )
        self.lower = lower
        self.upper = upper

    def __call__(self, x: Array) -> Array:
        lo = jax.lax.stop_gradient(self.lower)
        hi = jax.lax.stop_gradient(self.upper)
        return 2 * (x - lo) / (hi - lo) - 1


class Chain(eqx.Module):
    """Composition of layers applied left to right: `Chain(f, g)(x) == g(f(x))`."""

    layers: tuple

    def __init__(self, *layers):
        self.layers = tuple(layers)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class OutputTransform(eqx.Module):
    """Hard constraints: `u(x) = transform(x, net(x))`.

    The transform is plain JAX code, e.g. `lambda x, n: x * (1 - x) * n` imposes
    u(0) = u(1) = 0 exactly; `lambda tx, n: -sin(pi x) + t * n` imposes an initial
    condition at t = 0.

    **Arguments:**

    - `net`: the network, called on `x` (after the optional `inputs` map).
    - `transform`: `transform(x, net_output) -> output`.
    - `inputs`: optional map applied to `x` before the network only (e.g. `Rescale`
      or `FourierFeatures`); the transform always sees the raw `x`.
    """

    net: Callable
    transform: Callable
    inputs: Callable | None = None

    def __call__(self, x):
        z = x if self.inputs is None else self.inputs(x)
        return self.transform(x, self.net(z))
