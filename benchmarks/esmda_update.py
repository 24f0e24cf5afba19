"""ES-MDA analysis step: `sciml.ensemble.esmda_update` against the textbook gain form.

The textbook update moves member j by C_MD (C_DD + alpha C_D)^-1 (d_j - g(m_j)); written
with ensemble anomalies it is A^T S (S^T S + alpha I)^-1 e_j. Forming the gain for every
member at once as S (S^T S + alpha I)^-1 E^T, an N x N matrix, costs O(N^2) memory and
time; `esmda_update` multiplies A^T S (p x d) first and never forms it. Both are timed
side by side in one run (jitted, float64, after a warm-up call) on a linear forward model
with p parameters and d data, and checked to agree to 1e-9.

    python benchmarks/esmda_update.py [--members 2000 10000 40000] [--params 3] [--data 5]
"""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


jax.config.update("jax_enable_x64", True)

import sciml.ensemble as ens  # noqa: E402


def _gain_form(m, dmat, d_obs, std, alpha, key):
    """The N x N gain form with the same perturbations as `esmda_update`."""
    n, d = dmat.shape
    z = jax.random.normal(key, (n, d), dmat.dtype)
    scale = jnp.sqrt(n - 1.0)
    am = (m - m.mean(0)) / scale
    s = (dmat - dmat.mean(0)) / std / scale
    innov = (d_obs[None] - dmat) / std + jnp.sqrt(alpha) * z
    coef = jnp.linalg.solve(s.T @ s + alpha * jnp.eye(d), innov.T)
    gain = s @ coef  # (N, N)
    return m + (am.T @ gain).T


def _time(fn, *args, repeats=3):
    fn(*args).block_until_ready()
    t = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    out.block_until_ready()
    return (time.perf_counter() - t) / repeats, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, nargs="+", default=[2000, 10000, 40000])
    p.add_argument("--params", type=int, default=3)
    p.add_argument("--data", type=int, default=5)
    args = p.parse_args(argv)
    print("| members N | esmda_update (ms) | N x N gain form (ms) | ratio | max abs difference |")
    print("|---|---|---|---|---|")
    for n in args.members:
        k1, k2, k3 = jax.random.split(jax.random.key(n), 3)
        m = jax.random.normal(k1, (n, args.params))
        g = jax.random.normal(k2, (args.data, args.params))
        dmat = m @ g.T
        d_obs = jnp.zeros(args.data)
        std, alpha = 0.3, 4.0
        ours = jax.jit(lambda m, dm, k: ens.esmda_update(m, dm, d_obs, std, alpha, key=k))
        gain = jax.jit(lambda m, dm, k: _gain_form(m, dm, d_obs, std, alpha, k))
        t_ours, a = _time(ours, m, dmat, k3)
        t_gain, b = _time(gain, m, dmat, k3)
        diff = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        print(
            f"| {n} | {t_ours * 1e3:.2f} | {t_gain * 1e3:.1f} | {t_gain / t_ours:.0f}x | "
            f"{diff:.1e} |",
            flush=True,
        )
        if diff > 1e-9:
            raise SystemExit(f"the two forms disagree by {diff:.1e} at N = {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
