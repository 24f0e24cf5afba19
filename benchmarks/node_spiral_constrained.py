"""Spiral ODE: can a trained neural ODE be made 30 % cheaper to solve at its accuracy?

The penalties of `node_regularisation.py` (ERNODE and the rest) trade accuracy for NFE on
the spiral along one curve. This experiment asks the constrained question instead: starting
from the vanilla fit (the benchmark's 300 Adam steps at 0.05), minimise the number of solver
steps subject to MSE <= (1 + slack) x the vanilla MSE, by an augmented Lagrangian:

    loss = w * S(theta) + rho/2 * max(0, c + lambda/rho)^2,   c = MSE / target - 1,
    lambda <- max(0, lambda + rho * c) every `--every` steps,

with `S = Σ_attempts EEst^(1/q)` a differentiable estimate of the steps the controller
takes, `sciml.ode.StepCountRegulariser` (the controller picks h ~ h_j EEst_j^(-1/q), q the
error order; the sum runs over rejected attempts too). `Σ EEst |h|` (ERNODE's penalty)
is no use here: the controller holds EEst near a constant, so that sum stays near
`const x (t1 - t0)` whatever the step count.

The iterate kept is the one with the fewest prediction NFE among those with MSE <= target.
The control row continues vanilla for the same number of steps (same optimiser, plain MSE)
and keeps its iterate by the same rule, so the extra training alone is measured too.
Prediction NFE and MSE of each kept model come from a fresh `sciml.ode.NeuralODE` solve.

    python benchmarks/node_spiral_constrained.py [--seeds 0 1] [--steps 3000]
"""

from __future__ import annotations

import argparse
import time

import jax


jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import sciml.ode as so  # noqa: E402


TOL = 1e-7


def prediction(field, data):
    """MSE and NFE of a plain `sciml.ode.NeuralODE` solve at the training tolerance."""
    ts, ys = data
    node = so.NeuralODE(
        field,
        stepsize_controller=diffrax.PIDController(rtol=TOL, atol=TOL),
        t0=0.0,
        t1=float(ts[-1]),
    )
    pred, stats = node(ys[0], ts, regularise=False)
    return float(jnp.mean((pred - ys) ** 2)), int(stats["nfe"])


def refine(field, data, target, *, steps, lr, weight, rho, every, constrained):
    """Adam from `field`; returns the kept iterate, its step, and the wall time."""
    ts, ys = data
    node = so.NeuralODE(
        field,
        stepsize_controller=diffrax.PIDController(rtol=TOL, atol=TOL),
        t0=0.0,
        t1=float(ts[-1]),
        regulariser=so.StepCountRegulariser(weight),
    )
    opt = optax.adam(lr)

    @jax.jit
    def step(f, s, lam):
        def loss(f):
            pred, stats = eqx.tree_at(lambda m: m.vector_field, node, f)(ys[0], ts)
            mse = jnp.mean((pred - ys) ** 2)
            c = mse / target - 1
            if not constrained:
                return mse, (mse, stats["num_steps"], c)
            penalty = 0.5 * rho * jnp.maximum(0, c + lam / rho) ** 2
            return stats["regularisation"] + penalty, (mse, stats["num_steps"], c)

        (_, (mse, n, c)), g = jax.value_and_grad(loss, has_aux=True)(f)
        u, s = opt.update(g, s, f)
        return optax.apply_updates(f, u), s, mse, n, c

    state, lam = opt.init(eqx.filter(field, eqx.is_inexact_array)), 0.0
    best, best_n, best_k = field, None, 0
    start = time.perf_counter()
    for k in range(steps):
        new, state, mse, n, c = step(field, state, lam)
        # mse and n are those of `field`, the iterate before this update.
        if float(mse) <= target and (best_n is None or int(n) < best_n):
            best, best_n, best_k = field, int(n), k
        field = new
        if constrained and (k + 1) % every == 0:
            lam = max(0.0, lam + rho * float(c))
    return best, best_k, time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--start-steps", type=int, default=300, help="vanilla Adam steps first")
    p.add_argument("--start-lr", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=3000, help="steps of the refinement")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--slack", type=float, default=0.1, help="target = (1 + slack) x MSE")
    p.add_argument("--weight", type=float, default=10.0, help="w of the step estimate")
    p.add_argument("--rho", type=float, default=10.0)
    p.add_argument("--every", type=int, default=25, help="steps between multiplier updates")
    args = p.parse_args(argv)
    for name in ("start_steps", "steps", "every"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if not (args.slack >= 0 and args.weight > 0 and args.rho > 0 and args.lr > 0):
        p.error("--slack must be >= 0 and --weight, --rho, --lr > 0")
    data = so.spiral_data()
    rows = []
    for seed in args.seeds:
        v = so.train_spiral(
            so.Method("vanilla", None),
            seed=seed,
            steps=args.start_steps,
            lr=args.start_lr,
            data=data,
        )
        mse0, nfe0 = prediction(v["model"].vector_field, data)
        target = (1 + args.slack) * mse0
        rows.append((seed, f"vanilla, {args.start_steps} steps", mse0, nfe0, 0, v["train_s"]))
        for constrained in (False, True):
            field, k, wall = refine(
                v["model"].vector_field,
                data,
                target,
                steps=args.steps,
                lr=args.lr,
                weight=args.weight,
                rho=args.rho,
                every=args.every,
                constrained=constrained,
            )
            mse, nfe = prediction(field, data)
            name = "+ constrained step count" if constrained else "+ vanilla continued"
            rows.append((seed, f"{name}, {args.steps} steps", mse, nfe, k, wall))
            print(f"seed {seed} {name}: MSE {mse:.4g} NFE {nfe} (kept step {k})", flush=True)
    print(
        f"\nstart: {args.start_steps} Adam steps at {args.start_lr}; refinement: {args.steps} "
        f"Adam steps at {args.lr}, target MSE (1 + {args.slack}) x the start's, w {args.weight}, "
        f"rho {args.rho}, multiplier every {args.every}\n"
    )
    print("| seed | model | MSE | NFE | NFE / start | MSE / start | kept step | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for seed, name, mse, nfe, k, wall in rows:
        base = next(r for r in rows if r[0] == seed)
        print(
            f"| {seed} | {name} | {mse:.4g} | {nfe} | {nfe / base[3]:.2f} | "
            f"{mse / base[2]:.2f} | {k} | {wall:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
