"""Executes the notebooks in place, so the docs site shows their outputs.

    .venv/bin/python docs/execute_notebooks.py [notebooks/NAME.ipynb ...]   (make notebooks)

The site renders the stored outputs and never runs a notebook: executing all six takes
minutes on two cores, and the test suite already runs them (nbmake). Each executed
notebook records a hash of its code cells in its metadata (`sciml.code_sha256`);
tests/test_docs.py fails when a code cell changed after the last execution, so the
rendered outputs cannot silently drift from the code.
"""

import hashlib
import os
import pathlib
import sys


ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def code_sha256(nb: dict) -> str:
    """The hash of a notebook's code cells, in order (outputs and markdown excluded)."""
    h = hashlib.sha256()
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            src = cell["source"]
            h.update(("".join(src) if isinstance(src, list) else src).encode())
            h.update(b"\0")
    return h.hexdigest()


def drop_stderr(nb) -> None:
    """Removes stderr streams (progress bars, tqdm's notice without ipywidgets) from the
    stored outputs; the test suite's runs still show them."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [o for o in cell["outputs"] if o.get("name") != "stderr"]


def execute(path: pathlib.Path, timeout: int = 1800) -> None:
    """Runs `path` top to bottom in its folder and stores outputs and the code hash."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # Inline figures need the notebook's own backend, not a headless one from the shell.
    os.environ.pop("MPLBACKEND", None)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    drop_stderr(nb)
    nb.metadata["sciml"] = {"code_sha256": code_sha256(nb)}
    nbformat.write(nb, path)


if __name__ == "__main__":
    paths = [pathlib.Path(p) for p in sys.argv[1:]] or sorted(NOTEBOOKS.glob("*.ipynb"))
    for p in paths:
        print(f"executing {p}", flush=True)
        execute(p)
