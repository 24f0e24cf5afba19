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

Vector fields and PDE systems (`f(x) -> (m,)`): `field_derivatives` gives the value,
the Jacobian and second derivatives along chosen axes by the same forward-mode passes;
`divergence`, `curl`, `vector_laplacian` and `navier_stokes_residual` are built on it.
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


# ----------------------------------------------------------------------------------
# Vector fields and PDE systems


def field_derivatives(
    f: Callable, x: ArrayLike, second: Sequence[int] | None = None
) -> tuple[Array, Array, Array]:
    """Value, Jacobian and second derivatives along axes of a field, by forward mode.

    One Taylor pass (as `directional_derivatives`) per second-derivative axis gives the
    value, the first and the second derivative of every output along that axis; the
    first pass also carries the axes that need only first derivatives (e.g. time).

    **Arguments:**

    - `f`: `f(x) -> scalar or (m,)` (a vector field, or a system's outputs).
    - `x`: one point, shape `(d,)`.
    - `second`: the axes to take second derivatives along (default all; `()` for none).

    **Returns:**

    `(value, jac, sec)`: `value` shaped like `f(x)`, `jac[..., i] = df/dx_i` (shape
    `f(x).shape + (d,)`) and `sec[..., k] = d2f/dx_{second[k]}^2`.
    """
    x = _point(x)
    if x.ndim != 1:
        raise ValueError(f"sciml.pinn.field_derivatives: `x` must have shape (d,), got {x.shape}.")
    d = x.shape[0]
    axes2 = tuple(range(d)) if second is None else tuple(int(i) for i in second)
    if any(not 0 <= i < d for i in axes2) or len(set(axes2)) != len(axes2):
        raise ValueError(
            f"sciml.pinn.field_derivatives: `second` must list distinct axes in 0..{d - 1}, "
            f"got {second}."
        )
    first_only = [i for i in range(d) if i not in axes2]
    passes = axes2 if axes2 else (first_only.pop(0),)
    eye = jnp.eye(d, dtype=x.dtype)
    cols: list = [None] * d
    secs = []
    value = None
    for j, i in enumerate(passes):
        hw = eye[jnp.asarray(first_only, int)] if (j == 0 and first_only) else eye[:0]
        v, d1, d2, extra = _taylor.propagate(f, (x, eye[i], jnp.zeros_like(x), hw))
        value = v if value is None else value
        cols[i] = d1
        secs.append(d2)
        if j == 0:
            for k, w in zip(first_only, extra):
                cols[k] = w
    jac = jnp.stack(cols, axis=-1)
    sec = jnp.stack(secs, axis=-1) if axes2 else jnp.zeros((*jnp.shape(value), 0), x.dtype)
    return value, jac, sec


def _vector_field(f, x, where):
    value, jac, _ = field_derivatives(f, x, ())
    if value.ndim != 1 or value.shape[0] != x.shape[0]:
        raise ValueError(
            f"sciml.pinn.{where}: needs a vector field with one output per coordinate; f(x) "
            f"has shape {value.shape} at a point of shape {x.shape}."
        )
    return jac


def divergence(f: Callable, x: ArrayLike) -> Array:
    """`sum_i df_i/dx_i` of a vector field `f(x) -> (d,)` at one point (forward mode)."""
    return jnp.trace(_vector_field(f, _point(x), "divergence"))


def curl(f: Callable, x: ArrayLike) -> Array:
    """Curl of a vector field at one point: a scalar `dv/dx - du/dy` in 2-D, a vector
    in 3-D (forward mode)."""
    x = _point(x)
    j = _vector_field(f, x, "curl")
    if x.shape == (2,):
        return j[1, 0] - j[0, 1]
    if x.shape == (3,):
        return jnp.stack([j[2, 1] - j[1, 2], j[0, 2] - j[2, 0], j[1, 0] - j[0, 1]])
    raise ValueError(f"sciml.pinn.curl: defined in 2-D and 3-D, got a point of shape {x.shape}.")


def vector_laplacian(f: Callable, x: ArrayLike, axes: Sequence[int] | None = None) -> Array:
    """Laplacian of every output of `f` at one point, `(m,)` (forward mode).

    **Arguments:**

    - `f`: `f(x) -> (m,)` (or a scalar).
    - `x`: one point, shape `(d,)`.
    - `axes`: the coordinates the Laplacian is over (default all; e.g. the spatial
      ones of a space-time point).
    """
    return jnp.sum(field_derivatives(f, x, axes)[2], axis=-1)


def navier_stokes_residual(
    f: Callable, x: ArrayLike, nu: float | ArrayLike, *, time: bool = False
) -> Array:
    """Incompressible Navier-Stokes residuals (density 1) at one point.

    `f(x) -> (u_1, ..., u_d, p)`; with `time=True` the point is `(x_1, ..., x_d, t)`.
    Returns the momentum residuals `u_t + (u . grad) u + grad p - nu lap u` (d of them)
    followed by the continuity residual `div u`, shape `(d + 1,)`. Every derivative
    comes from `field_derivatives` (forward mode, one Taylor pass per spatial axis).
    """
    x = _point(x)
    if x.ndim != 1:
        raise ValueError(f"sciml.pinn.navier_stokes_residual: `x` must have shape (n,), got "
                         f"{x.shape}.")
    d = x.shape[0] - (1 if time else 0)
    value, jac, sec = field_derivatives(f, x, tuple(range(d)))
    if value.shape != (d + 1,):
        raise ValueError(
            f"sciml.pinn.navier_stokes_residual: f must return (u_1, ..., u_{d}, p), shape "
            f"({d + 1},), for a {d}-D{' space-time' if time else ''} point; got {value.shape}."
        )
    u, grad_u, grad_p = value[:d], jac[:d, :d], jac[d, :d]
    momentum = grad_u @ u + grad_p - nu * jnp.sum(sec[:d], axis=-1)
    if time:
        momentum = momentum + jac[:d, d]
    return jnp.concatenate([momentum, jnp.trace(grad_u)[None]])
