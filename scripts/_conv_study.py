"""What the convolutional studies (conv_mnist1d.py, conv_fashion.py) share.

One rule's seeds (and learning rates) train in one ``jp.train_seeds`` call;
the helpers here pick the best learning rate on a validation split, summarize
test accuracy over seeds, and write the table, JSON and figures.
"""

from __future__ import annotations

import functools
import json
import platform
from pathlib import Path

import _setup  # noqa: F401  (jp.use_all_cores(), before jax starts)
import jax
import numpy as np
import optax

import jaxprop as jp

RULES = {
    "backprop": jp.rules.backprop,
    "fa": jp.rules.feedback_alignment,
    "dfa": jp.rules.direct_feedback_alignment,
    "sign": jp.rules.sign_symmetry,
}


@functools.partial(jax.jit, static_argnums=0)
def accuracy(net, params, x, y):
    """jp.accuracy of every run; params with leading (n_lrs, n_seeds) axes."""
    return jax.vmap(jax.vmap(lambda p: jp.accuracy(net, p, x, y)))(params)


def train_rule(net, rule, optimizer, hparams, keys, train, val, test, steps, **options):
    """Every seed at every grid point of one rule: one ``train_seeds`` call.

    Args:
      net: the network; rule: a ``jp.rules`` rule; optimizer: an optax
        optimizer whose hyperparameters ``hparams`` sweeps ({name: (n_lrs,)}).
      keys: (n_seeds,) keys; train, val, test: (x, y) pairs.
      steps: training steps; options: ``train_seeds``'s (batch_size,
        eval_every, alignment_every, ...).

    Returns:
      A dict of NumPy arrays with leading (n_lrs, n_seeds) axes: ``val``
      (final validation accuracy, NaN where diverged), ``test`` (test accuracy
      at every evaluation, (..., n_evals), NaN where diverged), ``eval_steps``,
      ``diverged``, and with ``alignment_every`` the ∂W angles ``align``
      (..., L, n_align) and ``align_steps``.
    """
    result = jp.train_seeds(
        net,
        keys,
        *train,
        optimizer,
        steps,
        rule=rule,
        hparams=hparams,
        eval_data=test,
        **options,
    )
    diverged = np.asarray(result.diverged)
    run = {
        "diverged": diverged,
        "val": np.where(
            diverged, np.nan, np.asarray(accuracy(net, result.params, *val))
        ),
        "test": np.where(
            diverged[..., None], np.nan, np.asarray(result.eval_accuracy, np.float64)
        ),
        "eval_steps": np.asarray(result.eval_steps[0, 0]),
    }
    if result.alignment is not None:
        run["align"] = np.where(
            diverged[..., None, None], np.nan, np.asarray(result.alignment.grad)
        )
        run["align_steps"] = np.asarray(result.alignment_steps[0, 0])
    return run


def adam(lr: float):
    """Adam with its learning rate a grid-sweepable hyperparameter."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr)


def best_index(run) -> int:
    """The grid point with the highest mean validation accuracy (diverged: 0)."""
    return int(np.argmax(np.nan_to_num(run["val"], nan=0.0).mean(axis=1)))


def quartiles(a, axis=0):
    """(q25, median, q75) over ``axis``, NaN left out (NaN where all are)."""
    out = np.full((3, *np.delete(a.shape, axis)), np.nan)
    ok = np.isfinite(a).any(axis=axis)
    if ok.any():
        out[:, ok] = np.nanquantile(np.moveaxis(a, axis, -1)[ok], [0.25, 0.5, 0.75], -1)
    return out


def summary(run) -> dict:
    """Test accuracy at the best grid point: mean and 95% CI over seeds."""
    i = best_index(run)
    final = run["test"][i, :, -1]
    s = jp.summarize(final[np.isfinite(final)])
    return {
        "best": i,
        "mean": s.mean,
        "ci": [s.ci_low, s.ci_high] if s.n > 1 else None,
        "n": s.n,
        "diverged": int(run["diverged"][i].sum()),
        "seeds": int(run["diverged"].shape[1]),
    }


def fmt_acc(s: dict) -> str:
    """'0.912 (0.905–0.919)': mean and 95% CI."""
    ci = f" ({s['ci'][0]:.3f}–{s['ci'][1]:.3f})" if s["ci"] else ""
    return f"{s['mean']:.3f}{ci}"


def machine() -> str:
    """Device, versions and cores, one line."""
    return (
        f"{len(jax.devices())} {jax.devices()[0].platform} device(s) "
        f"({platform.processor() or platform.machine()}), jax {jax.__version__}, "
        f"jaxprop {jp.__version__}, optax {optax.__version__}, "
        f"Python {platform.python_version()}"
    )


def to_json(results: dict, lrs: dict) -> dict:
    """Per rule: the grid, its summary, per-seed final test accuracies."""
    out = {}
    for name, run in results.items():
        s = summary(run)
        out[name] = {
            "lrs": [float(v) for v in lrs[name]],
            "best_lr": float(lrs[name][s["best"]]),
            **{k: s[k] for k in ("mean", "ci", "n", "diverged", "seeds")},
            "val_mean_per_lr": np.nanmean(run["val"], axis=1).tolist(),
            "test_mean_per_lr": np.nanmean(run["test"][..., -1], axis=1).tolist(),
            "test_per_seed": [
                None if not np.isfinite(v) else float(v)
                for v in run["test"][s["best"], :, -1]
            ],
            "eval_steps": run["eval_steps"].tolist(),
            # (n_seeds, n_evals) test accuracy at the best lr, null: diverged
            "test_curve_per_seed": [
                [None if not np.isfinite(v) else float(v) for v in row]
                for row in run["test"][s["best"]]
            ],
        }
        if "align" in run:
            q = quartiles(run["align"][s["best"]])
            out[name]["align_steps"] = run["align_steps"].tolist()
            out[name]["grad_angle_median"] = np.where(
                np.isfinite(q[1]), q[1], -1
            ).tolist()
    return out


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")


def plot(results: dict, lrs: dict, path: Path, title: str, n_hidden: int) -> None:
    """Test accuracy vs step per rule and, where measured, ∂W angle per hidden
    layer vs step; median and IQR band across seeds, at each rule's best lr."""
    from matplotlib.figure import Figure

    aligned = [r for r in results if "align" in results[r]]
    cols = 1 + (n_hidden if aligned else 0)
    fig = Figure(figsize=(max(6.0, 3.3 * cols), 3.2), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)[0]
    for k, (name, run) in enumerate(results.items()):
        i = best_index(run)
        color = f"C{k}"
        q = quartiles(run["test"][i])
        steps = run["eval_steps"]
        label = f"{name} (lr {lrs[name][i]:g})"
        axes[0].fill_between(steps, q[0], q[2], color=color, alpha=0.25, lw=0)
        axes[0].plot(steps, q[1], color=color, label=label)
        if "align" not in run:
            continue
        for layer in range(n_hidden):
            q = quartiles(run["align"][i][:, layer])
            ax = axes[1 + layer]
            ax.fill_between(run["align_steps"], q[0], q[2], color=color, alpha=0.25)
            ax.plot(run["align_steps"], q[1], color=color, marker=".", label=name)
    axes[0].set(xlabel="step", ylabel="test accuracy", title="test accuracy")
    axes[0].legend(fontsize="small")
    for layer in range(n_hidden if aligned else 0):
        ax = axes[1 + layer]
        ax.axhline(90, color="0.6", lw=0.8, ls=":")
        ax.set(xlabel="step", ylim=(0, 100), title=f"layer {layer + 1}: ∂W angle")
        if layer == 0:
            ax.set_ylabel("angle to backprop, degrees")
    fig.suptitle(title + " (median and IQR across seeds)", fontsize="medium")
    fig.savefig(path, dpi=100)
