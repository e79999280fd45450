"""Differentially private SGD (Abadi et al. 2016) on any δ rule's updates:
:func:`dp_sgd`, a :class:`jaxprop.rules.Rule` whose step clips each
example's update through its δ's (``jaxprop._core.backprop.weight_grads``' scale),
adds Gaussian noise drawn in one fused loop (``jaxprop._core.random``) and, with
Poisson sampling, keeps each example with probability q.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._core import backprop as bp
from .._core.random import fused
from .._validate import fraction, non_negative_number, positive_number
from .delta_rules import (
    Rule,
    check_delta_rule,
    check_state_fits,
    example_deltas,
)

Array = jax.Array


class DPSGDState(NamedTuple):
    """DP-SGD's state: the base rule's, the run's noise key, a step counter and
    the hyperparameters (per run, so that a grid can sweep them).

    Attributes:
      base: the base rule's state (``()`` for backprop).
      key: () PRNG key, the run's own; step t draws from ``fold_in(key, t)``.
      count: () int32, the steps taken (t).
      clip_norm: () C, the per-example gradient norm bound.
      noise_multiplier: () σ; the noise's standard deviation is σC.
      sampling_rate: () q, each example's probability of being in a step's
        Poisson sample (1 and unused without ``sampling="poisson"``).
    """

    base: Any
    key: Array
    count: Array
    clip_norm: Array
    noise_multiplier: Array
    sampling_rate: Array


def _draw(sample, key: Array, shape: tuple[int, ...]) -> Array:
    """``sample(key, shape)``, or on the runs-last path, where ``key``: (runs,)
    has a trailing runs axis, one draw per run along a trailing axis: (*shape,
    runs), each run's numbers those it draws alone."""
    if key.ndim == 0:
        return sample(key, shape)
    return jax.vmap(lambda k: sample(k, shape), out_axes=-1)(key)


def _step_keys(state: DPSGDState, count: int) -> Array:
    """(count,) keys of the step ``state.count``, i-th fold_in(fold_in(key, t),
    i), as fused-Threefry keys (``jaxprop._core.random``: JAX's numbers, drawn in
    one loop with their use). The count fold_ins run as one vectorized hash,
    not count rolled loops. On the runs-last path, where ``state.key`` is
    (runs,): (count, runs)."""

    def keys(key, t):
        key_t = jax.random.fold_in(key, t)
        i = jnp.arange(count, dtype=jnp.uint32)
        return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key_t, i)

    if state.key.ndim == 0:
        return fused(keys(state.key, state.count))
    return fused(jax.vmap(keys, out_axes=1)(state.key, state.count))


#: DP-SGD's ways of drawing each step's examples from the batch it is given.
SAMPLINGS = (None, "poisson")


@functools.cache
def _dp_sgd(
    clip_norm: float,
    noise_multiplier: float,
    base: Rule,
    sampling: str | None,
    sampling_rate: float,
) -> Rule:
    def init(key, net, params):
        if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)  # a raw uint32 key, typed
        key_base, key_noise = jax.random.split(key)
        dtype = params[0].w.dtype
        return DPSGDState(
            base.init(key_base, net, params),
            key_noise,
            jnp.zeros((), jnp.int32),
            jnp.asarray(clip_norm, dtype),
            jnp.asarray(noise_multiplier, dtype),
            jnp.asarray(sampling_rate, dtype),
        )

    def value_and_grads(net, params, state, x, y):
        check_state_fits(rule, net, params, state)
        cache, c, deltas = example_deltas(net, base, params, state.base, x, y)
        c_norm = state.clip_norm
        # min(1, C/‖g_i‖) per example: one more contraction per layer below.
        sq_norms, sums = bp.per_example_sq_norms_and_sums(net.blocks, cache, deltas)
        scale = bp.clip_factors(sq_norms, c_norm)
        n = x.shape[0]
        # Key 0: the Poisson mask; key 1 + j: leaf j's noise.
        keys = _step_keys(state, 1 + len(jax.tree.leaves(params)))
        if sampling == "poisson":
            q = state.sampling_rate
            u = _draw(
                lambda k, shape: jax.random.uniform(k, shape, scale.dtype),
                keys[0],
                (n,),
            )
            scale = scale * (u < q)  # each example kept with probability q
            n = q * n  # the expected sample size (Abadi et al. 2016)
        grads = sums(scale)
        # N(0, I) per parameter array, each from its own key, fold_in(step key,
        # 1 + leaf index): one draw per layer's W and b, fused with the add
        # (rather than one long draw cut into the leaves: docs/design.md,
        # "DP-SGD's noise: one fused Threefry loop"), the Threefry hash
        # included (fused keys).
        leaves, treedef = jax.tree.flatten(grads)
        std = state.noise_multiplier * c_norm
        noisy = []
        for j, g in enumerate(leaves):
            shape = g.shape[: g.ndim - state.key.ndim]  # runs-last: (..., runs)
            normal = lambda k, s, g=g: jax.random.normal(k, s, g.dtype)  # noqa: E731
            noisy.append(g + std * _draw(normal, keys[1 + j], shape))
        grads = jax.tree.unflatten(treedef, noisy)
        if net.reduction == "mean":
            grads = jax.tree.map(lambda g: g / n, grads)
        base_state = (
            state.base if base.update is None else base.update(state.base, grads)
        )
        state = state._replace(base=base_state, count=state.count + 1)
        return (
            jnp.sum(c, axis=0) if net.reduction == "sum" else jnp.mean(c, axis=0),
            grads,
            state,
        )

    hyperparams = DP_SGD_HYPERPARAMS
    if sampling is None:
        hyperparams = (*hyperparams[:2], ("sampling_rate", _no_sampling_rate))
    name = f"dp_sgd({base.name})"
    rule = Rule(init, value_and_grads, base.runs_last, None, None, hyperparams, name)
    return rule


def _no_sampling_rate(value, name: str):
    """Refuses a sampling rate where nothing reads it (a grid would train each
    of its points alike)."""
    raise ValueError(
        f"{name}: sampling_rate has no effect without sampling='poisson' (build "
        f"the rule with jp.rules.dp_sgd(..., sampling='poisson', sampling_rate=q))."
    )


#: DP-SGD's numbers and their constraints: the constructor's arguments and a
#: grid's (``sampling_rate`` only with ``sampling="poisson"``, the one sampling
#: that reads it; without it, a grid's sampling_rate is refused).
DP_SGD_HYPERPARAMS = (
    ("clip_norm", positive_number),
    ("noise_multiplier", non_negative_number),
    ("sampling_rate", fraction),
)


def dp_sgd(
    clip_norm: float,
    noise_multiplier: float,
    base: Rule | None = None,
    sampling: str | None = None,
    sampling_rate: float | None = None,
) -> Rule:
    r"""Differentially private SGD (Abadi et al. 2016) on any δ rule's updates.

    Each step, with g_i the base rule's update for example i alone (its δ's
    before the batch reduction, see ``jp.per_example_grads``),

    .. math::
        ĝ = \frac{1}{n} \Big( Σ_i m_i \, g_i \min(1, C/‖g_i‖)
            + \mathcal{N}(0, σ^2 C^2 I) \Big),

    where the Σ is one weighted contraction per layer over the examples'
    δ's (``jp.clipped_grads``: no second backward pass, no per-example
    gradient formed), the noise is drawn for every parameter, and n is the
    net's reduction: 1 for ``"sum"``, the batch size B for ``"mean"``, or q·B
    with Poisson sampling (the expected sample size, as Abadi et al. and
    Opacus normalize; the realized size would leak whether an example was
    sampled). Without sampling, m_i = 1; with ``sampling="poisson"`` each
    example of the batch the trainer gives is kept with probability q
    independently, m_i ~ Bernoulli(q), drawn from the rule state's key.

    For ``jp.dp_epsilon(noise_multiplier, sampling_rate, steps, delta)`` to
    bound a run's privacy loss, each step must be a Poisson sample of the
    whole data set: train with ``batch_size=None`` (every step sees all the
    data) and ``sampling="poisson"``. Minibatches drawn by shuffling, as the
    trainer's ``batch_size`` does, are commonly accounted as Poisson samples
    with q = B/N; that is an approximation, not a guarantee.

    The noise key is the run's (``rule.init``'s key, split from the base
    rule's), and step t draws from ``fold_in(key, t)``: runs are reproducible
    per seed, independent across seeds and vmappable. The numbers are
    ``jax.random.normal``'s for those keys, computed in one fused loop with
    the add (``jaxprop._core.random``; docs/design.md, "DP-SGD's noise: one
    fused Threefry loop"). ``clip_norm``,
    ``noise_multiplier`` and ``sampling_rate`` are kept in the state
    (:class:`DPSGDState`) as arrays, so ``train_seeds(hparams=...)`` can sweep
    them. A base rule whose state learns (Kolen-Pollack) learns from the
    private updates ĝ (what W receives), which keeps B's update private too.
    The loss the rule returns (the trainer's log) is the batch's plain loss,
    a diagnostic that is not private.

    Args:
      clip_norm: C > 0, the bound on each example's update norm ‖g_i‖ (over
        every parameter of the net).
      noise_multiplier: σ ≥ 0; the noise's standard deviation is σC.
      base: the δ rule whose updates are clipped (default backprop). Rules
        without a projection (autodiff, dp_sgd, a user's Rule given only
        value_and_grads) are refused: clipping needs the per-example δ's.
      sampling: None (every example of the batch, m_i = 1) or ``"poisson"``.
      sampling_rate: q in (0, 1], with ``sampling="poisson"`` only.

    Returns:
      A :class:`Rule` whose state is a :class:`DPSGDState`; equal arguments
      give the same rule (one compiled program).

    Raises:
      TypeError, ValueError: a bad argument, named, before anything compiles.
    """
    check = dict(DP_SGD_HYPERPARAMS)
    c_norm = check["clip_norm"](clip_norm, "clip_norm")
    sigma = check["noise_multiplier"](noise_multiplier, "noise_multiplier")
    base = check_delta_rule(base, "base")
    if not isinstance(sampling, (str, type(None))) or sampling not in SAMPLINGS:
        raise ValueError(
            f"Unknown sampling {sampling!r}; expected one of {list(SAMPLINGS)}."
        )
    if sampling is None:
        if sampling_rate is not None:
            raise ValueError(
                "sampling_rate goes with sampling='poisson'; got sampling=None."
            )
        q = 1.0
    else:
        if sampling_rate is None:
            raise ValueError("sampling='poisson' needs sampling_rate in (0, 1].")
        q = check["sampling_rate"](sampling_rate, "sampling_rate")
    return _dp_sgd(c_norm, sigma, base, sampling, q)
