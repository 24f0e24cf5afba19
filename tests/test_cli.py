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
    with pytest.raises(SystemExit) as info:  # a folder under a file
        cli.main(["run", "tiny", "--problems", str(problems_dir), "--out",
                  str(tmp_path / "f" / "sub")])
    assert info.value.code == 2
    assert "cannot write results there (Not a directory)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "problems"]


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


def test_a_problem_that_changes_float64_for_the_next_is_named(problems_dir, tmp_path, capsys):
    # Runs first (sorted names) and flips the x64 setting the suite runs with: sciml sets
    # no process-wide option, so it does not undo the flip, but it says which script did.
    (problems_dir / "a_flip.py").write_text(
        'import jax\nNAME = "a-flip"\n'
        'def run(options):\n'
        '    jax.config.update("jax_enable_x64", not jax.config.jax_enable_x64)\n'
        '    return {}\n')
    import jax

    before = jax.config.jax_enable_x64
    try:
        assert cli.main(["run", "all", "--problems", str(problems_dir), "--quiet",
                         "--out", str(tmp_path / "r")]) == 0
    finally:
        jax.config.update("jax_enable_x64", before)
    err = capsys.readouterr().err
    assert "a_flip.py turned jax_enable_x64" in err and "with jax.enable_x64(True)" in err


def test_a_scoped_float64_problem_leaves_the_setting_to_the_next(problems_dir, tmp_path):
    (problems_dir / "a_scoped.py").write_text(
        'import jax, jax.numpy as jnp\nNAME = "a-scoped"\n'
        'def run(options):\n'
        '    with jax.enable_x64(not jax.config.jax_enable_x64):\n'
        '        return {"dtype": str(jnp.asarray(1.0).dtype)}\n')
    import jax

    before = jax.config.jax_enable_x64
    assert cli.main(["run", "all", "--problems", str(problems_dir), "--quiet",
                     "--out", str(tmp_path / "r")]) == 0
    scoped = json.loads((tmp_path / "r" / "a-scoped" / "metrics.json").read_text())
    assert scoped["metrics"]["dtype"] == ("float32" if before else "float64")
    record = json.loads((tmp_path / "r" / "tiny" / "metrics.json").read_text())
    assert record["metrics"]["dtype"] == ("float64" if before else "float32")
    assert jax.config.jax_enable_x64 == before


TWO_STAGES = textwrap.dedent(
    '''
    """Adam, then a fixed SGD stage (test fixture)."""
    import jax, jax.numpy as jnp, optax
    import sciml

    NAME = "two-stages"

    def run(options):
        loss = lambda p, b, *, key: jnp.sum((p - 1.0) ** 2)
        stages = [sciml.Stage(optax.adam(0.1), options.steps_or(300)),
                  sciml.Stage(optax.sgd(0.1), 30)]
        sciml.fit(jnp.zeros(2), loss, stages, key=jax.random.key(0), progress=False)
        sciml.fit(jnp.zeros(2), loss, optax.sgd(0.1), steps=7, key=jax.random.key(0),
                  progress=False)
        return {}
    '''
)


def test_steps_sets_the_main_stage_and_the_steps_trained_are_recorded(problems_dir, tmp_path):
    # `--steps 20` used to be reported as 20 while 20 + 30 + 7 steps were trained.
    (problems_dir / "two_stages.py").write_text(TWO_STAGES)
    out = tmp_path / "out"
    assert cli.main(["run", "two-stages", "--problems", str(problems_dir), "--steps", "20",
                     "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["options"]["steps"] == 20
    assert record["metrics"]["fit_steps"] == 57
    assert record["fit_steps_per_call"] == [[20, 30], [7]]
    assert "Steps trained by sciml.fit: 57 (per call, per stage: 20 + 30; 7)" in (
        out / "report.md").read_text()


def test_help_says_what_steps_means(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "main training stage" in text and "fit_steps" in text and "--force" in text


def test_earlier_results_are_kept_unless_forced(problems_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "tiny", "--problems", str(problems_dir), "--steps", "5", "--quiet",
            "--out", str(out)]
    assert cli.main(argv) == 0
    before = (out / "metrics.json").read_text()
    with pytest.raises(SystemExit) as info:
        cli.main(argv + ["--seed", "1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert str(out / "metrics.json") in err and "--force" in err
    assert (out / "metrics.json").read_text() == before
    assert cli.main(argv + ["--seed", "1", "--force"]) == 0
    assert json.loads((out / "metrics.json").read_text())["options"]["seed"] == 1
    # `run all` checks every folder (and its index) before the first problem runs.
    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)
    (runs / "tiny" / "report.md").write_text("my notes")
    with pytest.raises(SystemExit):
        cli.main(["run", "all", "--problems", str(problems_dir), "--out", str(runs)])
    assert (runs / "tiny" / "report.md").read_text() == "my notes"
    assert sorted(p.name for p in runs.iterdir()) == ["tiny"]


def test_script_refuses_earlier_results_unless_forced(problems_dir, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_script", problems_dir / "tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "o"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit) as info:
        cli.script_main("tiny", module.run, ["--out", str(out), "--quiet"])
    assert info.value.code == 2 and "--force" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == "{}"


def test_a_failed_or_refused_run_leaves_no_empty_folder(problems_dir, tmp_path):
    (problems_dir / "broken.py").write_text(
        'NAME = "broken"\ndef run(options):\n    raise ValueError("bad input")\n')
    (problems_dir / "norun.py").write_text('NAME = "norun"\n')
    for name in ("broken", "norun"):
        out = tmp_path / "new" / "deeper"
        code = cli.main(["run", name, "--problems", str(problems_dir), "--out", str(out),
                         "--quiet"])
        assert code == 1
        assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert cli.main(["run", "broken", "--problems", str(problems_dir), "--out", str(kept),
                     "--quiet"]) == 1
    assert kept.is_dir()  # not created by the run: left alone


def test_a_local_problem_with_a_shipped_name_is_announced(tmp_path, monkeypatch, capsys):
    # A ./problems/ folder used to hide every shipped problem, without a word.
    monkeypatch.delenv("SCIML_PROBLEMS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "problems").mkdir()
    mine = tmp_path / "problems" / "mine.py"
    mine.write_text('"""My Poisson."""\nNAME = "poisson-1d"\n')
    assert cli.main(["list"]) == 0
    captured = capsys.readouterr()
    shipped = ROOT / "problems" / "poisson_1d.py"
    assert str(mine) in captured.err and str(shipped) in captured.err
    assert "warning" in captured.err
    lines = captured.out.splitlines()
    assert lines[0] == "./problems:" and "My Poisson." in lines[1]
    at = lines.index(f"{ROOT / 'problems'} (shipped with sciml):")
    assert any(line.split()[0] == "pinn-burgers" for line in lines[at + 1:])
    assert not any(line.split()[0] == "poisson-1d" for line in lines[at + 1:])


def test_steps_beyond_the_step_counter_are_refused(problems_dir, tmp_path, capsys):
    # sciml.fit counts steps in an int32; the problem (which trains nothing) must not run.
    (problems_dir / "echo.py").write_text('NAME = "echo"\ndef run(options):\n    return {}\n')
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "echo", "--problems", str(problems_dir), "--steps", str(2**31),
                  "--out", str(out)])
    assert info.value.code == 2 and "at most 2147483647 steps" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(["run", "echo", "--problems", str(problems_dir), "--steps",
                     str(2**31 - 1), "--out", str(out), "--quiet"]) == 0
