"""Comparing runs: one table and one figure for the rules of a study, or for
run folders trained apart (``jaxprop compare DIR DIR ...``).

The table has a row per run and learning rate: the headline metric (held-out
accuracy where there is held-out data) as a mean with its 95% confidence
interval over the runs that finished, the fraction of runs that diverged, and
the difference to the first run (the reference) with its 95% interval. The
difference is *paired* (seed by seed) when both were trained on the same seeds
and the same data, as config.json records them, and unpaired (Welch's
interval) otherwise; the table says which, and why not paired.

The figure shows, for each run at its best learning rate, the held-out
accuracy (else the loss) against the step and, one panel per layer, the angle
between the rule's weight update and backprop's gradient: median and
inter-quartile band across seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.stats

from .._io import atomic_write, npz_array, open_npz
from .._metrics import summarize
from .build import Experiment
from .config import ExperimentConfig
from .results import curves_of, summary_of
from .store import (
    STUDY_FILE,
    data_fingerprint,
    is_study,
    read_config,
    read_doc,
    read_study,
    write_json,
)

#: The settings that decide which examples a run trains and is scored on.
_DATA_SETTINGS = ("data", "eval_data", "n_train", "n_test", "classes", "data_seed")


class Compared(NamedTuple):
    """One run of a comparison (a study's rule or a folder).

    Attributes:
      label: its name in the table and the figure.
      config: its settings.
      data_sha256: the fingerprint of its data (config.json's), or None.
      headline: its headline metric (``eval_accuracy`` ...).
      curves: curves.npz's arrays (``results.curves_of``).
    """

    label: str
    config: ExperimentConfig
    data_sha256: str | None
    headline: str
    curves: Mapping[str, np.ndarray]


def compared_of(label: str, exp: Experiment, results) -> Compared:
    """A run just trained as a :class:`Compared`; ``results``: its
    ``results_doc``."""
    doc, result, metrics = results
    curves = curves_of(exp, result, metrics)
    return Compared(label, exp.config, data_fingerprint(exp.data), doc["headline"],
                    curves)  # fmt: skip


def read_compared(path: Path, label: str) -> Compared:
    """A finished run folder as a :class:`Compared`.

    Raises:
      ValueError: not a finished run's folder.
    """
    doc = read_doc(path, "DIR")
    config = read_config(path)
    for name in ("curves.npz", "metrics.json"):
        if not (path / name).is_file():
            raise ValueError(
                f"{str(path)!r} has no {name}: the run did not finish "
                f"(jaxprop train --resume {path} finishes it)."
            )
    with open_npz(path / "curves.npz") as f:
        curves = {k: npz_array(f, k, path / "curves.npz") for k in f.files}
    headline = json.loads((path / "metrics.json").read_text())["headline"]
    sha = (doc.get("resolved") or {}).get("data_sha256")
    return Compared(label, config, sha, headline, curves)


def read_folders(paths: Sequence[str | Path]) -> list[Compared]:
    """The runs of ``paths`` in order: a study's folder gives its rules, labelled
    by rule; a run's folder is labelled by its name (with its parent's where
    two names clash).

    Raises:
      ValueError: a path that is neither a finished run nor a study.
    """
    found: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if is_study(p):
            found += [(p / r, r) for r in read_study(p, "DIR")["rules"]]
        elif (p / "config.json").is_file():
            found.append((p, p.resolve().name))
        else:
            raise ValueError(
                f"{str(p)!r} is not a run's folder (no config.json) nor "
                f"a study's (no {STUDY_FILE})."
            )
    labels = [label for _, label in found]
    runs = []
    for path, label in found:
        if labels.count(label) > 1:
            label = f"{path.resolve().parent.name}/{path.resolve().name}"
        runs.append(read_compared(path, label))
    if len({r.label for r in runs}) < len(runs):
        raise ValueError("the same run is given twice.")
    return runs


def pairing(run: Compared, reference: Compared) -> str | None:
    """None when ``run`` and ``reference`` can be compared seed by seed (the
    same seeds, the same data); else why not, in words."""
    a, b = run.config, reference.config
    if (a.seed, a.seeds) != (b.seed, b.seeds):
        return f"seeds differ ({_seeds(a)} against {_seeds(b)})"
    differ = [k for k in _DATA_SETTINGS if getattr(a, k) != getattr(b, k)]
    if differ:
        return f"data differ ({', '.join(differ)})"
    if run.data_sha256 and reference.data_sha256:
        if run.data_sha256 != reference.data_sha256:
            return "data differ (their SHA-256 in config.json)"
    return None


def _seeds(config: ExperimentConfig) -> str:
    return f"seed {config.seed}, {config.seeds} seed{'s' * (config.seeds > 1)}"


def _lr_index(lrs: Sequence[float], lr: float) -> int | None:
    keys = [f"{x:g}" for x in lrs]
    return keys.index(f"{lr:g}") if f"{lr:g}" in keys else None


def best_lr(run: Compared) -> int:
    """The index of the learning rate with the best median headline metric."""
    values = run.curves[run.headline]
    if values.ndim == 3:  # held-out curves: the final evaluation
        values = values[..., -1]
    sign = 1 if "accuracy" in run.headline else -1
    scores = []
    for v in values:
        finite = v[np.isfinite(v)]
        scores.append(sign * np.median(finite) if finite.size else -math.inf)
    return int(np.argmax(scores))


def _final(run: Compared, i: int) -> np.ndarray:
    """The headline metric of learning rate i's runs, (n_seeds,), NaN where
    diverged."""
    v = np.asarray(run.curves[run.headline][i], np.float64)
    if v.ndim == 2:  # held-out curves (n_seeds, n_eval): the final evaluation
        v = v[:, -1]
    return np.where(np.asarray(run.curves["diverged"][i]), np.nan, v)


def difference(values, reference, paired: bool) -> dict[str, Any]:
    """Mean of values − reference with its 95% interval: seed by seed when
    ``paired`` (runs where either diverged left out), else Welch's interval of
    the difference of the means. (n_seeds,) arrays, NaN where diverged."""
    values, reference = np.asarray(values), np.asarray(reference)
    if paired:
        s = summarize(values - reference)
        return {"mean": s.mean, "ci95_low": s.ci_low, "ci95_high": s.ci_high,
                "n": s.n, "paired": True}  # fmt: skip
    a, b = values[np.isfinite(values)], reference[np.isfinite(reference)]
    mean = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    low = high = math.nan
    if a.size > 1 and b.size > 1 and (a.std() > 0 or b.std() > 0):
        ci = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        low, high = float(ci.low), float(ci.high)
    return {"mean": mean, "ci95_low": low, "ci95_high": high,
            "n": [int(a.size), int(b.size)], "paired": False}  # fmt: skip


def comparison(runs: Sequence[Compared]) -> dict[str, Any]:
    """The comparison table's document (comparison.json): one row per run and
    learning rate, each run's difference to the first.

    Raises:
      ValueError: fewer than two runs, or runs with other headline metrics.
    """
    if len(runs) < 2:
        raise ValueError("give two or more runs (or a study of rules).")
    reference = runs[0]
    metric = reference.headline
    for run in runs[1:]:
        if run.headline != metric:
            raise ValueError(
                f"{run.label} reports {run.headline} and "
                f"{reference.label} {metric}: they cannot be compared (one has "
                f"held-out data, or one classifies and the other does not)."
            )
    rows, pairings = [], {}
    ref_best = best_lr(reference)
    for run in runs:
        why = None if run is reference else pairing(run, reference)
        pairings[run.label] = (
            f"paired seed by seed ({_seeds(run.config)}, the same data)"
            if why is None
            else f"unpaired: {why}"
        )
        for i, lr in enumerate(run.config.lr):
            values = _final(run, i)
            diverged = np.asarray(run.curves["diverged"][i])
            row = {"label": run.label, "lr": float(lr), "runs": int(values.size),
                   "diverged": int(diverged.sum()),
                   "diverged_fraction": float(diverged.mean()),
                   **summary_of(values, metric)}  # fmt: skip
            if run is not reference:
                j = _lr_index(reference.config.lr, lr)
                j = ref_best if j is None else j
                row["difference"] = difference(
                    values, _final(reference, j), paired=why is None
                ) | {"reference_lr": float(reference.config.lr[j])}
            rows.append(row)
    return {"metric": metric, "reference": reference.label, "pairing": pairings,
            "rows": rows}  # fmt: skip


def _num(x, digits=3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _interval(mean, low, high, signed=False) -> str:
    sign = "+" if signed else ""
    if mean is None or not math.isfinite(mean):
        return "–"
    if low is None or not math.isfinite(low):
        return f"{mean:{sign}.3f}"
    return f"{mean:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def format_table(doc: Mapping[str, Any]) -> str:
    """The comparison as a Markdown table, with a line on how each run was paired."""
    metric = doc["metric"].replace("_", " ")
    ref = doc["reference"]
    lines = [
        f"| run | lr | {metric}: mean [95% CI] | n | diverged | "
        f"− {ref}: mean [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        d = r.get("difference")
        diff = "(reference)"
        if d is not None:
            diff = _interval(d["mean"], d["ci95_low"], d["ci95_high"], signed=True)
            diff += " paired" if d["paired"] else " unpaired"
            if r["lr"] != d["reference_lr"]:
                diff += f" (vs lr {d['reference_lr']:g})"
        lines.append(
            f"| {r['label']} | {r['lr']:g} | "
            f"{_interval(r['mean'], r['ci95_low'], r['ci95_high'])} | {r['n']} | "
            f"{r['diverged']}/{r['runs']} ({r['diverged_fraction']:.0%}) | {diff} |"
        )
    lines.append("")
    for label, how in doc["pairing"].items():
        if label != ref:
            lines.append(f"- {label} against {ref}: {how}")
    return "\n".join(lines) + "\n"


def figure_series(run: Compared) -> dict[str, Any]:
    """What the figure draws of ``run``, at its best learning rate: the curve
    (held-out accuracy, else held-out loss, else training loss) with the
    training losses that tell where a seed diverged, and the per-layer angles
    to backprop (None for backprop and autodiff)."""
    i = best_lr(run)
    c = run.curves
    for key, name in (("eval_accuracy", "held-out accuracy"),
                      ("eval_loss", "held-out loss")):  # fmt: skip
        if key in c and c[key].ndim == 3:
            x, y, ylabel = c["eval_steps"], c[key][i], name
            break
    else:
        x, y, ylabel = c["steps"], c["losses"][i], "training loss"
    angles = c.get("alignment_grad")
    return {
        "label": f"{run.label} (lr {run.config.lr[i]:g})",
        "x": np.asarray(x), "y": np.asarray(y, float), "ylabel": ylabel,
        "steps": np.asarray(c["steps"]), "losses": np.asarray(c["losses"][i], float),
        "angle_steps": c.get("alignment_steps"),
        "angles": None if angles is None else np.asarray(angles[i], float),
    }  # fmt: skip


def write_comparison(out: Path, runs: Sequence[Compared]) -> dict[str, Any]:
    """comparison.json, comparison.md and comparison.png in ``out``; returns the
    table's document."""
    from . import plots

    doc = comparison(runs)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "comparison.json", doc)
    text = format_table(doc)
    atomic_write(out / "comparison.md", lambda f: f.write(text.encode()))
    plots.comparison(out / "comparison.png", [figure_series(r) for r in runs])
    return doc
