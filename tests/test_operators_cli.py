"""`sciml operator train` on small generated DeepXDE-layout files."""

import json

import jax
import numpy as np
import pytest

import sciml.cli
import sciml.data as sd
from sciml.cli.operator import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("opdata")
    space = sd.GRF(0.2, grid=200)
    train = sd.antiderivative(space, num=40, sensors=20, key=jax.random.key(1))
    test = sd.antiderivative(space, num=10, sensors=20, key=jax.random.key(2))
    sd.save_npz(d / "train.npz", train)
    sd.save_npz(d / "test.npz", test)
    # Unaligned files in DeepXDE's split-key style.
    sd.save_npz(d / "train_u.npz", train.sample_points(2, key=jax.random.key(3)), suffix="train")
    sd.save_npz(d / "test_u.npz", test.sample_points(2, key=jax.random.key(4)), suffix="test")
    fine = sd.antiderivative(space, num=10, sensors=39, key=jax.random.key(2))
    sd.save_npz(d / "test_fine.npz", fine)
    return d


def test_deeponet_aligned(files, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--train", str(files / "train.npz"), "--test", str(files / "test.npz"),
                 "--steps", "60", "--quiet", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for k in ("test_mse", "test_mean_rel_l2", "wall_time_s", "steps_per_s"):
        assert np.isfinite(metrics[k])
    assert metrics["batch_size"] == 40  # a DeepONet trains on full batches by default
    pred = np.load(out / "predictions.npz")["y_pred"]
    y = sd.load_npz(files / "test.npz").y
    assert pred.shape == y.shape == (10, 20)
    np.testing.assert_allclose(metrics["test_mse"], np.mean((pred - y) ** 2), rtol=1e-4)
    assert (out / "predictions.png").is_file() and (out / "loss.png").is_file()
    printed = capsys.readouterr().out
    assert "test MSE" in printed and "steps/s" in printed


def test_deeponet_unaligned_split_keys(files, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--train", str(files / "train_u.npz"), "--test",
                 str(files / "test_u.npz"), "--steps", "30", "--batch-size", "16", "--quiet",
                 "--out", str(out)])
    assert code == 0
    assert np.load(out / "predictions.npz")["y_pred"].shape == (20, 1)
    assert (out / "predictions.png").is_file()


def test_deeponet_with_fewer_sensors_than_points(tmp_path):
    # DeepXDE's aligned layout does not tie the m sensors to the n output points; the
    # run used to train, then fail drawing the inputs against the output locations.
    rng = np.random.default_rng(0)
    branch, trunk = rng.normal(size=(12, 7)), np.linspace(0, 1, 9)[:, None]
    y = branch.mean(axis=1, keepdims=True) * trunk[:, 0]
    sd.save_npz(tmp_path / "d.npz", sd.TripleCartesianProd(branch, trunk, y))
    out = tmp_path / "run"
    code = main(["train", "--train", str(tmp_path / "d.npz"), "--test", str(tmp_path / "d.npz"),
                 "--steps", "5", "--quiet", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    pred = np.load(out / "predictions.npz")["y_pred"]
    np.testing.assert_allclose(metrics["test_mse"], np.mean((pred - y) ** 2), rtol=1e-4)
    assert (out / "predictions.png").is_file()


def test_lssl_aligned_and_other_rate(files, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--model", "lssl", "--train", str(files / "train.npz"), "--test",
                 str(files / "test_fine.npz"), "--steps", "30", "--width", "4", "--depth", "1",
                 "--quiet", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dt_scale"] == pytest.approx(0.5)
    assert np.load(out / "predictions.npz")["y_pred"].shape == (10, 39)
    assert metrics["batch_size"] == 40 and metrics["steps_per_s"] > 0


def test_lssl_trains_on_minibatches_by_default(tmp_path):
    space = sd.GRF(0.2, grid=200)
    sd.save_npz(tmp_path / "big.npz", sd.antiderivative(space, num=130, sensors=8,
                                                        key=jax.random.key(5)))
    out = tmp_path / "run"
    code = main(["train", "--model", "lssl", "--train", str(tmp_path / "big.npz"), "--test",
                 str(tmp_path / "big.npz"), "--steps", "3", "--width", "2", "--depth", "1",
                 "--quiet", "--out", str(out)])
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["batch_size"] == 100


def test_lssl_refuses_unaligned(files, tmp_path, capsys):
    code = main(["train", "--model", "lssl", "--train", str(files / "train_u.npz"), "--test",
                 str(files / "test_u.npz"), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "aligned" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bad_options(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--train", str(files / "train.npz"), "--test", str(files / "test.npz"),
              "--model", "fourier", "--out", str(tmp_path)])
    assert e.value.code == 2
    code = main(["train", "--train", str(tmp_path / "nope.npz"), "--test",
                 str(files / "test.npz"), "--out", str(tmp_path)])
    assert code == 2 and "no such file" in capsys.readouterr().err
    code = main(["train", "--train", str(files / "train.npz"), "--test",
                 str(files / "test_fine.npz"), "--out", str(tmp_path)])
    assert code == 2 and "sensors" in capsys.readouterr().err
    # An infinite learning rate used to be accepted and to diverge at the first step.
    with pytest.raises(SystemExit) as e:
        main(["train", "--train", str(files / "train.npz"), "--test", str(files / "test.npz"),
              "--lr", "inf", "--out", str(tmp_path)])
    assert e.value.code == 2 and "positive finite number" in capsys.readouterr().err


def test_dispatched_by_sciml_command(files, tmp_path):
    code = sciml.cli.main(["operator", "train", "--train", str(files / "train.npz"), "--test",
                           str(files / "test.npz"), "--steps", "5", "--quiet", "--out",
                           str(tmp_path / "r")])
    assert code == 0
