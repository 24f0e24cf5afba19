"""1-D Poisson PINN, -u'' = f on [0, 1] with u(0) = u(1) = 0, against its closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml
import sciml.cli


NAME = "poisson-1d"

# u(x) = sin(pi x) + 0.1 sin(8 pi x): a smooth mode plus a fine one.
K1, K2, A2 = jnp.pi, 8 * jnp.pi, 0.1


def exact(x):
    return jnp.sin(K1 * x) + A2 * jnp.sin(K2 * x)


def source(x):
    return K1**2 * jnp.sin(K1 * x) + A2 * K2**2 * jnp.sin(K2 * x)


# Residuals are divided by the size of the source so the loss starts near 1.
SCALE = K1**2 + A2 * K2**2


def make_model(key):
    net = sciml.nn.MLP("scalar", "scalar", 32, 3, activation=jnp.tanh, key=key)
    # u = x (1 - x) N(x): the boundary conditions hold exactly; N sees x mapped to [-1, 1].
    return sciml.nn.OutputTransform(
        net, lambda x, n: x * (1 - x) * n, inputs=sciml.nn.Rescale(0.0, 1.0)
    )


def loss(model, points, *, key):
    x = jax.random.uniform(key, (points,))

    def residual(xi):
        u_xx = jax.grad(jax.grad(model))(xi)
        return (-u_xx - source(xi)) / SCALE

    r = jax.vmap(residual)(x)
    return jnp.mean(r**2)


def run(options: sciml.cli.RunOptions) -> dict:
    key = jax.random.key(options.seed)
    mkey, fkey = jax.random.split(key)
    model = make_model(mkey)
    adam_steps = options.steps_or(options.pick(600, 3000))
    lbfgs_steps = options.pick(1500, 4000)
    points = 256
    # Adam with fresh points every step, then L-BFGS on one fixed set of points (a
    # line-search stage sees one objective).
    stages = [
        sciml.Stage(optax.adam(optax.exponential_decay(1e-2, 500, 0.5)), adam_steps),
        sciml.Stage(optax.lbfgs(), lbfgs_steps),
    ]
    result = sciml.fit(
        model,
        lambda m, b, *, key: loss(m, points, key=key),
        stages,
        key=fkey,
        progress=options.progress,
    )
    x = jnp.linspace(0.0, 1.0, 1001)
    u = jax.vmap(result.model)(x)
    ue = exact(x)
    rel_l2 = float(jnp.linalg.norm(u - ue) / jnp.linalg.norm(ue))
    max_err = float(jnp.max(jnp.abs(u - ue)))

    fig, (ax1, ax2) = sciml.plot.figure(1, 2, figsize=(10, 3.8))
    ax1.plot(x, ue, "k-", lw=2, label="closed form")
    ax1.plot(x, u, "C1--", label="PINN")
    ax1.set_xlabel("x")
    ax1.set_ylabel("u")
    ax1.legend()
    ax2.semilogy(x, np.abs(np.asarray(u - ue)) + 1e-16)
    ax2.set_xlabel("x")
    ax2.set_ylabel("|error|")
    sciml.plot.save(fig, options.out / "solution.png")
    sciml.plot.history(result.history, options.out / "loss.png", title=NAME)
    return {
        "rel_l2": rel_l2,
        "max_abs_error": max_err,
        "final_loss": float(result.history["loss"][-1]),
        "steps": int(result.history["step"][-1]) + 1,
        "compile_s": result.timings["compile"],
        "train_s": result.timings["total"],
    }


def size_note(metrics: dict, options: sciml.cli.RunOptions) -> str | None:
    """Why the PINN missed 1e-3 relative L2 against the closed form (None: it met it)."""
    if metrics["rel_l2"] <= 1e-3:
        return None
    return (f"Relative L2 {metrics['rel_l2']:.2g} against the closed form after "
            f"{metrics['steps']} steps: not converged yet; the full run trains 3000 Adam + "
            "4000 L-BFGS steps.")


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
