"""Lid-driven cavity at Re = 100 (steady Navier-Stokes), centre lines against Ghia et al. 1982."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml
import sciml.cli
import sciml.pinn as P


NAME = "lid-cavity"
NU = 0.01  # lid speed 1, side 1: Re = 100
DOMAIN = P.Box([0.0, 0.0], [1.0, 1.0])

# Ghia, Ghia & Shin (1982), J. Comput. Phys. 48, 387-411, Tables I and II, Re = 100
# (as listed in jaxpi's examples/ldc/eval.py). u along the vertical centre-line x = 0.5:
GHIA_Y = np.array([1.0000, 0.9766, 0.9688, 0.9609, 0.9531, 0.8516, 0.7344, 0.6172, 0.5000,
                   0.4531, 0.2813, 0.1719, 0.1016, 0.0703, 0.0625, 0.0547, 0.0000])
GHIA_U = np.array([1.00000, 0.84123, 0.78871, 0.73722, 0.68717, 0.23151, 0.00332, -0.13641,
                   -0.20581, -0.21090, -0.15662, -0.10150, -0.06434, -0.04775, -0.04192,
                   -0.03717, 0.00000])
# v along the horizontal centre-line y = 0.5:
GHIA_X = np.array([1.0000, 0.9688, 0.9609, 0.9531, 0.9453, 0.9063, 0.8594, 0.8047, 0.5000,
                   0.2344, 0.2266, 0.1563, 0.0938, 0.0781, 0.0703, 0.0625, 0.0000])
GHIA_V = np.array([0.00000, -0.05906, -0.07391, -0.08864, -0.10313, -0.16914, -0.22445,
                   -0.24533, 0.05454, 0.17527, 0.17507, 0.16077, 0.12317, 0.10890, 0.10091,
                   0.09233, 0.00000])


def make_model(key, *, width=50, depth=4):
    """(u, v, p) from a 2-[50]x4-3 tanh network."""
    return sciml.nn.MLP(2, 3, width, depth, activation=jnp.tanh, key=key)


def residual(model, x):
    return P.navier_stokes_residual(model, x, NU)


def make_loss(points, boundary_points):
    lid = DOMAIN.boundary(where=lambda x: x[1] > 1 - 1e-6)
    walls = DOMAIN.boundary(where=lambda x: x[1] < 1 - 1e-6)
    # The lid's velocity jumps at the two top corners; a lid profile that falls to
    # zero within 2 % of the side from each corner keeps the data continuous (the
    # centre-line tables are barely affected).
    def lid_u(x):
        return jnp.clip(jnp.minimum(x[0], 1 - x[0]) / 0.02, 0, 1)

    constraints = {
        "lid_u": P.DirichletBC(lid, lid_u, boundary_points // 4, component=0),
        "lid_v": P.DirichletBC(lid, 0.0, boundary_points // 4, component=1),
        "wall_u": P.DirichletBC(walls, 0.0, boundary_points, component=0),
        "wall_v": P.DirichletBC(walls, 0.0, boundary_points, component=1),
    }
    weights = {k: 10.0 for k in constraints}
    return P.PDELoss(residual, DOMAIN, points, constraints=constraints, weights=weights)


def centre_lines(model):
    u = jax.vmap(model)(jnp.stack([jnp.full(GHIA_Y.shape, 0.5), jnp.asarray(GHIA_Y)], 1))
    v = jax.vmap(model)(jnp.stack([jnp.asarray(GHIA_X), jnp.full(GHIA_X.shape, 0.5)], 1))
    return np.asarray(u[:, 0]), np.asarray(v[:, 1])


def stages(options, key):
    """Adam on points resampled every step, then the self-scaled Broyden update
    (`sciml.SSBroyden2`, dense inverse Hessian) on one fixed, larger set."""
    adam_steps = options.steps_or(options.pick(300, 2000))
    quasi_newton_steps = options.pick(100, 1200)
    fixed = make_loss(options.pick(500, 3000), options.pick(100, 800)).fixed_batch(key)
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
    # 2-[40]x3-3 (3523 parameters) keeps SSBroyden2's dense P x P matrix small (99 MB).
    model = make_model(mkey, width=options.pick(20, 40), depth=3)
    loss = make_loss(options.pick(500, 1000), options.pick(100, 200))
    result = sciml.fit(model, loss, stages(options, pkey), key=fkey, progress=options.progress)
    u, v = centre_lines(result.model)
    # Errors in units of the lid speed; the lid row itself (y = 1) is data, not a test.
    err_u = np.abs(u - GHIA_U)[1:]
    err_v = np.abs(v - GHIA_V)

    xs = np.linspace(0, 1, 101)
    pred = P.grid_values(result.model, DOMAIN, xs, xs)
    speed = np.hypot(pred[..., 0], pred[..., 1])
    pts = loss.sample(skey)
    P.plot_fields(options.out / "solution.png", xs, xs,
                  {"|velocity|": speed, "pressure": pred[..., 2]},
                  points={"collocation": pts["residual"], "lid": pts["lid_u"],
                          "walls": pts["wall_u"]})
    fig, (a1, a2) = sciml.plot.figure(1, 2, figsize=(10, 4))
    yy = np.linspace(0, 1, 201)
    line = jax.vmap(result.model)(jnp.stack([jnp.full(yy.shape, 0.5), jnp.asarray(yy)], 1))
    a1.plot(np.asarray(line[:, 0]), yy, "C0-", label="PINN")
    a1.plot(GHIA_U, GHIA_Y, "ko", label="Ghia et al. 1982")
    a1.set_xlabel("u(0.5, y)")
    a1.set_ylabel("y")
    a1.legend()
    line = jax.vmap(result.model)(jnp.stack([jnp.asarray(yy), jnp.full(yy.shape, 0.5)], 1))
    a2.plot(yy, np.asarray(line[:, 1]), "C0-", label="PINN")
    a2.plot(GHIA_X, GHIA_V, "ko", label="Ghia et al. 1982")
    a2.set_xlabel("x")
    a2.set_ylabel("v(x, 0.5)")
    sciml.plot.save(fig, options.out / "centre_lines.png")
    sciml.plot.history(result.history, options.out / "loss.png", title=NAME)
    summary = P.stage_summary(result)
    summary["ssbroyden2_steps"] = summary.pop("lbfgs_steps")
    return {
        "max_err_u_centre": float(err_u.max()),
        "max_err_v_centre": float(err_v.max()),
        **summary,
    }


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
