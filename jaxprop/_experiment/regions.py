"""PNG plot of a two-input network's decision regions, for the first seeds of a
learning rate (matplotlib's object API, as :mod:`.plots`)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .plots import save_figure

#: Seeds drawn in the decision-region plot.
REGION_SEEDS = 4
#: The most data points drawn over the decision regions.
_MAX_POINTS = 2000
#: Range of the bounded output activations (colour-bar range of the regions).
_OUTPUT_RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def _classes(y: np.ndarray, threshold: float) -> np.ndarray:
    """Integer classes of labels (n,), one target column (n, 1) or one-hot rows."""
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, 1)
    y = y.reshape(len(y))
    if y.dtype.kind in "iub":
        return y.astype(int)
    return (y > threshold).astype(int)


def _plane(x: np.ndarray):
    """A 200 × 200 grid over the inputs' range, padded by 15%: the mesh
    ``(g0, g1)`` and its points as a (200², 2) array of x's dtype."""
    lo, hi = x.min(0), x.max(0)
    pad = 0.15 * (hi - lo) + 1e-6
    g0, g1 = np.meshgrid(
        np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200),
        np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200),
    )
    return g0, g1, jnp.asarray(np.stack([g0.ravel(), g1.ravel()], 1), x.dtype)


def _outputs(net, params, grid, n_seeds: int, diverged) -> np.ndarray:
    """The first seeds' outputs over the grid: (n, grid, n_out), NaN for a
    diverged seed (its params are frozen: its panel says "diverged")."""
    n = min(n_seeds, jax.tree.leaves(params)[0].shape[0])
    y_hat = np.asarray(
        jax.vmap(lambda p: net.forward(p, grid))(jax.tree.map(lambda l: l[:n], params))
    )
    if diverged is not None:
        y_hat = np.where(np.asarray(diverged)[:n, None, None], np.nan, y_hat)
    return y_hat


def _points(n: int):
    """Which of ``n`` data points are drawn (at most _MAX_POINTS), and their
    marker size and edge width (larger and edged when there are few)."""
    shown = np.arange(n)
    if n > _MAX_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(n, _MAX_POINTS, False))
    size, edge = (120, 1.2) if n <= 16 else (30, 0.6) if n <= 300 else (10, 0.3)
    return shown, size, edge


def _output_scale(net, out: np.ndarray):
    """(vmin, vmax) of one output's colour bar: the output activation's range,
    else the finite outputs' range."""
    if net.output_activation in _OUTPUT_RANGE:
        return _OUTPUT_RANGE[net.output_activation]
    ok = out[np.isfinite(out)]
    vmin, vmax = (ok.min(), ok.max()) if ok.size else (0.0, 1.0)
    if vmax <= vmin:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    return vmin, vmax


def _legend(y: np.ndarray, n_out: int, threshold: float):
    """The classes' colours and the legend's handles."""
    if n_out > 1:
        palette = [f"C{i % 10}" for i in range(n_out)]
        handles = [
            Patch(facecolor=c, edgecolor="k", alpha=0.6, label=f"class {i}")
            for i, c in enumerate(palette)
        ]
        return palette, handles
    palette = ["C0", "C3"]  # low outputs blue, high red, as RdBu_r
    values = np.unique(y.ravel()) if y.ndim == 1 or y.shape[1] == 1 else []
    names = (
        [f"y = {v:g}" for v in values]
        if len(values) == 2 and values[0] <= threshold < values[1]
        else [f"y ≤ {threshold:g}", f"y > {threshold:g}"]
    )
    handles = [
        Line2D([], [], ls="", marker="o", mfc=c, mec="k", label=name, markersize=7)
        for c, name in zip(palette, names, strict=True)
    ] + [Line2D([], [], color="k", lw=1.5, label=f"output = {threshold:g}")]
    return palette, handles


def _draw_regions(ax, g0, g1, y_hat_s, scale, palette, threshold):
    """One seed's panel under the points: its output's colours and boundary
    (one output), its class regions (several), or "diverged". Returns the
    colour-bar mappable of one output, else None."""
    n_out = y_hat_s.shape[-1]
    if not np.isfinite(y_hat_s).all():
        ax.text(0.5, 0.5, "diverged", transform=ax.transAxes, ha="center")
        return None
    if n_out == 1:
        vmin, vmax = scale
        z = np.clip(y_hat_s[..., 0], vmin, vmax).reshape(g0.shape)
        mappable = ax.contourf(
            g0,
            g1,
            z,
            levels=np.linspace(vmin, vmax, 21),
            cmap="RdBu_r",
            vmin=vmin,
            vmax=vmax,
        )
        if z.min() < threshold < z.max():
            ax.contour(g0, g1, z, levels=[threshold], colors="k", linewidths=1.5)
        return mappable
    z = np.argmax(y_hat_s, 1).reshape(g0.shape)
    ax.contourf(
        g0, g1, z, levels=np.arange(n_out + 1) - 0.5, colors=palette, alpha=0.45
    )
    return None


def _regions_figure(
    net,
    params,
    data,
    lr,
    n_seeds: int = REGION_SEEDS,
    threshold: float = 0.5,
    diverged=None,
) -> Figure:
    x, y = np.asarray(data.x), np.asarray(data.y)
    g0, g1, grid = _plane(x)
    y_hat = _outputs(net, params, grid, n_seeds, diverged)  # (n, grid, n_out)
    n, n_out = y_hat.shape[0], y_hat.shape[-1]
    classes = _classes(y, threshold)
    shown, size, edge = _points(len(x))
    scale = _output_scale(net, y_hat[..., 0]) if n_out == 1 else None
    palette, handles = _legend(y, n_out, threshold)
    fig = Figure(figsize=(3.2 * n + 1.4, 3.9), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    mappable = None
    for s, ax in enumerate(axes):
        drawn = _draw_regions(ax, g0, g1, y_hat[s], scale, palette, threshold)
        mappable = drawn if drawn is not None else mappable
        ax.scatter(
            x[shown, 0],
            x[shown, 1],
            c=[palette[min(int(c), len(palette) - 1)] for c in classes[shown]],
            s=size,
            edgecolors="k",
            linewidths=edge,
            zorder=3,
        )
        ax.set(
            title=f"seed {s}",
            xticks=[],
            yticks=[],
            xlim=(g0.min(), g0.max()),
            ylim=(g1.min(), g1.max()),
        )
    if n_out == 1 and mappable is not None:
        fig.colorbar(mappable, ax=list(axes), label="network output", shrink=0.9)
    seeds = "seed 0" if n == 1 else f"seeds 0–{n - 1}"
    points = f"; {_MAX_POINTS} of {len(x)} points" if len(shown) < len(x) else ""
    fig.suptitle(f"Decision regions, lr {lr:g} ({seeds}{points})")
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 6),
        fontsize="small",
        frameon=False,
    )
    return fig


def decision_regions(
    path: Path,
    net,
    params,
    data,
    lr,
    n_seeds: int = REGION_SEEDS,
    threshold: float = 0.5,
    diverged=None,
) -> Path:
    """The network's output or class over the plane, for the first seeds of one lr.

    One output: its value (colour bar over the output activation's range,
    sigmoid (0, 1) or tanh (-1, 1), else the outputs' range) and the decision
    boundary (output = ``threshold``) in black. Several outputs: the predicted
    class's region in that class's colour. The data points (at most 2000) are
    coloured by their true class.

    Args:
      net: a network with 2 inputs.
      params: params with a leading (n_seeds,) axis (one learning rate's runs).
      data: the experiment's data (x: (n, 2); y: labels (n,), one target column
        (n, 1) or one-hot rows).
      lr: the learning rate of these runs (in the title).
      n_seeds: how many of the first seeds to draw.
      diverged: optional (n_seeds,) bool; those seeds' panels say "diverged".
      threshold: the one-output decision boundary; a target above it is class 1.
    """
    return save_figure(
        _regions_figure(net, params, data, lr, n_seeds, threshold, diverged), path
    )
