"""Derivatives of a scalar per-point function `f(x) -> scalar`, for PINN residuals.

Everything here takes **one point** `x` (shape `(d,)`, or `()` for a 1-D problem) and
returns per-point quantities; `jax.vmap` over the points outside. There are no caches
and no tapes: each helper is a composition of `jax.grad`/`jax.jvp`/`jax.hessian`, so
it jits, vmaps and differentiates with respect to the model like any JAX code.

Derivatives along a few directions (u_x, u_xx, u_t of an evolution equation) are
cheapest by forward mode: `directional_derivatives` (and `derivatives_along`) push a
truncated Taylor series through `sciml.nn` networks layer by layer, one pass for the
value, one second-order direction and any number of first-order ones (on the Burgers
PINN step 1.3-1.4x nested `jvp`s, which were themselves 1.35x a `jvp` of
`value_and_grad`, and 9x a `jax.hessian`). `value_grad_and_second` gives the whole
gradient with one second derivative; `hessian` and `laplacian` the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..nn import MLP, OutputTransform
from . import _taylor


def _point(x) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(
            f"sciml.pinn: the point `x` must be a floating-point array, got dtype {x.dtype}."
            " Pass e.g. jnp.asarray(x, float)."
        )
    if x.ndim > 1:
        raise ValueError(
            f"sciml.pinn: derivative helpers take one point of shape (d,) or (), got shape "
            f"{x.shape}. Use jax.vmap over a batch of points."
        )
    return x


def _unit(x: Array, i: int | None) -> Array:
    if x.ndim == 0:
        if i not in (None, 0):
            raise ValueError(
                f"sciml.pinn: coordinate index {i} given for a scalar point; use 0 or None."
            )
        return jnp.ones_like(x)
    if i is None:
        raise ValueError(
            f"sciml.pinn: the point has {x.shape[0]} coordinates; say which one with `i`."
        )
    if not -x.shape[0] <= i < x.shape[0]:
        raise ValueError(
            f"sciml.pinn: coordinate index i={i} is out of range for a point with "
            f"{x.shape[0]} coordinates."
        )
    return jnp.zeros_like(x).at[i].set(1)


def _scalar(f: Callable, x: Array):
    def g(y):
        out = f(y)
        if jnp.shape(out) != ():
            raise ValueError(
                "sciml.pinn: derivative helpers need a scalar per-point function, but "
                f"f(x) has shape {jnp.shape(out)}. Select one output, e.g. lambda x: f(x)[0]."
            )
        return out

    return g


def gradient(f: Callable, x: ArrayLike) -> Array:
    """Gradient of a scalar function at one point (reverse mode).

    **Arguments:**

    - `f`: `f(x) -> scalar`.
    - `x`: one point, shape `(d,)` or `()`.

    **Returns:**

    An array shaped like `x`.
    """
    x = _point(x)
    return jax.grad(_scalar(f, x))(x)


def value_and_gradient(f: Callable, x: ArrayLike) -> tuple[Array, Array]:
    """`(f(x), grad f(x))` in one reverse pass."""
    x = _point(x)
    return jax.value_and_grad(_scalar(f, x))(x)


def derivative(f: Callable, x: ArrayLike, i: int | None = None) -> tuple[Array, Array]:
    """Value and first derivative along coordinate `i`, by one forward-mode `jvp`.

    Cheaper than a full gradient when only one partial derivative is needed.

    **Arguments:**

    - `f`: `f(x) -> scalar`.
    - `x`: one point, shape `(d,)` or `()`.
    - `i`: the coordinate (omit for a scalar point).

    **Returns:**

    `(f(x), df/dx_i)`.
    """
    x = _point(x)
    return jax.jvp(_scalar(f, x), (x,), (_unit(x, i),))


def value_grad_and_second(
    f: Callable, x: ArrayLike, i: int | None = None
) -> tuple[Array, Array, Array]:
    """Value, gradient and the second derivative along coordinate `i`, in one pass.

    One forward-mode `jax.jvp` of `jax.value_and_grad(f)` along the unit vector e_i:
    the primal output is `(f, grad f)`, the tangent output is `(df/dx_i, H e_i)`, whose
    i-th entry is `d2f/dx_i^2`.

    **Arguments:**

    - `f`: `f(x) -> scalar`.
    - `x`: one point, shape `(d,)` or `()`.
    - `i`: the coordinate (omit for a scalar point).

    **Returns:**

    `(f(x), grad f(x), d2f/dx_i^2)`.
    """
    x = _point(x)
    e = _unit(x, i)
    (value, grad), (_, hess_e) = jax.jvp(jax.value_and_grad(_scalar(f, x)), (x,), (e,))
    second = hess_e if x.ndim == 0 else hess_e[i]
    return value, grad, second


def directional_derivatives(
    f: Callable, x: ArrayLike, v: ArrayLike, ws: Sequence[ArrayLike] = ()
) -> tuple[Array, Array, Array, tuple[Array, ...]]:
    """`(f, D_v f, D_v^2 f, (D_w f for w in ws))` at one point, in one forward pass.

    Forward mode only (no reverse pass inside the residual). For `sciml.nn.MLP`
    (elementwise activations) and `sciml.nn.OutputTransform` around one, the truncated
    Taylor series is propagated layer by layer, so the value, the second-order
    direction and every extra first-order direction share one pass through the
    network, and under `jax.vmap` the hidden activations stay feature-major, the
    layout XLA:CPU runs fastest (on the Burgers PINN: 1.38x the training steps/s of
    nested `jvp`s, and the layout about 2x more); any other `f` gets nested `jvp`s
    with the same result.

    **Arguments:**

    - `f`: `f(x) -> scalar`.
    - `x`: one point, shape `(d,)` or `()`.
    - `v`: the direction of the first and second derivative, shaped like `x` (e.g. a
      unit vector e_i).
    - `ws`: directions of extra first derivatives (e.g. `(e_t,)` for u_t).

    **Returns:**

    `(f(x), D_v f, D_v^2 f, derivs)` with `derivs[k] = D_{ws[k]} f`; `D_v f = v . grad f`
    and `D_v^2 f = v^T H v`.
    """
    x = _point(x)
    v = _direction(x, v, "v")
    ws = [_direction(x, w, f"ws[{k}]") for k, w in enumerate(ws)]
    hw = jnp.stack(ws) if ws else jnp.zeros((0, *x.shape), x.dtype)
    g = f if _taylor_rule(f) else _scalar(f, x)
    value, first, second, extra = _taylor.propagate(g, (x, v, jnp.zeros_like(x), hw))
    if jnp.shape(value) != ():
        raise ValueError(
            "sciml.pinn: derivative helpers need a scalar per-point function, but "
            f"f(x) has shape {jnp.shape(value)}. Select one output, e.g. lambda x: f(x)[0]."
        )
    return value, first, second, tuple(extra[k] for k in range(len(ws)))


def _taylor_rule(f) -> bool:
    """Whether `f` has a layer-by-layer rule (and a scalar output by construction)."""
    if isinstance(f, OutputTransform):
        return True
    return isinstance(f, MLP) and f.out_size == "scalar"


def _direction(x, v, name):
    v = jnp.asarray(v, x.dtype)
    if v.shape != x.shape:
        raise ValueError(
            f"sciml.pinn: direction `{name}` must have the point's shape {x.shape}, got "
            f"{v.shape}."
        )
    return v


def derivatives_along(
    f: Callable, x: ArrayLike, i: int | None = None
) -> tuple[Array, Array, Array]:
    """`(f, df/dx_i, d2f/dx_i^2)` at one point, by forward mode only.

    `directional_derivatives` along the unit vector e_i (Taylor propagation through
    `sciml.nn` networks, nested `jvp`s otherwise). When a residual needs derivatives
    along one or two coordinates (u_x, u_xx and u_t of a 1-D evolution equation), this
    and `directional_derivatives` are faster than `value_grad_and_second`.

    **Arguments:**

    - `f`: `f(x) -> scalar`.
    - `x`: one point, shape `(d,)` or `()`.
    - `i`: the coordinate (omit for a scalar point).
    """
    x = _point(x)
    value, first, second, _ = directional_derivatives(f, x, _unit(x, i))
    return value, first, second


def second_derivative(f: Callable, x: ArrayLike, i: int | None = None) -> Array:
    """`d2f/dx_i^2` at one point (a `jvp` of a `jvp` along e_i)."""
    return derivatives_along(f, x, i)[2]


def laplacian(f: Callable, x: ArrayLike) -> Array:
    """Laplacian `sum_i d2f/dx_i^2` at one point.

    Computed as the trace of `d` Hessian-vector products (forward over reverse), which
    is the Hessian's diagonal without forming the off-diagonal entries' reduction twice.
    """
    x = _point(x)
    g = jax.grad(_scalar(f, x))
    if x.ndim == 0:
        return jax.jvp(g, (x,), (jnp.ones_like(x),))[1]
    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    hvp = jax.vmap(lambda e: jax.jvp(g, (x,), (e,))[1])(eye)
    return jnp.trace(hvp)


def hessian(f: Callable, x: ArrayLike) -> Array:
    """Full Hessian `d2f/dx_i dx_j` at one point, shape `(d, d)` (or `()` for scalar x).

    Prefer `second_derivative`/`laplacian` in residuals: the full Hessian costs `d`
    times more (references/baselines.md).
    """
    x = _point(x)
    return jax.hessian(_scalar(f, x))(x)
