"""What does `sciml.fit` cost over the best hand-written JAX loop?

Side by side in one run, same model, optimiser, data and loss:

- `loop`: a `jax.jit` step called from a Python loop (the usual hand-written loop);
- `scan`: `lax.scan` over chunks of steps inside one `jax.jit` (fused), the batch closed
  over (baked into the executable as constants);
- `scan (data as args)`: the same with the batch as an argument, as `fit` has it;
- `fit`: `sciml.fit` with its defaults (progress bar off: nothing prints in a benchmark).

Workloads: (a) a tiny MLP regression (dispatch-bound: microseconds of work per step),
(b) the Burgers PINN residual, 2-[20]x3-1 tanh, 2540 interior + 80 boundary + 160
initial points, u_xx by one jvp of value_and_grad.

Reported per workload: compile time (first call), steady-state steps/s (after
compile) and time to result (compile + all steps, until the parameters are ready),
and the ratios fit / best hand-written loop. Rounds are interleaved; the table gives
the best round of each variant (interference from other processes only ever slows a
run, so the best round is the least disturbed one: timeit's convention) and the
ratios are also given for the medians and as the median of each round's own ratio
(paired: the variants of a round run back to back). Every round builds fresh functions, so
every round pays compilation. Last, the steady state of `fit` and of the scan loop is
timed in `--pairs` alternated triples of already compiled runs, seconds apart (scan, fit,
scan): fit against the mean of the two scans around it is the overhead with the machine's
drift bracketed out, and the second scan against the first, the same executable twice, is
this run's own noise floor (a ratio that differs from 1 by less than that is not a
measured difference).

    python benchmarks/fit_overhead.py              # 5000 steps, 5 rounds
    python benchmarks/fit_overhead.py --quick      # 1000 steps, 1 round, 2 pairs
    python benchmarks/fit_overhead.py --against REV [--repeat K] [--only burgers]

`--against REV` compares two versions of sciml in one run: a git worktree of REV and this
tree run the benchmark alternately (REV, this, REV, this, ... `--repeat` times each, one
process each, the same script), and the alternated-triples line of every run is printed
with its version, so a change of the loop is measured against the machine's drift.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml


# ----------------------------------------------------------------------------- workloads


def tiny_mlp_workload(key):
    mkey, dkey = jax.random.split(key)
    model = eqx.nn.MLP(1, 1, 16, 2, jnp.tanh, key=mkey)
    x = jax.random.uniform(dkey, (64, 1), minval=-1, maxval=1)
    y = jnp.sin(3 * x)

    def make_loss():
        def loss(m, batch, *, key):
            xb, yb = batch
            return jnp.mean((jax.vmap(m)(xb) - yb) ** 2)

        return loss

    return model, (x, y), make_loss


def burgers_workload(key):
    nu = 0.01 / np.pi
    mkey, dkey = jax.random.split(key)
    model = eqx.nn.MLP(2, "scalar", 20, 3, jnp.tanh, key=mkey)
    rng = np.random.default_rng(0)
    x_dom = np.stack([rng.uniform(-1, 1, 2540), rng.uniform(0, 1, 2540)], 1)
    x_bc = np.stack([np.where(np.arange(80) % 2 == 0, -1.0, 1.0), rng.uniform(0, 1, 80)], 1)
    x_ic = np.stack([rng.uniform(-1, 1, 160), np.zeros(160)], 1)
    batch = tuple(jnp.asarray(a, jnp.float32) for a in (x_dom, x_bc, x_ic))
    e_x = jnp.array([1.0, 0.0], jnp.float32)

    def make_loss():
        def residual(m, xt):
            (u, du), (_, ddu) = jax.jvp(jax.value_and_grad(m), (xt,), (e_x,))
            return du[1] + u * du[0] - nu * ddu[0]

        def loss(m, batch, *, key):
            xd, xb, xi = batch
            r = jax.vmap(lambda z: residual(m, z))(xd)
            ub = jax.vmap(m)(xb)
            ui = jax.vmap(m)(xi) + jnp.sin(jnp.pi * xi[:, 0])
            return jnp.mean(r**2) + jnp.mean(ub**2) + jnp.mean(ui**2)

        return loss

    return model, batch, make_loss


# ----------------------------------------------------------------------------- variants


def run_loop(model, batch, loss, steps):
    opt = optax.adam(1e-3)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    key = jax.random.key(0)

    @jax.jit
    def step(params, opt_state, batch):
        def f(p):
            return loss(eqx.combine(p, static), batch, key=key)

        value, grads = jax.value_and_grad(f)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    t0 = time.perf_counter()
    opt_state = opt.init(params)
    params, opt_state, value = step(params, opt_state, batch)
    jax.block_until_ready(params)
    t1 = time.perf_counter()
    for _ in range(steps - 1):
        params, opt_state, value = step(params, opt_state, batch)
    jax.block_until_ready(params)
    t2 = time.perf_counter()
    return dict(compile=t1 - t0, steady=(steps - 1) / (t2 - t1), total=t2 - t0,
                loss=float(value))


def scan_runner(model, batch, loss, chunk=500, constant_data=True):
    """`(params, opt_state, run_chunk)` of the `lax.scan` loop: `run_chunk` runs `chunk`
    Adam steps in one `jax.jit`. With `constant_data` the batch is closed over, so XLA
    bakes it into the executable as constants and folds what depends on it alone (as a
    hand-written script often has it; ~5 % faster on the Burgers PINN); otherwise it is
    an argument, as in `fit`, which must not recompile for new data."""
    opt = optax.adam(1e-3)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    key = jax.random.key(0)

    @jax.jit
    def run_chunk(params, opt_state, arg_batch):
        b = batch if constant_data else arg_batch

        def one(carry, _):
            params, opt_state = carry

            def f(p):
                return loss(eqx.combine(p, static), b, key=key)

            value, grads = jax.value_and_grad(f)(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, opt_state), values = jax.lax.scan(one, (params, opt_state), None, length=chunk)
        return params, opt_state, values[-1]

    return params, opt.init(params), run_chunk


def run_scan(model, batch, loss, steps, chunk=500, constant_data=True):
    if steps % chunk:
        raise ValueError(f"--steps must be a multiple of the scan chunk {chunk}")
    t0 = time.perf_counter()
    params, opt_state, run_chunk = scan_runner(model, batch, loss, chunk, constant_data)
    params, opt_state, value = run_chunk(params, opt_state, batch)
    jax.block_until_ready(params)
    t1 = time.perf_counter()
    for _ in range(steps // chunk - 1):
        params, opt_state, value = run_chunk(params, opt_state, batch)
    jax.block_until_ready(params)
    t2 = time.perf_counter()
    return dict(compile=t1 - t0 - (t2 - t1) / max(steps // chunk - 1, 1),
                steady=(steps - chunk) / (t2 - t1), total=t2 - t0, loss=float(value))


def alternate_steady(model, batch, loss, steps, pairs, chunk=500):
    """Steady-state steps/s of `fit` and of the scan loop, alternated `pairs` times in
    one process after both are compiled (a second `fit` call with the same shapes reuses
    its executable): scan, fit, scan again. The machine's speed drifts by 20 % over
    minutes; the three runs are seconds apart, so fit against the scans around it is the
    overhead itself, and the second scan against the first is the noise of one
    executable measured twice.

    **Returns:** the list of `(fit, scan before, scan after)` steps/s.
    """
    params, opt_state, run_chunk = scan_runner(model, batch, loss, chunk)
    jax.block_until_ready(run_chunk(params, opt_state, batch))
    opt = optax.adam(1e-3)

    def fit_rate():
        result = sciml.fit(model, loss, opt, steps=steps, key=jax.random.key(0), data=batch,
                           progress=False)
        return result.timings["steps_per_second"]

    def scan_rate():
        t0 = time.perf_counter()
        p, s = params, opt_state
        for _ in range(max(steps // chunk, 1)):
            p, s, _ = run_chunk(p, s, batch)
        jax.block_until_ready(p)
        return max(steps // chunk, 1) * chunk / (time.perf_counter() - t0)

    fit_rate()  # compiles
    out = []
    for _ in range(pairs):
        before = scan_rate()
        fit = fit_rate()
        out.append((fit, before, scan_rate()))
    return out


def run_fit(model, batch, loss, steps):
    t0 = time.perf_counter()
    result = sciml.fit(model, loss, optax.adam(1e-3), steps=steps, key=jax.random.key(0),
                       data=batch, progress=False)
    jax.block_until_ready(eqx.filter(result.model, eqx.is_array))
    t1 = time.perf_counter()
    return dict(compile=result.timings["compile"], steady=result.timings["steps_per_second"],
                total=t1 - t0, loss=float(result.history["loss"][-1]))


def run_scan_args(model, batch, loss, steps):
    return run_scan(model, batch, loss, steps, constant_data=False)


def _quartiles(values):
    """(first quartile, median, third quartile) of a list."""
    v = sorted(values)
    return v[len(v) // 4], statistics.median(v), v[(3 * len(v)) // 4]


VARIANTS = {"loop": run_loop, "scan": run_scan, "scan (data as args)": run_scan_args,
            "fit": run_fit}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="1000 steps, 1 round, 2 pairs")
    p.add_argument("--only", choices=["tiny", "burgers"], default=None)
    p.add_argument("--pairs", type=int, default=10,
                   help="alternated steady-state triples scan, fit, scan (0 to skip)")
    p.add_argument("--against", metavar="REV",
                   help="also run a git worktree of REV, alternately with this tree")
    p.add_argument("--repeat", type=int, default=3, help="runs of each version (--against)")
    args = p.parse_args()
    if args.against:
        return compare_versions(args)
    if args.quick:
        args.steps, args.rounds, args.pairs = 1000, 1, min(args.pairs, 2)

    workloads = {"tiny MLP regression": tiny_mlp_workload, "Burgers PINN": burgers_workload}
    if args.only:
        workloads = {k: v for k, v in workloads.items() if args.only.lower() in k.lower()}
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {args.steps} Adam steps, "
          f"{args.rounds} interleaved round(s), best round shown\n")
    rows, alternated = [], []
    for wname, build in workloads.items():
        model, batch, make_loss = build(jax.random.key(1))
        results = {v: [] for v in VARIANTS}
        for r in range(args.rounds):
            for vname, fn in VARIANTS.items():
                results[vname].append(fn(model, batch, make_loss(), args.steps))
        best = {v: dict(compile=min(x["compile"] for x in res),
                        steady=max(x["steady"] for x in res),
                        total=min(x["total"] for x in res), loss=res[0]["loss"])
                for v, res in results.items()}
        med = {v: {k: statistics.median(x[k] for x in res) for k in res[0]}
               for v, res in results.items()}
        for v in VARIANTS:
            m = best[v]
            rows.append((wname, v, m["compile"], m["steady"], m["total"], m["loss"]))
        for label, agg in (("best rounds", best), ("medians", med)):
            steady = agg["fit"]["steady"] / max(agg["loop"]["steady"], agg["scan"]["steady"])
            total = agg["fit"]["total"] / min(agg["loop"]["total"], agg["scan"]["total"])
            rows.append((wname, f"fit / best hand-written ({label})", None, steady, total, None))
        # Paired: each round's fit against the best hand-written loop of the same round
        # (the three run back to back, so a slow spell of the machine hits all of them).
        paired = [
            (f["steady"] / max(lo["steady"], sc["steady"]),
             f["total"] / min(lo["total"], sc["total"]))
            for f, lo, sc in zip(results["fit"], results["loop"], results["scan"])
        ]
        rows.append((wname, "fit / best hand-written (median of paired rounds)", None,
                     statistics.median(p[0] for p in paired),
                     statistics.median(p[1] for p in paired), None))
        # Against the scan that takes its data as arguments, as `fit` must.
        args_paired = [
            (f["steady"] / sa["steady"], f["total"] / sa["total"])
            for f, sa in zip(results["fit"], results["scan (data as args)"])
        ]
        rows.append(
            (
                wname,
                "fit / scan with data as arguments (median of paired rounds)",
                None,
                statistics.median(p[0] for p in args_paired),
                statistics.median(p[1] for p in args_paired),
                None,
            )
        )
        if args.pairs:
            # About 4 s per run at the scan loop's speed (fit's chunks ramp up over the first
            # second), a whole number of the scan's chunks.
            n_alt = max(500, int(best["scan"]["steady"] * 4) // 500 * 500)
            alt = alternate_steady(model, batch, make_loss(), n_alt, args.pairs)
            fit_q = _quartiles([f / (0.5 * (a + b)) for f, a, b in alt])
            ctrl_q = _quartiles([b / a for _, a, b in alt])
            alternated.append(
                f"{wname}, {len(alt)} alternated triples (scan, fit, scan) of {n_alt} steps:"
                f" fit / the scans around it, median **{fit_q[1]:.3f}x** (quartiles "
                f"{fit_q[0]:.3f}-{fit_q[2]:.3f}); control, second scan / first scan "
                f"{ctrl_q[1]:.3f}x (quartiles {ctrl_q[0]:.3f}-{ctrl_q[2]:.3f}); fit "
                f"{statistics.median(f for f, _, _ in alt):,.0f}, scan "
                f"{statistics.median(a for _, a, _ in alt):,.0f} steps/s (medians)"
            )

    head = ("| workload | variant | compile (s) | steady steps/s | time to result (s) | "
            "final loss |")
    print(head)
    print("|---|---|---|---|---|---|")
    for w, v, c, s, t, loss in rows:
        if c is None:
            print(f"| {w} | **{v}** | | **{s:.2f}x** (target >= 0.95) | "
                  f"**{t:.2f}x** (target <= 1.1) | |")
        else:
            print(f"| {w} | {v} | {c:.2f} | {s:,.0f} | {t:.2f} | {loss:.3e} |")
    for line in alternated:
        print(f"\n{line}")


def compare_versions(args):
    """Runs this script without `--against` on REV's sciml and on this tree's, alternately."""
    here = pathlib.Path(__file__).resolve().parents[1]
    forwarded = ["--steps", str(args.steps), "--rounds", "1", "--pairs", str(args.pairs)]
    if args.only:
        forwarded += ["--only", args.only]
    with tempfile.TemporaryDirectory() as tmp:
        tree = pathlib.Path(tmp) / "sciml-rev"
        subprocess.run(["git", "-C", str(here), "worktree", "add", "--detach", "-q", str(tree),
                        args.against], check=True)
        try:
            versions = {args.against: tree, "this tree": here}
            for k in range(args.repeat):
                for label, root in versions.items():
                    env = dict(os.environ, PYTHONPATH=str(root))
                    out = subprocess.run([sys.executable, __file__, *forwarded], env=env,
                                         capture_output=True, text=True, check=True).stdout
                    for line in out.splitlines():
                        if "alternated triples" in line:
                            print(f"[{label}, run {k + 1}] {line}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(here), "worktree", "remove", "--force",
                            str(tree)], check=False)


if __name__ == "__main__":
    main()
