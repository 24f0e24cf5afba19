"""Operator data: random input functions, reference solvers, DeepXDE npz layouts,
fields on one grid and PDEBench's HDF5 files."""

from ._batches import FunctionBatches as FunctionBatches
from ._burgers import burgers_cole_hopf as burgers_cole_hopf, burgers_reference as burgers_reference
from ._fields import Fields as Fields
from ._generators import (
    RandomPoints as RandomPoints,
    antiderivative as antiderivative,
    diffusion_reaction as diffusion_reaction,
    nonlinear_ode as nonlinear_ode,
    pendulum as pendulum,
    solve_diffusion_reaction as solve_diffusion_reaction,
    solve_ode as solve_ode,
)
from ._hdf5 import load_pdebench as load_pdebench
from ._layouts import (
    Triple as Triple,
    TripleCartesianProd as TripleCartesianProd,
    load_npz as load_npz,
    make_layout as make_layout,
    save_npz as save_npz,
)
from ._pde import (
    burgers_periodic as burgers_periodic,
    darcy_flow as darcy_flow,
    neumann_grf as neumann_grf,
    periodic_grf as periodic_grf,
    solve_burgers_periodic as solve_burgers_periodic,
    solve_darcy as solve_darcy,
)
from ._spaces import (
    GRF as GRF,
    AbstractFunctionSpace as AbstractFunctionSpace,
    Chebyshev as Chebyshev,
    cubic_antiderivative as cubic_antiderivative,
    cubic_interpolate as cubic_interpolate,
)
