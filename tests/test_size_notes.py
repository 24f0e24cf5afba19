"""Quick runs that are too small to show their method's effect say so in their report.

A problem script's `size_note(metrics, options)` decides from the measured metrics;
the runner puts the note at the top of `report.md`, into `metrics.json` and the group
index, with the full-size command and the section of benchmarks/RESULTS.md holding
the full run's figures. The shipped problems' notes are checked on metrics measured at
quick size (runs/ of `sciml run all --quick`) and at full size (benchmarks/RESULTS.md):
calling `size_note` on recorded metrics costs no training.
"""

import json
import pathlib
import re
import textwrap

import pytest

from sciml import cli
from sciml.cli import _run


ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = _run.discover(str(ROOT / "problems"))

FAKE = textwrap.dedent(
    '''
    """Fake method (test fixture): its effect shows when the error falls below 0.1."""
    NAME = "fake"
    RESULTS_SECTION = "PINNs"

    def run(options):
        return {"error": 0.5 if options.quick else 0.01}

    def size_note(metrics, options):
        if metrics["error"] < 0.1:
            return None
        return f"error {metrics['error']:.2g}: not converged at this size; the full run gives 0.01."
    '''
)


@pytest.fixture
def fake_dir(tmp_path):
    d = tmp_path / "problems"
    d.mkdir()
    (d / "fake.py").write_text(FAKE)
    return d


def test_a_quick_run_that_misses_its_effect_carries_the_note(fake_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    assert cli.main(["run", "fake", "--problems", str(fake_dir), "--quick", "--quiet",
                     "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    note = report.split("\n")[4]
    assert note.startswith("> **Too small to show the method's effect.** error 0.5: not")
    assert "Full size: `sciml run fake` (without --quick)" in note
    # The link to the recorded figures resolves from the report's folder.
    link = re.search(r"\[benchmarks/RESULTS.md\]\(([^)]+)\), section \"PINNs\"", note)
    assert link and (out / link.group(1)).resolve() == (ROOT / "benchmarks/RESULTS.md")
    record = json.loads((out / "metrics.json").read_text())
    assert record["size_note"].startswith("**Too small") and "error 0.5" in record["size_note"]
    printed = capsys.readouterr().out
    assert "fake: Too small to show the method's effect. error 0.5" in printed
    assert "](" not in printed.split("Too small")[1]


def test_a_run_that_shows_its_effect_has_no_note(fake_dir, tmp_path):
    out = tmp_path / "runs"
    assert cli.main(["run", "fake", "--problems", str(fake_dir), "--quiet",
                     "--out", str(out)]) == 0
    assert "Too small" not in (out / "report.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["size_note"] is None


def test_the_group_index_carries_the_note_with_working_links(fake_dir, tmp_path):
    out = tmp_path / "runs"
    assert cli.main(["run", "all", "--problems", str(fake_dir), "--quick", "--quiet",
                     "--out", str(out)]) == 0
    index = (out / "report.md").read_text()
    assert "| ok, too small to show the effect (see below) |" in index
    link = re.search(r"> \*\*Too small.*\[benchmarks/RESULTS.md\]\(([^)]+)\)", index)
    assert link and (out / link.group(1)).resolve() == (ROOT / "benchmarks/RESULTS.md")


def test_a_bad_size_note_is_refused_before_the_run(fake_dir, tmp_path, capsys):
    (fake_dir / "fake.py").write_text(FAKE.replace("def size_note(", "size_note = 3\ndef _n("))
    out = tmp_path / "runs"
    # A broken script fails alone (exit 1, as one without run()), before it runs.
    assert cli.main(["run", "fake", "--problems", str(fake_dir), "--quiet",
                     "--out", str(out)]) == 1
    assert "size_note must be a function size_note(metrics, options)" in capsys.readouterr().err
    assert not out.exists()
