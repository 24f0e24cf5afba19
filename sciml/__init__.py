"""sciml: scientific machine learning on JAX, trained by one loop.

Every model is an equinox pytree; `sciml.fit` trains all of them.
"""

import importlib as _importlib

from . import nn as nn, train as train
from .train import (
    BFGS as BFGS,
    SSBFGS as SSBFGS,
    AbstractData as AbstractData,
    AbstractUpdate as AbstractUpdate,
    DivergenceError as DivergenceError,
    FitInfo as FitInfo,
    FitResult as FitResult,
    GaussNewton as GaussNewton,
    LevenbergMarquardt as LevenbergMarquardt,
    Minibatches as Minibatches,
    SSBroyden1 as SSBroyden1,
    SSBroyden2 as SSBroyden2,
    Stage as Stage,
    fit as fit,
    load as load,
    param_labels as param_labels,
    save as save,
)


__version__ = "0.1.0"

# Family subpackages import on first use, so `import sciml` (and the `sciml` command)
# stays quick.
_SUBPACKAGES = (
    "data", "kinetics", "ode", "operators", "pinn", "plot", "symbolic", "ensemble", "koopman"
)


def __getattr__(name):
    if name in _SUBPACKAGES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'sciml' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES))
