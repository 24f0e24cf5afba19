"""ES-MDA kernel: exact Bayesian posterior on a linear-Gaussian problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml.ensemble as ens


def _problem():
    rng = np.random.default_rng(0)
    p, d = 3, 5
    g = rng.normal(size=(d, p))
    mu0 = np.array([0.5, -1.0, 2.0])
    a = rng.normal(size=(p, p))
    c0 = a @ a.T + 0.5 * np.eye(p)
    std = np.array([0.3, 0.5, 0.4, 0.6, 0.2])
    m_true = rng.multivariate_normal(mu0, c0)
    d_obs = g @ m_true + std * rng.normal(size=d)
    cd_inv = np.diag(1 / std**2)
    cp = np.linalg.inv(np.linalg.inv(c0) + g.T @ cd_inv @ g)
    mp = cp @ (np.linalg.solve(c0, mu0) + g.T @ cd_inv @ d_obs)
    return g, mu0, c0, std, d_obs, mp, cp


@pytest.mark.parametrize("alphas", [(1.0,), (4.0, 4.0, 4.0, 4.0), (9.33, 7.0, 4.0, 2.0)])
def test_esmda_linear_gaussian_posterior(alphas, getkey):
    g, mu0, c0, std, d_obs, mp, cp = _problem()
    if abs(sum(1 / a for a in alphas) - 1) > 1e-8:
        alphas = tuple(a * sum(1 / b for b in alphas) for a in alphas)
    n = 40_000
    prior = jax.random.multivariate_normal(getkey(), jnp.asarray(mu0), jnp.asarray(c0), (n,))
    # A pytree ensemble: the kernel must not care how the parameters are grouped.
    members = {"a": prior[:, :2], "b": prior[:, 2]}
    gj = jnp.asarray(g)

    def forward(m):
        return gj @ jnp.concatenate([m["a"], m["b"][None]])

    res = ens.esmda(
        forward, members, jnp.asarray(d_obs), jnp.asarray(std), alphas=alphas, key=getkey()
    )
    post = np.concatenate([np.asarray(res.members["a"]), np.asarray(res.members["b"])[:, None]], 1)
    mean = post.mean(0)
    cov = np.cov(post.T)
    # Sampling error of a mean is sqrt(var / N); of a covariance entry
    # sqrt((C_ii C_jj + C_ij^2) / N). Six standard errors (plus the O(1/N) bias of the
    # ensemble gain, far smaller here) bound a correct implementation.
    se_mean = np.sqrt(np.diag(cp) / n)
    np.testing.assert_array_less(np.abs(mean - mp), 6 * se_mean)
    se_cov = np.sqrt((np.outer(np.diag(cp), np.diag(cp)) + cp**2) / n)
    np.testing.assert_array_less(np.abs(cov - cp), 6 * se_cov * np.sqrt(len(alphas)))
    assert res.history["misfit"][-1] < res.history["misfit"][0]
    assert len(res.history["iteration"]) == len(alphas) + 1


def test_esmda_full_covariance_matches_std(getkey):
    g, mu0, c0, std, d_obs, mp, cp = _problem()
    n = 2000
    prior = jax.random.multivariate_normal(getkey(), jnp.asarray(mu0), jnp.asarray(c0), (n,))
    pred = prior @ jnp.asarray(g).T
    key = getkey()
    a = ens.esmda_update(prior, pred, jnp.asarray(d_obs), jnp.asarray(std), 2.0, key=key)
    b = ens.esmda_update(
        prior, pred, jnp.asarray(d_obs), jnp.diag(jnp.asarray(std) ** 2), 2.0, key=key
    )
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_esmda_failed_members_are_ignored(getkey):
    g, mu0, c0, std, d_obs, mp, cp = _problem()
    n = 500
    prior = jax.random.multivariate_normal(getkey(), jnp.asarray(mu0), jnp.asarray(c0), (n,))
    pred = prior @ jnp.asarray(g).T
    bad = pred.at[0].set(jnp.nan)
    out = ens.esmda_update(prior, bad, jnp.asarray(d_obs), jnp.asarray(std), 1.0, key=getkey())
    assert np.all(np.isfinite(np.asarray(out)))


def test_esmda_stops_when_fewer_than_two_forecasts_are_finite(getkey):
    # One finite forecast defines no covariance: the update used to return NaN members.
    prior = jnp.asarray([[0.1], [0.2], [0.9], [0.95]])
    forward = lambda m: jnp.where(m[0] < 0.92, jnp.nan, 2.0 * m)  # noqa: E731
    with pytest.raises(FloatingPointError, match="only 1 of 4 members have a finite"):
        ens.esmda(forward, prior, jnp.asarray([0.6]), 0.1, alphas=(2.0, 2.0), key=getkey())
    pred = 2.0 * prior
    out = ens.esmda_update(prior, pred.at[1:].set(jnp.nan), jnp.asarray([0.6]), 0.1, 1.0,
                           key=getkey())
    np.testing.assert_array_equal(out, prior)  # unchanged, not NaN


def test_esmda_input_errors(getkey):
    m = jnp.zeros((10, 2))
    with pytest.raises(ValueError, match="sum\\(1/alpha\\) = 1"):
        ens.esmda(lambda x: x, m, jnp.zeros(2), 1.0, alphas=(2.0, 3.0), key=getkey())
    with pytest.raises(ValueError, match="positive"):
        ens.esmda(lambda x: x, m, jnp.zeros(2), 1.0, alphas=(-1.0,), key=getkey())
    with pytest.raises(ValueError, match="shape"):
        ens.esmda_update(m, m, jnp.zeros(2), jnp.ones(3), 1.0, key=getkey())
    with pytest.raises(ValueError, match="members"):
        ens.esmda_update(m, m[:5], jnp.zeros(2), 1.0, 1.0, key=getkey())
    assert ens.inflation_factors(3) == (3.0, 3.0, 3.0)
