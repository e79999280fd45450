"""Task metrics, and summaries of a metric across seeds."""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from ._core.activations import describe
from ._network import check_xy

Array = jax.Array


def classification_threshold(net) -> float:
    """The threshold at which ``accuracy`` and ``solved`` read off a class.

    For a cost that classifies by threshold (``Cost.classify``; every built-in
    but ``softmax_cross_entropy``) an output counts as class 1 when it is above
    the threshold, and so does a target. The threshold is the midpoint of the
    cost's two class targets (``jp.Cost.class_values``): 0 for ±1 targets
    (``hinge``), 0.5 for 0/1 targets (``binary_cross_entropy``), and for
    real-valued targets (``mse``) the midpoint of the output activation's range
    where it is bounded (sigmoid: 0.5; tanh: 0.0, for ±1 targets), else 0.5
    (0/1 targets, e.g. an identity output). Pass ``threshold=`` to ``accuracy``
    or ``solved`` for other targets.

    Args:
      net: the network (a ``jp.MLP``).

    Returns:
      The threshold, a Python float.

    Raises:
      ValueError: if the net's cost classifies by argmax (softmax
        cross-entropy), with no threshold.
    """
    if net.cost_fn.classify == "argmax":
        raise ValueError(
            f"net: cost={describe(net.cost)} classifies by the argmax of the "
            "outputs; it has no threshold."
        )
    return net.cost_fn.threshold(net.output_activation)


def _check_threshold(net, threshold) -> float:
    """``threshold`` as a finite float, or the net's default when it is None."""
    if threshold is None:
        return classification_threshold(net)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(
            f"threshold must be a real number or None; got {type(threshold).__name__}."
        )
    if net.cost_fn.classify == "argmax":
        raise ValueError(
            f"threshold: net has cost={describe(net.cost)}, which classifies by "
            "argmax; leave threshold=None."
        )
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite; got {threshold}.")
    return threshold


def accuracy_from_output(net, y_hat: Array, y: Array, threshold=None) -> Array:
    """Fraction of examples classified correctly, from outputs ŷ.

    With a cost that classifies by argmax (softmax cross-entropy): argmax ŷ
    equals the label (or the argmax of the target row). Otherwise every output
    lies on the same side of the threshold as its target (output > threshold
    exactly when target > threshold); the threshold is
    ``classification_threshold(net)`` (sigmoid: 0.5, tanh: 0.0, hinge: 0.0, any
    other output: 0.5) unless given.

    Args:
      net: the network.
      y_hat: (batch, n_out) outputs, e.g. ``net.forward(params, x)``.
      y: (batch,) integer labels (argmax costs that accept them) or (batch,
        n_out) targets.
      threshold: a real number overriding the default threshold; None for the
        default. Not allowed with an argmax cost.

    Returns:
      () float fraction of examples classified correctly.

    Raises:
      TypeError: ``threshold`` is not a real number.
      ValueError: ``threshold`` is not finite, or given with an argmax cost.
    """
    if net.cost_fn.classify == "argmax":
        if threshold is not None:
            _check_threshold(net, threshold)  # raises
        return jnp.mean(net.cost_fn.correct(y_hat, y, None))
    return jnp.mean(net.cost_fn.correct(y_hat, y, _check_threshold(net, threshold)))


def accuracy(net, params, x, y, *, threshold=None) -> Array:
    """Classification accuracy of ``net`` on (x, y); see ``accuracy_from_output``.

    Works under ``jax.jit`` and on stacked params under ``jax.vmap``.

    Args:
      net: the network.
      params: its parameters.
      x: (batch, n_in) inputs.
      y: targets as for ``net.loss``: (batch, n_out), or (batch,) labels with
        ``softmax_cross_entropy``.
      threshold: overrides ``classification_threshold(net)`` (not with an
        argmax cost).

    Returns:
      () fraction of examples classified correctly.
    """
    t = None if threshold is None else _check_threshold(net, threshold)
    x, y = check_xy(net, params, x, y)
    return accuracy_from_output(net, net.forward(params, x), y, t)


def solved(net, params, x, y, *, threshold=None) -> Array:
    """Whether every example is classified correctly (XOR "solved"): () bool.

    Classes are read off as in ``accuracy`` (argmax for softmax, else the side of
    ``classification_threshold(net)`` or of ``threshold``). Works on stacked
    params under ``jax.vmap``: ``jax.vmap(lambda p: jp.solved(net, p, x,
    y))(result.params)``.

    Args:
      net, params, x, y: as for ``accuracy``.
      threshold: overrides ``classification_threshold(net)`` (not with an
        argmax cost).

    Returns:
      () bool, True when the accuracy is 1.
    """
    return accuracy(net, params, x, y, threshold=threshold) == 1


class Summary(NamedTuple):
    """A metric across runs; NaN and ±inf values (diverged runs) are left out.

    When no value is finite, ``n`` is 0 and every statistic is NaN.

    Attributes:
      n: runs with a finite value.
      n_nan: runs left out: NaN or ±inf values.
      mean, std (ddof=1), median, min, max: of the finite values.
      ci_low, ci_high: confidence interval of the mean (Student t); NaN when
        n < 2.
      q05, q25, q75, q95: quantiles.
      confidence: the interval's level.
    """

    n: int
    n_nan: int
    mean: float
    std: float
    median: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    q05: float
    q25: float
    q75: float
    q95: float
    confidence: float

    def __str__(self) -> str:
        if self.n == 0:
            return f"no finite value ({self.n_nan} NaN left out)"
        pct = round(100 * self.confidence)
        return (
            f"mean {self.mean:.4g} ({pct}% CI {self.ci_low:.4g} to "
            f"{self.ci_high:.4g}), median {self.median:.4g}, std {self.std:.3g}, "
            f"range {self.min:.4g} to {self.max:.4g}, n={self.n}"
            + (f" ({self.n_nan} NaN left out)" if self.n_nan else "")
        )


def summarize(values, confidence: float = 0.95) -> Summary:
    """Summarizes one value per run, leaving out NaN and ±inf values.

    A diverged run's metric is NaN (or ±inf): it is left out of every statistic
    and counted in ``n_nan``. If no value is finite the Summary says so (n = 0,
    every statistic NaN, ``str()`` "no finite value (k NaN left out)") rather
    than raising. No NumPy warning is emitted.

    Args:
      values: (n_runs,) one value per run; other shapes are flattened.
      confidence: the level of the mean's confidence interval, in (0, 1).

    Returns:
      A :class:`Summary`.

    Raises:
      ValueError: ``confidence`` outside (0, 1), or ``values`` empty.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}.")
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        raise ValueError("values: no runs (empty).")
    finite = v[np.isfinite(v)]
    n = finite.size
    if n == 0:
        nan = math.nan  # mean, std, median, min, max, CI and quantiles
        return Summary(0, int(v.size), *(nan,) * 11, confidence)
    with np.errstate(all="ignore"):  # overflow of huge finite values: inf, quietly
        mean = float(finite.mean())
        std = float(finite.std(ddof=1)) if n > 1 else math.nan
        half = (
            float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
            if n > 1
            else math.nan
        )
        q = np.quantile(finite, [0.05, 0.25, 0.5, 0.75, 0.95])
    return Summary(
        n,
        int(v.size - n),
        mean,
        std,
        float(q[2]),
        float(finite.min()),
        float(finite.max()),
        mean - half,
        mean + half,
        float(q[0]),
        float(q[1]),
        float(q[3]),
        float(q[4]),
        confidence,
    )


class Proportion(NamedTuple):
    """A fraction of runs with a Wilson score confidence interval."""

    successes: int
    n: int
    fraction: float
    ci_low: float
    ci_high: float
    confidence: float

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return (
            f"{self.fraction:.1%} ({self.successes}/{self.n}; {pct}% CI "
            f"{self.ci_low:.1%} to {self.ci_high:.1%})"
        )


def proportion(flags, confidence: float = 0.95) -> Proportion:
    """The fraction of true ``flags`` (one per run) with a Wilson interval.

    The Wilson interval keeps its coverage near 0 and 1, where the normal
    approximation p ± z√(p(1−p)/n) collapses to a point.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}.")
    f = np.asarray(flags).ravel()
    if f.size == 0:
        raise ValueError("flags: no runs.")
    numeric = np.issubdtype(f.dtype, np.number)
    if f.dtype != bool and not (numeric and np.isin(f, (0, 1)).all()):
        got = f"values from {f.min()} to {f.max()}" if numeric else "values"
        raise ValueError(
            f"flags must be booleans (or 0/1), one per run, e.g. "
            f"result_accuracy >= 0.99; got {f.dtype} {got}."
        )
    k, n = int(np.count_nonzero(f)), f.size
    z = float(scipy.stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Proportion(
        k, n, p, max(0.0, center - half), min(1.0, center + half), confidence
    )
