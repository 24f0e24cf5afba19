"""Harmonic oscillator family -u''/2 + w^2 x^2 u/2 = eps u: one conditional eigen-PINN for all w."""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import sciml
import sciml.cli
import sciml.pinn as P


NAME = "eigen-oscillator"
W_RANGE = (0.5, 3.0)


def make_family(quick: bool):
    # The ground state exp(-w x^2 / 2) is below 1e-15 of its peak at |x| = 8.3 / sqrt(w):
    # L = 12 is far enough for the softest member (w = 0.5).
    return P.EigenproblemFamily(
        lambda x, p: 0.5 * p[0] ** 2 * x**2,
        (-12.0, 12.0),
        [W_RANGE],
        stiffness=0.5,
        quadrature=P.GaussLegendre(96 if quick else 128),
        conditions=8 if quick else 16,
    )


def run(options: sciml.cli.RunOptions) -> dict:
    family = make_family(options.quick)
    mkey, fkey = jax.random.split(jax.random.key(options.seed))
    model = P.ConditionalEigenPINN(family, width=options.pick(32, 48), depth=3, key=mkey)
    stages = P.eigen_stages(
        family,
        adam_steps=options.steps_or(options.pick(1500, 5000)),
        lbfgs_steps=options.pick(300, 1500),
        grid=(12,),
    )
    t0 = time.perf_counter()
    result = sciml.fit(model, family.loss, stages, key=fkey, progress=options.progress)
    train_s = time.perf_counter() - t0
    model = result.model

    w = jnp.linspace(*W_RANGE, 26)  # held out: the L-BFGS stage used Gauss nodes
    eps = np.asarray(jax.vmap(model.eigenvalue)(w[:, None]))
    exact = np.asarray(w) / 2
    rel = np.abs(eps - exact) / exact

    x = np.linspace(-6.0, 6.0, 601)
    l2 = []
    fig, (ax1, ax2) = sciml.plot.figure(1, 2, figsize=(11, 4))
    for j, wj in enumerate((0.5, 1.0, 3.0)):
        p = jnp.asarray([wj])
        u = np.asarray(jax.vmap(lambda xi: model.eigenfunction(xi, p))(jnp.asarray(x)))
        ue = (wj / math.pi) ** 0.25 * np.exp(-wj * x**2 / 2)
        l2.append(math.sqrt(np.trapezoid((u - ue) ** 2, x)))
        ax2.plot(x, ue, f"C{j}-", lw=2, label=f"exact, w = {wj:g}")
        ax2.plot(x, u, "k--", lw=1)
    ax1.plot(w, exact, "k-", lw=2, label="w / 2")
    ax1.plot(w, eps, "C1o", ms=4, label="conditional PINN")
    ax1.set_xlabel("w")
    ax1.set_ylabel("ground-state eigenvalue")
    ax1.legend()
    ax2.set_xlabel("x")
    ax2.set_ylabel("normalised ground state (dashed: PINN)")
    ax2.legend(fontsize=8)
    sciml.plot.save(fig, options.out / "oscillator.png")
    sciml.plot.history(result.history, options.out / "loss.png", title=NAME)
    return {
        "mean_rel_eps_error": float(rel.mean()),
        "max_rel_eps_error": float(rel.max()),
        "min_eps_minus_exact": float((eps - exact).min()),
        "max_eigenfunction_l2_error": float(max(l2)),
        "train_s": train_s,
        "steps": int(result.history["step"][-1]) + 1,
    }


def size_note(metrics: dict, options: sciml.cli.RunOptions) -> str | None:
    """Why the eigenvalues missed the conditional eigen-PINN's targets (None: they met them)."""
    if (metrics["mean_rel_eps_error"] <= 1e-3 and metrics["max_rel_eps_error"] <= 5e-3
            and metrics["min_eps_minus_exact"] >= -1e-4):
        return None
    return (f"Ground-state eigenvalues {metrics['mean_rel_eps_error']:.2g} off on average "
            f"(max {metrics['max_rel_eps_error']:.2g}; targets 1e-3 and 5e-3) after "
            f"{metrics['steps']} steps: not converged yet; the full run trains 5000 Adam "
            "+ 1500 L-BFGS steps on 16 frequencies.")


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
