"""The training loop: `fit`, its stages, updates, data sources, history, checkpoints,
devices and progress meters.

The loop imports no model family: every family's model is a pytree, its problem a
loss, and how a step moves the parameters an `AbstractUpdate` (optax optimisers are
wrapped as `GradientUpdate`s; the ensemble methods and your own updates implement the
protocol). See `AbstractUpdate` for the protocol and `_updates.py` for the residual
convention.
"""

from ._data import (
    AbstractData as AbstractData,
    FixedData as FixedData,
    Minibatches as Minibatches,
    NoData as NoData,
    Resampler as Resampler,
)
from ._fit import counting_steps as counting_steps, fit as fit
from ._gauss_newton import (
    AbstractGaussNewtonSolver as AbstractGaussNewtonSolver,
    AbstractSearch as AbstractSearch,
    AdaptiveDamping as AdaptiveDamping,
    CGSolve as CGSolve,
    DenseSolve as DenseSolve,
    GaussNewton as GaussNewton,
    GridLineSearch as GridLineSearch,
    LevenbergMarquardt as LevenbergMarquardt,
    Linearisation as Linearisation,
    WoodburySolve as WoodburySolve,
)
from ._labels import param_labels as param_labels
from ._progress import (
    AbstractProgressMeter as AbstractProgressMeter,
    NoProgressMeter as NoProgressMeter,
    TqdmProgressMeter as TqdmProgressMeter,
)
from ._quasi_newton import (
    BFGS as BFGS,
    SSBFGS as SSBFGS,
    AbstractSelfScaledBroyden as AbstractSelfScaledBroyden,
    SSBroyden1 as SSBroyden1,
    SSBroyden2 as SSBroyden2,
)
from ._serialise import load as load, save as save
from ._types import (
    DivergenceError as DivergenceError,
    FitInfo as FitInfo,
    FitResult as FitResult,
    Stage as Stage,
)
from ._updates import (
    AbstractUpdate as AbstractUpdate,
    GradientUpdate as GradientUpdate,
    Objective as Objective,
)
