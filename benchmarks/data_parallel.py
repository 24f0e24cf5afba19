"""What does `sciml.fit(..., devices=N)` cost over a hand-written data-parallel loop?

Side by side in one run, same model, optimiser, data and loss, on N host devices
(`--xla_force_host_platform_device_count`, set here before JAX starts):

- `hand`: the batch `device_put` with a `NamedSharding` over a one-axis mesh (batch axis
  split), the parameters and optimiser state replicated, and `lax.scan` over chunks of
  Adam steps inside one `jax.jit`: the usual hand-written `jax.sharding` loop;
- `fit`: `sciml.fit(..., devices=N)`;
- the same two on one device (`devices=None`), for the scaling.

Workload: MLP regression 2-[64]x3-1 tanh on `--points` points (default 16384), a fixed
batch. Reported: compile time, steady-state steps/s, time to result (compile + steps),
over interleaved rounds (best round of each variant; paired per-round ratios).

On a CPU the N "devices" share the same cores, so N devices do not run faster than one
here (one device already keeps every core busy); the ratio that matters on this
machine is fit against the hand-written loop at the same N. On N real accelerators
the same code splits the batch over them.

    python benchmarks/data_parallel.py            # 2 devices, 2000 steps, 3 rounds
    python benchmarks/data_parallel.py --quick    # 300 steps, 1 round
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _devices_from_argv(default=2):
    for i, a in enumerate(sys.argv):
        if a == "--devices" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if a.startswith("--devices="):
            return int(a.split("=", 1)[1])
    return default


os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + f" --xla_force_host_platform_device_count={_devices_from_argv()}"
)

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import sciml  # noqa: E402


def workload(points, key):
    mkey, dkey = jax.random.split(key)
    model = eqx.nn.MLP(2, "scalar", 64, 3, jnp.tanh, key=mkey)
    x = jax.random.uniform(dkey, (points, 2), minval=-1, maxval=1)
    y = jnp.sin(3 * x[:, 0]) * jnp.cos(2 * x[:, 1])

    def loss(m, batch, *, key):
        xb, yb = batch
        return jnp.mean((jax.vmap(m)(xb) - yb) ** 2)

    return model, (x, y), loss


def run_hand(model, batch, loss, steps, ndev, chunk=500):
    """Hand-written: sharded batch, replicated state, `lax.scan` chunks in one jit."""
    opt = optax.adam(1e-3)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    if ndev > 1:
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:ndev]), ("batch",))
        rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
        batch = jax.device_put(batch, shard)
        params = jax.device_put(params, rep)
    state = opt.init(params)

    @jax.jit
    def run_chunk(p, s, b):  # the batch is an argument, as `fit` has it
        def step(carry, _):
            p, s = carry
            g = jax.grad(lambda q: loss(eqx.combine(q, static), b, key=None))(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, s), _ = jax.lax.scan(step, (p, s), None, length=chunk)
        return p, s

    t0 = time.perf_counter()
    compiled = run_chunk.lower(params, state, batch).compile()
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    params, state = jax.block_until_ready(compiled(params, state, batch))
    t_first = time.perf_counter() - t1
    t2 = time.perf_counter()
    for _ in range(steps // chunk - 1):
        params, state = compiled(params, state, batch)
    jax.block_until_ready(params)
    t_rest = time.perf_counter() - t2
    return {
        "compile": compile_s,
        "steps_per_s": (steps - chunk) / t_rest,
        "total": compile_s + t_first + t_rest,
    }


def run_fit(model, batch, loss, steps, ndev):
    t0 = time.perf_counter()
    res = sciml.fit(
        model,
        loss,
        optax.adam(1e-3),
        steps=steps,
        key=jax.random.key(0),
        data=batch,
        devices=ndev if ndev > 1 else None,
        progress=False,
    )
    jax.block_until_ready(jax.tree.leaves(eqx.filter(res.model, eqx.is_array)))
    total = time.perf_counter() - t0
    return {
        "compile": res.timings["compile"],
        "steps_per_s": res.timings["steps_per_second"],
        "total": total,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=2)
    p.add_argument("--points", type=int, default=16384)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.steps, args.rounds = 1000, 1
    if args.steps % 500 or args.steps < 1000:
        p.error("--steps must be a multiple of 500, at least 1000")
    if args.points % args.devices:
        p.error(f"--points {args.points} must split evenly over --devices {args.devices}")
    if len(jax.devices()) < args.devices:
        p.error(f"only {len(jax.devices())} devices")
    n = args.devices
    variants = [
        (f"hand, {n} devices", run_hand, n),
        (f"fit, {n} devices", run_fit, n),
        ("hand, 1 device", run_hand, 1),
        ("fit, 1 device", run_fit, 1),
    ]
    rows = {name: [] for name, _, _ in variants}
    print(
        f"# data parallel: MLP 2-[64]x3-1, {args.points} points, {args.steps} Adam steps, "
        f"{jax.device_count()} {jax.devices()[0].platform} devices, {args.rounds} rounds",
        flush=True,
    )
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for name, fn, ndev in order:
            model, batch, loss = workload(args.points, jax.random.key(r))
            rows[name].append(fn(model, batch, loss, args.steps, ndev))
            t = rows[name][-1]
            print(
                f"round {r} {name:18s} compile {t['compile']:.2f} s, "
                f"{t['steps_per_s']:.0f} steps/s, total {t['total']:.2f} s",
                flush=True,
            )
    print("\n| variant | compile (s) | steady steps/s | time to result (s) |\n|---|---|---|---|")
    best = {}
    for name in rows:
        b = {
            "compile": min(t["compile"] for t in rows[name]),
            "steps_per_s": max(t["steps_per_s"] for t in rows[name]),
            "total": min(t["total"] for t in rows[name]),
        }
        best[name] = b
        print(f"| {name} | {b['compile']:.2f} | {b['steps_per_s']:.0f} | {b['total']:.2f} |")
    print(
        "\n| ratio | steady steps/s (best rounds / paired median) | time to result |\n|---|---|---|"
    )
    for k in (n, 1):
        d = f"{k} devices" if k > 1 else "1 device"
        f, h = rows[f"fit, {d}"], rows[f"hand, {d}"]
        paired = np.median([a["steps_per_s"] / b["steps_per_s"] for a, b in zip(f, h)])
        paired_t = np.median([a["total"] / b["total"] for a, b in zip(f, h)])
        b = best[f"fit, {d}"]["steps_per_s"] / best[f"hand, {d}"]["steps_per_s"]
        print(f"| fit / hand, {d} | {b:.2f}x / {paired:.2f}x | {paired_t:.2f}x |")
    s = best[f"fit, {n} devices"]["steps_per_s"] / best["fit, 1 device"]["steps_per_s"]
    print(f"| fit, {n} devices / 1 device (scaling; CPU devices share cores) | {s:.2f}x | |")


if __name__ == "__main__":
    main()
