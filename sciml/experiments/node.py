"""The neural-ODE experiments of Pal et al. (ICML 2021): digits, spiral ODE, spiral SDE,
shared by `problems/node_*.py`, `problems/nsde_spiral.py`, the benchmark and the
notebook.

Each `train_*` function trains one method and measures what the paper reports: test
accuracy or loss, prediction NFE, training and prediction wall time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..ode import (
    AbstractRegulariser,
    CubicField,
    DiagonalLinear,
    ErrorEstimateRegulariser,
    KeepFewestSteps,
    KineticEnergyRegulariser,
    NeuralODE,
    NeuralSDE,
    StepCountRegulariser,
    StiffnessRegulariser,
    TaylorRegulariser,
    TimeConcatField,
    fewest_steps,
)
from ..train import Minibatches, fit


def _check_positive(where, **values):
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0 or v != v:
            raise ValueError(f"{where}: `{name}` must be a positive number, got {v!r}.")
        if isinstance(v, float) and v == float("inf"):
            raise ValueError(f"{where}: `{name}` must be finite, got {v!r}.")


def _check_method(where, method):
    if not isinstance(method, Method):
        raise TypeError(
            f"{where}: `method` must be a sciml.experiments.node.Method(name, regulariser), got "
            f"{method!r}; e.g. Method('ernode', ErrorEstimateRegulariser(0.1)), or "
            "Method('vanilla', None)."
        )


def _add_bias(x, b):
    return x + jnp.reshape(b, (1,) * (x.ndim - 1) + b.shape)


class Classifier(eqx.Module):
    """A neural ODE on the features followed by a linear head."""

    node: NeuralODE
    head: eqx.nn.Linear

    def __call__(self, x, *, key=None, step=None, regularise=True):
        y1, stats = self.node(x, key=key, step=step, regularise=regularise)
        return _add_bias(y1 @ self.head.weight.T, self.head.bias), stats


# ----------------------------------------------------------------------------------
# Methods


@dataclasses.dataclass(frozen=True)
class Method:
    """A named regulariser choice (None: vanilla)."""

    name: str
    regulariser: AbstractRegulariser | tuple | None


def paper_methods(*, er=0.1, sr=0.01, rnode=1.0, taynode=0.3, taylor_order=2):
    """Vanilla, ERNODE, SRNODE, RNODE and TayNODE with the digits weights.

    ER 0.1 is the reference notes' digits weight (constant). RNODE 1.0 and TayNODE 0.3
    (K = 2) were picked on seed 0 from {0.01, 0.1, 1} and {3e-3, 0.03, 0.3} as the
    largest of each sweep (measured: vanilla NFE 85; RNODE 0.1 -> 79, 1 -> 49 at
    97.3 %; TayNODE 0.03 -> 79, 0.3 -> 61 at 99.0 %); the paper's TayNODE weight
    (3.02e-3) and RNODE 0.01 left the NFE at 85.
    """
    return (
        Method("vanilla", None),
        Method("ernode", ErrorEstimateRegulariser(er)),
        Method("srnode", StiffnessRegulariser(sr, form="max")),
        Method("rnode", KineticEnergyRegulariser(rnode)),
        Method("taynode", TaylorRegulariser(taynode, order=taylor_order)),
    )


# The prediction programs live at module level and take the data as arguments: one
# program per shape for every call, and no call's model or data held in JAX's cache.
@eqx.filter_jit
def _predict_digits(m, x):
    logits, stats = m(x, regularise=False)
    return jnp.argmax(logits, -1), stats["nfe"]


@eqx.filter_jit
def _predict_path(m, y0, ts):
    ys, stats = m(y0, ts, regularise=False)
    return ys, stats["nfe"]


@eqx.filter_jit
def _predict_paths(m, y0, ts, key, n):
    keys = jax.random.split(key, n)
    ys, stats = jax.vmap(lambda k: m(y0, ts, key=k, regularise=False))(keys)
    return ys, jnp.mean(stats["nfe"] * 1.0)


def _timed(fn, *args, repeats=3):
    out = jax.block_until_ready(fn(*args))  # compile
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return out, best


# ----------------------------------------------------------------------------------
# Digits


def load_digits_split(n_train: int = 1500, *, dtype=None):
    """scikit-learn's 8x8 digits, scaled to [0, 1], one fixed permutation (seed 0).

    **Returns:** `(x_train, y_train, x_test, y_test)`.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover
        raise ImportError(
            "the digits data ship with scikit-learn: pip install 'sciml[examples]'"
        ) from e
    data = load_digits()
    n = len(data.data)
    if isinstance(n_train, bool) or not isinstance(n_train, int) or not 0 < n_train < n:
        raise ValueError(
            f"load_digits_split: `n_train` must be an int in 1..{n - 1} (the {n} images "
            f"minus at least one for testing), got {n_train!r}."
        )
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int32)
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = x[perm], y[perm]
    return (
        jnp.asarray(x[:n_train], dtype),
        jnp.asarray(y[:n_train]),
        jnp.asarray(x[n_train:], dtype),
        jnp.asarray(y[n_train:]),
    )


def digits_model(regulariser, *, key, hidden=100, tol=1.4e-8, max_steps=2048):
    """The paper's MNIST model scaled to 8x8 digits: 64 -> 100 -> 64 tanh dynamics with
    time input on t in [0, 1], Tsit5 at `tol`, then a linear 64 -> 10 head."""
    kf, kh = jax.random.split(key)
    dtype = jnp.zeros(()).dtype
    node = NeuralODE(
        TimeConcatField(64, hidden, key=kf),
        solver=diffrax.Tsit5(),
        stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
        t0=0.0,
        t1=1.0,
        regulariser=regulariser,
        max_steps=max_steps,
    )
    head = eqx.nn.Linear(64, 10, key=kh, dtype=dtype)
    return Classifier(node, head)


def _classification_loss(model, batch, *, key, step):
    x, y = batch
    logits, stats = model(x, key=key, step=step)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    aux = {"ce": ce, "nfe": jnp.asarray(stats["nfe"], ce.dtype)}
    aux["regularisation"] = stats["regularisation"]
    return ce + stats["regularisation"], aux


def train_digits(
    method: Method,
    *,
    seed: int = 0,
    epochs: int = 20,
    steps: int | None = None,
    batch_size: int = 128,
    lr: float = 3e-3,
    tol: float = 1.4e-8,
    data=None,
    progress: bool = False,
    lock: Callable | None = None,
) -> dict:
    """Trains one method on the digits and measures it (Adam, minibatches; `steps`
    overrides `epochs`).

    **Returns:** a dict with `method`, `seed`, `test_accuracy`, `train_accuracy`,
    `test_nfe` (prediction NFE on the whole test set as one batch), `train_s`
    (training wall time without compilation), `compile_s`, `predict_s` (one prediction
    of a training-sized batch), `history` and `model`.
    """
    _check_method("train_digits", method)
    _check_positive("train_digits", lr=lr, tol=tol, batch_size=batch_size)
    x_tr, y_tr, x_te, y_te = load_digits_split() if data is None else data
    key = jax.random.key(seed)
    mkey, fkey = jax.random.split(key)
    model = digits_model(method.regulariser, key=mkey, tol=tol)
    if steps is None:
        steps = epochs * (x_tr.shape[0] // batch_size)
    with lock() if lock is not None else _nullcontext():
        result = fit(
            model,
            _classification_loss,
            optax.adam(lr),
            steps=steps,
            key=fkey,
            data=Minibatches((x_tr, y_tr), batch_size),
            progress=progress,
        )
        trained = result.model

        (pred_te, nfe_te), _ = _timed(_predict_digits, trained, x_te)
        (pred_tr, _), _ = _timed(_predict_digits, trained, x_tr, repeats=1)
        _, predict_s = _timed(_predict_digits, trained, x_tr[:batch_size])
    return {
        "method": method.name,
        "seed": seed,
        "test_accuracy": float(jnp.mean(pred_te == y_te)),
        "train_accuracy": float(jnp.mean(pred_tr == y_tr)),
        "test_nfe": int(nfe_te),
        "train_s": result.timings["total"] - result.timings["compile"],
        "compile_s": result.timings["compile"],
        "predict_s": predict_s,
        "history": result.history,
        "model": trained,
    }


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------------------------------
# Spiral ODE


SPIRAL_A = np.array([[-0.1, 2.0], [-2.0, -0.1]])


def spiral_data(n: int = 30, t1: float = 1.5, y0=(2.0, 0.0), *, dtype=None):
    """The cubic spiral `u' = A u³`, `A = [[-0.1, 2], [-2, -0.1]]` (the DiffEqFlux
    example), at `n` times in `[0, t1]`, by Tsit5 at rtol = atol = 1e-10.

    **Returns:** `(ts, ys)`.
    """
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    a = jnp.asarray(SPIRAL_A, dtype)
    ts = jnp.linspace(0.0, t1, n, dtype=dtype)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, u, args: a @ u**3),
        diffrax.Tsit5(),
        0.0,
        t1,
        None,
        jnp.asarray(y0, dtype),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10),
        max_steps=100_000,
    )
    return ts, sol.ys


def train_spiral(
    method: Method,
    *,
    seed: int = 0,
    steps: int = 300,
    lr: float = 1e-2,
    tol: float = 1e-7,
    data=None,
    field=None,
    progress: bool = False,
) -> dict:
    """Fits a `CubicField` neural ODE to the spiral time series with one method.

    `field`: the vector field to train (default `CubicField(2, 50)` keyed by `seed`).

    **Returns:** `method`, `mse` (against the data), `nfe` (prediction), `train_s`,
    `compile_s`, `predict_s`, `ys` (prediction), `history`, `model`.
    """
    _check_method("train_spiral", method)
    _check_positive("train_spiral", lr=lr, tol=tol)
    ts, ys_true = spiral_data() if data is None else data
    if field is None:
        field = CubicField(2, 50, key=jax.random.key(seed), dtype=jnp.result_type(ys_true))
    model = NeuralODE(
        field,
        stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
        # The data's first time: `ys_true[0]` is the state there.
        t0=float(ts[0]),
        t1=float(ts[-1]),
        regulariser=method.regulariser,
    )

    def loss(m, batch, *, key, step):
        ys, stats = m(ys_true[0], ts, key=key, step=step)
        mse = jnp.mean((ys - ys_true) ** 2)
        return mse + stats["regularisation"], {
            "mse": mse,
            "nfe": jnp.asarray(stats["nfe"], mse.dtype),
        }

    result = fit(
        model, loss, optax.adam(lr), steps=steps, key=jax.random.key(seed + 1), progress=progress
    )

    return _spiral_result(method.name, seed, result.model, result, ts, ys_true)


def _spiral_result(name, seed, model, result, ts, ys_true):
    """What `train_spiral` reports of a trained model and its `fit` result."""
    (ys, nfe), predict_s = _timed(_predict_path, model, ys_true[0], ts)
    return {
        "method": name,
        "seed": seed,
        "mse": float(jnp.mean((ys - ys_true) ** 2)),
        "nfe": int(nfe),
        "train_s": result.timings["total"] - result.timings["compile"],
        "compile_s": result.timings["compile"],
        "predict_s": predict_s,
        "ys": np.asarray(ys),
        "history": result.history,
        "model": model,
    }


def refine_fewest_steps(
    result: dict,
    *,
    steps: int = 3000,
    lr: float = 1e-2,
    slack: float = 0.1,
    tol: float = 1e-7,
    data=None,
    progress: bool = False,
) -> dict:
    """From a `train_spiral` result, the model with the fewest solver steps whose MSE
    stays within `(1 + slack)` x the result's: `fewest_steps` with `KeepFewestSteps`,
    Adam at `lr` for `steps` steps (`benchmarks/node_constrained.py` measures it).

    **Returns:** as `train_spiral` (method `"fewest-steps"`), plus `kept_step`; the
    result's own model if no iterate met the target.
    """
    _check_positive("refine_fewest_steps", lr=lr, tol=tol, steps=steps)
    if not slack >= 0:
        raise ValueError(f"refine_fewest_steps: `slack` must be >= 0, got {slack!r}.")
    ts, ys_true = spiral_data() if data is None else data
    start = result["model"]
    node = NeuralODE(
        start.vector_field,
        stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
        t0=float(ts[0]),
        t1=float(ts[-1]),
        regulariser=StepCountRegulariser(),
    )

    def loss(f, batch, *, key, step):
        ys, stats = eqx.tree_at(lambda m: m.vector_field, node, f)(ys_true[0], ts)
        aux = {
            "step_count": stats["step_count"],
            "num_steps": stats["num_steps"] * 1.0,
            "nfe": stats["nfe"] * 1.0,
        }
        return jnp.mean((ys - ys_true) ** 2), aux

    target = (1 + slack) * result["mse"]
    keep = KeepFewestSteps(target, start=start.vector_field)
    out = fit(
        start.vector_field,
        fewest_steps(loss, target),
        optax.adam(lr),
        steps=steps,
        key=jax.random.key(0),
        callbacks=[keep],
        progress=progress,
    )
    field = start.vector_field if keep.model is None else keep.model
    model = eqx.tree_at(lambda m: m.vector_field, start, field)
    report = _spiral_result("fewest-steps", result.get("seed"), model, out, ts, ys_true)
    report["kept_step"] = keep.step if keep.model is not None else 0
    return report


# ----------------------------------------------------------------------------------
# Spiral SDE


def spiral_sde_data(n_paths: int = 100, n: int = 30, t1: float = 1.0, *, key, dtype=None):
    """Samples of the paper's spiral SDE `du = A u³ dt + γ u ∘ dW` with
    `A = [[-α, β], [-β, -α]]`, α = 0.1, β = 2, γ = 0.2, `u0 = (2, 0)`, by SPaRK at
    tight tolerance.

    **Returns:** `(ts, paths)` with `paths` of shape `(n_paths, n, 2)`.
    """
    for name, v in (("n_paths", n_paths), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"spiral_sde_data: `{name}` must be an int >= 2, got {v!r}.")
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    a = jnp.asarray(SPIRAL_A, dtype)
    ts = jnp.linspace(0.0, t1, n, dtype=dtype)
    truth = NeuralSDE(
        lambda t, u, args: a @ u**3,
        lambda t, u, args: 0.2 * u,
        stepsize_controller=diffrax.PIDController(rtol=1e-4, atol=1e-4),
        t1=t1,
        dt0=1e-3,
        max_steps=100_000,
    )
    y0 = jnp.asarray([2.0, 0.0], dtype)
    paths = jax.vmap(lambda k: truth(y0, ts, key=k)[0])(jax.random.split(key, n_paths))
    return ts, paths


class SDEModel(eqx.Module):
    """Drift `W2 tanh(W1 u³ + b1) + b2` and diffusion `s ⊙ u` (the paper's spiral SDE
    model)."""

    sde: NeuralSDE

    def __call__(self, y0, ts, *, key, step=None, regularise=True):
        return self.sde(y0, ts, key=key, step=step, regularise=regularise)


def nsde_model(regulariser, *, key, t0=0.0, t1=1.0, tol=1e-2, dtype=None):
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    sde = NeuralSDE(
        CubicField(2, 50, key=key, dtype=dtype),
        DiagonalLinear(jnp.full((2,), 0.1, dtype)),
        stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
        t0=t0,
        t1=t1,
        regulariser=regulariser,
        max_steps=4096,
    )
    return SDEModel(sde)


def train_nsde_spiral(
    method: Method,
    *,
    seed: int = 0,
    steps: int = 250,
    n_model_paths: int = 32,
    n_eval_paths: int = 512,
    lr=None,
    data=None,
    progress: bool = False,
) -> dict:
    """Fits a neural SDE to the spiral SDE by moment matching (means and variances at
    the data times), as the paper's `sde_toy_problem`.

    `lr` is Adam's learning rate, a float or an optax schedule (default: cosine decay
    from 1e-2 to 1e-3 over `steps`; a constant 1e-2 leaves the moment loss bouncing on
    the sampling noise of `n_model_paths` paths).

    **Returns:** `method`, `mse` (of the moments, on `n_eval_paths` fresh model paths),
    `nfe` (mean prediction NFE per path), `train_s`, `compile_s`, `predict_s`, `mean`,
    `std`, `history`, `model`.
    """
    where = "train_nsde_spiral"
    _check_method(where, method)
    for name, v in (("steps", steps), ("n_model_paths", n_model_paths),
                    ("n_eval_paths", n_eval_paths)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{where}: `{name}` must be a positive int, got {v!r}.")
    if n_model_paths < 2 or n_eval_paths < 2:
        raise ValueError(
            f"{where}: moment matching needs a variance, so `n_model_paths` and "
            f"`n_eval_paths` must be >= 2, got {n_model_paths} and {n_eval_paths}."
        )
    if lr is None:
        lr = optax.cosine_decay_schedule(1e-2, steps, alpha=0.1)
    elif not callable(lr):
        _check_positive(where, lr=lr)
    if data is None:
        data = spiral_sde_data(key=jax.random.key(1234))
    ts, paths = data
    if paths.shape[0] < 2:
        raise ValueError(
            f"{where}: `data` holds {paths.shape[0]} path(s); moment matching needs >= 2."
        )
    mean_true, var_true = paths.mean(0), paths.var(0)
    y0 = paths[0, 0]
    model = nsde_model(
        method.regulariser, key=jax.random.key(seed), t0=float(ts[0]), t1=float(ts[-1])
    )

    def sample(m, key, step=None, regularise=True, n=n_model_paths):
        keys = jax.random.split(key, n)
        return jax.vmap(lambda k: m(y0, ts, key=k, step=step, regularise=regularise))(keys)

    def moments_mse(ys):
        return jnp.mean((ys.mean(0) - mean_true) ** 2) + jnp.mean((ys.var(0) - var_true) ** 2)

    def loss(m, batch, *, key, step):
        ys, stats = sample(m, key, step)
        mse = moments_mse(ys)
        reg = jnp.mean(stats["regularisation"])
        return mse + reg, {"mse": mse, "nfe": jnp.mean(stats["nfe"] * 1.0)}

    result = fit(
        model, loss, optax.adam(lr), steps=steps, key=jax.random.key(seed + 1), progress=progress
    )

    (ys, nfe), predict_s = _timed(
        _predict_paths, result.model, y0, ts, jax.random.key(10_000 + seed), n_eval_paths
    )
    return {
        "method": method.name,
        "seed": seed,
        "mse": float(moments_mse(ys)),
        "nfe": float(nfe),
        "train_s": result.timings["total"] - result.timings["compile"],
        "compile_s": result.timings["compile"],
        "predict_s": predict_s,
        "mean": np.asarray(ys.mean(0)),
        "std": np.asarray(ys.std(0)),
        "history": result.history,
        "model": result.model,
    }
