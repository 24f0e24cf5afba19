"""Curvature-aware training against Adam and Adam + L-BFGS at equal wall-clock budget.

    python benchmarks/curvature.py --case poisson          # 2-D Poisson, 600 s per method
    python benchmarks/curvature.py --case heat --budget 300
    python benchmarks/curvature.py --case burgers --budget 900
    python benchmarks/curvature.py --case deeponet --budget 120
    python benchmarks/curvature.py --case cost             # time and memory of one step
    python benchmarks/curvature.py --case poisson --methods lm,engd --budget 60

Every training case runs its methods one after the other on the same network (same
initial parameters), the same points and the same objective ½‖r‖², each for the same
wall-clock budget (`--budget`, seconds per method, compilation included), and prints a
table (method, steps, wall time, final error, time to reach each level) and writes a PNG
of the error against wall time and a JSON of the curves under `--out`
(runs/curvature/). The error is recorded inside the compiled loop (a `fit` recorder); a
callback stops `fit` once the history's time passes the budget. Float64 throughout.

Cases:

- `poisson`: -Δu = 2π² sin(πx) sin(πy) on [0,1]², u = 0 on the boundary (energy natural
  gradient's case, Müller & Zeinhofer 2023; Dangel et al. 2024 Fig. 1). 2-64-1 tanh (257
  parameters), the 30 x 30 interior grid (i/31, j/31) and 30 points per side; residual
  `[r_pde / √900; r_bc / √120]`. Relative L2 on a 101 x 101 grid.
- `heat`: u_t = u_xx / 4 on [0,1] x [0,1], u = exp(-π² t / 4) sin(πx), u(0, t) = u(1, t)
  = 0 (ENGD's heat case). 2-64-1 tanh, the 30 x 30 interior grid, 40 points each on t = 0,
  x = 0 and x = 1; residual `[r_pde / √900; r_ic_bc / √120]`. Relative L2 on 101 x 101.
- `burgers`: u_t + u u_x = (0.01/π) u_xx on [-1,1] x [0,1], the `pinn-burgers` problem:
  its network (`--width` x 3 tanh, hard initial and boundary conditions, so the residual
  is the PDE's alone), `--points` uniform collocation points drawn once. Relative L2
  against the Cole-Hopf solution on the 256 x 101 grid `pinn-burgers` reports.
- `deeponet`: the `deeponet-antiderivative` problem (GRF l = 0.2, 100 sensors, 1000
  training and 1000 test functions, branch [100, 40, 40], trunk [1, 40, 40], ReLU);
  residual `(prediction - y) / √(100 000)`, so ½‖r‖² is half the training MSE. Test MSE.
- `cost`: no training; one Gauss-Newton step (the Jacobian, the solve and the step) on
  the Poisson residual for a grid of P (2-w-1 networks) and N (interior grids), with
  `DenseSolve`, `WoodburySolve` and `CGSolve`: seconds per step and the bytes of J and of
  the factored matrix, and XLA's temporary buffer size for the compiled step.

Methods (`--methods`, comma-separated; the registry `METHODS`):

- `adam`: Adam (Poisson 1.69e-3, Dangel et al.'s tuned rate; otherwise 1e-3).
- `adam+lbfgs`: Adam for `--adam-share` of the budget, then `optax.lbfgs()`.
- `lm`: `sciml.GaussNewton()` (Levenberg-Marquardt, λ adapted by the gain ratio) from the
  initial network, the solver chosen by size.
- `engd`: `sciml.GaussNewton(GridLineSearch(damping=--engd-damping))`: energy natural
  gradient descent (fixed damping, best step on the grid 2⁻ᵏ).
- `adam+lm`: Adam for `--adam-share` of the budget, then `lm` (not in the default list).
- `adam+ssbroyden2`, `adam+ssbfgs`: Adam for `--adam-share` of the budget, then the
  self-scaled Broyden / BFGS update (`sciml.SSBroyden2()`, `sciml.SSBFGS()`: dense
  inverse Hessian, strong-Wolfe line search) on ½‖r‖² (the second not in the default list).
- `adam-rs` (Burgers): Adam on `--points` points drawn afresh every step.
- `adam+ssbroyden2-rs`, `adam+lbfgs-rs`, `adam+bfgs-rs` (Burgers): Adam on `--points`
  points drawn afresh every step, then the second update in stages of `--stage-steps`
  steps, each on a fresh uniform draw of `--resample-points` points (a quasi-Newton
  stage needs one fixed objective; between stages its Hessian estimate starts again).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple


# JAX's CPU QR and Cholesky call LAPACK through scipy's OpenBLAS, whose worker threads spin
# against XLA's own on a small machine: a 1149 x 129 QR took 1 s instead of 5 ms on this
# 2-core CPU with another job running. Set before jax (and scipy) load.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import sciml  # noqa: E402
import sciml.pinn as P  # noqa: E402


ROOT = pathlib.Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------
# Points and residuals (float64 is switched on in `main`, so importing this module, as
# the tests do, changes no global setting)


def unit_grid(n=30):
    """The n x n grid ((i+1)/(n+1), (j+1)/(n+1)) inside the unit square, (n², 2)."""
    g = (np.arange(n) + 1) / (n + 1)
    X, Y = np.meshgrid(g, g, indexing="ij")
    return np.stack([X.ravel(), Y.ravel()], axis=1)


def square_boundary(per_side=30):
    """`per_side` points on each side of the unit square, corners once, (4 per_side, 2)."""
    s = np.arange(per_side) / per_side
    zero, one = np.zeros_like(s), np.ones_like(s)
    return np.concatenate([
        np.stack([s, zero], 1), np.stack([one, s], 1),
        np.stack([1 - s, one], 1), np.stack([zero, 1 - s], 1),
    ])


def heat_boundary(per_piece=40):
    """`per_piece` midpoints each on t = 0, x = 0 and x = 1 (points are (x, t))."""
    s = (np.arange(per_piece) + 0.5) / per_piece
    zero, one = np.zeros_like(s), np.ones_like(s)
    return np.concatenate([np.stack([s, zero], 1), np.stack([zero, s], 1),
                           np.stack([one, s], 1)])


def poisson_source(p):
    return 2 * jnp.pi**2 * jnp.sin(jnp.pi * p[0]) * jnp.sin(jnp.pi * p[1])


def poisson_exact(p):
    return jnp.sin(jnp.pi * p[0]) * jnp.sin(jnp.pi * p[1])


def poisson_residual(u, p):
    """-Δu - f at one point, by two forward-mode second derivatives."""
    lap = P.derivatives_along(u, p, 0)[2] + P.derivatives_along(u, p, 1)[2]
    return -lap - poisson_source(p)


HEAT_KAPPA = 0.25


def heat_exact(p):
    """u(x, t) = exp(-π² t / 4) sin(πx) at p = (x, t)."""
    return jnp.exp(-(jnp.pi**2) * HEAT_KAPPA * p[1]) * jnp.sin(jnp.pi * p[0])


def heat_residual(u, p):
    """u_t - u_xx / 4 at one point p = (x, t), in one forward pass."""
    e_x = jnp.zeros_like(p).at[0].set(1)
    e_t = jnp.zeros_like(p).at[1].set(1)
    _, _, uxx, (ut,) = P.directional_derivatives(u, p, e_x, (e_t,))
    return ut - HEAT_KAPPA * uxx


def pde_residual(pde, interior, boundary, boundary_value):
    """The residual-convention loss `[r_pde / √N_i; (u - g) / √N_b]` of a PDE with
    Dirichlet (and initial) data `boundary_value` on `boundary` (None: no such block)."""
    wi = 1 / math.sqrt(interior.shape[0])

    def residual(model, batch, *, key):
        r = wi * jax.vmap(lambda p: pde(model, p))(interior)
        if boundary is None:
            return r
        wb = 1 / math.sqrt(boundary.shape[0])
        r_b = jax.vmap(model)(boundary) - jax.vmap(boundary_value)(boundary)
        return jnp.concatenate([r, wb * r_b])

    return residual


def half_square(residual):
    """The scalar ½‖r‖² of a residual loss, for the first-order methods."""

    def loss(model, batch, *, key):
        r = residual(model, batch, key=key)
        return 0.5 * jnp.sum(r**2)

    return loss


def rel_l2_metric(test_points, truth):
    truth = jnp.asarray(truth)

    def metric(model):
        return jnp.linalg.norm(jax.vmap(model)(test_points) - truth) / jnp.linalg.norm(truth)

    return metric


# ----------------------------------------------------------------------------------
# Cases


class Case(NamedTuple):
    name: str
    title: str  # for the table and the figure
    model: Any
    residual: Callable  # residual-convention loss
    metric: Callable  # model -> scalar error (inside the compiled loop)
    metric_name: str
    levels: tuple  # errors whose first time is reported
    target: float  # the target (dashed line)
    adam_lr: Any
    every: int  # record the metric every `every` first-order steps
    sampled: Callable | None = None  # n -> residual loss drawing n points from its key


def n_params(model):
    return sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))


def _unit_square_case(name, label, pde, boundary, boundary_value, exact, adam_lr, args,
                      key):
    """A case on [0,1]² with a 2-w-1 tanh network, the 30 x 30 interior grid, and the
    relative L2 error on the 101 x 101 grid."""
    interior = jnp.asarray(unit_grid())
    boundary = jnp.asarray(boundary)
    model = sciml.nn.MLP(2, "scalar", args.width or 64, 1, key=key)
    g = np.linspace(0, 1, 101)
    X, Y = np.meshgrid(g, g, indexing="ij")
    test = jnp.asarray(np.stack([X.ravel(), Y.ravel()], axis=1))
    return Case(
        name,
        f"{label}, 2-{args.width or 64}-1 tanh ({n_params(model)} params), "
        f"{interior.shape[0]} + {boundary.shape[0]} points",
        model,
        pde_residual(pde, interior, boundary, boundary_value),
        rel_l2_metric(test, jax.vmap(exact)(test)),
        "rel. L2", (1e-4, 1e-5, 1e-6), 1e-6, adam_lr, 100,
    )


def poisson_case(args, key):
    return _unit_square_case("poisson", "2-D Poisson", poisson_residual, square_boundary(),
                             lambda p: jnp.zeros(()), poisson_exact, 1.69e-3, args, key)


def heat_case(args, key):
    return _unit_square_case("heat", "1-D heat u_t = u_xx/4", heat_residual, heat_boundary(),
                             heat_exact, heat_exact, 1e-3, args, key)


def burgers_case(args, key):
    sys.path.insert(0, str(ROOT / "problems"))
    import pinn_burgers

    mkey, pkey = jax.random.split(key)
    width = args.width or 20
    model = pinn_burgers.make_model(mkey, width=width, depth=3)
    lo, hi = jnp.array([-1.0, 0.0]), jnp.array([1.0, 1.0])
    points = jax.random.uniform(pkey, (args.points, 2), jnp.float64, lo, hi)
    x, t, u_ref = sciml.data.burgers_reference(256, 101)
    X, T = np.meshgrid(x, t)
    test = jnp.asarray(np.stack([X.ravel(), T.ravel()], axis=1))
    nu = pinn_burgers.NU

    def sampled(n):
        def residual(model, batch, *, key):
            pts = jax.random.uniform(key, (n, 2), jnp.float64, lo, hi)
            return pde_residual(lambda u, p: P.burgers_residual(u, p, nu), pts, None,
                                None)(model, batch, key=key)

        return residual

    return Case(
        "burgers",
        f"Burgers nu = 0.01/pi, 2-{width}x3-1 tanh ({n_params(model)} params), "
        f"{args.points} points",
        model,
        pde_residual(lambda u, p: P.burgers_residual(u, p, nu), points, None, None),
        rel_l2_metric(test, u_ref.ravel()),
        "rel. L2", (1e-2, 1e-3, 1e-4), 1e-4,
        optax.exponential_decay(1e-3, 5000, 0.5), 100, sampled,
    )


def deeponet_residual(train):
    """`(prediction - y) / √(number of values)`: ½‖r‖² is half the training MSE."""
    w = 1 / math.sqrt(train.y.size)

    def residual(model, batch, *, key):
        import sciml.operators as so

        return w * jnp.ravel(so.predict(model, train) - train.y)

    return residual


def deeponet_case(args, key):
    import sciml.data as sd
    import sciml.operators as so

    # The problem's keys (problems/deeponet_antiderivative.py, seed 0).
    mkey, _, trkey, tekey = jax.random.split(jax.random.key(args.seed), 4)
    space = sd.GRF(0.2)
    train = so.as_arrays(sd.antiderivative(space, num=1000, sensors=100, key=trkey), jnp.float64)
    test = so.as_arrays(sd.antiderivative(space, num=1000, sensors=100, key=tekey), jnp.float64)
    act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "gelu": jax.nn.gelu}[args.activation]
    model = so.DeepONet([100, 40, 40], [1, 40, 40], activation=act, key=mkey)
    model = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a,
                         model)

    def test_mse(m):
        return jnp.mean((so.predict(m, test) - test.y) ** 2)

    return Case(
        "deeponet",
        f"DeepONet antiderivative, [100,40,40]/[1,40,40] {args.activation} "
        f"({n_params(model)} params), "
        "1000 x 100 training values",
        model, deeponet_residual(train), test_mse, "test MSE",
        (1e-5, 2e-6, 9.3e-7), 9.3e-7, 1e-3, 100,
    )


CASES = {"poisson": poisson_case, "heat": heat_case, "burgers": burgers_case,
         "deeponet": deeponet_case}


# ----------------------------------------------------------------------------------
# Running one method for a budget


class ErrorRecorder:
    """Records the case's error every `every` steps (inside the compiled loop) and stops
    `fit` once the wall time passes `budget` seconds."""

    def __init__(self, metric, every, budget):
        self.metric, self.every, self.budget = metric, every, budget
        self.records = []

    def recorder(self, model):
        return self.metric, self.every

    def __call__(self, info):
        self.records.extend((int(s), float(v)) for s, v in info.records)
        return info.elapsed >= self.budget


def run_stage(model, case, loss, update, budget, every, key, steps=10**8):
    """`fit` from `model` for `steps` steps or until `budget` seconds of wall time;
    returns (model, [(time, error)], info)."""
    rec = ErrorRecorder(case.metric, every, budget)
    res = sciml.fit(model, loss, update, steps=steps, key=key, progress=False,
                    callbacks=[rec])
    hist = res.history
    times = hist["time"]
    curve = [(float(times[s - 1]), e) for s, e in rec.records if 0 < s <= len(times)]
    info = dict(steps=int(len(hist["loss"])), final_loss=float(hist["loss"][-1]),
                compile_s=float(res.timings["compile"]), total_s=float(times[-1]))
    if "accepted" in hist:
        info["accepted"] = float(np.mean(hist["accepted"]))
        info["final_damping"] = float(hist["damping"][-1])
        info["mean_cg_iterations"] = float(np.mean(hist["cg_iterations"]))
    return res.model, curve, info


def single(update_of, every=None):
    """One update for the whole budget, recording every `every` steps (None: the case's)."""

    def run(case, budget, key, args):
        _, curve, info = run_stage(case.model, case, *update_of(case, args), budget,
                                   every or case.every, key)
        return curve, info

    return run


def two_stages(first_of, then_of, then_every):
    """Adam for `args.adam_share` of the budget, then another update for the rest."""

    def run(case, budget, key, args):
        m, c1, i1 = run_stage(case.model, case, *first_of(case, args),
                              budget * args.adam_share, case.every, key)
        _, c2, i2 = run_stage(m, case, *then_of(case, args), budget - i1["total_s"],
                              then_every, key)
        curve = c1 + [(t + i1["total_s"], e) for t, e in c2]
        info = dict(i2, steps=i1["steps"] + i2["steps"], adam_steps=i1["steps"],
                    compile_s=i1["compile_s"] + i2["compile_s"],
                    total_s=i1["total_s"] + i2["total_s"])
        return curve, info

    return run


def resampled(then_of, then_every):
    """Adam on `--points` points drawn afresh every step for `args.adam_share` of the
    budget, then another update in stages of `--stage-steps` steps, each on its own
    fresh draw of `--resample-points` points (the case's `sampled` loss)."""

    def run(case, budget, key, args):
        if case.sampled is None:
            raise SystemExit(f"--methods: {case.name} has no sampling loss for resampling")
        adam = (half_square(case.sampled(args.points)), optax.adam(case.adam_lr))
        m, c1, i1 = run_stage(case.model, case, *adam, budget * args.adam_share,
                              case.every, key)
        _, update = then_of(case, args)
        loss = half_square(case.sampled(args.resample_points))
        # One `fit` per draw of points (the loss samples them from the stage's key; the
        # same loss and update reuse one compiled program).
        curve, used, steps, compile_s, i = list(c1), i1["total_s"], i1["steps"], 0.0, 0
        while used < budget:
            i += 1
            m, c2, i2 = run_stage(m, case, loss, update, budget - used, then_every,
                                  jax.random.fold_in(key, i), steps=args.stage_steps)
            curve += [(t + used, e) for t, e in c2]
            used, steps = used + i2["total_s"], steps + i2["steps"]
            compile_s += i2["compile_s"]
        info = dict(i2, steps=steps, adam_steps=i1["steps"], draws=i,
                    compile_s=i1["compile_s"] + compile_s, total_s=used)
        return curve, info

    return run


def adam_resampled(case, budget, key, args):
    """Adam on `--points` points drawn afresh every step, for the whole budget."""
    if case.sampled is None:
        raise SystemExit(f"--methods: {case.name} has no sampling loss for resampling")
    _, curve, info = run_stage(case.model, case, half_square(case.sampled(args.points)),
                               optax.adam(case.adam_lr), budget, case.every, key)
    return curve, info


def adam_update(case, args):
    return half_square(case.residual), optax.adam(case.adam_lr)


def lbfgs_update(case, args):
    return half_square(case.residual), optax.lbfgs()


def gauss_newton_update(case, args):
    return case.residual, sciml.GaussNewton(solver=solver_arg(args))


def engd_update(case, args):
    search = sciml.train.GridLineSearch(damping=args.engd_damping)
    return case.residual, sciml.GaussNewton(search, solver=solver_arg(args))


def solver_arg(args):
    return {"auto": None, "dense": sciml.train.DenseSolve(),
            "woodbury": sciml.train.WoodburySolve(),
            "cg": sciml.train.CGSolve(max_steps=args.cg_steps)}[args.solver]


def ssbroyden2_update(case, args):
    return half_square(case.residual), sciml.SSBroyden2()


def bfgs_update(case, args):
    return half_square(case.residual), sciml.BFGS()


def ssbfgs_update(case, args):
    return half_square(case.residual), sciml.SSBFGS()


# The methods a case compares.
METHODS = {
    "adam": single(adam_update),
    "adam+lbfgs": two_stages(adam_update, lbfgs_update, 10),
    "lm": single(gauss_newton_update, every=1),
    "engd": single(engd_update, every=1),
    "adam+lm": two_stages(adam_update, gauss_newton_update, 1),
    "adam+ssbroyden2": two_stages(adam_update, ssbroyden2_update, 10),
    "adam+ssbfgs": two_stages(adam_update, ssbfgs_update, 10),
    "adam-rs": adam_resampled,
    "adam+ssbroyden2-rs": resampled(ssbroyden2_update, 10),
    "adam+lbfgs-rs": resampled(lbfgs_update, 10),
    "adam+bfgs-rs": resampled(bfgs_update, 10),
}
DEFAULT_METHODS = "adam,adam+lbfgs,lm,engd,adam+ssbroyden2"


def first_time_below(curve, level):
    for t, e in curve:
        if e <= level:
            return t
    return None


def run_case(args):
    builder = CASES[args.case]
    mkey, fkey = jax.random.split(jax.random.key(args.seed))
    case = builder(args, mkey)
    methods = args.methods.split(",")
    load = os.getloadavg()
    print(f"{case.title}; float64; budget {args.budget:.0f} s per method; "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    results = {}
    for name in methods:
        curve, info = METHODS[name](case, args.budget, fkey, args)
        info.update(final_error=curve[-1][1] if curve else math.nan,
                    best_error=min(e for _, e in curve) if curve else math.nan,
                    load=os.getloadavg()[0],
                    times={f"{lvl:.1e}": first_time_below(curve, lvl) for lvl in case.levels})
        results[name] = dict(info=info, curve=curve)
        print(row(name, info, case), flush=True)
    print_table(results, case)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(case=args.case, title=case.title, budget=args.budget, load_start=load,
                command=" ".join(sys.argv), methods=methods)
    (out / f"{args.case}.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))
    plot(results, case, args, out / f"{args.case}_error_vs_time.png")
    print(f"wrote {out / (args.case + '.json')} and {out / (args.case + '_error_vs_time.png')}")


def row(name, info, case):
    times = " | ".join("-" if t is None else f"{t:.0f}" for t in info["times"].values())
    return (f"| {name} | {info['steps']} | {info['total_s']:.0f} | {info['final_error']:.2e} | "
            f"{info['best_error']:.2e} | {times} | {info['load']:.1f} |")


def print_table(results, case):
    levels = " | ".join(f"s to {lvl:.1e}" for lvl in case.levels)
    print(f"\n| method | steps | wall s | final {case.metric_name} | best | {levels} | load |")
    print("|---" * (6 + len(case.levels)) + "|")
    for name, r in results.items():
        print(row(name, r["info"], case))


def plot(results, case, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, r in results.items():
        if r["curve"]:
            t, e = zip(*r["curve"])
            ax.plot(t, e, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("wall time (s), compilation included")
    ax.set_ylabel(case.metric_name)
    load = np.mean([r["info"]["load"] for r in results.values()])
    ax.set_title(f"{case.title}\nfloat64, 2-core CPU (mean 1-min load {load:.1f}), "
                 f"{args.budget:.0f} s per method", fontsize=8)
    ax.axhline(case.target, color="grey", lw=0.8, ls="--")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------
# Cost per step against P and N


def cost_step(width, n_side, solver):
    """A jitted Gauss-Newton step on 2-D Poisson with a 2-width-1 network and an
    n_side² interior grid (plus 4 n_side boundary points), and its arguments."""
    model = sciml.nn.MLP(2, "scalar", width, 1, key=jax.random.key(0))
    interior = jnp.asarray(unit_grid(n_side))
    boundary = jnp.asarray(square_boundary(n_side))
    residual = pde_residual(poisson_residual, interior, boundary, lambda p: jnp.zeros(()))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    objective = sciml.train.Objective(
        lambda p, frozen: (residual(eqx.combine(p, static), None, key=None), {}), None,
        has_aux=False, varies=False)
    update = sciml.GaussNewton(solver=solver)
    step = jax.jit(lambda p, s: update.step(objective, p, s, None))
    n_res = interior.shape[0] + boundary.shape[0]
    return step, (params, update.init(params)), n_params(model), n_res


def time_step(step, inputs, repeats):
    compiled = step.lower(*inputs).compile()
    try:
        temp = compiled.memory_analysis().temp_size_in_bytes
    except Exception:  # memory_analysis is not on every backend
        temp = None
    jax.block_until_ready(compiled(*inputs))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*inputs))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), temp, int(out[1]["cg_iterations"])


def run_cost(args):
    widths = [int(w) for w in args.widths.split(",")]
    sides = [int(n) for n in args.sides.split(",")]
    # "cg" stops at its tolerance, which the first step's damping (λ = 1e-3) meets in a
    # few dozen iterations; late in training, with λ near 0, CG runs to its cap, which
    # "cg-cap" times (a tolerance no solve meets).
    solvers = {"dense": sciml.train.DenseSolve(), "woodbury": sciml.train.WoodburySolve(),
               "cg": sciml.train.CGSolve(max_steps=args.cg_steps),
               "cg-cap": sciml.train.CGSolve(max_steps=args.cg_steps, rtol=1e-300)}
    load = os.getloadavg()
    print(f"One Gauss-Newton step (Jacobian + solve + step), 2-D Poisson, 2-w-1 tanh, float64; "
          f"CG {args.cg_steps} iterations at most; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("\n| P | N | J (MB) | dense s | dense QR (MB) | Woodbury s | Woodbury QR (MB) | "
          "CG s (iters) | CG s, capped | XLA temp dense / Woodbury / CG (MB) | "
          "fastest (capped CG) |")
    print("|---" * 11 + "|")
    rows = []
    MB = 2.0**20
    for w in widths:
        for n in sides:
            res = {}
            for name, solver in solvers.items():
                step, inputs, p, nres = cost_step(w, n, solver)
                side = p if name == "dense" else nres
                # Householder QR of the (N + P) x side matrix: skip what would take minutes.
                if not name.startswith("cg") and 2 * (p + nres) * side**2 > args.max_flops:
                    res[name] = None
                    continue
                res[name] = time_step(step, inputs, args.repeats)
            jb = 8 * p * nres / MB
            fact = {"dense": 8 * (p + nres) * p / MB, "woodbury": 8 * (p + nres) * nres / MB}

            def s(name):
                return "skipped" if res[name] is None else f"{res[name][0]:.3f}"

            def temp(name):
                if res[name] is None or res[name][1] is None:
                    return "-"
                return f"{res[name][1] / MB:.0f}"

            timed = {k: v[0] for k, v in res.items() if v is not None and k != "cg"}
            best = min(timed, key=timed.get)
            cg = res["cg"]
            print(f"| {p} | {nres} | {jb:.1f} | {s('dense')} | {fact['dense']:.1f} | "
                  f"{s('woodbury')} | {fact['woodbury']:.1f} | {cg[0]:.3f} ({cg[2]}) | "
                  f"{s('cg-cap')} | "
                  f"{temp('dense')} / {temp('woodbury')} / {temp('cg')} | {best} |", flush=True)
            rows.append(dict(P=p, N=nres, J_MB=jb, factored_MB=fact,
                             results={k: None if v is None else dict(s=v[0], temp_bytes=v[1],
                                                                     cg_iterations=v[2])
                                      for k, v in res.items()}, fastest=best))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost.json").write_text(json.dumps(dict(load_start=load, command=" ".join(sys.argv),
                                                   rows=rows), indent=1))
    plot_cost(rows, out / "cost_per_step.png")
    print(f"wrote {out / 'cost.json'} and {out / 'cost_per_step.png'}")


def plot_cost(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted({r["N"] for r in rows})
    fig, axes = plt.subplots(1, len(ns), figsize=(4 * len(ns), 3.6), sharey=True)
    for ax, n in zip(np.atleast_1d(axes), ns):
        sel = [r for r in rows if r["N"] == n]
        for name, style in (("dense", "o-"), ("woodbury", "s-"), ("cg", "^:"),
                            ("cg-cap", "^-")):
            pts = [(r["P"], r["results"][name]["s"]) for r in sel if r["results"][name]]
            if pts:
                ax.plot(*zip(*pts), style, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters P")
        ax.set_title(f"N = {n} residuals")
    np.atleast_1d(axes)[0].set_ylabel("seconds per Gauss-Newton step")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=[*CASES, "cost"], default="poisson")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per method")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--width", type=int, default=None,
                        help="hidden width (Poisson, heat: 64; Burgers: 20, at most 30)")
    parser.add_argument("--points", type=int, default=2540, help="Burgers collocation points")
    parser.add_argument("--resample-points", type=int, default=8000,
                        help="-rs methods: points of each second-stage draw")
    parser.add_argument("--stage-steps", type=int, default=1000,
                        help="-rs methods: steps on each draw of points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--activation", choices=["relu", "tanh", "gelu"], default="relu",
                        help="deeponet: the networks' activation (the problem's is relu)")
    parser.add_argument("--adam-share", type=float, default=0.25,
                        help="share of the budget Adam gets before L-BFGS / LM")
    parser.add_argument("--engd-damping", type=float, default=1e-10)
    parser.add_argument("--solver", choices=["auto", "dense", "woodbury", "cg"], default="auto")
    parser.add_argument("--cg-steps", type=int, default=100)
    parser.add_argument("--widths", default="16,64,256,1024", help="cost: hidden widths")
    parser.add_argument("--sides", default="10,30,60", help="cost: interior grid sides")
    parser.add_argument("--repeats", type=int, default=3, help="cost: timed steps")
    parser.add_argument("--max-flops", type=float, default=4e10,
                        help="cost: skip a direct solve whose QR needs more")
    parser.add_argument("--out", default="runs/curvature")
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if args.case == "burgers" and args.width is not None and args.width > 30:
        parser.error(f"--width {args.width}: the Burgers case allows at most 30 (3 x 30)")
    return args


def main():
    args = parse_args()
    jax.config.update("jax_enable_x64", True)
    if args.case == "cost":
        run_cost(args)
    else:
        run_case(args)


if __name__ == "__main__":
    main()
