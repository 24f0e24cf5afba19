"""Lotka-Volterra with hidden interactions (UPINN): learn -bxy, gxy from 30 noisy points."""

import re
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import sympy

import sciml
import sciml.cli


NAME = "hidden-lotka-volterra"

# The UPINN / UDE paper's parameters and initial state.
ALPHA, BETA, GAMMA, DELTA = 1.3, 0.9, 0.8, 1.8
Y0 = (0.44249296, 4.6280594)
T_SPAN = (0.0, 3.0)


def known(t, y):
    """The linear parts, known: x' = alpha x + ?, y' = -delta y + ?."""
    return jnp.stack([ALPHA * y[0], -DELTA * y[1]])


def true_hidden(y):
    return jnp.stack([-BETA * y[0] * y[1], GAMMA * y[0] * y[1]])


def reference(ts):
    """The true trajectory by diffrax at tight tolerance."""
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: known(t, y) + true_hidden(y)),
        diffrax.Tsit5(),
        t0=T_SPAN[0],
        t1=float(ts[-1]),
        dt0=None,
        y0=jnp.asarray(Y0),
        saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
        stepsize_controller=diffrax.PIDController(rtol=1e-11, atol=1e-12),
        max_steps=100_000,
    )
    return np.asarray(sol.ys)


def make_data(points, noise, seed):
    """`points` observations spaced 0.1 apart from t = 0, noise eps * mean(y) * N(0, 1)."""
    t = 0.1 * np.arange(points) * (30 / points)
    clean = reference(t)
    rng = np.random.default_rng(seed)
    noisy = clean + noise * clean.mean(axis=0) * rng.standard_normal(clean.shape)
    return t, noisy


def recover(points=30, noise=0.01, steps=20000, seed=0, progress=True, lbfgs_steps=None,
            refit_steps=20):
    """Fit the hidden-term PINN, name the hidden term, re-fit the formula (float64).

    `lbfgs_steps` of L-BFGS follow the `steps` of Adam (None: steps // 20);
    `refit_steps` of Levenberg-Marquardt re-fit the formula's coefficients (0: keep
    those `identify` fitted through the ODE).
    Returns a dict of figures and the objects for plotting.
    """
    if lbfgs_steps is None:
        lbfgs_steps = max(steps // 20, 1)
    with jax.enable_x64(True):
        return _recover(points, noise, steps, seed, progress, lbfgs_steps, refit_steps)


def _recover(points, noise, steps, seed, progress, lbfgs_steps, refit_steps):
    start = time.perf_counter()
    key = jax.random.key(seed)
    t_obs, y_obs = make_data(points, noise, seed)
    problem = sciml.pinn.HiddenTermODE(known, t_obs, y_obs, t_span=T_SPAN)
    mkey, fkey = jax.random.split(key)
    schedule = optax.exponential_decay(3e-3, max(steps // 6, 1), 0.5, end_value=1e-5)
    stages = [sciml.Stage(optax.adam(schedule), steps)]
    if lbfgs_steps:
        stages.append(sciml.Stage(optax.lbfgs(), lbfgs_steps))
    result = sciml.fit(problem.model(key=mkey), problem.loss, stages, key=fkey,
                       progress=progress)
    model = result.model

    ts = np.linspace(*T_SPAN, 301)
    ref = reference(ts)
    surrogate_error = problem.trajectory_error(jax.vmap(model.surrogate), ts, ref)
    # The hidden network where the data go: along the surrogate over the observed times.
    _, states = problem.states(model)
    h_true = jax.vmap(true_hidden)(states)
    hidden_error = float(jnp.linalg.norm(jax.vmap(model.hidden)(states) - h_true)
                         / jnp.linalg.norm(h_true))
    # Name it: sparse regression on the network, supports chosen by the data (closed loop).
    t_id = time.perf_counter()
    identification = problem.identify(model, names=("x", "y"),
                                      library=sciml.symbolic.polynomials(2))
    identify_s = time.perf_counter() - t_id
    discovery = identification.discovery
    # Close the loop with sciml.fit: the formula in the ODE, coefficients re-fitted
    # through diffrax by Levenberg-Marquardt on the misfit residuals (identify's fit is
    # the starting point); forward mode, as GaussNewton forms the Jacobian.
    closed = problem.closed_form(identification.term, y0=identification.y0,
                                 adjoint=diffrax.ForwardMode())
    try:
        refit = closed
        if refit_steps:
            refit = sciml.fit(closed, problem.closed_form_residuals, sciml.GaussNewton(),
                              steps=refit_steps, key=fkey, progress=progress).model
        closed_error = problem.trajectory_error(refit, ts, ref)
    except sciml.DivergenceError:
        # The selected formula makes the ODE blow up: keep it, report the failure.
        refit, closed_error = closed, float("nan")

    support = [sorted(str(t) for t in s) for s in identification.support]
    fitted = refit.term.expression
    coefficient = {}
    x, y = sympy.symbols("x y")
    for name, expr, truth in (("beta", fitted[0], -BETA), ("gamma", fitted[1], GAMMA)):
        xy = sympy.expand(expr).coeff(x * y)
        coefficient[name] = float(xy) if xy != 0 else float("nan")
        coefficient[name + "_rel_error"] = abs(coefficient[name] - truth) / abs(truth)
    return dict(
        problem=problem,
        model=model,
        history=result.history,
        discovery=discovery,
        identification=identification,
        refit=refit,
        ts=ts,
        ref=ref,
        t_obs=t_obs,
        y_obs=y_obs,
        metrics={
            "support": support,
            "support_exact": support == [["x*y"], ["x*y"]],
            "network_regression": [str(e) for e in discovery.expression],
            "network_regression_support": [sorted(str(t) for t in s) for s in discovery.support],
            "refitted": [str(e) for e in fitted],
            **coefficient,
            "surrogate_traj_rel_l2": surrogate_error,
            "hidden_rel_l2": hidden_error,
            "closed_form_traj_rel_l2": closed_error,
            "fit_s": result.timings["total"],
            "identify_s": identify_s,
            "total_s": time.perf_counter() - start,
        },
    )


def run(options: sciml.cli.RunOptions) -> dict:
    # Quick: no L-BFGS stage (compiling it took 40 of the quick run's 70 s); the
    # closed-loop selection still finds the exact support from this rougher network, and
    # its coefficients, fitted through the ODE, are kept (the re-fit starts at them).
    out = recover(
        steps=options.steps_or(options.pick(2000, 20000)),
        seed=options.seed,
        progress=options.progress,
        lbfgs_steps=options.pick(0, None),
        refit_steps=options.pick(0, 20),
    )
    ts, ref, model = out["ts"], out["ref"], out["model"]
    pred = np.asarray(jax.vmap(model.surrogate)(jnp.asarray(ts)))
    closed = np.asarray(out["refit"](jnp.asarray(ts)))
    fig, (ax1, ax2) = sciml.plot.figure(1, 2, figsize=(11, 3.8))
    for j, name in enumerate(("prey x", "predator y")):
        ax1.plot(ts, ref[:, j], "k-", lw=1)
        ax1.plot(ts, pred[:, j], f"C{j}--", label=f"{name}: PINN")
        ax1.plot(ts, closed[:, j], f"C{j}:", lw=2, label=f"{name}: discovered ODE")
        ax1.plot(out["t_obs"], out["y_obs"][:, j], f"C{j}o", ms=3)
    ax1.set_xlabel("t")
    ax1.legend(fontsize=7)
    states = jax.vmap(model.surrogate)(jnp.asarray(ts))
    h = np.asarray(jax.vmap(model.hidden)(states))
    h_true = np.asarray(jax.vmap(true_hidden)(states))
    for j, name in enumerate(("-beta x y", "gamma x y")):
        ax2.plot(ts, h_true[:, j], "k-", lw=1)
        ax2.plot(ts, h[:, j], f"C{j}--", label=f"hidden net ~ {name}")
    ax2.set_xlabel("t (along the trajectory)")
    ax2.legend(fontsize=7)
    title = " ; ".join(out["metrics"]["refitted"])
    ax2.set_title(re.sub(r"\d+\.\d{5,}", lambda m: f"{float(m.group()):.4g}", title), fontsize=9)
    sciml.plot.save(fig, options.out / "trajectory_and_hidden.png")
    sciml.plot.history(out["history"], options.out / "loss.png", title=NAME)
    return out["metrics"]


RESULTS_SECTION = "Lotka-Volterra: noise and data-size sweeps"


def size_note(metrics: dict, options: sciml.cli.RunOptions) -> str | None:
    """Why the run did not name -beta x y, gamma x y within 3 % (None: it did)."""
    error = max(metrics["beta_rel_error"], metrics["gamma_rel_error"])
    if metrics["support_exact"] and error <= 0.03:
        return None
    support = "" if metrics["support_exact"] else "the wrong support, "
    return (f"The selected hidden terms are {'; '.join(metrics['refitted'])} ({support}"
            f"coefficients up to {error:.0%} off): after {metrics['fit_steps']} steps the "
            f"hidden network is {metrics['hidden_rel_l2']:.0%} off the true terms. The full "
            "run (20000 Adam + 1000 L-BFGS steps) names -0.8987 x y and 0.8080 x y (errors "
            "0.15 % and 1.00 %, trajectory L2 6.9e-4).")


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
