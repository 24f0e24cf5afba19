"""The Linear State-Space Layer (Gu, Johnson, Goel, Saab, Dao, Rudra, Re, NeurIPS 2021).

x'(t) = A x(t) + B u(t), y(t) = C x(t) + D u(t), one SSM per feature, discretised
with a per-feature step dt, and three views of the same layer:

- recurrent (`Recurrent()`): x_k = Abar x_{k-1} + Bbar u_k with `lax.scan`;
- convolutional (`Convolutional()`): y = K * u + D u with the kernel
  K = (C Bbar, C Abar Bbar, ..., C Abar^{L-1} Bbar), computed by the squaring
  (Krylov doubling) trick in log2(L) matrix products and applied by FFT;
- continuous: `dt_scale` rescales every step at evaluation, so a model trained at
  one sampling rate runs at another (2x the rate: `dt_scale=0.5`).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..nn import Linear
from ._discretise import GBT, AbstractDiscretisation
from ._hippo import AbstractHiPPO, LegS


def _default_float():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def krylov(length: int, A: Array, b: Array) -> Array:
    """The Krylov matrix (b, A b, A^2 b, ..., A^{L-1} b), shape (N, L).

    Squaring trick: with X = (b, ..., A^{2^j - 1} b), the next block is A^{2^j} X,
    and A^{2^j} is squared once per doubling: ceil(log2 L) products instead of L.
    """
    x = b[:, None]
    power = A
    while x.shape[1] < length:
        x = jnp.concatenate([x, power @ x], axis=1)
        if x.shape[1] < length:
            power = power @ power
    return x[:, :length]


def causal_convolution(u: Array, k: Array, *, direct_up_to: int = 0) -> Array:
    """y_i = sum_{j <= i} k_{i-j} u_j along axis 0.

    By FFT (zero-padded to >= 2L), or, for L <= `direct_up_to`, as a product with the
    (L, L) lower-triangular Toeplitz matrix of k (per trailing index).
    """
    length = u.shape[0]
    if length <= direct_up_to:
        i = jnp.arange(length)
        lag = i[:, None] - i[None, :]
        causal = (lag >= 0).reshape(lag.shape + (1,) * (k.ndim - 1))
        toeplitz = jnp.where(causal, k[jnp.maximum(lag, 0)], 0)  # (L, L, ...)
        return jnp.einsum("ij...,j...->i...", toeplitz, u)
    n = 1 << (2 * length - 1).bit_length()
    uf = jnp.fft.rfft(u, n=n, axis=0)
    kf = jnp.fft.rfft(k, n=n, axis=0)
    return jnp.fft.irfft(uf * kf, n=n, axis=0)[:length]


def _is_lower(a) -> bool:
    if isinstance(a, jax.core.Tracer):
        return False
    a = np.asarray(a)
    return bool(np.all(np.triu(a, 1) == 0))


class AbstractView(eqx.Module):
    """How an `LSSL` turns its input sequence into its output sequence."""

    @abc.abstractmethod
    def __call__(self, layer: LSSL, u: Array, dt_scale) -> Array:
        """`u` (L, H) -> y (L, H, M) without the D u term."""


class Recurrent(AbstractView):
    """The recurrent view: a `lax.scan` over time with state (H, N)."""

    def __call__(self, layer, u, dt_scale):
        abar, bbar = layer.discretise(dt_scale)
        c = layer.C

        def step(x, uk):
            x = jnp.einsum("hij,hj->hi", abar, x) + bbar * uk[:, None]
            return x, jnp.einsum("hmn,hn->hm", c, x)

        x0 = jnp.zeros(bbar.shape, bbar.dtype)
        _, y = jax.lax.scan(step, x0, u)
        return y


class Convolutional(AbstractView):
    """The convolutional view: the Krylov kernel applied by FFT, or for short sequences
    as a Toeplitz matrix product.

    **Arguments:**

    - `direct_up_to`: sequences of at most this length use the Toeplitz product
      (default 128), whose cost grows as L^2 against the FFT's L log L. On a 2-core
      CPU the product was the faster up to L = 100 (4x at L = 50 with a batch of
      1000 sequences, H = 16), the FFT from L = 200 with batches of 100
      (`benchmarks/RESULTS.md`, issue 25).
    """

    direct_up_to: int = eqx.field(static=True, default=128)

    def __call__(self, layer, u, dt_scale):
        k = layer.kernel(u.shape[0], dt_scale)  # (L, H, M)
        return causal_convolution(u[:, :, None], k, direct_up_to=self.direct_up_to)


class LSSL(eqx.Module):
    """Linear State-Space Layer: H features, each an SSM with an N-dim state, M channels.

    Feature h maps its input sequence u_h to M outputs
    y_hm = C_hm x_h + D_hm u_h, with x_h' = A x_h + B u_h discretised with step
    dt_h = exp(log_dt_h). A and B start from a HiPPO measure and are shared by the
    features (LSSL's `learn=1`).

    **Arguments:**

    - `state_size`: N.
    - `features`: H, the number of input features (default 1).
    - `channels`: M, outputs per feature (default 1); the output has H * M features.
    - `init`: the HiPPO measure of (A, B) (default `LegS()`).
    - `A`, `B`: explicit matrices instead of `init` (e.g. A = 0, B = 1: an integrator).
    - `dt_min`, `dt_max`: log dt is drawn uniformly in [log dt_min, log dt_max]
      (LSSL: 1e-3, 1e-1; "roughly inverse to the sequence length").
    - `trainable_A`: if False (default), A and B are held fixed (stop-gradient), as
      LSSL-fixed; C, D and log dt always train. A fixed, lower-triangular A (LegS,
      LagT) is discretised by `discretisation.many(..., lower=True)`, without a
      general solve (`lower_triangular` records it; replacing A by one that is not
      lower triangular afterwards is an error at the next call).
    - `discretisation`: `GBT(alpha)` (default bilinear, alpha = 1/2) or `ZOH()`.
    - `key`: PRNG key (C ~ N(0, 1/N), D ~ N(0, 1)).

    Call: `layer(u, *, view=Convolutional(), dt_scale=1.0)` with `u` of shape (L, H)
    returns shape (L, H * M).
    """

    A: Array
    B: Array
    C: Array
    D: Array
    log_dt: Array
    discretisation: AbstractDiscretisation
    trainable_A: bool = eqx.field(static=True)
    lower_triangular: bool = eqx.field(static=True)
    state_size: int = eqx.field(static=True)
    features: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)

    def __init__(
        self,
        state_size: int,
        features: int = 1,
        channels: int = 1,
        *,
        init: AbstractHiPPO = LegS(),
        A: Array | None = None,
        B: Array | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        trainable_A: bool = False,
        discretisation: AbstractDiscretisation = GBT(0.5),
        dtype=None,
        key: PRNGKeyArray,
    ):
        where = "sciml.operators.LSSL"
        for name, v in (("state_size", state_size), ("features", features), ("channels", channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{where}: `{name}` must be a positive int, got {v!r}.")
        if not 0 < dt_min <= dt_max:
            raise ValueError(
                f"{where}: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}."
            )
        if not isinstance(discretisation, AbstractDiscretisation):
            raise TypeError(
                f"{where}: `discretisation` must be GBT(alpha) or ZOH(), got {discretisation!r}."
            )
        dtype = _default_float() if dtype is None else dtype
        if A is None or B is None:
            if not isinstance(init, AbstractHiPPO):
                raise TypeError(f"{where}: `init` must be LegS(), LegT() or LagT(), got {init!r}.")
            a0, b0 = init.matrices(state_size, dtype=dtype)
        A = a0 if A is None else jnp.asarray(A, dtype)
        B = b0 if B is None else jnp.asarray(B, dtype)
        if A.shape != (state_size, state_size) or B.shape != (state_size,):
            raise ValueError(
                f"{where}: need A ({state_size}, {state_size}) and B ({state_size},), got "
                f"{A.shape} and {B.shape}."
            )
        ckey, dkey, tkey = jax.random.split(key, 3)
        self.A, self.B = A, B
        self.C = jax.random.normal(ckey, (features, channels, state_size), dtype) / math.sqrt(
            state_size
        )
        self.D = jax.random.normal(dkey, (features, channels), dtype)
        self.log_dt = jax.random.uniform(
            tkey, (features,), dtype, math.log(dt_min), math.log(dt_max)
        )
        self.discretisation = discretisation
        self.trainable_A = trainable_A
        self.lower_triangular = not trainable_A and _is_lower(A)
        self.state_size = state_size
        self.features = features
        self.channels = channels

    def _ab(self):
        if self.trainable_A:
            return self.A, self.B
        return jax.lax.stop_gradient(self.A), jax.lax.stop_gradient(self.B)

    def discretise(self, dt_scale=1.0) -> tuple[Array, Array]:
        """(Abar (H, N, N), Bbar (H, N)) for steps dt_h * dt_scale."""
        a, b = self._ab()
        dt = jnp.exp(self.log_dt) * dt_scale
        if self.lower_triangular:
            a = eqx.error_if(
                a, jnp.any(jnp.triu(a, 1) != 0),
                "sciml.operators.LSSL: A was lower triangular when the layer was built and "
                "is not any more; build a new LSSL(..., A=...) instead of replacing A.",
            )
        return self.discretisation.many(a, b, dt, lower=self.lower_triangular)

    def kernel(self, length: int, dt_scale=1.0) -> Array:
        """The convolution kernel K_k = C Abar^k Bbar, shape (L, H, M)."""
        abar, bbar = self.discretise(dt_scale)
        kry = jax.vmap(lambda a, b: krylov(length, a, b))(abar, bbar)  # (H, N, L)
        return jnp.einsum("hmn,hnl->lhm", self.C, kry)

    def continuous_kernel(self, t: Array) -> Array:
        """The continuous-time kernel K(t) = C exp(t A) B at times `t` (T,): (T, H, M)."""
        a, b = self._ab()
        expo = jax.vmap(lambda s: jax.scipy.linalg.expm(s * a) @ b)(jnp.asarray(t, a.dtype))
        return jnp.einsum("hmn,tn->thm", self.C, expo)

    def __call__(
        self, u: Array, *, view: AbstractView | None = None, dt_scale=1.0
    ) -> Array:
        if u.ndim != 2 or u.shape[1] != self.features:
            raise ValueError(
                f"sciml.operators.LSSL: input must have shape (L, {self.features}), got "
                f"{u.shape}; vmap over a batch outside the layer."
            )
        view = Convolutional() if view is None else view
        y = view(self, u, dt_scale) + self.D[None] * u[:, :, None]
        return y.reshape(u.shape[0], self.features * self.channels)


class DeepLSSL(eqx.Module):
    """A deep LSSL: encoder, residual blocks of LSSL + nonlinearity + mixing, decoder.

    Block: x <- x + Mix(act(LSSL(norm(x)))), with `Mix` a Linear layer from H * M to
    H features at each time step and `norm` an optional LayerNorm over features (as
    in LSSL's `SequenceModel`, pre-norm).

    **Arguments:**

    - `in_size`, `out_size`: features of the input and output sequences, or
      `"scalar"` for (L,) sequences.
    - `features`: H, the width of the blocks.
    - `state_size`: N of every LSSL.
    - `depth`: number of blocks.
    - `channels`: M of every LSSL.
    - `activation`: the nonlinearity after each LSSL (default GELU).
    - `residual`: use residual connections.
    - `norm`: layer normalisation before each LSSL (default off). LSSL's sequence
      classifiers use it; for operator regression it hurts, as it rescales each time
      step's features and so discards the amplitude the output must reproduce (on
      s' = -s^2 + u, problem `lssl-timescale`: relative L2 7.9e-2 with it, 2.5e-2
      without).
    - `lssl_kwargs`: further keyword arguments of every `LSSL` (`init`, `dt_min`,
      `dt_max`, `trainable_A`, `discretisation`).
    - `key`: PRNG key.

    Call: `model(u, *, view=..., dt_scale=1.0)`; `u` (L, in) -> (L, out).
    """

    encoder: Linear
    layers: tuple[LSSL, ...]
    mixers: tuple[Linear, ...]
    norms: tuple[eqx.nn.LayerNorm, ...] | None
    decoder: Linear
    activation: Callable
    residual: bool = eqx.field(static=True)
    in_size: int | str = eqx.field(static=True)
    out_size: int | str = eqx.field(static=True)

    def __init__(
        self,
        in_size,
        out_size,
        features: int,
        state_size: int,
        depth: int,
        *,
        channels: int = 1,
        activation: Callable = jax.nn.gelu,
        residual: bool = True,
        norm: bool = False,
        lssl_kwargs: dict | None = None,
        dtype=None,
        key: PRNGKeyArray,
    ):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"sciml.operators.DeepLSSL: `depth` must be >= 1, got {depth!r}.")
        dtype = _default_float() if dtype is None else dtype
        keys = jax.random.split(key, 2 * depth + 2)
        kw = dict(lssl_kwargs or {})
        self.encoder = Linear(in_size, features, dtype=dtype, key=keys[0])
        self.layers = tuple(
            LSSL(state_size, features, channels, dtype=dtype, key=keys[1 + i], **kw)
            for i in range(depth)
        )
        self.mixers = tuple(
            Linear(features * channels, features, dtype=dtype, key=keys[1 + depth + i])
            for i in range(depth)
        )
        self.norms = (
            tuple(eqx.nn.LayerNorm(features, dtype=dtype) for _ in range(depth)) if norm else None
        )
        self.decoder = Linear(features, out_size, dtype=dtype, key=keys[-1])
        self.activation = activation
        self.residual = residual
        self.in_size = in_size
        self.out_size = out_size

    def __call__(self, u: Array, *, view: AbstractView | None = None, dt_scale=1.0) -> Array:
        x = jax.vmap(self.encoder)(u)
        for i, (layer, mix) in enumerate(zip(self.layers, self.mixers)):
            z = x if self.norms is None else jax.vmap(self.norms[i])(x)
            z = self.activation(layer(z, view=view, dt_scale=dt_scale))
            z = jax.vmap(mix)(z)
            x = x + z if self.residual else z
        return jax.vmap(self.decoder)(x)
