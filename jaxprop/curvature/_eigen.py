r"""The top eigenvalue of the loss's Hessian (or GGN) by power iteration.

For the GGN each step is :func:`ggn_vector_product`'s work (positive
semi-definite: its largest eigenvalue).

Cohen et al. 2021's sharpness: full-batch gradient descent with step η drives
the Hessian's top eigenvalue to 2/η (the edge of stability). Power iteration
needs only matrix-vector products, here the hand-written R-operator's
(:func:`jaxprop.curvature._hvp.hvp`), with the forward and δ passes they
share computed once, outside the loop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .._core.curvature import (
    check_curvature_cost,
    forward,
    reduction_scale,
    split_columns,
)
from .._core.params import Params, check_key
from .._validate import choice, positive_int
from ._common import check_tangent_maps, checked
from ._ggn import ggn_product
from ._hvp import base, check_second_order, hvp

Array = jax.Array

#: The matrices :func:`top_eigenvalue` takes.
MATRICES = ("hessian", "ggn")


def _dot(u: Params, v: Params) -> Array:
    return sum(
        jnp.vdot(a, b)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v), strict=True)
    )


def _normalized(v: Params) -> Params:
    """v / ‖v‖ (v itself where ‖v‖ = 0: H v = 0 has no direction)."""
    norm = jnp.sqrt(_dot(v, v))
    scale = jnp.where(norm > 0, 1 / jnp.where(norm > 0, norm, 1), 1)
    return jax.tree.map(lambda leaf: leaf * scale, v)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _top_eigenvalue(net, matrix: str, iters: int, params, x, y, key) -> Array:
    if matrix == "hessian":
        shared = base(net, params, x, y)

        def product(v):
            return hvp(net, params, shared, v)
    else:  # the GGN: PSD, so its largest eigenvalue
        cache = forward(net, params, x)
        columns = split_columns(net, cache, y)
        weight = reduction_scale(net, x.shape[0])

        def product(v):
            return ggn_product(net, params, cache, columns, v, weight)

    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    start = [
        jax.random.normal(k, p.shape, p.dtype)
        for k, p in zip(keys, leaves, strict=True)
    ]

    def step(_, v):
        return _normalized(product(v))

    v = jax.lax.fori_loop(0, iters, step, _normalized(treedef.unflatten(start)))
    return _dot(v, product(v))


def top_eigenvalue(
    net, params: Params, x, y, key, matrix: str = "hessian", iters: int = 20
) -> Array:
    r"""The loss's Hessian's eigenvalue of largest magnitude, by power iteration.

    From v_0 ~ N(0, I) drawn with ``key`` (normalized), ``iters`` steps of
    v_{k+1} = H v_k / ‖H v_k‖ in a ``lax.fori_loop``, then the Rayleigh
    quotient λ = v_kᵀ H v_k. Each step is one
    :func:`hessian_vector_product` (the forward and δ passes are shared by
    all of them). Power iteration converges to the eigenvalue of largest
    |λ|: the sharpness λ_max where the Hessian's largest eigenvalue dominates
    its most negative one (as near a minimum, and at the edge of stability),
    else a negative number, which is then |λ|'s largest. The Rayleigh
    quotient's error shrinks as |λ_2/λ_1|^{2k}: 20 steps (the default) give
    a rough estimate, enough to follow sharpness during training, not an
    exact one. On small 3-4-2 tanh nets (mse, batch 5, |λ_2/λ_1| from 0.69 to
    0.84) 20 steps left relative errors from 1e-8 to 0.85, 40 steps 1e-14 to
    1e-3, 100 steps at most 1e-12. jit- and vmap-able: vmap over keys or
    params for many seeds.

    Args:
      net, params, x, y: as for :func:`hessian_vector_product`.
      key: a PRNG key for the random start.
      matrix: ``"hessian"`` (:func:`hessian_vector_product`'s H), or
        ``"ggn"`` (:func:`ggn_vector_product`'s G, positive semi-definite, so
        its largest eigenvalue; needs the cost's ``hessian_sqrt``).
      iters: power-iteration steps, ≥ 1 (static: each value compiles once).

    Returns:
      λ, a scalar of the params' dtype.

    Raises:
      ValueError, TypeError: bad arguments, named, or what
        :func:`hessian_vector_product` refuses; before anything compiles.
    """
    net, params, x, y = checked(net, params, x, y)
    matrix, iters = check_power_iteration(net, matrix, iters)
    check_key(key)
    return _top_eigenvalue(net, matrix, iters, params, x, y, key)


def check_power_iteration(
    net, matrix, iters, names=("matrix", "iters"), caller="top_eigenvalue"
) -> tuple[str, int]:
    """(matrix, iters) checked for ``net``: one of ``MATRICES`` whose products
    the net supports, and an int ≥ 1; errors name them as ``names`` say."""
    matrix = choice(matrix, names[0], MATRICES)
    iters = positive_int(iters, names[1])
    if matrix == "hessian":
        check_second_order(net, caller)
    else:
        check_curvature_cost(net, ("hessian_sqrt",), f"jp.curvature.{caller}")
        check_tangent_maps(net, caller)
    return matrix, iters
