r"""Kronecker factors of the GGN per Dense or Conv layer: K-FAC (Martens &
Grosse 2015), KFLR (Botev et al. 2017) and, for convolutions, KFC (Grosse &
Martens 2016), from the δ pass.

The factors' maths is ``jaxprop._core.curvature``'s (shared with
``jp.rules.kfac``): for a Dense layer with input ā_i = [u_i; 1] and
θ = [W; b] vectorized row-major,

.. math::
    G_{θθ} = ρ Σ_i ā_i ā_iᵀ ⊗ Σ_k d_{ik} d_{ik}ᵀ ≈ A ⊗ G,

d_{ik} = δ^l of column k of D = J_σ S for example i (KFLR: the exact loss
Hessian) or of a sampled target's δ^L (K-FAC's Monte Carlo, averaged over the
samples); exact at batch 1. A convolution's ā_{i,t} are its patches with a 1,
summed over the output positions t into A, and G is divided by their number
|T| (KFC's Ω and Γ; ``jaxprop._core.curvature``).
"""

from __future__ import annotations

import functools

import jax

from .._core.curvature import check_kfactors, forward, net_kfactors
from .._core.params import Params, check_key
from .._network import Net
from ._common import checked
from ._ggn import check_samples

Array = jax.Array


@functools.partial(jax.jit, static_argnums=(0, 5))
def _kfac(net: Net, params: Params, x, y, key, samples: int):
    return net_kfactors(net, params, forward(net, params, x), y, key, samples)


def kfac(net, params: Params, x, y, key=None, *, samples: int = 1):
    r"""The Kronecker factors (A, G) of every layer's GGN block.

    A ⊗ G approximates the GGN block of layer l's θ^l = [W^l; b^l] (W's rows
    flattened, the bias as the last row) vectorized row-major
    (``jaxprop.curvature._kfac``), exactly at batch 1 for a Dense layer. A =
    (1/N) Σ_i Σ_t ā_{i,t} ā_{i,t}ᵀ, G = (ρ/|T|) Σ_i Σ_k Σ_t d_{ik,t}
    d_{ik,t}ᵀ (ρ = 1 for ``reduction="sum"``, 1/N for ``"mean"``) from the
    columns of the cost's Hessian root (``key=None``: KFLR, the exact loss
    Hessian) or from ``samples`` sampled targets (a key: K-FAC's Monte Carlo
    factors). Dense: one position, ā = [a^{l-1}; 1]; Conv (KFC, Grosse &
    Martens 2016): ā_{i,t} = [patch under output position t; 1] in W's
    (*kernel_size, C_in) order, t over the |T| = Π out_spatial positions.

    Args:
      net, params, x, y: as for ``jp.curvature.diag_ggn``; every parametrized
        layer must be Dense or Conv (with maps such as pooling or Flatten
        before it, or none).
      key: None, or a PRNG key for the Monte Carlo G.
      samples: target draws per example with a key, ≥ 1.

    Returns:
      A tuple of one :class:`KFactors` per layer: Dense A: (n_in + 1, n_in +
      1), G: (n_out, n_out); Conv A: (Π kernel_size · C_in + 1, the same), G:
      (C_out, C_out).

    Raises:
      ValueError: a layer of another kind (a user's layer) than Dense or Conv;
        a cost without ``hessian_sqrt`` (key None) or ``sample_targets`` (a
        key).
    """
    needs = ("hessian_sqrt",) if key is None else ("sample_targets",)
    if key is not None:
        check_key(key)
    samples = check_samples(samples)
    net, params, x, y = checked(net, params, x, y, needs, "kfac")
    check_kfactors(net, "jp.curvature.kfac")
    return _kfac(net, params, x, y, key, samples if key is not None else 1)
