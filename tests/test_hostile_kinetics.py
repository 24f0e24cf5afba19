"""Hostile and careless input files for `sciml kinetics simulate|fit`.

Every case is refused before any solve, with exit status 2 and a message naming the
file (or option), the place and the fix; no traceback, no output left behind, no input
overwritten. Runs in-process through `main(argv)`; no case compiles a solve.
"""

import json
import sys

import pytest

from sciml.cli.kinetics import main


MECH = "A + * <=> A*   ; ka, kd\nA* -> B + *   ; kr\n"
RATES = {"ka": 3.0, "kd": 1.0, "kr": 2.0}
INITIAL = "experiment,A,B,A*,*\nrun1,1.0,0.0,0.0,1.0\n"
DATA = "experiment,t,A,B\nrun1,0.5,0.4,0.1\nrun1,1.0,0.2,0.3\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "M.txt").write_text(MECH)
    (tmp_path / "R.json").write_text(json.dumps(RATES))
    (tmp_path / "I.csv").write_text(INITIAL)
    (tmp_path / "D.csv").write_text(DATA)
    return tmp_path


def _simulate(files, out, *extra):
    return [
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
        out,
        *extra,
    ]


def _fit(files, out, *extra):
    return [
        "fit",
        "--mechanism",
        files / "M.txt",
        "--data",
        files / "D.csv",
        "--initial",
        files / "I.csv",
        "--out",
        out,
        *extra,
    ]


def _refused(argv, capsys, *fragments):
    """Runs the command; asserts exit status 2 and every fragment in the message."""
    rc = main([str(a) for a in argv], prog="sciml kinetics")
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("sciml kinetics: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _snapshot(d):
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


# ----------------------------------------------------------------------- item 9: files


def test_mechanism_not_utf8(files, capsys):
    (files / "M.txt").write_bytes(b"A + * <=> A* ; ka, kd\nA* -> B\xe9 + * ; kr\n")
    _refused(_fit(files, files / "out"), capsys, "M.txt", "line 2", "byte 29", "not UTF-8")
    assert not (files / "out").exists()


def test_rates_not_utf8(files, capsys):
    (files / "R.json").write_bytes(b'{"ka": 3.0,\n "kd\xff": 1.0, "kr": 2.0}')
    _refused(_simulate(files, files / "S.csv"), capsys, "R.json", "line 2", "not UTF-8")


@pytest.mark.parametrize(
    "value, shown",
    [("1e999", "got inf"), ("9" * 5000, "got inf"), ("NaN", "got nan"), ("-2", "got -2.0")],
)
def test_rates_huge_or_invalid_numbers(files, capsys, value, shown):
    (files / "R.json").write_text(f'{{"ka": 3.0, "kd": {value}, "kr": 2.0}}')
    err = _refused(
        _simulate(files, files / "S.csv"),
        capsys,
        "R.json",
        "constant 'kd'",
        shown,
        "positive finite number",
    )
    if shown == "got inf":
        assert "1.8e308" in err


def test_rates_deeply_nested(files, capsys):
    (files / "R.json").write_text("[" * 100000 + "]" * 100000)
    _refused(_simulate(files, files / "S.csv"), capsys, "R.json", "nested too deeply")


@pytest.mark.parametrize(
    "text, key",
    [
        ('{"ka": 3.0, "kd": 1.0, "kr": 2.0, "kd": 5.0}', "'kd'"),
        ('{"ka": {"value": 3.0, "value": 4.0}, "kd": 1.0, "kr": 2.0}', "'value'"),
    ],
)
def test_rates_duplicate_keys(files, capsys, text, key):
    (files / "R.json").write_text(text)
    _refused(_simulate(files, files / "S.csv"), capsys, "R.json", f"the key {key} appears twice")


def test_data_row_without_observed_value(files, capsys):
    (files / "D.csv").write_text("experiment,t,A,B\nrun1,0.5,0.4,0.1\nrun1,1.0,,\n")
    _refused(
        _fit(files, files / "out"),
        capsys,
        "D.csv, row 2 (line 3)",
        "no observed value",
        "delete the row",
    )
    assert not (files / "out").exists()


@pytest.mark.parametrize(
    "data, fragments",
    [
        ("experiment,t,A\nrun1,0.5,nan\n", ("row 1 (line 2), column 'A'", "not a finite")),
        (
            "experiment,t,A\nrun1,0.5,0.4\nrun1,0.5,0.3\n",
            ("row 2 (line 3), column 't'", "not after", "row 1"),
        ),
        ("experiment,t,A\nrun1,0.5,0.4\nrun1,0.2,0.3\n", ("row 2 (line 3)", "time 0.2")),
        ("experiment,t,A\nrun1,-0.5,0.4\n", ("column 't': negative time",)),
        ("experiment,t,A\nrun1,0.5," + "1" * 200000 + "\n", ("line 2", "not readable as CSV")),
    ],
)
def test_data_values_and_times_refused(files, capsys, data, fragments):
    (files / "D.csv").write_text(data)
    _refused(_fit(files, files / "out"), capsys, "D.csv", *fragments)


def test_negative_or_nonfinite_initial_state_refused(files, capsys):
    (files / "I.csv").write_text("experiment,A,B,A*,*\nrun1,1.0,-0.01,0.0,1.0\n")
    _refused(_fit(files, files / "out"), capsys, "I.csv", "column 'B': negative concentration")
    (files / "I.csv").write_text("experiment,A,B,A*,*\nrun1,inf,0.0,0.0,1.0\n")
    _refused(_fit(files, files / "out"), capsys, "I.csv", "column 'A'", "not a finite number")


def test_negative_measured_values_are_read(files):
    # Item 2: the refusal above does not extend to measurements, where noise on a
    # concentration near zero reads below zero (sigma 0.01 gave -0.0166).
    import argparse

    import numpy as np

    import sciml.kinetics as kin
    from sciml.cli.kinetics import _about, read_data

    (files / "D.csv").write_text("experiment,t,A,B\nrun1,0.1,0.9,-0.0166\nrun1,0.2,,-1e-3\n")
    ts, values, species = read_data(files / "D.csv", kin.Mechanism.from_text(MECH), ["run1"])
    assert species == ["A", "B"]
    np.testing.assert_array_equal(ts, [[0.0, 0.1, 0.2]])
    np.testing.assert_array_equal(values[0, 1:], [[0.9, -0.0166], [np.nan, -1e-3]])
    about = _about(argparse.Namespace(method=None), "direct", values)
    assert "method: direct" in about[0] and "the default" in about[0]
    assert "3 observed values, 2 of them negative (down to -0.0166" in about[1]


# ----------------------------------------------------------------------- item 8: mechanism


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("1000000 A -> B ; k\n", "coefficient 1000000 of '1000000 A' is above 100"),
        ("99999999999999999999 A -> B ; k\n", "coefficient 99999999999999999999"),
        ("9" * 5000 + " A -> B ; k\n", "(5000 digits)"),
        ("A -> 60 B + 41 B ; k\n", "coefficient 101 of 'B (summed over the side)'"),
    ],
)
def test_coefficients_beyond_the_bound(files, capsys, text, fragment):
    (files / "M.txt").write_text(text)
    _refused(_fit(files, files / "out"), capsys, "M.txt", "line 1", fragment, "mass-action order")


# ----------------------------------------------------------------------- options and --out


@pytest.mark.parametrize("seed", ["-1", str(2**32), "1.5"])
def test_seed_out_of_range(files, capsys, seed):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in _fit(files, files / "out", "--seed", seed)], prog="sciml kinetics")
    assert info.value.code == 2
    assert "--seed" in capsys.readouterr().err
    assert not (files / "out").exists()


def test_out_under_a_file(files, capsys):
    (files / "plain").write_text("x")
    _refused(_fit(files, files / "plain" / "sub"), capsys, "is a file", "inside a directory")
    _refused(_simulate(files, files / "plain" / "S.csv"), capsys, "is a file")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_out_in_an_unwritable_place(files, capsys):
    # /proc takes no new files, even for root (chmod would not stop root).
    _refused(_fit(files, "/proc/sciml-out/run"), capsys, "cannot write in /proc")
    _refused(_simulate(files, "/proc/sciml-S.csv"), capsys, "cannot write in /proc")


def test_refused_run_leaves_no_directory(files, capsys):
    (files / "D.csv").write_text("experiment,t,A\nrun1,x,0.4\n")
    _refused(_fit(files, files / "new" / "deeper"), capsys, "'x' is not a number")
    assert not (files / "new").exists()
    (files / "R.json").write_text("{}")
    _refused(_simulate(files, files / "new" / "S.csv"), capsys, "missing value(s)")
    assert not (files / "new").exists()


# ----------------------------------------------------------------------- item 7: overwrites


@pytest.mark.parametrize("name", ["I.csv", "M.txt", "R.json"])
@pytest.mark.parametrize("force", [(), ("--force",)])
def test_simulate_never_overwrites_an_input(files, capsys, name, force):
    before = _snapshot(files)
    _refused(_simulate(files, files / name, *force), capsys, "is the --", "input file")
    assert _snapshot(files) == before


def test_simulate_keeps_an_existing_result(files, capsys):
    (files / "S.csv").write_text("earlier result\n")
    _refused(_simulate(files, files / "S.csv"), capsys, "the file exists", "--force")
    assert (files / "S.csv").read_text() == "earlier result\n"


def test_fit_keeps_a_previous_result(files, capsys):
    out = files / "out"
    out.mkdir()
    (out / "estimates.json").write_text("{}")
    _refused(_fit(files, out), capsys, "holds a previous result (estimates.json)", "--force")
    assert (out / "estimates.json").read_text() == "{}"


def test_fit_never_writes_over_an_input(files, capsys):
    (files / "report.md").write_text(DATA)
    argv = _fit(files, files, "--force")
    argv[argv.index("--data") + 1] = files / "report.md"
    before = _snapshot(files)
    _refused(argv, capsys, "is the --data input file")
    assert _snapshot(files) == before
