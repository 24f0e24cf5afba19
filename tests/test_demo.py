"""`sciml run demo` (`make demo`): one shipped problem per family, and an index report
linking every problem's report and plots."""

import pathlib
import textwrap

import pytest

from sciml import cli
from sciml.cli import _run


# The problem-name prefixes of each family (README, "The families").
FAMILIES = {
    "pinn": ("poisson", "pinn", "kovasznay", "lid", "heat", "eigen", "magnet"),
    # Hidden-term PINNs whose hidden term sciml.symbolic names.
    "symbolic": ("hidden",),
    "ode": ("node", "nsde"),
    "kinetics": ("kinetics",),
    "operators": ("deeponet", "fno", "lssl"),
    "ensemble": ("ensemble",),
}


def test_demo_is_one_shipped_problem_per_family():
    shipped = _run.discover(str(pathlib.Path(_run.__file__).parents[2] / "problems"))
    assert set(_run.DEMO) <= set(shipped)
    family = [next(f for f, pre in FAMILIES.items() if n.startswith(pre)) for n in _run.DEMO]
    assert sorted(family) == sorted(FAMILIES)  # each family once


def _fake(name):
    return textwrap.dedent(f'''
        """Fake {name} (test fixture)."""
        import sciml

        NAME = "{name}"

        def run(options):
            fig, ax = sciml.plot.figure()
            ax.plot([0, 1], [0, 1])
            sciml.plot.save(fig, options.out / "curve.png")
            return {{"quick": options.quick}}
        ''')


def test_run_demo_runs_the_group_and_writes_an_index(tmp_path, monkeypatch):
    problems = tmp_path / "problems"
    problems.mkdir()
    for name in (*_run.DEMO, "not-in-demo"):
        (problems / f"{name.replace('-', '_')}.py").write_text(_fake(name))
    out = tmp_path / "runs"
    assert cli.main(["run", "demo", "--problems", str(problems), "--quick", "--quiet",
                     "--out", str(out)]) == 0
    index = (out / "report.md").read_text()
    assert index.startswith("# sciml run demo")
    for name in _run.DEMO:
        assert f"[report]({name}/report.md)" in index and f"({name}/curve.png)" in index
    assert "not-in-demo" not in index and not (out / "not-in-demo").exists()
    # Rerunning needs --force, like `run all`.
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "demo", "--problems", str(problems), "--quiet", "--out", str(out)])
    assert e.value.code == 2


def test_run_demo_without_its_problems_is_refused_before_running(tmp_path, capsys):
    problems = tmp_path / "problems"
    problems.mkdir()
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "demo", "--problems", str(problems), "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "sciml: error: 'demo' runs poisson-1d" in err and "--problems DIR" in err
    assert not out.exists()
