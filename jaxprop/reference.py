"""The reference document's XOR example: its network, initial values and training.

Sigmoid 2-2-1 network, initial values drawn with NumPy after seed 42 in the
reference's order (W_hidden, W_out, b_hidden, b_out), L = ½ Σ (y − ŷ)² summed over
the batch, plain gradient descent with η = 0.1 for 10000 epochs, the gradient from
the hand-written δ backward pass, the whole loop one jit-compiled ``lax.scan``.
The reference prints [[0.06029012] [0.94447222] [0.944367] [0.05997169]]
(:data:`REFERENCE_OUTPUT`). ``jaxprop xor`` runs it and prints the comparison
and the gradient-check table; float64 needs ``jax_enable_x64``, which the
command sets (library code leaves JAX's configuration to its caller).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._core.params import DenseParams, Params
from ._network import MLP

#: What the reference program prints after 10000 epochs with seed 42.
REFERENCE_OUTPUT = np.array([[0.06029012], [0.94447222], [0.944367], [0.05997169]])

NET = MLP(
    sizes=(2, 2, 1),
    activation="sigmoid",
    output_activation="sigmoid",
    cost="mse",
    reduction="sum",
)


def initial_weights(seed: int = 42):
    """The reference's initial values, drawn in its order with ``np.random.rand``.

    Returns:
      ``(w_hidden (2, 2), w_out (2, 1), b_hidden (1, 2), b_out (1, 1))``.
    """
    rng = np.random.RandomState(seed)  # the same stream as np.random.seed(seed)
    return rng.rand(2, 2), rng.rand(2, 1), rng.rand(1, 2), rng.rand(1, 1)


def reference_params(seed: int = 42, dtype=jnp.float64) -> Params:
    """The reference program's initial values as jaxprop params."""
    w_hidden, w_out, b_hidden, b_out = initial_weights(seed)
    return (
        DenseParams(jnp.asarray(w_hidden, dtype), jnp.asarray(b_hidden[0], dtype)),
        DenseParams(jnp.asarray(w_out, dtype), jnp.asarray(b_out[0], dtype)),
    )


@functools.partial(jax.jit, static_argnames=("epochs",))
def train(params: Params, x: jax.Array, y: jax.Array, eta: float, epochs: int):
    """Full-batch gradient descent on NET with manual gradients.

    Args:
      params: initial parameters.
      x: (4, 2) inputs; y: (4, 1) targets.
      eta: learning rate η.
      epochs: number of updates.

    Returns:
      ``(params, y_hat, losses)``: final params, the last epoch's forward-pass
      output (4, 1) (taken before that epoch's update, as the reference prints
      it) and the loss of every epoch (epochs,).
    """

    def epoch(params, _):
        y_hat, cache = NET.forward_with_cache(params, x)
        grads = NET.backward(params, cache, y)
        params = jax.tree.map(lambda p, g: p - eta * g, params, grads)
        loss = NET.loss_from_cache(cache, y)
        return params, (y_hat, loss)

    params, (y_hats, losses) = jax.lax.scan(epoch, params, length=epochs)
    return params, y_hats[-1], losses
