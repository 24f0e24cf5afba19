"""Koopman analysis of training: dynamic mode decomposition (DMD) of weight snapshots.

Each `every` optimiser steps are one application of a map on weight space; the DMD of
a window of (projected) weight snapshots estimates its Koopman spectrum. Decaying
eigenvalues mean training is contracting; when the model predicts almost no further
motion, training has converged (Manojlović et al. 2020, "Applications of Koopman mode
analysis to neural networks"; Dogra & Redman 2020).
"""

from ._dmd import DMD as DMD, dmd as dmd
from ._monitor import KoopmanMonitor as KoopmanMonitor, SpectrumRecord as SpectrumRecord
from ._plot import plot_spectrum as plot_spectrum
