"""Operator layers: DeepONet (and physics-informed), FNO, the Linear State-Space Layer
(LSSL) and HiPPO matrices."""

from ._deeponet import FNN as FNN, DeepONet as DeepONet
from ._discretise import GBT as GBT, ZOH as ZOH, AbstractDiscretisation as AbstractDiscretisation
from ._fno import FNO as FNO, SpectralConv as SpectralConv
from ._hippo import (
    AbstractHiPPO as AbstractHiPPO,
    LagT as LagT,
    LegS as LegS,
    LegT as LegT,
    hippo as hippo,
)
from ._lssl import (
    LSSL as LSSL,
    AbstractView as AbstractView,
    Convolutional as Convolutional,
    DeepLSSL as DeepLSSL,
    Recurrent as Recurrent,
    causal_convolution as causal_convolution,
    krylov as krylov,
)
from ._physics import (
    PhysicsBatches as PhysicsBatches,
    PhysicsData as PhysicsData,
    PhysicsInformedLoss as PhysicsInformedLoss,
    Points as Points,
    term_residuals as term_residuals,
    value_residual as value_residual,
)
from ._plot import plot_predictions as plot_predictions, plot_rates as plot_rates
from ._train import (
    as_arrays as as_arrays,
    check_aligned as check_aligned,
    evaluate as evaluate,
    metrics as metrics,
    mse_loss as mse_loss,
    predict as predict,
    sequence_apply as sequence_apply,
)
