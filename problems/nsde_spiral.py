"""Neural SDE fit of the stochastic cubic spiral by moment matching: vanilla against ERNSDE."""

import jax
import optax

import sciml
import sciml.cli
import sciml.experiments.node as node
import sciml.ode as so


NAME = "nsde-spiral"


def run(options: sciml.cli.RunOptions) -> dict:
    with jax.enable_x64(True):
        return _run(options)


def _run(options):
    # 750 Adam steps with a cosine-decayed rate: at the paper's 250 the moment loss is
    # still falling (vanilla moment MSE 0.23 against 0.020 at 750; the paper: 0.0217).
    steps = options.steps_or(options.pick(40, 750))
    data = node.spiral_sde_data(n_paths=options.pick(64, 200), key=jax.random.key(1234))
    methods = (
        node.Method("vanilla", None),
        # The weight decays from 0.1 to 0.01 over training, as the paper's; a constant 1.0
        # flattens the drift (NFE 9, moment MSE 1.9).
        node.Method(
            "ernsde", so.ErrorEstimateRegulariser(optax.exponential_decay(0.1, steps, 0.1))
        ),
    )
    results = [
        node.train_nsde_spiral(
            m, seed=options.seed, steps=steps, data=data, progress=options.progress,
            n_model_paths=options.pick(16, 32),
        )
        for m in methods
    ]
    ts, paths = data
    fig, axes = sciml.plot.figure(1, 2, figsize=(10, 4))
    for i, ax in enumerate(axes):
        ax.plot(ts, paths.mean(0)[:, i], "k-", lw=2, label="data mean")
        ax.fill_between(
            ts, paths.mean(0)[:, i] - paths.std(0)[:, i], paths.mean(0)[:, i] + paths.std(0)[:, i],
            color="0.8", label="data ± std",
        )
        for r in results:
            ax.plot(ts, r["mean"][:, i], "--", label=f"{r['method']} (NFE {r['nfe']:.0f})")
        ax.set_xlabel("t")
        ax.set_ylabel(f"u{i + 1}")
        ax.legend(fontsize=8)
    sciml.plot.save(fig, options.out / "moments.png")
    sciml.plot.history([(r["method"], r["history"]) for r in results], options.out / "loss.png")
    metrics = {}
    for r in results:
        for k in ("mse", "nfe", "train_s", "predict_s"):
            metrics[f"{r['method']}_{k}"] = r[k]
    metrics["ernsde_nfe_ratio"] = results[1]["nfe"] / results[0]["nfe"]
    return metrics


RESULTS_SECTION = "Fewest steps subject to vanilla's accuracy: the criterion met (2026-12-04)"


def size_note(metrics: dict, options: sciml.cli.RunOptions) -> str | None:
    """Why the moment fit is not done or ERNSDE saved no evaluations (None: it is and did)."""
    ratio = metrics["ernsde_nfe_ratio"]
    if metrics["vanilla_mse"] <= 0.05 and ratio <= 0.97:
        return None
    return (f"Vanilla's moment MSE is {metrics['vanilla_mse']:.2g} and ERNSDE's NFE ratio "
            f"{ratio:.2f} after {metrics['fit_steps'] // 2} steps: the moments are not fitted "
            "yet, so the regulariser has nothing to trade. The full run (750 steps, 32 model "
            "paths) gives vanilla MSE 0.0202 at 151 NFE per path, ERNSDE 0.0232 at 142 "
            "(0.94x; the paper 0.95x).")


if __name__ == "__main__":
    raise SystemExit(sciml.cli.script_main(NAME, run))
