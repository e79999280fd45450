r"""Statistics of the per-example gradients from one δ pass: Σ_i g_i ⊙ g_i and
the variance, BackPACK's ``SumGradSquared`` and ``Variance``.

Convention (BackPACK's, Dangel, Kunstner & Hennig 2020): g_i is example i's
share of the loss's gradient, so that Σ_i g_i = ∂L/∂θ:

    g_i = ∂c_i/∂θ            for reduction="sum",
    g_i = (1/N) ∂c_i/∂θ      for reduction="mean" (batch N).

(``jp.per_example_grads`` returns the unscaled ∂c_i/∂θ whatever the
reduction: for "mean" divide it by N to get these g_i.)

For a Dense layer g_i = ((a^{l-1}_i)ᵀ δ^l_i, δ^l_i) is an outer product, so

    Σ_i g_i ⊙ g_i = ((a^{l-1} ⊙ a^{l-1})ᵀ (δ^l ⊙ δ^l), Σ_i δ^l_i ⊙ δ^l_i),

one more product of the same shapes as the gradient's: no per-example
gradient is formed. A convolution's g_i sums outer products over the output
positions, whose squares do not factor; its g_i are formed
(``layer.per_example_grads``, which XLA fuses with the squares and the sum).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .._core.curvature import sum_squared_grads
from .._core.params import Params
from ._common import checked, loss_deltas

Array = jax.Array


def moments(net, params, x: Array, y: Array) -> tuple[Params, Params]:
    """(Σ_i g_i, Σ_i g_i ⊙ g_i) from one δ pass, for checked arguments: the
    loss's gradient (backprop's) and :func:`sum_grad_squared` (traced)."""
    cache, _, deltas = loss_deltas(net, params, x, y)
    units = tuple(zip(net.blocks, cache.a, deltas, strict=False))
    grad = tuple(block.grads(a, d) for block, a, d in units)
    return grad, tuple(sum_squared_grads(block, a, d[None]) for block, a, d in units)


def variance(grad: Params, sgs: Params, n: int) -> Params:
    """BackPACK's Variance of n examples, sgs/n − (grad/n)², clipped at 0."""
    return jax.tree.map(lambda s, g: jnp.maximum(s / n - (g / n) ** 2, 0), sgs, grad)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _stats(what: str, net, params, x, y):
    """ "sum_grad_squared" or "variance" for checked arguments."""
    grad, sgs = moments(net, params, x, y)
    if what == "sum_grad_squared":
        return sgs
    return variance(grad, sgs, x.shape[0])


def sum_grad_squared(net, params: Params, x, y) -> Params:
    r"""Σ_i g_i ⊙ g_i over the batch: BackPACK's ``SumGradSquared``.

    g_i is example i's gradient with the reduction's scaling (the module's
    convention): ∂c_i/∂θ for ``reduction="sum"``, (1/N) ∂c_i/∂θ for
    ``"mean"``, so Σ_i g_i is ``net.backprop``. For Dense layers it costs one
    more product per layer, (a²)ᵀ (δ²), and forms no per-example gradient.

    Args:
      net: a ``jp.MLP`` or ``jp.Network``; params: its parameters.
      x: (batch, *input_shape); y: targets as for ``net.loss``.

    Returns:
      A pytree like ``params``: DenseParams(w: Σ_i g_i,w ⊙ g_i,w, b: ...).

    Raises:
      TypeError, ValueError: bad arguments, named, before anything compiles.
    """
    net, params, x, y = checked(net, params, x, y)
    return _stats("sum_grad_squared", net, params, x, y)


def grad_variance(net, params: Params, x, y) -> Params:
    r"""Per-parameter variance of the per-example gradients: BackPACK's ``Variance``.

    .. math:: \operatorname{Var} = \frac1N Σ_i g_i ⊙ g_i
              - \Bigl(\frac1N Σ_i g_i\Bigr)^{⊙ 2}

    the population variance (1/N, not 1/(N − 1)) of the vectors g_1..g_N,
    with g_i scaled as in :func:`sum_grad_squared`: for ``reduction="mean"``
    the variance of the (1/N) ∂c_i/∂θ, 1/N² times that of the ∂c_i/∂θ
    (BackPACK's documented scaling). Computed, as BackPACK does, from
    :func:`sum_grad_squared` and the gradient, so rounding can leave a tiny
    negative where the true variance is 0 (all g_i equal): such entries are
    clipped to 0.

    Args and errors: as :func:`sum_grad_squared`.

    Returns:
      A pytree like ``params``, entries ≥ 0.
    """
    net, params, x, y = checked(net, params, x, y)
    return _stats("variance", net, params, x, y)
