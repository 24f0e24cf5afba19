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
`report.md` beside the plots. Problems are looked up in `$SCIML_PROBLEMS`, then
`./problems`, then the problems shipped with sciml; a name defined twice is run from
the first folder, with a warning naming both files.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._run import (
    ProblemEntry as ProblemEntry,
    RunOptions as RunOptions,
    _add_run_options,
    _cmd_list,
    _cmd_run,
    discover as discover,
    run_problem as run_problem,
    script_main as script_main,
)
from ._validators import CLIError as CLIError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sciml", description="Scientific machine learning on JAX: run problems and tools."
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    pl = sub.add_parser("list", help="list the registered problems")
    pl.add_argument("--problems", help="folder of problem scripts (default: ./problems)")
    pl.set_defaults(func=_cmd_list)
    pr = sub.add_parser("run", help="run a problem (or 'demo', or 'all')")
    pr.add_argument(
        "name", help="problem name from `sciml list`, 'demo' (one per family) or 'all'"
    )
    pr.add_argument("--problems", help="folder of problem scripts (default: ./problems)")
    _add_run_options(pr, out_default=None)
    pr.set_defaults(func=_cmd_run)
    for command, module, help_text in _FAMILY_COMMANDS:
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
    ("kinetics", "sciml.cli.kinetics", "microkinetic models: simulate and fit mechanisms"),
    ("operator", "sciml.cli.operator", "train DeepONet / FNO / LSSL on DeepXDE-layout npz files"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sciml` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    # A family command gets every argument after its name untouched: argparse's
    # REMAINDER drops a leading option, so `sciml kinetics --help` failed as an
    # unrecognised argument of `sciml`.
    family = {c: m for c, m, _ in _FAMILY_COMMANDS}
    if argv and argv[0] in family:
        args = argparse.Namespace(rest=argv[1:], func=_family_runner(argv[0], family[argv[0]]))
    else:
        args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as e:
        parser.exit(2, f"sciml: error: {e}\n")
