"""Self-scaled BFGS and Broyden: dense quasi-Newton updates for scalar losses.

A step moves the flattened trainable parameters `x` along `d = -H g`, with `H` a dense
approximation of the inverse Hessian and `g` the gradient, by a step size found by a
strong Wolfe line search (optax's zoom search). With `s` the step taken and `y` the
change of the gradient, `H` is then updated by the self-scaled Broyden formula

    H₊ = (1/τ) [H - (Hy)(Hy)ᵀ / yᵀHy + φ vvᵀ] + ssᵀ / yᵀs,
    v = √(yᵀHy) (s / yᵀs - Hy / yᵀHy),

of which BFGS is the member τ = φ = 1. The members differ only in how they choose the
scaling τ and the Broyden parameter φ = (1 - θ)/(1 + aθ) from the scalars

    b = sᵀBs / yᵀs = -α sᵀg / yᵀs   (B = H⁻¹; s = -αHg, so no inverse is formed),
    h = yᵀHy / yᵀs,   a = bh - 1 >= 0,

which is all a concrete class says: `BFGS`, `SSBFGS`, `SSBroyden1`, `SSBroyden2` (Urbán,
Stefanou & Pons 2025, "Unveiling the optimization process of physics informed neural
networks", J. Comput. Phys., arXiv 2405.04230, eqs. 10-23; Al-Baali 1998; Oren &
Luenberger 1974).
"""

from __future__ import annotations

import abc
import warnings
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from ._gauss_newton import _check_bool, _check_count
from ._updates import AbstractUpdate, all_finite


PyTree = Any
_HIGHEST = jax.lax.Precision.HIGHEST

QUASI_NEWTON_TERMS = ("step_size", "tau", "phi", "line_search_evals", "skipped", "reset")


def _check_fraction(value, name):
    bad = isinstance(value, bool) or not isinstance(value, int | float | np.number)
    if bad or not 0 < value < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}.")


class QuasiNewtonState(NamedTuple):
    inverse_hessian: jax.Array  # H, (P, P)
    fresh: jax.Array  # H is the identity: the stage's start, or reset after a failure
    value: jax.Array  # the objective at the current parameters (inf: not known yet)
    grad: jax.Array  # its gradient, (P,)


def inverse_update(H, s, y, tau, phi):
    """The self-scaled Broyden update of the inverse-Hessian approximation `H` for the
    step `s` and gradient change `y` (needs `yᵀs > 0`): `τ = φ = 1` is BFGS, `φ = 0`
    DFP. Returns the symmetrised `H₊`.

    **Arguments:**

    - `H`: the current approximation, shape `(P, P)`, symmetric positive definite.
    - `s`, `y`: the step and the change of the gradient, shape `(P,)`.
    - `tau`: the scaling τ of the old information.
    - `phi`: the Broyden parameter φ.

    **Returns:**

    `H₊ = (1/τ)[H - (Hy)(Hy)ᵀ/yᵀHy + φ vvᵀ] + ssᵀ/yᵀs`, `v = √(yᵀHy)(s/yᵀs - Hy/yᵀHy)`.
    """
    Hy = jnp.matmul(H, y, precision=_HIGHEST)
    yHy = jnp.vdot(y, Hy)
    ys = jnp.vdot(y, s)
    u = s / ys - Hy / yHy
    inner = H - jnp.outer(Hy, Hy) / yHy + (phi * yHy) * jnp.outer(u, u)
    new = inner / tau + jnp.outer(s, s) / ys
    return 0.5 * (new + new.T)


def _lower_bounds(h, a, tiny):
    """`(θ⁻, ρ⁻)`: the smallest θ that keeps `H₊` positive definite with a bounded
    condition number, and ρ⁻ = min(1, h(1 - √(a/(1+a)))) > 0. `a` near 0 gives θ⁻ = -inf
    (every θ is then equivalent, see `_safe_theta`)."""
    rho_minus = jnp.minimum(1.0, h * (1.0 - jnp.sqrt(a / (1.0 + a))))
    theta_minus = jnp.where(a > tiny, (rho_minus - 1.0) / jnp.where(a > tiny, a, 1.0),
                            -jnp.inf)
    return theta_minus, rho_minus


def _safe_theta(theta, a, tiny):
    # With a = 0 the step s is parallel to Hy, v = 0, and θ changes nothing but σ = 1 + aθ;
    # θ = 0 avoids the 0 * inf of the bounds there.
    return jnp.where((a > tiny) & jnp.isfinite(theta), theta, 0.0)


def _broyden_tau(b, a, theta, n):
    """τ of eq. 23 (Urbán et al.): with ρ = min(1, 1/b) and σ = 1 + aθ,
    `min(ρ σ^(-1/(n-1)), σ)` for θ <= 0, else `ρ min(σ^(-1/(n-1)), 1/θ)`."""
    rho = jnp.minimum(1.0, 1.0 / b)
    sigma = 1.0 + a * theta
    root = jnp.abs(sigma) ** (-1.0 / (n - 1)) if n > 1 else jnp.ones_like(sigma)
    positive = theta > 0
    return jnp.where(
        positive,
        rho * jnp.minimum(root, 1.0 / jnp.where(positive, theta, 1.0)),
        jnp.minimum(rho * root, sigma),
    )


class AbstractSelfScaledBroyden(AbstractUpdate):
    """A dense self-scaled quasi-Newton update (a member of the Broyden class) with a
    strong Wolfe line search, for scalar losses of small models. The concrete members
    are `sciml.train.BFGS`, `SSBFGS`, `SSBroyden1` and `SSBroyden2`; they share
    everything but `theta_tau`, the choice of θ (so φ = (1 - θ)/(1 + aθ)) and τ.

    **Arguments** (every member):

    - `max_evaluations`: the most value-and-gradient evaluations of the line search per
      step (optax's zoom search, first trial step 1).
    - `c1`, `c2`: the sufficient-decrease and curvature constants of the strong Wolfe
      conditions, `0 < c1 < c2 < 1`.
    - `initial_scale`: when `H` is the identity (a stage's first step, or after a reset),
      scale it before its first update by `τ = h / (1 + aθ)` (for BFGS `yᵀs / yᵀy`,
      Nocedal & Wright eq. 6.20), which puts it on the scale of the objective's
      curvature.
    - `max_parameters`: the most trainable parameters P accepted: `H` holds P² numbers
      (800 MB of float64 at P = 10 000) and a step costs O(P²).
    """

    residual: ClassVar[bool] = False
    terms: ClassVar[tuple[str, ...]] = QUASI_NEWTON_TERMS

    max_evaluations: int = eqx.field(default=20, static=True, kw_only=True)
    c1: float = eqx.field(default=1e-4, static=True, kw_only=True)
    c2: float = eqx.field(default=0.9, static=True, kw_only=True)
    initial_scale: bool = eqx.field(default=True, static=True, kw_only=True)
    max_parameters: int = eqx.field(default=10_000, static=True, kw_only=True)

    def __check_init__(self):
        name = f"sciml.train.{type(self).__name__}"
        _check_count(self.max_evaluations, f"{name}: `max_evaluations`", 1, 1000)
        _check_fraction(self.c1, f"{name}: `c1`")
        _check_fraction(self.c2, f"{name}: `c2`")
        if not self.c1 < self.c2:
            raise ValueError(
                f"{name}: the Wolfe constants need c1 < c2, got c1={self.c1!r}, "
                f"c2={self.c2!r} (the usual choice for quasi-Newton is c1=1e-4, c2=0.9)."
            )
        _check_bool(self.initial_scale, f"{name}: `initial_scale`")
        _check_count(self.max_parameters, f"{name}: `max_parameters`", 1, 10**6)

    @abc.abstractmethod
    def theta_tau(self, b, h, a, n: int, fresh) -> tuple[jax.Array, jax.Array]:
        """`(θ, τ)` for the scalars `b`, `h`, `a = bh - 1` (all positive, `a >= 0`), `n`
        parameters, and `fresh` True when `H` is the identity and scaled initially
        (τ is then replaced by h/(1 + aθ)). φ = (1 - θ)/(1 + aθ)."""

    def coefficients(self, b, h, n: int, fresh) -> tuple[jax.Array, jax.Array]:
        """`(τ, φ)` of the update for the scalars `b = -α sᵀg / yᵀs`, `h = yᵀHy / yᵀs`,
        `n` parameters, and whether `H` is the identity (`fresh`)."""
        b, h = jnp.asarray(b), jnp.asarray(h)
        tiny = jnp.finfo(jnp.result_type(b, h)).eps
        a = jnp.maximum(b * h - 1.0, 0.0)  # >= 0 by Cauchy-Schwarz; rounding may not be
        fresh = jnp.asarray(fresh) & self.initial_scale
        theta, tau = self.theta_tau(b, h, a, n, fresh)
        theta = _safe_theta(theta, a, tiny)
        if self.initial_scale:
            tau = jnp.where(fresh, h / (1.0 + a * theta), tau)
        return tau, (1.0 - theta) / (1.0 + a * theta)

    def _check_size(self, params):
        n = sum(x.size for x in jax.tree.leaves(params) if eqx.is_array(x))
        if n > self.max_parameters:
            raise ValueError(
                f"sciml.train.{type(self).__name__}: the model has {n} trainable parameters, "
                f"more than `max_parameters={self.max_parameters}`: the dense inverse "
                f"Hessian would hold {n}² numbers ({8 * n * n / 2**30:.1f} GiB in float64). "
                "Use optax.lbfgs() for a model this large, freeze part of it with "
                f"`trainable=`, or pass max_parameters={n} if it fits in memory."
            )
        return n

    def init(self, params):
        n = self._check_size(params)
        flat, _ = ravel_pytree(params)
        _warn_if_low_precision(type(self).__name__, flat.dtype)
        return QuasiNewtonState(
            inverse_hessian=jnp.eye(n, dtype=flat.dtype),
            fresh=jnp.asarray(True),
            value=jnp.asarray(jnp.inf, flat.dtype),
            grad=jnp.zeros_like(flat),
        )

    def fixed_objective(self, params):
        # Called when the stage is planned, before any training: refuse a model too
        # large for a dense H there rather than when the stage starts.
        self._check_size(params)
        return True

    def _start(self, objective, unravel, value_fn, x, state):
        """Value, gradient and the loss's terms at `x`; the value and gradient the last
        line search computed here are reused when the objective is fixed."""
        if objective.varies:
            def with_aux(z):
                out, aux = objective(unravel(z))
                return jnp.asarray(out, x.dtype), aux

            (value, aux), grad = jax.value_and_grad(with_aux, has_aux=True)(x)
            return value, grad, aux
        value, grad = jax.lax.cond(
            jnp.isfinite(state.value),
            lambda: (state.value, state.grad),
            lambda: jax.value_and_grad(value_fn)(x),
        )
        aux = objective(unravel(x))[1] if objective.has_aux else {}
        return value, grad, aux

    def _line_search(self, value_fn, x, d, value, grad, guess):
        search = optax.scale_by_zoom_linesearch(
            max_linesearch_steps=self.max_evaluations, slope_rtol=self.c1,
            curv_rtol=self.c2, initial_guess_strategy="keep",
        )
        # "keep" starts from the state's learning rate: 1 for a quasi-Newton direction.
        ls = search.init(x)._replace(learning_rate=jnp.asarray(guess, x.dtype))
        _, ls = search.update(d, ls, x, value=value, grad=grad, value_fn=value_fn)
        return ls.learning_rate, ls.value, ls.grad, ls.info.num_linesearch_steps

    def _acceptable(self, value, slope, alpha, value_new, grad_new, d):
        """The sufficient decrease of the Wolfe conditions, or its approximate form near
        the minimum (Hager & Zhang 2006, as optax's search uses it), where value
        differences drown in rounding."""
        slope_new = jnp.vdot(grad_new, d)
        armijo = value_new <= value + self.c1 * alpha * slope
        approximate = (value_new <= value + 1e-6 * jnp.abs(value)) & (
            slope_new <= (2 * self.c1 - 1) * slope
        )
        finite = jnp.isfinite(value_new) & all_finite(grad_new)
        return finite & (alpha > 0) & (armijo | approximate)

    def step(self, objective, params, state, key):
        del key
        x, unravel = ravel_pytree(params)
        dtype, n = x.dtype, x.size

        def value_fn(z):
            return jnp.asarray(objective(unravel(z))[0], dtype)

        value, g, aux = self._start(objective, unravel, value_fn, x, state)
        eye = jnp.eye(n, dtype=dtype)
        H = state.inverse_hessian
        d = -jnp.matmul(H, g, precision=_HIGHEST)
        slope = jnp.vdot(g, d)
        # An H spoilt by rounding may give no descent: start again from the gradient.
        descent = jnp.isfinite(slope) & (slope < 0)
        H = jnp.where(descent, H, eye)
        d = jnp.where(descent, d, -g)
        slope = jnp.where(descent, slope, -jnp.vdot(g, g))
        fresh = state.fresh | ~descent
        # Along the raw gradient the first trial step has length at most 1 (as scipy's BFGS).
        guess = jnp.where(fresh, jnp.minimum(1.0, 1.0 / jnp.sqrt(-slope)), 1.0)
        alpha, value_new, g_new, evals = self._line_search(value_fn, x, d, value, g, guess)
        accepted = self._acceptable(value, slope, alpha, value_new, g_new, d)

        s = alpha * d
        y = g_new - g
        ys = jnp.vdot(y, s)
        # Wolfe's curvature condition gives yᵀs >= (1 - c2)|gᵀs| > 0; a search that ended
        # on a step with sufficient decrease only may not: then H is kept as it is.
        curved = ys > jnp.finfo(dtype).eps * jnp.linalg.norm(y) * jnp.linalg.norm(s)
        ys_safe = jnp.where(curved, ys, 1.0)
        Hy = jnp.matmul(H, y, precision=_HIGHEST)
        b = -alpha * jnp.vdot(s, g) / ys_safe
        h = jnp.vdot(y, Hy) / ys_safe
        tau, phi = self.coefficients(b, h, n, fresh)
        H_new = inverse_update(H, s, jnp.where(curved, y, s), tau, phi)
        broken = curved & ~all_finite(H_new)
        updated = accepted & curved & ~broken
        reset = ~descent | ~accepted | (accepted & broken)
        H_next = jnp.where(updated, H_new, jnp.where(reset, eye, H))

        new_state = QuasiNewtonState(
            inverse_hessian=H_next,
            fresh=jnp.where(updated, False, fresh | reset),
            value=jnp.where(accepted, value_new, value),
            grad=jnp.where(accepted, g_new, g),
        )
        nan = jnp.asarray(jnp.nan, dtype)
        aux = dict(aux)
        aux.update(
            step_size=jnp.where(accepted, alpha, 0.0).astype(dtype),
            tau=jnp.where(updated, tau, nan).astype(dtype),
            phi=jnp.where(updated, phi, nan).astype(dtype),
            line_search_evals=jnp.asarray(evals, dtype),
            skipped=(accepted & ~curved).astype(dtype),
            reset=reset.astype(dtype),
        )
        x_next = jnp.where(accepted, x + s, x)
        return value, aux, unravel(x_next), new_state

    def diagnose(self, objective, params, state, key):
        grads = jax.grad(lambda p: objective(p)[0])(params)
        _, _, new_params, _ = self.step(objective, params, state, key)
        return all_finite(grads), all_finite(new_params)

    def divergence_hint(self, terms):
        return (
            f"{type(self).__name__} never moves to a non-finite loss (its line search "
            "rejects such steps), so the loss was already non-finite at these parameters "
            "(at the stage's start, or on a new batch or step): check it there, e.g. for "
            "a division by zero or the log of a negative number."
        )


class BFGS(AbstractSelfScaledBroyden):
    """BFGS with a dense inverse Hessian and a strong Wolfe line search: the member
    τ = φ = 1 of the self-scaled Broyden class (Nocedal & Wright, §6.1), for scalar
    losses of small models (a few thousand parameters). Pass it to `sciml.fit` or a
    `sciml.Stage` where an optax optimiser goes.

    The history adds `step_size` (α of the step, 0 if the parameters stayed), `tau` and
    `phi` (of the update of H; NaN when H was not updated), `line_search_evals`,
    `skipped` (1 when the curvature `yᵀs` was not positive, so H was kept) and `reset`
    (1 when H went back to the identity: no descent direction, or a line search that
    found no sufficient decrease, whose step is then not taken).

    **Arguments:** those of `sciml.train.AbstractSelfScaledBroyden` (keyword-only):
    `max_evaluations=20`, `c1=1e-4`, `c2=0.9`, `initial_scale=True`,
    `max_parameters=10_000`.
    """

    def theta_tau(self, b, h, a, n, fresh):
        return jnp.zeros_like(b), jnp.ones_like(b)


class SSBFGS(AbstractSelfScaledBroyden):
    """Self-scaled BFGS (φ = 1): the old information in H is scaled by 1/τ before each
    BFGS update, which corrects an H too small or too large for the objective's
    curvature (Oren & Luenberger 1974; Al-Baali 1998; Urbán et al. 2025, eq. 11).
    History and arguments as `sciml.train.BFGS`.

    **Arguments:**

    - `bounded`: τ = min(1, 1/b) (SSBFGS_AB, Al-Baali's choice, the default) if True;
      τ = 1/b (SSBFGS_OL, Oren & Luenberger) if False.
    - the keyword-only arguments of `sciml.train.AbstractSelfScaledBroyden`.
    """

    bounded: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        _check_bool(self.bounded, "sciml.train.SSBFGS: `bounded`")

    def theta_tau(self, b, h, a, n, fresh):
        tau = 1.0 / b
        if self.bounded:
            tau = jnp.minimum(1.0, tau)
        return jnp.zeros_like(b), tau


class SSBroyden2(AbstractSelfScaledBroyden):
    """Self-scaled Broyden, second choice of Urbán et al. (2025, eqs. 13-23; their
    default for PINNs): θ = max(θ⁻, min(θ⁺, (1 - b)/b)) with θ⁻ = (ρ⁻ - 1)/a,
    θ⁺ = 1/ρ⁻ and ρ⁻ = min(1, h(1 - √(a/(1+a)))); φ = (1 - θ)/(1 + aθ); and
    τ = min(ρσ^(-1/(n-1)), σ) if θ <= 0, else ρ min(σ^(-1/(n-1)), 1/θ), with σ = 1 + aθ,
    ρ = min(1, 1/b) and n the number of parameters. History and arguments as
    `sciml.train.BFGS`.

    **Example:**

    ```python
    stages = [sciml.Stage(optax.adam(1e-3), 2000),
              sciml.Stage(sciml.train.SSBroyden2(), 5000)]
    result = sciml.fit(model, loss, stages, key=key)  # loss returns a scalar
    ```
    """

    def theta_tau(self, b, h, a, n, fresh):
        tiny = jnp.finfo(a.dtype).eps
        theta_minus, rho_minus = _lower_bounds(h, a, tiny)
        theta = jnp.maximum(theta_minus, jnp.minimum(1.0 / rho_minus, (1.0 - b) / b))
        theta = _safe_theta(theta, a, tiny)
        return theta, _broyden_tau(b, a, theta, n)


class SSBroyden1(AbstractSelfScaledBroyden):
    """Self-scaled Broyden, first choice of Urbán et al. (2025): θ is the SR1 value
    1/(1 - b) kept within [θ⁻, θ⁺], with θ⁺ = max(1, b(1 + √(a/(1+a)))) (1/ρ⁻ while H
    is the identity): max(θ⁻, 1/(1 - b)) for b > 1, min(θ⁺, 1/(1 - b)) for b < 1, θ⁻ for
    b = 1; τ as `SSBroyden2`. History and arguments as `sciml.train.BFGS`.
    """

    def theta_tau(self, b, h, a, n, fresh):
        tiny = jnp.finfo(a.dtype).eps
        theta_minus, rho_minus = _lower_bounds(h, a, tiny)
        theta_plus = jnp.where(
            fresh, 1.0 / rho_minus, jnp.maximum(1.0, b * (1.0 + jnp.sqrt(a / (1.0 + a))))
        )
        one = b == 1.0
        sr1 = 1.0 / (1.0 - jnp.where(one, 0.0, b))
        theta = jnp.where(
            one, theta_minus,
            jnp.where(b > 1.0, jnp.maximum(theta_minus, sr1), jnp.minimum(theta_plus, sr1)),
        )
        theta = _safe_theta(theta, a, tiny)
        return theta, _broyden_tau(b, a, theta, n)


def _warn_if_low_precision(name, dtype):
    if jnp.finfo(dtype).bits >= 64:
        return
    warnings.warn(
        f"sciml.train.{name}: the trainable parameters are {jnp.dtype(dtype).name}. A "
        "quasi-Newton step is only as good as the gradient differences y = g₊ - g it "
        "learns the curvature from, and the line search compares objective values whose "
        f"rounding is about {float(jnp.finfo(dtype).eps):.0e} of their size: in this "
        "precision the updates stall far above what float64 reaches (relative errors of "
        "1e-6 to 1e-8 need float64). Enable float64 with "
        'jax.config.update("jax_enable_x64", True) in your script and float64 model '
        "arrays.",
        UserWarning,
        stacklevel=2,
    )
