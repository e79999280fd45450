"""Activation functions σ with hand-written derivatives σ'.

Each activation is an :class:`Activation`: the forward map ``fn(z)`` and its
derivative ``derivative(z, a)``, which receives both the pre-activation ``z`` and
the saved activation ``a = fn(z)`` so that it can use the cheap forms
σ' = σ(1 − σ) for the sigmoid and σ' = 1 − tanh² for tanh without recomputing
anything. The backward pass (``jaxprop._mlp``) only ever calls ``derivative``; no
derivative here comes from autodiff.

At a kink (relu and leaky_relu at 0) the derivative takes the same one-sided value
as ``jax.grad`` of the ``jax.nn`` function, so manual and automatic gradients agree
everywhere, not just almost everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

#: Slope of leaky_relu for z < 0 (``jax.nn.leaky_relu``'s default).
LEAKY_RELU_SLOPE = 0.01


class Activation(NamedTuple):
    """An elementwise activation σ and its derivative σ'.

    Attributes:
      name: the name used in ``MLP(activation=...)``.
      fn: ``z -> a = σ(z)``, any shape.
      derivative: ``(z, a) -> σ'(z)``, same shape as ``z``; ``a`` is ``fn(z)``.
    """

    name: str
    fn: Callable[[Array], Array]
    derivative: Callable[[Array, Array], Array]


def _identity(z: Array) -> Array:
    return z


def _gelu(z: Array) -> Array:
    # The exact GELU, z Φ(z); jax.nn.gelu defaults to the tanh approximation.
    return jax.nn.gelu(z, approximate=False)


def _gelu_derivative(z: Array, a: Array) -> Array:
    del a
    phi = jnp.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)  # standard normal pdf
    big_phi = 0.5 * (1.0 + jax.lax.erf(z / math.sqrt(2.0)))  # standard normal cdf
    return big_phi + z * phi


def _silu_derivative(z: Array, a: Array) -> Array:
    del a
    s = jax.nn.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", _identity, lambda z, a: jnp.ones_like(z)),
        # jax.nn.sigmoid is lax.logistic: finite for every finite z.
        Activation("sigmoid", jax.nn.sigmoid, lambda z, a: a * (1.0 - a)),
        Activation("tanh", jnp.tanh, lambda z, a: 1.0 - a * a),
        Activation("relu", jax.nn.relu, lambda z, a: (z > 0).astype(z.dtype)),
        Activation(
            "leaky_relu",
            jax.nn.leaky_relu,
            lambda z, a: jnp.where(z >= 0, 1.0, LEAKY_RELU_SLOPE).astype(z.dtype),
        ),
        # elu(z) = expm1(z) for z ≤ 0, so σ'(z) = exp(z) = a + 1 there.
        Activation("elu", jax.nn.elu, lambda z, a: jnp.where(z > 0, 1.0, a + 1.0)),
        # softplus(z) = log(1 + e^z), computed as logaddexp(z, 0); σ' = sigmoid(z).
        Activation("softplus", jax.nn.softplus, lambda z, a: jax.nn.sigmoid(z)),
        Activation("silu", jax.nn.silu, _silu_derivative),
        Activation("gelu", _gelu, _gelu_derivative),
    )
}


def get_activation(name: str, argname: str = "activation") -> Activation:
    """Looks up an activation by name.

    Raises:
      TypeError: if ``name`` is not a string.
      ValueError: if ``name`` is unknown; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"{argname} must be a string, one of {sorted(ACTIVATIONS)}; "
            f"got {type(name).__name__}."
        )
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown {argname} {name!r}; expected one of {sorted(ACTIVATIONS)}."
        ) from None
