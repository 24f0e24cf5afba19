"""sciml.data.load_pdebench on small files written in PDEBench's HDF5 layouts, and
`sciml operator train` on them."""

import json
import sys

import numpy as np
import pytest

import sciml.data as sd


def _write(path, **datasets):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
    return path


def _series_1d(rng, n=6, nt=5, nx=16):
    """PDEBench's 1-D layout: tensor (N, nt, nx), cell-centred x, nt + 1 times."""
    return dict(tensor=rng.standard_normal((n, nt, nx)).astype(np.float32),
                **{"x-coordinate": (np.arange(nx) + 0.5) / nx,
                   "t-coordinate": np.linspace(0, 2, nt + 1)})


def _darcy(rng, n=4, s=9):
    x = np.linspace(0.5 / s, 1 - 0.5 / s, s)
    return dict(nu=rng.uniform(0.1, 1, (n, s, s)), tensor=rng.standard_normal((n, 1, s, s)),
                **{"x-coordinate": x, "y-coordinate": x})


def test_reads_the_1d_time_series_layout(tmp_path):
    rng = np.random.default_rng(0)
    data = _series_1d(rng)
    path = _write(tmp_path / "burgers.hdf5", **data)
    fields = sd.load_pdebench(path)
    t = data["tensor"].astype(np.float64)
    np.testing.assert_array_equal(fields.a, t[:, 0])
    np.testing.assert_array_equal(fields.u, t[:, -1])
    np.testing.assert_array_equal(fields.coords[0], data["x-coordinate"])
    sub = sd.load_pdebench(path, input_time=1, output_time=3, num=4, stride=2)
    np.testing.assert_array_equal(sub.a, t[:4, 1, ::2])
    np.testing.assert_array_equal(sub.u, t[:4, 3, ::2])
    np.testing.assert_array_equal(sub.coords[0], data["x-coordinate"][::2])
    # A DeepONet reads the same data as the aligned cartesian layout.
    cart = fields.to_cartesian()
    np.testing.assert_array_equal(cart.trunk[:, 0], data["x-coordinate"])
    np.testing.assert_array_equal(cart.y, t[:, -1])


def test_reads_the_2d_darcy_and_time_series_layouts(tmp_path):
    rng = np.random.default_rng(1)
    data = _darcy(rng)
    fields = sd.load_pdebench(_write(tmp_path / "darcy.hdf5", **data))
    np.testing.assert_array_equal(fields.a, data["nu"])
    np.testing.assert_array_equal(fields.u, data["tensor"][:, 0])
    assert fields.grid == (9, 9) and len(fields.coords) == 2
    series = rng.standard_normal((3, 4, 8, 6))
    x, y = (np.arange(8) + 0.5) / 8, (np.arange(6) + 0.5) / 6
    fields = sd.load_pdebench(_write(tmp_path / "series2d.h5", tensor=series,
                                     **{"x-coordinate": x, "y-coordinate": y}),
                              input_time=1)
    np.testing.assert_array_equal(fields.a, series[:, 1])
    np.testing.assert_array_equal(fields.u, series[:, 3])
    np.testing.assert_array_equal(fields.coords[1], y)


def _bad_files(rng):
    one = _series_1d(rng)
    nan = dict(one, tensor=one["tensor"].copy())
    nan["tensor"][2, -1, 5] = np.nan
    darcy = _darcy(rng)
    return {
        "missing": ({"x-coordinate": one["x-coordinate"]}, r"no dataset 'tensor'; the file holds"),
        "rank": (dict(one, tensor=one["tensor"][:, 0]), r"'tensor' must have 3 or 4 axes, got "
                 r"shape \(6, 16\)"),
        "nan": (nan, r"'tensor' \(snapshot 4, the output\) has 1 NaN/inf value\(s\) .* sample 2 "
                r"at grid index \(5,\)"),
        "xgrid": (dict(one, **{"x-coordinate": one["x-coordinate"][:-1]}),
                  r"'x-coordinate' has 15 entries but the fields have 16 points"),
        "tgrid": (dict(one, **{"t-coordinate": np.arange(9.0)}),
                  r"'t-coordinate' has 9 entries but 'tensor' has 5 snapshots"),
        "noncentred": (dict(one, **{"x-coordinate": np.sort(rng.uniform(size=16))}),
                       r"increasing and equispaced"),
        "darcy": (dict(darcy, nu=darcy["nu"][:, :8]), r"'nu' \(4, 8, 9\) and 'tensor' "
                  r"\(4, 1, 9, 9\)"),
    }


@pytest.mark.parametrize("name", ["missing", "rank", "nan", "xgrid", "tgrid", "noncentred",
                                  "darcy"])
def test_bad_files_get_a_clear_error(tmp_path, name):
    data, message = _bad_files(np.random.default_rng(2))[name]
    path = _write(tmp_path / f"{name}.hdf5", **data)
    with pytest.raises(ValueError, match=message):
        sd.load_pdebench(path)


def test_bad_arguments(tmp_path):
    path = _write(tmp_path / "one.hdf5", **_series_1d(np.random.default_rng(3)))
    with pytest.raises(ValueError, match=r"`output_time` must be an int in \[-5, 4\]"):
        sd.load_pdebench(path, output_time=5)
    with pytest.raises(ValueError, match="both snapshot 4"):
        sd.load_pdebench(path, input_time=-1)
    with pytest.raises(ValueError, match="cannot read .* as an HDF5 file"):
        sd.load_pdebench(_text(tmp_path))


def _text(tmp_path):
    p = tmp_path / "not.h5"
    p.write_text("x,y\n1,2\n")
    return p


def test_missing_h5py_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'sciml\[hdf5\]'"):
        sd.load_pdebench(tmp_path / "any.hdf5")


def _cli(*args):
    from sciml.cli.operator import main

    return main(["train", *map(str, args)])


def test_operator_train_reads_pdebench_files(tmp_path):
    """An FNO on a 1-D file, trained at 16 points and tested at 32 (same law)."""
    rng = np.random.default_rng(4)
    for name, n, nx in (("train", 12, 16), ("test", 4, 32)):
        x = (np.arange(nx) + 0.5) / nx
        k = rng.integers(1, 3, (n, 1))
        a = np.sin(2 * np.pi * k * x)
        tensor = np.stack([a, a**2, 0.5 * a], axis=1)
        _write(tmp_path / f"{name}.hdf5", tensor=tensor, **{"x-coordinate": x})
    out = tmp_path / "run"
    assert _cli("--train", tmp_path / "train.hdf5", "--test", tmp_path / "test.hdf5",
                "--model", "fno", "--steps", "3", "--width", "4", "--depth", "1",
                "--modes", "4", "--quiet", "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["layout"] == "PDEBench HDF5"
    assert metrics["train_grid"] == [16] and metrics["test_grid"] == [32]
    assert np.load(out / "predictions.npz")["y_pred"].shape == (4, 32)


def test_operator_train_refuses_a_bad_pdebench_file(tmp_path, capsys):
    data, _ = _bad_files(np.random.default_rng(5))["nan"]
    bad = _write(tmp_path / "bad.hdf5", **data)
    good = _write(tmp_path / "good.hdf5", **_series_1d(np.random.default_rng(6)))
    for model in ("fno", "deeponet"):
        out = tmp_path / f"run_{model}"
        assert _cli("--train", good, "--test", bad, "--model", model, "--steps", "3",
                    "--quiet", "--out", out) == 2
        err = capsys.readouterr().err
        assert err.startswith("sciml operator: error: --test: sciml.data.load_pdebench"), err
        assert "NaN/inf" in err and not out.exists()
