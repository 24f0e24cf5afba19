"""PINNacle's Poisson2d-C: Laplace on a square minus four disks, u = 1 outside, 0 on the holes."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml
import sciml.cli
import sciml.pinn as P


NAME = "poisson2d-c"

# PINNacle src/pde/poisson.py::Poisson2D_Classic: [-1/2, 1/2]^2 minus disks r = 0.1.
SQUARE = P.Box([-0.5, -0.5], [0.5, 0.5])
HOLES = (P.Disk([0.3, 0.3], 0.1) | P.Disk([-0.3, 0.3], 0.1)
         | P.Disk([0.3, -0.3], 0.1) | P.Disk([-0.3, -0.3], 0.1))
DOMAIN = SQUARE - HOLES
REFERENCE = pathlib.Path(__file__).resolve().parent / "references" / "poisson2d_c_fem.npz"


def make_model(key, *, width=50, depth=4):
    net = sciml.nn.MLP(2, "scalar", width, depth, activation=jnp.tanh, key=key)
    # The network sees the square mapped onto [-1, 1]^2.
    return sciml.nn.OutputTransform(net, lambda x, n: n,
                                    inputs=sciml.nn.Rescale([-0.5, -0.5], [0.5, 0.5]))


def residual(u, x):
    _, _, sec = P.field_derivatives(u, x)
    # Scaled by the square's side squared, so the residual is O(1) like the data.
    return 0.01 * (sec[0] + sec[1])


def make_loss(points, boundary_points):
    # Two named Dirichlet terms, one per CSG part of the boundary.
    constraints = {
        "outer": P.DirichletBC(DOMAIN.boundary(part=SQUARE), 1.0, boundary_points),
        "holes": P.DirichletBC(DOMAIN.boundary(part=HOLES), 0.0, boundary_points),
    }
    return P.PDELoss(residual, DOMAIN, points, constraints=constraints)


def load_reference():
    ref = np.load(REFERENCE)
    return ref["x"], ref["y"], ref["u"].astype(np.float64)


def rel_l2(model):
    xs, ys, u_ref = load_reference()
    u = P.grid_values(model, DOMAIN, xs, ys)
    ok = ~np.isnan(u_ref) & ~np.isnan(u)
    return float(np.linalg.norm(u[ok] - u_ref[ok]) / np.linalg.norm(u_ref[ok])), u, u_ref


def stages(options, key):
    """Adam on points resampled every step, then the self-scaled Broyden update
    (`sciml.SSBroyden2`, dense inverse Hessian) on one fixed, larger set."""
    adam_steps = options.steps_or(options.pick(300, 2000))
    quasi_newton_steps = options.pick(100, 1200)
    fixed = make_loss(options.pick(500, 4000), options.pick(100, 800)).fixed_batch(key)
    return [
        sciml.Stage(optax.adam(optax.exponential_decay(1e-3, 1000, 0.5)), adam_steps),
        sciml.Stage(sciml.SSBroyden2(), quasi_newton_steps, data=fixed),
    ]


def run(options: sciml.cli.RunOptions) -> dict:
    # float64 in this problem only (a context: other problems keep float32).
    with jax.enable_x64(True):
        return _run(options)


def _run(options):
    mkey, fkey, pkey, skey = jax.random.split(jax.random.key(options.seed), 4)
    # --quick: a smaller network and fewer points and steps (a smoke run, not a result).
    # 2-[30]x3-1 (1981 parameters) keeps SSBroyden2's dense P x P matrix small (31 MB).
    model = make_model(mkey, width=options.pick(20, 30), depth=3)
    loss = make_loss(options.pick(500, 1000), options.pick(100, 200))
    result = sciml.fit(model, loss, stages(options, pkey), key=fkey, progress=options.progress)
    err, u, u_ref = rel_l2(result.model)
    xs, ys, _ = load_reference()
    pts = loss.sample(skey)
    P.plot_fields(
        options.out / "solution.png", xs, ys,
        {"PINN u": u, "finite elements": u_ref, "|PINN - FEM|": np.abs(u - u_ref)},
        points={"collocation": pts["residual"], "outer": pts["outer"], "holes": pts["holes"]},
    )
    sciml.plot.history(result.history, options.out / "loss.png", title=NAME)
    summary = P.stage_summary(result)
    summary["ssbroyden2_steps"] = summary.pop("lbfgs_steps")
    return {
        "rel_l2_vs_fem": err,
        "max_abs_error": float(np.nanmax(np.abs(u - u_ref))),
        **summary,
    }


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
