"""`sciml.fit` over two processes (`jax.distributed` on localhost, one CPU device each,
gloo collectives): the multi-host path, checked against a one-process run."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml
import sciml.ensemble as ens


def _problems():
    """Least squares on a fixed batch (Adam) and an ES-MDA ensemble whose members are
    sharded over the devices; the worker runs the same text."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1

    def sq(m, batch, *, key):
        return jnp.mean((jax.vmap(m)(batch[0])[:, 0] - batch[1]) ** 2)

    xs = jnp.linspace(-2.0, 2.0, 24)[:, None]
    ys = jnp.sin(xs[:, 0])

    def residual(m, batch, *, key):
        return (jax.vmap(m)(batch[0]) - batch[1]) / 0.05

    def make(k):
        return eqx.nn.MLP(1, "scalar", 8, 1, activation=jnp.tanh, key=k)

    return {
        "lsq": dict(
            model=eqx.nn.Linear(3, 1, key=jax.random.key(0)),
            loss=sq,
            optimiser=optax.adam(0.05),
            steps=60,
            data=(x, y),
        ),
        "ens": dict(
            model=ens.sample(make, 8, key=jax.random.key(0)),
            loss=residual,
            optimiser=ens.ESMDA(4),
            steps=4,
            data=(xs, ys),
        ),
    }


_WORKER = textwrap.dedent(
    """
    import json, os, sys, traceback
    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]


    def fail(*exc):
        # A failed process would wait for its peer in JAX's exit barrier: leave now.
        traceback.print_exception(*exc)
        sys.stderr.flush()
        os._exit(1)


    sys.excepthook = fail
    sys.path.insert(0, sys.argv[4])
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
    import equinox as eqx, numpy as np
    import sciml
    from test_fit_multiprocess import _problems
    assert jax.device_count() == 2 and len(jax.local_devices()) == 1
    res = {}
    for name, p in _problems().items():
        r = sciml.fit(p["model"], p["loss"], p["optimiser"], steps=p["steps"],
                      key=jax.random.key(1), data=p["data"], devices=2, progress=True,
                      checkpoint=f"{out}/ck_{name}", checkpoint_every=2)
        leaves = jax.tree.leaves(eqx.filter(r.model, eqx.is_array))
        res[name] = [
            np.concatenate([np.asarray(s.data) for s in l.addressable_shards]).tolist()
            if not l.is_fully_replicated else np.asarray(l).tolist()
            for l in leaves
        ]
        res[name + "_local"] = [
            [s.index[0].start or 0 if s.index else 0 for s in l.addressable_shards]
            for l in leaves
        ]
    with open(f"{out}/res_{pid}.json", "w") as f:
        json.dump(res, f)
    """
)


def _one_process(p, **kwargs):
    """The problem `p` trained in this process alone: its array leaves."""
    r = sciml.fit(
        p["model"],
        p["loss"],
        p["optimiser"],
        steps=p["steps"],
        key=jax.random.key(1),
        data=p["data"],
        progress=False,
        **kwargs,
    )
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(r.model, eqx.is_array))]


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)
    port = str(_free_port())
    here = os.path.dirname(os.path.abspath(__file__))
    # This checkout's sciml, whichever the environment has installed.
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.path.dirname(here)
    )
    env.pop("XLA_FLAGS", None)
    logs = [open(tmp_path / f"err_{pid}.txt", "w+") for pid in (0, 1)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(pid), port, str(tmp_path), here],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        for pid, log in zip((0, 1), logs)
    ]
    # A hang must end, but a loaded machine must not fail the test (25 s when quiet).
    deadline = time.monotonic() + 1200
    try:
        # A process that fails leaves its peer waiting in a collective: stop both.
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    errs = []
    for log in logs:
        log.seek(0)
        errs.append(log.read())
        log.close()
    for p, err in zip(procs, errs):
        assert p.returncode == 0, err[-3000:]
    # One progress bar per run: process 0's.
    assert "step/s" in errs[0] and "step/s" not in errs[1]
    results = [json.loads((tmp_path / f"res_{pid}.json").read_text()) for pid in (0, 1)]

    for name, p in _problems().items():
        ref = _one_process(p)
        for pid in (0, 1):
            got = results[pid][name]
            if name == "lsq":
                # Replicated parameters: every process holds the whole model, equal to
                # one process's to rounding (the batch sum runs in two halves).
                for a, b in zip(got, ref):
                    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
            else:
                # Members sharded over the hosts: each process holds its half.
                start = results[pid][name + "_local"]
                for a, b, s in zip(got, ref, start):
                    half = b[s[0] : s[0] + len(a)]
                    np.testing.assert_allclose(a, half, rtol=1e-7, atol=1e-9)
        # Process 0 wrote the checkpoint, with other hosts' members gathered into it:
        # resuming it in one process returns the whole final model.
        got = _one_process(p, checkpoint=tmp_path / f"ck_{name}", resume=True)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path))
