"""Ensemble training through `sciml.fit`: ES-MDA and EnKF against exact posteriors."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml
import sciml.ensemble as ens
from sciml.ensemble._esmda import _kalman_update


def _linear_gaussian(p=3, d=12, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(d, p))
    mu0 = rng.normal(size=p)
    a = rng.normal(size=(p, p))
    c0 = a @ a.T + 0.5 * np.eye(p)
    std = rng.uniform(0.2, 0.6, size=d)
    m_true = rng.multivariate_normal(mu0, c0)
    y = g @ m_true + std * rng.normal(size=d)
    cd_inv = np.diag(1 / std**2)
    cp = np.linalg.inv(np.linalg.inv(c0) + g.T @ cd_inv @ g)
    mp = cp @ (np.linalg.solve(c0, mu0) + g.T @ cd_inv @ y)
    return g, mu0, c0, std, y, mp, cp


def _check_posterior(members, mp, cp, n, passes=1):
    post = np.asarray(members)
    # Sampling error of a mean is sqrt(var / N), of a covariance entry
    # sqrt((C_ii C_jj + C_ij^2) / N); six standard errors bound a correct update.
    se_mean = np.sqrt(np.diag(cp) / n)
    np.testing.assert_array_less(np.abs(post.mean(0) - mp), 6 * se_mean)
    se_cov = np.sqrt((np.outer(np.diag(cp), np.diag(cp)) + cp**2) / n)
    np.testing.assert_array_less(np.abs(np.cov(post.T) - cp), 6 * se_cov * np.sqrt(passes))


def test_kalman_update_member_and_data_space_forms_agree():
    # The update is computed in an N x N (d > N) or d x d (d <= N) system; both must equal
    # the textbook formula C_MD (C_DD + alpha C_D)^-1 (d_obs + sqrt(alpha) L z - d_j).
    rng = np.random.default_rng(1)
    for n, d in [(8, 30), (30, 8)]:
        m = rng.normal(size=(n, 5))
        dmat = rng.normal(size=(n, d)) + m[:, :1]
        d_obs = rng.normal(size=d)
        a = rng.normal(size=(d, d))
        cov = a @ a.T / d + 0.3 * np.eye(d)
        chol = np.linalg.cholesky(cov)
        z = rng.normal(size=(n, d))
        alpha = 2.5
        am = m - m.mean(0)
        ad = dmat - dmat.mean(0)
        c_md = am.T @ ad / (n - 1)
        c_dd = ad.T @ ad / (n - 1)
        d_uc = d_obs[None] + np.sqrt(alpha) * z @ chol.T
        want = m + (c_md @ np.linalg.solve(c_dd + alpha * cov, (d_uc - dmat).T)).T
        got = _kalman_update(jnp.asarray(m), jnp.asarray(dmat), jnp.asarray(d_obs),
                             jnp.asarray(chol), jnp.asarray(alpha), jnp.asarray(z))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


def _linear_fit_setup(getkey, n):
    g, mu0, c0, std, y, mp, cp = _linear_gaussian()
    prior = jax.random.multivariate_normal(getkey(), jnp.asarray(mu0), jnp.asarray(c0), (n,))
    # A pytree ensemble: the update must not care how parameters are grouped.
    members = {"a": prior[:, :2], "b": prior[:, 2:]}

    def residual(m, batch, *, key):
        gb, yb, sb = batch
        return (gb @ jnp.concatenate([m["a"], m["b"]]) - yb) / sb

    data = (jnp.asarray(g), jnp.asarray(y), jnp.asarray(std))
    return members, residual, data, mp, cp


def _stack(members):
    return np.concatenate([np.asarray(members["a"]), np.asarray(members["b"])], axis=1)


@pytest.mark.parametrize("alphas", [1, 4, (9.33, 7.0, 4.0, 2.0)])
def test_esmda_in_fit_samples_linear_gaussian_posterior(alphas, getkey):
    if not isinstance(alphas, int):
        alphas = tuple(a * sum(1 / b for b in alphas) for a in alphas)
    n = 20_000
    members, residual, data, mp, cp = _linear_fit_setup(getkey, n)
    method = ens.ESMDA(alphas)
    res = sciml.fit(members, residual, method, steps=len(method.alphas), key=getkey(),
                    data=data, progress=False)
    _check_posterior(_stack(res.model), mp, cp, n)
    h = res.history
    for col in ("ensemble_spread", "ensemble_mean_misfit", "ensemble_failed"):
        assert h[col].shape == h["loss"].shape
    # Each row is the misfit before that step's update.
    assert len(h["loss"]) == 1 or h["loss"][-1] < h["loss"][0]
    assert np.all(h["ensemble_failed"] == 0)


@pytest.mark.parametrize(
    "steps, batch",
    [(4, 3), (12, 3), (4, None)],
    ids=["one-epoch", "three-epochs", "full-batch"],
)
def test_default_enkf_samples_the_exact_posterior(steps, batch, getkey):
    # One epoch of four minibatches assimilates each datum once (alpha = 1): the same
    # posterior as all data at once. Three epochs show each datum three times; the
    # default EnKF inflates the observation noise three-fold (sum 1/alpha = 1 per
    # datum, as in ES-MDA), where counting each visit at face value (alpha = 1, the
    # former default) gave a posterior variance 0.33x the exact one, 66 standard errors
    # off. Fixed data seen at every step: four steps inflate four-fold, the analysis
    # of ES-MDA(4). Six standard errors bound a correct update (`_check_posterior`);
    # over six keys the largest deviation measured for three epochs was 3.0.
    n = 20_000
    members, residual, data, mp, cp = _linear_fit_setup(getkey, n)
    source = data if batch is None else sciml.Minibatches(data, batch)
    res = sciml.fit(members, residual, ens.EnKF(), steps=steps, key=getkey(), data=source,
                    progress=False)
    _check_posterior(_stack(res.model), mp, cp, n)


def test_enkf_inflation_from_the_data_source(getkey):
    method = ens.EnKF(anomaly_inflation=1.01)
    data = (jnp.zeros((10, 2)), jnp.zeros(10))
    batches = sciml.Minibatches(data, 3)  # 3 steps per epoch, one example dropped
    assert method.for_stage(9, batches, "s").epochs == 3
    assert method.for_stage(10, batches, "s").epochs == 4  # a started epoch counts
    assert method.for_stage(9, batches, "s").anomaly_inflation == 1.01
    # An explicit inflation is kept; explicit epochs must match the data.
    assert ens.EnKF(1.0).for_stage(9, batches, "s").alpha(0) == 1.0
    assert ens.EnKF(epochs=3).for_stage(9, batches, "s").alpha(0) == 3.0
    with pytest.raises(ValueError, match=r"EnKF\(epochs=2\).*3 times.*too small"):
        ens.EnKF(epochs=2).for_stage(9, batches, "s")
    # Through fit, the other forms of `data=`: fixed arrays and data=None show every
    # datum at every step, a resampler fresh data each step; a wrong `epochs` says how
    # many times fit counted.
    members, residual, lin, _, _ = _linear_fit_setup(getkey, 8)

    def fixed(m, batch, *, key):
        return residual(m, lin, key=key)

    for source, loss, visits in ((lin, residual, 7), (None, fixed, 7),
                                 (lambda k: lin, residual, 1)):
        with pytest.raises(ValueError, match=f"each datum {visits} times"):
            sciml.fit(members, loss, ens.EnKF(epochs=5), steps=7, key=getkey(), data=source,
                      progress=False)
        sciml.fit(members, loss, ens.EnKF(epochs=visits), steps=7, key=getkey(),
                  data=source, progress=False)


def test_enkf_refusals(getkey):
    members, residual, data, _, _ = _linear_fit_setup(getkey, 8)
    with pytest.raises(ValueError, match="not both"):
        ens.EnKF(2.0, epochs=2)
    with pytest.raises(ValueError, match="epochs"):
        ens.EnKF(epochs=0)
    with pytest.raises(ValueError, match=r"epochs=3\).*each datum 4 times"):
        sciml.fit(members, residual, ens.EnKF(epochs=3), steps=16, key=getkey(),
                  data=sciml.Minibatches(data, 3), progress=False)

    class Stream(sciml.AbstractData):
        def init(self, key, step):
            return None

        def batch(self, state, key, step):
            return data, state

    with pytest.raises(ValueError, match=r"Stream data source.*EnKF\(epochs=E\)"):
        sciml.fit(members, residual, ens.EnKF(), steps=4, key=getkey(), data=Stream(),
                  progress=False)
    # Outside fit nothing says how often a datum is seen.
    with pytest.raises(ValueError, match="unknown outside sciml.fit"):
        ens.EnKF().alpha(0)
    with pytest.raises(ValueError, match=r"Pass EnKF\(epochs=E\)"):
        ens.EnKF().check_steps(12, "the steps of stage 0")


def _regression(getkey, n_members=16):
    x = jnp.linspace(-2.0, 2.0, 24)[:, None]
    y = jnp.sin(x[:, 0])

    def make(k):
        return eqx.nn.MLP(1, "scalar", 8, 1, activation=jnp.tanh, key=k)

    ensemble = ens.sample(make, n_members, key=getkey())

    def residual(m, batch, *, key):
        xb, yb = batch
        return (jax.vmap(m)(xb) - yb) / 0.05

    return ensemble, residual, (x, y)


def test_ensemble_training_fits_a_network_and_reports_spread(getkey):
    ensemble, residual, data = _regression(getkey, n_members=48)
    res = sciml.fit(ensemble, residual, ens.ESMDA(4), steps=24, key=getkey(), data=data,
                    progress=False)
    x, y = data
    pred = ens.predict(lambda m, x: jax.vmap(m)(x), res.model, x)
    prior = ens.predict(lambda m, x: jax.vmap(m)(x), ensemble, x)
    rmse = float(jnp.sqrt(jnp.mean((pred.mean - y) ** 2)))
    rmse0 = float(jnp.sqrt(jnp.mean((prior.mean - y) ** 2)))
    assert rmse < 0.2 * rmse0
    assert pred.members.shape == (48, 24)
    assert float(pred.std.mean()) < float(prior.std.mean())
    assert ens.size(res.model) == 48
    one = ens.member(res.model, 3)
    np.testing.assert_allclose(jax.vmap(one)(x), pred.members[3], rtol=1e-12)


def test_ensemble_checkpoint_resume_is_bit_exact(getkey, tmp_path):
    ensemble, residual, data = _regression(getkey)
    key = getkey()
    full = sciml.fit(ensemble, residual, ens.ESMDA(4), steps=8, key=key, data=data,
                     progress=False)

    def stop_at_4(info):
        return info.step >= 4

    stop_at_4.every = 4
    part = sciml.fit(ensemble, residual, ens.ESMDA(4), steps=8, key=key, data=data,
                     progress=False, checkpoint=tmp_path / "ck", callbacks=[stop_at_4])
    assert part.stopped is not None
    resumed = sciml.fit(ensemble, residual, ens.ESMDA(4), steps=8, key=key, data=data,
                        progress=False, checkpoint=tmp_path / "ck", resume=True)
    for a, b in zip(jax.tree.leaves(eqx.filter(full.model, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(resumed.model, eqx.is_array))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(full.history["loss"], resumed.history["loss"])


def test_ensemble_failed_members_and_divergence(getkey):
    n = 12
    members = {"w": jnp.linspace(-1.0, 1.0, n)[:, None]}

    def residual(m, batch, *, key, step):
        # Members with w < -0.5 fail from the start; from step 3 every member fails.
        bad = (m["w"][0] < -0.5) | (step >= 3)
        r = m["w"] - 0.3
        return jnp.where(bad, jnp.nan, r)

    with pytest.raises(sciml.DivergenceError) as err:
        sciml.fit(members, residual, ens.EnKF(epochs=6), steps=6, key=getkey(), progress=False)
    assert err.value.step == 3
    h = err.value.history
    assert h["ensemble_failed"][0] == int(np.sum(np.linspace(-1, 1, n) < -0.5))
    assert np.all(np.isfinite(h["loss"][:3])) and np.isnan(h["loss"][3])
    # The failed members did not poison the update: the last model is finite.
    assert np.all(np.isfinite(np.asarray(err.value.model["w"])))


def test_ensemble_input_errors(getkey):
    ensemble, residual, data = _regression(getkey)
    with pytest.raises(ValueError, match="multiple of the 4"):
        sciml.fit(ensemble, residual, ens.ESMDA(4), steps=6, key=getkey(), data=data,
                  progress=False)
    with pytest.raises(ValueError, match="sum\\(1/alpha\\) = 1"):
        ens.ESMDA((2.0, 3.0))
    with pytest.raises(ValueError, match="alpha"):
        ens.EnKF(0.0)
    with pytest.raises(ValueError, match="anomaly_inflation"):
        ens.EnKF(anomaly_inflation=0.9)
    with pytest.raises(ValueError, match="leading member axis"):
        sciml.fit({"w": jnp.ones(3), "s": jnp.ones(())}, residual, ens.EnKF(), steps=2,
                  key=getkey(), data=data, progress=False)
    with pytest.raises(ValueError, match="ONE member"):
        sciml.fit(ensemble, lambda m, b, *, key: m(b), ens.EnKF(epochs=2), steps=2,
                  key=getkey(), data=data, progress=False)
    with pytest.raises(ValueError, match="residual vector"):
        sciml.fit(ensemble, lambda m, b, *, key: jnp.arange(3), ens.EnKF(epochs=2), steps=2,
                  key=getkey(), data=data, progress=False)
    with pytest.raises(ValueError, match=">= 2"):
        ens.sample(lambda k: jnp.zeros(2), 1, key=getkey())


_TWO_DEVICE_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import sciml, sciml.ensemble as ens
    assert len(jax.devices()) == 2
    x = jnp.linspace(-2.0, 2.0, 24)[:, None]
    y = jnp.sin(x[:, 0])
    make = lambda k: eqx.nn.MLP(1, "scalar", 8, 1, activation=jnp.tanh, key=k)
    ensemble = ens.sample(make, 16, key=jax.random.key(0))
    def residual(m, batch, *, key):
        return (jax.vmap(m)(batch[0]) - batch[1]) / 0.05
    out = []
    for devices in (None, 2):
        r = sciml.fit(ensemble, residual, ens.ESMDA(4), steps=8, key=jax.random.key(1),
                      data=(x, y), devices=devices, progress=False)
        leaves = jax.tree.leaves(eqx.filter(r.model, eqx.is_array))
        if devices:
            assert len(leaves[0].sharding.device_set) == 2
        out.append([np.asarray(l).tolist() for l in leaves])
    print("RESULT" + json.dumps(out))
    """
)


def test_ensemble_members_shard_over_two_devices(tmp_path):
    script = tmp_path / "two.py"
    script.write_text(_TWO_DEVICE_SCRIPT)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = json.loads(proc.stdout.split("RESULT", 1)[1])
    # Sharded sums over members run in another order: equal to rounding.
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_fit_stops_when_fewer_than_two_members_are_finite(getkey):
    # Three of four members give a non-finite residual: an update has no covariance
    # to use, and the message says so (it used to blame a gradient and a learning rate,
    # which an ensemble method does not have).
    members = {"w": jnp.asarray([[-1.0], [0.2], [0.1], [0.9]])}

    def residual(m, batch, *, key):
        return jnp.where(m["w"][0] < 0.3, jnp.nan, (m["w"] - 0.3) / 0.1)

    with pytest.raises(sciml.DivergenceError, match="ensemble update needs at least two") as e:
        sciml.fit(members, residual, ens.ESMDA(2), steps=2, key=getkey(), progress=False)
    assert e.value.step == 0 and e.value.terms["ensemble_failed"] == 3.0
    np.testing.assert_array_equal(e.value.model["w"], members["w"])
