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
5. `lssl-speed` (issue 25): training steps per second of the deep LSSL that
   `sciml operator train --model lssl` builds, on 1000 aligned antiderivative functions
   with 50 sensors: the earlier path (one LU per feature and step, FFT, full batch)
   beside each change alone and the command's default, in one run.
6. `lssl-cli` (issue 25): the command itself with its defaults on that data and on an
   operator no test uses, the forced Duffing oscillator s'' + 0.3 s' + 4 s + 8 s^3 =
   4 u(t), s(0) = s'(0) = 0 (reference: sciml.data.solve_ode); test relative L2 (target
   <= 5e-2), steps/s (target >= 50), and full batches against the default minibatches
   at equal steps.
7. `fno` (issue 29): the FNO on the paper's Burgers (s = 256) and Darcy (s = 85) sets,
   test relative L2 next to the paper's (1.49e-2, 1.08e-2) with the training time, and
   the same weights at 2x and 4x the training resolution, via `problems/fno_burgers.py`
   and `problems/fno_darcy.py`.

    python benchmarks/operators.py [--quick]
        [--only views,deeponet,lssl,deepxde,lssl-speed,lssl-cli,fno]
        [--deepxde-python /path/to/venv/bin/python] [--lssl-compare-steps N]
        [--markdown FILE]
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
import numpy as np
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
    rows.append(f"training: {m['steps']} steps in {m['train_s']:.1f} s "
                f"({m['steps_per_s']:.0f} steps/s after compiling)")
    return rows


_DEEPXDE_DRIVER = """
import json, os, sys, time
os.environ["DDE_BACKEND"] = "pytorch"
import numpy as np
import deepxde as dde
path, steps = sys.argv[1], int(sys.argv[2])
dde.config.set_random_seed(0)
f = np.load(path)  # sciml.data.save_npz's plain arrays: no pickle
x = (f["X_branch"].astype(np.float32), f["X_trunk"].astype(np.float32))
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


class _SolveEachFeature(so.AbstractDiscretisation):
    """The discretisation path before issue 25: `inner`'s general solve (one LU per
    feature and step), whatever the structure of A."""

    inner: so.AbstractDiscretisation

    def __call__(self, A, B, dt):
        return self.inner(A, B, dt)

    def many(self, A, B, dts, *, lower=False):
        return super().many(A, B, dts)


def _aligned_antiderivative(num, key):
    return sd.antiderivative(sd.GRF(0.2), num=num, sensors=50, key=key)


def _duffing(num, key):
    """The forced Duffing oscillator on u ~ GRF(0.2): s'' + 0.3 s' + 4 s + 8 s^3 = 4 u."""
    space = sd.GRF(0.2)
    x = jnp.linspace(0.0, 1.0, 50)

    def solve(f):
        def rhs(t, s):
            force = 4 * space.evaluate(f, t)
            return jnp.stack([s[1], force - 0.3 * s[1] - 4 * s[0] - 8 * s[0] ** 3])

        return sd.solve_ode(rhs, jnp.zeros((2,), f.dtype), x, t0=0.0)[:, 0]

    features = space.sample(key, num)
    u = jax.vmap(lambda f: space.evaluate(f, x))(features)
    s = jax.jit(jax.vmap(solve))(features)
    return sd.TripleCartesianProd(np.asarray(u), np.asarray(x)[:, None], np.asarray(s))


def _fit_lssl(train, *, steps, batch, lr=1e-2, solve_each=False, fft=False, key=0):
    """The deep LSSL of `sciml operator train --model lssl` (16 features, state 32,
    depth 2, LegS, Adam at `lr` halved every steps/4); returns the fit result."""
    h = so.check_aligned(train)
    kwargs = dict(init=so.LegS(), dt_min=h / 2, dt_max=2 * h)
    if solve_each:
        kwargs["discretisation"] = _SolveEachFeature(so.GBT(0.5))
    mkey, fkey = jax.random.split(jax.random.key(key))
    model = so.DeepLSSL("scalar", "scalar", features=16, state_size=32, depth=2,
                        lssl_kwargs=kwargs, key=mkey)
    view = so.Convolutional(direct_up_to=0 if fft else 128)

    def loss(m, b, *, key=None):
        pred = jax.vmap(lambda u: so.sequence_apply(m, u, view=view))(b.branch)
        return jnp.mean((pred - b.y) ** 2)

    arrays = so.as_arrays(train)
    data = sd.FunctionBatches(arrays, batch) if batch < len(train) else arrays
    schedule = optax.exponential_decay(lr, max(steps // 4, 1), 0.5)
    return sciml.fit(model, loss, optax.adam(schedule), steps=steps, data=data, key=fkey,
                     progress=False)


def lssl_speed(quick: bool) -> list[str]:
    train = _aligned_antiderivative(1000, jax.random.key(0))
    slow, fast = (10, 100) if quick else (40, 400)
    # Speed only: the learning rate does not change the cost of a step.
    configs = [
        ("LU per feature and step, FFT, full batch (before)", True, True, 1000, slow),
        ("products instead of LU, FFT, full batch", False, True, 1000, slow),
        ("products, Toeplitz product (L <= 128), full batch", False, False, 1000, slow),
        ("LU per feature and step, FFT, batch 100", True, True, 100, slow),
        ("products, Toeplitz, batch 100 (the command's default)", False, False, 100, fast),
    ]
    lines = [
        "### LSSL training speed: `sciml operator train --model lssl`'s network "
        "(issue 25)", "",
        "1000 aligned antiderivative functions, 50 sensors; DeepLSSL 16 features, state 32, "
        "depth 2, LegS, GBT(1/2); float32.", "",
        "| path | steps | steps/s (after compiling) | compile (s) |", "|---|---|---|---|",
    ]
    for label, solve_each, fft, batch, steps in configs:
        r = _fit_lssl(train, steps=steps, batch=batch, solve_each=solve_each, fft=fft)
        lines.append(f"| {label} | {steps} | {r.timings['steps_per_second']:.1f} | "
                     f"{r.timings['compile']:.1f} |")
    return lines


def _cli(train, test, steps, out):
    from sciml.cli.operator import main as operator_main

    argv = ["train", "--model", "lssl", "--train", str(train), "--test", str(test),
            "--out", str(out), "--quiet"]
    if steps is not None:
        argv += ["--steps", str(steps)]
    t0 = time.perf_counter()
    assert operator_main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["process_s"] = time.perf_counter() - t0
    return metrics


def lssl_cli(quick: bool, compare: int | None = None) -> list[str]:
    steps = 1000 if quick else None  # None: the command's default (10000)
    compare = compare or (300 if quick else 2000)
    lines = [
        "### `sciml operator train --model lssl` with its defaults (issue 25)", "",
        "1000 training and 200 test functions, 50 sensors, GRF(0.2) inputs.", "",
        "| operator | steps | batch | test rel. L2 | steps/s | training (s) | command (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        for name, make in (("antiderivative", _aligned_antiderivative),
                           ("forced Duffing (no test uses it)", _duffing)):
            stem = name.split()[0]
            sd.save_npz(d / f"{stem}_train.npz", make(1000, jax.random.key(1)))
            sd.save_npz(d / f"{stem}_test.npz", make(200, jax.random.key(2)))
            m = _cli(d / f"{stem}_train.npz", d / f"{stem}_test.npz", steps, d / stem)
            lines.append(
                f"| {name} | {m['steps']} | {m['batch_size']} | {m['test_mean_rel_l2']:.2e} | "
                f"{m['steps_per_s']:.0f} | {m['train_time_s']:.1f} | {m['process_s']:.1f} |"
            )
        # The earlier default (full batches, Adam 3e-3) against the default at equal
        # steps, the same network and schedule, on the Duffing data.
        train = sd.load_npz(d / "forced_train.npz")
        test = so.as_arrays(sd.load_npz(d / "forced_test.npz"))
        lines += ["", f"Forced Duffing, {compare} steps each (same network and schedule):", "",
                  "| batch | Adam lr | test rel. L2 | steps/s | training (s) |",
                  "|---|---|---|---|---|"]
        for batch, lr in ((1000, 3e-3), (100, 3e-3), (100, 1e-2)):
            r = _fit_lssl(train, steps=compare, batch=batch, lr=lr)
            rel = so.evaluate(r.model, test)["rel_l2"]
            lines.append(f"| {batch} | {lr:g} | {rel:.2e} | "
                         f"{r.timings['steps_per_second']:.1f} | {r.timings['total']:.1f} |")
    return lines


def fno(quick: bool) -> list[str]:
    lines = ["### FNO on the paper's Burgers and Darcy sets", "",
             "| problem | train functions | steps | rel. L2 at s (paper) | at 2s | at 4s | "
             "training (s) | steps/s |", "|---|---|---|---|---|---|---|---|"]
    for name, paper in (("fno_burgers", "1.49e-2 at 256"), ("fno_darcy", "1.08e-2 at 85")):
        m = _run_problem(name, quick)
        lines.append(
            f"| {name.replace('_', '-')} | {m['train_functions']} | {m['steps']} | "
            f"{m['test_rel_l2_train_res']:.2e} at {m['train_resolution']} ({paper}) | "
            f"{m['test_rel_l2_2x']:.2e} | {m['test_rel_l2_4x']:.2e} | "
            f"{m['train_s']:.0f} | {m['steps_per_s']:.1f} |"
        )
    return lines


def pideeponet(quick: bool) -> list[str]:
    m = _run_problem("pideeponet_antiderivative", quick)
    return [
        "### Physics-informed DeepONet, antiderivative (GRF l = 0.2, m = 100, 5 x 50 tanh)", "",
        "| terms | train functions | steps (x 100 functions) | test rel. L2 (std) | "
        "paper | training (s) | steps/s |", "|---|---|---|---|---|---|---|",
        f"| residual + 1 label per function | {m['train_functions']} | {m['steps']} | "
        f"{m['test_rel_l2_label']:.2e} ({m['test_rel_l2_std_label']:.1e}) | 2.49e-3 "
        f"(2.74e-3) | {m['train_s_label']:.0f} | {m['steps_per_s_label']:.0f} |",
        f"| residual + s(0) = 0 (no solution values) | {m['train_functions']} | "
        f"{m['steps']} | {m['test_rel_l2_physics']:.2e} ({m['test_rel_l2_std_physics']:.1e}) "
        f"| | {m['train_s_physics']:.0f} | {m['steps_per_s_physics']:.0f} |",
    ]


_NEURALOP_DRIVER = """
import json, sys, time
import numpy as np
import torch
from neuralop.models import FNO
path, steps, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
f = np.load(path)
a, u = (torch.tensor(f[k], dtype=torch.float32)[:, None] for k in ("a", "u"))
ta, tu = (torch.tensor(f[k], dtype=torch.float32)[:, None] for k in ("test_a", "test_u"))
batch = int(f["batch"])

def build():
    torch.manual_seed(0)
    # n_modes 30: the real FFT keeps 30 // 2 + 1 = 16 modes, as ours.
    return FNO(n_modes=(30,), in_channels=1, out_channels=1, hidden_channels=64,
               n_layers=4, lifting_channel_ratio=0, projection_channel_ratio=2,
               use_channel_mlp=False, positional_embedding="grid")

def train(model, opt, gen, k=None, until=None):
    done, t0 = 0, time.perf_counter()
    while (k is None or done < k) and (until is None or time.perf_counter() - t0 < until):
        idx = torch.randperm(len(a), generator=gen)
        for i in range(0, len(a) - batch + 1, batch):
            j = idx[i : i + batch]
            opt.zero_grad()
            loss = torch.mean((model(a[j]) - u[j]) ** 2)
            loss.backward()
            opt.step()
            done += 1
            if (k is not None and done >= k) or (
                    until is not None and time.perf_counter() - t0 >= until):
                break
    return done, time.perf_counter() - t0

speed = {}
for threads in (1, 2):
    torch.set_num_threads(threads)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    train(model, opt, gen, k=10)  # warm-up
    # At most a minute each: on a loaded machine 2 threads can run 10x slower.
    done, dt = train(model, opt, gen, k=steps, until=60.0)
    speed[threads] = done / dt
best = max(speed, key=speed.get)
torch.set_num_threads(best)
model = build()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
done, dt = train(model, opt, torch.Generator().manual_seed(2), until=seconds)
with torch.no_grad():
    pred = model(ta)
err = torch.linalg.norm((pred - tu)[:, 0], dim=-1) / torch.linalg.norm(tu[:, 0], dim=-1)
params = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
print(json.dumps({"steps_per_s": speed, "threads": best, "timed_steps": done,
                  "timed_s": dt, "rel_l2": float(err.mean()), "params": params}))
"""


class _StopAfter:
    """A `sciml.fit` callback that stops training `seconds` after it was made."""

    every = 25

    def __init__(self, seconds):
        self.deadline = time.perf_counter() + seconds

    def __call__(self, info):
        return time.perf_counter() >= self.deadline


def _burgers_256(num, key):
    with jax.enable_x64(True):
        data = sd.burgers_periodic(num=num, key=key, grid=1024, stride=4)
    return np.asarray(data.branch, np.float32), np.asarray(data.y, np.float32)


def neuralop(quick: bool, python: str | None, seconds: float | None) -> list[str]:
    head = ["### FNO against neuraloperator (PyTorch), Burgers s = 256", ""]
    if not python:
        return head + ["skipped: pass --neuralop-python (a venv with torch and neuraloperator)."]
    n_train, n_test, batch = (200, 50, 20) if quick else (1000, 200, 20)
    steps = 100 if quick else 300
    seconds = seconds or (30.0 if quick else 120.0)
    a, u = _burgers_256(n_train, jax.random.key(0))
    ta, tu = _burgers_256(n_test, jax.random.key(1))
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "burgers.npz"
        np.savez(path, a=a, u=u, test_a=ta, test_u=tu, batch=batch)
        driver = pathlib.Path(d) / "driver.py"
        driver.write_text(_NEURALOP_DRIVER)
        out = subprocess.run([python, str(driver), str(path), str(steps), str(seconds)],
                             capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return head + [f"neuraloperator run failed: {out.stderr.strip().splitlines()[-1:]}"]
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    train = sd.Fields(a, u)
    test = sd.Fields(ta, tu)
    data = sd.FunctionBatches(so.as_arrays(train, jnp.float32), batch)

    def fit(stop=None, n=steps):
        model = so.FNO(1, 1, 16, 64, dtype=jnp.float32, key=jax.random.key(0))
        return sciml.fit(model, so.mse_loss, optax.adam(1e-3), steps=n, data=data,
                         key=jax.random.key(1), progress=False, callbacks=stop or ())

    ours_speed = fit().timings["steps_per_second"]
    # More steps than fit in the time: the callback ends the run.
    timed = fit([_StopAfter(seconds)], n=int(2 * seconds * ours_speed) + 100)
    ours_err = so.evaluate(timed.model, so.as_arrays(test, jnp.float32))["rel_l2"]
    ours_steps = int(timed.history["step"][-1]) + 1
    params = sum(x.size for x in jax.tree.leaves(eqx.filter(timed.model, eqx.is_array)))
    best = theirs["steps_per_s"][str(theirs["threads"])]
    t1, t2 = theirs["steps_per_s"]["1"], theirs["steps_per_s"]["2"]
    # The timed runs' rates average the machine's load over the same two minutes.
    theirs_long = theirs["timed_steps"] / theirs["timed_s"]
    ours_long = timed.timings["steps_per_second"]
    return head + [
        f"| implementation | real parameters | steps/s ({steps} steps) | steps/s ({seconds:.0f} s"
        f" run) | ratio ({seconds:.0f} s run) | steps in {seconds:.0f} s | test rel. L2 after "
        f"{seconds:.0f} s |", "|---|---|---|---|---|---|---|",
        f"| neuraloperator 2.0 FNO, PyTorch CPU (1 thread {t1:.1f}, 2 threads {t2:.1f}; "
        f"best {theirs['threads']}) | {theirs['params']} | {best:.1f} | {theirs_long:.1f} | "
        f"1.0x | {theirs['timed_steps']} | {theirs['rel_l2']:.2e} |",
        f"| sciml FNO, JAX CPU (compilation in the wall time) | {params} | {ours_speed:.1f} | "
        f"{ours_long:.1f} | {ours_long / theirs_long:.2f}x | {ours_steps} | {ours_err:.2e} |",
        "",
        f"{n_train} training functions, {n_test} test functions, batches of {batch}, "
        f"steady steps/s over {steps} steps after warm-up (neuraloperator: at most 60 s per "
        "thread count) and over the timed runs (ours without its compilation), float32, "
        "Adam 1e-3 (constant).",
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    p.add_argument("--only", default="views,deeponet,lssl,deepxde,lssl-speed,lssl-cli,fno,"
                   "pideeponet,neuralop",
                   help="comma-separated sections")
    p.add_argument("--markdown", help="also write the tables to this file")
    p.add_argument("--deepxde-python", help="python of a venv with torch and deepxde")
    p.add_argument("--lssl-compare-steps", type=int, default=None,
                   help="steps of lssl-cli's minibatch / full-batch comparison (2000)")
    p.add_argument("--neuralop-python", help="python of a venv with torch and neuraloperator")
    p.add_argument("--neuralop-seconds", type=float, default=None,
                   help="neuralop: the equal wall time of the accuracy comparison (120; quick 30)")
    args = p.parse_args(argv)
    sections = {
        "views": views,
        "deeponet": deeponet,
        "lssl": lssl,
        "deepxde": lambda quick: deepxde(quick, args.deepxde_python),
        "lssl-speed": lssl_speed,
        "lssl-cli": lambda quick: lssl_cli(quick, args.lssl_compare_steps),
        "fno": fno,
        "pideeponet": pideeponet,
        "neuralop": lambda quick: neuralop(quick, args.neuralop_python, args.neuralop_seconds),
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
