"""Heat equation on a plate with two holes, Neumann flux at the holes, against its closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml
import sciml.cli
import sciml.pinn as P


NAME = "heat-holes"
KAPPA = 0.05
A, B, PHASE = jnp.pi, jnp.pi / 2, 0.3
PLATE = P.Box([-1.0, -1.0], [1.0, 1.0])
HOLES = P.Disk([-0.4, -0.3], 0.3) | P.Disk([0.45, 0.4], 0.25)
SPACE = PLATE - HOLES
DOMAIN = P.SpaceTime(SPACE, 0.0, 1.0)


def exact(z):
    """u = exp(-kappa (a^2 + b^2) t) sin(a x + phase) cos(b y) solves u_t = kappa lap u."""
    x, y, t = z[0], z[1], z[2]
    return jnp.exp(-KAPPA * (A**2 + B**2) * t) * jnp.sin(A * x + PHASE) * jnp.cos(B * y)


def hole_flux(z):
    # du/dn of the exact solution, n the domain's outward normal (into the hole).
    return jax.grad(exact)(z) @ DOMAIN.normal(z)


def make_model(key, *, width=50, depth=4):
    return sciml.nn.MLP(3, "scalar", width, depth, activation=jnp.tanh, key=key)


def residual(u, z):
    _, jac, sec = P.field_derivatives(u, z, second=(0, 1))
    return jac[2] - KAPPA * (sec[0] + sec[1])


def make_loss(points, boundary_points):
    constraints = {
        "plate": P.DirichletBC(DOMAIN.boundary(part=PLATE), exact, boundary_points),
        "holes": P.NeumannBC(DOMAIN.boundary(part=HOLES), hole_flux, boundary_points),
        "initial": P.InitialCondition(DOMAIN, exact, boundary_points),
    }
    return P.PDELoss(residual, DOMAIN, points, constraints=constraints,
                     weights={"plate": 10.0, "initial": 10.0})


def rel_l2(model, n=81, times=(0.0, 0.25, 0.5, 0.75, 1.0)):
    xs = np.linspace(-1, 1, n)
    preds, refs = [], []
    for t in times:
        preds.append(P.grid_values(lambda p: model(jnp.append(p, t)), SPACE, xs, xs))
        refs.append(P.grid_values(lambda p: exact(jnp.append(p, t)), SPACE, xs, xs))
    pred, ref = np.stack(preds), np.stack(refs)
    ok = ~np.isnan(ref)
    return float(np.linalg.norm(pred[ok] - ref[ok]) / np.linalg.norm(ref[ok])), xs, pred, ref


def stages(options, key):
    """Adam on points resampled every step, then the self-scaled Broyden update
    (`sciml.SSBroyden2`, dense inverse Hessian) on one fixed, larger set."""
    adam_steps = options.steps_or(options.pick(300, 2000))
    quasi_newton_steps = options.pick(100, 1000)
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
    # 3-[30]x3-1 (2011 parameters) keeps SSBroyden2's dense P x P matrix small (32 MB).
    model = make_model(mkey, width=options.pick(20, 30), depth=3)
    loss = make_loss(options.pick(500, 1000), options.pick(100, 200))
    result = sciml.fit(model, loss, stages(options, pkey), key=fkey, progress=options.progress)
    err, xs, pred, ref = rel_l2(result.model)
    pts = loss.sample(skey)
    P.plot_fields(
        options.out / "solution.png", xs, xs,
        {"PINN u (t = 1)": pred[-1], "exact u (t = 1)": ref[-1],
         "|error| (t = 1)": np.abs(pred[-1] - ref[-1])},
        points={"collocation (x, y)": pts["residual"][:, :2], "plate": pts["plate"][:, :2],
                "holes": pts["holes"][:, :2]},
    )
    sciml.plot.history(result.history, options.out / "loss.png", title=NAME)
    summary = P.stage_summary(result)
    summary["ssbroyden2_steps"] = summary.pop("lbfgs_steps")
    return {"rel_l2": err, **summary}


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
