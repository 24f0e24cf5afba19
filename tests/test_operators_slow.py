"""Real-size acceptance runs of the operator problems (issue 4, "Must show"): slow."""

import importlib.util
import pathlib

import pytest

import sciml.cli


ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(name, tmp_path):
    spec = importlib.util.spec_from_file_location(f"t_{name}", ROOT / "problems" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    options = sciml.cli.RunOptions(name=name, out=tmp_path, progress=False)
    return module.run(options)


@pytest.mark.slow
def test_deeponet_antiderivative_full(tmp_path):
    m = _run("deeponet_antiderivative", tmp_path)
    assert m["test_mse"] <= 5e-5


@pytest.mark.slow
def test_lssl_antiderivative_full(tmp_path):
    m = _run("lssl_antiderivative", tmp_path)
    assert m["rel_l2_m100"] <= 3e-2
    assert m["rel_l2_m200"] <= 5e-2 and m["rel_l2_m50"] <= 5e-2
    # Without rescaling dt the model computes another operator.
    assert m["rel_l2_m200_not_rescaled"] > 0.5
