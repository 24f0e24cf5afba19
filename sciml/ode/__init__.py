"""Neural ODEs and SDEs on diffrax, regularised by the adaptive solver's own heuristics
(ERNODE, SRNODE: Pal et al., ICML 2021) or by baselines (RNODE, TayNODE)."""

from ._constrained import KeepFewestSteps as KeepFewestSteps, fewest_steps as fewest_steps
from ._fields import (
    CubicField as CubicField,
    DiagonalLinear as DiagonalLinear,
    TimeConcatField as TimeConcatField,
)
from ._models import NeuralODE as NeuralODE, NeuralSDE as NeuralSDE
from ._regularisers import (
    AbstractHeuristicRegulariser as AbstractHeuristicRegulariser,
    AbstractIntegralRegulariser as AbstractIntegralRegulariser,
    AbstractRegulariser as AbstractRegulariser,
    ErrorEstimateRegulariser as ErrorEstimateRegulariser,
    KineticEnergyRegulariser as KineticEnergyRegulariser,
    StepCountRegulariser as StepCountRegulariser,
    StiffnessRegulariser as StiffnessRegulariser,
    TaylorRegulariser as TaylorRegulariser,
    total_derivatives as total_derivatives,
)
from ._solver import (
    STABILITY_SIZE as STABILITY_SIZE,
    HeuristicsSolver as HeuristicsSolver,
    StepCountController as StepCountController,
    evaluations_per_step as evaluations_per_step,
    safe_rms as safe_rms,
)
