"""Gradient-free ensemble methods: one ES-MDA / ensemble-Kalman kernel over pytrees.

The kernel (Emerick & Reynolds 2013; Chen et al. 2020/2022) serves both uses:

- `ESMDA` and `EnKF`, ensemble "optimisers" accepted by `sciml.fit` in place of an optax
  transformation: the model is an ensemble (`sample`), the loss returns one member's
  whitened residual vector, and training gets fit's progress, history, checkpoints and
  divergence guard;
- `esmda`, a standalone ES-MDA loop over a forward model, used by the kinetics
  estimator.
"""

from ._esmda import (
    EnsembleResult as EnsembleResult,
    esmda as esmda,
    esmda_update as esmda_update,
    inflation_factors as inflation_factors,
)
from ._methods import (
    ESMDA as ESMDA,
    AbstractEnsembleMethod as AbstractEnsembleMethod,
    EnKF as EnKF,
    EnsembleState as EnsembleState,
    Prediction as Prediction,
    member as member,
    predict as predict,
    sample as sample,
    size as size,
)
