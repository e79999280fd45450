r"""The pieces of the δ equations that curvature is made of, shared by
``jp.curvature`` and ``jp.rules.kfac``.

Per example i the cost c_i is split where its Hessian is PSD (``Cost.ggn_at``,
``jaxprop._core.costs``): u_i = z^L_i (the fused cross-entropies) or u_i = ŷ_i
(mse and the others), with H_i = ∂²c_i/∂u_i² = S_i S_iᵀ. A column s of S
carried to z^L, d = J_σ s (J_σ = diag σ_L'(z^L) for ``"output"``, I for
``"logits"``), and back through the δ recursion gives J_iᵀ s at every layer:
the GGN G = ρ Σ_i J_iᵀ H_i J_i is a sum of outer products of such gradients
(ρ = 1 for ``reduction="sum"``, 1/N for ``"mean"``). Targets drawn from the
model's predictive distribution (``Cost.sample_targets``) give δ^L's whose
outer products are J_σᵀ H J_σ in expectation: one δ pass per sample in place
of one per column (Monte Carlo).

Kronecker factors (K-FAC, Martens & Grosse 2015; KFLR, Botev et al. 2017) of a
Dense layer with input ā_i = [u_i; 1] (the bias as the last input, a column of
ones) and θ = [W; b]: (n_in + 1, n_out) vectorized row-major (entry (r, o) at
r·n_out + o): one example's gradient of a δ column d is ā dᵀ, vec(ā dᵀ) = ā ⊗ d,
and

.. math::
    G_{θθ} = ρ Σ_i ā_i ā_iᵀ ⊗ Σ_k d_{ik} d_{ik}ᵀ ≈ A ⊗ G,\qquad
    A = \frac1N Σ_i ā_i ā_iᵀ,\quad G = ρ Σ_i Σ_k d_{ik} d_{ik}ᵀ,

the expectation of a product taken as the product of expectations, exact at
batch 1.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import backprop as bp
from .layers import Block, Dense, contract
from .params import DenseParams

Array = jax.Array


def unit(block):
    """(the parametrized layer of a δ-pass unit, its maps): a Block's layer
    and maps, or a bare layer with none."""
    if isinstance(block, Block):
        return block.layer, block.maps
    return block, ()


def layer_input(block, a: Array) -> Array:
    """u = m_k(...m_1(a^{l-1})): what the parametrized layer of ``block`` reads."""
    return block.inputs(a)[-1] if isinstance(block, Block) else a


def reduction_scale(net, batch: int) -> float:
    """ρ: 1 for ``reduction="sum"``, 1/N for ``"mean"`` (batch N)."""
    return 1.0 if net.reduction == "sum" else 1.0 / batch


def forward(net, params, x: Array) -> bp.Cache:
    """The forward pass's cache."""
    return bp.forward(net.blocks, params, x, net.sigma, net.sigma_out)[1]


def split_columns(net, cache: bp.Cache, y: Array) -> Array:
    """D = J_σ S: (k, batch, n_out), the columns of S carried to z^L."""
    cost, sigma = net.cost_fn, net.sigma_out
    z, a = cache.z[-1], cache.a[-1]
    s = cost.hessian_sqrt(z, a, y, sigma)
    if cost.ggn_at == "output":
        s = s * sigma.derivative(z, a)[:, :, None]
    return jnp.moveaxis(s, 2, 0)


def sampled_columns(net, cache: bp.Cache, y: Array, key, samples: int) -> Array:
    """δ^L = ∂c(ŷ, y_s)/∂z^L at ``samples`` draws y_s of targets from the
    predictive distribution: (samples, batch, n_out)."""
    cost, sigma = net.cost_fn, net.sigma_out
    z, a = cache.z[-1], cache.a[-1]

    def one(k):
        y_s = cost.sample_targets(k, z, a, y, sigma)
        return cost.value_and_delta(z, a, y_s, sigma)[1]

    return jax.vmap(one)(jax.random.split(key, samples))


def column_deltas(net, params, cache: bp.Cache, columns: Array):
    """(δ^1, ..., δ^L) of every column of ``columns``: (m, batch, n_out) as δ^L;
    δ^l: (m, batch, *out_shape of layer l)."""
    through = bp.through_weights(params)
    return jax.vmap(lambda d: bp.recursion(net.blocks, cache, d, net.sigma, through))(
        columns
    )


def sum_squared_grads(block, a: Array, deltas: Array) -> DenseParams:
    """Σ_m Σ_i g_{im} ⊙ g_{im} of one δ-pass unit, g_{im} example i's gradient
    of δ column m; deltas: (m, batch, *out_shape), a: the unit's input.

    Dense: g_{im} = (u_i δ_{im}ᵀ, δ_{im}), so the sum is ((u ⊙ u)ᵀ Σ_m δ_m ⊙ δ_m,
    Σ_m Σ_i δ_{im} ⊙ δ_{im}): one more product, no per-example gradient. Other
    layers (Conv) square their ``per_example_grads``.
    """
    layer, _ = unit(block)
    if isinstance(layer, Dense):
        u = layer_input(block, a)
        return layer.grads(u * u, jnp.sum(deltas * deltas, axis=0))

    def one(d):
        g = block.per_example_grads(a, d)
        return jax.tree.map(lambda t: jnp.sum(t * t, axis=0), g)

    return jax.tree.map(lambda t: jnp.sum(t, axis=0), jax.vmap(one)(deltas))


class KFactors(NamedTuple):
    """The Kronecker factors of one Dense layer's GGN block, A ⊗ G.

    Attributes:
      A: (n_in + 1, n_in + 1), (1/N) Σ_i ā_i ā_iᵀ with ā_i = [u_i; 1] (the
        bias as a last input of ones).
      G: (n_out, n_out), ρ Σ_i Σ_k d_{ik} d_{ik}ᵀ of the backpropagated
        columns (``jaxprop._core.curvature``).
    """

    A: Array
    G: Array


def is_dense(block) -> bool:
    """Whether the parametrized layer of ``block`` is Dense (K-FAC's kind)."""
    return isinstance(unit(block)[0], Dense)


def kfactors(block, a: Array, deltas: Array, weight) -> KFactors:
    """A and G of one Dense unit; a: its input, deltas: (m, batch, n_out),
    weight: ρ (divided by the samples for Monte Carlo columns)."""
    u = layer_input(block, a)
    a_bar = jnp.concatenate([u, jnp.ones((u.shape[0], 1), u.dtype)], axis=1)
    d = deltas.reshape(-1, deltas.shape[-1])
    return KFactors(
        A=contract(a_bar, a_bar, 0, 0) / u.shape[0], G=weight * contract(d, d, 0, 0)
    )


def as_matrix(block, theta: DenseParams) -> Array:
    """θ = [W; b] as the matrix the factors act on: (n_in + 1, n_out), the
    bias as the last row (A's last input of ones)."""
    return jnp.concatenate([theta.w, theta.b[None]], axis=0)


def from_matrix(block, m: Array) -> DenseParams:
    """The inverse of :func:`as_matrix`: DenseParams(w, b) from (n_in + 1, n_out)."""
    return DenseParams(m[:-1], m[-1])
