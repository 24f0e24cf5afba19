"""`sciml list` and `sciml run`: problem scripts found by path, run into folders with
their metrics, plots and a report."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import importlib.util
import json
import math
import os
import pathlib
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from types import SimpleNamespace

from ._validators import (
    CLIError,
    check_out_dir,
    first_missing,
    prng_seed,
    refuse_earlier_results,
    remove_if_empty,
    step_count,
)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Options every problem takes.

    - `quick`: small sizes (4 s to about 2 minutes per shipped problem on a 2-core CPU),
      for `sciml run demo --quick` and `sciml run all --quick`.
    - `steps`: override of the steps of the problem's main training stage, through
      `steps_or` (None: the problem's default). A problem may add fixed stages (e.g. an
      L-BFGS refinement after Adam) that keep their size; the runner records the steps
      actually trained (`fit_steps` in `metrics.json`).
    - `seed`: PRNG seed; the same seed gives the same numbers.
    - `out`: output directory (exists when `run` is called).
    - `progress`: show progress bars.
    """

    name: str
    quick: bool = False
    steps: int | None = None
    seed: int = 0
    out: pathlib.Path = pathlib.Path("runs")
    progress: bool = True

    def pick(self, quick, full):
        """`quick` if this is a quick run, else `full`."""
        return quick if self.quick else full

    def steps_or(self, default: int) -> int:
        """The `--steps` override if given, else `default`: the steps of the stage the
        problem lets `--steps` set (its main one)."""
        return default if self.steps is None else self.steps


@dataclasses.dataclass(frozen=True)
class ProblemEntry:
    """A registered problem: its `NAME`, the first line of its docstring (the
    `description` `sciml list` shows) and the script's `path`; `shadows` lists later
    scripts with the same NAME that this one hides."""

    name: str
    description: str
    path: pathlib.Path
    # Later scripts with the same NAME, hidden by this one.
    shadows: tuple[pathlib.Path, ...] = ()


_SHIPPED = pathlib.Path(__file__).resolve().parents[2] / "problems"
# Where the full runs' figures are recorded (in a checkout; absent from an installed wheel).
RESULTS = _SHIPPED.parent / "benchmarks" / "RESULTS.md"

# `sciml run demo` (what `make demo` runs): one problem per family with a problem of its
# own, chosen among the quickest whose quick run shows what the family is for.
DEMO = (
    "poisson-1d",  # pinn
    "hidden-lotka-volterra",  # symbolic: a hidden term learned, named, fitted through the ODE
    "node-spiral",  # ode
    "kinetics-da",  # kinetics
    "deeponet-antiderivative",  # operators
    "ensemble-sine",  # ensemble
)
GROUPS = {"all": None, "demo": DEMO}


def _problem_dirs(explicit: str | None) -> list[pathlib.Path]:
    if explicit is not None:
        d = pathlib.Path(explicit)
        if not d.is_dir():
            raise CLIError(f"--problems {explicit!r} is not a directory.")
        return [d]
    candidates = []
    env = os.environ.get("SCIML_PROBLEMS")
    if env:
        candidates.append(pathlib.Path(env))
    candidates.append(pathlib.Path.cwd() / "problems")
    candidates.append(_SHIPPED)
    seen, out = set(), []
    for c in candidates:
        if c.is_dir() and c.resolve() not in seen:
            seen.add(c.resolve())
            out.append(c)
    return out


def discover(problems_dir: str | None = None) -> dict[str, ProblemEntry]:
    """Registered problems: every `*.py` in the problem folders that defines `NAME`.

    The folders are searched in order (see the module docstring); the first script
    defining a NAME wins, and the entry lists the scripts it hides in `shadows`.
    """
    found: dict[str, ProblemEntry] = {}
    for d in _problem_dirs(problems_dir):
        for path in sorted(d.glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                tree = ast.parse(path.read_text())
            except SyntaxError:
                continue
            name = None
            for node in tree.body:
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id == "NAME"
                    and isinstance(node.value, ast.Constant)
                ):
                    name = node.value.value
            if not isinstance(name, str):
                continue
            if name in found:
                first = found[name]
                found[name] = dataclasses.replace(first, shadows=first.shadows + (path,))
                continue
            doc = (ast.get_docstring(tree) or "").strip().splitlines()
            found[name] = ProblemEntry(name, doc[0] if doc else "", path)
    return found


def _warn_shadows(entries) -> None:
    for entry in entries:
        for other in entry.shadows:
            print(
                f"sciml: warning: problem {entry.name!r} is defined by {entry.path} and by "
                f"{other}; the first is used (folders are searched in the order "
                "$SCIML_PROBLEMS, ./problems, shipped). Give one a different NAME to "
                "keep both.",
                file=sys.stderr,
            )


def _folder_label(folder: pathlib.Path) -> str:
    try:
        shown = os.path.join(".", folder.resolve().relative_to(pathlib.Path.cwd().resolve()))
    except ValueError:
        shown = str(folder)
    return shown + (" (shipped with sciml)" if folder.resolve() == _SHIPPED else "")


@dataclasses.dataclass(frozen=True)
class _Script:
    """What a problem script provides: `run`, and optionally `size_note` and
    `RESULTS_SECTION` (see `size_note_text`)."""

    run: Callable
    size_note: Callable | None = None
    results_section: str | None = None

    @classmethod
    def of(cls, module, path) -> _Script:
        run, note = getattr(module, "run", None), getattr(module, "size_note", None)
        section = getattr(module, "RESULTS_SECTION", None)
        if not callable(run):
            raise CLIError(f"problem script {path} defines no run(options) function.")
        if note is not None and not callable(note):
            raise CLIError(f"problem script {path}: size_note must be a function "
                           f"size_note(metrics, options) -> str | None, got {note!r}.")
        if section is not None and not isinstance(section, str):
            raise CLIError(f"problem script {path}: RESULTS_SECTION must be the title of a "
                           f"section of benchmarks/RESULTS.md, got {section!r}.")
        return cls(run, note, section)


def _load_script(entry: ProblemEntry) -> _Script:
    spec = importlib.util.spec_from_file_location(f"sciml_problem_{entry.path.stem}", entry.path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _Script.of(module, entry.path)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, pathlib.Path):
        return str(x)
    return x


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def _plots(out: pathlib.Path, since: float | None) -> list[pathlib.Path]:
    """The PNGs in `out` written at or after `since` (None: all): a report shows this
    run's plots, not those an earlier run left in the same folder."""
    return [
        p for p in sorted(pathlib.Path(out).glob("*.png"))
        if since is None or p.stat().st_mtime >= since
    ]


def size_note_text(note: str, name: str, options: RunOptions,
                   results_section: str | None = None) -> str:
    """The report's note for a run too small to show its method's effect.

    A problem script may define `size_note(metrics, options) -> str | None`: from the
    run's measured metrics it says why this size cannot show the effect (and what the
    full run gives), or returns None when the run did show it. The note opens the
    report, is printed after the metrics and is kept in `metrics.json` (`size_note`),
    followed by where to go next: the full-size command and, when the script names its
    `RESULTS_SECTION`, the section of `benchmarks/RESULTS.md` holding the full run's
    recorded figures (linked from `options.out` when the file is there).

    **Arguments:**

    - `note`: what `size_note` returned.
    - `name`: the problem's NAME.
    - `options`: the run's options (which size options to drop, where the report goes).
    - `results_section`: the title of a section of `benchmarks/RESULTS.md`, or None.

    **Returns:**

    The note as Markdown.
    """
    dropped = [flag for flag, on in (("--quick", options.quick),
                                     ("--steps", options.steps is not None)) if on]
    full = f"`sciml run {name}`" + (f" (without {' and '.join(dropped)})" if dropped else "")
    # Formulas print their coefficients to 15 digits; four tell the story.
    note = re.sub(r"\d+\.\d{8,}", lambda m: f"{float(m.group()):.4g}", note.strip())
    text = f"**Too small to show the method's effect.** {note} Full size: {full}"
    if results_section:
        where = "benchmarks/RESULTS.md"
        if RESULTS.is_file():
            where = f"[{where}]({os.path.relpath(RESULTS, pathlib.Path(options.out).resolve())})"
        text += f"; its recorded figures: {where}, section \"{results_section}\""
    return text + "."


def _write_report(
    out: pathlib.Path,
    name: str,
    description: str,
    metrics: dict,
    since: float | None = None,
    fit_steps: list | None = None,
    note: str | None = None,
) -> None:
    lines = [f"# {name}", "", description, ""]
    if note:
        lines += [f"> {note}", ""]
    lines += ["| metric | value |", "|---|---|"]
    for k, v in metrics.items():
        lines.append(f"| {k} | {_fmt(v)} |")
    lines.append("")
    if fit_steps:
        calls = "; ".join(" + ".join(map(str, stages)) for stages in fit_steps)
        lines += [
            f"Steps trained by sciml.fit: {sum(map(sum, fit_steps))} (per call, per "
            f"stage: {calls}).",
            "",
        ]
    lines += ["[metrics.json](metrics.json)", ""]
    for png in _plots(out, since):
        lines += [f"![{png.stem}]({png.name})", ""]
    (out / "report.md").write_text("\n".join(lines))


def run_problem(entry: ProblemEntry, options: RunOptions, run: Callable | None = None, *,
                size_note: Callable | None = None, results_section: str | None = None) -> dict:
    """Runs one problem into `options.out`; returns its metrics (with wall time and
    `fit_steps`, the steps trained by `sciml.fit` in the run).

    **Arguments:**

    - `entry`: the registered problem.
    - `options`: its run options.
    - `run`: the script's `run` (None: the script is loaded from `entry.path`, with its
      `size_note` and `RESULTS_SECTION`).
    - `size_note`, `results_section`: with `run`, the script's `size_note` and
      `RESULTS_SECTION` (see `size_note_text`).

    **Returns:**

    The metrics; `metrics.json` and `report.md` are written into `options.out`.
    """
    created = first_missing(options.out)
    check_out_dir(options.out)
    try:
        if run is None:
            script = _load_script(entry)
        else:
            script = _Script.of(SimpleNamespace(run=run, size_note=size_note,
                                                RESULTS_SECTION=results_section), entry.path)
        return _run_problem(entry, options, script)
    except BaseException:
        remove_if_empty(options.out, created)
        raise


def _run_problem(entry, options, script):
    run = script.run
    import jax

    from ..train import counting_steps

    x64 = bool(jax.config.jax_enable_x64)
    # File times have coarse resolution on some file systems: allow a second.
    started = time.time() - 1.0
    t0 = time.perf_counter()
    with counting_steps() as fit_steps:
        metrics = run(options)
    if bool(jax.config.jax_enable_x64) != x64:
        # sciml sets no process-wide JAX option, and does not undo a script's either.
        print(
            f"sciml: warning: {entry.path} turned jax_enable_x64 "
            f"{'on' if not x64 else 'off'} for the rest of this process (problems run after "
            "it see that setting); scope it with `with jax.enable_x64(True):` in run().",
            file=sys.stderr,
        )
    if not isinstance(metrics, dict):
        raise CLIError(f"{entry.path}: run() must return a dict of metrics, got {type(metrics)}.")
    metrics = dict(metrics)
    metrics["wall_time_s"] = time.perf_counter() - t0
    # Counted by the runner, whatever the script does with --steps.
    metrics["fit_steps"] = sum(map(sum, fit_steps))
    note = script.size_note(metrics, options) if script.size_note else None
    if note:
        note = size_note_text(note, entry.name, options, script.results_section)
    record = {
        "problem": entry.name,
        "description": entry.description,
        "options": {"quick": options.quick, "steps": options.steps, "seed": options.seed},
        "metrics": _jsonable(metrics),
        "fit_steps_per_call": fit_steps,
        "size_note": note,
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
    }
    (options.out / "metrics.json").write_text(json.dumps(record, indent=1))
    _write_report(options.out, entry.name, entry.description, metrics, since=started,
                  fit_steps=fit_steps, note=note)
    if note:
        print(f"   {entry.name}: {_plain(note)}", flush=True)
    return metrics


def _plain(markdown: str) -> str:
    """The note for a terminal: no bold marks, links as their text."""
    return re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", markdown.replace("**", ""))


def _add_run_options(p: argparse.ArgumentParser, *, out_default: str | None) -> None:
    p.add_argument("--quick", action="store_true",
                   help="small sizes (seconds to about 2 minutes each; a report says when its "
                   "size is too small to show the method's effect)")
    p.add_argument(
        "--steps",
        type=step_count,
        default=None,
        metavar="N",
        help="steps of the problem's main training stage (fixed stages such as an L-BFGS "
        "refinement keep their size); metrics.json records the steps actually trained "
        "(fit_steps)",
    )
    p.add_argument("--seed", type=prng_seed, default=0, help="PRNG seed (default 0)")
    p.add_argument(
        "--out",
        default=out_default,
        help="output directory (default runs/NAME; for 'all': runs/ with one folder each)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace the results of an earlier run in --out (refused without it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _cmd_list(args) -> int:
    problems = discover(args.problems)
    if not problems:
        raise CLIError("no problems found: run from the checkout or pass --problems DIR.")
    _warn_shadows(problems.values())
    width = max(len(n) for n in problems)
    folders: dict[pathlib.Path, list[ProblemEntry]] = {
        d: [] for d in _problem_dirs(args.problems)  # in search order
    }
    for name, entry in sorted(problems.items()):
        folders.setdefault(entry.path.parent, []).append(entry)
    for folder, entries in folders.items():
        if not entries:
            continue
        print(f"{_folder_label(folder)}:")
        for entry in entries:
            print(f"  {entry.name:<{width}}  {entry.description}")
    return 0


def _cmd_run(args) -> int:
    problems = discover(args.problems)
    group = args.name in GROUPS
    if args.name == "all":
        selected = sorted(problems)
        if not selected:
            raise CLIError("no problems found: run from the checkout or pass --problems DIR.")
    elif group:
        selected = list(GROUPS[args.name])
        unknown = [n for n in selected if n not in problems]
        if unknown:
            raise CLIError(
                f"{args.name!r} runs {', '.join(unknown)}, not found in "
                f"{', '.join(str(d) for d in _problem_dirs(args.problems))}: run from the "
                "checkout or pass --problems DIR holding them."
            )
    else:
        if args.name not in problems:
            known = ", ".join(sorted(problems)) or "(none found)"
            raise CLIError(f"unknown problem {args.name!r}. Known problems: {known}.")
        selected = [args.name]
    _warn_shadows(problems[n] for n in selected)
    base = pathlib.Path(args.out) if args.out else pathlib.Path("runs")
    outs = {n: base / n if (group or not args.out) else base for n in selected}
    # Before the first problem runs.
    refuse_earlier_results(outs.values(), args.force, extra=[base / "report.md"] if group else [])
    created = first_missing(base)
    check_out_dir(base)
    started = time.time() - 1.0
    rows, failed = [], []
    for name, out in outs.items():
        options = RunOptions(
            name=name,
            quick=args.quick,
            steps=args.steps,
            seed=args.seed,
            out=out,
            progress=not args.quiet,
        )
        print(f"== {name} -> {out}", flush=True)
        try:
            metrics = run_problem(problems[name], options)
        except Exception as e:  # one broken problem must not hide the others
            if not isinstance(e, CLIError | ValueError | TypeError | FloatingPointError):
                traceback.print_exc()
            print(f"sciml: problem {name!r} failed: {type(e).__name__}: {e}", file=sys.stderr)
            failed.append(name)
            rows.append((name, out, None))
            continue
        rows.append((name, out, metrics))
        print(f"   {name}: {_fmt(metrics)}", flush=True)
    if group:
        _write_index(base, rows, problems, started, title=f"sciml run {args.name}")
        print(f"report: {base / 'report.md'}")
    remove_if_empty(base, created)
    if failed:
        print(f"sciml: {len(failed)} problem(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _write_index(base: pathlib.Path, rows, problems, started: float | None = None,
                 title: str = "sciml run all") -> None:
    base.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", "| problem | description | status | wall time (s) | report |"]
    lines.append("|---|---|---|---|---|")
    for name, out, metrics in rows:
        rel = os.path.relpath(out, base)
        status = "failed" if metrics is None else "ok"
        if metrics is not None and _recorded_note(out):
            status = "ok, too small to show the effect (see below)"
        wall = "" if metrics is None else f"{metrics['wall_time_s']:.1f}"
        lines.append(
            f"| {name} | {problems[name].description} | {status} | {wall} | "
            f"[report]({rel}/report.md), [metrics]({rel}/metrics.json) |"
        )
    lines.append("")
    for name, out, metrics in rows:
        if metrics is None:
            continue
        rel = os.path.relpath(out, base)
        lines += [f"## {name}", ""]
        note = _recorded_note(out)
        if note:
            # Its links are relative to the problem's folder.
            lines += [f"> {_relink(note, rel)}", ""]
        for png in _plots(out, started):
            lines += [f"![{name}: {png.stem}]({rel}/{png.name})", ""]
    (base / "report.md").write_text("\n".join(lines))


def _recorded_note(out: pathlib.Path) -> str | None:
    try:
        return json.loads((out / "metrics.json").read_text()).get("size_note")
    except (OSError, ValueError):
        return None


def _relink(markdown: str, folder: str) -> str:
    """Relative links of a report in `folder`, rewritten for the index one level up."""
    def fix(m):
        target = m.group(2)
        if re.match(r"\w+://|/|#", target):
            return m.group(0)
        return f"[{m.group(1)}]({os.path.normpath(os.path.join(folder, target))})"

    return re.sub(r"\[([^]]*)\]\(([^)]*)\)", fix, markdown)


def script_main(name: str, run: Callable, argv: Sequence[str] | None = None) -> int:
    """`python problems/x.py [--quick] [--steps N] [--seed S] [--out DIR] [--force] [--quiet]`."""
    parser = argparse.ArgumentParser(prog=f"problems/{name}", description=f"Run problem {name}.")
    _add_run_options(parser, out_default=None)
    args = parser.parse_args(argv)
    import __main__

    doc = (getattr(__main__, "__doc__", None) or "").strip().splitlines()
    path = pathlib.Path(getattr(__main__, "__file__", name))
    entry = ProblemEntry(name, doc[0] if doc else "", path)
    options = RunOptions(
        name=name,
        quick=args.quick,
        steps=args.steps,
        seed=args.seed,
        out=pathlib.Path(args.out) if args.out else pathlib.Path("runs") / name,
        progress=not args.quiet,
    )
    try:
        refuse_earlier_results([options.out], args.force)
        metrics = run_problem(entry, options, run, size_note=getattr(__main__, "size_note", None),
                              results_section=getattr(__main__, "RESULTS_SECTION", None))
    except CLIError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    print(f"{name}: {_fmt(metrics)}")
    print(f"wrote {options.out / 'metrics.json'} and {options.out / 'report.md'}")
    return 0
