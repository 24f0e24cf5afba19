"""Observations of a mechanism, and the estimate every estimator returns."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._mechanism import Mechanism


class Observations(eqx.Module):
    """Transient data of several experiments (initial states) of one mechanism.

    Every experiment shares one layout: `n_times` rows (pad shorter experiments by
    repeating their last time with `mask` False) and one column per observed species.

    **Attributes:**

    - `t`: `(n_exp, n_times)` non-decreasing times, starting at the initial state's time.
    - `values`: `(n_exp, n_times, n_obs)` observed values (anything where `mask` is False).
    - `mask`: `(n_exp, n_times, n_obs)` True where a value was observed.
    - `x0`: `(n_exp, n_species)` full initial state of each experiment.
    - `species`: indices (into `mechanism.species`) of the observed columns.
    - `unknown_scale`: per observed column, True for a semi-quantitative signal
      `value = x / c` with an unknown positive scale `c` (fitted as ln c).
    - `noise_std`: known standard deviation of the noise, or None (then estimated).
    """

    t: jax.Array
    values: jax.Array
    mask: jax.Array
    x0: jax.Array
    species: tuple[int, ...] = eqx.field(static=True)
    unknown_scale: tuple[bool, ...] = eqx.field(static=True)
    noise_std: float | None = eqx.field(static=True)

    @classmethod
    def make(
        cls,
        mechanism: Mechanism,
        t,
        values,
        x0,
        *,
        species: Sequence[str],
        unknown_scale: Sequence[str] = (),
        mask=None,
        noise_std: float | None = None,
    ) -> Observations:
        """Builds and checks observations.

        **Arguments:**

        - `mechanism`: the `Mechanism`.
        - `t`: `(n_times,)` shared by all experiments, or `(n_exp, n_times)`.
        - `values`: `(n_exp, n_times, n_obs)`; NaN marks a missing value.
        - `x0`: `(n_exp, n_species)` initial states.
        - `species`: names of the observed columns.
        - `unknown_scale`: names of the columns observed up to an unknown scale (SQ).
        - `mask`: optional boolean mask (default: the finite entries of `values`).
        - `noise_std`: known noise standard deviation (in units of `values`).
        """
        species = tuple(species)
        idx = tuple(mechanism.index(s) for s in species)
        if len(set(idx)) != len(idx):
            raise ValueError(f"Observations: `species` lists a species twice: {species}.")
        for s in unknown_scale:
            if s not in species:
                raise ValueError(
                    f"Observations: `unknown_scale` names {s!r}, which is not among the observed "
                    f"`species` {species}."
                )
        values = np.asarray(values, np.float64)
        x0 = np.asarray(x0, np.float64)
        if x0.ndim != 2 or x0.shape[1] != mechanism.n_species:
            raise ValueError(
                f"Observations: `x0` must have shape (n_exp, {mechanism.n_species}) for species "
                f"{list(mechanism.species)}; got {x0.shape}."
            )
        n_exp = x0.shape[0]
        if values.ndim != 3 or values.shape[0] != n_exp or values.shape[2] != len(species):
            raise ValueError(
                f"Observations: `values` must have shape ({n_exp}, n_times, {len(species)}) "
                f"(experiments, times, observed species); got {values.shape}."
            )
        t = np.asarray(t, np.float64)
        if t.ndim == 1:
            t = np.broadcast_to(t, (n_exp, t.shape[0]))
        if t.shape != values.shape[:2]:
            raise ValueError(
                f"Observations: `t` must have shape ({values.shape[1]},) or {values.shape[:2]}, "
                f"got {t.shape}."
            )
        if np.any(np.diff(t, axis=1) < 0):
            raise ValueError("Observations: times must be non-decreasing within each experiment.")
        m = np.isfinite(values) if mask is None else np.asarray(mask, bool) & np.isfinite(values)
        if not m.any():
            raise ValueError("Observations: no observed value (all masked or NaN).")
        values = np.where(m, values, 0.0)
        if noise_std is not None and not noise_std > 0:
            raise ValueError(
                f"Observations: `noise_std` must be positive or None, got {noise_std}."
            )
        return cls(
            t=jnp.asarray(t),
            values=jnp.asarray(values),
            mask=jnp.asarray(m),
            x0=jnp.asarray(x0),
            species=idx,
            unknown_scale=tuple(s in unknown_scale for s in species),
            noise_std=None if noise_std is None else float(noise_std),
        )

    @property
    def n_scales(self) -> int:
        return sum(self.unknown_scale)

    def observe(self, states, log_scale):
        """Maps simulated states `(..., n_species)` to observed columns `(..., n_obs)`:
        x / c for unknown-scale columns, with c = exp(log_scale)."""
        y = states[..., jnp.asarray(self.species)]
        if self.n_scales:
            pos = np.cumsum(self.unknown_scale) - 1
            full = jnp.where(
                jnp.asarray(self.unknown_scale), log_scale[jnp.asarray(np.maximum(pos, 0))], 0.0
            )
            y = y * jnp.exp(-full).reshape((1,) * (y.ndim - 1) + (-1,))
        return y

    def flat_index(self) -> np.ndarray:
        """Flat indices of the observed entries (numpy, static)."""
        return np.flatnonzero(np.asarray(self.mask).ravel())


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The result of every estimator: ln k with standard deviations and correlations.

    **Attributes:**

    - `method`: which estimator produced it.
    - `constants`: constant names (order of `log_k`).
    - `log_k`: fitted ln k (numpy, `(n_reactions,)`).
    - `log_std`: standard deviation of ln k (Laplace / Gauss-Newton or ensemble spread).
      Large values flag constants the data cannot identify.
    - `correlation`: `(n_reactions, n_reactions)` correlation matrix of ln k.
    - `log_scale`, `log_scale_std`: ln of the fitted semi-quantitative scales and their std
      (empty without unknown-scale columns).
    - `fitted`: `(n_exp, n_times, n_obs)` predicted observations at the estimate.
    - `diagnostics`: dict of fit figures (`"data_rmse"`, `"wall_time_s"`, ...).
    """

    method: str
    constants: tuple
    log_k: np.ndarray
    log_std: np.ndarray
    correlation: np.ndarray
    log_scale: np.ndarray
    log_scale_std: np.ndarray
    fitted: np.ndarray
    diagnostics: dict

    @property
    def k(self) -> np.ndarray:
        return np.exp(self.log_k)

    def as_dict(self) -> dict:
        """`{name: {"value": k, "log_std": std of ln k}}` (the CLI's estimates.json)."""
        return {
            n: {"value": float(np.exp(v)), "log_std": float(s)}
            for n, v, s in zip(self.constants, self.log_k, self.log_std)
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1)

    def summary(self, true_log_k=None) -> str:
        lines = [
            f"{'constant':>10} {'k':>12} {'ln k':>9} {'std ln k':>9}"
            + ("  true ln k" if true_log_k is not None else "")
        ]
        for i, n in enumerate(self.constants):
            row = (
                f"{n:>10} {np.exp(self.log_k[i]):12.5g} {self.log_k[i]:9.4f} {self.log_std[i]:9.3g}"
            )
            if true_log_k is not None:
                row += f"  {true_log_k[i]:9.4f}"
            lines.append(row)
        return "\n".join(lines)


def covariance_to_std_corr(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cov = 0.5 * (cov + cov.T)
    std = np.sqrt(np.maximum(np.diag(cov), 0.0))
    safe = np.where(std > 0, std, 1.0)
    corr = cov / np.outer(safe, safe)
    np.fill_diagonal(corr, 1.0)
    return std, np.clip(corr, -1.0, 1.0)


def gauss_newton_covariance(
    jac: np.ndarray, s2: float, *, rcond: float = 1e-10, unidentified_var: float | None = 1e4
) -> np.ndarray:
    """Laplace covariance s^2 (J^T J)^{-1} that stays honest when J^T J is singular.

    Directions whose eigenvalue is below `rcond` times the largest are ones the data do
    not constrain; they get variance `unidentified_var` (std 100 in ln k by default:
    "unknown"), independent of how small the residuals are, instead of a confident
    number."""
    jtj = jac.T @ jac
    w, v = np.linalg.eigh(0.5 * (jtj + jtj.T))
    wmax = max(float(w.max()), 1e-300)
    ok = w > rcond * wmax
    if unidentified_var is None:  # plain floor: s^2 / (rcond * max eigenvalue)
        unidentified_var = s2 / (rcond * wmax)
    inv = np.where(ok, s2 / np.where(ok, w, 1.0), unidentified_var)
    return (v * inv) @ v.T
