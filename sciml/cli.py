"""The `sciml` command: list and run registered problems, and the family commands.

A *problem* is a script in a `problems/` folder (see README, "Adding a problem"):

```python
\"\"\"One-line description shown by `sciml list`.\"\"\"
import sciml.cli

NAME = "poisson-1d"

def run(options: sciml.cli.RunOptions) -> dict:
    ...                      # build objects, sciml.fit, write PNGs into options.out
    return {"rel_l2": ...}   # the figures a user checks

if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
```

`sciml list` reads NAME and the docstring without importing the script (fast);
`sciml run NAME` imports it and calls `run`, then writes `metrics.json` and
`report.md` beside the plots.
"""

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
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Options every problem takes.

    - `quick`: small sizes (about 20 s on a 2-core CPU), for `sciml run all --quick`.
    - `steps`: override of the number of training steps (None: the problem's default).
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
        """The `--steps` override if given, else `default`."""
        return default if self.steps is None else self.steps


@dataclasses.dataclass(frozen=True)
class ProblemEntry:
    name: str
    description: str
    path: pathlib.Path


class CLIError(Exception):
    """A bad option or file: printed as `sciml: error: ...`, exit status 2."""


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
    candidates.append(pathlib.Path(__file__).resolve().parent.parent / "problems")
    seen, out = set(), []
    for c in candidates:
        if c.is_dir() and c.resolve() not in seen:
            seen.add(c.resolve())
            out.append(c)
    return out


def discover(problems_dir: str | None = None) -> dict[str, ProblemEntry]:
    """Registered problems: every `*.py` in the problems folder that defines `NAME`."""
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
            if not isinstance(name, str) or name in found:
                continue
            doc = (ast.get_docstring(tree) or "").strip().splitlines()
            found[name] = ProblemEntry(name, doc[0] if doc else "", path)
        if found:
            break
    return found


def _load_run(entry: ProblemEntry) -> Callable:
    spec = importlib.util.spec_from_file_location(f"sciml_problem_{entry.path.stem}", entry.path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise CLIError(f"problem script {entry.path} defines no run(options) function.")
    return module.run


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


def _write_report(
    out: pathlib.Path, name: str, description: str, metrics: dict, since: float | None = None
) -> None:
    lines = [f"# {name}", "", description, "", "| metric | value |", "|---|---|"]
    for k, v in metrics.items():
        lines.append(f"| {k} | {_fmt(v)} |")
    lines += ["", "[metrics.json](metrics.json)", ""]
    for png in _plots(out, since):
        lines += [f"![{png.stem}]({png.name})", ""]
    (out / "report.md").write_text("\n".join(lines))


def _check_out_dir(path: pathlib.Path) -> None:
    """Refuses an `--out` that cannot take the results, before any work: a file, a
    directory that cannot be created, or one that cannot be written to."""
    if path.exists() and not path.is_dir():
        raise CLIError(f"--out {path}: is a file; name a directory for the results.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise CLIError(
            f"--out {path}: cannot write results there ({e.strerror or e}); name a "
            "directory you can write to."
        ) from None


def run_problem(entry: ProblemEntry, options: RunOptions, run: Callable | None = None) -> dict:
    """Runs one problem into `options.out`; returns its metrics (with wall time)."""
    _check_out_dir(options.out)
    options.out.mkdir(parents=True, exist_ok=True)
    if run is None:
        run = _load_run(entry)
    import jax

    # A problem may switch float64 on for itself; the next one starts from the setting
    # the runner had.
    x64 = bool(jax.config.jax_enable_x64)
    # File times have coarse resolution on some file systems: allow a second.
    started = time.time() - 1.0
    t0 = time.perf_counter()
    try:
        metrics = run(options)
    finally:
        jax.config.update("jax_enable_x64", x64)
    if not isinstance(metrics, dict):
        raise CLIError(f"{entry.path}: run() must return a dict of metrics, got {type(metrics)}.")
    metrics = dict(metrics)
    metrics["wall_time_s"] = time.perf_counter() - t0
    record = {
        "problem": entry.name,
        "description": entry.description,
        "options": {"quick": options.quick, "steps": options.steps, "seed": options.seed},
        "metrics": _jsonable(metrics),
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
    }
    (options.out / "metrics.json").write_text(json.dumps(record, indent=1))
    _write_report(options.out, entry.name, entry.description, metrics, since=started)
    return metrics


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    # jax.random.key takes the seed modulo 2**32 (without float64), so a larger one
    # silently repeats a smaller one's numbers.
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {value}")
    return value


def _add_run_options(p: argparse.ArgumentParser, *, out_default: str | None) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes (about 20 s each)")
    p.add_argument("--steps", type=_positive_int, default=None, help="override training steps")
    p.add_argument("--seed", type=_seed, default=0, help="PRNG seed (default 0)")
    p.add_argument(
        "--out",
        default=out_default,
        help="output directory (default runs/NAME; for 'all': runs/ with one folder each)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _cmd_list(args) -> int:
    problems = discover(args.problems)
    if not problems:
        raise CLIError("no problems found: run from the checkout or pass --problems DIR.")
    width = max(len(n) for n in problems)
    for name, entry in sorted(problems.items()):
        print(f"{name:<{width}}  {entry.description}")
    return 0


def _cmd_run(args) -> int:
    problems = discover(args.problems)
    if args.name == "all":
        selected = sorted(problems)
        if not selected:
            raise CLIError("no problems found: run from the checkout or pass --problems DIR.")
    else:
        if args.name not in problems:
            known = ", ".join(sorted(problems)) or "(none found)"
            raise CLIError(f"unknown problem {args.name!r}. Known problems: {known}.")
        selected = [args.name]
    base = pathlib.Path(args.out) if args.out else pathlib.Path("runs")
    _check_out_dir(base)  # before the first problem runs
    started = time.time() - 1.0
    rows, failed = [], []
    for name in selected:
        out = base / name if (args.name == "all" or not args.out) else base
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
    if args.name == "all":
        _write_index(base, rows, problems, started)
        print(f"report: {base / 'report.md'}")
    if failed:
        print(f"sciml: {len(failed)} problem(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _write_index(base: pathlib.Path, rows, problems, started: float | None = None) -> None:
    base.mkdir(parents=True, exist_ok=True)
    lines = ["# sciml run all", "", "| problem | description | status | wall time (s) | report |"]
    lines.append("|---|---|---|---|---|")
    for name, out, metrics in rows:
        rel = os.path.relpath(out, base)
        status = "failed" if metrics is None else "ok"
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
        for png in _plots(out, started):
            lines += [f"![{name}: {png.stem}]({rel}/{png.name})", ""]
    (base / "report.md").write_text("\n".join(lines))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sciml", description="Scientific machine learning on JAX: run problems and tools."
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    pl = sub.add_parser("list", help="list the registered problems")
    pl.add_argument("--problems", help="folder of problem scripts (default: ./problems)")
    pl.set_defaults(func=_cmd_list)
    pr = sub.add_parser("run", help="run a problem (or 'all')")
    pr.add_argument("name", help="problem name from `sciml list`, or 'all'")
    pr.add_argument("--problems", help="folder of problem scripts (default: ./problems)")
    _add_run_options(pr, out_default=None)
    pr.set_defaults(func=_cmd_run)
    for command, module, help_text in _FAMILY_COMMANDS:
        if _family_available(module):
            pf = sub.add_parser(command, help=help_text, add_help=False)
            pf.add_argument("rest", nargs=argparse.REMAINDER)
            pf.set_defaults(func=_family_runner(command, module))
    return p


def _family_runner(command: str, module: str):
    def run(args) -> int:
        return importlib.import_module(module).main(list(args.rest), prog=f"sciml {command}")

    return run


# Family commands: (subcommand, module with main(argv) -> int, help). They are parsed
# by their own module, imported only when used, so `sciml list` stays fast.
_FAMILY_COMMANDS = (
    ("kinetics", "sciml.kinetics._cli", "microkinetic models: simulate and fit mechanisms"),
    ("operator", "sciml.operators._cli", "train DeepONet / LSSL on DeepXDE-layout npz files"),
)


def _family_available(module: str) -> bool:
    parts = module.split(".")[1:]
    here = pathlib.Path(__file__).resolve().parent
    return here.joinpath(*parts[:-1], parts[-1] + ".py").is_file()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sciml` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    # A family command gets every argument after its name untouched: argparse's
    # REMAINDER drops a leading option, so `sciml kinetics --help` failed as an
    # unrecognised argument of `sciml`.
    family = {c: m for c, m, _ in _FAMILY_COMMANDS if _family_available(m)}
    if argv and argv[0] in family:
        args = argparse.Namespace(rest=argv[1:], func=_family_runner(argv[0], family[argv[0]]))
    else:
        args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as e:
        parser.exit(2, f"sciml: error: {e}\n")


def script_main(name: str, run: Callable, argv: Sequence[str] | None = None) -> int:
    """`python problems/x.py [--quick] [--steps N] [--seed S] [--out DIR] [--quiet]`."""
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
        metrics = run_problem(entry, options, run)
    except CLIError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    print(f"{name}: {_fmt(metrics)}")
    print(f"wrote {options.out / 'metrics.json'} and {options.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
