"""Nd2Fe14B nucleation field vs a sech^2 defect: one conditional eigen-PINN against Kronmueller."""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import sciml
import sciml.cli
import sciml.experiments.magnet as magnet
import sciml.pinn as P


NAME = "magnet-nucleation"

# Nd2Fe14B-like constants in units where the eigenproblem is well scaled:
# x in nm, A in pJ/m, K in MJ/m^3 (then A / x^2 is in MJ/m^3 too), Js in T.
K1 = 4.3  # MJ/m^3
A = 7.7  # pJ/m
JS = 1.61  # T
DELTA0 = math.sqrt(A / K1)  # nm; the Bloch wall width is pi * DELTA0


def field(eps_mj):
    """mu0 H_N in tesla from the eigenvalue in MJ/m^3."""
    return magnet.nucleation_field(1e6 * jnp.asarray(eps_mj), JS)


def make_family(quick: bool):
    return magnet.kronmuller_family(
        K1,
        A,
        (1.0 * DELTA0, 3.0 * DELTA0),  # defect width r0 in nm
        (0.5 * K1, 1.0 * K1),  # anisotropy drop dK in MJ/m^3
        quadrature=P.GaussLegendre(96 if quick else 160),
        conditions=8 if quick else 16,
    )


def evaluation_grid(family, n_r=9, n_d=6):
    """The held-out 9 x 6 grid (bounds included; training never sees these points)."""
    r = np.linspace(family.lower[0], family.upper[0], n_r)
    d = np.linspace(family.lower[1], family.upper[1], n_d)
    R, D = np.meshgrid(r, d, indexing="ij")
    return jnp.asarray(np.stack([R.ravel(), D.ravel()], axis=1))


def train(options, family, key):
    mkey, fkey = jax.random.split(key)
    width = options.pick(32, 48)
    model = P.ConditionalEigenPINN(family, width=width, depth=3, key=mkey)
    stages = P.eigen_stages(
        family,
        adam_steps=options.steps_or(options.pick(1500, 6000)),
        lbfgs_steps=options.pick(300, 2000),
        learning_rate=2e-3,
    )
    return sciml.fit(model, family.loss, stages, key=fkey, progress=options.progress)


def run(options: sciml.cli.RunOptions) -> dict:
    family = make_family(options.quick)
    t0 = time.perf_counter()
    result = train(options, family, jax.random.key(options.seed))
    train_s = time.perf_counter() - t0
    model = result.model

    ps = evaluation_grid(family)
    pred = np.asarray(jax.vmap(model.eigenvalue)(ps))
    exact = np.asarray(magnet.kronmuller_eigenvalue(K1, ps[:, 1], ps[:, 0], A))
    rel = np.abs(pred - exact) / exact
    hn_pred, hn_exact = np.asarray(field(pred)), np.asarray(field(exact))

    # Plot 1: mu0 H_N against the defect width for several strengths.
    fig, ax = sciml.plot.figure(figsize=(6.5, 4.5))
    r_fine = np.linspace(family.lower[0], family.upper[0], 200)
    r_grid = np.unique(np.asarray(ps[:, 0]))
    for j, frac in enumerate((0.5, 0.75, 1.0)):
        dk = frac * K1
        ax.plot(
            r_fine / (math.pi * DELTA0),
            field(magnet.kronmuller_eigenvalue(K1, dk, r_fine, A)),
            f"C{j}-",
            label=f"Kronmueller, dK/K1 = {frac:g}",
        )
        pts = jnp.stack([jnp.asarray(r_grid), jnp.full(len(r_grid), dk)], axis=1)
        ax.plot(
            r_grid / (math.pi * DELTA0),
            field(jax.vmap(model.eigenvalue)(pts)),
            f"C{j}o",
            ms=5,
            label=f"conditional PINN, dK/K1 = {frac:g}",
        )
    ax.axhline(float(field(K1)), color="0.5", ls=":", label="mu0 H_K (no defect)")
    ax.set_xlabel("defect width r0 / Bloch wall width delta_B")
    ax.set_ylabel("nucleation field mu0 H_N (T)")
    ax.set_title("Nd2Fe14B: K1 = 4.3 MJ/m3, A = 7.7 pJ/m, Js = 1.61 T")
    ax.legend(fontsize=7)
    sciml.plot.save(fig, options.out / "nucleation_field.png")

    # Plot 2: relative error of the eigenvalue over the held-out grid.
    fig, ax = sciml.plot.figure(figsize=(5.5, 4))
    im = ax.imshow(
        rel.reshape(9, 6).T,
        origin="lower",
        aspect="auto",
        extent=[1, 3, 0.5, 1],
        cmap="viridis",
    )
    fig.colorbar(im, ax=ax, label="relative error of eps")
    ax.set_xlabel("r0 / sqrt(A / K1)")
    ax.set_ylabel("dK / K1")
    sciml.plot.save(fig, options.out / "eigenvalue_error.png")

    # Plot 3: normalised eigenfunctions against the Poeschl-Teller ground state sech^lam.
    fig, ax = sciml.plot.figure(figsize=(6, 4))
    x = np.linspace(family.a, family.b, 801)
    for j, (r0, dk) in enumerate(((DELTA0, 0.5 * K1), (3 * DELTA0, K1))):
        p = jnp.asarray([r0, dk])
        u = np.asarray(jax.vmap(lambda xi: model.eigenfunction(xi, p))(jnp.asarray(x)))
        lam = 0.5 * (math.sqrt(1 + 4 * dk * r0**2 / A) - 1)
        ue = np.cosh(x / r0) ** -lam
        ue /= math.sqrt(np.trapezoid(ue**2, x))
        ax.plot(x, ue, f"C{j}-", lw=2, label=f"sech^lam, r0 = {r0:.2f} nm, dK = {dk:.2f}")
        ax.plot(x, u, "k--", lw=1)
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("normalised ground state (dashed: PINN)")
    ax.legend(fontsize=7)
    sciml.plot.save(fig, options.out / "eigenfunctions.png")
    sciml.plot.history(result.history, options.out / "loss.png", title=NAME)

    return {
        "mean_rel_eps_error": float(rel.mean()),
        "max_rel_eps_error": float(rel.max()),
        "min_eps_minus_exact_MJ_m3": float((pred - exact).min()),
        "max_abs_HN_error_T": float(np.abs(hn_pred - hn_exact).max()),
        "HK_T": float(field(K1)),
        "HN_range_T": [float(hn_exact.min()), float(hn_exact.max())],
        "train_s": train_s,
        "steps": int(result.history["step"][-1]) + 1,
    }


RESULTS_SECTION = "PINNs (`benchmarks/pinn.py`)"


def size_note(metrics: dict, options: sciml.cli.RunOptions) -> str | None:
    """Why the eigenvalues missed the Kronmueller targets (None: they met them)."""
    if (metrics["mean_rel_eps_error"] <= 1e-3 and metrics["max_rel_eps_error"] <= 5e-3
            and metrics["min_eps_minus_exact_MJ_m3"] >= -1e-4):
        return None
    return (f"Eigenvalues {metrics['mean_rel_eps_error']:.2g} off on average (max "
            f"{metrics['max_rel_eps_error']:.2g}; targets 1e-3 and 5e-3) after "
            f"{metrics['steps']} steps: not converged yet. The full Kronmueller family "
            "(6000 Adam + 2000 L-BFGS steps) gives 9.96e-7 mean and 7.44e-6 max.")


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
