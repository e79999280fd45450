"""What the curvature functions share: their argument checks (the tangent v
included) and the δ pass they start from, with the reduction's scaling folded
into δ^L."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._core import backprop as bp
from .._core.layers import Block
from .._core.params import DenseParams, Params
from .._network import Net, check_net, check_xy, loss_and_output_delta
from .._vjp import as_params

Array = jax.Array


def checked(net, params, x, y) -> tuple[Net, tuple, Array, Array]:
    """(net, params, x, y) checked and batched, params as DenseParams: a
    ValueError or TypeError naming the argument before anything compiles."""
    net = check_net(net)
    x, y = check_xy(net, params, x, y)
    return net, as_params(params), x, y


def loss_deltas(net: Net, params, x: Array, y: Array):
    r"""(cache, L, (δ^1, ..., δ^L)) of backprop with the batch reduction in δ^L.

    δ^L = ∂L/∂z^L row by row: ∂c_i/∂z^L_i for ``reduction="sum"``, (1/N)
    ∂c_i/∂z^L_i for ``"mean"`` (``jaxprop._core.backprop.reduce``). Row i of
    every δ^l is then example i's share of ∂L, and (a^{l-1}_i)ᵀ δ^l_i is g_i
    of the curvature functions' convention: g_i = ∂c_i/∂θ (sum) or (1/N)
    ∂c_i/∂θ (mean), Σ_i g_i = ∂L/∂θ.
    """
    _, cache = bp.forward(net.blocks, params, x, net.sigma, net.sigma_out)
    value, delta = loss_and_output_delta(net, cache, y)
    deltas = bp.recursion(
        net.blocks, cache, delta, net.sigma, bp.through_weights(params)
    )
    return cache, value, deltas


def unit(block):
    """(the parametrized layer of a δ-pass unit, its maps): a Block's layer
    and maps, or a bare layer with none."""
    if isinstance(block, Block):
        return block.layer, block.maps
    return block, ()


def layer_input(block, a: Array) -> Array:
    """u = m_k(...m_1(a^{l-1})): what the parametrized layer of ``block`` reads."""
    return block.inputs(a)[-1] if isinstance(block, Block) else a


def check_tangent(v, params: Params, caller: str) -> tuple[DenseParams, ...]:
    """``v`` as a tuple of DenseParams with ``params``' shapes and dtype."""
    expected = ", ".join(
        f"DenseParams(w: {np.shape(t.w)}, b: {np.shape(t.b)})" for t in params
    )
    if not isinstance(v, (tuple, list)):
        raise TypeError(
            f"jp.curvature.{caller}: v must be a tuple of jp.DenseParams(w, b) "
            f"like params ({expected}); got {type(v).__name__}."
        )
    if len(v) != len(params):
        raise ValueError(
            f"jp.curvature.{caller}: v has {len(v)} layers; params has "
            f"{len(params)}: {expected}."
        )
    for l, (vt, theta) in enumerate(zip(v, params, strict=True)):
        if not isinstance(vt, DenseParams):
            raise TypeError(
                f"jp.curvature.{caller}: v[{l}] must be a jp.DenseParams(w, b); "
                f"got {type(vt).__name__}."
            )
        for name in ("w", "b"):
            leaf, want = getattr(vt, name), getattr(theta, name)
            dtype = getattr(leaf, "dtype", None)
            if dtype is None or jnp.dtype(dtype) != jnp.dtype(want.dtype):
                raise TypeError(
                    f"jp.curvature.{caller}: v[{l}].{name} must be an array of "
                    f"the params' dtype {jnp.dtype(want.dtype)}; got "
                    f"{type(leaf).__name__}" + (f" of dtype {dtype}." if dtype else ".")
                )
            if np.shape(leaf) != np.shape(want):
                raise ValueError(
                    f"jp.curvature.{caller}: v[{l}].{name} has shape "
                    f"{np.shape(leaf)}; params[{l}].{name} has {np.shape(want)}."
                )
    return tuple(DenseParams(vt.w, vt.b) for vt in v)
