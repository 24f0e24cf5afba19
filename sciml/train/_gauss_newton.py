"""Gauss-Newton and Levenberg-Marquardt: the curvature-aware residual update.

A step linearises the residual `r(θ)` of the flattened trainable parameters, with
Jacobian `J`, and solves the damped Gauss-Newton system

    (JᵀJ + λ D) δ = -Jᵀr,

the minimiser of the model `½‖r + Jδ‖² + ½ λ δᵀDδ` of the objective `½‖r‖²` (the residual
convention of `sciml.train`). Two axes of variation are objects:

- the *search*, how far to trust `δ`: `AdaptiveDamping` (Levenberg-Marquardt, the
  default: λ adapted by the ratio of actual to predicted reduction, a step that does not
  reduce the objective is rejected) or `GridLineSearch` (a fixed λ, often 0, and the best
  step size on the grid η = 2⁻ᵏ, as energy natural gradient descent does; Müller &
  Zeinhofer 2023);
- the *solver* of the linear system: `DenseSolve` (all of `J`, QR of `[J; √(λD)]`),
  `WoodburySolve` (all of `J`, the N x N sample-space system `JJᵀ + λI` when there are
  fewer residuals than parameters) or `CGSolve` (matrix-free conjugate gradients with
  `jvp`/`vjp`). By default the solver is chosen from the sizes `P` and `N`, which are
  known when the step is traced.

Gauss-Newton for a PINN residual is energy natural gradient descent (Dangel et al.
2024); with λ adapted it is Levenberg-Marquardt (Levenberg 1944; Marquardt 1963;
Nielsen 1999).
"""

from __future__ import annotations

import abc
import warnings
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.flatten_util import ravel_pytree

from ._updates import AbstractUpdate, all_finite


PyTree = Any
_HIGHEST = jax.lax.Precision.HIGHEST

# Automatic choice of solver: the dense Jacobian is formed when it holds at most this many
# entries (200 MiB in float64) and its short side (the size of the factorised system) is at
# most _MAX_FACTOR; otherwise conjugate gradients.
_MAX_JACOBIAN = 25_000_000
_MAX_FACTOR = 4096
# Tangents (or cotangents) per pass when the Jacobian is formed; all in one pass when
# there are at most _ONE_PASS of them.
_PER_PASS = 4
_ONE_PASS = 64
# λ stays within these bounds, so repeated rejections cannot overflow it (float32 too).
_DAMPING_BOUNDS = (1e-30, 1e30)
_MAX_GROWTH = 2.0**24

GAUSS_NEWTON_TERMS = ("damping", "step_size", "accepted", "cg_iterations")


def _where(name):
    return f"sciml.GaussNewton: {name}"


def _check_positive(value, name, *, allow_zero=False):
    bad = isinstance(value, bool) or not isinstance(value, int | float | np.number)
    if not bad:
        bad = not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        need = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name} must be {need}, got {value!r}.")
    return float(value)


def _check_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}.")


def _check_count(value, name, low, high):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not (
        low <= value <= high
    ):
        raise ValueError(f"{name} must be an int from {low} to {high}, got {value!r}.")
    return int(value)


# ----------------------------------------------------------------------------------
# The linearisation a solver works on


class Linearisation:
    """The residual and its Jacobian at the current parameters, inside one traced step.

    **Attributes:**

    - `residual`: `r`, shape `(N,)`.
    - `aux`: the loss's named terms.
    - `jvp`: `v -> J v`.
    - `vjp`: `u -> Jᵀ u`.
    - `jacobian`: `J`, shape `(N, P)`, or None if the solver works matrix-free.
    """

    __slots__ = ("residual", "aux", "jvp", "vjp", "jacobian")

    def __init__(self, residual, aux, jvp, vjp, jacobian=None):
        self.residual = residual
        self.aux = aux
        self.jvp = jvp
        self.vjp = vjp
        self.jacobian = jacobian


def _dense(fn, x) -> Linearisation:
    """`J` by forward mode (one tangent per parameter) when there are at least as many
    residuals as parameters, else by reverse mode (one cotangent per residual).

    The residual is linearised once and the tangents are pushed through it a few at a
    time: on a 2-D Poisson PINN (P = 257, N = 1020) that took 0.1 s against 0.57 s for
    `jax.jacfwd`, which pushes all P at once through arrays too large for the cache."""
    n = jax.eval_shape(fn, x)[0].size

    def basis(size, dtype):
        return lambda i: jax.nn.one_hot(i, size, dtype=dtype)

    if min(n, x.size) <= _ONE_PASS:
        # Few tangents: all in one pass. A residual through a loop (an ODE solve) reruns
        # the loop at every pass, so passes of four cost several times more there.
        def with_value(y):
            r, aux = fn(y)
            return r, (r, aux)

        jac = jax.jacfwd if n >= x.size else jax.jacrev
        J, (r, aux) = jac(with_value, has_aux=True)(x)
    elif n >= x.size:
        r, jvp, aux = jax.linearize(fn, x, has_aux=True)
        e = basis(x.size, x.dtype)
        J = jax.lax.map(lambda i: jvp(e(i)), jnp.arange(x.size), batch_size=_PER_PASS).T
    else:
        r, vjp, aux = jax.vjp(fn, x, has_aux=True)
        e = basis(n, r.dtype)
        J = jax.lax.map(lambda i: vjp(e(i))[0], jnp.arange(n), batch_size=_PER_PASS)
    return Linearisation(
        r, aux,
        jvp=lambda v: jnp.matmul(J, v, precision=_HIGHEST),
        vjp=lambda u: jnp.matmul(u, J, precision=_HIGHEST),
        jacobian=J,
    )


def _matrix_free(fn, x) -> Linearisation:
    r, jvp, aux = jax.linearize(fn, x, has_aux=True)
    transpose = jax.linear_transpose(jvp, x)
    return Linearisation(r, aux, jvp=jvp, vjp=lambda u: transpose(u)[0])


# ----------------------------------------------------------------------------------
# Solvers of the damped system


class AbstractGaussNewtonSolver(eqx.Module):
    """How `GaussNewton` solves `(JᵀJ + λ D) δ = -Jᵀr`.

    `dense` says whether it needs the Jacobian as a matrix; `direction` returns `δ` and
    the number of iterations it took (0 for a direct solve). A failed solve returns a
    non-finite `δ`, which the search treats as a rejected step.
    """

    dense: ClassVar[bool]

    def linearise(self, fn, x) -> Linearisation:
        """The residual and its Jacobian at `x`, for `fn(x) -> (r, aux)` (`r` flat).

        The default forms `J` as a matrix for a dense solver (forward mode when there are
        at least as many residuals as parameters, else reverse mode) and stays
        matrix-free otherwise. Override it to exploit a Jacobian's known structure, e.g.
        to push several parameters' tangents through one pass when no residual depends
        on more than one of them (column colouring)."""
        return _dense(fn, x) if self.dense else _matrix_free(fn, x)

    @abc.abstractmethod
    def direction(self, lin: Linearisation, damping, scale) -> tuple[jax.Array, jax.Array]:
        """`(δ, iterations)` for damping `damping` (a scalar) and `D = diag(scale)`
        (`scale` None for `D = I`)."""


class _AbstractDirectSolve(AbstractGaussNewtonSolver):
    """A factorisation of the whole Jacobian: QR, or Cholesky of the normal equations."""

    dense: ClassVar[bool] = True
    normal_equations: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        _check_bool(self.normal_equations,
                    f"sciml.train.{type(self).__name__}: `normal_equations`")


class DenseSolve(_AbstractDirectSolve):
    """The damped step from the whole Jacobian, for up to a few thousand parameters.

    By default the least-squares problem `min ‖[J; √(λD)] δ + [r; 0]‖` is solved by QR,
    which works with the condition number of `J` itself; forming `JᵀJ + λD` and its
    Cholesky factor (`normal_equations=True`) is about twice as fast, but squares the
    condition number, which costs the last digits that high-accuracy training needs.
    Time `O(N P²)`, memory `O(N P)`.

    **Arguments:**

    - `normal_equations`: solve `(JᵀJ + λD) δ = -Jᵀr` by Cholesky instead of QR.
    """

    def direction(self, lin, damping, scale):
        J, r = lin.jacobian, lin.residual
        P = J.shape[1]
        d = jnp.ones(P, J.dtype) if scale is None else scale
        if self.normal_equations:
            G = jnp.matmul(J.T, J, precision=_HIGHEST)
            G = 0.5 * (G + G.T) + jnp.diag(damping * d)
            op = lx.MatrixLinearOperator(G, lx.positive_semidefinite_tag)
            sol = lx.linear_solve(op, -lin.vjp(r), lx.Cholesky(), throw=False)
        else:
            A = jnp.concatenate([J, jnp.diag(jnp.sqrt(damping * d))])
            rhs = jnp.concatenate([-r, jnp.zeros(P, r.dtype)])
            sol = lx.linear_solve(lx.MatrixLinearOperator(A), rhs, lx.QR(), throw=False)
        return sol.value, jnp.asarray(0, jnp.int32)


class WoodburySolve(_AbstractDirectSolve):
    """The damped step in sample space, for fewer residuals than parameters:
    `δ = -Jᵀ(JJᵀ + λI)⁻¹ r` (the push-through identity), an N x N system.

    By default it is the minimum-norm solution of `[J, √λ I] z = -r` (δ the first P
    entries of z), by QR of the transpose: the factor of `JJᵀ + λI` without forming it,
    which works with the condition number of `J` rather than its square.
    `normal_equations=True` forms `JJᵀ + λI` and uses Cholesky (faster, squares the
    condition number). With Marquardt scaling `D`, it works on `J D^(-1/2)`. Time
    `O(N² P)`, memory `O(N P)` (Guzmán-Cordero et al. 2025).

    **Arguments:**

    - `normal_equations`: Cholesky of `JJᵀ + λI` instead of QR.
    """

    def direction(self, lin, damping, scale):
        J, r = lin.jacobian, lin.residual
        N, P = J.shape
        root = None if scale is None else jnp.sqrt(scale)
        if root is not None:
            J = J / root[None, :]
        if self.normal_equations:
            K = jnp.matmul(J, J.T, precision=_HIGHEST)
            K = 0.5 * (K + K.T) + damping * jnp.eye(N, dtype=K.dtype)
            op = lx.MatrixLinearOperator(K, lx.positive_semidefinite_tag)
            y = lx.linear_solve(op, -r, lx.Cholesky(), throw=False).value
            delta = jnp.matmul(y, J, precision=_HIGHEST)
        else:
            delta = _min_norm_qr(J, damping, r)
        if root is not None:
            delta = delta / root
        return delta, jnp.asarray(0, jnp.int32)


def _min_norm_qr(J, damping, r):
    """The first P entries of the minimum-norm solution z of `[J, √λ I] z = -r`, by
    Householder QR of the tall transpose `[Jᵀ; √λ I] = QR`: `z = -Q R⁻ᵀ r`.

    Written out rather than through `lineax.QR`: for a wide operator lineax applies Q to
    a row vector (`ormqr(..., left=False)`), which ran 20x slower on CPU than the
    factorisation itself (1.1 s against 0.05 s at N = 257, P = 1277)."""
    N, P = J.shape
    tall = jnp.concatenate([J.T, jnp.sqrt(damping) * jnp.eye(N, dtype=J.dtype)])
    h, taus = jnp.linalg.qr(tall, mode="raw")
    a = h.mT  # R in the upper triangle, the Householder vectors below it
    y = jax.scipy.linalg.solve_triangular(a[:N], -r, trans="T", lower=False)
    y = jnp.concatenate([y, jnp.zeros(P, y.dtype)])
    return jax.lax.linalg.ormqr(a, taus, y[:, None], left=True, transpose=False)[:P, 0]


class CGSolve(AbstractGaussNewtonSolver):
    """The damped step by conjugate gradients on `v -> Jᵀ(Jv) + λv`, matrix-free: each
    iteration is one `jvp` and one `vjp` through the residual (no Jacobian is stored),
    for models too large for `DenseSolve` or `WoodburySolve`. Stopped early (at
    `max_steps`) the step is still a descent direction. `D = I` only (Marquardt scaling
    needs the Jacobian's column norms).

    **Arguments:**

    - `max_steps`: most iterations per step.
    - `rtol`: stop when the system's residual is below `rtol` times the right-hand side
      (entrywise, with `rtol · max|Jᵀr|` as the absolute floor; lineax's `CG`).
    """

    dense: ClassVar[bool] = False
    max_steps: int = eqx.field(default=100, static=True)
    rtol: float = eqx.field(default=1e-10, static=True)

    def __check_init__(self):
        _check_count(self.max_steps, "sciml.train.CGSolve: `max_steps`", 1, 10**7)
        _check_positive(self.rtol, "sciml.train.CGSolve: `rtol`")

    def direction(self, lin, damping, scale):
        r = lin.residual
        rhs = -lin.vjp(r)

        def mv(v):
            return lin.vjp(lin.jvp(v)) + damping * v

        op = lx.FunctionLinearOperator(
            mv, jax.ShapeDtypeStruct(rhs.shape, rhs.dtype), lx.positive_semidefinite_tag
        )
        atol = self.rtol * jnp.max(jnp.abs(rhs))
        cg = lx.CG(rtol=self.rtol, atol=atol, max_steps=self.max_steps)
        sol = lx.linear_solve(op, rhs, cg, throw=False)
        return sol.value, jnp.asarray(sol.stats["num_steps"], jnp.int32)


def choose_solver(n_params: int, n_residuals: int) -> AbstractGaussNewtonSolver:
    """The solver `GaussNewton` uses by default for `n_params` parameters and
    `n_residuals` residuals: a direct solve of the smaller of the two systems (P x P or
    N x N) while the Jacobian and that system fit in memory, else conjugate gradients.
    """
    small = min(n_params, n_residuals)
    if n_params * n_residuals <= _MAX_JACOBIAN and small <= _MAX_FACTOR:
        return DenseSolve() if n_residuals >= n_params else WoodburySolve()
    return CGSolve()


# ----------------------------------------------------------------------------------
# Searches: how far a step goes


class AbstractSearch(eqx.Module):
    """How `GaussNewton` turns the direction `δ` into a step, and the damping λ it asks
    the solver for."""

    @abc.abstractmethod
    def init(self, dtype) -> PyTree:
        """The search's state at the start of a stage."""

    @abc.abstractmethod
    def damping(self, state) -> jax.Array:
        """λ for the next solve."""

    @abc.abstractmethod
    def move(self, state, x, delta, value, r, u, residual_fn) -> tuple:
        """`(new x, step size, accepted, new state)` from `x` along `δ`.

        `value` is `½‖r‖²` at `x`, `u = Jδ`, and `residual_fn(y)` the residual at `y`.
        """


class DampingState(NamedTuple):
    damping: jax.Array  # λ of the next step
    growth: jax.Array  # Nielsen's ν: the factor λ grows by at the next rejection


class AdaptiveDamping(AbstractSearch):
    """Levenberg-Marquardt damping: λ adapted by the gain ratio
    `ρ = (actual reduction) / (reduction predicted by the Gauss-Newton model)`, with
    Nielsen's rule (Nielsen 1999; Madsen, Nielsen & Tingleff 2004, §3.2): a step with
    `ρ > 0` is taken and λ multiplied by `max(1/3, 1 - (2ρ - 1)³)`; otherwise the step is
    rejected (the parameters stay, the step still counts) and λ multiplied by ν, which
    doubles with every further rejection in a row. Unlike a rule with fixed factors, λ
    falls fast only when the model predicts the reduction well (ρ near 1). A rejected
    step too short to change the parameters in their precision scales λ down by the
    precision's epsilon (otherwise λ, once that large, could only grow).

    **Arguments:**

    - `initial`: λ at the start of a stage, in the units of `JᵀJ` (with Marquardt
      scaling, relative to its diagonal). λ adapts within a few steps.
    """

    initial: float = eqx.field(default=1e-3, static=True)

    def __check_init__(self):
        _check_positive(self.initial, "sciml.train.AdaptiveDamping: `initial`")

    def init(self, dtype):
        return DampingState(jnp.asarray(self.initial, dtype), jnp.asarray(2.0, dtype))

    def damping(self, state):
        return state.damping

    def move(self, state, x, delta, value, r, u, residual_fn):
        dtype = state.damping.dtype
        # The model's reduction -(rᵀu + ½‖u‖²) without subtracting two nearly equal
        # losses, and the actual one as ½ Σ (r - r')(r + r'), summed after the products.
        predicted = -(jnp.vdot(r, u) + 0.5 * jnp.vdot(u, u))
        r_new = residual_fn(x + delta)
        actual = 0.5 * jnp.sum((r - r_new) * (r + r_new))
        rho = actual / predicted
        ok = all_finite(delta) & jnp.isfinite(actual) & (predicted > 0) & (rho > 0)
        shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * jnp.where(ok, rho, 0.0) - 1.0) ** 3)
        lam = jnp.where(ok, state.damping * shrink, state.damping * state.growth)
        growth = jnp.where(ok, 2.0, jnp.minimum(2.0 * state.growth, _MAX_GROWTH))
        # A step too short to change x in this precision (λ far too large, e.g. after a
        # run of rejections) can only be rejected again, and λ would only grow: scale λ
        # down by the precision's epsilon instead, so the next step is long enough to
        # measure, and let the gain ratio adapt it from there.
        stalled = ~ok & all_finite(delta) & jnp.all(x + delta == x)
        lam = jnp.where(stalled, state.damping * jnp.finfo(dtype).eps, lam)
        growth = jnp.where(stalled, 2.0, growth)
        new = DampingState(
            jnp.clip(lam, *_DAMPING_BOUNDS).astype(dtype), growth.astype(dtype)
        )
        x_new = jnp.where(ok, x + delta, x)
        return x_new, ok.astype(dtype), ok, new


class GridLineSearch(AbstractSearch):
    """A fixed damping λ (none by default) and the step size with the lowest objective on
    the grid `η = 2⁻ᵏ, k = 0 … halvings`, all evaluated at once (vmapped), as energy
    natural gradient descent does (Müller & Zeinhofer 2023). The step is taken if that
    objective is below the current one; otherwise the parameters stay.

    With `damping=0` the dense solvers need a Jacobian of full rank (`DenseSolve`: full
    column rank; `WoodburySolve`: full row rank): a step whose solve fails is not taken.
    A network's Jacobian is often numerically rank-deficient; a small damping (ENGD's
    tuned values lie between 1e-10 and 1e-8 for the scaled residuals of
    `sciml.train`'s convention) or `AdaptiveDamping` avoids that.

    **Arguments:**

    - `damping`: λ, in the units of `JᵀJ`.
    - `halvings`: the grid's last `k` (30: step sizes down to about 1e-9).
    """

    damping_value: float = eqx.field(default=0.0, static=True)
    halvings: int = eqx.field(default=30, static=True)

    def __init__(self, damping: float = 0.0, halvings: int = 30):
        self.damping_value = _check_positive(
            damping, "sciml.train.GridLineSearch: `damping`", allow_zero=True
        )
        self.halvings = _check_count(halvings, "sciml.train.GridLineSearch: `halvings`",
                                     0, 60)

    def init(self, dtype):
        return None

    def damping(self, state):
        return self.damping_value

    def move(self, state, x, delta, value, r, u, residual_fn):
        dtype = r.dtype
        etas = 0.5 ** jnp.arange(self.halvings + 1, dtype=dtype)
        good = all_finite(delta)
        delta = jnp.where(good, delta, 0.0)

        def loss_at(eta):
            res = residual_fn(x + eta * delta)
            return 0.5 * jnp.vdot(res, res)

        losses = jax.vmap(loss_at)(etas)
        losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
        best = jnp.argmin(losses)
        ok = good & (losses[best] < value)
        eta = jnp.where(ok, etas[best], 0.0)
        return x + eta * delta, eta, ok, state


# ----------------------------------------------------------------------------------
# The update


class GaussNewtonState(NamedTuple):
    search: PyTree  # the search's state (λ and ν for AdaptiveDamping)
    scale: PyTree  # Marquardt scaling: running maximum of diag(JᵀJ), else None
    converged: jax.Array  # bool: an accepted step passed the step test
    rejections: jax.Array  # int32: steps in a row that did not move the parameters


class GaussNewton(AbstractUpdate):
    """Gauss-Newton / Levenberg-Marquardt: the curvature-aware update for residual
    losses. Pass it to `sciml.fit` (or a `sciml.Stage`) where an optax optimiser goes;
    `sciml.LevenbergMarquardt` is the same class.

    The loss follows the residual convention: it returns the residual vector `r` (or
    `(r, aux)`), with each block scaled as it should weigh (e.g. `r_pde / √N_pde`), and
    the objective is `½‖r‖²` (the history's `loss`). Every step solves
    `(JᵀJ + λD) δ = -Jᵀr` for all trainable parameters flattened into one vector and
    moves by `δ` as the search decides. The history adds the columns `damping` (λ of
    the step), `step_size` (the multiple of `δ` taken: 1 or 0 for `AdaptiveDamping`),
    `accepted` (1 if the parameters moved) and `cg_iterations` (0 for a direct solve).

    Each step evaluates the Jacobian (P forward-mode or N reverse-mode passes), so it
    costs far more than an Adam step; it is meant for a few hundred to a few thousand
    steps after, or instead of, a first-order stage, and for float64: in float32 the
    objective's rounding (about 1e-7 of it) limits the attainable accuracy, and a
    warning says so.

    **Arguments:**

    - `search`: `sciml.train.AdaptiveDamping()` (Levenberg-Marquardt, the default) or
      `sciml.train.GridLineSearch()` (fixed damping, best step size on a grid, ENGD).
      One class with the search as an object rather than two classes: the linear
      algebra, the history columns and the checks are shared, and any solver combines
      with any search.
    - `solver`: `sciml.train.DenseSolve()`, `sciml.train.WoodburySolve()` or
      `sciml.train.CGSolve()`; None (default) chooses from the number of parameters P
      and residuals N when the step is traced: a direct solve of the smaller system
      (P x P if N >= P, else N x N) while `J` has at most 25 million entries and that
      system at most 4096 rows, else conjugate gradients (`choose_solver`).
    - `marquardt_scaling`: `D = diag(JᵀJ)` (Marquardt 1963; the running maximum over the
      stage's steps, Moré 1978) instead of `D = I`, which makes the step independent of
      how each parameter is scaled. Needs a dense solver.
    - `rtol`, `atol`: the step test of MINPACK and optimistix: the stage ends (see
      `done`) at the first accepted step that changed every flattened parameter `x_i`
      by at most `atol + rtol |x_i|`. Both 0 (the default): the stage runs all its steps.
    - `max_rejections`: end the stage after this many steps in a row that did not move
      the parameters (the damping has then grown by about `2^(n(n+1)/2)`: the Gauss-Newton
      model predicts a decrease the objective does not show). None (the default): no
      limit. Such a stage has not converged (`converged(state)` is False).

    **Example:**

    ```python
    def residual(model, batch, *, key):
        r_pde = jax.vmap(lambda p: -sciml.pinn.laplacian(model, p) - f(p))(interior)
        r_bc = jax.vmap(model)(boundary) - g(boundary)
        return jnp.concatenate([r_pde / n_i**0.5, r_bc / n_b**0.5])

    def half_square(model, batch, *, key):  # Adam takes a scalar loss
        r = residual(model, batch, key=key)
        return 0.5 * jnp.sum(r**2)

    stages = [sciml.Stage(optax.adam(1e-3), 1000, loss=half_square),
              sciml.Stage(sciml.GaussNewton(), 500)]
    result = sciml.fit(model, residual, stages, key=key)
    ```
    """

    residual: ClassVar[bool] = True
    terms: ClassVar[tuple[str, ...]] = GAUSS_NEWTON_TERMS

    search: AbstractSearch
    solver: AbstractGaussNewtonSolver | None
    marquardt_scaling: bool = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_rejections: int | None = eqx.field(static=True)

    def __init__(
        self,
        search: AbstractSearch | None = None,
        *,
        solver: AbstractGaussNewtonSolver | None = None,
        marquardt_scaling: bool = False,
        rtol: float = 0.0,
        atol: float = 0.0,
        max_rejections: int | None = None,
    ):
        search = AdaptiveDamping() if search is None else search
        if not isinstance(search, AbstractSearch):
            raise TypeError(
                f"{_where('`search`')} must be sciml.train.AdaptiveDamping(...) or "
                f"sciml.train.GridLineSearch(...), got {search!r}. Strategies are "
                "objects, not strings."
            )
        if solver is not None and not isinstance(solver, AbstractGaussNewtonSolver):
            raise TypeError(
                f"{_where('`solver`')} must be None (chosen by size), "
                "sciml.train.DenseSolve(), sciml.train.WoodburySolve() or "
                f"sciml.train.CGSolve(), got {solver!r}. Strategies are objects, not "
                "strings."
            )
        _check_bool(marquardt_scaling, _where("`marquardt_scaling`"))
        if marquardt_scaling and solver is not None and not solver.dense:
            raise ValueError(
                f"{_where('`marquardt_scaling=True`')} needs the Jacobian's column norms, "
                f"which the matrix-free {type(solver).__name__} does not form. Use "
                "DenseSolve() or WoodburySolve(), or marquardt_scaling=False."
            )
        self.search = search
        self.solver = solver
        self.marquardt_scaling = marquardt_scaling
        self.rtol = _check_positive(rtol, _where("`rtol`"), allow_zero=True)
        self.atol = _check_positive(atol, _where("`atol`"), allow_zero=True)
        if max_rejections is not None:
            max_rejections = _check_count(max_rejections, _where("`max_rejections`"),
                                          1, 2**31 - 1)
        self.max_rejections = max_rejections

    def init(self, params):
        flat, _ = ravel_pytree(params)
        _warn_if_low_precision(flat.dtype)
        scale = jnp.zeros_like(flat) if self.marquardt_scaling else None
        return GaussNewtonState(self.search.init(flat.dtype), scale, jnp.asarray(False),
                                jnp.asarray(0, jnp.int32))

    def converged(self, state) -> jax.Array:
        """True once an accepted step passed the `rtol`/`atol` step test."""
        return state.converged

    def done(self, state):
        done = state.converged
        if self.max_rejections is not None:
            done = done | (state.rejections >= self.max_rejections)
        return done

    def _solver_for(self, n_params, n_residuals):
        solver = self.solver or choose_solver(n_params, n_residuals)
        if self.marquardt_scaling and not solver.dense:
            raise ValueError(
                f"{_where('`marquardt_scaling=True`')} needs a dense solver, but with "
                f"{n_params} parameters and {n_residuals} residuals the default is the "
                "matrix-free CGSolve (the Jacobian would be too large). Pass "
                "marquardt_scaling=False, or solver=sciml.train.DenseSolve() if the "
                "Jacobian fits in memory."
            )
        return solver

    def step(self, objective, params, state, key):
        del key
        flat, unravel = ravel_pytree(params)

        def fn(x):
            r, aux = objective(unravel(x))
            return jnp.ravel(r), aux

        def residual_fn(x):
            return fn(x)[0]

        n_res = jax.eval_shape(fn, flat)[0].size
        solver = self._solver_for(flat.size, n_res)
        lin = solver.linearise(fn, flat)
        r = lin.residual
        dtype = r.dtype
        value = 0.5 * jnp.vdot(r, r)
        scale = state.scale
        if self.marquardt_scaling:
            scale = jnp.maximum(scale, jnp.sum(lin.jacobian**2, axis=0).astype(scale.dtype))
            # A parameter the residual never saw still gets a (tiny) damping.
            floor = jnp.finfo(scale.dtype).eps * jnp.max(scale)
            scale = jnp.maximum(scale, floor)
        lam = jnp.asarray(self.search.damping(state.search), dtype)
        delta, iterations = solver.direction(lin, lam, scale)
        u = lin.jvp(jnp.where(all_finite(delta), delta, 0.0))
        x, step_size, accepted, search_state = self.search.move(
            state.search, flat, delta, value, r, u, residual_fn
        )
        aux = dict(lin.aux)
        aux.update(
            damping=lam,
            step_size=jnp.asarray(step_size, dtype),
            accepted=accepted.astype(dtype),
            cg_iterations=iterations.astype(dtype),
        )
        moved = x != flat
        rejections = jnp.where(jnp.any(moved), 0, state.rejections + 1)
        converged = state.converged
        if self.rtol > 0 or self.atol > 0:
            small = jnp.all(jnp.abs(x - flat) <= self.atol + self.rtol * jnp.abs(x))
            converged = converged | (jnp.any(moved) & small)
        new_state = GaussNewtonState(search_state, scale, converged, rejections)
        return value, aux, unravel(x), new_state

    def diagnose(self, objective, params, state, key):
        def half_square(p):
            r, _ = objective(p)
            return 0.5 * jnp.vdot(r, r)

        grads = jax.grad(half_square)(params)
        _, _, new_params, _ = self.step(objective, params, state, key)
        return all_finite(grads), all_finite(new_params)

    def divergence_hint(self, terms):
        return (
            "GaussNewton never takes a step to non-finite residuals (it rejects it), so the "
            "residual vector r returned by the loss was already non-finite at these "
            "parameters (at the stage's start, or on a new batch): check it there, e.g. "
            "for a division by zero or the log of a negative number."
        )


LevenbergMarquardt = GaussNewton
"""`sciml.GaussNewton` under its common name: the same class (its default search,
`AdaptiveDamping`, is Levenberg-Marquardt's damping)."""


def _warn_if_low_precision(dtype):
    if jnp.finfo(dtype).bits >= 64:
        return
    warnings.warn(
        f"sciml.GaussNewton: the trainable parameters are {jnp.dtype(dtype).name}. A "
        "Gauss-Newton step is only as accurate as the objective ½‖r‖² it compares, whose "
        f"rounding is about {float(jnp.finfo(dtype).eps):.0e} of its value, and its "
        "linear solve loses up to the square of the Jacobian's condition number: in "
        "this precision training stalls far above what float64 reaches (relative errors "
        "of 1e-6 to 1e-8 need float64). Enable float64 with "
        'jax.config.update("jax_enable_x64", True) in your script and float64 model '
        "arrays.",
        UserWarning,
        stacklevel=2,
    )
