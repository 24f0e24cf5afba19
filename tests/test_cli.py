"""The `sciml` command: listing, running, reports, and clear errors on bad options."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from sciml import cli


ROOT = pathlib.Path(__file__).resolve().parent.parent

TINY_PROBLEM = textwrap.dedent(
    '''
    """Tiny least-squares fit (test fixture)."""
    import jax, jax.numpy as jnp, optax
    import sciml, sciml.cli

    NAME = "tiny"

    def run(options):
        x = jnp.linspace(0, 1, 16)
        y = 2 * x + 1
        loss = lambda p, b, *, key: jnp.mean((p[0] * x + p[1] - y) ** 2)
        r = sciml.fit(jnp.zeros(2), loss, optax.adam(0.1), steps=options.steps_or(300),
                      key=jax.random.key(options.seed), progress=options.progress)
        sciml.plot.history(r.history, options.out / "loss.png")
        return {"slope": float(r.model[0]), "quick": options.quick,
                "dtype": str(jnp.zeros(()).dtype)}

    if __name__ == "__main__":
        raise SystemExit(sciml.cli.script_main(NAME, run))
    '''
)


@pytest.fixture
def problems_dir(tmp_path):
    d = tmp_path / "problems"
    d.mkdir()
    (d / "tiny.py").write_text(TINY_PROBLEM)
    (d / "_helper.py").write_text("NAME = 'hidden'\n")
    return d


def test_list_shows_registered_problems(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "poisson-1d" in out and "Poisson" in out


def test_run_writes_metrics_report_and_plots(problems_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["run", "tiny", "--problems", str(problems_dir), "--quick",
                     "--steps", "400", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["problem"] == "tiny"
    assert record["options"] == {"quick": True, "steps": 400, "seed": 3}
    assert abs(record["metrics"]["slope"] - 2.0) < 1e-2
    assert (out / "loss.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "![loss](loss.png)" in report and "slope" in report


def test_run_all_writes_index(problems_dir, tmp_path):
    out = tmp_path / "runs"
    assert cli.main(["run", "all", "--problems", str(problems_dir), "--quick", "--quiet",
                     "--out", str(out)]) == 0
    index = (out / "report.md").read_text()
    assert "[report](tiny/report.md)" in index and "(tiny/loss.png)" in index
    assert "hidden" not in index  # files starting with _ are not problems


def test_a_failing_problem_fails_the_run(problems_dir, tmp_path):
    (problems_dir / "broken.py").write_text(
        'NAME = "broken"\ndef run(options):\n    raise ValueError("bad things")\n')
    code = cli.main(["run", "all", "--problems", str(problems_dir), "--quiet",
                     "--out", str(tmp_path / "r")])
    assert code == 1
    index = (tmp_path / "r" / "report.md").read_text()
    assert "| broken |" in index and "failed" in index and "| tiny |" in index


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "nope"], "unknown problem 'nope'"),
        (["run", "tiny", "--steps", "0"], "expected a positive integer, got 0"),
        (["run", "tiny", "--steps", "ten"], "expected a positive integer, got 'ten'"),
        (["run", "tiny", "--seed", "x"], "expected an integer"),
        # jax.random.key would wrap 2**32 onto seed 0.
        (["run", "tiny", "--seed", str(2**32)], "expected an integer in [0, 2**32)"),
        (["run", "tiny", "--seed", "-1"], "expected an integer in [0, 2**32)"),
        (["run"], "the following arguments are required: name"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_options_exit_nonzero(problems_dir, argv, message, capsys):
    if argv[:1] == ["run"] and len(argv) > 1:
        argv = argv + ["--problems", str(problems_dir)]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, listed",
    [
        (["kinetics", "--help"], ("simulate", "fit")),
        (["kinetics", "-h"], ("simulate", "fit")),
        (["operator", "--help"], ("train",)),
        (["kinetics", "simulate", "--help"], ("--mechanism", "--t-end")),
    ],
)
def test_family_commands_answer_help(argv, listed, capsys):
    # A leading option after a family command's name used to be rejected by `sciml`
    # itself ("unrecognized arguments: --help").
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sciml {argv[0]}")
    assert all(word in out for word in listed)


def test_family_command_errors_name_the_family(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["kinetics", "bogus"])
    assert info.value.code == 2
    assert "sciml kinetics: error" in capsys.readouterr().err


def test_run_out_that_is_a_file(problems_dir, tmp_path, capsys):
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "tiny", "--problems", str(problems_dir), "--out", str(tmp_path / "f")])
    assert info.value.code == 2
    assert "is a file" in capsys.readouterr().err


def test_run_out_that_cannot_be_written_is_refused_before_work(problems_dir, capsys):
    # /proc takes no new directories: refused with exit 2 before the problem runs.
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "tiny", "--problems", str(problems_dir), "--out", "/proc/sciml-x"])
    assert info.value.code == 2
    assert "cannot write results there" in capsys.readouterr().err


def test_report_shows_only_this_runs_plots(problems_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / "from_an_earlier_run.png"
    stale.write_bytes(b"\x89PNG")
    os.utime(stale, (1e9, 1e9))  # 2001
    assert cli.main(["run", "tiny", "--problems", str(problems_dir), "--quick",
                     "--steps", "50", "--out", str(out), "--quiet"]) == 0
    report = (out / "report.md").read_text()
    assert "![loss](loss.png)" in report and "from_an_earlier_run" not in report


def test_console_script_and_problem_script(problems_dir, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    exe = pathlib.Path(sys.executable).parent / "sciml"
    proc = subprocess.run([str(exe), "list"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "poisson-1d" in proc.stdout
    out = tmp_path / "direct"
    proc = subprocess.run([sys.executable, str(problems_dir / "tiny.py"), "--quiet",
                           "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "metrics.json").read_text())["metrics"]["quick"] is False
    proc = subprocess.run([sys.executable, str(problems_dir / "tiny.py"), "--steps", "-1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "positive integer" in proc.stderr


def test_a_problem_cannot_change_float64_for_the_next(problems_dir, tmp_path):
    # Runs first (sorted names) and flips the x64 setting the suite runs with.
    (problems_dir / "a_flip.py").write_text(
        'import jax\nNAME = "a-flip"\n'
        'def run(options):\n'
        '    jax.config.update("jax_enable_x64", not jax.config.jax_enable_x64)\n'
        '    return {}\n')
    import jax

    before = jax.config.jax_enable_x64
    assert cli.main(["run", "all", "--problems", str(problems_dir), "--quiet",
                     "--out", str(tmp_path / "r")]) == 0
    record = json.loads((tmp_path / "r" / "tiny" / "metrics.json").read_text())
    assert record["metrics"]["dtype"] == ("float64" if before else "float32")
    assert jax.config.jax_enable_x64 == before
