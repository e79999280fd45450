r"""The generalized Gauss-Newton from the δ pass: its exact and Monte Carlo
diagonals and its products with a vector, written by hand (no autodiff).

Per example i the cost c_i is split where its Hessian is PSD (``Cost.ggn_at``,
``jaxprop._core.costs``): u_i = z^L_i (the fused cross-entropies) or u_i = ŷ_i
(mse and the others). With J_i = ∂u_i/∂θ and H_i = ∂²c_i/∂u_i² = S_i S_iᵀ,

.. math::
    G = ρ Σ_i J_iᵀ H_i J_i = ρ Σ_i Σ_k (J_iᵀ S_{i,:,k}) (J_iᵀ S_{i,:,k})ᵀ,

ρ = 1 for ``reduction="sum"``, 1/N for ``"mean"`` (batch N). J_iᵀ s is a
gradient: the δ recursion (``jaxprop._core.backprop``) run from δ^L_i = J_σ s,
J_σ = diag σ_L'(z^L_i) for ``"output"`` and I for ``"logits"``. So each column
D_{:,:,k} of D = J_σ S: (batch, n_out, k) is carried back as a δ^L, and

    diag G = ρ Σ_k Σ_i g_{ik} ⊙ g_{ik},     g_{ik} the per-example gradient
                                            of column k;

for a Dense layer Σ_i g_{ik} ⊙ g_{ik} = ((a^{l-1})²)ᵀ (δ^l_k)² for w and
Σ_i (δ^l_{ik})² for b, which sums the columns before the product:
((a^{l-1})²)ᵀ Σ_k (δ^l_k)². Other layers (Conv) square their
``per_example_grads``.

Monte Carlo: targets y_s drawn from the predictive distribution
(``Cost.sample_targets``) give δ^L_s = ∂c(y_s)/∂z^L with E[δ^L_s δ^L_sᵀ] =
J_σᵀ H J_σ: one δ pass per sample, in place of one per column.

The product G v is J v by the linearized forward pass (Pearlmutter's R{·}),

    R{a^0} = 0,   R{z^l} = f_l(V^l; a^{l-1}) + f_l(W^l, 0; R{a^{l-1}}),
    R{a^l} = σ_l'(z^l) ⊙ R{z^l},

then δ^L = ρ J_σ S Sᵀ J_σ R{z^L} (here ρ J_σ (D Dᵀ) … with D above), then the δ
recursion and the weight gradients (Jᵀ). It uses that a parametrized layer's
``apply`` is affine in the weights and linear in its input given w (Dense, Conv:
z = f(W, a) + b with f bilinear), and that each parameter-free map before a
layer has ``tangent(a, t)``, its directional derivative at a along t
(``jaxprop._core.pool``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .._core import backprop as bp
from .._core.curvature import (
    column_deltas,
    forward,
    reduction_scale,
    sampled_columns,
    split_columns,
    sum_squared_grads,
)
from .._core.params import Params, check_key
from .._network import Net
from .._validate import integer
from ._common import check_tangent, check_tangent_maps, checked, r_forward

Array = jax.Array


def check_samples(samples) -> int:
    """``samples`` as an int ≥ 1, or a TypeError/ValueError naming it."""
    return integer(samples, "samples", low=1)


def diag_from_columns(net: Net, params: Params, cache: bp.Cache, columns, weight):
    """weight · Σ_m Σ_i g_{im} ⊙ g_{im} over the columns' gradients."""
    deltas = column_deltas(net, params, cache, columns)
    return tuple(
        jax.tree.map(lambda t: weight * t, sum_squared_grads(block, a, d))
        for block, a, d in zip(net.blocks, cache.a, deltas, strict=False)
    )


def ggn_product(net: Net, params: Params, cache: bp.Cache, columns, v, weight):
    """G v from the forward pass's cache and the columns D = J_σ S: (k, batch,
    n_out): J v forward, ρ D Dᵀ at z^L, Jᵀ by the δ recursion."""
    rz = r_forward(net, params, cache, v)[1][-1]
    hv = jnp.einsum("kbo,kb->bo", columns, jnp.einsum("kbo,bo->kb", columns, rz))
    deltas = bp.recursion(
        net.blocks, cache, weight * hv, net.sigma, bp.through_weights(params)
    )
    return bp.weight_grads(net.blocks, cache, deltas)


# ------------------------------------------------------------ compiled cores
@functools.partial(jax.jit, static_argnums=0)
def _diag_ggn(net: Net, params: Params, x: Array, y: Array) -> Params:
    cache = forward(net, params, x)
    columns = split_columns(net, cache, y)
    return diag_from_columns(
        net, params, cache, columns, reduction_scale(net, x.shape[0])
    )


@functools.partial(jax.jit, static_argnums=(0, 5))
def _diag_ggn_mc(net: Net, params: Params, x, y, key, samples: int) -> Params:
    cache = forward(net, params, x)
    columns = sampled_columns(net, cache, y, key, samples)
    weight = reduction_scale(net, x.shape[0]) / samples
    return diag_from_columns(net, params, cache, columns, weight)


@functools.partial(jax.jit, static_argnums=0)
def _ggn_vector_product(net: Net, params: Params, x, y, v) -> Params:
    cache = forward(net, params, x)
    columns = split_columns(net, cache, y)
    return ggn_product(net, params, cache, columns, v, reduction_scale(net, x.shape[0]))


# ------------------------------------------------------------------- public
def diag_ggn(net, params: Params, x, y) -> Params:
    r"""The exact diagonal of the generalized Gauss-Newton G of the loss.

    .. math:: \operatorname{diag} G = ρ Σ_i Σ_k (J_iᵀ S_{i,:,k})^{⊙2}

    One δ pass per column of the cost's Hessian root S (k = n_out for the
    built-ins), batched: about (k + 1) gradients' work. ρ = 1 for
    ``reduction="sum"``, 1/N for ``"mean"`` (``jaxprop.curvature._ggn``).

    Args:
      net: a ``jp.MLP`` or ``jp.Network`` whose cost has ``hessian_sqrt``.
      params: its parameters (a tuple of DenseParams(w, b)).
      x: (batch, *input_shape) inputs; y: targets as for ``net.loss``.

    Returns:
      A pytree like ``params``: DenseParams(w: (n_{l-1}, n_l), b: (n_l,)) of
      G's diagonal entries for every weight and bias.

    Raises:
      ValueError: a cost without ``hessian_sqrt`` (the hinge), or inputs that
        do not fit the net; TypeError: params that are not arrays.
    """
    net, params, x, y = checked(net, params, x, y, ("hessian_sqrt",), "diag_ggn")
    return _diag_ggn(net, params, x, y)


def diag_ggn_mc(net, params: Params, x, y, key, samples: int = 1) -> Params:
    r"""A Monte Carlo estimate of the GGN's diagonal, unbiased.

    .. math:: \widehat{\operatorname{diag} G} = \frac{ρ}{M} Σ_{s=1}^M Σ_i
        (∂c(ŷ_i, y_{is})/∂θ)^{⊙2},\qquad y_{is} \sim p(y \mid ŷ_i)

    Targets drawn from the model's predictive distribution
    (``Cost.sample_targets``), one δ pass per sample: E[δ^L δ^Lᵀ] =
    J_σᵀ H J_σ makes the mean over samples G's diagonal in expectation.

    Args:
      net, params, x, y: as for :func:`diag_ggn` (the cost needs
        ``sample_targets``).
      key: a PRNG key; ``samples``: M ≥ 1.

    Returns:
      A pytree like ``params``.
    """
    check_key(key)
    samples = check_samples(samples)
    net, params, x, y = checked(net, params, x, y, ("sample_targets",), "diag_ggn_mc")
    return _diag_ggn_mc(net, params, x, y, key, samples)


def ggn_vector_product(net, params: Params, x, y, v) -> Params:
    r"""G v, the GGN of the loss times a vector v of params' structure.

    .. math:: G v = ρ Σ_i J_iᵀ S_i S_iᵀ (J_i v)

    J v by the linearized forward pass, S Sᵀ at the split, Jᵀ by the δ
    recursion: about three passes' work, never forming G.

    Layers: a parametrized layer's ``apply(θ, a)`` must be affine in θ and,
    with b = 0, linear in a (Dense, Conv; ``apply(V, a)`` gives the weights'
    term, ``apply((W, 0), R{a})`` the input's), and each parameter-free map
    needs ``tangent(a, t)``, its directional derivative at its input a along
    t (AvgPool, MaxPool, Flatten have it).

    Args:
      net, params, x, y: as for :func:`diag_ggn`.
      v: a tuple of DenseParams(w, b) of params' shapes and dtype.

    Returns:
      G v, a pytree like ``params``.

    Raises:
      TypeError, ValueError: v not of params' structure, shapes or dtype; a
        map without ``tangent``; as :func:`diag_ggn`.
    """
    net, params, x, y = checked(
        net, params, x, y, ("hessian_sqrt",), "ggn_vector_product"
    )
    v = check_tangent(v, params, "ggn_vector_product")
    check_tangent_maps(net, "ggn_vector_product")
    return _ggn_vector_product(net, params, x, y, v)
