"""Quick runs that are too small to show their method's effect say so in their report.

A problem script's `size_note(metrics, options)` decides from the measured metrics;
the runner puts the note at the top of `report.md`, into `metrics.json` and the group
index, with the full-size command and the section of benchmarks/RESULTS.md holding
the full run's figures. The shipped problems' notes are checked on metrics measured at
quick size (runs/ of `sciml run all --quick`) and at full size (benchmarks/RESULTS.md):
calling `size_note` on recorded metrics costs no training.
"""

import ast
import functools
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


# Their scripts are edited under other issues (PINNs on real domains, the FNO): their
# notes are still to be written. Remove a name once its script has a size_note.
WITHOUT_NOTE = {"fno-burgers", "fno-darcy", "heat-holes", "kovasznay", "lid-cavity",
                "poisson-lshape", "poisson2d-c"}


@functools.cache
def _script(name):
    return _run._load_script(SHIPPED[name])


def _top_level(name):
    """The script's top-level function names and string constants, read without importing
    it (importing every shipped problem takes seconds)."""
    tree = ast.parse(SHIPPED[name].path.read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name)
                 and isinstance(n.value, ast.Constant)}
    return functions, constants


def _note(name, metrics, quick=True):
    options = _run.RunOptions(name=name, quick=quick)
    return _script(name).size_note(metrics, options)


def test_every_shipped_problem_decides_its_note():
    missing = sorted(n for n in SHIPPED if "size_note" not in _top_level(n)[0])
    assert missing == sorted(WITHOUT_NOTE & set(SHIPPED)), (
        f"shipped problems without size_note(metrics, options): {missing}")


def test_every_results_section_named_exists():
    headings = {h.strip() for h in re.findall(r"^#+ (.*)$", _run.RESULTS.read_text(),
                                                 flags=re.M)}
    named = {n: _top_level(n)[1].get("RESULTS_SECTION") for n in SHIPPED}
    bad = {n: s for n, s in named.items() if s is not None and s not in headings}
    assert not bad, f"RESULTS_SECTION not a heading of benchmarks/RESULTS.md: {bad}"


def _ensemble(es, es_cov, enkf, enkf_cov, adam):
    return {"ES-MDA": {"rmse": es, "coverage": es_cov, "members": 48, "steps": 12},
            "EnKF": {"rmse": enkf, "coverage": enkf_cov, "members": 48, "steps": 60},
            "Adam": {"rmse": adam}}


# Metrics measured by `sciml run all --quick` (2026-12-08, seed 0, this machine) where the
# run missed its method's effect, with a figure the note must quote.
QUICK_MISSES = {
    "node-digits": ({"steps": 30, "tol": 1e-6, "vanilla_test_nfe": 37,
                     "ernode_nfe_ratio": 1.0}, "ratio to vanilla is 1 after 30 steps"),
    "nsde-spiral": ({"vanilla_mse": 1.539, "ernsde_nfe_ratio": 0.9833, "fit_steps": 80},
                    "moment MSE is 1.5"),
    "pinn-burgers": ({"rel_l2": 0.216, "adam_steps": 1000, "ssbroyden2_steps": 600},
                     "Relative L2 0.22"),
    "hidden-burgers": ({"discovered": "-0.622418689667715*u*u_x - 0.0831876323466695*u",
                        "support_exact": False, "coefficient_rel_error": 0.3776,
                        "hidden_rel_l2": 0.4324, "fit_steps": 800},
                       "the wrong support, u u_x coefficient 38% off"),
    "hidden-fisher-kpp": ({"discovered": "-0.7737*u**2 + 0.7562*u + 0.2370",
                           "support_exact": False, "a_rel_error": 0.6219,
                           "b_rel_error": 0.6131, "hidden_rel_l2": 0.1843, "fit_steps": 800},
                          "coefficients up to 62% off"),
    "ensemble-sine": (_ensemble(0.02487, 0.9475, 0.04514, 0.7825, 0.01765),
                      "EnKF's two-sigma band covers 78% of the errors"),
    "ensemble-mexican-hat": (_ensemble(0.04675, 0.8125, 0.0375, 0.96, 0.02276),
                             "ES-MDA's test RMSE 0.0467 is 2.1x Adam's"),
    "deeponet-ode": ({"test_rel_l2": 0.08235, "steps": 5000}, "Test relative L2 0.082"),
    # Not measured: the quick direct fits beat the paper 10-35x. A hand-made miss (mae_d
    # above the paper's 0.15; an error at 5.2 std) checks the comparison.
    "kinetics-da": ({"SQ+n/direct": {"mae_d": 0.2, "mae_a": 0.01, "max_z": 5.2},
                     "SQ+n/paper": {"d": 0.15, "a": 0.0811, "rho": 0.999}},
                    "SQ+n/direct recovers ln k of group d to 0.2 (reference 0.15); "
                    "SQ+n/direct's error reaches 5.2 reported std"),
    "lssl-timescale": ({"rel_l2_m50": 0.07624, "rel_l2_m50_not_rescaled": 0.5301,
                        "rel_l2_m100": 0.06507, "rel_l2_m200": 0.06416,
                        "rel_l2_m200_not_rescaled": 1.648, "rel_l2_m400": 0.06507,
                        "rel_l2_m400_not_rescaled": 3.129, "steps": 500},
                       "up to 0.076 over the sampling rates"),
}

# Runs that showed the effect: quick runs measured as above, and full runs' figures from
# benchmarks/RESULTS.md.
SHOWN = {
    "node-digits": {"ernode_nfe_ratio": 0.44},
    "nsde-spiral": {"vanilla_mse": 0.0202, "ernsde_nfe_ratio": 0.94},
    "node-spiral": {"fewest-steps_nfe_ratio": 0.7806, "fewest-steps_mse_ratio": 0.9699},
    "pinn-burgers": {"rel_l2": 1.27e-4},
    "poisson-1d": {"rel_l2": 1.852e-4},
    "hidden-burgers": {"support_exact": True, "coefficient_rel_error": 0.00223},
    "hidden-fisher-kpp": {"support_exact": True, "a_rel_error": 0.0077, "b_rel_error": 0.011},
    "hidden-lotka-volterra": {"support_exact": True, "beta_rel_error": 0.001498,
                              "gamma_rel_error": 0.00998},
    "ensemble-sine": _ensemble(0.0167, 0.99, 0.0207, 1.0, 0.0137),
    "ensemble-mexican-hat": _ensemble(0.0148, 0.97, 0.0279, 1.0, 0.0206),
    "deeponet-antiderivative": {"test_rel_l2": 0.02762},
    "kinetics-da": {"SQ+n/direct": {"mae_d": 0.006272, "mae_a": 0.01114, "max_z": 2.315},
                    "SQ+n/paper": {"d": 0.15, "a": 0.0811, "rho": 0.999}},
    "kinetics-dc": {"SQ+n/direct": {"mae_d": 0.006732, "mae_c": 0.02634, "max_z": 1.623},
                    "SQ+n/paper": {"d": 0.236, "c": 0.42, "rho": 0.996}},
    "kinetics-dcs": {"SQ+n/direct": {"mae_d": 0.009382, "mae_c": 0.01877, "mae_s": 0.009533,
                                     "max_z": 1.727},
                     "SQ+n/paper": {"d": 0.11, "c": 0.114, "s": 0.0962, "rho": 0.997}},
    # Above the paper's 2.29e-4, which lies below the Cramer-Rao floor (0.0231).
    "kinetics-g": {"Q+n/direct": {"mae_g": 0.005431, "max_z": 0.2525},
                   "Q+n/paper": {"g": 0.000229, "rho": 1.0}},
    "deeponet-ode": {"test_rel_l2": 0.0270},
    "lssl-antiderivative": {"test_rel_l2": 0.01325, "rel_l2_m50": 0.03604,
                            "rel_l2_m100": 0.01325, "rel_l2_m200": 0.01474,
                            "rel_l2_m400": 0.01936},
    "lssl-timescale": {"rel_l2_m50": 0.0371, "rel_l2_m100": 0.0247, "rel_l2_m200": 0.0282,
                       "rel_l2_m400": 0.0320},
    "eigen-oscillator": {"mean_rel_eps_error": 8.033e-5, "max_rel_eps_error": 7.33e-4,
                         "min_eps_minus_exact": 1.168e-5},
    "magnet-nucleation": {"mean_rel_eps_error": 2.887e-5, "max_rel_eps_error": 2.226e-4,
                          "min_eps_minus_exact_MJ_m3": 7.153e-6},
}


@pytest.mark.parametrize("name", sorted(QUICK_MISSES))
def test_a_quick_run_that_missed_its_effect_says_so(name):
    metrics, quoted = QUICK_MISSES[name]
    note = _note(name, metrics)
    assert note and quoted in note, note
    assert "full run" in note.lower()


@pytest.mark.parametrize("name", sorted(SHOWN))
def test_a_run_that_showed_its_effect_has_no_note(name):
    assert _note(name, SHOWN[name]) is None
