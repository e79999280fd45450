"""Task metrics, and summaries of a metric across seeds."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

Array = jax.Array


def accuracy_from_output(net, y_hat: Array, y: Array) -> Array:
    """Fraction of examples classified correctly, from outputs ŷ: (batch, n_out).

    With ``softmax_cross_entropy``: argmax ŷ equals the label (or the argmax of the
    target row). Otherwise (0/1 targets): every output lies on the same side of
    0.5 as its target.
    """
    if net.cost == "softmax_cross_entropy":
        labels = y if jnp.issubdtype(y.dtype, jnp.integer) else jnp.argmax(y, axis=-1)
        return jnp.mean(jnp.argmax(y_hat, axis=-1) == labels)
    return jnp.mean(jnp.all((y_hat > 0.5) == (y > 0.5), axis=-1))


def accuracy(net, params, x, y) -> Array:
    """Classification accuracy of ``net`` on (x, y); see ``accuracy_from_output``.

    Args:
      net: the network.
      params: its parameters.
      x: (batch, n_in); y: targets as for ``net.loss``.
    """
    x, y = net._check_xy(params, x, y)
    return accuracy_from_output(net, net.forward(params, x), y)


def solved(net, params, x, y) -> Array:
    """Whether every example is classified correctly (XOR "solved"): () bool.

    Works on stacked params under ``jax.vmap``: ``jax.vmap(lambda p:
    jp.solved(net, p, x, y))(result.params)``.
    """
    return accuracy(net, params, x, y) == 1


class Summary(NamedTuple):
    """A metric across runs; NaN values (diverged runs) are left out and counted.

    Attributes:
      n: runs with a finite value; n_nan: runs left out.
      mean, std (ddof=1), median, min, max.
      ci_low, ci_high: confidence interval of the mean (Student t).
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
        pct = round(100 * self.confidence)
        return (
            f"mean {self.mean:.4g} ({pct}% CI {self.ci_low:.4g} to "
            f"{self.ci_high:.4g}), median {self.median:.4g}, std {self.std:.3g}, "
            f"range {self.min:.4g} to {self.max:.4g}, n={self.n}"
            + (f" ({self.n_nan} NaN left out)" if self.n_nan else "")
        )


def summarize(values, confidence: float = 0.95) -> Summary:
    """Summarizes one value per run: (n_runs,) (other shapes are flattened)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}.")
    v = np.asarray(values, np.float64).ravel()
    finite = v[~np.isnan(v)]
    n = finite.size
    if n == 0:
        raise ValueError(f"values: no non-NaN value among {v.size}.")
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
    k, n = int(np.count_nonzero(f)), f.size
    z = float(scipy.stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Proportion(
        k, n, p, max(0.0, center - half), min(1.0, center + half), confidence
    )
