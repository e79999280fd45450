"""A finished run's results: per-run metrics, metrics.json, curves.npz,
final.npz, the plots, and the gradient check."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks.grads import check_grads
from .._engine.loop import TrainResult
from .._io import atomic_write, save
from .._metrics import (
    accuracy_from_output,
    classification_threshold,
    proportion,
    summarize,
)
from .._per_example import dp_epsilon
from .build import Experiment
from .dp import DEFAULT_DELTA, sampling_rate
from .store import Checkpoint, write_json


def final_metrics(exp: Experiment, result: TrainResult) -> dict[str, np.ndarray]:
    """Per-run (n_lr, n_seeds) final metrics; NaN where a run diverged.

    ``solved`` (classification without held-out data, such as XOR): every
    training example classified correctly (``jp.solved``); a diverged run is
    not solved.
    """
    net, data = exp.net, exp.data

    @jax.jit
    def on(params, x, y):
        def one(p):
            y_hat, cache = net.forward_with_cache(p, x)
            return net.loss_from_cache(cache, y), accuracy_from_output(net, y_hat, y)

        return jax.vmap(jax.vmap(one))(params)

    train_loss, train_acc = on(result.params, data.x, data.y)
    diverged = np.asarray(result.diverged)
    metrics = {
        "train_loss": np.asarray(train_loss),
        "diverged": diverged,
        "diverged_at": np.asarray(result.diverged_at),
    }
    if data.classification:
        metrics["train_accuracy"] = np.asarray(train_acc)
        if data.x_eval is None:  # scored on its training points: solved or not
            metrics["solved"] = ~diverged & (metrics["train_accuracy"] == 1)
    if result.eval_loss is not None:
        metrics["eval_loss"] = np.asarray(result.eval_loss[..., -1])
        if data.classification:
            metrics["eval_accuracy"] = np.asarray(result.eval_accuracy[..., -1])
    for k in ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy"):
        if k in metrics:  # a diverged run has no final metric
            metrics[k] = np.where(diverged, np.nan, metrics[k])
    if result.alignment is not None:  # the last measure, per layer l = 1..L
        for measure, angles in result.alignment._asdict().items():
            for l in range(exp.net.n_layers):
                metrics[f"alignment_{measure}_{l + 1}"] = np.asarray(angles[..., l, -1])
    if result.diagnostics is not None:  # the last measure
        for name, values in result.diagnostics._asdict().items():
            if values is not None:
                metrics[name] = np.asarray(values[..., -1])
    return metrics


#: Per-run metrics that are flags or steps, not values to summarize.
_NOT_SUMMARIZED = ("diverged", "diverged_at", "solved")


def headline(metrics: Mapping[str, np.ndarray]) -> str:
    """The metric that sums a run up: held-out accuracy, else train accuracy or loss."""
    for k in ("eval_accuracy", "train_accuracy", "eval_loss", "train_loss"):
        if k in metrics:
            return k
    raise AssertionError("no metric")


def _bounds(metric: str) -> tuple[float, float]:
    """The range a metric's values can take (its confidence interval is clipped
    to it: a t-interval of accuracies near 1 can reach past 1)."""
    if "accuracy" in metric:
        return 0.0, 1.0
    if metric.startswith("alignment"):
        return 0.0, 180.0
    if metric == "sharpness":  # power iteration: the eigenvalue of largest |λ|
        return -math.inf, math.inf
    return 0.0, math.inf  # the costs: mse, cross-entropies


def summary_of(values: np.ndarray, metric: str) -> dict[str, float]:
    """``jp.summarize`` as a dict, with quartiles (NaN, i.e. null, if n is 0)."""
    s = summarize(values)
    low, high = _bounds(metric)
    finite = values[np.isfinite(values)]
    q1, q3 = np.percentile(finite, [25, 75]) if finite.size else (math.nan, math.nan)
    return {
        "n": s.n,
        "n_nan": s.n_nan,
        "mean": s.mean,
        "ci95_low": min(max(s.ci_low, low), high),
        "ci95_high": max(min(s.ci_high, high), low),
        "median": s.median,
        "q1": float(q1),
        "q3": float(q3),
        "min": s.min,
        "max": s.max,
    }


def _group(metrics: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    """The summary of learning rate i's runs."""
    out: dict[str, Any] = {
        k: summary_of(v[i], k) for k, v in metrics.items() if k not in _NOT_SUMMARIZED
    }
    diverged = metrics["diverged"][i]
    at = metrics["diverged_at"][i][diverged]
    out["runs"] = int(diverged.size)
    out["diverged"] = int(diverged.sum())
    out["diverged_at"] = (
        {"first": int(at.min()), "median": float(np.median(at)), "last": int(at.max())}
        if at.size
        else None
    )
    if "solved" in metrics:
        p = proportion(metrics["solved"][i])
        out["solved"] = {
            "successes": p.successes,
            "n": p.n,
            "fraction": p.fraction,
            "ci95_low": p.ci_low,
            "ci95_high": p.ci_high,
        }
    return out


def results_doc(exp: Experiment, checkpoint: Checkpoint):
    """(metrics.json's document, the TrainResult, per-run metrics) of a finished run.

    Summaries of a learning rate whose every run diverged have n = 0 and null
    statistics; nothing raises.
    """
    config, trainer = exp.config, exp.trainer
    result = trainer.result(checkpoint.state)
    metrics = final_metrics(exp, result)
    seconds = checkpoint.seconds
    n_runs = math.prod(trainer.shape)
    doc = {
        "headline": headline(metrics),
        "evaluated_on": (
            "held-out data" if exp.data.x_eval is not None else "the training data"
        ),
        "summary": {f"lr={lr:g}": _group(metrics, i) for i, lr in enumerate(config.lr)},
        "runs": [
            {"lr": lr, "seed": s} | {k: v[i, s].item() for k, v in metrics.items()}
            for i, lr in enumerate(config.lr)
            for s in range(config.seeds)
        ],
        **({"privacy": privacy(exp)} if config.clip_norm is not None else {}),
        "timing": {
            "train_s": seconds,
            "steps": config.steps,
            "runs": n_runs,
            "run_steps_per_s": n_runs * config.steps / seconds if seconds else None,
            "strategy": list(trainer.strategy),
        },
    }
    return doc, result, metrics


def privacy(exp: Experiment) -> dict[str, Any]:
    """DP-SGD's settings and ε at δ (``jp.dp_epsilon``, dp-accounting's RDP).

    With ``sampling`` poisson every step is a Poisson sample of the whole data
    set at q = sampling_rate, and ε is the RDP accountant's upper bound for it:
    a guarantee, as it is for full-batch steps (q = 1, no amplification).
    Shuffled minibatches (``batch_size``) are accounted as Poisson samples with
    q = batch_size / n: the usual approximation, not a guarantee
    (``accounting`` and ``guarantee`` say which).
    """
    config = exp.config
    q = sampling_rate(config, exp.data.x.shape[0])
    delta = DEFAULT_DELTA if config.delta is None else config.delta
    if config.sampling == "poisson":
        accounting = (
            "RDP upper bound, every step a Poisson sample of the whole data set "
            "with q = sampling_rate (a guarantee for this sampling)"
        )
    elif q == 1:
        accounting = "RDP, every step the whole data set (exact)"
    else:
        accounting = (
            "RDP, Poisson sampling with q = batch_size / n (an approximation "
            "of shuffled minibatches)"
        )
    doc = {
        "clip_norm": config.clip_norm,
        "noise_multiplier": config.noise_multiplier,
        "delta": delta,
        "sampling": config.sampling,
        "sampling_rate": q,
        "steps": config.steps,
        "accounting": accounting,
        "guarantee": config.sampling == "poisson" or q == 1,
    }
    if config.target_epsilon is not None:
        doc["target_epsilon"] = config.target_epsilon
    try:
        doc["epsilon"] = dp_epsilon(config.noise_multiplier, q, config.steps, delta)
    except ImportError:
        doc["epsilon"] = None
        doc["accounting"] = "not computed: pip install dp-accounting"
    return doc


def _best_lr(doc: Mapping[str, Any], lrs) -> int:
    """Index of the learning rate with the best median headline metric."""
    key = doc["headline"]
    sign = 1 if "accuracy" in key else -1
    medians = [doc["summary"][f"lr={lr:g}"][key]["median"] for lr in lrs]
    scores = [sign * m if math.isfinite(m) else -math.inf for m in medians]
    return int(np.argmax(scores))


def curves_of(
    exp: Experiment, result: TrainResult, metrics: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """curves.npz's arrays: ``steps`` (n_logged,), ``lr`` (n_lr,), ``losses``
    (n_lr, n_seeds, n_logged); with held-out data ``eval_steps`` (n_eval,),
    ``eval_loss`` and ``eval_accuracy`` (n_lr, n_seeds, n_eval); with alignment
    ``alignment_steps`` (n,) and ``alignment_{grad,delta,feedback}`` (n_lr,
    n_seeds, L, n); with diagnostics ``diagnostics_steps`` (n,) and
    ``diagnostics_{grad_norm,norm_test,snr,sharpness}`` (n_lr, n_seeds, n);
    and the final per-run ``metrics`` (n_lr, n_seeds)."""
    config = exp.config
    every = exp.trainer.log_every
    curves = {
        "steps": every * np.arange(1, config.steps // every + 1),
        "lr": np.asarray(config.lr),
        "losses": np.asarray(result.losses),
        **{k: v for k, v in metrics.items()},
    }
    if result.eval_loss is not None:
        curves["eval_steps"] = np.asarray(result.eval_steps[0, 0])
        curves["eval_loss"] = np.asarray(result.eval_loss)
        if exp.data.classification:
            curves["eval_accuracy"] = np.asarray(result.eval_accuracy)
    if result.alignment is not None:
        curves["alignment_steps"] = np.asarray(result.alignment_steps[0, 0])
        for measure, angles in result.alignment._asdict().items():
            curves[f"alignment_{measure}"] = np.asarray(angles)  # (n_lr, n_seeds, L, n)
    if result.diagnostics is not None:
        curves["diagnostics_steps"] = np.asarray(result.diagnostics_steps[0, 0])
        for name, values in result.diagnostics._asdict().items():
            if values is not None:
                curves[f"diagnostics_{name}"] = np.asarray(values)
    return curves


def write_results(
    out: Path, exp: Experiment, checkpoint: Checkpoint, results=None
) -> dict:
    """metrics.json, curves.npz, final.npz, then the plots; returns the metrics doc.

    Args:
      results: :func:`results_doc` of ``checkpoint`` if already computed.
    """
    from . import plots, regions

    config = exp.config
    doc, result, metrics = results or results_doc(exp, checkpoint)
    write_json(out / "metrics.json", doc)
    curves = curves_of(exp, result, metrics)
    steps = curves["steps"]
    evals = {
        k: curves[k]
        for k in ("eval_steps", "eval_loss", "eval_accuracy")
        if k in curves
    }
    atomic_write(out / "curves.npz", lambda f: np.savez(f, **curves))
    final = {"params": result.params, "opt_state": result.opt_state}
    if jax.tree.leaves(result.rule_state):
        final["rule_state"] = result.rule_state
    save(out / "final.npz", final)
    plots.loss_curves(
        out / "loss.png", steps, np.asarray(result.losses), config.lr, **evals
    )
    if result.alignment is not None:
        plots.alignment_curves(
            out / "alignment.png",
            curves["alignment_steps"],
            {k: curves[f"alignment_{k}"] for k in result.alignment._fields},
            config.lr,
            config.rule,
        )
    key = doc["headline"]
    plots.histogram(out / f"{key}.png", metrics[key], config.lr, key.replace("_", " "))
    if exp.data.x.ndim == 2 and exp.data.x.shape[1] == 2:  # a plane of inputs
        i = _best_lr(doc, config.lr)
        params = jax.tree.map(lambda l: l[i], result.params)
        threshold = (
            0.5
            if exp.net.cost_fn.classify == "argmax"
            else classification_threshold(exp.net)
        )
        regions.decision_regions(
            out / "regions.png",
            exp.net,
            params,
            exp.data,
            config.lr[i],
            threshold=threshold,
            diverged=metrics["diverged"][i],
        )
    return doc


#: Finite differences at this many random entries of each parameter array when
#: a network has more than ``FULL_CHECK_PARAMS`` parameters (docs/design.md,
#: "Gradient checks of large networks sample entries").
SAMPLED_ENTRIES = 32
FULL_CHECK_PARAMS = 5000


class GradientCheck(NamedTuple):
    """A gradient check of one run's initial parameters, and what it covered."""

    report: Any  # jp.GradCheckReport
    examples: int
    numeric_entries: int | None  # per array; None: every entry

    def describe(self) -> str:
        fd = (
            "every entry"
            if self.numeric_entries is None
            else f"{self.numeric_entries} random entries per array"
        )
        return (
            f"gradient check of the first run's initial parameters on "
            f"{self.examples} training examples ({self.report.dtype}; finite "
            f"differences at {fd}): {'PASSED' if self.report.passed else 'FAILED'}"
        )


def gradient_check(
    exp: Experiment, n: int = 8, dtype: str | None = None
) -> GradientCheck:
    """check_grads of the first run's initial params on the first ≤ n examples.

    The params are read through the trainer's public accessor (any strategy and
    device count). In ``dtype``; by default float64 where 64-bit mode is on
    (else float32). Finite differences cover every entry of networks up to
    ``FULL_CHECK_PARAMS`` parameters, else ``SAMPLED_ENTRIES`` per array.
    """
    if dtype is None:
        dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    trainer = exp.trainer
    first = (0,) * len(trainer.shape)
    params = jax.tree.map(
        lambda l: jnp.asarray(l[first], dtype), trainer.runs(trainer.init()).params
    )
    x, y = exp.data.x[:n].astype(dtype), exp.data.y[:n]
    if y.dtype.kind == "f":
        y = y.astype(dtype)
    n_params = sum(l.size for l in jax.tree.leaves(params))
    entries = None if n_params <= FULL_CHECK_PARAMS else SAMPLED_ENTRIES
    report = check_grads(exp.net, params, x, y, numeric_entries=entries)
    return GradientCheck(report, int(x.shape[0]), entries)


def write_gradient_check(
    out: Path, exp: Experiment, check: GradientCheck | None = None
) -> GradientCheck:
    """``gradcheck.txt`` and ``gradcheck.png`` of :func:`gradient_check` (or of
    ``check``, if already made)."""
    from . import plots

    check = check or gradient_check(exp)
    text = f"{check.describe()}\n\n{check.report}\n"
    atomic_write(out / "gradcheck.txt", lambda f: f.write(text.encode()))
    plots.gradcheck(out / "gradcheck.png", check.report)
    return check
