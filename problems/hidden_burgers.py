"""Viscous Burgers with a hidden advection term: learn -u u_x from sparse noisy sensors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy

import sciml
import sciml.cli
import sciml.pinn as P
from sciml.data import burgers_cole_hopf


NAME = "hidden-burgers"

# u_t = NU u_xx - u u_x on [-1, 1] x [0, 1], u(x, 0) = -sin(pi x), u(+-1, t) = 0. The
# viscosity is ten times the PINN benchmark's 0.01 / pi: its shock (width ~ nu) is what
# a CPU-minutes run resolves; the hidden net must extrapolate u_x over the front.
NU = 0.1 / math.pi
X_SPAN, T_SPAN = (-1.0, 1.0), (0.0, 1.0)


def known(d):
    """The diffusion, known: u_t = NU u_xx + ?."""
    return NU * d.u_xx


def initial(x):
    return -jnp.sin(jnp.pi * x)


def reference(x, t):
    """Cole-Hopf on the grid `x` x `t`, shape (len(t), len(x))."""
    return burgers_cole_hopf(np.asarray(x)[None, :], np.asarray(t)[:, None], NU)


def make_data(sensors=16, times=10, noise=0.01, seed=0):
    """`sensors` equispaced interior sensors read at `times` times in (0, t1]; noise
    eps * mean|u| * N(0, 1)."""
    xs = np.linspace(*X_SPAN, sensors + 2)[1:-1]
    ts = np.linspace(*T_SPAN, times + 1)[1:]
    X, T = np.meshgrid(xs, ts)
    u = reference(xs, ts)
    rng = np.random.default_rng(seed)
    u = u + noise * np.abs(u).mean() * rng.standard_normal(u.shape)
    return X.ravel(), T.ravel(), u.ravel()


def recover(steps=6000, noise=0.01, seed=0, progress=True, lbfgs_steps=500,
            refit_steps=20):
    """Fit the hidden-term PINN, name the advection term, re-fit the formula (float64)."""
    with jax.enable_x64(True):
        return _recover(steps, noise, seed, progress, lbfgs_steps, refit_steps)


def _recover(steps, noise, seed, progress, lbfgs_steps, refit_steps):
    key = jax.random.key(seed)
    mkey, fkey, lkey = jax.random.split(key, 3)
    x_obs, t_obs, u_obs = make_data(noise=noise, seed=seed)
    problem = P.HiddenTermPDE(known, x_obs, t_obs, u_obs, x_span=X_SPAN, t_span=T_SPAN,
                              hidden_inputs=("u", "u_x"), initial=initial,
                              boundary=P.Dirichlet(0.0))
    stages = problem.stages(steps, lbfgs_steps=lbfgs_steps, key=lkey)
    result = sciml.fit(problem.model(key=mkey), problem.loss, stages, key=fkey,
                       progress=progress)
    model = result.model

    x, t = np.linspace(*X_SPAN, 201), np.linspace(*T_SPAN, 51)
    ref = reference(x, t)
    surrogate_error = problem.solution_error(model, x, t, ref)
    samples = problem.hidden_samples(model)
    h = jax.vmap(model.hidden)(jnp.asarray(samples))
    h_true = -samples[:, 0] * samples[:, 1]
    hidden_error = float(np.linalg.norm(h - h_true) / np.linalg.norm(h_true))
    discovery = problem.discover(model)
    # The default selection (cross-validated STLSQ) for comparison.
    selected = problem.discover(model, backend=sciml.symbolic.STLSQ())
    closed = problem.closed_form(discovery.jax_fn, nx=257)
    refit = closed
    if refit_steps:
        refit = problem.refit_closed_form(closed, steps=refit_steps, key=fkey, progress=progress)
    closed_error = float("nan") if refit is None else problem.solution_error(refit, x, t, ref)
    refit = closed if refit is None else refit

    u, u_x = sympy.symbols("u u_x")
    found = sympy.expand(discovery.expression)
    coefficient = float(found.coeff(u).coeff(u_x))
    return dict(
        problem=problem, model=model, history=result.history, discovery=discovery,
        refit=refit, x=x, t=t, ref=ref, samples=samples,
        metrics={
            "discovered": str(discovery.expression),
            "discovered_cross_validated": str(selected.expression),
            "refitted": str(refit.term.expression),
            "support_exact": [str(s) for s in discovery.support[0]] == ["u*u_x"],
            "u_u_x_coefficient": coefficient,
            "coefficient_rel_error": abs(coefficient + 1.0),
            "u_rel_l2": surrogate_error,
            "hidden_rel_l2": hidden_error,
            "closed_form_u_rel_l2": closed_error,
            "fit_s": result.timings["total"],
        },
    )


def run(options: sciml.cli.RunOptions) -> dict:
    out = recover(steps=options.steps_or(options.pick(800, 6000)), seed=options.seed,
                  progress=options.progress, lbfgs_steps=options.pick(0, 500),
                  refit_steps=options.pick(0, 20))
    model, x, t, ref = out["model"], out["x"], out["t"], out["ref"]
    X, T = np.meshgrid(x, t)
    with jax.enable_x64(True):
        pred = np.asarray(jax.vmap(model.surrogate)(jnp.asarray(X.ravel()),
                                                    jnp.asarray(T.ravel()))).reshape(ref.shape)
        s = out["samples"]
        h = np.asarray(jax.vmap(model.hidden)(jnp.asarray(s)))
    fig, axes = sciml.plot.figure(1, 3, figsize=(15, 4), layout="constrained")
    ext = [t[0], t[-1], x[0], x[-1]]
    for ax, field, title in ((axes[0], pred, "PINN u(x, t)"),
                             (axes[1], np.abs(pred - ref), "|PINN - Cole-Hopf|")):
        im = ax.imshow(field.T, origin="lower", aspect="auto", extent=ext, cmap="RdBu_r")
        ax.set_xlabel("t")
        ax.set_ylabel("x")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    truth = -s[:, 0] * s[:, 1]
    axes[2].plot(truth, h, ".", ms=2)
    lim = [truth.min(), truth.max()]
    axes[2].plot(lim, lim, "k-", lw=1)
    axes[2].set_xlabel("-u u_x along the learned field")
    axes[2].set_ylabel("hidden net")
    axes[2].set_title(out["metrics"]["discovered"], fontsize=8)
    sciml.plot.save(fig, options.out / "solution_and_hidden.png")
    sciml.plot.history(out["history"], options.out / "loss.png", title=NAME)
    return out["metrics"]


RESULTS_SECTION = "Fisher-KPP and Burgers (PDE hidden terms)"


def size_note(metrics: dict, options: sciml.cli.RunOptions) -> str | None:
    """Why the run did not name -u u_x within 10 % (None: it did)."""
    error = metrics["coefficient_rel_error"]
    if metrics["support_exact"] and error <= 0.1:
        return None
    support = "" if metrics["support_exact"] else "the wrong support, "
    return (f"The discovered hidden term is {metrics['discovered']} ({support}u u_x "
            f"coefficient {error:.0%} off): after {metrics['fit_steps']} steps the hidden "
            f"network is still {metrics['hidden_rel_l2']:.0%} off -u u_x, and sparse "
            "regression names what the network holds. The full run (6000 Adam + 500 "
            "L-BFGS steps) names -0.99777 u u_x, re-fitted -1.00029 u u_x (solution L2 "
            "7.7e-4).")


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
