"""Reusable network blocks: MLPs, embeddings, input/output transforms for hard constraints.

Initialisers are `jax.nn.initializers` functions, re-exported here for convenience.
"""

from jax.nn.initializers import (
    glorot_normal as glorot_normal,
    glorot_uniform as glorot_uniform,
    he_normal as he_normal,
    he_uniform as he_uniform,
    lecun_normal as lecun_normal,
    normal as normal,
    zeros as zeros,
)

from ._layers import (
    MLP as MLP,
    Chain as Chain,
    FourierFeatures as FourierFeatures,
    Linear as Linear,
    ModifiedMLP as ModifiedMLP,
    OutputTransform as OutputTransform,
    PeriodicEmbedding as PeriodicEmbedding,
    RandomWeightFactorisation as RandomWeightFactorisation,
    Rescale as Rescale,
)
