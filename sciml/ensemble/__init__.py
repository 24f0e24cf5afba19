"""Gradient-free ensemble methods: the ES-MDA / ensemble-Kalman kernel over pytrees.

Emerick & Reynolds (2013); the ensemble is a pytree with a leading member axis and
forward models are vmapped. The kinetics ES-MDA estimator calls this kernel.
"""

from ._esmda import (
    EnsembleResult as EnsembleResult,
    esmda as esmda,
    esmda_update as esmda_update,
    inflation_factors as inflation_factors,
)
