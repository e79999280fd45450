"""Task metrics and summaries of a metric across seeds."""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
      params: its parameters (or stacked params under ``jax.vmap``).
      x: (batch, n_in); y: targets as for ``net.loss``.
    """
    x, y = net._check_xy(params, x, y)
    return accuracy_from_output(net, net.forward(params, x), y)
