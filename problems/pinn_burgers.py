"""Viscous Burgers PINN, Adam then SSBroyden2 on fresh collocation points, against Cole-Hopf."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sciml
import sciml.cli
import sciml.pinn as P
from sciml.data import burgers_reference


NAME = "pinn-burgers"
NU = 0.01 / math.pi


def make_model(key, *, width=20, depth=3):
    """The DeepXDE network (2-[20]x3-1 tanh, Glorot normal) with hard IC and BCs.

    u(x, t) = -sin(pi x) + t (1 - x^2) N(x, t): the initial condition and u(+-1, t) = 0
    hold exactly, so the loss is the PDE residual alone.
    """
    net = sciml.nn.MLP(2, "scalar", width, depth, activation=jnp.tanh, key=key)

    def transform(z, n):
        x, t = z[0], z[1]
        return -jnp.sin(jnp.pi * x) + t * (1 - x**2) * n

    return sciml.nn.OutputTransform(net, transform)


def make_loss(points):
    domain = P.SpaceTime(P.Interval(-1.0, 1.0), 0.0, 1.0)
    return P.PDELoss(lambda u, x: P.burgers_residual(u, x, NU), domain, points)


def rel_l2(model, x, t, u_ref):
    X, T = np.meshgrid(x, t)
    pts = jnp.asarray(np.stack([X.ravel(), T.ravel()], axis=1))
    u = np.asarray(jax.vmap(model)(pts)).reshape(u_ref.shape)
    return float(np.linalg.norm(u - u_ref) / np.linalg.norm(u_ref)), u


def run(options: sciml.cli.RunOptions) -> dict:
    # float64 for this problem only (a context, so other problems in `sciml run all` keep
    # float32): the same recipe ends at rel. L2 1.2e-2 in float32 and 7.3e-3 in float64.
    with jax.enable_x64(True):
        return _run(options)


def _run(options: sciml.cli.RunOptions) -> dict:
    key = jax.random.key(options.seed)
    mkey, fkey = jax.random.split(key)
    model = make_model(mkey)
    adam_steps = options.steps_or(options.pick(1000, 3000))
    draws, qn_steps, qn_points = options.pick((2, 300, 2000), (6, 1000, 8000))
    # Adam on points drawn afresh every step; then SSBroyden2 (dense inverse Hessian,
    # Wolfe line search) in stages, each on its own fresh draw of points (a quasi-Newton
    # stage needs one fixed objective; the loss draws them from the stage's key). On one
    # fixed set every method ends near 0.2 relative L2 with a small residual at the
    # points and a wrong front between them (benchmarks/RESULTS.md).
    stages = [sciml.Stage(optax.adam(optax.exponential_decay(1e-3, 5000, 0.5)), adam_steps)]
    stages += [sciml.Stage(sciml.SSBroyden2(), qn_steps, loss=make_loss(qn_points))] * draws
    result = sciml.fit(model, make_loss(options.pick(1000, 2540)), stages, key=fkey,
                       progress=options.progress)

    x, t, u_ref = burgers_reference(256, 101)
    err, u = rel_l2(result.model, x, t, u_ref)
    hist = result.history
    adam_mask = hist["stage"] == 0
    adam_time = float(hist["time"][adam_mask][-1]) if adam_mask.any() else math.nan

    fig, axes = sciml.plot.figure(1, 3, figsize=(15, 4), layout="constrained")
    ext = [t[0], t[-1], x[0], x[-1]]
    for ax, field, title in (
        (axes[0], u_ref, "Cole-Hopf reference"),
        (axes[1], u, "PINN"),
        (axes[2], np.abs(u - u_ref), "|PINN - reference|"),
    ):
        im = ax.imshow(field.T, origin="lower", aspect="auto", extent=ext, cmap="RdBu_r")
        ax.set_xlabel("t")
        ax.set_ylabel("x")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    sciml.plot.save(fig, options.out / "solution.png")
    fig, ax = sciml.plot.figure(figsize=(6, 4))
    for ti in (0.25, 0.5, 0.75, 1.0):
        i = int(round(ti * (len(t) - 1)))
        ax.plot(x, u_ref[i], "k-", lw=2)
        ax.plot(x, u[i], "--", label=f"t = {t[i]:.2f}")
    ax.set_xlabel("x")
    ax.set_ylabel("u")
    ax.legend(fontsize=8)
    sciml.plot.save(fig, options.out / "slices.png")
    sciml.plot.history(hist, options.out / "loss.png", title=NAME)
    return {
        "rel_l2": err,
        "adam_steps": adam_steps,
        "ssbroyden2_steps": int((hist["stage"] >= 1).sum()),
        "draws": draws,
        "final_loss": float(hist["loss"][-1]),
        "adam_time_s": adam_time,
        "compile_s": result.timings["compile"],
        "train_s": result.timings["total"],
    }


RESULTS_SECTION = "Burgers, ν = 0.01/π (target rel. L2 <= 1e-4 in 15 min)"


def size_note(metrics: dict, options: sciml.cli.RunOptions) -> str | None:
    """Why the PINN missed 1e-3 relative L2 against Cole-Hopf (None: it met it)."""
    if metrics["rel_l2"] <= 1e-3:
        return None
    return (f"Relative L2 {metrics['rel_l2']:.2g} against Cole-Hopf after "
            f"{metrics['adam_steps']} Adam + {metrics['ssbroyden2_steps']} SSBroyden2 steps: "
            "the front is not resolved yet. The full run (3000 Adam steps, then 6 x 1000 "
            "SSBroyden2 steps on fresh draws of 8000 points, float64) gives 1e-5 to 1e-4 "
            "(target 1e-4).")


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
