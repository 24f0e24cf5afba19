"""Regularisers of neural differential equations.

Two kinds, told apart by their abstract class:

- `AbstractHeuristicRegulariser`: penalties built from the adaptive solver's own
  internal heuristics (local error estimate, stiffness estimate), accumulated inside
  the solve by `HeuristicsSolver` at no extra vector-field evaluation (ERNODE, SRNODE:
  Pal, Ma, Shah, Rackauckas, "Opening the Blackbox", ICML 2021).
- `AbstractIntegralRegulariser`: penalties `∫ r(t, y) dt` of the dynamics, integrated
  as an extra state of the ODE (RNODE: Finlay et al. 2020; TayNODE: Kelly et al. 2020).

Every regulariser carries its weight as `weight=`: a float, or a schedule
`step -> weight` (e.g. `optax.exponential_decay(100.0, 1000, 0.1)`) evaluated at the
training step the loss receives from `sciml.fit`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.tree_util as jtu


Weight = float | Callable


def _check_weight(weight, where):
    if callable(weight):
        return weight
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise TypeError(
                f"{where}: `weight` must be a float or a schedule step -> weight (e.g. "
                f"optax.exponential_decay(...)), got {weight!r}."
            ) from None
    weight = float(weight)
    if not weight >= 0:
        raise ValueError(f"{where}: `weight` must be >= 0, got {weight}.")
    return weight


def _check_tolerances(rtol, atol, where):
    """`(rtol, atol)` as floats (None kept: the controller's), each >= 0."""
    out = []
    for n, v in (("rtol", rtol), ("atol", atol)):
        if v is not None and not float(v) >= 0:
            raise ValueError(f"{where}: `{n}` must be >= 0, got {v}.")
        out.append(None if v is None else float(v))
    return tuple(out)


class AbstractRegulariser(eqx.Module):
    """A penalty a neural differential equation adds to its stats as `"regularisation"`.

    Subclasses hold `weight` (a float, or a schedule `step -> weight`).
    """

    weight: eqx.AbstractVar[Weight]

    def weight_at(self, step):
        """The weight at training step `step` (`None`: step 0 of a schedule)."""
        if callable(self.weight):
            return self.weight(jnp.asarray(0 if step is None else step))
        return self.weight

    @property
    def name(self) -> str:
        """Key of the unweighted value in the stats dict."""
        return type(self).__name__.removesuffix("Regulariser").lower()


class AbstractHeuristicRegulariser(AbstractRegulariser):
    """A penalty made of the adaptive solver's internal heuristics.

    It is accumulated over accepted steps inside the solver state by
    `HeuristicsSolver` and differentiated by backpropagating through the solver
    (discretise-then-optimise). Continuous adjoints do not define its derivative.
    """

    @abc.abstractmethod
    def value(self, record: dict, stability_size: float | None):
        """The unweighted penalty from the record `HeuristicsSolver` accumulated."""


class ErrorEstimateRegulariser(AbstractHeuristicRegulariser):
    """ERNODE: the sum over accepted steps of the solver's scaled local error
    estimate times the step size, `Σ_j EEst_j |h_j|`.

    `EEst_j = RMS(y_error / (atol + rtol max(|y_j|, |y_{j+1}|)))` is exactly the number
    a `diffrax.PIDController` compares with 1 to accept a step. The penalty costs no
    extra vector-field evaluation.

    **Arguments:**

    - `weight`: float or schedule `step -> weight`. The paper's MNIST run decays it from
      100 to 10 (with the `mean` aggregation of its code); 0.1 with the sum suits the
      8x8 digits.
    - `rtol`, `atol`: tolerances of the scale. `None` (default): those of the
      `PIDController`; give them when the step size is constant.

    Reference: Pal, Ma, Shah, Rackauckas, ICML 2021, arXiv:2105.03918.
    """

    weight: Weight
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)

    def __init__(self, weight: Weight = 1.0, *, rtol=None, atol=None):
        self.weight = _check_weight(weight, "ErrorEstimateRegulariser")
        self.rtol, self.atol = _check_tolerances(rtol, atol, "ErrorEstimateRegulariser")

    @property
    def name(self):
        return "error_estimate"

    def value(self, record, stability_size):
        return record["error"]


class StepCountRegulariser(AbstractHeuristicRegulariser):
    """A differentiable estimate of the number of steps the adaptive solver takes,
    `Σ_j EEst_j^(1/q)` over every attempted step, accepted or rejected (`q` the error
    order, 5 for Tsit5).

    The controller follows a step of size `h_j` and scaled error `EEst_j` with one of
    about `h_j EEst_j^(-1/q)`, so the interval that step covered needs about
    `EEst_j^(1/q)` steps: the sum tracks the step count, and its derivative says which
    changes of the dynamics take steps away. ERNODE's `Σ_j EEst_j |h_j|` does not track
    it: error control holds `EEst` near a constant, so that sum stays near
    `const · |t1 - t0|` whatever the number of steps. The sum is accumulated in the
    step-size controller's state, which (unlike the solver's) diffrax keeps across
    rejected steps, so rejections count; the step sizes themselves are not
    differentiated (diffrax stops their gradient).

    As a penalty added to a data loss it trades accuracy for steps like the others; its
    use is as the objective of a constrained fit, "fewest steps subject to loss <= a
    target", e.g. by switching gradient steps or an augmented Lagrangian
    (`benchmarks/node_constrained.py`).

    **Arguments:**

    - `weight`: float or schedule `step -> weight`.
    - `rtol`, `atol`: tolerances of the error scale. `None` (default): those of the
      `PIDController`; give them when the step size is constant.
    """

    weight: Weight
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)

    def __init__(self, weight: Weight = 1.0, *, rtol=None, atol=None):
        self.weight = _check_weight(weight, "StepCountRegulariser")
        self.rtol, self.atol = _check_tolerances(rtol, atol, "StepCountRegulariser")

    @property
    def name(self):
        return "step_count"

    def value(self, record, stability_size):
        return record["step_count"]


class StiffnessRegulariser(AbstractHeuristicRegulariser):
    """SRNODE: Shampine's estimate of the dominant Jacobian eigenvalue, from the two
    stages of Tsit5/Dopri5 that share `c = 1`, `S = ‖f(Y_7) - f(Y_6)‖ / ‖Y_7 - Y_6‖`,
    divided by the method's stability-region size (3.5068 for Tsit5, 3.3066 for
    Dopri5, as OrdinaryDiffEq's `alg_stability_size`).

    **Arguments:**

    - `weight`: float or schedule `step -> weight`.
    - `form`: `"sum"`, the paper's `Σ_j S_j |h_j| / size`, or `"max"`, the released
      code's `max_j S_j / size` (no step-size factor).

    Reference: Pal et al., ICML 2021; Shampine, "Stiffness and nonstiff differential
    equation solvers II" (1977); Hairer & Wanner, Solving ODEs II, IV.2.
    """

    weight: Weight
    form: Literal["sum", "max"] = eqx.field(static=True, default="sum")

    def __init__(self, weight: Weight = 1.0, *, form: Literal["sum", "max"] = "sum"):
        self.weight = _check_weight(weight, "StiffnessRegulariser")
        if form not in ("sum", "max"):
            raise ValueError(
                f"StiffnessRegulariser: `form` must be 'sum' (the paper's Σ S_j |h_j|) or "
                f"'max' (the released code's max_j S_j), got {form!r}."
            )
        self.form = form

    @property
    def name(self):
        return f"stiffness_{self.form}"

    def value(self, record, stability_size):
        raw = record["stiffness_sum"] if self.form == "sum" else record["stiffness_max"]
        return raw / stability_size


class AbstractIntegralRegulariser(AbstractRegulariser):
    """A penalty `∫_{t0}^{t1} r(t, y(t)) dt`, integrated as an extra ODE state."""

    @property
    def needs_key(self) -> bool:
        """Whether `integrand` uses a random probe (then the model call needs `key=`)."""
        return False

    @abc.abstractmethod
    def integrand(self, vector_field, t, y, args, noise):
        """Returns `(f(t, y), r(t, y))`: the vector field and the scalar integrand.

        Returning `f` lets implementations share work with `r` (one jvp gives both).
        """


def _mean_sq(tree):
    leaves = jtu.tree_leaves(tree)
    total = sum(jnp.sum(jnp.abs(x) ** 2) for x in leaves)
    return total / sum(x.size for x in leaves)


class KineticEnergyRegulariser(AbstractIntegralRegulariser):
    """RNODE: kinetic energy plus the squared Frobenius norm of the Jacobian,
    `∫ mean(f²) + jacobian_weight · mean((∂f/∂y ε)²) dt`, with one Gaussian Hutchinson
    probe `ε` per solve (`E[‖J ε‖²] = ‖J‖_F²`), computed with one `jax.jvp` that
    also gives `f`.

    **Arguments:**

    - `weight`: float or schedule `step -> weight`.
    - `jacobian_weight`: relative weight of the Frobenius term (0 to drop it).

    Reference: Finlay, Jacobsen, Nurbekyan, Oberman, "How to train your neural ODE",
    ICML 2020.
    """

    weight: Weight
    jacobian_weight: float = eqx.field(static=True, default=1.0)

    def __init__(self, weight: Weight = 1.0, *, jacobian_weight: float = 1.0):
        self.weight = _check_weight(weight, "KineticEnergyRegulariser")
        if callable(jacobian_weight):
            raise TypeError(
                "KineticEnergyRegulariser: `jacobian_weight` is the fixed relative weight of "
                f"the Frobenius term, a float >= 0, got {jacobian_weight!r}; put a schedule "
                "in `weight=`."
            )
        self.jacobian_weight = float(_check_weight(jacobian_weight, "KineticEnergyRegulariser"))

    @property
    def needs_key(self):
        return self.jacobian_weight > 0

    @property
    def name(self):
        return "kinetic_energy"

    def integrand(self, vector_field, t, y, args, noise):
        if self.jacobian_weight == 0:
            f = vector_field(t, y, args)
            return f, _mean_sq(f)
        f, jeps = jax.jvp(lambda z: vector_field(t, z, args), (y,), (noise,))
        return f, _mean_sq(f) + self.jacobian_weight * _mean_sq(jeps)


def total_derivatives(vector_field, t, y, args, order: int):
    """The total time derivatives `y', y'', ..., y^(order)` along `y' = f(t, y, args)`.

    By nested forward-mode differentiation: `y^(k+1) = D_k(t, y)` with `D_1 = f` and
    `D_{k+1} = ∂_t D_k + ∂_y D_k · f`, one `jax.jvp` per order. (Taylor mode,
    `jax.experimental.jet`, is cheaper for large K, but returned NaN under `jit` for
    this module's batched tanh networks with jax 0.10.2, so it is not used.)

    **Returns:** a list of `order` pytrees shaped like `y`.
    """
    t = jnp.asarray(t)
    f = vector_field(t, y, args)

    def nxt(d):
        def dk1(s, z):
            return jax.jvp(d, (s, z), (jnp.ones_like(s), vector_field(s, z, args)))[1]

        return dk1

    derivs = [f]
    d = lambda s, z: vector_field(s, z, args)
    for _ in range(1, order):
        d = nxt(d)
        derivs.append(d(t, y))
    return derivs


class TaylorRegulariser(AbstractIntegralRegulariser):
    """TayNODE: the integrated squared `order`-th total derivative of the solution,
    `∫ mean((d^K y/dt^K)²) dt`, by nested forward-mode AD (`total_derivatives`).

    **Arguments:**

    - `weight`: float or schedule `step -> weight` (the paper: 3.02e-3 with K = 3 on
      MNIST; Kelly et al.'s README: 6e-5).
    - `order`: K >= 1 (K = 1 is the kinetic energy).

    Reference: Kelly, Bettencourt, Johnson, Duvenaud, "Learning differential equations
    that are easy to solve", NeurIPS 2020.
    """

    weight: Weight
    order: int = eqx.field(static=True, default=2)

    def __init__(self, weight: Weight = 1.0, *, order: int = 2):
        self.weight = _check_weight(weight, "TaylorRegulariser")
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"TaylorRegulariser: `order` must be an int >= 1, got {order!r}.")
        self.order = order

    @property
    def name(self):
        return f"taylor_{self.order}"

    def integrand(self, vector_field, t, y, args, noise):
        derivs = total_derivatives(vector_field, t, y, args, self.order)
        return derivs[0], _mean_sq(derivs[-1])
