"""Second-order Taylor propagation through a network, for PINN residuals.

A residual such as Burgers' `u_t + u u_x - nu u_xx` needs, at each point, the value,
the first and second derivative along one direction and first derivatives along a few
others. Nested `jax.jvp`s compute these, but they cannot know that the inner and outer
tangent are the same direction, so they carry four streams (primal, two first-order,
one second-order) where three suffice, and each extra first-order direction re-runs the
forward pass. Here the truncated Taylor series

    (h, D_v h, D_v^2 h, [D_w h for w in ws])

is pushed through `sciml.nn` layers directly: a linear layer maps every coefficient by
its weight, an elementwise activation `a = s(z)` maps them by the chain rule
(`D_v a = s'(z) D_v z`, `D_v^2 a = s'(z) D_v^2 z + s''(z) (D_v z)^2`), so one pass gives
every quantity. Measured on the Burgers PINN training step: 1.38x the steps/s of nested
`jvp`s (benchmarks/pinn.py), and the layout note below doubles that again.

Modules without a rule (any other callable) are handled by nested `jvp`s on the same
series, so the result is the same function of the inputs; only the speed differs.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..nn import MLP, Linear, OutputTransform
from ..nn._layers import _identity, batched_column


# A series: (value, D_v, D_v^2, D_ws) with D_ws stacked on a leading axis (one row per w).
Series = tuple[Array, Array, Array, Array]


def propagate(f: Callable, series: Series) -> Series:
    """The Taylor series of `f(x)` given the series of `x` (see the module docstring)."""
    if isinstance(f, MLP):
        return _mlp(f, series)
    if isinstance(f, OutputTransform):
        inner = series if f.inputs is None else propagate(f.inputs, series)
        net = propagate(f.net, inner)
        return _generic2(lambda x, n: f.transform(x, n), series, net)
    return _generic(f, series)


def _generic(f, series):
    h, hv, hvv, hw = series
    one = jnp.ones((), h.dtype)

    def along(t):  # the curve x(t) = h + t D_v h + t^2/2 D_v^2 h
        return f(h + t * hv + (0.5 * t * t) * hvv)

    (u, uv), (_, uvv) = jax.jvp(lambda t: jax.jvp(along, (t,), (one,)), (0 * one,), (one,))
    uw = jax.vmap(lambda w: jax.jvp(f, (h,), (w,))[1])(hw)
    return u, uv, uvv, uw


def _generic2(g, xs, ns):
    """Series of `g(x, n)` from the series of both arguments."""
    (x, xv, xvv, xw), (n, nv, nvv, nw) = xs, ns
    one = jnp.ones((), x.dtype)

    def along(t):
        c = 0.5 * t * t
        return g(x + t * xv + c * xvv, n + t * nv + c * nvv)

    (u, uv), (_, uvv) = jax.jvp(lambda t: jax.jvp(along, (t,), (one,)), (0 * one,), (one,))
    uw = jax.vmap(lambda a, b: jax.jvp(g, (x, n), (a, b))[1])(xw, nw)
    return u, uv, uvv, uw


# Layout. Under `jax.vmap` (the usual "single point in, vmap outside" use), a
# per-point `W @ h` batches to one `dot_general` whose output keeps the batch as its
# *last* axis, so the hidden activations are stored feature-major, (width, points).
# XLA:CPU runs elementwise work on that layout about twice as fast as on
# (points, width) with a narrow minor axis. But any elementwise op that mixes a
# batched array with an unbatched non-scalar one (the bias, a constant direction,
# `ones_like`) makes vmap move the batch back to the front, with a transpose, and
# the rest of the network then runs points-major. So here every per-point array is
# kept batched, and constants enter only as scalars or through a product with a
# batched row of ones. On the Burgers PINN (2540 points, width 20) the training step
# ran 2.7x faster than with the plain formulas in a compiled-scan probe, and `fit` gave
# 1.2x-2.6x the steps/s in three alternated pairs on a noisy machine
# (benchmarks/pinn.py, RESULTS.md). The values are the same either way (tested).


def _batched_like(a, h):
    """`a` made batched like `h` (a constant direction becomes one row per point)."""
    return a + 0 * h


def _activation(s, series):
    z, zv, zvv, zw = series
    if s is jnp.tanh:
        a = jnp.tanh(z)
        d1 = 1 - a * a
        d2 = -2 * a * d1
    elif s is jnp.sin:
        a, d1 = jnp.sin(z), jnp.cos(z)
        d2 = -a
    else:
        one = z * 0 + 1  # batched like z (see the note on layout above)
        (a, d1), (_, d2) = jax.jvp(lambda y: jax.jvp(s, (y,), (one,)), (z,), (one,))
    return a, d1 * zv, d1 * zvv + d2 * zv * zv, [d1 * t for t in zw]


def _linear(layer: Linear, series):
    h, hv, hvv, hw = series
    w = layer.weight
    if layer.log_scale is not None:
        w = jnp.exp(layer.log_scale)[:, None] * w
    z, zv, zvv, zw = w @ h, w @ hv, w @ hvv, [w @ t for t in hw]
    if layer.bias is not None:
        z = z + batched_column(layer.bias, h)
    return z, zv, zvv, zw


def _mlp(m: MLP, series):
    h, hv, hvv, hw = series
    if m.layers[0].in_size == "scalar":
        h, hv, hvv, hw = h.reshape(1), hv.reshape(1), hvv.reshape(1), hw.reshape(-1, 1)
    # One list entry per extra direction, each batched like the point.
    series = (
        h,
        _batched_like(hv, h),
        _batched_like(hvv, h),
        [_batched_like(hw[k], h) for k in range(hw.shape[0])],
    )
    for layer in m.layers[:-1]:
        series = _activation(m.activation, _linear(layer, series))
    series = _linear(m.layers[-1], series)
    if m.final_activation is not _identity:
        series = _activation(m.final_activation, series)
    z, zv, zvv, zw = series
    if m.layers[-1].out_size == "scalar":
        z, zv, zvv, zw = z[0], zv[0], zvv[0], [t[0] for t in zw]
    out_shape = z.shape
    zw = jnp.stack(zw) if zw else jnp.zeros((0, *out_shape), z.dtype)
    return z, zv, zvv, zw
