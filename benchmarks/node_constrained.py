"""Neural ODEs: can a trained model be made 30 % cheaper to solve at its accuracy?

The penalties of `node_regularisation.py` (ERNODE and the rest) trade accuracy for NFE on
the spiral along one curve. This experiment asks the constrained question instead: from a
vanilla fit, minimise the number of solver steps subject to MSE <= (1 + slack) x the
vanilla fit's MSE. The objective is `S = Σ_attempts EEst^(1/q)`,
`sciml.ode.StepCountRegulariser`, a differentiable estimate of the steps the controller
takes (it picks h ~ h_j EEst_j^(-1/q), q the error order; rejected attempts count too).
ERNODE's `Σ EEst |h|` is no use here: the controller holds EEst near a constant, so that
sum stays near `const x (t1 - t0)` whatever the step count. Two methods (`--method`):

- `switch` (default, no parameter but the learning rate): Polyak's switching gradient
  method, each Adam step on `c = MSE / target - 1` while c > 0, on `S` otherwise;
- `alm`: an augmented Lagrangian, `w S + rho/2 max(0, c + lambda/rho)^2` with
  `lambda <- max(0, lambda + rho c)` every `--every` steps (its `w` needs tuning per
  problem: 10 suits the spiral, 1000 the pendulum).

The iterate kept is the one with the fewest solver steps among those with MSE <= target.
The control row continues vanilla for the same number of steps (same optimiser, plain MSE)
and keeps its iterate by the same rule, so the extra training alone is measured too.
Prediction NFE and MSE of each kept model come from a fresh `sciml.ode.NeuralODE` solve.

Systems (`--system`): `spiral`, the issue's cubic spiral (`CubicField`, vanilla 300 Adam
steps at 0.05, as `node_regularisation.py`); `pendulum`, a damped pendulum
`theta'' = -sin(theta) - 0.1 theta'` from (2, 0) on [0, 10], 50 samples, fitted by an
MLP 2-50-2 tanh field (vanilla 500 Adam steps at 0.01), a case no issue names.

    python benchmarks/node_constrained.py [--system spiral] [--method switch] [--seeds 0 1]
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

import sciml  # noqa: E402
import sciml.experiments.node as node  # noqa: E402
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


def refine(field, data, target, *, steps, lr, weight, rho, every, method):
    """Adam from `field`; returns the kept iterate, its step, and the wall time."""
    if method == "alm":
        return _refine_alm(
            field, data, target, steps=steps, lr=lr, weight=weight, rho=rho, every=every
        )
    ts, ys = data
    node = _node(field, ts, weight)

    def loss(f, batch, *, key, step):
        pred, stats = eqx.tree_at(lambda m: m.vector_field, node, f)(ys[0], ts)
        mse = jnp.mean((pred - ys) ** 2)
        aux = {"step_count": stats["step_count"], "num_steps": stats["num_steps"] * 1.0}
        return mse, aux

    if method is None:  # vanilla continued: the data loss alone, same selection rule

        def plain(f, batch, *, key, step):
            mse, aux = loss(f, batch, key=key, step=step)
            return mse, {**aux, "data_loss": mse}

        objective = plain
    else:
        objective = so.fewest_steps(loss, target)
    keep = so.KeepFewestSteps(target, start=field)
    start = time.perf_counter()
    sciml.fit(
        field,
        objective,
        optax.adam(lr),
        steps=steps,
        key=jax.random.key(0),
        callbacks=[keep],
        progress=False,
    )
    wall = time.perf_counter() - start
    return (field, 0, wall) if keep.model is None else (keep.model, keep.step, wall)


def _node(field, ts, weight):
    return so.NeuralODE(
        field,
        stepsize_controller=diffrax.PIDController(rtol=TOL, atol=TOL),
        t0=float(ts[0]),
        t1=float(ts[-1]),
        regulariser=so.StepCountRegulariser(weight),
    )


def _refine_alm(field, data, target, *, steps, lr, weight, rho, every):
    ts, ys = data
    node = _node(field, ts, weight)
    opt = optax.adam(lr)

    @eqx.filter_jit
    def step(f, s, lam):
        def loss(f):
            pred, stats = eqx.tree_at(lambda m: m.vector_field, node, f)(ys[0], ts)
            mse = jnp.mean((pred - ys) ** 2)
            c = mse / target - 1
            penalty = 0.5 * rho * jnp.maximum(0, c + lam / rho) ** 2
            return stats["regularisation"] + penalty, (mse, stats["num_steps"], c)

        (_, (mse, n, c)), g = eqx.filter_value_and_grad(loss, has_aux=True)(f)
        u, s = opt.update(g, s, eqx.filter(f, eqx.is_inexact_array))
        return eqx.apply_updates(f, u), s, mse, n, c

    state, lam = opt.init(eqx.filter(field, eqx.is_inexact_array)), 0.0
    best, best_n, best_k = field, None, 0
    start = time.perf_counter()
    for k in range(steps):
        # lam as an array: filter_jit would make a Python float static (a recompile
        # for every new multiplier).
        new, state, mse, n, c = step(field, state, jnp.asarray(lam))
        # mse and n are those of `field`, the iterate before this update.
        if float(mse) <= target and (best_n is None or int(n) < best_n):
            best, best_n, best_k = field, int(n), k
        field = new
        if (k + 1) % every == 0:
            lam = max(0.0, lam + rho * float(c))
    return best, best_k, time.perf_counter() - start


def pendulum_data(n: int = 50, t1: float = 10.0):
    """A damped pendulum `theta'' = -sin(theta) - 0.1 theta'` from (2, 0), Tsit5 at 1e-10."""
    f = lambda t, y, args: jnp.stack([y[1], -jnp.sin(y[0]) - 0.1 * y[1]])
    ts = jnp.linspace(0.0, t1, n)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(f),
        diffrax.Tsit5(),
        0.0,
        t1,
        None,
        jnp.array([2.0, 0.0]),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10),
        max_steps=100_000,
    )
    return ts, sol.ys


class MLPField(eqx.Module):
    """An autonomous field `f(y) = MLP(y)`."""

    mlp: eqx.nn.MLP

    def __init__(self, dim, width, *, key):
        self.mlp = eqx.nn.MLP(dim, dim, width, 1, activation=jnp.tanh, key=key)

    def __call__(self, t, y, args):
        return self.mlp(y)


SYSTEMS = {
    # name: (data, field from key, vanilla steps, vanilla lr, alm weight)
    "spiral": (node.spiral_data, lambda key: so.CubicField(2, 50, key=key), 300, 0.05, 10.0),
    "pendulum": (pendulum_data, lambda key: MLPField(2, 50, key=key), 500, 0.01, 1000.0),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=sorted(SYSTEMS), default="spiral")
    p.add_argument("--method", choices=["switch", "alm"], default="switch")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument(
        "--start-steps",
        type=int,
        default=None,
        help="vanilla Adam steps first (default: the system's)",
    )
    p.add_argument(
        "--start-lr",
        type=float,
        default=None,
        help="vanilla Adam learning rate (default: the system's)",
    )
    p.add_argument("--steps", type=int, default=3000, help="steps of the refinement")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--slack", type=float, default=0.1, help="target = (1 + slack) x MSE")
    p.add_argument(
        "--weight",
        type=float,
        default=None,
        help="alm: w of the step estimate (default: the system's)",
    )
    p.add_argument("--rho", type=float, default=10.0, help="alm: penalty parameter")
    p.add_argument("--every", type=int, default=25, help="alm: steps between updates")
    args = p.parse_args(argv)
    make_data, make_field, start_steps, start_lr, weight = SYSTEMS[args.system]
    start_steps = start_steps if args.start_steps is None else args.start_steps
    start_lr = start_lr if args.start_lr is None else args.start_lr
    weight = weight if args.weight is None or args.method == "switch" else args.weight
    if args.method == "switch":
        weight = 1.0  # S in steps; only the sign of c picks the step
    for name, v in (("start-steps", start_steps), ("steps", args.steps), ("every", args.every)):
        if v <= 0:
            p.error(f"--{name} must be positive, got {v}")
    if not (args.slack >= 0 and weight > 0 and args.rho > 0 and args.lr > 0 and start_lr > 0):
        p.error("--slack must be >= 0 and --weight, --rho, --lr > 0")
    data = make_data()
    rows = []
    for seed in args.seeds:
        v = node.train_spiral(
            node.Method("vanilla", None),
            seed=seed,
            steps=start_steps,
            lr=start_lr,
            data=data,
            field=make_field(jax.random.key(seed)),
        )
        mse0, nfe0 = prediction(v["model"].vector_field, data)
        target = (1 + args.slack) * mse0
        rows.append((seed, f"vanilla, {start_steps} steps", mse0, nfe0, 0, v["train_s"]))
        for method in (None, args.method):
            field, k, wall = refine(
                v["model"].vector_field,
                data,
                target,
                steps=args.steps,
                lr=args.lr,
                weight=weight,
                rho=args.rho,
                every=args.every,
                method=method,
            )
            mse, nfe = prediction(field, data)
            name = "+ vanilla continued" if method is None else f"+ fewest steps ({method})"
            rows.append((seed, f"{name}, {args.steps} steps", mse, nfe, k, wall))
            print(f"seed {seed} {name}: MSE {mse:.4g} NFE {nfe} (kept step {k})", flush=True)
    alm = f", w {weight}, rho {args.rho}, multiplier every {args.every}"
    print(
        f"\n{args.system}: vanilla {start_steps} Adam steps at {start_lr}; refinement "
        f"{args.steps} Adam steps at {args.lr}, target MSE (1 + {args.slack}) x vanilla's"
        f"{alm if args.method == 'alm' else ''}\n"
    )
    print("| seed | model | MSE | NFE | NFE / vanilla | MSE / vanilla | kept step | train s |")
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
