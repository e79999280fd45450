"""K-FAC against Adam and SGD on MNIST-1D: loss against steps and wall time.

The MNIST-1D paper's MLP (40-100-100-10 ReLU, softmax cross-entropy, mean
reduction, batch 100) trained by three methods, each over the same seeds
(initial weights and minibatch order) and a small learning-rate grid, every
seed and rate of a method in one compiled program (``jp.train_seeds`` with an
``hparams`` grid):

- sgd: backprop's gradient, ``optax.sgd(η)``, η ∈ {0.1, 0.3, 1};
- adam: backprop's gradient, ``optax.adam(η)``, η ∈ {1e-3, 3e-3, 1e-2};
- kfac: ``jp.rules.kfac(damping, ema=0.95)`` (Monte Carlo factors, one
  sampled target per example) with ``optax.sgd(η)``, η ∈ {0.03, 0.1, 0.3}.

Each method's best η is the one with the lowest mean training loss over the
last tenth of the steps (diverged runs count as +inf). The table reports, at
that η, the final training loss and held-out accuracy (mean and 95% t-interval
over seeds) and the steady time per step of the whole program (all seeds and
rates; the compile timed apart, on the first ``log_every`` steps). The figure
plots the training loss (median and inter-quartile band over seeds) against
steps and against wall time, at each method's best η; its wall-time axis is
the step times the steady seconds per step of a single rate's share.

    python scripts/kfac.py [--seeds 16] [--steps 3000] [--damping 1e-2] [--out DIR]
    python scripts/kfac.py --quick    # 2 seeds, 60 steps: seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _setup  # noqa: F401  (jp.use_all_cores(), before jax starts)
import jax
import numpy as np
import optax

import jaxprop as jp

METHODS = {
    "sgd": (optax.sgd, (0.1, 0.3, 1.0)),
    "adam": (optax.adam, (1e-3, 3e-3, 1e-2)),
    "kfac": (optax.sgd, (0.03, 0.1, 0.3)),
}
BATCH = 100


def train(method, net, data, keys, steps, log_every, damping):
    """(TrainResult over (rates, seeds), steady seconds per step, compile+first
    block seconds) of one method."""
    make, rates = METHODS[method]
    rule = jp.rules.kfac(damping, ema=0.95) if method == "kfac" else None
    trainer = jp.Trainer(
        net, keys, data.x, data.y, optax.inject_hyperparams(make)(rates[0]), steps,
        rule=rule or jp.rules.backprop(), batch_size=BATCH, log_every=log_every,
        eval_data=(data.x_test, data.y_test), dtype="float32",
        hparams={"optimizer.learning_rate": np.asarray(rates, "float32")},
    )  # fmt: skip
    start = time.perf_counter()
    state = jax.block_until_ready(trainer.advance(trainer.init(), log_every))
    first = time.perf_counter() - start
    start = time.perf_counter()
    state = jax.block_until_ready(trainer.advance(state, steps - log_every))
    per_step = (time.perf_counter() - start) / (steps - log_every)
    return trainer.result(state), per_step, first


def best_rate(losses: np.ndarray) -> int:
    """The rate (axis 0) with the lowest mean loss over the last tenth of the
    log; losses: (rates, seeds, n_log), NaN where diverged."""
    tail = losses[:, :, -max(1, losses.shape[2] // 10) :]
    score = np.where(np.isfinite(tail), tail, np.inf).mean(axis=(1, 2))
    return int(np.argmin(score))


def summarize(method, result, per_step, first, log_every):
    rates = METHODS[method][1]
    losses = np.asarray(result.losses)  # (rates, seeds, n_log)
    i = best_rate(losses)
    accuracy = np.asarray(result.eval_accuracy)[i, :, -1]
    return {
        "method": method,
        "learning_rate": rates[i],
        "final_loss": jp.summarize(losses[i, :, -1]),
        "test_accuracy": jp.summarize(accuracy),
        "diverged": float(np.mean(np.asarray(result.diverged)[i])),
        "seconds_per_step": per_step,
        "compile_and_first_block_s": first,
        "curve": {
            "steps": (np.arange(losses.shape[2]) + 1) * log_every,
            "median": np.nanmedian(losses[i], axis=0),
            "q25": np.nanpercentile(losses[i], 25, axis=0),
            "q75": np.nanpercentile(losses[i], 75, axis=0),
        },
        "rates": len(rates),
    }


def table(rows, args) -> str:
    lines = [
        f"MNIST-1D, 40-100-100-10 ReLU, batch {BATCH}, {args.steps} steps, "
        f"{args.seeds} seeds; K-FAC damping {args.damping}, ema 0.95. "
        f"{len(jax.devices())} {jax.devices()[0].platform} device(s).",
        "",
        "| method | best η | final train loss | test accuracy | diverged "
        "| s/step (all seeds, 3 rates) | compile + first block |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['learning_rate']:g} | {r['final_loss']} "
            f"| {r['test_accuracy']} | {r['diverged']:.0%} "
            f"| {r['seconds_per_step'] * 1e3:.2f} ms | "
            f"{r['compile_and_first_block_s']:.1f} s |"
        )
    return "\n".join(lines)


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for r in rows:
        c = r["curve"]
        seconds = c["steps"] * r["seconds_per_step"] / r["rates"]
        for ax, t in zip(axes, (c["steps"], seconds), strict=True):
            ax.plot(t, c["median"], label=f"{r['method']} (η {r['learning_rate']:g})")
            ax.fill_between(t, c["q25"], c["q75"], alpha=0.25)
    axes[0].set(xlabel="step", ylabel="training loss (median, IQR over seeds)",
                yscale="log")  # fmt: skip
    axes[1].set(xlabel="wall time of one rate's share (s)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--damping", type=float, default=1e-2)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 60 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = 2, 60
    log_every = max(1, args.steps // 60)
    if args.seeds < 1 or args.steps < 2 * log_every or args.steps % log_every:
        parser.error("--seeds must be ≥ 1 and --steps a multiple of steps // 60")
    data = jp.data.mnist1d()
    net = jp.MLP(
        (40, 100, 100, 10), "relu", "identity", "softmax_cross_entropy", "mean"
    )
    keys = jax.random.split(jax.random.key(0), args.seeds)
    rows = []
    for method in args.methods:
        trained = train(method, net, data, keys, args.steps, log_every, args.damping)
        rows.append(summarize(method, *trained, log_every))
    text = table(rows, args)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text(text + "\n")
        plot(rows, args.out / "kfac.png")
        for r in rows:
            r["curve"] = {k: np.asarray(v).tolist() for k, v in r["curve"].items()}
            r["final_loss"] = r["final_loss"]._asdict()
            r["test_accuracy"] = r["test_accuracy"]._asdict()
        (args.out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
