"""The geometry problems' full-size training: Adam, then the dense self-scaled Broyden
update (`sciml.SSBroyden2`) on a fixed batch, with a network its P x P matrix admits."""

import importlib.util
import pathlib

import equinox as eqx
import jax
import numpy as np
import pytest

import sciml
import sciml.cli
import sciml.pinn


PROBLEMS = pathlib.Path(__file__).resolve().parent.parent / "problems"
NAMES = ["poisson_lshape", "poisson2d_c", "kovasznay", "lid_cavity", "heat_holes"]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_problem_{name}", PROBLEMS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Captured(Exception):
    pass


def _full_size_fit_arguments(name, monkeypatch, tmp_path):
    """The model, loss and stages a full-size run hands to `sciml.fit` (caught before
    any training). Fixed batches are not drawn (seconds per problem): each stands for
    its loss's point count."""
    mod = _load(name)
    seen = {}

    def count_only(loss, key):
        return {"residual": np.zeros((loss.points, 0))}

    def fake_fit(model, loss, stages, **kwargs):
        seen.update(model=model, loss=loss, stages=stages)
        raise _Captured

    monkeypatch.setattr(sciml, "fit", fake_fit)
    monkeypatch.setattr(sciml.pinn.PDELoss, "fixed_batch", count_only)
    with pytest.raises(_Captured):
        mod.run(sciml.cli.RunOptions(mod.NAME, quick=False, out=tmp_path, progress=False))
    return seen


@pytest.mark.parametrize("name", NAMES)
def test_full_size_run_ends_with_ssbroyden2_on_a_fixed_batch(name, monkeypatch, tmp_path):
    seen = _full_size_fit_arguments(name, monkeypatch, tmp_path)
    adam, last = seen["stages"]
    assert isinstance(last.optimiser, sciml.SSBroyden2)
    # The dense update refuses a model above its max_parameters when the stage is
    # planned; this is the check fit makes there.
    params = eqx.filter(seen["model"], eqx.is_inexact_array)
    n = sum(x.size for x in jax.tree.leaves(params))
    assert n <= last.optimiser.max_parameters
    assert last.optimiser.fixed_objective(params)
    # One fixed batch (a line search needs one objective), larger than Adam's per-step
    # draw; the model in float64 (run's x64 context: SSBroyden2 warns in float32).
    assert last.data["residual"].shape[0] > seen["loss"].points
    assert all(x.dtype == np.float64 for x in jax.tree.leaves(params))
    assert adam.steps > 0 and last.steps > 0
