r"""K-FAC as a rule (Martens & Grosse 2015): the gradient preconditioned by the
Kronecker-factored GGN, with running factors in the rule's state.

Each step, from one forward pass, the δ pass of the loss (the gradient ∂L) and
one more δ pass of targets drawn from the model's predictive distribution (or,
``exact=True``, one per column of the cost's Hessian root: KFLR's factors),
every layer's factors (``jaxprop._core.curvature``: A from the layer's inputs
with a column of ones for the bias, G from the δ columns) enter running
averages,

.. math::
    Ā_t = ε_t Ā_{t-1} + (1 − ε_t) A_t,\qquad
    Ḡ_t = ε_t Ḡ_{t-1} + (1 − ε_t) G_t,\qquad ε_1 = 0,\ ε_t = ema,

and the update handed to the optimizer is, per layer with θ = [W; b] as the
matrix Γ = [∂W; ∂b]: (n_in + 1, n_out),

.. math::
    U = (Ā + π \sqrt{λ}\, I)^{-1}\; Γ\; (Ḡ + \frac{\sqrt{λ}}{π} I)^{-1},
    \qquad π = \sqrt{\frac{\operatorname{tr} Ā / (n_{in} + 1)}
                          {\operatorname{tr} Ḡ / n_{out}}},

Martens & Grosse's factored Tikhonov damping (section 6.3) of λ = ``damping``
(π = 1 where a trace is 0). As (Ā ⊗ Ḡ) vec(U) = vec(Ā U Ḡ) for row-major vec,
λ = 0 gives U = (Ā ⊗ Ḡ)⁻¹ vec Γ: with exact factors and ``ema=0``, the Newton
step for a network whose GGN block is exactly Kronecker (one Dense layer with a
Gauss-Newton loss: linear least squares), which ``optax.sgd(1.0)`` takes.

Every step factorizes (Cholesky) each layer's two damped factors, one run at
a time under ``vmap`` (``lax.map``: see ``_damped_solve_over_runs``). There
is no "invert every k steps" option: under ``vmap``, whose ``cond`` runs both
branches, it would not skip the work.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_factor, cho_solve

from .._core import backprop as bp
from .._core.curvature import (
    KFactors,
    as_matrix,
    check_curvature_cost,
    check_kfactors,
    from_matrix,
    net_kfactors,
)
from .._network import loss_and_output_delta
from .._validate import in_unit_interval, integer, non_negative_number
from .delta_rules import Rule, check_state_fits

Array = jax.Array


class KFACState(NamedTuple):
    """K-FAC's state: the running factors, the key of its target draws, a step
    counter and its numbers (per run, so that a grid can sweep them).

    Attributes:
      factors: one ``KFactors(A, G)`` per layer, the running averages
        (zeros before the first step).
      key: () PRNG key, the run's own; step t draws targets from
        ``fold_in(key, t)``.
      count: () int32, the steps taken (t).
      damping: () λ, the factored Tikhonov damping.
      ema: () ε, the running averages' decay.
    """

    factors: tuple[KFactors, ...]
    key: Array
    count: Array
    damping: Array
    ema: Array


#: K-FAC's numbers and their constraints: the constructor's and a grid's.
KFAC_HYPERPARAMS = (
    ("damping", non_negative_number),
    ("ema", in_unit_interval),
)


@jax.custom_batching.custom_vmap
def _damped_solve(a: Array, g: Array, damping: Array, m: Array) -> Array:
    """(A + π√λ I)⁻¹ m (G + √λ/π I)⁻¹ by two Cholesky factorizations;
    a: (r, r), g: (n, n), m: (r, n)."""
    n_a, n_g = a.shape[0], g.shape[0]
    mean_a, mean_g = jnp.trace(a) / n_a, jnp.trace(g) / n_g
    both = (mean_a > 0) & (mean_g > 0)
    pi = jnp.where(both, jnp.sqrt(mean_a / jnp.where(both, mean_g, 1)), 1)
    root = jnp.sqrt(damping)
    chol_a = cho_factor(a + pi * root * jnp.eye(n_a, dtype=a.dtype))
    chol_g = cho_factor(g + root / pi * jnp.eye(n_g, dtype=g.dtype))
    return cho_solve(chol_g, cho_solve(chol_a, m).T).T


@_damped_solve.def_vmap
def _damped_solve_over_runs(axis_size, in_batched, a, g, damping, m):
    # One LAPACK call per run (lax.map), not one batched call: jaxlib's
    # batched CPU kernels share their batch out over XLA's thread pool and can
    # hang for good when two CPU devices run them at once (docs/curvature.md,
    # "K-FAC as a rule"; tests/test_kfac_rule.py). On a CPU the batched kernel
    # loops over the batch anyway.
    args = tuple(
        x if batched else jnp.broadcast_to(x, (axis_size, *jnp.shape(x)))
        for x, batched in zip((a, g, damping, m), in_batched, strict=True)
    )
    return jax.lax.map(lambda t: _damped_solve(*t), args), True


def precondition(block, grads, f: KFactors, damping: Array):
    """The layer's update (Ā + π√λ I)⁻¹ Γ (Ḡ + √λ/π I)⁻¹, like ``grads``."""
    return from_matrix(block, _damped_solve(f.A, f.G, damping, as_matrix(block, grads)))


@functools.cache
def _kfac(damping: float, ema: float, exact: bool, samples: int) -> Rule:
    def init(key, net, params):
        needs = ("hessian_sqrt",) if exact else ("sample_targets",)
        check_curvature_cost(net, needs, "jp.rules.kfac")
        check_kfactors(net, "jp.rules.kfac")
        if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)  # a raw uint32 key, typed
        dtype = params[0].w.dtype
        factors = []
        for block, theta in zip(net.blocks, params, strict=True):
            rows, cols = as_matrix(block, theta).shape
            factors.append(
                KFactors(jnp.zeros((rows, rows), dtype), jnp.zeros((cols, cols), dtype))
            )
        return KFACState(
            tuple(factors),
            key,
            jnp.zeros((), jnp.int32),
            jnp.asarray(damping, dtype),
            jnp.asarray(ema, dtype),
        )

    def value_and_grads(net, params, state, x, y):
        check_state_fits(rule, net, params, state)
        _, cache = bp.forward(net.blocks, params, x, net.sigma, net.sigma_out)
        loss, delta = loss_and_output_delta(net, cache, y)
        through = bp.through_weights(params)
        deltas = bp.recursion(net.blocks, cache, delta, net.sigma, through)
        grads = bp.weight_grads(net.blocks, cache, deltas)
        key = None if exact else jax.random.fold_in(state.key, state.count)
        new = net_kfactors(net, params, cache, y, key, samples)
        decay = jnp.where(state.count == 0, 0, state.ema)
        factors = jax.tree.map(
            lambda old, f: decay * old + (1 - decay) * f, state.factors, new
        )
        updates = tuple(
            precondition(block, g, f, state.damping)
            for block, g, f in zip(net.blocks, grads, factors, strict=True)
        )
        return loss, updates, state._replace(factors=factors, count=state.count + 1)

    name = "kfac" + ("(exact)" if exact else "")
    rule = Rule(init, value_and_grads, False, hyperparams=KFAC_HYPERPARAMS, name=name)
    return rule


def kfac(
    damping: float, ema: float = 0.95, *, exact: bool = False, samples: int = 1
) -> Rule:
    r"""K-FAC (Martens & Grosse 2015): the gradient preconditioned by the
    damped inverse of running Kronecker factors of the GGN, as a rule.

    The update each step is (Ā + π√λ I)⁻¹ [∂W; ∂b] (Ḡ + √λ/π I)⁻¹ per layer
    (``jaxprop.rules.kfac``); give it a plain optimizer, e.g.
    ``optax.sgd(η)`` (with momentum, as Martens & Grosse use, or without).
    The factors are those of ``jp.curvature.kfac``, with the same scaling
    (the loss's reduction). It costs one more δ pass per step (per sample),
    two Cholesky factorizations of each layer's (n_in + 1)- and n_out-square
    factors, and their solves: for wide layers the factorizations dominate.

    Train it with ``jp.train``/``jp.train_seeds(..., rule=jp.rules.kfac(λ))``:
    its state (the running factors, the run's key, the step count and the
    two numbers) is per run, vmapped over seeds, checkpointed and resumed like
    every rule's; a grid sweeps ``rule.damping`` and ``rule.ema``. The cost
    needs ``sample_targets`` (``hessian_sqrt`` with ``exact=True``): mse and
    the cross-entropies have them, the hinge has neither. Dense and Conv
    layers (Grosse & Martens 2016's KFC factors, ``jp.curvature.kfac``).

    Args:
      damping: λ ≥ 0, the Tikhonov damping, split between the factors by π
        (Martens & Grosse's section 6.3). λ = 0 needs invertible factors:
        a singular factor gives non-finite updates, and the trainer marks the
        run diverged.
      ema: ε in [0, 1), the running averages' decay (the first step's
        factors are taken whole); 0 uses each step's factors alone.
      exact: KFLR's factors (Botev et al. 2017): the exact loss Hessian, one
        δ pass per output, in place of sampled targets.
      samples: target draws per example per step (Monte Carlo factors), ≥ 1.

    Returns:
      A :class:`jaxprop.rules.Rule` named ``"kfac"`` (``"kfac(exact)"``).
    """
    check = dict(KFAC_HYPERPARAMS)
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be True or False; got {exact!r}.")
    return _kfac(
        check["damping"](damping, "damping"),
        check["ema"](ema, "ema"),
        exact,
        integer(samples, "samples", low=1),
    )
