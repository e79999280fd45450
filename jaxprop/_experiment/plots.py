"""PNG plots of an experiment (matplotlib's object API: no pyplot, no global state).

Each public function saves one PNG and returns its path; the ``_*_figure``
helpers build the :class:`~matplotlib.figure.Figure` it saves. The decision
regions are in :mod:`.regions`. A learning rate
whose every seed diverged (all values NaN) is drawn as such, never as an error
or a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

#: Beyond this many seeds per learning rate, faint per-seed lines are only ink.
_MAX_SEED_LINES = 200
#: Error/tolerance ratios below this (zeros included) are drawn at it.
_RATIO_FLOOR = 1e-8


def save_figure(fig: Figure, path) -> Path:
    """Writes ``fig`` as a PNG at ``path``; returns the path."""
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _diverged_text(n_diverged: int, n: int) -> str:
    if n_diverged == 0:
        return f"{n} seeds"
    if n_diverged == n:
        return f"{n}/{n} diverged"
    return f"{n} seeds, {n_diverged} diverged"


# ---------------------------------------------------------------- loss curves
def _quartiles(runs: np.ndarray):
    """(q1, median, q3) over seeds (axis 0) of the finite values, NaN where a
    column has none (without NumPy's all-NaN warning)."""
    finite = np.isfinite(runs)
    alive = finite.any(axis=0)
    filled = np.where(finite, runs, np.nan)
    filled[:, ~alive] = 0.0  # nanpercentile warns on all-NaN columns
    q = np.nanpercentile(filled, [25, 50, 75], axis=0)
    return tuple(np.where(alive, qi, np.nan) for qi in q)


def _seed_band(ax, x, runs, color, label, draw_seeds=True) -> np.ndarray:
    """Each seed faint, the median bold and the inter-quartile band; returns
    (q1, median, q3): (3, n), NaN where no seed is finite."""
    finite = np.isfinite(runs)
    if draw_seeds and runs.shape[0] <= _MAX_SEED_LINES and finite.any():
        ax.plot(x, np.where(finite, runs, np.nan).T, color=color, alpha=0.1, lw=0.7)
    q1, median, q3 = _quartiles(runs)
    if finite.any():
        ax.fill_between(x, q1, q3, color=color, alpha=0.25, lw=0)
        ax.plot(x, median, color=color, lw=2, label=label)
    else:  # every seed diverged: a legend entry says so, nothing is drawn
        ax.plot([], [], color=color, lw=2, ls=":", label=label)
    return np.stack([q1, median, q3])


def _limit_to_bands(ax, bands) -> None:
    """y limits around the medians and the inter-quartile bands within 10x of
    them, so that a few huge losses logged just before runs diverged do not
    squash the curves. bands: (3, n) arrays of (q1, median, q3)."""
    medians = np.concatenate([np.ravel(b[1]) for b in bands]) if bands else []
    medians = np.asarray(medians)[np.isfinite(medians)]
    if not medians.size:
        return
    m_lo, m_hi = medians.min(), medians.max()
    values = np.concatenate([np.ravel(b) for b in bands])
    span = 10 * max(abs(m_hi), abs(m_lo), 1e-300)
    values = values[np.isfinite(values) & (np.abs(values) <= span)]
    lo, hi = values.min(), values.max()
    if ax.get_yscale() == "log":
        lo = min(v for v in (lo, m_lo) if v > 0)
        ax.set_ylim(lo / 2, hi * 2)
    else:
        pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
        ax.set_ylim(lo - pad, hi + pad)


def _maybe_log(ax, *arrays) -> None:
    """Log y axis when the finite values are positive and span over 100x."""
    finite = np.concatenate([np.ravel(a)[np.isfinite(np.ravel(a))] for a in arrays])
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        ax.set_yscale("log")


def _mask_after_divergence(steps, losses, eval_steps, values):
    """Held-out values at and after each run's first non-finite training block set
    to NaN (a diverged run is frozen, so its later evaluations repeat)."""
    bad = ~np.isfinite(losses)
    first_bad = np.where(bad.any(-1), np.argmax(bad, -1), len(steps))
    cutoff = np.append(steps, np.inf)[first_bad]  # (n_lr, n_seeds)
    return np.where(eval_steps >= cutoff[..., None], np.nan, values)


def _loss_figure(
    steps, losses, lrs, eval_steps=None, eval_loss=None, eval_accuracy=None
) -> Figure:
    steps = np.asarray(steps)
    losses = np.asarray(losses, float)
    has_eval = eval_steps is not None and (
        eval_loss is not None or eval_accuracy is not None
    )
    panels = ["train"]
    if has_eval:
        eval_steps = np.asarray(eval_steps)
        if eval_loss is not None:
            eval_loss = _mask_after_divergence(
                steps, losses, eval_steps, np.asarray(eval_loss, float)
            )
            panels.append("eval_loss")
        if eval_accuracy is not None:
            eval_accuracy = _mask_after_divergence(
                steps, losses, eval_steps, np.asarray(eval_accuracy, float)
            )
            panels.append("eval_accuracy")
    fig = Figure(figsize=(5.4 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    ax_train = axes[0]
    bands = []  # every loss band drawn: the y limits fit them
    for i, lr in enumerate(lrs):
        runs = losses[i]
        n_div = int((~np.isfinite(runs)).any(axis=-1).sum())
        label = f"lr {lr:g}: median, IQR ({_diverged_text(n_div, runs.shape[0])})"
        bands.append(_seed_band(ax_train, steps, runs, f"C{i}", label))
    medians = [b[1] for b in bands]
    ax_train.set(xlabel="step", ylabel="training loss", title="Training loss")
    ax_train.legend(fontsize="small")
    if "eval_loss" in panels:
        ax = axes[panels.index("eval_loss")]
        for i, _ in enumerate(lrs):
            bands.append(_seed_band(ax, eval_steps, eval_loss[i], f"C{i}", None))
            ax.plot(steps, medians[i], color=f"C{i}", lw=1, ls="--", alpha=0.6)
        ax.set(xlabel="step", ylabel="held-out loss", title="Held-out loss")
        ax.legend(
            handles=[
                Line2D([], [], color="0.3", lw=2, label="held-out: median, IQR"),
                Line2D([], [], color="0.3", lw=1, ls="--", label="training median"),
            ],
            fontsize="small",
        )
        # One scale for both losses, so that a gap between them is overfitting.
        ax.sharey(ax_train)
    _maybe_log(ax_train, *bands)
    _limit_to_bands(ax_train, bands)
    if "eval_accuracy" in panels:
        ax = axes[panels.index("eval_accuracy")]
        for i, _ in enumerate(lrs):
            _seed_band(ax, eval_steps, eval_accuracy[i], f"C{i}", None)
        ax.set(xlabel="step", ylabel="held-out accuracy", title="Held-out accuracy")
        if not np.isfinite(eval_accuracy).any():
            ax.set_ylim(0, 1)
    fig.suptitle(f"Across seeds ({losses.shape[1]} per learning rate)")
    return fig


def loss_curves(
    path: Path,
    steps: np.ndarray,
    losses: np.ndarray,
    lrs,
    eval_steps: np.ndarray | None = None,
    eval_loss: np.ndarray | None = None,
    eval_accuracy: np.ndarray | None = None,
) -> Path:
    """Training (and held-out) curves across seeds: median, IQR band, seeds faint.

    One panel for the training loss; with held-out data, one for the held-out
    loss (on the training loss's scale, its median dashed for comparison) and
    one for the held-out accuracy. One colour per learning rate throughout; a
    diverged run's held-out values stop where its training loss does.

    Args:
      steps: (n_blocks,) step at the end of each logged block.
      losses: (n_lr, n_seeds, n_blocks) logged losses (NaN after divergence).
      lrs: the n_lr learning rates.
      eval_steps: (n_evals,) steps of the evaluations, or None.
      eval_loss, eval_accuracy: (n_lr, n_seeds, n_evals), or None.
    """
    return save_figure(
        _loss_figure(steps, losses, lrs, eval_steps, eval_loss, eval_accuracy), path
    )


# ------------------------------------------------------------------ histogram
def _histogram_figure(values, lrs, label: str) -> Figure:
    values = np.asarray(values, float)
    n_lr, n_seeds = values.shape
    finite = values[np.isfinite(values)]
    bins = (
        np.histogram_bin_edges(finite, bins=int(np.clip(np.sqrt(n_seeds) * 2, 10, 30)))
        if finite.size
        else None
    )
    fig = Figure(figsize=(6.4, 1.0 + 1.8 * n_lr), layout="constrained")
    axes = fig.subplots(n_lr, 1, sharex=True, squeeze=False)[:, 0]
    for i, (ax, lr) in enumerate(zip(axes, lrs, strict=True)):
        v = values[i][np.isfinite(values[i])]
        n_div = n_seeds - v.size
        if v.size:
            ax.hist(v, bins=bins, color=f"C{i}", edgecolor="white", lw=0.5)
            median = float(np.median(v))
            ax.axvline(median, color="k", ls="--", lw=1, label=f"median {median:.3g}")
            ax.legend(fontsize="small", loc="upper left")
        else:
            ax.text(
                0.5,
                0.5,
                f"all {n_seeds} diverged",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color=f"C{i}",
                fontsize="large",
            )
            ax.set_ylim(0, 1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("seeds")
        ax.set_title(
            f"lr {lr:g}: {n_seeds} seeds, {n_div} diverged",
            fontsize="medium",
            color=f"C{i}",
            loc="left",
        )
    axes[-1].set_xlabel(label)
    fig.suptitle(f"Final {label} across seeds")
    return fig


def histogram(path: Path, values: np.ndarray, lrs, label: str) -> Path:
    """A final metric across seeds: one panel (and colour) per learning rate.

    Panels share the x axis and the bins; the y axis counts seeds (integer
    ticks); each title gives the lr, the seeds and how many diverged.

    Args:
      values: (n_lr, n_seeds), NaN for diverged runs.
      lrs: the n_lr learning rates.
      label: the metric's name (x axis).
    """
    return save_figure(_histogram_figure(values, lrs, label), path)


# ----------------------------------------------------------------- gradcheck
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _gradcheck_figure(report) -> Figure:
    rows = report.rows
    names = [
        f"{'W' if r.param == 'w' else r.param}{str(r.layer).translate(_SUPERSCRIPT)}"
        for r in rows
    ]
    at = np.arange(len(rows))
    autodiff = np.array([r.autodiff_ratio for r in rows], float)
    numeric = np.array([r.numeric_ratio for r in rows], float)
    # NaN vs jax.grad means broken gradients; NaN vs finite differences means
    # not computed. Non-finite errors are drawn at the top, zeros at the floor.
    autodiff = np.where(np.isnan(autodiff), np.inf, autodiff)
    finite = np.concatenate([autodiff, numeric])
    finite = finite[np.isfinite(finite)]
    top = max(100.0, 10 * finite.max()) if finite.size else 100.0
    width = max(4.0, 1.6 + 0.55 * len(rows)) + 2.4  # + the legend
    fig = Figure(figsize=(width, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_yscale("log")
    ax.axhspan(1, top * 3, color="C3", alpha=0.07, lw=0)
    ax.axhline(1, color="k", ls="--", lw=1, label="tolerance")
    circled = False  # the red circle has its one legend entry
    for ratios, marker, color, name, dx in (
        (autodiff, "o", "C0", "vs jax.grad", -0.1),
        (numeric, "s", "C1", "vs finite differences", 0.1),
    ):
        shown = ~np.isnan(ratios)
        if not shown.any():
            label = f"{name} (not run)"
            ax.plot([], [], ls="", marker=marker, color=color, label=label)
            continue
        clipped = np.clip(ratios, _RATIO_FLOOR, top)
        ax.plot(
            at[shown] + dx,
            clipped[shown],
            ls="",
            marker=marker,
            color=color,
            mec="k",
            mew=0.5,
            markersize=8,
            label=name,
        )
        failed = shown & (ratios > 1)
        ax.plot(
            at[failed] + dx,
            clipped[failed],
            ls="",
            marker=marker,
            mfc="none",
            mec="C3",
            mew=2,
            markersize=12,
            label="over tolerance" if failed.any() and not circled else None,
        )
        circled |= bool(failed.any())
    ax.set_xticks(at, names)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylim(_RATIO_FLOOR / 3, top * 3)
    ax.set(
        xlabel="parameter array (layer)",
        ylabel="largest error / tolerance\n"
        f"(zeros drawn at {_RATIO_FLOOR:g}, ∞/NaN at the top)",
    )
    verdict = "PASSED" if report.passed else "FAILED"
    ax.set_title(
        f"Gradient check ({report.dtype}): {verdict}\n"
        f"rtol {report.rtol_autodiff:g} vs jax.grad, "
        f"{report.rtol_numeric:g} vs finite differences",
        color="k" if report.passed else "C3",
    )
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def gradcheck(path: Path, report) -> Path:
    """The gradient check (``jp.check_grads``) per parameter array.

    For each W^l and b^l, the largest error as a fraction of its tolerance,
    against ``jax.grad`` and against finite differences, on a log axis with the
    tolerance (ratio 1) as a dashed line; failures are circled in red.

    Args:
      report: a ``jp.GradCheckReport``.
    """
    return save_figure(_gradcheck_figure(report), path)


def _alignment_figure(steps, angles: dict, lrs, rule: str | None) -> Figure:
    measures = {
        "grad": "∠(rule's ∂Wˡ, backprop's)",
        "delta": "∠(rule's δˡ, backprop's), batch mean",
        "feedback": "∠(Wˡ, Bˡ)",
    }
    shown = [m for m in measures if np.isfinite(angles[m]).any()] or ["grad"]
    n_lr, n_seeds = angles["grad"].shape[:2]
    fig = Figure(figsize=(5 * len(shown), 1.0 + 3.4 * n_lr), layout="constrained")
    # One row per learning rate (as the histogram), one column per measure.
    axes = fig.subplots(n_lr, len(shown), sharex=True, squeeze=False)
    for i, lr in enumerate(lrs):
        for ax, m in zip(axes[i], shown, strict=True):
            a = angles[m][i]  # (n_seeds, L, n)
            for l in range(a.shape[1]):
                runs = a[:, l]
                if not np.isfinite(runs).any():
                    continue
                q1, median, q3 = _quartiles(runs)
                ax.fill_between(steps, q1, q3, color=f"C{l}", alpha=0.25, lw=0)
                ax.plot(steps, median, color=f"C{l}", lw=2, marker="o", ms=3,
                        label=f"layer {l + 1}")  # fmt: skip
            if not np.isfinite(a).any():
                ax.text(0.5, 0.5, f"all {n_seeds} diverged", transform=ax.transAxes,
                        ha="center", va="center", fontsize="large")  # fmt: skip
            else:
                ax.legend(fontsize=8)
            ax.axhline(90, color="0.5", lw=0.8, ls=":")
            ax.set(ylabel="degrees", ylim=(0, 180))
            ax.set_title(f"lr {lr:g}: {measures[m]}", fontsize="medium", loc="left")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.suptitle(
        f"Alignment with backprop, rule {rule or 'backprop'}: median and "
        f"inter-quartile band over {n_seeds} seeds"
    )
    return fig


def alignment_curves(path: Path, steps, angles: dict, lrs, rule: str | None) -> Path:
    """A rule's alignment with backprop across seeds: one row of panels per
    learning rate, one panel per measure (those measured), one line per layer.

    Args:
      steps: (n,) steps of the measures.
      angles: ``{"grad" | "delta" | "feedback": (n_lr, n_seeds, L, n)}`` degrees.
      lrs: the n_lr learning rates.
      rule: the rule's name, for the title.
    """
    return save_figure(_alignment_figure(steps, angles, lrs, rule), path)


# ----------------------------------------------------------------- comparison
def _comparison_figure(series: list[dict]) -> Figure:
    n_layers = max((s["angles"].shape[1] for s in series if s["angles"] is not None),
                   default=0)  # fmt: skip
    cols = max(n_layers, 1)
    rows = 2 if n_layers else 1
    fig = Figure(figsize=(max(8.0, 3.2 * cols), 3.6 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, cols)
    top = fig.add_subplot(grid[0, :])
    n_seeds = series[0]["y"].shape[0]
    for k, s in enumerate(series):
        y = s["y"]
        if s["ylabel"] != "training loss":  # evaluations of a diverged seed repeat
            y = _mask_after_divergence(s["steps"], s["losses"], s["x"], y)
        _seed_band(top, s["x"], y, f"C{k}", s["label"], draw_seeds=False)
    top.set(xlabel="step", ylabel=series[0]["ylabel"])
    if "loss" in series[0]["ylabel"]:
        _maybe_log(top, *(s["y"] for s in series))
    top.legend(fontsize=8)
    top.set_title(f"{series[0]['ylabel']}: median and inter-quartile band over "
                  f"{n_seeds} seeds", fontsize="medium", loc="left")  # fmt: skip
    for l in range(n_layers):
        ax = fig.add_subplot(grid[1, l], sharey=None)
        for k, s in enumerate(series):
            a = s["angles"]
            if a is None or l >= a.shape[1] or not np.isfinite(a[:, l]).any():
                continue
            q1, median, q3 = _quartiles(a[:, l])
            ax.fill_between(s["angle_steps"], q1, q3, color=f"C{k}", alpha=0.25, lw=0)
            ax.plot(s["angle_steps"], median, color=f"C{k}", lw=2, marker="o", ms=3)
        ax.axhline(90, color="0.5", lw=0.8, ls=":")
        ax.set(xlabel="step", ylim=(0, 180), ylabel="degrees" if l == 0 else None)
        ax.set_title(f"layer {l + 1}: ∠(rule's ∂Wˡ, backprop's)", fontsize="medium",
                     loc="left")  # fmt: skip
    return fig


def comparison(path: Path, series: list[dict]) -> Path:
    """Runs side by side, one colour each: their curve (held-out accuracy, else
    a loss) against the step and, one panel per layer, the angle of each rule's
    weight update to backprop's gradient; medians and inter-quartile bands
    across seeds. Backprop's angles, zero, are not drawn.

    Args:
      series: per run, ``label``; ``x`` (n,) steps and ``y`` (n_seeds, n) the
        curve, named ``ylabel``; ``steps`` (m,) and ``losses`` (n_seeds, m),
        the training losses that tell where a seed diverged; ``angle_steps``
        (k,) and ``angles`` (n_seeds, L, k) degrees, or None.
    """
    return save_figure(_comparison_figure(series), path)
