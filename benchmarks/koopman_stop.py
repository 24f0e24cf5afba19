"""Does the Koopman stop rule save steps without costing accuracy, and what does the
monitor cost?

Three sciml problems at small CPU sizes, each trained from one key three ways,
side by side in one run:

- `fixed`: the full step budget, no monitor;
- `watched`: the full budget with `KoopmanMonitor(stop=False)` at its defaults (the
  same steps, so the same weights: its wall time against `fixed` is the monitor's
  overhead);
- `stopped`: `KoopmanMonitor(stop=True)` at its defaults, which ends the run when the
  DMD of the weight snapshots predicts (almost) no further motion.

Problems (errors against each problem's truth):

- PINN: the Poisson-1D problem of problems/poisson_1d.py (its model and residual loss),
  Adam with a decaying learning rate, fresh collocation points every step; error =
  relative L2 against the closed form on 1001 points.
- DeepONet: the antiderivative operator on GRF inputs (sciml.data.antiderivative,
  sciml.operators.DeepONet), full-batch Adam with a decaying learning rate; error =
  relative L2 on held-out test functions.
- NODE: the cubic spiral (node.spiral_data, CubicField, NeuralODE), Adam with a
  decaying learning rate; error = MSE against the spiral's trajectory.

Each budget is one a user might set without watching: the decaying learning rate
has made further steps nearly pointless well before its end. The rule is meant to find
that point; its default tolerance (`rtol=1e-3`) is conservative, so it stops late
rather than early, and it does not stop a run that is still improving.

Reported per problem: steps run and saved, the errors of `fixed` and `stopped` and
their ratio (the target: within 5 %), the overhead ratio `watched / fixed` of the
training wall time, and `no-op / fixed`, the same for a callback that does nothing
as often as the monitor is called (`monitor.every`: the part of the overhead that is
`fit`'s chunk boundaries, which any such callback pays). The monitor's snapshots are
taken inside the compiled steps (its `recorder`), so it is called only where a DMD
can fall. Timings exclude compilation; each round runs fixed, watched and no-op back
to back, and the ratios are the median over `--repeats` rounds of each round's ratio
(pairing the runs of a round cancels most of the drift of a shared machine).

    python benchmarks/koopman_stop.py            # full sizes (a few minutes of CPU)
    python benchmarks/koopman_stop.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import numpy as np


jax.config.update("jax_enable_x64", True)  # the NODE fit needs it (tolerance 1e-7)

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import sciml  # noqa: E402
import sciml.data as sd  # noqa: E402
import sciml.experiments.node as node  # noqa: E402
import sciml.ode as sode  # noqa: E402
import sciml.operators as sop  # noqa: E402
from sciml.koopman import KoopmanMonitor, plot_spectrum  # noqa: E402


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "problems"))
import poisson_1d  # noqa: E402  (the problem's model and loss, not a copy of them)


# ----------------------------------------------------------------------------- problems


def pinn_problem(key, quick):
    model = poisson_1d.make_model(key)
    # One fixed set of 256 collocation points (the problem's loss with a fixed key):
    # full-batch Adam, so the error curve is smooth enough to compare two stopping
    # points at the 5 % level.
    points_key = jax.random.fold_in(key, 1)

    def loss(m, batch, *, key):
        return poisson_1d.loss(m, 256, key=points_key)

    steps = 3000 if quick else 6000
    opt = optax.adam(optax.exponential_decay(1e-2, 400, 0.5))
    x = jnp.linspace(0.0, 1.0, 1001)
    ue = poisson_1d.exact(x)

    @eqx.filter_jit
    def error(m):
        return jnp.linalg.norm(jax.vmap(m)(x) - ue) / jnp.linalg.norm(ue)

    return dict(model=model, loss=loss, optimiser=opt, steps=steps, data=None,
                error=lambda m: float(error(m)), metric="rel. L2")


def deeponet_problem(key, quick):
    mkey, trkey, tekey = jax.random.split(key, 3)
    m = 100
    space = sd.GRF(0.2)
    train = sop.as_arrays(sd.antiderivative(space, num=150 if quick else 300, sensors=m,
                                            key=trkey))
    test = sop.as_arrays(sd.antiderivative(space, num=300, sensors=m, key=tekey))
    model = sop.DeepONet([m, 40, 40], [1, 40, 40], activation=jax.nn.relu, key=mkey)
    steps = 3000 if quick else 8000
    opt = optax.adam(optax.exponential_decay(2e-3, 500, 0.5))
    return dict(model=model, loss=sop.mse_loss, optimiser=opt, steps=steps, data=train,
                error=lambda mod: sop.evaluate(mod, test)["rel_l2"], metric="test rel. L2")


def node_problem(key, quick):
    ts, ys = node.spiral_data()
    model = sode.NeuralODE(
        sode.CubicField(2, 50, key=key),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6),
        t0=0.0,
        t1=float(ts[-1]),
    )

    def loss(mod, batch, *, key):
        pred, _ = mod(ys[0], ts)
        return jnp.mean((pred - ys) ** 2)

    @eqx.filter_jit
    def error(mod):
        pred, _ = mod(ys[0], ts)
        return jnp.mean((pred - ys) ** 2)

    steps = 1200 if quick else 2500
    opt = optax.adam(optax.exponential_decay(1e-2, 150, 0.5))
    return dict(model=model, loss=loss, optimiser=opt, steps=steps, data=None,
                error=lambda mod: float(error(mod)), metric="MSE")


PROBLEMS = {"PINN (Poisson-1D)": pinn_problem, "DeepONet (antiderivative)": deeponet_problem,
            "NODE (cubic spiral)": node_problem}


# ----------------------------------------------------------------------------- runs


class _Boundary:
    """A callback that does nothing, called as often as the monitor: what the chunk
    boundaries alone cost in `sciml.fit`."""

    def __init__(self, every):
        self.every = every

    def __call__(self, info):
        return False


def train(problem, key, monitor=None):
    callbacks = [] if monitor is None else [monitor]
    result = sciml.fit(problem["model"], problem["loss"], problem["optimiser"],
                       steps=problem["steps"], key=key, data=problem["data"],
                       callbacks=callbacks, progress=False)
    jax.block_until_ready(result.model)
    return result


def run_problem(name, make, *, seed, quick, repeats, out):
    problem = make(jax.random.key(seed), quick)
    fkey = jax.random.key(seed + 1)
    mkey = jax.random.key(seed + 2)
    # Warm-up with the same loss and optimiser objects, so every timed run reuses one
    # compiled program.
    sciml.fit(problem["model"], problem["loss"], problem["optimiser"], steps=2, key=fkey,
              data=problem["data"], progress=False)
    fixed_s, watched_s, boundary_s = [], [], []
    ratios, boundary_ratios = [], []

    def seconds(result):
        return result.timings["total"] - result.timings["compile"]

    for _ in range(repeats):
        fixed = train(problem, fkey)
        watcher = KoopmanMonitor(key=mkey)
        watched = train(problem, fkey, watcher)
        boundary = train(problem, fkey, _Boundary(watcher.every))
        fixed_s.append(seconds(fixed))
        watched_s.append(seconds(watched))
        boundary_s.append(seconds(boundary))
        ratios.append(watched_s[-1] / fixed_s[-1])
        boundary_ratios.append(boundary_s[-1] / fixed_s[-1])
    stopper = KoopmanMonitor(key=mkey, stop=True)
    stopped = train(problem, fkey, stopper)
    n_stopped = len(stopped.history["step"])
    err_fixed = problem["error"](fixed.model)
    err_watched = problem["error"](watched.model)
    err_stopped = problem["error"](stopped.model)
    if out is not None and watcher.spectra:
        slug = name.split()[0].lower()
        plot_spectrum(watcher, out / f"koopman_{slug}.png", title=name)
    return dict(
        name=name,
        metric=problem["metric"],
        budget=problem["steps"],
        steps=n_stopped,
        saved=1 - n_stopped / problem["steps"],
        err_fixed=err_fixed,
        err_stopped=err_stopped,
        ratio=err_stopped / err_fixed,
        same_weights=err_watched == err_fixed,
        fixed_s=float(np.median(fixed_s)),
        overhead=float(np.median(ratios)),
        spread=(min(ratios), max(ratios)),
        boundary=float(np.median(boundary_ratios)),
        n_dmd=watcher.n_dmd,
        stopped_by=stopped.stopped,
    )


def table(rows):
    lines = [
        "| problem | budget | steps run | saved | error fixed | error stopped | ratio "
        "| train s (fixed) | watched / fixed (range) | no-op callback / fixed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['budget']} | {r['steps']} | {r['saved']:.0%} "
            f"| {r['err_fixed']:.3e} | {r['err_stopped']:.3e} | {r['ratio']:.3f} "
            f"| {r['fixed_s']:.2f} | {r['overhead']:.3f} ({r['spread'][0]:.2f}-"
            f"{r['spread'][1]:.2f}) | {r['boundary']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets, one round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timing rounds per problem (default 7, 1 with --quick)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="directory for the spectrum plots")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 7)
    rows = []
    t0 = time.perf_counter()
    for name, make in PROBLEMS.items():
        row = run_problem(name, make, seed=args.seed, quick=args.quick, repeats=repeats,
                          out=args.out)
        rows.append(row)
        print(f"{name}: {row['stopped_by']}, {row['n_dmd']} DMDs in the watched run, "
              f"watched run bit-identical: {row['same_weights']}", flush=True)
    print()
    print(table(rows))
    print(f"\nTotal wall time {time.perf_counter() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
