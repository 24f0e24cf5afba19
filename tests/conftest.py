import os

import jax
import pytest


# Float64 and strict rank promotion for the whole suite (STYLE.md); tests that
# exercise float32 ask for it explicitly. Dtype promotion stays "standard": optax's
# own Adam raises a Python float to an int32 step count, which "strict" rejects.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def getkey():
    """Returns a function that hands out fresh, deterministic PRNG keys."""
    state = {"key": jax.random.key(5678)}

    def _getkey():
        state["key"], sub = jax.random.split(state["key"])
        return sub

    return _getkey
