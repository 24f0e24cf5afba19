"""The import graph, read with `ast`: the layering of DESIGN.md holds.

- no import cycle inside `sciml/` (imports inside functions count: a lazy import is
  still a dependency);
- the loop (`sciml.train`) imports no family, the command line or the applications;
- no family imports the command line or the applications;
- `problems/` and `benchmarks/` import public modules only;
- no `jax.config.update` inside `sciml/` (process-global configuration).
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sciml"
FAMILIES = ("ode", "pinn", "symbolic", "kinetics", "operators", "ensemble", "koopman")
APPLICATIONS = ("cli", "experiments")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_package(path: pathlib.Path) -> bool:
    return path.name == "__init__.py"


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of import nodes under `if TYPE_CHECKING:` (not run, so not a dependency)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for b in node.body for n in ast.walk(b)}
    return out


def imports_of(path: pathlib.Path) -> list[tuple[str, int]]:
    """Absolute names of the modules a file imports, with line numbers.

    `from a import b` counts as an import of `a.b` when `a/b.py` or `a/b/` exists (a
    submodule), else of `a`.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_only(tree)
    here = _module_name(path).split(".")
    package = here if _is_package(path) else here[:-1]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                target = ROOT.joinpath(*sub.split("."))
                if target.with_suffix(".py").exists() or (target / "__init__.py").exists():
                    out.append((sub, node.lineno))
                else:
                    out.append((mod, node.lineno))
    return out


def _files(folder: pathlib.Path):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _graph():
    modules = {_module_name(p): p for p in _files(PACKAGE)}
    edges = {}
    for name, path in modules.items():
        deps = set()
        for imported, _ in imports_of(path):
            if imported.split(".")[0] != "sciml":
                continue
            # The nearest module of ours that `imported` names (a name inside a module
            # resolves to the module).
            parts = imported.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                deps.add(".".join(parts))
        edges[name] = deps
    return modules, edges


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycle_inside_sciml():
    modules, edges = _graph()
    # A child importing a sibling through its package (`from . import x`) is resolved
    # to the sibling by `_graph`; a child importing a name from its package's
    # `__init__` (which imports the child) is a cycle, and reported.
    colour = {m: 0 for m in modules}
    stack: list[str] = []
    cycles = []

    def visit(m):
        colour[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if colour[d] == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif colour[d] == 0:
                visit(d)
        stack.pop()
        colour[m] = 2

    for m in sorted(modules):
        if colour[m] == 0:
            visit(m)
    assert not cycles, "import cycles inside sciml/:\n" + "\n".join(
        " -> ".join(c) for c in cycles
    )


def test_the_loop_imports_no_family_cli_or_application():
    modules, edges = _graph()
    loop = [m for m in modules if _area(m) == "train"]
    assert "sciml.train._fit" in loop  # the check below is not vacuous
    bad = []
    for m in loop:
        for d in edges[m]:
            # The loop is the bottom layer: nothing of sciml outside itself.
            if _area(d) != "train":
                bad.append(f"{m} imports {d}")
    assert not bad, "\n".join(bad)


def test_no_family_imports_the_command_line_or_the_applications():
    modules, edges = _graph()
    bad = []
    for m, deps in edges.items():
        if _area(m) not in FAMILIES + ("nn", "data", "train"):
            continue
        for d in deps:
            if _area(d) in APPLICATIONS:
                bad.append(f"{m} imports {d}")
    assert not bad, "\n".join(bad)


def _private(name: str) -> bool:
    return any(part.startswith("_") and part != "__future__" for part in name.split("."))


@pytest.mark.parametrize("folder", ["problems", "benchmarks"])
def test_scripts_import_public_modules_only(folder):
    bad = []
    for path in _files(ROOT / folder):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                if n.split(".")[0] == "sciml" and _private(n):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {n}")
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not (
                node.attr.startswith("__")
            ):
                root = node
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in ("sciml", "so", "sk"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} reads {ast.unparse(node)}")
    assert not bad, "\n".join(bad)


def test_no_process_global_configuration_inside_sciml():
    bad = []
    for path in _files(PACKAGE):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("config.update"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "\n".join(bad)


def test_the_graph_reader_sees_what_python_sees(tmp_path, monkeypatch):
    """The reader itself against a hand-made package: a relative import, a submodule
    named in `from . import`, a lazy import and a TYPE_CHECKING-only import."""
    pkg = tmp_path / "sciml" / "fam"
    pkg.mkdir(parents=True)
    (tmp_path / "sciml" / "__init__.py").write_text("")
    (tmp_path / "sciml" / "cli.py").write_text("")
    (pkg / "__init__.py").write_text("from . import _a\n")
    (pkg / "_a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from ._b import thing\n"
        "if TYPE_CHECKING:\n    from .. import cli\n"
        "def f():\n    from ..cli import main\n"
    )
    (pkg / "_b.py").write_text("thing = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    names = sorted(n for n, _ in imports_of(pkg / "_a.py"))
    assert names == ["sciml.cli", "sciml.fam._b", "typing"]
    assert sorted(n for n, _ in imports_of(pkg / "__init__.py")) == ["sciml.fam._a"]
