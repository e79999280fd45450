"""Costs c(ŷ, y) per example, with their output error δ^L written by hand.

A cost is evaluated from the output layer's pre-activation ``z`` (logits) and
activation ``a = ŷ``, which lets binary and softmax cross-entropy use their stable
forms: softplus and log-sum-exp for the value, and the fused output error
δ^L = ŷ − y instead of the product ∂c/∂a ⊙ σ'(z), which underflows to 0/0 when
the output saturates.

Targets reach a cost as float rows of shape ``(batch, n_out)``, or as integer
class labels ``(batch,)`` for softmax cross-entropy. Every array may carry
trailing run axes, ``(batch, n_out, *runs)`` and ``(batch, *runs)``, where
many training runs are computed at once with the runs last (see
``jaxprop._mlp.value_and_backprop_over_runs``): the features are always axis 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._activations import Activation

Array = jax.Array


class Cost(NamedTuple):
    """A per-example cost and its output error, computed together.

    Attributes:
      name: the name used in ``MLP(cost=...)``.
      value_and_delta: ``(z, a, y, σ) -> (c, δ)`` with z, a: (batch, n_out), y:
        (batch, n_out) targets or, for ``softmax_cross_entropy``, (batch,)
        integer labels; c: (batch,) per-example costs and δ = ∂c/∂z: (batch,
        n_out), the output error δ^L of each example (before the batch
        reduction). Evaluating only c lets XLA drop δ. Trailing run axes, if
        any, broadcast: z: (batch, n_out, *runs) gives c: (batch, *runs).
      output_activations: the output activations this cost is defined for, or
        ``None`` for any.
    """

    name: str
    value_and_delta: Callable[[Array, Array, Array, Activation], tuple[Array, Array]]
    output_activations: tuple[str, ...] | None


def _mse(z: Array, a: Array, y: Array, sigma: Activation) -> tuple[Array, Array]:
    # c = ½‖ŷ − y‖²; δ^L = ∂c/∂a ⊙ σ'(z^L) with ∂c/∂a = ŷ − y.
    r = a - y
    return 0.5 * jnp.sum(r * r, axis=1), r * sigma.derivative(z, a)


def _bce(z: Array, a: Array, y: Array, sigma: Activation) -> tuple[Array, Array]:
    # c = −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y z, finite for
    # every z; δ = ∂c/∂z = σ(z) − y = ŷ − y. Both come from one e = exp(−|z|):
    #   softplus(z) = max(z, 0) + log1p(e),   σ(z) = 1/(1 + e) if z ≥ 0 else e/(1 + e),
    # which lets XLA fuse δ with the value instead of keeping the forward's a^L.
    # max(z, 0) and −|z| are written as selects on the same branch (z ≥ 0), so
    # that jax.grad of the value is right at z = 0 too (max and abs alone give
    # wrong one-sided derivatives there: ∂c/∂z would be −y instead of ½ − y).
    del a, sigma
    nonnegative = z >= 0
    e = jnp.exp(jnp.where(nonnegative, -z, z))
    softplus = jnp.where(nonnegative, z, 0) + jnp.log1p(e)
    sigmoid = jnp.where(nonnegative, 1, e) / (1 + e)
    return jnp.sum(softplus - y * z, axis=1), sigmoid - y


def _softmax_ce(z: Array, a: Array, y: Array, sigma: Activation) -> tuple[Array, Array]:
    # With p = softmax(z) = exp(z − logsumexp(z)), computed once for both:
    #   labels k:  c = logsumexp(z) − z_k,                δ = p − onehot(k)
    #   rows y:    c = logsumexp(z) Σ_k y_k − Σ_k y_k z_k,  δ = p Σ_k y_k − y
    # One exp per logit: p = e / Σe with e = exp(z − max z), and logsumexp(z) =
    # max z + log Σe (exp(z − lse) would take a second exp of every logit).
    del a, sigma
    m = jnp.max(z, axis=1, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0))
    e = jnp.exp(z - m)
    total = jnp.sum(e, axis=1, keepdims=True)
    lse = (m + jnp.log(total))[:, 0]
    p = e / total
    if jnp.issubdtype(y.dtype, jnp.integer):
        # z_k and p − onehot(k) as selects on the label: a materialized float
        # one-hot made the batch-4096 steps of narrow nets 9–27% slower than
        # autodiff's scatter.
        hit = jax.lax.broadcasted_iota(y.dtype, z.shape, 1) == y[:, None]
        z_label = jnp.sum(jnp.where(hit, z, 0), axis=1)
        return lse - z_label, jnp.where(hit, p - 1, p)
    mass = jnp.sum(y, axis=1)
    return lse * mass - jnp.sum(y * z, axis=1), p * mass[:, None] - y


COSTS: dict[str, Cost] = {
    c.name: c
    for c in (
        Cost("mse", _mse, None),
        Cost("binary_cross_entropy", _bce, ("sigmoid",)),
        Cost("softmax_cross_entropy", _softmax_ce, ("identity",)),
    )
}

#: How per-example costs are reduced over the batch.
REDUCTIONS = ("sum", "mean")


def get_cost(name: str) -> Cost:
    """Looks up a cost by name.

    Raises:
      TypeError: if ``name`` is not a string.
      ValueError: if ``name`` is unknown; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"cost must be a string, one of {sorted(COSTS)}; got {type(name).__name__}."
        )
    try:
        return COSTS[name]
    except KeyError:
        raise ValueError(
            f"Unknown cost {name!r}; expected one of {sorted(COSTS)}."
        ) from None
