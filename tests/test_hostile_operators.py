"""`sciml operator train` against hostile and broken inputs: every case is refused with
a message naming the file or option, before any training, and leaves nothing behind."""

import os
import pathlib
import pickle

import numpy as np
import pytest

from sciml.cli.operator import main


class _RunsCode:
    """Unpickling this creates the directory `target` (any code could run instead)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def _aligned(path, n=4, m=6):
    # DeepXDE's split keys: a layout every version of the command reads.
    x = np.linspace(0, 1, m)
    branch = np.cos(np.arange(n)[:, None] * x)
    np.savez(path, X_d0=branch, X_d1=x[:, None], y_d=np.cumsum(branch, axis=1) / m)
    return path


def _train(capsys, *args):
    """Runs the command; returns (exit status, stderr)."""
    try:
        code = main(["train", *map(str, args)])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def good(tmp_path):
    return _aligned(tmp_path / "good.npz")


def test_object_array_that_runs_code_is_refused(tmp_path, good, capsys):
    marker = tmp_path / "code_ran"
    x = np.empty(2, dtype=object)
    x[0], x[1] = _RunsCode(str(marker)), np.ones((6, 1))
    np.savez(tmp_path / "evil.npz", X=x, y=np.ones((4, 6)))
    out = tmp_path / "run"
    code, err = _train(capsys, "--train", tmp_path / "evil.npz", "--test", good, "--out", out)
    assert code == 2
    assert "evil.npz" in err and "key 'X' is an object array" in err and "--allow-pickle" in err
    assert not marker.exists() and not out.exists()


def test_allow_pickle_reads_object_arrays_and_warns(tmp_path, capsys):
    # DeepXDE's aligned layout with an explicit opt-in; the run then stops at the next
    # check (test file with other sensors), so no training happens here.
    x = np.empty(2, dtype=object)
    x[0], x[1] = np.ones((4, 6)), np.linspace(0, 1, 6)[:, None]
    np.savez(tmp_path / "dx.npz", X=x, y=np.ones((4, 6)))
    other = _aligned(tmp_path / "other.npz", m=5)
    out = tmp_path / "run"
    code, err = _train(capsys, "--train", tmp_path / "dx.npz", "--test", other, "--out", out,
                       "--allow-pickle")
    assert code == 2
    assert "warning: --allow-pickle" in err and "runs any code" in err
    assert "6 vs 5 sensors" in err and not out.exists()


@pytest.mark.parametrize(
    "arrays, key, what",
    [
        ({"X_branch": np.ones((0, 6)), "X_trunk": np.ones((6, 1)), "y": np.ones((0, 6))},
         "X_branch", "no input functions"),
        ({"X_e0": np.ones((4, 0)), "X_e1": np.ones((6, 1)), "y_e": np.ones((4, 6))},
         "X_e0", "no sensors"),
        ({"X_train0": np.ones((4, 6)), "X_train1": np.ones((0, 1)), "y_train": np.ones((4, 0))},
         "X_train1", "no output points"),
    ],
)
def test_empty_data_refused_before_any_output(tmp_path, good, capsys, arrays, key, what):
    np.savez(tmp_path / "empty.npz", **arrays)
    out = tmp_path / "run"
    for role in ("--train", "--test"):
        files = {"--train": good, "--test": good, role: tmp_path / "empty.npz"}
        code, err = _train(capsys, *[a for kv in files.items() for a in kv], "--out", out)
        assert code == 2
        assert role in err and "empty.npz" in err and f"key '{key}'" in err and what in err
        assert not out.exists()


def test_files_that_are_not_operator_data(tmp_path, good, capsys):
    evil = tmp_path / "evil.npz"
    evil.write_bytes(pickle.dumps(_RunsCode(str(tmp_path / "code_ran"))))
    (tmp_path / "data.csv").write_text("x,y\n1,2\n")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    np.savez(tmp_path / "nan.npz", X_d0=np.full((2, 3), np.nan), X_d1=np.ones((3, 1)),
             y_d=np.ones((2, 3)))
    np.savez(tmp_path / "text.npz", X_d0=np.array([["a", "b"]]), X_d1=np.ones((2, 1)),
             y_d=np.ones((1, 2)))
    np.savez(tmp_path / "keys.npz", weights=np.ones(3))
    cases = {evil: "not an npz", tmp_path / "data.csv": "not an npz",
             truncated: "cannot read", tmp_path / "nan.npz": "NaN",
             tmp_path / "text.npz": "real numbers", tmp_path / "keys.npz": "X_branch"}
    for path, message in cases.items():
        code, err = _train(capsys, "--train", path, "--test", good, "--out", tmp_path / "run")
        assert code == 2 and path.name in err and message in err, (path, err)
    assert not (tmp_path / "code_ran").exists() and not (tmp_path / "run").exists()


def test_out_that_cannot_take_results(tmp_path, good, capsys):
    (tmp_path / "a_file").write_text("x")
    code, err = _train(capsys, "--train", good, "--test", good, "--out",
                       tmp_path / "a_file" / "run")
    assert code == 2 and "cannot write results there" in err
    code, err = _train(capsys, "--train", good, "--test", good, "--out", tmp_path / "a_file")
    assert code == 2 and "is a file" in err
    assert (tmp_path / "a_file").read_text() == "x"
    if os.path.isdir("/proc/self"):  # unwritable even for root
        code, err = _train(capsys, "--train", good, "--test", good, "--out", "/proc/sciml_run")
        assert code == 2 and "/proc/sciml_run: cannot write results there" in err


def test_out_holding_inputs_or_earlier_results(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    train = _aligned(data / "train.npz")
    code, err = _train(capsys, "--train", train, "--test", train, "--out", data)
    assert code == 2 and "holds the --train file" in err
    code, err = _train(capsys, "--train", train, "--test", train, "--out", tmp_path)
    assert code == 2 and "holds the --train file" in err
    # An earlier result is kept unless --force; with --force the run goes on to the
    # next check (a test file with other sensors) and still writes nothing.
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "metrics.json").write_text('{"test_mse": 1}')
    other = _aligned(tmp_path / "other.npz", m=5)
    code, err = _train(capsys, "--train", train, "--test", other, "--out", out)
    assert code == 2 and "metrics.json already exist" in err and "--force" in err
    code, err = _train(capsys, "--train", train, "--test", other, "--out", out, "--force")
    assert code == 2 and "sensors" in err
    assert (out / "metrics.json").read_text() == '{"test_mse": 1}'
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]


def test_steps_beyond_the_step_counter(tmp_path, good, capsys):
    out = tmp_path / "run"
    code, err = _train(capsys, "--train", good, "--test", good, "--out", out,
                       "--steps", 2**31)
    assert code == 2 and "int32" in err and "2147483648" in err
    assert not out.exists()


def test_refusal_after_loading_leaves_no_directory(tmp_path, good, capsys):
    # Nested --out: none of its missing parents is left behind by a refused run.
    unaligned = tmp_path / "u.npz"
    np.savez(unaligned, X_train0=np.ones((3, 6)), X_train1=np.ones((3, 1)),
             y_train=np.ones((3, 1)))
    out = tmp_path / "a" / "b" / "run"
    code, err = _train(capsys, "--model", "lssl", "--train", unaligned, "--test", good,
                       "--out", out)
    assert code == 2 and "aligned" in err
    assert not pathlib.Path(tmp_path / "a").exists()
