"""Costs c(ŷ, y) per example, with their output error δ^L written by hand.

A cost is evaluated from the output layer's pre-activation ``z`` (logits) and
activation ``a = ŷ``, which lets binary and softmax cross-entropy use their stable
forms: softplus and log-sum-exp for the value, and the fused output error
δ^L = ŷ − y instead of the product ∂c/∂a ⊙ σ'(z), which underflows to 0/0 when
the output saturates.

Targets reach a cost as float rows of shape ``(batch, n_out)``: integer class
labels are turned into one-hot rows before (see ``jaxprop._mlp``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._activations import Activation

Array = jax.Array


class Cost(NamedTuple):
    """A per-example cost and its output error.

    Attributes:
      name: the name used in ``MLP(cost=...)``.
      value: ``(z, a, y) -> c``; ``z, a, y: (batch, n_out)``, ``c: (batch,)``.
      output_delta: ``(z, a, y, σ) -> ∂c/∂z: (batch, n_out)``, the output error
        δ^L of one example (before the batch reduction).
      output_activations: the output activations this cost is defined for, or
        ``None`` for any.
    """

    name: str
    value: Callable[[Array, Array, Array], Array]
    output_delta: Callable[[Array, Array, Array, Activation], Array]
    output_activations: tuple[str, ...] | None


def _mse_value(z: Array, a: Array, y: Array) -> Array:
    del z
    return 0.5 * jnp.sum((a - y) ** 2, axis=-1)


def _mse_delta(z: Array, a: Array, y: Array, sigma: Activation) -> Array:
    # δ^L = ∂c/∂a ⊙ σ'(z^L), with ∂c/∂a = ŷ − y.
    return (a - y) * sigma.derivative(z, a)


def _bce_value(z: Array, a: Array, y: Array) -> Array:
    # −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y z, finite for all z.
    del a
    return jnp.sum(jax.nn.softplus(z) - y * z, axis=-1)


def _bce_delta(z: Array, a: Array, y: Array, sigma: Activation) -> Array:
    # ∂/∂z [softplus(z) − y z] = σ(z) − y = ŷ − y.
    del z, sigma
    return a - y


def _softmax_ce_value(z: Array, a: Array, y: Array) -> Array:
    # −Σ_k y_k log softmax(z)_k = logsumexp(z) Σ_k y_k − Σ_k y_k z_k.
    del a
    return jax.nn.logsumexp(z, axis=-1) * jnp.sum(y, axis=-1) - jnp.sum(y * z, axis=-1)


def _softmax_ce_delta(z: Array, a: Array, y: Array, sigma: Activation) -> Array:
    # ∂c/∂z = softmax(z) Σ_k y_k − y, which is softmax(z) − y for probability rows.
    del a, sigma
    return jax.nn.softmax(z, axis=-1) * jnp.sum(y, axis=-1, keepdims=True) - y


COSTS: dict[str, Cost] = {
    c.name: c
    for c in (
        Cost("mse", _mse_value, _mse_delta, None),
        Cost("binary_cross_entropy", _bce_value, _bce_delta, ("sigmoid",)),
        Cost(
            "softmax_cross_entropy", _softmax_ce_value, _softmax_ce_delta, ("identity",)
        ),
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
