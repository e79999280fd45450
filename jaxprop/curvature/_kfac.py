r"""Kronecker factors of the GGN per Dense layer: K-FAC (Martens & Grosse 2015)
and KFLR (Botev et al. 2017), from the δ pass.

For a Dense layer with input a^{l-1}_i and θ^l = [W^l; b^l]: (n_in + 1, n_out),
the bias as the last row (ā_i = [a^{l-1}_i; 1], the column of ones), one
example's gradient of a δ column d is ā_i dᵀ. Vectorized row-major (C order:
entry (r, o) of [W; b] at r·n_out + o, as ``jnp.concatenate([w, b[None]]).ravel()``
flattens it), vec(ā dᵀ) = ā ⊗ d, so the GGN block of layer l is

.. math::
    G_{ll} = ρ Σ_i Σ_k (ā_i ⊗ d_{ik})(ā_i ⊗ d_{ik})ᵀ
           = ρ Σ_i ā_i ā_iᵀ ⊗ Σ_k d_{ik} d_{ik}ᵀ
           ≈ A ⊗ G,\qquad A = \frac1N Σ_i ā_i ā_iᵀ,\quad
             G = ρ Σ_i Σ_k d_{ik} d_{ik}ᵀ,

d_{ik} = δ^l of column k of D = J_σ S for example i (KFLR: the exact loss
Hessian) or of a sampled target's δ^L (K-FAC's Monte Carlo, averaged over the
samples). The approximation is the expectation of a product taken as the product
of expectations; at batch 1 it is exact: A ⊗ G is the GGN block.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._core.layers import Block, Dense, contract
from .._core.params import Params, check_key
from .._network import Net
from ._ggn import (
    check_samples,
    checked,
    column_deltas,
    dense_input,
    forward,
    reduction_scale,
    sampled_columns,
    split_columns,
)

Array = jax.Array


class KFactors(NamedTuple):
    """The Kronecker factors of one Dense layer's GGN block, A ⊗ G.

    Attributes:
      A: (n_in + 1, n_in + 1), (1/N) Σ_i ā_i ā_iᵀ with ā_i = [a^{l-1}_i; 1]
        (the bias as a last input of ones).
      G: (n_out, n_out), ρ Σ_i Σ_k d_{ik} d_{ik}ᵀ of the backpropagated
        columns (``jaxprop.curvature._kfac``).
    """

    A: Array
    G: Array


def _factors(layer, a: Array, deltas: Array, weight) -> KFactors:
    """A and G of one Dense layer; deltas: (m, batch, n_out)."""
    _, u = dense_input(layer, a)
    ones = jnp.ones((u.shape[0], 1), u.dtype)
    a_bar = jnp.concatenate([u, ones], axis=1)
    d = deltas.reshape(-1, deltas.shape[-1])
    return KFactors(
        A=contract(a_bar, a_bar, 0, 0) / u.shape[0], G=weight * contract(d, d, 0, 0)
    )


@functools.partial(jax.jit, static_argnums=(0, 5))
def _kfac(net: Net, params: Params, x, y, key, samples: int):
    cache = forward(net, params, x)
    weight = reduction_scale(net, x.shape[0])
    if key is None:
        columns = split_columns(net, cache, y)
    else:
        columns = sampled_columns(net, cache, y, key, samples)
        weight = weight / samples
    deltas = column_deltas(net, params, cache, columns)
    return tuple(
        _factors(layer, a, d, weight)
        for layer, a, d in zip(net.blocks, cache.a, deltas, strict=False)
    )


def kfac(net, params: Params, x, y, key=None, *, samples: int = 1):
    r"""The Kronecker factors (A, G) of every layer's GGN block.

    A ⊗ G approximates the GGN block of layer l's [W^l; b^l] vectorized
    row-major (``jaxprop.curvature._kfac``), exactly at batch 1. A =
    (1/N) Σ_i ā_i ā_iᵀ with ā = [a^{l-1}; 1]; G = ρ Σ_i Σ_k d_{ik} d_{ik}ᵀ
    (ρ = 1 for ``reduction="sum"``, 1/N for ``"mean"``) from the columns of
    the cost's Hessian root (``key=None``: KFLR, the exact loss Hessian) or
    from ``samples`` sampled targets (a key: K-FAC's Monte Carlo factors).

    Args:
      net, params, x, y: as for ``jp.curvature.diag_ggn``; every parametrized
        layer must be Dense (with maps such as Flatten before it, or none).
      key: None, or a PRNG key for the Monte Carlo G.
      samples: target draws per example with a key, ≥ 1.

    Returns:
      A tuple of one :class:`KFactors` (A: (n_in + 1, n_in + 1), G: (n_out,
      n_out)) per layer.

    Raises:
      ValueError: a conv (or other non-Dense) layer: K-FAC for convolutions
        (Grosse & Martens 2016's KFC) is not supported yet; a cost without
        ``hessian_sqrt`` (key None) or ``sample_targets`` (a key).
    """
    needs = ("hessian_sqrt",) if key is None else ("sample_targets",)
    if key is not None:
        check_key(key)
    samples = check_samples(samples)
    net, params, x, y = checked(net, params, x, y, needs, "kfac")
    for l, layer in enumerate(net.blocks):
        inner = layer.layer if isinstance(layer, Block) else layer
        if not isinstance(inner, Dense):
            raise ValueError(
                f"jp.curvature.kfac: layer {l + 1} ({inner!r}) is not Dense; "
                f"K-FAC for convolution layers (KFC, Grosse & Martens 2016) is "
                f"not supported yet: use diag_ggn or ggn_vector_product."
            )
    return _kfac(net, params, x, y, key, samples if key is not None else 1)
