r"""Hessian-vector products by Pearlmutter's R-operator, written by hand.

For a direction V in the parameters' space, R{f} = ∂f(θ + rV)/∂r at r = 0
(Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation
1994). Applied to the forward pass and to the δ recursion of
``jaxprop._core.backprop`` it gives H V, with H = ∂²L/∂θ², in one more forward
and one more backward pass. Each parametrized layer is z = f(u; W) + b with f
bilinear (Dense: u W; Conv: the convolution), u = m_k(...m_1(a^{l-1})) its
input after the parameter-free maps (pooling, flatten). Forward, with
R{a^0} = 0:

    R{u^l} = m'(a^{l-1}) R{a^{l-1}}      (linear maps: m(R{a}); max pooling:
                                           R{a} at each window's argmax)
    R{z^l} = f(R{u^l}; W^l) + f(u^l; V^l_W) + V^l_b
    R{a^l} = σ_l'(z^l) ⊙ R{z^l}

Backward, with g^l = adj_{l+1}(W^{l+1}, δ^{l+1}) the δ carried back through
layer l + 1 and its maps (linear in the weight and in δ; max pooling routes by
its input, piecewise constant):

    R{g^l}  = adj_{l+1}(W^{l+1}, R{δ^{l+1}}) + adj_{l+1}(V^{l+1}_W, δ^{l+1})
    R{δ^l}  = R{g^l} ⊙ σ_l'(z^l) + g^l ⊙ σ_l''(z^l) ⊙ R{z^l}
    R{∂W^l} = grads(R{u^l}, δ^l) + grads(u^l, R{δ^l}),   R{∂b^l} = Σ R{δ^l}

(Dense: grads(u, δ) = uᵀ δ). H V = (R{∂W^l}, R{∂b^l})_l. At the output, with
s = 1 (sum) or 1/N (mean) and δ^L = s ∂c/∂z^L, the cost's Hessian comes from
its square root S, S Sᵀ = ∂²c/∂u² (``Cost.hessian_sqrt``):

    fused cross-entropies (``ggn_at="logits"``, u = z^L):
        R{δ^L} = s S Sᵀ R{z^L}
    the others (``ggn_at="output"``, u = ŷ = σ_L(z^L)), δ^L = s c'(ŷ) ⊙ σ_L'(z^L):
        R{δ^L} = s [(S Sᵀ R{ŷ}) ⊙ σ_L' + c'(ŷ) ⊙ σ_L'' ⊙ R{z^L}],  R{ŷ} = σ_L' R{z^L}

c'(ŷ) = ∂c/∂ŷ is the cost's own δ for an identity output evaluated at
z = a = ŷ (``value_and_delta(ŷ, ŷ, y, identity)``): by ``value_and_delta``'s
contract δ = ∂c/∂z, and with the identity z is ŷ. No division by σ_L', which
may be 0.

What a layer must give (Dense and Conv do): ``apply``, ``adjoint`` and
``grads`` bilinear as above, with ``adjoint`` not reading its input (a user's
layer promises this with a class attribute ``bilinear = True``); every map
before it a ``tangent(a, t)`` (AvgPool, MaxPool, Flatten have one); every
hidden activation, and an ``ggn_at="output"`` cost's output activation, a
``second_derivative``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._core.activations import ACTIVATIONS, Activation
from .._core.backprop import hidden
from .._core.conv import Conv
from .._core.curvature import layer_input, unit
from .._core.layers import Dense
from .._core.params import DenseParams, Params
from .._network import Net
from ._common import check_tangent, check_tangent_maps, checked, r_forward

Array = jax.Array


class Base(NamedTuple):
    """What every H v at the same (params, x, y) shares: the forward pass and
    the δ pass, and the cost's curvature at the output.

    Attributes:
      a: (a^0, ..., a^L); z: (z^1, ..., z^L).
      deltas: (δ^1, ..., δ^L), the reduction folded into δ^L.
      backs: (g^1, ..., g^{L-1}), g^l = δ^{l+1} carried back through layer
        l + 1 (δ^l = g^l ⊙ σ_l'(z^l)).
      s: (batch, n_out, k), the cost's Hessian square root S.
      dc: (batch, n_out), c'(ŷ) for a ``ggn_at="output"`` cost; None for a
        fused one.
      scale: 1 or 1/N, the reduction's.
    """

    a: tuple
    z: tuple
    deltas: tuple
    backs: tuple
    s: Array
    dc: Array | None
    scale: float


def base(net: Net, params: Params, x: Array, y: Array) -> Base:
    """The forward and δ passes (the module's equations) and S at the output."""
    a, zs, as_ = x, [], [x]
    L = len(params)
    for l, (block, theta) in enumerate(zip(net.blocks, params, strict=True), start=1):
        act = net.sigma_out if l == L else hidden(net.sigma, l)
        z = block.apply(theta, a)
        a = act.fn(z)
        zs.append(z)
        as_.append(a)
    cost, sigma_out = net.cost_fn, net.sigma_out
    z_out, y_hat = zs[-1], as_[-1]
    scale = 1.0 if net.reduction == "sum" else 1.0 / x.shape[0]
    delta = scale * cost.value_and_delta(z_out, y_hat, y, sigma_out)[1]
    s = cost.hessian_sqrt(z_out, y_hat, y, sigma_out)
    dc = None
    if cost.ggn_at == "output":
        dc = cost.value_and_delta(y_hat, y_hat, y, ACTIVATIONS["identity"])[1]
    deltas, backs = [delta], []
    for l in range(L - 1, 0, -1):
        g = net.blocks[l].adjoint(params[l].w, deltas[-1], as_[l])
        backs.append(g)
        deltas.append(g * hidden(net.sigma, l).derivative(zs[l - 1], as_[l]))
    return Base(
        tuple(as_),
        tuple(zs),
        tuple(reversed(deltas)),
        tuple(reversed(backs)),
        s,
        dc,
        scale,
    )


def _times_hessian(s: Array, t: Array) -> Array:
    """S Sᵀ t per example: (batch, n_out) from S: (batch, n_out, k)."""
    return jnp.einsum("bok,bk->bo", s, jnp.einsum("bok,bo->bk", s, t))


def _r_output(net: Net, b: Base, rz: Array) -> Array:
    """R{δ^L} from R{z^L} (the module's two cases)."""
    if net.cost_fn.ggn_at == "logits":
        return b.scale * _times_hessian(b.s, rz)
    sigma, z, y_hat = net.sigma_out, b.z[-1], b.a[-1]
    d1 = sigma.derivative(z, y_hat)
    curvature = _times_hessian(b.s, d1 * rz) * d1
    return b.scale * (curvature + b.dc * sigma.second_derivative(z, y_hat) * rz)


def hvp(net: Net, params: Params, b: Base, v: Params) -> Params:
    """H v for checked arguments, from the shared :class:`Base`."""
    rus, rzs = r_forward(net, params, b, v)
    r_delta = _r_output(net, b, rzs[-1])
    out = []
    for l in range(len(params), 0, -1):
        block = net.blocks[l - 1]
        layer, _ = unit(block)
        a, delta = b.a[l - 1], b.deltas[l - 1]
        g = layer.grads(layer_input(block, a), r_delta)
        if rus[l - 1] is not None:
            g = DenseParams(g.w + layer.grads(rus[l - 1], delta).w, g.b)
        out.append(g)
        if l == 1:
            break
        sigma = hidden(net.sigma, l - 1)
        z, a_prev = b.z[l - 2], a  # z^{l-1}, a^{l-1}
        r_back = block.adjoint(params[l - 1].w, r_delta, a) + block.adjoint(
            v[l - 1].w, delta, a
        )
        r_delta = (
            r_back * sigma.derivative(z, a_prev)
            + b.backs[l - 2] * sigma.second_derivative(z, a_prev) * rzs[l - 2]
        )
    return tuple(reversed(out))


@functools.partial(jax.jit, static_argnums=0)
def _hessian_vector_product(net: Net, params: Params, x, y, v: Params) -> Params:
    return hvp(net, params, base(net, params, x, y), v)


# ---------------------------------------------------------------- checks
def _second_derivative(act: Activation, what: str) -> None:
    if act.second_derivative is None:
        raise ValueError(
            f"hessian_vector_product needs σ'' of every activation it "
            f"differentiates twice; the {what} {act.name!r} has no "
            f"second_derivative (give jp.Activation(..., second_derivative=...))."
        )


def check_second_order(net: Net, caller: str = "hessian_vector_product") -> None:
    """A ValueError naming what of ``net`` the R-operator cannot differentiate
    twice: a cost without ``hessian_sqrt``, an activation without
    ``second_derivative``, a layer or map without what it needs."""
    cost = net.cost_fn
    ggn_at = getattr(cost, "ggn_at", None)
    if (
        ggn_at not in ("logits", "output")
        or getattr(cost, "hessian_sqrt", None) is None
    ):
        raise ValueError(
            f"{caller} needs the cost's Hessian square root; cost {cost.name!r} "
            f"has no hessian_sqrt (ggn_at={ggn_at!r}): give the jp.Cost a "
            f"hessian_sqrt and ggn_at ('logits' or 'output')."
        )
    sigmas = (
        (net.sigma,) * (net.n_layers - 1)
        if isinstance(net.sigma, Activation)
        else net.sigma
    )
    for l, act in enumerate(sigmas, start=1):
        _second_derivative(act, f"hidden activation of layer {l}")
    if ggn_at == "output":
        _second_derivative(net.sigma_out, "output activation")
    for l, block in enumerate(net.blocks):
        layer, _ = unit(block)
        if not (isinstance(layer, (Dense, Conv)) or getattr(layer, "bilinear", False)):
            kind = type(layer).__name__
            raise ValueError(
                f"{caller}: params[{l}]{net.layer_name(l)} is a {kind}; "
                f"the R-operator needs apply, adjoint and grads bilinear in "
                f"(input, weight), with adjoint not reading its input: Dense "
                f"and Conv are; a layer of your own promises it with a class "
                f"attribute bilinear = True."
            )
    check_tangent_maps(net, caller)


def hessian_vector_product(net, params: Params, x, y, v: Params) -> Params:
    r"""H v, the loss's Hessian in the parameters times v, by the R-operator.

    One forward pass, the δ pass, and one more forward and backward pass of
    the differentiated equations (Pearlmutter 1994; the module's equations),
    written by hand: no autodiff. Exact (not a Gauss-Newton approximation):
    it equals ``jax.jvp(jax.grad(net.loss), (params,), (v,))[1]`` up to
    rounding, with the reduction's scaling (``"mean"``: the Hessian of the
    mean). Works under ``jit`` and ``vmap``.

    Args:
      net: a ``jp.MLP`` or ``jp.Network``; params: its parameters.
      x: (batch, *input_shape); y: targets as for ``net.loss``.
      v: a pytree like ``params`` (same structure, shapes and dtype).

    Returns:
      H v, a pytree like ``params``.

    Raises:
      ValueError: ``v`` not like ``params``; a cost without ``hessian_sqrt``
        (the hinge), an activation without ``second_derivative``, a layer or
        map the R-operator cannot pass (the message names it). TypeError:
        arguments of the wrong type. All before anything compiles.
    """
    net, params, x, y = checked(net, params, x, y)
    v = check_tangent(v, params, "hessian_vector_product")
    check_second_order(net)
    return _hessian_vector_product(net, params, x, y, v)
