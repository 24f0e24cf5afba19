"""Microkinetic models: mechanisms from text, mass-action ODEs, forward solves and
inverse problems with uncertainty (KINN surrogate, direct ODE fit, ES-MDA).

Gusmão, Retnanto, da Cunha & Medford, "Kinetics-informed neural networks" (2022).
"""

from ._data import Estimate as Estimate, Observations as Observations
from ._estimators import (
    ESMDA as ESMDA,
    AbstractEstimator as AbstractEstimator,
    DirectFit as DirectFit,
    cramer_rao as cramer_rao,
    estimate as estimate,
    predict as predict,
)
from ._kinn import (
    KINN as KINN,
    KINNSurrogate as KINNSurrogate,
    mechanism_misfit as mechanism_misfit,
    simplex as simplex,
)
from ._mechanism import (
    GROUPS as GROUPS,
    Mechanism as Mechanism,
    MechanismError as MechanismError,
    SpeciesKind as SpeciesKind,
    Step as Step,
)
from ._simulate import (
    Simulator as Simulator,
    default_controller as default_controller,
    default_solver as default_solver,
    mass_action as mass_action,
    rates as rates,
    reference_solve as reference_solve,
    rhs as rhs,
    simulate as simulate,
)
