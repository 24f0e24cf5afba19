"""`sciml kinetics simulate|fit` with small files."""

import csv
import json

import numpy as np
import pytest

import sciml.kinetics as kin
from sciml.cli.kinetics import main


MECH = "A + * <=> A*   ; ka, kd\nA* -> B + *   ; kr\n"
RATES = {"ka": 3.0, "kd": 1.0, "kr": 2.0}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "M.txt").write_text(MECH)
    (tmp_path / "R.json").write_text(json.dumps(RATES))
    (tmp_path / "I.csv").write_text(
        "experiment,A,B,A*,*\nrun1,1.0,0.0,0.0,1.0\nrun2,0.5,0.2,0.3,0.7\n"
    )
    return tmp_path


def _run(*argv):
    return main([str(a) for a in argv], prog="sciml kinetics")


def test_simulate_matches_scipy(files):
    (files / "S.csv").write_text("an earlier result\n")  # replaced: --force below
    rc = _run(
        "simulate",
        "--mechanism",
        files / "M.txt",
        "--rates",
        files / "R.json",
        "--initial",
        files / "I.csv",
        "--t-end",
        2.0,
        "--points",
        21,
        "--out",
        files / "S.csv",
        "--force",
    )
    assert rc == 0
    with open(files / "S.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 42
    m = kin.Mechanism.from_text(MECH)
    log_k = np.log([RATES[n] for n in m.constants])
    x0 = np.array([0.5, 0.2, 0.3, 0.7])  # run2 in the mechanism's species order A, B, A*, *
    ref = kin.reference_solve(m, log_k, x0, np.linspace(0, 2, 21))
    got = np.array([[float(r[s]) for s in m.species] for r in rows if r["experiment"] == "run2"])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-7)


def test_files_saved_with_a_byte_order_mark(files):
    # Excel's "CSV UTF-8" and some editors start files with a UTF-8 byte-order mark.
    args = ("simulate", "--mechanism", files / "M.txt", "--rates", files / "R.json",
            "--initial", files / "I.csv", "--t-end", 1.0, "--points", 5)
    assert _run(*args, "--out", files / "plain.csv") == 0
    for name in ("M.txt", "R.json", "I.csv"):
        path = files / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert _run(*args, "--out", files / "bom.csv") == 0
    assert (files / "bom.csv").read_text() == (files / "plain.csv").read_text()


def _fit_args(files, *options):
    """`sciml kinetics fit` on the fixture's files, output to `files / "out"`."""
    return (
        "fit",
        *("--mechanism", files / "M.txt", "--data", files / "D.csv"),
        *("--initial", files / "I.csv", *options, "--out", files / "out"),
    )


def test_fit_default_recovers_constants_from_data_with_negative_readings(files, capsys):
    _run(
        "simulate",
        "--mechanism",
        files / "M.txt",
        "--rates",
        files / "R.json",
        "--initial",
        files / "I.csv",
        "--t-end",
        2.0,
        "--points",
        21,
        "--out",
        files / "S.csv",
    )
    # Observe gas only, with a blank (unobserved) cell, and one reading of B (zero at
    # t = 0 in run1) below zero, as sigma = 0.01 noise gives near zero.
    with open(files / "S.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["t"] == "0.1" and float(rows[1]["B"]) < 0.03
    rows[1]["B"] = "-0.0166"
    with open(files / "D.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "t", "A", "B"])
        for i, r in enumerate(rows):
            w.writerow([r["experiment"], r["t"], r["A"], "" if i == 5 else r["B"]])
    out = files / "out"
    out.mkdir()
    (out / "estimates.json").write_text("{}")  # an earlier result, replaced by --force
    rc = _run(*_fit_args(files, "--force"))  # the default method
    assert rc == 0
    est = json.loads((out / "estimates.json").read_text())
    assert set(est) == set(RATES)
    for name, k in RATES.items():
        # The one reading 0.039 below the truth moves ln k by about 0.01 (kd).
        err = abs(np.log(est[name]["value"]) - np.log(k))
        assert err < 3e-2 and err < 3 * est[name]["log_std"]
    assert (out / "parity.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "ka" in report
    assert "- method: direct, least squares of the ODE solution" in report
    assert "(the default, as the measurements favour it" in report
    assert "83 observed values, 1 of them negative (down to -0.0166" in report
    assert "least squares from 4 first guesses" in report
    assert "method: direct" in capsys.readouterr().out
    # A second run does not overwrite the result without --force.
    assert _run(*_fit_args(files)) == 2
    assert "holds a previous result" in capsys.readouterr().err


@pytest.mark.parametrize(
    "which, content, message",
    [
        ("I.csv", "experiment,A,B,A*\nrun1,1,0,0\n", "missing column(s) ['*']"),
        ("I.csv", "experiment,A,B,A*,*,Z\nrun1,1,0,0,1,0\n", "not species of the mechanism"),
        (
            "I.csv",
            "experiment,A,B,A*,*\nrun1,1,0,0.2,0.9\n",
            "row 1 (line 2): the initial state breaks the site balance",
        ),
        (
            "I.csv",
            "experiment,A,B,A*,*\nrun1,-1,0,0,1\n",
            "row 1 (line 2), column 'A': negative concentration",
        ),
        (
            "I.csv",
            "experiment,A,B,A*,*\nrun1,1,0,0,1\nrun2,x,0,0,1\n",
            "row 2 (line 3), column 'A': 'x' is not a number",
        ),
        ("D.csv", "experiment,A\nrun1,0.5\n", "missing column 't'"),
        (
            "D.csv",
            "experiment,t,A\nrun1,0.1,0.5\nrun1,-0.2,0.4\n",
            "row 2 (line 3), column 't': negative time",
        ),
        ("D.csv", "experiment,t,A,Q\nrun1,0.1,0.5,1\n", "not species of the mechanism"),
        (
            "D.csv",
            "experiment,t,A\nrun9,0.1,0.5\n",
            "row 1 (line 2), column 'experiment': experiment 'run9'",
        ),
        ("M.txt", "A + * <=> A*\nA* -> B\n", "line 2: the step does not conserve surface sites"),
        ("I.csv", "experiment;A;B;A*;*\nrun1;1;0;0;1\n", "separated by semicolons"),
        # Blank lines are skipped but still counted as lines of the file.
        (
            "I.csv",
            "experiment,A,B,A*,*\n\nrun1,1,0,0,1\n\nrun2,1,abc,0,1\n",
            "row 2 (line 5), column 'B': 'abc' is not a number",
        ),
        ("I.csv", "# states\nexperiment,A,B,A*,*\nrun1,1,0,0,1\n", "line 1: the first row"),
        # float() reads Python's digit separators; a CSV cell '1_0' is not 10.
        (
            "D.csv",
            "experiment,t,A\nrun1,1_0,0.5\n",
            "row 1 (line 2), column 't': '1_0' is not a number",
        ),
    ],
)
def test_fit_bad_files(files, capsys, which, content, message):
    (files / "D.csv").write_text("experiment,t,A\nrun1,0.1,0.5\n")
    (files / which).write_text(content)
    rc = _run(*_fit_args(files))
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err
    assert which in err
    assert not (files / "out").exists()


def test_simulate_bad_rates(files, capsys):
    (files / "R.json").write_text(json.dumps({"ka": 3.0, "kd": -1.0, "kr": 2.0}))
    rc = _run(
        "simulate",
        "--mechanism",
        files / "M.txt",
        "--rates",
        files / "R.json",
        "--initial",
        files / "I.csv",
        "--t-end",
        1.0,
        "--out",
        files / "S.csv",
    )
    assert rc == 2
    assert "R.json: constant 'kd' must be a positive finite number" in capsys.readouterr().err
    (files / "R.json").write_text(json.dumps({"ka": 3.0, "kr": 2.0, "kx": 1.0}))
    assert (
        _run(
            "simulate",
            "--mechanism",
            files / "M.txt",
            "--rates",
            files / "R.json",
            "--initial",
            files / "I.csv",
            "--t-end",
            1.0,
            "--out",
            files / "S.csv",
        )
        == 2
    )
    assert "unknown constant(s) ['kx']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        _run(
            "simulate",
            "--mechanism",
            files / "M.txt",
            "--rates",
            files / "R.json",
            "--initial",
            files / "I.csv",
            "--t-end",
            -1,
            "--out",
            files / "S.csv",
        )
    assert info.value.code == 2


def test_fit_polish_needs_kinn(files, capsys):
    (files / "D.csv").write_text("experiment,t,A\nrun1,0.1,0.5\n")
    rc = _run(*_fit_args(files, "--method", "esmda", "--polish"))
    assert rc == 2
    assert "--polish always refines a KINN surrogate fit" in capsys.readouterr().err
    assert not (files / "out").exists()


def _simulate_args(files, out):
    return ("simulate", "--mechanism", files / "M.txt", "--rates", files / "R.json",
            "--initial", files / "I.csv", "--t-end", 1.0, "--out", out)


def test_simulate_failed_solve_and_bad_out(files, capsys):
    # A solve that cannot finish is named, not a JAX traceback; an --out that cannot be
    # written is refused before any solve.
    (files / "R.json").write_text(json.dumps({"ka": 1e300, "kd": 1.0, "kr": 2.0}))
    assert _run(*_simulate_args(files, files / "S.csv")) == 2
    err = capsys.readouterr().err
    assert "the solve of experiment(s) ['run1', 'run2'] failed" in err and "R.json" in err
    assert not (files / "S.csv").exists()
    (files / "R.json").write_text(json.dumps(RATES))
    assert _run(*_simulate_args(files, files)) == 2
    assert "is a directory" in capsys.readouterr().err
    (files / "D.csv").write_text("experiment,t,A\nrun1,0.1,0.5\n")
    (files / "taken").write_text("")
    args = list(_fit_args(files))
    args[args.index("--out") + 1] = files / "taken"
    assert _run(*args) == 2
    assert "--out" in capsys.readouterr().err
