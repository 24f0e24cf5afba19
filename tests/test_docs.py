"""The documentation: every public name has a docstring and an API page, every
cross-reference and nav entry of the site resolves, and the notebooks' stored outputs
come from their current code.

The checks read files and import sciml only (about a second). The full `mkdocs build
--strict` (which also checks every public name has an entry on its API page) is marked
slow, and skipped with the reason where the docs extra is not installed: CI installs
the tests extra only, and `make docs` runs the same strict build.
"""

import ast
import importlib
import importlib.util
import inspect
import json
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"

# The packages (and the one public plain module) whose names the API reference lists,
# each with its page under docs/api/.
PAGES = {
    "sciml": "sciml.md",
    "sciml.train": "train.md",
    "sciml.nn": "nn.md",
    "sciml.ode": "ode.md",
    "sciml.pinn": "pinn.md",
    "sciml.symbolic": "symbolic.md",
    "sciml.kinetics": "kinetics.md",
    "sciml.operators": "operators.md",
    "sciml.data": "data.md",
    "sciml.ensemble": "ensemble.md",
    "sciml.koopman": "koopman.md",
    "sciml.plot": "plot.md",
    "sciml.cli": "cli.md",
}


# Public names that have no docstring the API pages can show, in files this test's change
# could not edit: constants without an attribute docstring (a string literal after the
# assignment), and LevenbergMarquardt, an alias assignment of GaussNewton. Remove a name
# once it is documented (test_known_undocumented_names_are_still_undocumented says when).
KNOWN_UNDOCUMENTED: set[str] = set()


def _exports(modname: str) -> dict[str, str]:
    """Public name -> the module that defines or re-exports it: `__all__`, else the
    module's redundant aliases (`from ._x import a as a`) and the functions and classes
    it defines under a public name."""
    mod = importlib.import_module(modname)
    tree = ast.parse(pathlib.Path(mod.__file__).read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            source = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                                 mod.__spec__.parent)
            found.update({a.name: source for a in node.names if a.asname == a.name})
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            found[node.name] = modname
    names = getattr(mod, "__all__", found)
    return {n: found.get(n, modname) for n in names if not inspect.ismodule(getattr(mod, n))}


def public_names(modname: str) -> list[str]:
    """The public names of `modname` (see `_exports`)."""
    return list(_exports(modname))


def attribute_docstring(modname: str, name: str) -> str:
    """The string literal that follows `name = ...` at the top of module `modname`."""
    mod = importlib.import_module(modname)
    body = ast.parse(pathlib.Path(mod.__file__).read_text()).body
    for node, after in zip(body, body[1:]):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                return str(after.value.value).strip()
    return ""


def docstring(modname: str, name: str) -> str:
    """The docstring written for public name `name` of `modname`: a class's own (not one
    dataclasses made up from its fields, nor one inherited), a function's, or a
    constant's attribute docstring (its type's docstring is not one)."""
    obj = getattr(importlib.import_module(modname), name)
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__") or ""
        return "" if doc.startswith(f"{obj.__name__}(") else doc.strip()
    if callable(obj):
        return (getattr(obj, "__doc__", None) or "").strip()
    return attribute_docstring(_exports(modname)[name], name)


def _undocumented() -> set[str]:
    return {f"{m}.{n}" for m in PAGES for n in public_names(m) if not docstring(m, n)}


def test_public_names_collected():
    # Guards the collection itself: a change that found no names would pass vacuously.
    assert {"fit", "GaussNewton", "SSBroyden2"} <= set(public_names("sciml"))
    assert {"NeuralODE", "ErrorEstimateRegulariser"} <= set(public_names("sciml.ode"))
    assert "history" in public_names("sciml.plot")
    assert sum(len(public_names(m)) for m in PAGES) > 250


def test_every_public_name_has_a_docstring():
    missing = sorted(_undocumented() - KNOWN_UNDOCUMENTED)
    assert not missing, (
        "public names without a docstring (a summary line, **Arguments:**, **Returns:**; "
        "a constant takes a string literal after its assignment): " + ", ".join(missing)
    )


def test_known_undocumented_names_are_still_undocumented():
    # The class alias is checked by the site build (it has no API entry of its own).
    fixed = {n for n in KNOWN_UNDOCUMENTED if "LevenbergMarquardt" not in n} - _undocumented()
    assert not fixed, f"documented now: remove {sorted(fixed)} from KNOWN_UNDOCUMENTED"


def test_docstring_check_catches_a_missing_one(tmp_path, monkeypatch):
    (tmp_path / "fakepkg").mkdir()
    (tmp_path / "fakepkg" / "__init__.py").write_text(textwrap.dedent('''
        import equinox as eqx

        class Bare(eqx.Module):
            x: int

        class Documented(eqx.Module):
            """A summary line."""
            x: int

        def bare(): pass

        LIMITS = {"a": 1}

        TOLERANCE = 1e-6
        """The tolerance."""
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    # equinox/dataclasses fill in "Bare(x: int)"; a dict's docstring is dict's own.
    assert [n for n in public_names("fakepkg") if not docstring("fakepkg", n)] == ["Bare", "bare"]
    assert attribute_docstring("fakepkg", "LIMITS") == ""
    assert attribute_docstring("fakepkg", "TOLERANCE") == "The tolerance."


def _nav_targets() -> list[str]:
    return re.findall(r"^\s*-\s+(?:[^:\n]+:\s+)?(\S+\.(?:md|ipynb))\s*$",
                      MKDOCS_YML.read_text(), flags=re.M)


def test_every_api_page_is_in_the_nav_and_documents_its_package():
    nav = _nav_targets()
    for modname, page in PAGES.items():
        assert f"api/{page}" in nav, f"docs/api/{page} ({modname}) is not in mkdocs.yml's nav"
        text = (DOCS / "api" / page).read_text()
        assert f"::: {modname}\n" in text, f"docs/api/{page} does not document {modname}"


def test_nav_entries_exist():
    nav = _nav_targets()
    assert len(nav) > 20
    missing = [t for t in nav if not (DOCS / t).exists()]
    assert not missing, f"mkdocs.yml nav entries with no file under docs/: {missing}"


def _resolve(identifier: str) -> bool:
    """Whether `a.b.C.d` names an object: the longest importable module prefix, then
    attributes."""
    parts = identifier.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def _markdown_pages():
    return [p for p in DOCS.rglob("*.md") if "notebooks" not in p.parts]


def test_cross_references_resolve():
    # mkdocstrings' `[text][sciml.x.Y]` and relative links `[text](page.md#anchor)`.
    bad, refs = [], 0
    for page in _markdown_pages():
        # Code and equations hold brackets that are not links.
        text = re.sub(r"```.*?```|\\\[.*?\\\]|\\\(.*?\\\)", "", page.read_text(), flags=re.S)
        for ident in re.findall(r"\]\[(sciml(?:\.\w+)*)\]", text):
            refs += 1
            if not _resolve(ident):
                bad.append(f"{page.relative_to(ROOT)}: [{ident}]")
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"\w+://", link) or link.startswith("#"):
                continue
            target = (page.parent / link.split("#")[0]).resolve()
            if not target.exists():
                bad.append(f"{page.relative_to(ROOT)}: ({link})")
    assert refs > 50
    assert not bad, "broken cross-references: " + ", ".join(bad)


def test_cross_reference_check_catches_a_broken_one():
    assert _resolve("sciml.ode.NeuralODE") and _resolve("sciml.fit")
    assert not _resolve("sciml.ode.NoSuchModel") and not _resolve("sciml.nosuchmodule")


def _code_sha256(nb):
    sys.path.insert(0, str(DOCS))
    try:
        return importlib.import_module("execute_notebooks").code_sha256(nb)
    finally:
        sys.path.remove(str(DOCS))


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_outputs_match_its_code(path):
    nb = json.loads(path.read_text())
    fix = f"re-execute it: .venv/bin/python docs/execute_notebooks.py notebooks/{path.name}"
    stamp = nb["metadata"].get("sciml", {}).get("code_sha256")
    assert stamp is not None, f"{path.name} is stored without outputs: {fix}"
    assert stamp == _code_sha256(nb), f"{path.name}'s code changed since it ran: {fix}"
    counts = [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name} ran out of order: {fix}"
    assert any(o.get("data", {}).get("image/png") for c in nb["cells"] if c["cell_type"] == "code"
               for o in c["outputs"]), f"{path.name} stores no plot"


def test_site_loads_nothing_from_the_network():
    # The site renders offline: scripts and styles are local files (MathJax is put into
    # the site by the docs/offline_mathjax.py hook) and the theme loads no web fonts.
    text = MKDOCS_YML.read_text()
    for block in ("extra_javascript", "extra_css"):
        found = re.search(rf"^{block}:\n((?:\s+-.*\n|\s*#.*\n)+)", text, flags=re.M)
        entries = re.findall(r"^\s+-\s+(\S+)", found.group(1), flags=re.M) if found else []
        remote = [e for e in entries if re.match(r"\w+://|//", e)]
        assert not remote, f"mkdocs.yml {block} loads {remote} from the network"
    assert "javascripts/mathjax/tex-chtml.js" in text and "docs/offline_mathjax.py" in text
    assert re.search(r"^  font: false$", text, flags=re.M), "the theme would fetch web fonts"


# About 8 s of CPU (35 s at load 11 on 2 cores): real-size, so `make docs` and
# `make test-all` run it, not the default suite.
@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    if not all(importlib.util.find_spec(m) for m in ("mkdocs", "mkdocstrings", "mkdocs_jupyter")):
        pytest.skip("the docs extra is not installed (pip install -e '.[docs]'; make docs does)")
    mkdocs = shutil.which("mkdocs", path=str(pathlib.Path(sys.executable).parent))
    proc = subprocess.run(
        [mkdocs or "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1",
                                                       "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    # Equations render offline: MathJax and its fonts are in the site, no page loads a
    # script, style or font from another host.
    assert (site / "javascripts/mathjax/tex-chtml.js").stat().st_size > 100_000
    assert list(site.glob("javascripts/mathjax/output/chtml/fonts/woff-v2/*.woff"))
    for page in site.rglob("*.html"):
        remote = re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]*",
                            page.read_text())
        assert not remote, f"{page.relative_to(site)} loads {remote}"
    # Every public name has its entry (an anchor) on its package's API page; names
    # re-exported from other libraries (sciml.nn's jax initialisers) are linked instead.
    missing = []
    for modname, page in PAGES.items():
        html = (tmp_path / "site" / "api" / page.replace(".md", ".html")).read_text()
        mod = importlib.import_module(modname)
        for name in public_names(modname):
            outside = not getattr(getattr(mod, name), "__module__", "sciml").startswith("sciml")
            if f'id="{modname}.{name}"' not in html and not outside:
                missing.append(f"{modname}.{name}")
    assert set(missing) <= KNOWN_UNDOCUMENTED, f"no API entry: {sorted(missing)}"
