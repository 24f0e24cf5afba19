"""Fisher-KPP with a hidden reaction term: learn 2u(1-u) from sparse noisy sensors."""

import jax
import jax.numpy as jnp
import numpy as np
import sympy

import sciml
import sciml.cli
import sciml.pinn as P


NAME = "hidden-fisher-kpp"

# u_t = D u_xx + R u (1 - u) on [0, 1] x [0, 2], zero flux at both ends.
D, R = 0.01, 2.0
X_SPAN, T_SPAN = (0.0, 1.0), (0.0, 2.0)


def initial(x):
    return 0.1 + 0.4 * jnp.exp(-(((x - 0.5) / 0.1) ** 2))


def known(d):
    """The diffusion, known: u_t = D u_xx + ?."""
    return D * d.u_xx


def true_hidden(inputs):
    u = inputs[0]
    return R * u * (1 - u)


def reference(x, t, nx=1025):
    """The true solution on `x` (grid) x `t`, shape (len(t), len(x)): method of lines on
    `nx` points (second order, h = 1e-3) at rtol 1e-10, interpolated onto `x`."""
    grid = jnp.linspace(*X_SPAN, nx)
    ts = jnp.asarray(t)
    sol = P.method_of_lines(
        lambda d: known(d) + true_hidden(jnp.stack([d.u])), initial(grid), grid, ts,
        P.Neumann(), t0=T_SPAN[0], rtol=1e-10, atol=1e-12, max_steps=1_000_000,
    )
    return np.stack([np.interp(np.asarray(x), np.asarray(grid), row) for row in np.asarray(sol)])


def make_data(sensors=10, times=5, initial_points=50, noise=0.01, seed=0):
    """`sensors` equispaced sensors read at `times` times in (0, t1], plus
    `initial_points` readings of u(x, 0); noise eps * mean(u) * N(0, 1)."""
    xs = np.linspace(*X_SPAN, sensors + 2)[1:-1]
    ts = np.linspace(*T_SPAN, times + 1)[1:]
    x0 = np.linspace(*X_SPAN, initial_points)
    clean = reference(xs, ts)
    X, T = np.meshgrid(xs, ts)
    x_obs = np.concatenate([x0, X.ravel()])
    t_obs = np.concatenate([np.zeros_like(x0), T.ravel()])
    u_obs = np.concatenate([np.asarray(initial(jnp.asarray(x0))), clean.ravel()])
    rng = np.random.default_rng(seed)
    u_obs = u_obs + noise * u_obs.mean() * rng.standard_normal(u_obs.shape)
    return x_obs, t_obs, u_obs


def recover(steps=6000, noise=0.01, seed=0, progress=True, lbfgs_steps=500,
            refit_steps=30):
    """Fit the hidden-term PINN, name the reaction, re-fit the formula (float64)."""
    with jax.enable_x64(True):
        return _recover(steps, noise, seed, progress, lbfgs_steps, refit_steps)


def _recover(steps, noise, seed, progress, lbfgs_steps, refit_steps):
    key = jax.random.key(seed)
    mkey, fkey, lkey = jax.random.split(key, 3)
    x_obs, t_obs, u_obs = make_data(noise=noise, seed=seed)
    problem = P.HiddenTermPDE(known, x_obs, t_obs, u_obs, x_span=X_SPAN, t_span=T_SPAN,
                              boundary=P.Neumann())
    stages = problem.stages(steps, lbfgs_steps=lbfgs_steps, key=lkey)
    result = sciml.fit(problem.model(key=mkey), problem.loss, stages, key=fkey,
                       progress=progress)
    model = result.model

    x, t = np.linspace(*X_SPAN, 101), np.linspace(*T_SPAN, 51)
    ref = reference(x, t)
    surrogate_error = problem.solution_error(model, x, t, ref)
    samples = problem.hidden_samples(model)
    lo, hi = float(samples.min()), float(samples.max())
    us = jnp.linspace(lo, hi, 200)[:, None]
    h, h_true = jax.vmap(model.hidden)(us), jax.vmap(true_hidden)(us)
    hidden_error = float(jnp.linalg.norm(h - h_true) / jnp.linalg.norm(h_true))
    discovery = problem.discover(model)
    # The default selection (cross-validated STLSQ) for comparison.
    selected = problem.discover(model, backend=sciml.symbolic.STLSQ())
    # Close the loop: the formula in the PDE, its coefficients re-fitted to the sensors.
    closed = problem.closed_form(discovery.jax_fn, model=model)
    refit = closed
    if refit_steps:
        refit = problem.refit_closed_form(closed, steps=refit_steps, key=fkey, progress=progress)
    closed_error = float("nan") if refit is None else problem.solution_error(refit, x, t, ref)
    refit = closed if refit is None else refit

    u = sympy.Symbol("u")

    def coefficients(expr):
        poly = sympy.Poly(sympy.expand(expr), u)
        c = {m[0]: float(v) for m, v in zip(poly.monoms(), poly.coeffs())}
        return c.get(1, 0.0), c.get(2, 0.0), {k: v for k, v in c.items() if k not in (1, 2)}

    a, b, others = coefficients(discovery.expression)
    a_fit, b_fit, _ = coefficients(refit.term.expression)
    return dict(
        problem=problem, model=model, history=result.history, discovery=discovery,
        refit=refit, x=x, t=t, ref=ref,
        metrics={
            "discovered": str(discovery.expression),
            "discovered_cross_validated": str(selected.expression),
            "refitted": str(refit.term.expression),
            "support_exact": not others and a != 0 and b != 0,
            "a": a, "b": b,
            "a_rel_error": abs(a - R) / R, "b_rel_error": abs(-b - R) / R,
            "a_refit": a_fit, "b_refit": b_fit,
            "u_rel_l2": surrogate_error,
            "hidden_rel_l2": hidden_error,
            "observed_u_range": [lo, hi],
            "closed_form_u_rel_l2": closed_error,
            "fit_s": result.timings["total"],
        },
    )


def run(options: sciml.cli.RunOptions) -> dict:
    out = recover(steps=options.steps_or(options.pick(800, 6000)), seed=options.seed,
                  progress=options.progress, lbfgs_steps=options.pick(0, 500),
                  refit_steps=options.pick(0, 30))
    problem, model, x, t, ref = out["problem"], out["model"], out["x"], out["t"], out["ref"]
    X, T = np.meshgrid(x, t)
    with jax.enable_x64(True):
        pred = np.asarray(jax.vmap(model.surrogate)(jnp.asarray(X.ravel()),
                                                    jnp.asarray(T.ravel()))).reshape(ref.shape)
        closed = np.asarray(out["refit"](jnp.asarray(t)))
        grid = np.asarray(out["refit"].x)
        closed = np.stack([np.interp(x, grid, row) for row in closed])
        us = np.linspace(*out["metrics"]["observed_u_range"], 200)
        h = np.asarray(jax.vmap(model.hidden)(jnp.asarray(us)[:, None]))
        h_sym = np.asarray(jax.vmap(out["discovery"].jax_fn)(jnp.asarray(us)[:, None]))
    fig, axes = sciml.plot.figure(1, 3, figsize=(15, 4), layout="constrained")
    for i, ti in enumerate((0.0, 0.5, 1.0, 2.0)):
        k = int(np.argmin(np.abs(t - ti)))
        axes[0].plot(x, ref[k], "k-", lw=1)
        axes[0].plot(x, pred[k], f"C{i}--", label=f"PINN, t = {t[k]:.1f}")
        axes[0].plot(x, closed[k], f"C{i}:", lw=2)
        sel = np.isclose(np.asarray(problem.t_obs), t[k])
        axes[0].plot(np.asarray(problem.x_obs)[sel], np.asarray(problem.u_obs)[sel], f"C{i}o",
                     ms=3)
    axes[0].set_xlabel("x")
    axes[0].set_title("reference (-), PINN (--), discovered PDE (:)", fontsize=9)
    axes[0].legend(fontsize=7)
    im = axes[1].imshow(np.abs(pred - ref).T, origin="lower", aspect="auto",
                        extent=[t[0], t[-1], x[0], x[-1]])
    axes[1].set_xlabel("t")
    axes[1].set_ylabel("x")
    axes[1].set_title("|PINN - reference|")
    fig.colorbar(im, ax=axes[1])
    axes[2].plot(us, R * us * (1 - us), "k-", label="2u(1-u)")
    axes[2].plot(us, h, "C0--", label="hidden net")
    axes[2].plot(us, h_sym, "C1:", lw=2, label=out["metrics"]["discovered"])
    axes[2].set_xlabel("u")
    axes[2].legend(fontsize=7)
    sciml.plot.save(fig, options.out / "solution_and_hidden.png")
    sciml.plot.history(out["history"], options.out / "loss.png", title=NAME)
    return out["metrics"]


RESULTS_SECTION = "Fisher-KPP and Burgers (PDE hidden terms)"


def size_note(metrics: dict, options: sciml.cli.RunOptions) -> str | None:
    """Why the run did not name 2u(1-u) within 10 % (None: it did)."""
    error = max(metrics["a_rel_error"], metrics["b_rel_error"])
    if metrics["support_exact"] and error <= 0.1:
        return None
    support = "" if metrics["support_exact"] else "the wrong support, "
    return (f"The discovered reaction is {metrics['discovered']} ({support}coefficients up "
            f"to {error:.0%} off 2u - 2u^2): after {metrics['fit_steps']} steps the hidden "
            f"network is still {metrics['hidden_rel_l2']:.0%} off, and sparse regression "
            "names what the network holds. The full run (6000 Adam + 500 L-BFGS steps) "
            "names 2.0154 u - 2.0221 u^2, re-fitted 1.993 u - 1.991 u^2 (solution L2 "
            "5.4e-3).")


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
