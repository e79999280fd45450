r"""The curvature checks of :func:`jp.check_cost`: a cost's Hessian square root
against ``jax.hessian``, and its target sampler, statistically.

- **hessian**: S S\ᵀ from ``hessian_sqrt(z, a, y, σ)``: (batch, n_out, k) against
  ``jax.hessian`` of one example's c in u (u = z for ``ggn_at="logits"``, with
  a = σ(z) recomputed; u = a for ``"output"``, z held), over the same classes of
  z as the δ check, with its tolerance: |hand − ref| ≤ rtol (|ref| + scale).
- **sampler**: for M = ``SAMPLES`` target draws y_s of ``sample_targets`` at
  fixed logits, the output errors δ_s = ∂c(y_s)/∂z from ``value_and_delta``
  must have mean 0 (the score's) and E[δ δᵀ] = J_σᵀ H J_σ (the GGN's middle
  factor in z, H from ``jax.hessian``, not from S: the two rows fail apart; J_σ
  = diag σ'(z) for ``"output"``, I for ``"logits"``). An entry passes when its
  sample mean is within ``SIGMAS`` standard errors (of the M draws) of the
  reference: a sampler whose variance is 10% off fails.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._core.activations import Activation
from .._core.costs import Cost
from .functions import (
    FunctionCheckRow,
    _compare,
    _error_row,
    _fmt,
    _scale,
    _targets,
)

#: Target draws of the sampler check, and its tolerance in standard errors.
SAMPLES = 50_000
SIGMAS = 5.0
_BATCH = 6  # examples of the sampler check


def curvature_rows(
    cost: Cost, sigma: Activation, kind: str, label: str, cases, n_out: int, rng, rtol
) -> list[FunctionCheckRow]:
    """The hessian row (a cost with ``hessian_sqrt``) and the sampler row (with
    ``sample_targets``) for one output activation and target kind."""
    rows = []
    if cost.hessian_sqrt is not None:
        z = np.concatenate(list(cases.values()))
        y = _targets(kind, rng, z.shape[0], n_out)
        try:
            rows.append(_hessian_row(cost, sigma, label, z, y, rtol))
        except Exception as e:  # a user's function: report whatever it raised
            rows.append(_error_row("hessian", f"{label}: S Sᵀ", e))
    if cost.sample_targets is not None:
        z = rng.normal(size=(_BATCH, n_out))
        y = _targets(kind, rng, _BATCH, n_out)
        key = jax.random.key(int(rng.integers(2**31)))
        try:
            rows.append(_sampler_row(cost, sigma, label, z, y, key))
        except Exception as e:
            rows.append(_error_row("sampler", f"{label}: E[δ δᵀ]", e))
    return rows


def _hessians(cost: Cost, sigma: Activation, z, y):
    """∂²c_i/∂u_i² per example: (batch, n_out, n_out), by ``jax.hessian``."""

    def one(z_i, y_i):
        def c(u):
            if cost.ggn_at == "logits":
                z_, a_ = u[None], sigma.fn(u)[None]
            else:
                z_, a_ = z_i[None], u[None]
            return cost.value_and_delta(z_, a_, y_i[None], sigma)[0][0]

        return jax.hessian(c)(z_i if cost.ggn_at == "logits" else sigma.fn(z_i))

    return jax.vmap(one)(z, y)


def _hessian_row(cost: Cost, sigma: Activation, label, z, y, rtol) -> FunctionCheckRow:
    @jax.jit
    def evaluate(z, y):
        s = cost.hessian_sqrt(z, sigma.fn(z), y, sigma)
        if s.ndim != 3 or s.shape[:2] != z.shape:
            raise ValueError(
                f"hessian_sqrt returned S: {s.shape} for z: {z.shape}; it must be "
                f"(batch, n_out, k)"
            )
        return jnp.einsum("bik,bjk->bij", s, s), _hessians(cost, sigma, z, y)

    hand, ref = (np.asarray(v) for v in evaluate(jnp.asarray(z), jnp.asarray(y)))
    nonfinite = ~np.isfinite(hand).all(axis=(1, 2)) & np.isfinite(ref).all(axis=(1, 2))
    n_bad, ratio, i = _compare(hand.ravel(), ref.ravel(), rtol, _scale(ref))
    worst = ""
    if nonfinite.any() or n_bad:
        j = int(np.argmax(nonfinite)) if nonfinite.any() else i // hand[0].size
        worst = (
            f"z={_fmt(z[j])}, y={_fmt(y[j])}: S Sᵀ {_fmt(hand[j])}, "
            f"jax.hessian {_fmt(ref[j])}"
        )
    passed = not n_bad and not nonfinite.any()
    return FunctionCheckRow(
        "hessian",
        f"{label}: S Sᵀ in {'z' if cost.ggn_at == 'logits' else 'a'}",
        hand.size,
        n_bad,
        int(nonfinite.sum()),
        ratio,
        passed,
        worst,
    )


def _sampler_row(cost: Cost, sigma: Activation, label, z, y, key) -> FunctionCheckRow:
    z, y = jnp.asarray(z), jnp.asarray(y)

    @jax.jit
    def evaluate(key):
        a = sigma.fn(z)

        def delta(k):
            y_s = cost.sample_targets(k, z, a, y, sigma)
            if y_s.shape != y.shape or y_s.dtype != y.dtype:
                raise ValueError(
                    f"sample_targets returned {y_s.dtype}{list(y_s.shape)} for y: "
                    f"{y.dtype}{list(y.shape)}; it must match y"
                )
            return cost.value_and_delta(z, a, y_s, sigma)[1]

        d = jax.vmap(delta)(jax.random.split(key, SAMPLES))  # (M, batch, n_out)
        outer = d[..., :, None] * d[..., None, :]
        j = sigma.derivative(z, a) if cost.ggn_at == "output" else jnp.ones_like(z)
        ref = j[:, :, None] * _hessians(cost, sigma, z, y) * j[:, None, :]
        return (
            (jnp.mean(d, 0), jnp.std(d, 0), jnp.zeros_like(z)),
            (jnp.mean(outer, 0), jnp.std(outer, 0), ref),
        )

    n, n_bad, nonfinite = 0, 0, 0
    worst, worst_ratio = "", 0.0
    for what, (mean, std, ref) in zip(("E[δ]", "E[δ δᵀ]"), evaluate(key), strict=True):
        mean, std, ref = np.asarray(mean), np.asarray(std), np.asarray(ref)
        tol = SIGMAS * std / np.sqrt(SAMPLES) + 1e-12 * (1 + np.abs(ref).max())
        ratio = np.abs(mean - ref) / tol
        ratio = np.where(np.isfinite(ratio), ratio, np.inf)
        n, n_bad = n + ratio.size, n_bad + int((ratio > 1).sum())
        nonfinite += int((~np.isfinite(mean)).sum())
        if ratio.max() > worst_ratio:
            k = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
            worst_ratio = float(ratio.max())
            worst = (
                f"example {k[0]}, z={_fmt(z[k[0]])}: {what}{list(k[1:])} "
                f"{_fmt(mean[k])} over {SAMPLES} draws, expected {_fmt(ref[k])}"
            )
    passed = n_bad == 0 and nonfinite == 0
    return FunctionCheckRow(
        "sampler",
        f"{label}: E[δ], E[δ δᵀ] at sampled targets",
        n,
        n_bad,
        nonfinite,
        worst_ratio,
        passed,
        "" if passed else worst + f" (tolerance {SIGMAS:g} standard errors)",
    )
