"""Ensemble training inside `sciml.fit`: ES-MDA and the ensemble Kalman filter.

An ensemble method is passed to `sciml.fit` where an optax optimiser would go. The
model is then an ensemble (every array leaf has a leading member axis, e.g. from
`sample`), and the loss returns the *whitened residual vector* of one member,
r = (prediction - observation) / noise_std, instead of a scalar. Each step evaluates the
loss for every member (vmapped, no gradients) and moves the members by the Kalman
update of the kernel in `_esmda.py` (Chen et al. 2020/2022; Emerick & Reynolds 2013).
Progress, history, callbacks, checkpoints, resume, the divergence guard and `devices=`
are those of `fit`; the recorded loss is the mean squared whitened residual over the
members whose forecast is finite.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..train import AbstractUpdate, FixedData, Minibatches, NoData, Resampler
from ._esmda import _kalman_update


PyTree = Any

# History columns added by every ensemble stage.
ENSEMBLE_TERMS = ("ensemble_failed", "ensemble_mean_misfit", "ensemble_spread")


class EnsembleState(NamedTuple):
    """Optimiser state of an ensemble stage: the number of updates made so far."""

    iteration: jax.Array


class AbstractEnsembleMethod(AbstractUpdate):
    """A gradient-free update of an ensemble from its members' whitened residuals.

    An update of `sciml.fit` (residual convention): the model is an ensemble, the loss
    returns one member's whitened residual vector, and every step evaluates it for all
    members (vmapped, no gradients) and moves them by the Kalman analysis (`update`).
    Subclasses give the observation-noise inflation of update `iteration` and may
    transform the members before it (`prepare`).
    """

    residual: ClassVar[bool] = True
    terms: ClassVar[tuple[str, ...]] = ENSEMBLE_TERMS
    member_axis: ClassVar[bool] = True
    # The analysis draws fresh perturbations every step.
    needs_key: ClassVar[bool] = True

    @abc.abstractmethod
    def alpha(self, iteration: jax.Array) -> jax.Array:
        """Observation-noise inflation factor of update number `iteration` (0-based)."""

    def check_steps(self, steps: int, where: str) -> None:
        """Raises if `steps` updates do not suit this method."""

    def for_stage(self, steps: int, data, where: str) -> AbstractEnsembleMethod:
        """This method configured for a stage of `steps` updates over the source `data`.

        `sciml.fit` calls it once per stage, before training, and uses what it returns.
        The default checks `steps` (`check_steps`) and returns the method unchanged.
        """
        self.check_steps(steps, where)
        return self

    def model_seen_by_loss(self, model: PyTree) -> PyTree:
        """Member 0: the loss is written for one member."""
        size(model)
        return member(model, 0)

    def step(self, objective, params, state, key):
        """Forecasts every member (the same batch and loss key for all), records the
        misfit of those with a finite forecast, and moves the members by `update`."""
        res, aux = jax.vmap(objective.fn)(params, objective.frozen)
        res = res.reshape(res.shape[0], -1)
        ok = jnp.all(jnp.isfinite(res), axis=1)
        n_ok = jnp.sum(ok)

        def ok_mean(x):  # mean over members with a finite forecast (NaN if none)
            x = x.reshape(x.shape[0], -1).mean(axis=1) if x.ndim > 1 else x
            return jnp.sum(jnp.where(ok, x, 0.0)) / n_ok

        # An update needs two finite forecasts; with fewer the step is non-finite, and
        # the divergence message says why (`divergence_hint`).
        value = jnp.where(n_ok >= 2, ok_mean(jnp.mean(res**2, axis=1)), jnp.nan)
        mean_res = jnp.sum(jnp.where(ok[:, None], res, 0.0), axis=0) / n_ok
        flat = jax.vmap(lambda p: ravel_pytree(p)[0])(params)
        terms = {k: ok_mean(v) for k, v in aux.items()}
        terms.update(
            ensemble_failed=jnp.sum(~ok).astype(value.dtype),
            ensemble_mean_misfit=jnp.mean(mean_res**2),
            ensemble_spread=jnp.mean(jnp.std(flat, axis=0, ddof=1)).astype(value.dtype),
        )
        new_params, new_state = self.update(
            params, res, state, key=jax.random.fold_in(key, 0x5EED)
        )
        return value, terms, new_params, new_state

    def divergence_hint(self, terms):
        if "ensemble_failed" not in terms:
            return ""
        return (
            f"{terms['ensemble_failed']:.0f} members had a non-finite forecast; an "
            "ensemble update needs at least two finite ones. Draw the members where the "
            "loss can be evaluated (or narrow their spread)."
        )

    def prepare(self, flat: jax.Array, iteration: jax.Array) -> jax.Array:
        """Members (N, p) before the analysis; identity by default."""
        return flat

    def init(self, params: PyTree) -> EnsembleState:
        del params
        return EnsembleState(iteration=jnp.asarray(0, jnp.int32))

    def update(self, params, residuals, state: EnsembleState, *, key):
        """One analysis: members `params` (leading axis N), `residuals` (N, d) whitened.

        Returns the new members and state.
        """
        flat = jax.vmap(lambda p: ravel_pytree(p)[0])(params)
        unravel = ravel_pytree(jax.tree.map(lambda x: x[0], params))[1]
        dtype = jnp.result_type(flat.dtype, residuals.dtype)
        flat = self.prepare(flat.astype(dtype), state.iteration)
        res = residuals.astype(dtype)
        n, d = res.shape
        z = jax.random.normal(key, (n, d), dtype)
        alpha = jnp.asarray(self.alpha(state.iteration), dtype)
        # Residuals are already whitened: observations 0, unit noise.
        new = _kalman_update(flat, res, jnp.zeros(d, dtype), jnp.ones(d, dtype), alpha, z)
        new = jax.vmap(unravel)(new)
        new = jax.tree.map(lambda x, old: x.astype(old.dtype), new, params)
        return new, EnsembleState(iteration=state.iteration + 1)


def _check_alphas(alphas, where):
    if isinstance(alphas, bool):
        raise TypeError(
            f"{where}: `alphas` must be an int or a sequence of floats, got {alphas!r}."
        )
    if isinstance(alphas, int | np.integer):
        if alphas < 1:
            raise ValueError(f"{where}: `alphas` as an int must be >= 1, got {alphas}.")
        return (float(alphas),) * int(alphas)
    try:
        alphas = tuple(float(a) for a in alphas)
    except TypeError as e:
        raise TypeError(
            f"{where}: `alphas` must be an int or a sequence of floats, got {alphas!r}."
        ) from e
    if not alphas or any(not np.isfinite(a) or a <= 0 for a in alphas):
        raise ValueError(f"{where}: `alphas` must be positive inflation factors, got {alphas}.")
    total = sum(1.0 / a for a in alphas)
    if abs(total - 1.0) > 1e-8:
        raise ValueError(
            f"{where}: the inflation factors must satisfy sum(1/alpha) = 1 (Emerick & "
            f"Reynolds 2013); got alphas={alphas} with sum(1/alpha) = {total:.6g}. Use an "
            "int n for n equal factors n, e.g. ESMDA(alphas=4)."
        )
    return alphas


class ESMDA(AbstractEnsembleMethod):
    """Ensemble smoother with multiple data assimilation, offline, for `sciml.fit`.

    Every step assimilates the whole batch with inflation factor `alphas[i]`; the
    factors satisfy sum(1/alpha) = 1, so one pass of `len(alphas)` steps counts the data
    once and, for a linear forward model and Gaussian prior, samples the Bayesian
    posterior. `fit`'s `steps` must be a multiple of `len(alphas)`: each further pass
    restarts ES-MDA from the last ensemble (iterative ES-MDA, which helps strongly
    nonlinear models such as networks; the final spread then counts the data once per
    pass and understates the posterior spread).

    **Arguments:**

    - `alphas`: an int `n` (n equal factors n, the usual choice) or a sequence of
      positive factors with sum(1/alpha) = 1. Default 4.

    **Example:**

    ```python
    ensemble = sciml.ensemble.sample(lambda k: sciml.nn.MLP(1, 1, 32, 2, key=k), 100, key=k0)
    def residual(member, batch, *, key):
        x, y = batch
        return (jax.vmap(member)(x) - y).ravel() / noise_std
    res = sciml.fit(ensemble, residual, sciml.ensemble.ESMDA(alphas=4), steps=20,
                    key=k1, data=(x, y))
    ```
    """

    alphas: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, alphas: int | Sequence[float] = 4):
        self.alphas = _check_alphas(alphas, "sciml.ensemble.ESMDA")

    def alpha(self, iteration):
        table = jnp.asarray(self.alphas)
        return table[iteration % len(self.alphas)]

    def check_steps(self, steps, where):
        if steps % len(self.alphas):
            raise ValueError(
                f"sciml.fit: {where} = {steps} is not a multiple of the {len(self.alphas)} "
                f"ES-MDA inflation factors {self.alphas}: each pass of ES-MDA takes "
                f"len(alphas) steps. Use steps="
                f"{len(self.alphas) * max(1, steps // len(self.alphas))} or change `alphas`."
            )


class EnKF(AbstractEnsembleMethod):
    """Ensemble Kalman filter, online: each step assimilates the batch it is given.

    Use with `data=sciml.Minibatches(...)` (or a resampler) so that observations arrive
    batch by batch, as in Chen et al.'s online training.

    Several epochs over the same data assimilate each datum once per epoch; counted
    at face value, E epochs would shrink the spread as if there were E times the data.
    So each update inflates the observation noise by the number of times its data are
    assimilated, as ES-MDA does (sum 1/alpha = 1 per datum): for a linear forward
    model and Gaussian prior the final ensemble then samples the exact posterior,
    whatever the number of epochs. By default `sciml.fit` infers that number from
    the stage (`for_stage`): with `Minibatches`, the epochs the stage's steps cover;
    with fixed data (or `data=None`: the loss's observations are the same at every
    step), the number of steps, which makes a full-batch run ensemble Kalman inversion
    with step 1/steps (Iglesias, Law & Stuart 2013); with a resampler (fresh data
    every step), 1.

    **Arguments:**

    - `alpha`: observation-noise inflation of every update, overriding the inferred
      one (e.g. 1 to treat every batch as new, independent evidence even when it is
      not, which understates the spread). Values > 1 take smaller, more stable steps.
    - `epochs`: how many times each datum is assimilated (inflation `epochs`). Needed
      outside `sciml.fit` or with a data source it does not know; with
      `Minibatches` it must equal the epochs the steps cover. Give `alpha` or
      `epochs`, not both.
    - `anomaly_inflation`: multiplies the members' deviations from the ensemble mean
      before each update (covariance inflation, >= 1). Repeated updates shrink the
      ensemble; a little inflation (e.g. 1.01) keeps it able to move.
    """

    alpha_value: float | None = eqx.field(static=True)
    epochs: int | None = eqx.field(static=True)
    anomaly_inflation: float = eqx.field(static=True)

    def __init__(
        self,
        alpha: float | None = None,
        *,
        epochs: int | None = None,
        anomaly_inflation: float = 1.0,
    ):
        where = "sciml.ensemble.EnKF"
        if alpha is not None and epochs is not None:
            raise ValueError(
                f"{where}: give `alpha` (the inflation of every update) or `epochs` (how "
                f"many times each datum is assimilated), not both; got alpha={alpha!r}, "
                f"epochs={epochs!r}."
            )
        if alpha is not None and (
            isinstance(alpha, bool) or not np.isfinite(alpha) or alpha <= 0
        ):
            raise ValueError(f"{where}: `alpha` must be positive, got {alpha!r}.")
        if epochs is not None and (
            isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 1
        ):
            raise ValueError(f"{where}: `epochs` must be an int >= 1, got {epochs!r}.")
        if not np.isfinite(anomaly_inflation) or anomaly_inflation < 1:
            raise ValueError(
                f"{where}: `anomaly_inflation` must be >= 1 (1 = none), got "
                f"{anomaly_inflation!r}."
            )
        self.alpha_value = None if alpha is None else float(alpha)
        self.epochs = None if epochs is None else int(epochs)
        self.anomaly_inflation = float(anomaly_inflation)

    def for_stage(self, steps, data, where):
        """This filter with the inflation that counts each datum of `data` once.

        **Arguments:**

        - `steps`: the updates of the stage.
        - `data`: the stage's data source (`sciml.fit`'s `data=`, as an `AbstractData`).
        - `where`: how the stage is named in error messages.

        **Returns:**

        An `EnKF` with `epochs` set (unchanged if `alpha` or `epochs` was given).
        """
        if self.alpha_value is not None:
            return self
        visits = _visits_per_datum(steps, data)
        if self.epochs is None:
            if visits is None:
                raise ValueError(
                    f"sciml.fit: sciml.ensemble.EnKF() cannot tell how many times a "
                    f"{type(data).__name__} data source shows each datum over {where} "
                    f"({steps}), so it cannot inflate the observation noise to count each "
                    "datum once. Pass EnKF(epochs=E) (each datum assimilated E times) or "
                    "EnKF(alpha=...)."
                )
            return EnKF(epochs=visits, anomaly_inflation=self.anomaly_inflation)
        if visits is not None and visits != self.epochs:
            raise ValueError(
                f"sciml.fit: EnKF(epochs={self.epochs}), but {where} ({steps}) over this "
                f"data assimilate each datum {visits} times, so the spread would be "
                f"{'too small' if visits > self.epochs else 'too large'}. Use "
                f"EnKF(epochs={visits}), leave `epochs` out to have it inferred, or "
                "change `steps`."
            )
        return self

    def check_steps(self, steps, where):
        if self.alpha_value is None and self.epochs is None:
            raise ValueError(
                f"sciml.fit: sciml.ensemble.EnKF() was not told how many times {where} "
                f"({steps}) assimilate each datum (this sciml.fit does not pass its data "
                "to `EnKF.for_stage`). Pass EnKF(epochs=E), E the number of passes over the "
                "data, so the observation noise is inflated E-fold and the spread counts "
                "each datum once."
            )

    def alpha(self, iteration):
        del iteration
        if self.alpha_value is not None:
            return self.alpha_value
        if self.epochs is None:
            raise ValueError(
                "sciml.ensemble.EnKF(): the number of times each datum is assimilated is "
                "unknown outside sciml.fit; pass EnKF(epochs=E) or EnKF(alpha=...)."
            )
        return float(self.epochs)

    def prepare(self, flat, iteration):
        del iteration
        if self.anomaly_inflation == 1.0:
            return flat
        mean = jnp.mean(flat, axis=0, keepdims=True)
        return mean + self.anomaly_inflation * (flat - mean)


def _visits_per_datum(steps, data):
    """How often `steps` steps over the source `data` assimilate each datum (None:
    unknown). A `Minibatches` epoch drops the remainder of its shuffle, so with a
    remainder some data are seen once less: their spread is then slightly wider."""
    if isinstance(data, Minibatches):
        return -(-int(steps) // data.steps_per_epoch)
    if isinstance(data, FixedData | NoData):
        return int(steps)
    if isinstance(data, Resampler):
        return 1
    return None


# ----------------------------------------------------------------------------------
# Working with ensembles


def sample(make_model: Callable[[jax.Array], PyTree], n: int, *, key) -> PyTree:
    """An ensemble of `n` models `make_model(key_i)`: every array gets a member axis.

    **Arguments:**

    - `make_model`: `make_model(key) -> model`, e.g. `lambda k: sciml.nn.MLP(..., key=k)`.
    - `n`: number of members (>= 2).
    - `key`: PRNG key, split into one key per member.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise ValueError(f"sciml.ensemble.sample: `n` must be an int >= 2, got {n!r}.")
    return eqx.filter_vmap(make_model)(jax.random.split(key, int(n)))


def size(ensemble: PyTree) -> int:
    """Number of members (the common leading axis of the ensemble's arrays)."""
    leaves = [x for x in jax.tree.leaves(ensemble) if eqx.is_array(x)]
    sizes = {x.shape[0] if x.ndim else None for x in leaves}
    if not leaves or len(sizes) != 1 or None in sizes:
        shapes = [x.shape for x in leaves]
        raise ValueError(
            "sciml.ensemble: an ensemble needs array leaves that all share a leading member "
            f"axis (build it with sciml.ensemble.sample); got leaf shapes {shapes}."
        )
    return sizes.pop()


def member(ensemble: PyTree, i: int) -> PyTree:
    """Member `i` of the ensemble, as a plain model."""
    n = size(ensemble)
    if not -n <= i < n:
        raise IndexError(f"sciml.ensemble.member: index {i} out of range for {n} members.")
    return jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, ensemble)


class Prediction(NamedTuple):
    """Ensemble forecast: `members` (N, ...), their `mean` and `std` (ddof=1)."""

    mean: jax.Array
    std: jax.Array
    members: jax.Array


def predict(fn: Callable, ensemble: PyTree, *args) -> Prediction:
    """Evaluates `fn(member, *args)` for every member (vmapped) and summarises.

    **Example:** `sciml.ensemble.predict(lambda m, x: jax.vmap(m)(x), ensemble, x)`
    gives the mean prediction and its spread at the points `x`.
    """
    size(ensemble)
    out = eqx.filter_vmap(lambda m: fn(m, *args))(ensemble)
    out = jnp.asarray(out)
    return Prediction(mean=jnp.mean(out, axis=0), std=jnp.std(out, axis=0, ddof=1), members=out)
