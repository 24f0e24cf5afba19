"""Operator layers, measured side by side in one run (issue 4, "Must show").

1. LSSL views: convolutional (Krylov kernel + FFT) against recurrent (`lax.scan`)
   forward time at L = 1k, 4k, 16k, and their agreement in float32 at L = 1000, N = 32
   for LegS, LegT and LagT.
2. DeepONet on the antiderivative (GRF l = 0.2, m = 100, 1000 training functions,
   branch [100, 40, 40], trunk [1, 40, 40]): test MSE and training time
   (target MSE <= 5e-5 within 2 minutes), via `problems/deeponet_antiderivative.py`.
3. LSSL (LegS, N = 32) on the antiderivative: rel L2 (target <= 3e-2), and at 2x and
   1/2x the sampling rate with dt rescaled (target <= 5e-2) and not rescaled (should
   fail), via `problems/lssl_antiderivative.py`.

4. DeepONet training speed against DeepXDE (PyTorch backend) on the same data (1000
   aligned antiderivative functions, m = 100) and network (`DeepONetCartesianProd`,
   [100, 40, 40] / [1, 40, 40], ReLU, Glorot normal, Adam 1e-3, full batch). DeepXDE
   runs in its own environment, given by `--deepxde-python` (a venv with
   `pip install torch deepxde`); the section is skipped without it.

    python benchmarks/operators.py [--quick] [--only views,deeponet,lssl,deepxde]
        [--deepxde-python /path/to/venv/bin/python] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import subprocess
import tempfile
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import sciml
import sciml.cli
import sciml.data as sd
import sciml.operators as so


ROOT = pathlib.Path(__file__).resolve().parent.parent


def _time(fn, *args, repeat=5):
    jax.block_until_ready(fn(*args))  # compile
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def views(quick: bool) -> list[str]:
    lines = ["### LSSL views (float32, N = 32)", ""]
    lines += ["| measure | L | max rel. difference conv vs recurrent |", "|---|---|---|"]
    key = jax.random.key(0)
    for kind in (so.LegS(), so.LegT(), so.LagT()):
        layer = so.LSSL(32, 1, 1, init=kind, dt_min=1e-3, dt_max=1e-2, dtype=jnp.float32, key=key)
        layer = eqx.tree_at(lambda m: m.D, layer, jnp.zeros_like(layer.D))
        u = jax.random.normal(jax.random.key(1), (1000, 1), jnp.float32)
        conv = layer(u, view=so.Convolutional())
        rec = layer(u, view=so.Recurrent())
        diff = float(jnp.max(jnp.abs(conv - rec)) / jnp.max(jnp.abs(rec)))
        lines.append(f"| {type(kind).__name__} | 1000 | {diff:.2e} |")
    lines += ["", "Forward pass of one LSSL layer (N = 32, H = 8 features), jitted, best of 5:", "",
              "| L | batch | convolutional (ms) | recurrent (ms) | recurrent / conv |",
              "|---|---|---|---|---|"]
    h = 8
    layer = so.LSSL(32, h, 1, init=so.LegS(), dtype=jnp.float32, key=key)
    # vmap over the batch: the kernel does not depend on u, so it is computed once.
    conv = jax.jit(lambda m, u: jax.vmap(lambda x: m(x, view=so.Convolutional()))(u))
    rec = jax.jit(lambda m, u: jax.vmap(lambda x: m(x, view=so.Recurrent()))(u))
    for length in (1000, 4000) if quick else (1000, 4000, 16000):
        for batch in (1, 16):
            u = jax.random.normal(jax.random.key(2), (batch, length, h), jnp.float32)
            tc = _time(conv, layer, u)
            tr = _time(rec, layer, u)
            lines.append(
                f"| {length} | {batch} | {1e3 * tc:.2f} | {1e3 * tr:.2f} | {tr / tc:.1f}x |"
            )
    return lines


def _problem(name: str):
    path = ROOT / "problems" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run


def _run_problem(name: str, quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as d:
        options = sciml.cli.RunOptions(name=name, quick=quick, out=pathlib.Path(d), progress=False)
        return _problem(name)(options)


def deeponet(quick: bool) -> list[str]:
    m = _run_problem("deeponet_antiderivative", quick)
    ok = m["test_mse"] <= 5e-5 and m["train_s"] <= 120
    return [
        "### DeepONet, antiderivative (GRF l = 0.2, m = 100, [100,40,40] / [1,40,40])", "",
        "| train functions | steps | test MSE | test rel. L2 | training (s) | steps/s | target |",
        "|---|---|---|---|---|---|---|",
        f"| {m['train_functions']} | {m['steps']} | {m['test_mse']:.2e} | "
        f"{m['test_rel_l2']:.2e} | {m['train_s']:.1f} | {m['steps_per_s']:.0f} | "
        f"MSE <= 5e-5 in <= 120 s: {'met' if ok else 'NOT met'} |",
    ]


def lssl(quick: bool) -> list[str]:
    m = _run_problem("lssl_antiderivative", quick)
    rows = [
        "### LSSL (LegS, N = 32), antiderivative", "",
        "| test sampling | dt | mean rel. L2 | target |", "|---|---|---|---|",
        f"| m = 100 (training rate) | learned | {m['rel_l2_m100']:.2e} | <= 3e-2 |",
    ]
    for mt, label in ((200, "2x"), (50, "1/2x"), (400, "4x")):
        rows.append(f"| m = {mt} ({label}) | rescaled | {m[f'rel_l2_m{mt}']:.2e} | <= 5e-2 |")
        rows.append(
            f"| m = {mt} ({label}) | not rescaled | {m[f'rel_l2_m{mt}_not_rescaled']:.2e} | "
            "fails, as it should |"
        )
    rows.append(f"| m = 100, analytic integrator (A = 0) | h | {m['integrator_rel_l2']:.2e} | |")
    rows.append("")
    rows.append(f"training: {m['steps']} steps in {m['train_s']:.1f} s")
    return rows


_DEEPXDE_DRIVER = """
import json, os, sys, time
os.environ["DDE_BACKEND"] = "pytorch"
import numpy as np
import deepxde as dde
path, steps = sys.argv[1], int(sys.argv[2])
dde.config.set_random_seed(0)
f = np.load(path, allow_pickle=True)
x = (f["X"][0].astype(np.float32), f["X"][1].astype(np.float32))
y = f["y"].astype(np.float32)
data = dde.data.TripleCartesianProd(X_train=x, y_train=y, X_test=x, y_test=y)
net = dde.nn.DeepONetCartesianProd([100, 40, 40], [1, 40, 40], "relu", "Glorot normal")
model = dde.Model(data, net)
model.compile("adam", lr=1e-3)
model.train(iterations=50, display_every=1000, verbose=0)  # warm-up
t0 = time.perf_counter()
model.train(iterations=steps, display_every=10 * steps, verbose=0)
dt = time.perf_counter() - t0
import torch
print(json.dumps({"steps_per_s": steps / dt, "seconds": dt, "threads": torch.get_num_threads(),
                  "loss": float(model.losshistory.loss_train[-1][0])}))
"""


def deepxde(quick: bool, python: str | None) -> list[str]:
    head = ["### DeepONet training speed: sciml against DeepXDE (PyTorch)", ""]
    if not python:
        return head + ["skipped: pass --deepxde-python (a venv with torch and deepxde)."]
    steps = 500 if quick else 3000
    data = sd.antiderivative(sd.GRF(0.2), num=1000, sensors=100, key=jax.random.key(0))
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "train.npz"
        sd.save_npz(path, data)
        driver = pathlib.Path(d) / "driver.py"
        driver.write_text(_DEEPXDE_DRIVER)
        out = subprocess.run([python, str(driver), str(path), str(steps)], capture_output=True,
                             text=True, check=False)
        if out.returncode != 0:
            return head + [f"DeepXDE run failed: {out.stderr.strip().splitlines()[-1:]}"]
        dde = json.loads(out.stdout.strip().splitlines()[-1])
        loaded = so.as_arrays(sd.load_npz(path))
    model = so.DeepONet([100, 40, 40], [1, 40, 40], key=jax.random.key(0))
    t0 = time.perf_counter()
    result = sciml.fit(model, so.mse_loss, optax.adam(1e-3), steps=steps, data=loaded,
                       key=jax.random.key(1), progress=False)
    total = time.perf_counter() - t0
    ours = result.timings["steps_per_second"]
    return head + [
        "| implementation | steps/s (steady state) | wall for the steps (s) | ratio |",
        "|---|---|---|---|",
        f"| DeepXDE 1.x, PyTorch CPU ({dde['threads']} threads) | {dde['steps_per_s']:.0f} | "
        f"{dde['seconds']:.1f} (after 50 warm-up steps) | 1.0x |",
        f"| sciml.fit (JAX CPU) | {ours:.0f} | {total:.1f} (compile included) | "
        f"{ours / dde['steps_per_s']:.1f}x |",
        "",
        f"{steps} full-batch Adam steps on 1000 functions x 100 points, float32.",
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    p.add_argument("--only", default="views,deeponet,lssl,deepxde",
                   help="comma-separated sections")
    p.add_argument("--markdown", help="also write the tables to this file")
    p.add_argument("--deepxde-python", help="python of a venv with torch and deepxde")
    args = p.parse_args(argv)
    sections = {
        "views": views,
        "deeponet": deeponet,
        "lssl": lssl,
        "deepxde": lambda quick: deepxde(quick, args.deepxde_python),
    }
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in sections]
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {sorted(sections)}")
    lines = [f"## benchmarks/operators.py ({jax.devices()[0].platform}, "
             f"{'quick' if args.quick else 'full'})", ""]
    for name in chosen:
        t0 = time.perf_counter()
        lines += sections[name](args.quick)
        lines += ["", f"({name}: {time.perf_counter() - t0:.0f} s)", ""]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        pathlib.Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
