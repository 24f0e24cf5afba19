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


# XLA compilations counted through JAX's own monitoring events (a public hook), so tests
# of program reuse read no private cache.
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles = [0]


def _on_event(name, *args, **kwargs):
    if name == _COMPILE_EVENT:
        _compiles[0] += 1


jax.monitoring.register_event_duration_secs_listener(_on_event)


class CompileCounter:
    """`with count_compiles() as c: ...` then `c.count`: XLA compilations in the block."""

    def __enter__(self):
        self._start = _compiles[0]
        self.count = None
        return self

    def __exit__(self, *exc):
        self.count = _compiles[0] - self._start
        return False


@pytest.fixture
def count_compiles():
    return CompileCounter
