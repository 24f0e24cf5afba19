"""Levenberg-Marquardt on a residual vector, with the Jacobian formed once per accepted step.

For the KINN surrogate polish: a few thousand residuals against one or two thousand
parameters, so the Gauss-Newton matrix `J^T J` is small enough to form and factor
directly. Rejected trial steps reuse it (only the damping changes), unlike solvers
that re-linearise for every trial.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def dense_normal_equations(residuals: Callable) -> Callable:
    """`x -> (r, J^T J, J^T r)` with the full Jacobian by forward mode."""

    def linearise(x):
        r, lin = jax.linearize(residuals, x)
        jac = jax.vmap(lin, out_axes=1)(jnp.eye(x.shape[0], dtype=x.dtype))
        return r, jac.T @ jac, jac.T @ r

    return linearise


def trial_step(residuals: Callable, x, a, g, scale, mu):
    """One damped Gauss-Newton trial from `x` (`a = J^T J`, `g = J^T r`, damping
    `mu * scale`): `(step, |r(x + step)|^2 / 2, predicted decrease)`."""
    lhs = a + jnp.diag(mu * scale)
    chol = jax.scipy.linalg.cho_factor(lhs)
    step = -jax.scipy.linalg.cho_solve(chol, g)
    r_new = residuals(x + step)
    # Predicted decrease of the quadratic model, 0.5 * step^T (mu D step - g) >= 0.
    predicted = 0.5 * step @ (mu * scale * step - g)
    return step, 0.5 * r_new @ r_new, predicted


def levenberg_marquardt(
    residuals: Callable,
    x0,
    *,
    max_steps: int,
    linearise: Callable | None = None,
    trial: Callable | None = None,
    gtol: float = 1e-10,
    xtol: float = 1e-12,
    ftol: float = 1e-10,
    progress: bool = False,
):
    """Minimises `|residuals(x)|^2` from `x0` (a flat vector); returns `(x, info)`.

    Damping by Nielsen's rule, scaled by the running maximum of `diag(J^T J)` (Moré),
    so parameters of very different scales (network weights, ln k) are damped alike.
    `linearise(x) -> (r, J^T J, J^T r)` may exploit structure (default: dense forward
    mode). Stops after `max_steps` accepted steps, or when `max|J^T r| < gtol`, a step is
    below `xtol` relative to `x`, or both the actual and the predicted relative decrease
    of the loss are below `ftol` (MINPACK's tests). `progress` shows a tqdm bar with the
    loss and the damping. `linearise` and `trial(x, a, g, scale, mu)` (default:
    `trial_step` on `residuals`) are jitted here unless given; pass compiled ones, kept
    across calls, for several calls on one problem to compile once (as KINN does for
    its seeds). `info` has `steps` (accepted), `trials`, `loss_before`, `loss_after`
    (both `|r|^2`), `converged`.
    """
    x0 = jnp.asarray(x0)
    if linearise is None:
        linearise = jax.jit(dense_normal_equations(residuals))
    if trial is None:
        trial = jax.jit(functools.partial(trial_step, residuals))

    x = x0
    r, a, g = linearise(x)
    loss = 0.5 * float(r @ r)
    before = loss
    scale = jnp.maximum(jnp.diag(a), 1e-12 * jnp.max(jnp.diag(a)))
    mu, nu = 1e-3, 2.0
    accepted = trials = 0
    converged = False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_steps, dynamic_ncols=True, unit="step", desc="Levenberg-Marquardt")
    while trials < 4 * max_steps and accepted < max_steps:
        if float(jnp.max(jnp.abs(g))) < gtol:
            converged = True
            break
        step, new_loss, predicted = trial(x, a, g, scale, jnp.asarray(mu, x.dtype))
        trials += 1
        new_loss, predicted = float(new_loss), float(predicted)
        rho = (loss - new_loss) / predicted if predicted > 0 else -1.0
        if np.isfinite(new_loss) and rho > 0:
            x = x + step
            accepted += 1
            small = float(jnp.linalg.norm(step)) < xtol * (float(jnp.linalg.norm(x)) + xtol)
            flat = loss - new_loss <= ftol * loss and predicted <= ftol * loss
            r, a, g = linearise(x)
            loss = 0.5 * float(r @ r)
            scale = jnp.maximum(scale, jnp.diag(a))
            mu *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            nu = 2.0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{2 * loss:.3e}", mu=f"{mu:.1e}")
            if small or flat:
                converged = True
                break
        else:
            mu *= nu
            nu *= 2.0
            if mu > 1e16:
                break
    if bar is not None:
        bar.close()
    info = {
        "steps": accepted,
        "trials": trials,
        "loss_before": 2 * before,
        "loss_after": 2 * loss,
        "converged": converged,
    }
    return x, info
