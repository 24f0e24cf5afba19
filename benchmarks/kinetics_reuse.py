"""Repeated kinetics work on one design: compile once, then only compute.

A chemist's session solves one mechanism many times: other constants, other starts of
a fit, another data set of the same layout, another seed. `sciml.kinetics` keeps its
vector field, the direct fit's residual and the observation Jacobian as module-level
functions of hashable problems (a `Mechanism` compares by its parsed steps), so each is
compiled once. The baseline is what a hand-written script does: a fresh closure for the
vector field and the residual in every call, which diffrax and optimistix compile anew.

Both are timed side by side in one run, per call, on the paper's `g` mechanism (gas
data, 600 values):

- `simulate`: one experiment's stiff solve (Kvaerno5) at new constants;
- direct fit: optimistix Levenberg-Marquardt through a forward-mode Tsit5 solve, from a
  new first guess, then the Gauss-Newton Jacobian;
- ES-MDA: 100 members, 4 assimilations, vmapped Tsit5 forecasts, from a new prior mean;
- KINN with two seeds (width 8, 4 x 300 Adam steps, 100 Levenberg-Marquardt
  steps, no polish; noise-free gas data): the second seed's time beside the first's. Its
  Adam stages, Levenberg-Marquardt polish and Laplace covariance reuse the first seed's
  programs; before, the polish and Laplace were closures per seed and the second seed
  took 0.36-0.49x the first's time (`benchmarks/RESULTS.md`). `--no-kinn` skips this
  part (about 40 s).

    python benchmarks/kinetics_reuse.py [--calls 4] [--no-kinn]
"""

import argparse
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx


jax.config.update("jax_enable_x64", True)

import sciml.ensemble as ens  # noqa: E402
import sciml.experiments.kinetics as kx  # noqa: E402
import sciml.kinetics as kin  # noqa: E402
from sciml.kinetics import predict, rhs  # noqa: E402


def _closure_simulate(
    mechanism, log_k, x0, ts, solver=None, controller=None, adjoint=None, max_steps=16384
):
    """The hand-written solve: a new closure for the field on every call (Kvaerno5 at
    rtol 1e-8 unless told otherwise, as `simulate`)."""

    def field(t, x, args):
        return rhs(mechanism, args, x)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Kvaerno5() if solver is None else solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=x0,
        args=log_k,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller or diffrax.PIDController(rtol=1e-8, atol=1e-10),
        adjoint=adjoint or diffrax.RecursiveCheckpointAdjoint(),
        max_steps=max_steps,
    )
    return sol.ys


def _closure_direct_fit(mechanism, obs, init_log_k):
    """The hand-written direct fit: residual and Jacobian closures built per call (same
    solver, tolerances and least-squares settings as `DirectFit`)."""
    idx = jnp.asarray(obs.flat_index())
    y = obs.values.ravel()[idx]
    sigma = obs.noise_std or 1.0
    theta0 = jnp.asarray(init_log_k)
    controller = diffrax.PIDController(rtol=1e-9, atol=1e-11)

    def observed(theta):
        def one(x0, t):
            return _closure_simulate(
                mechanism, theta, x0, t, diffrax.Tsit5(), controller, diffrax.ForwardMode(), 4096
            )

        states = jax.vmap(one)(obs.x0, obs.t)
        return obs.observe(states, jnp.zeros((0,))).ravel()[idx]

    def residual(psi, args):
        r = (observed(theta0 + 10.0 * jnp.tanh(psi / 10.0)) - y) / sigma
        return jnp.where(jnp.isfinite(r), r, 1e3)

    sol = optx.least_squares(
        eqx.filter_jit(residual),
        optx.LevenbergMarquardt(rtol=1e-10, atol=1e-12),
        jnp.zeros_like(theta0),
        max_steps=200,
        throw=False,
    )
    theta = theta0 + 10.0 * jnp.tanh(sol.value / 10.0)
    jac = jax.jit(jax.jacfwd(observed))(theta)
    return np.asarray(theta), np.asarray(jac)


def _closure_esmda(mechanism, obs, init_log_k, key, n_members=100):
    """The hand-written ES-MDA: `sciml.ensemble.esmda` on a forward closure built per call
    (same prior, tolerances, noise and schedule as `kin.ESMDA(n_members=100)`)."""
    idx = jnp.asarray(obs.flat_index())
    y = obs.values.ravel()[idx]
    controller = diffrax.PIDController(rtol=1e-7, atol=1e-9)
    mean = jnp.asarray(init_log_k)
    kprior, kfit = jax.random.split(key)
    prior = mean[None] + 1.0 * jax.random.normal(kprior, (n_members, mean.shape[0]), mean.dtype)

    def forward(theta):
        pred = predict(
            mechanism,
            obs,
            theta,
            jnp.zeros((0,)),
            stepsize_controller=controller,
            solver=diffrax.Tsit5(),
        )
        return pred.ravel()[idx]

    res = ens.esmda(
        forward, prior, y, jnp.full(y.shape, obs.noise_std), alphas=(4.0,) * 4, key=kfit
    )
    return np.asarray(res.members).mean(0)


def _timed(fn):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t0, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=4, help="calls per method (default 4)")
    parser.add_argument("--no-kinn", action="store_true", help="skip the KINN seeds part")
    args = parser.parse_args(argv)
    if not args.no_kinn:
        # First, so that nothing it compiles is warm yet.
        _kinn_seeds()
    mech, obs, true = kx.synthetic_observations("g", "Q+n", key=jax.random.key(3))
    rng = np.random.default_rng(0)
    starts = [true + rng.uniform(-0.8, 0.8, true.shape) for _ in range(args.calls)]
    x0, ts = obs.x0[0], obs.t[0]

    print(
        f"g mechanism, {int(np.asarray(obs.mask).sum())} observed values, "
        f"{args.calls} calls each; seconds per call (call 1 includes compilation)"
    )
    rows = []
    for name, closure, library in (
        (
            "simulate",
            lambda s: _closure_simulate(mech, jnp.asarray(s), x0, ts),
            lambda s: kin.simulate(mech, jnp.asarray(s), x0, ts),
        ),
        (
            "direct fit",
            lambda s: _closure_direct_fit(mech, obs, s),
            lambda s: kin.DirectFit().estimate(mech, obs, init_log_k=s).log_k,
        ),
        (
            "ES-MDA",
            lambda s: _closure_esmda(mech, obs, s, jax.random.key(1)),
            lambda s: (
                kin.ESMDA(n_members=100)
                .estimate(mech, obs, key=jax.random.key(1), init_log_k=s)
                .log_k
            ),
        ),
    ):
        a = [_timed(lambda s=s: closure(s)) for s in starts]
        b = [_timed(lambda s=s: library(s)) for s in starts]
        if name != "simulate":
            fa = [x[1][0] if name == "direct fit" else x[1] for x in a]
            gap = max(float(np.max(np.abs(u - v[1]))) for u, v in zip(fa, b))
            print(f"  {name}: largest ln k difference between the two {gap:.1e}")
        rows.append((name, [t for t, _ in a], [t for t, _ in b]))
    print(f"{'':12s} {'':>22s} {'call 1':>8s} {'later':>8s} {'total':>8s}")
    for name, ta, tb in rows:
        for label, tt in (("closure per call", ta), ("sciml.kinetics", tb)):
            later = float(np.mean(tt[1:])) if len(tt) > 1 else float("nan")
            print(f"{name:12s} {label:>22s} {tt[0]:8.3f} {later:8.3f} {sum(tt):8.2f}")
        later_ratio = np.mean(ta[1:]) / np.mean(tb[1:])
        print(
            f"{name:12s} {'speed-up':>22s} {ta[0] / tb[0]:7.2f}x {later_ratio:7.0f}x "
            f"{sum(ta) / sum(tb):7.2f}x"
        )


def _kinn_seeds():
    mech, obs, true = kx.synthetic_observations("g", "Q")
    kinn = kin.KINN(
        width=8, steps_per_stage=300, lbfgs_steps=0, lm_steps=100, n_seeds=2, polish="never"
    )
    est = kinn.estimate(mech, obs, key=jax.random.key(0), init_log_k=true + jnp.array([0.8, -0.7]))
    first, second = est.diagnostics["seed_wall_time_s"]
    err = float(np.max(np.abs(est.log_k - true)))
    print(
        f"KINN, 2 seeds (g, noise-free gas data; largest ln k error {err:.1e}): first seed "
        f"{first:.1f} s, second {second:.1f} s = {second / first:.2f}x the first"
    )


if __name__ == "__main__":
    main()
