"""Physics-informed neural networks: domains and samplers, derivative helpers, loss
terms and their balancing, and conditional eigen-PINNs for families of eigenproblems.
"""

from ._conditions import (
    AbstractBoundaryCondition as AbstractBoundaryCondition,
    AbstractCondition as AbstractCondition,
    DirichletBC as DirichletBC,
    InitialCondition as InitialCondition,
    NeumannBC as NeumannBC,
    PeriodicBC as PeriodicBC,
    RobinBC as RobinBC,
    normal_derivative as normal_derivative,
)
from ._derivatives import (
    curl as curl,
    derivative as derivative,
    derivatives_along as derivatives_along,
    directional_derivatives as directional_derivatives,
    divergence as divergence,
    field_derivatives as field_derivatives,
    gradient as gradient,
    hessian as hessian,
    laplacian as laplacian,
    navier_stokes_residual as navier_stokes_residual,
    second_derivative as second_derivative,
    value_and_gradient as value_and_gradient,
    value_grad_and_second as value_grad_and_second,
    vector_laplacian as vector_laplacian,
)
from ._domains import (
    AbstractCSG as AbstractCSG,
    AbstractDomain as AbstractDomain,
    Boundary as Boundary,
    Box as Box,
    Difference as Difference,
    Intersection as Intersection,
    Interval as Interval,
    SpaceTime as SpaceTime,
    Union as Union,
)
from ._eigen import (
    ConditionalEigenPINN as ConditionalEigenPINN,
    EigenproblemFamily as EigenproblemFamily,
    eigen_stages as eigen_stages,
)
from ._geometry import Estimate as Estimate
from ._hidden import (
    ClosedFormODE as ClosedFormODE,
    HiddenTerm as HiddenTerm,
    HiddenTermModel as HiddenTermModel,
    HiddenTermODE as HiddenTermODE,
    Identification as Identification,
    Surrogate as Surrogate,
)
from ._hidden_pde import (
    AbstractBoundary as AbstractBoundary,
    ClosedFormPDE as ClosedFormPDE,
    Derivatives as Derivatives,
    Dirichlet as Dirichlet,
    FieldSurrogate as FieldSurrogate,
    HiddenTermPDE as HiddenTermPDE,
    Neumann as Neumann,
    local_derivatives as local_derivatives,
    method_of_lines as method_of_lines,
)
from ._losses import (
    causal_loss as causal_loss,
    causal_weights as causal_weights,
    grad_norm_weights as grad_norm_weights,
    refine as refine,
    sample_by_residual as sample_by_residual,
    weighted_sum as weighted_sum,
)
from ._plots import grid_values as grid_values, plot_fields as plot_fields
from ._problems import (
    Constraint as Constraint,
    PDELoss as PDELoss,
    burgers_residual as burgers_residual,
)
from ._recipes import adam_then_lbfgs as adam_then_lbfgs, stage_summary as stage_summary
from ._samplers import (
    AbstractQuadrature as AbstractQuadrature,
    AbstractSampler as AbstractSampler,
    GaussLegendre as GaussLegendre,
    Halton as Halton,
    LatinHypercube as LatinHypercube,
    Trapezoid as Trapezoid,
    Uniform as Uniform,
    halton_points as halton_points,
)
from ._shapes import (
    Disk as Disk,
    Ellipse as Ellipse,
    Polygon as Polygon,
    Triangle as Triangle,
)
