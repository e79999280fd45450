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

A convolution (KFC, Grosse & Martens 2016) is a Dense layer applied at every
output position t ∈ T of its patches: ā_{i,t} = [P_{i,t}; 1] (``Conv.patches``,
the padded input under position t in W's (*kernel_size, C_in) order, then a 1
for the bias), θ = [W; b]: (Π kernel_size · C_in + 1, C_out) with W's rows
flattened in that order, and example i's gradient of column d is
Σ_t ā_{i,t} d_{i,t}ᵀ. With the paper's independence of activations and
derivatives, spatial homogeneity and spatially uncorrelated derivatives,

.. math::
    G_{θθ} = ρ Σ_i Σ_k Σ_{t,t'} ā_{i,t} ā_{i,t'}ᵀ ⊗ d_{ik,t} d_{ik,t'}ᵀ ≈ Ω ⊗ Γ,
    \qquad Ω = \frac1N Σ_i Σ_t ā_{i,t} ā_{i,t}ᵀ,
    \quad Γ = \frac{ρ}{|T|} Σ_i Σ_k Σ_t d_{ik,t} d_{ik,t}ᵀ,

the paper's Ω = E[Σ_t ā_t ā_tᵀ] and Γ = (1/|T|) E[Σ_t Ds_t Ds_tᵀ], Ω's
expectation the mean over the batch and Γ's the GGN's ρ Σ_i: the spatially
uncorrelated sum ρ Σ_{i,t} X_{i,t} ⊗ Y_{i,t} (X = ā ā ᵀ, Y = Σ_k d dᵀ) taken as
ρ N|T| X̄ ⊗ Ȳ, the means over (i, t), = (|T| X̄) ⊗ (ρ N Ȳ) = Ω ⊗ Γ. Ω's bias
corner is |T|; at |T| = 1 (a kernel covering its whole input, VALID) Ω and Γ
are Dense's A and G, exact at batch 1. A = Ω and G = Γ below.
"""

from __future__ import annotations

import functools
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import backprop as bp
from .conv import Conv
from .layers import Block, Dense, contract
from .params import DenseParams

Array = jax.Array

#: The most δ columns :func:`sum_squared_grads` sums as unrolled adds.
UNROLLED_SUM = 32


#: The built-in costs with curvature, for the refusal's message.
WITH_CURVATURE = "mse, binary_cross_entropy, softmax_cross_entropy"


def check_curvature_cost(net, needs: tuple[str, ...], caller: str):
    """The net's cost, or a ValueError naming ``caller`` (``"jp.curvature.X"``,
    ``"jp.rules.kfac"``), the cost and the fields it lacks of ``needs``
    (``hessian_sqrt``, ``sample_targets``)."""
    cost = net.cost_fn
    missing = [f for f in needs if getattr(cost, f, None) is None]
    if missing:
        raise ValueError(
            f"{caller} needs the cost's {' and '.join(missing)}; cost "
            f"{cost.name!r} has none (no curvature: "
            f"ggn_at={getattr(cost, 'ggn_at', None)!r}). Use a cost with them "
            f"({WITH_CURVATURE}) or give your jp.Cost ggn_at, hessian_sqrt and "
            f"sample_targets (docs/curvature.md)."
        )
    return cost


def check_kfactors(net, caller: str) -> None:
    """A ValueError naming ``caller`` and the first layer without Kronecker
    factors (neither Dense nor Conv)."""
    for l, block in enumerate(net.blocks):
        if not has_kfactors(block):
            raise ValueError(
                f"{caller}: params[{l}]{net.layer_name(l)} is a "
                f"{type(unit(block)[0]).__name__}, neither Dense nor Conv, the "
                f"kinds with Kronecker factors (K-FAC, KFC); diag_ggn and "
                f"ggn_vector_product take any layer."
            )


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
        # Σ_m as adds of the m squares where m is small (a cost's columns):
        # XLA:CPU runs jnp.sum(δ², axis=0) as a slow reduce fusion
        # (docs/performance.md, "Curvature"). Many Monte Carlo samples keep
        # the reduce, whose unrolled adds would be slow to compile.
        if deltas.shape[0] <= UNROLLED_SUM:
            squares = functools.reduce(operator.add, (d * d for d in deltas))
        else:
            squares = jnp.sum(deltas * deltas, axis=0)
        return layer.grads(u * u, squares)

    def one(d):
        g = block.per_example_grads(a, d)
        return jax.tree.map(lambda t: jnp.sum(t * t, axis=0), g)

    return jax.tree.map(lambda t: jnp.sum(t, axis=0), jax.vmap(one)(deltas))


class KFactors(NamedTuple):
    """The Kronecker factors of one Dense or Conv layer's GGN block, A ⊗ G, of
    θ = [W; b] (:func:`as_matrix`) vectorized row-major.

    Attributes:
      A: (K + 1, K + 1), (1/N) Σ_i Σ_t ā_{i,t} ā_{i,t}ᵀ with ā_{i,t} = [P_{i,t};
        1] (the bias as a last input of ones): Dense K = n_in, one position,
        P_i = u_i; Conv K = Π kernel_size · C_in, P_{i,t} its patches, t over
        the Π out_spatial output positions (KFC's Ω).
      G: (n_out, n_out) (Conv: (C_out, C_out)), (ρ/|T|) Σ_i Σ_k Σ_t d_{ik,t}
        d_{ik,t}ᵀ of the backpropagated columns (KFC's Γ;
        ``jaxprop._core.curvature``).
    """

    A: Array
    G: Array


def has_kfactors(block) -> bool:
    """Whether the parametrized layer of ``block`` has Kronecker factors
    (Dense: K-FAC; Conv: KFC)."""
    return isinstance(unit(block)[0], (Dense, Conv))


def homogeneous_patches(block, a: Array) -> Array:
    """ā: (batch, T, K + 1), the rows of the layer's input that W reads, a 1
    appended for the bias: Dense T = 1, ā = [u; 1]; Conv its patches
    (``Conv.patches``, in W's (*kernel_size, C_in) order), T = Π out_spatial."""
    layer, _ = unit(block)
    u = layer_input(block, a)
    p = layer.patches(u) if isinstance(layer, Conv) else u[:, None, :]
    return jnp.concatenate([p, jnp.ones((*p.shape[:2], 1), p.dtype)], axis=2)


def kfactors(block, a: Array, deltas: Array, weight) -> KFactors:
    """A and G of one Dense or Conv unit (the module's equations); a: its
    input, deltas: (m, batch, *out_shape), weight: ρ (divided by the samples
    for Monte Carlo columns)."""
    a_bar = homogeneous_patches(block, a)
    batch, positions, k = a_bar.shape
    a_bar = a_bar.reshape(batch * positions, k)
    d = deltas.reshape(-1, deltas.shape[-1])
    return KFactors(
        A=contract(a_bar, a_bar, 0, 0) / batch,
        G=(weight / positions) * contract(d, d, 0, 0),
    )


def as_matrix(block, theta: DenseParams) -> Array:
    """θ = [W; b] as the matrix the factors act on: (K + 1, n_out), W's rows
    flattened in its row-major order (Conv: (*kernel_size, C_in), as
    :func:`homogeneous_patches` orders a patch), the bias as the last row."""
    w = theta.w.reshape(-1, theta.w.shape[-1])
    return jnp.concatenate([w, theta.b[None]], axis=0)


def from_matrix(block, m: Array) -> DenseParams:
    """The inverse of :func:`as_matrix`: DenseParams(w, b) of the layer's
    shapes from m: (K + 1, n_out)."""
    w_shape = unit(block)[0].shapes(m.dtype).w.shape
    return DenseParams(m[:-1].reshape(w_shape), m[-1])


def net_kfactors(net, params, cache: bp.Cache, y: Array, key=None, samples: int = 1):
    """One :class:`KFactors` per layer from the forward pass's ``cache``: G from
    the columns of the cost's Hessian root (``key`` None: KFLR) or from
    ``samples`` targets drawn with ``key`` (K-FAC's Monte Carlo)."""
    weight = reduction_scale(net, cache.a[0].shape[0])
    if key is None:
        columns = split_columns(net, cache, y)
    else:
        columns = sampled_columns(net, cache, y, key, samples)
        weight = weight / samples
    deltas = column_deltas(net, params, cache, columns)
    return tuple(
        kfactors(block, a, d, weight)
        for block, a, d in zip(net.blocks, cache.a, deltas, strict=False)
    )
