"""The README's `fit` example runs as written (with fewer steps)."""

import pathlib
import re

import numpy as np


def test_readme_example_runs(tmp_path, monkeypatch):
    text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("2000)", "300)").replace("300)]", "30)]")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    h = scope["result"].history
    assert set(h) == {"step", "stage", "loss", "max_residual", "time"}
    assert np.all(np.isfinite(h["loss"])) and h["loss"][-1] < h["loss"][0]
    assert (tmp_path / "poisson.eqx").exists()
