r"""What the curvature functions share: their argument checks (the cost's
curvature, the tangent v and the maps' ``tangent`` included), the δ pass they
start from, with the reduction's scaling folded into δ^L, and the linearized
forward pass J v.

J v is Pearlmutter's R{·} of the forward pass, with R{a^0} = 0:

    R{u^l} = m'(a^{l-1}) R{a^{l-1}}     (each map's ``tangent`` at its input)
    R{z^l} = f_l(u^l; V^l) + f_l(R{u^l}; W^l, 0)
    R{a^l} = σ_l'(z^l) ⊙ R{z^l}

using that a parametrized layer's ``apply`` is affine in θ and, with b = 0,
linear in its input (Dense, Conv: z = f(u; W) + b, f bilinear).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._core import backprop as bp
from .._core.curvature import check_curvature_cost, layer_input, unit
from .._core.params import DenseParams, Params
from .._network import Net, check_net, check_xy, loss_and_output_delta
from .._vjp import as_params

Array = jax.Array


def checked(
    net, params, x, y, needs: tuple[str, ...] = (), caller: str = ""
) -> tuple[Net, tuple, Array, Array]:
    """(net, params, x, y) checked and batched, params as DenseParams, the
    cost's ``needs`` for ``caller`` first: a ValueError or TypeError naming the
    argument before anything compiles."""
    net = check_net(net)
    check_curvature_cost(net, needs, f"jp.curvature.{caller}")
    x, y = check_xy(net, params, x, y)
    return net, as_params(params), x, y


def check_tangent_maps(net: Net, caller: str) -> None:
    """A ValueError naming any parameter-free map without ``tangent(a, t)``,
    which the linearized forward pass (:func:`r_forward`) needs."""
    for l, block in enumerate(net.blocks):
        for m in unit(block)[1]:
            if not hasattr(m, "tangent"):
                raise ValueError(
                    f"jp.curvature.{caller}: the map {m!r} before params[{l}]"
                    f"{net.layer_name(l)} has no tangent(a, t), its derivative at "
                    f"its input a along t, which the forward pass of J v needs "
                    f"(docs/curvature.md)."
                )


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


def _tangent(maps, a: Array, t: Array) -> Array:
    """R{u} through the maps: each map's ``tangent`` at its own input."""
    for m in maps:
        a, t = m.apply(a), m.tangent(a, t)
    return t


def r_forward(net: Net, params: Params, cache, v: Params):
    """J v by the module's linearized forward pass, from the forward pass's
    ``cache`` (a: (a^0, ..., a^L), z: (z^1, ..., z^L)): (R{u^1}, ..., R{u^L})
    (None for R{u^1} = 0) and (R{z^1}, ..., R{z^L})."""
    L = len(params)
    ra, rus, rzs = None, [], []
    for l, (block, theta, vt) in enumerate(
        zip(net.blocks, params, v, strict=True), start=1
    ):
        layer, maps = unit(block)
        rz = layer.apply(vt, layer_input(block, cache.a[l - 1]))  # f(u; V)
        ru = None if ra is None else _tangent(maps, cache.a[l - 1], ra)
        if ru is not None:
            rz = rz + layer.apply(DenseParams(theta.w, jnp.zeros_like(theta.b)), ru)
        rus.append(ru)
        rzs.append(rz)
        if l < L:
            ra = bp.hidden(net.sigma, l).derivative(cache.z[l - 1], cache.a[l]) * rz
    return rus, rzs


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
