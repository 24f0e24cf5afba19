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


def test_readme_update_example_descends(tmp_path):
    """The README's own-update example, run on a least-squares problem whose minimiser is
    known in closed form (the normal equations)."""
    import jax
    import jax.numpy as jnp

    import sciml

    text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (code,) = [b for b in blocks if "class GradientDescent" in b]
    key = jax.random.key(0)
    x = jax.random.normal(key, (40, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5]) + 0.3
    data = (x, y)
    model = {"w": jnp.zeros(3), "b": jnp.zeros(())}

    def loss(m, batch, *, key):
        r = batch[0] @ m["w"] + m["b"] - batch[1]
        return 0.5 * jnp.mean(r**2), {"max_abs": jnp.max(jnp.abs(r))}

    code = code.replace("steps=500, key=key)", "steps=2000, key=key, data=data,\n"
                        "                   progress=False)")
    scope = {"sciml": sciml, "jax": jax, "model": model, "loss": loss, "key": key,
             "data": data}
    exec(compile(code, "README.md", "exec"), scope)
    fitted = scope["result"].model
    a = np.concatenate([np.asarray(x), np.ones((40, 1))], axis=1)
    exact = np.linalg.lstsq(a, np.asarray(y), rcond=None)[0]
    np.testing.assert_allclose(np.append(fitted["w"], fitted["b"]), exact, atol=1e-6)
    h = scope["result"].history
    assert set(h) == {"step", "stage", "loss", "max_abs", "time"}
