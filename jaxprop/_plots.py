"""PNG plots of an experiment (matplotlib's object API: no pyplot, no global state)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

#: Seeds drawn in the decision-region plot.
REGION_SEEDS = 4


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def loss_curves(path: Path, steps: np.ndarray, losses: np.ndarray, lrs) -> Path:
    """Training loss across seeds: median, inter-quartile band, each seed faint.

    Args:
      steps: (n_blocks,) step at the end of each logged block.
      losses: (n_lr, n_seeds, n_blocks) logged losses (NaN after divergence).
      lrs: the n_lr learning rates.
    """
    fig = Figure(figsize=(6.4, 4))
    ax = fig.add_subplot()
    for i, lr in enumerate(lrs):
        color = f"C{i}"
        runs = losses[i]
        if runs.shape[0] <= 200:  # beyond that, faint lines are only ink
            ax.plot(steps, runs.T, color=color, alpha=0.08, lw=0.7)
        with np.errstate(all="ignore"):
            alive = np.isfinite(runs).any(axis=0)
            q1, median, q3 = (
                np.where(
                    alive, np.nanpercentile(np.where(alive, runs, 0), q, axis=0), np.nan
                )
                for q in (25, 50, 75)
            )
        ax.fill_between(steps, q1, q3, color=color, alpha=0.25, lw=0)
        label = f"lr {lr:g}: median, IQR ({runs.shape[0]} seeds)"
        ax.plot(steps, median, color=color, lw=2, label=label)
    finite = losses[np.isfinite(losses)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="training loss", title="Training loss across seeds")
    ax.legend()
    return _save(fig, path)


def histogram(path: Path, values: np.ndarray, lrs, label: str) -> Path:
    """Histogram of a final metric across seeds, one per learning rate.

    Args:
      values: (n_lr, n_seeds), NaN for diverged runs (counted in the legend).
    """
    fig = Figure(figsize=(6.4, 4))
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    bins = np.histogram_bin_edges(finite, bins=30) if finite.size else 10
    for i, lr in enumerate(lrs):
        v = values[i][np.isfinite(values[i])]
        n_nan = values[i].size - v.size
        ax.hist(
            v,
            bins=bins,
            alpha=0.6,
            color=f"C{i}",
            label=f"lr {lr:g} ({v.size} seeds"
            + (f", {n_nan} diverged)" if n_nan else ")"),
        )
    ax.set(xlabel=label, ylabel="seeds", title=f"Final {label} across seeds")
    ax.legend()
    return _save(fig, path)


def decision_regions(
    path: Path, net, params, data, n_seeds: int = REGION_SEEDS
) -> Path:
    """The class (or output) over the plane for the first seeds of one learning rate.

    Args:
      net: a network with 2 inputs.
      params: params with a leading (n_seeds,) axis.
      data: the experiment's data (x: (n, 2)).
    """
    x, y = data.x, np.asarray(data.y)
    labels = y if y.ndim == 1 else (np.argmax(y, 1) if y.shape[1] > 1 else y[:, 0])
    lo, hi = x.min(0), x.max(0)
    pad = 0.15 * (hi - lo) + 1e-6
    g0, g1 = np.meshgrid(
        np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200),
        np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200),
    )
    grid = jnp.asarray(np.stack([g0.ravel(), g1.ravel()], 1), x.dtype)
    n = min(n_seeds, jax.tree.leaves(params)[0].shape[0])
    y_hat = np.asarray(
        jax.vmap(lambda p: net.forward(p, grid))(jax.tree.map(lambda l: l[:n], params))
    )
    fig = Figure(figsize=(3.2 * n, 3.2))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for s, ax in enumerate(axes):
        out = y_hat[s]
        if out.shape[1] == 1:  # one output: its value, and 0/1 points
            z = out[:, 0].reshape(g0.shape)
            ax.contourf(g0, g1, z, levels=20, cmap="RdBu_r", vmin=0, vmax=1)
            colors = np.where(labels > 0.5, "C3", "C0")
        else:  # the predicted class, in the class's color
            n_out = out.shape[1]
            z = np.argmax(out, 1).reshape(g0.shape)
            palette = [f"C{i % 10}" for i in range(n_out)]
            levels = np.arange(n_out + 1) - 0.5
            ax.contourf(g0, g1, z, levels=levels, colors=palette, alpha=0.45)
            colors = [palette[int(l)] for l in labels]
        ax.scatter(x[:, 0], x[:, 1], c=colors, s=14, edgecolors="k", linewidths=0.5)
        ax.set(title=f"seed {s}", xticks=[], yticks=[])
    fig.suptitle("Decision regions (first learning rate)", y=1.04)
    return _save(fig, path)


def gradcheck_table(path: Path, report) -> Path:
    """The gradient-check table (``jp.check_grads``) as an image."""
    text = str(report)
    lines = text.splitlines()
    fig = Figure(figsize=(0.085 * max(map(len, lines)), 0.2 * len(lines) + 0.4))
    fig.text(0.01, 0.98, text, family="monospace", fontsize=9, va="top")
    return _save(fig, path)
