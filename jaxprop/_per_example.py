r"""Per-example gradients, their norms and clipping from one δ backward pass,
and the privacy accounting of DP-SGD.

Every δ rule's δ's are linear in δ^L and computed row by row: run the δ
recursion (``jaxprop._core.backprop.recursion``) from the per-example
output errors δ^L_i = ∂c(ŷ_i, y_i)/∂z^L_i, before the batch reduction, and
row i of each δ^l is example i's own. Example i's update is then

    g_i = ((a^0_i)ᵀ δ^1_i, δ^1_i, ..., (a^{L-1}_i)ᵀ δ^L_i, δ^L_i),
    ‖g_i‖² = Σ_l ‖δ^l_i‖² (‖a^{l-1}_i‖² + 1),

and any weighting Σ_i s_i g_i is one contraction per layer, (a^{l-1})ᵀ (s ⊙
δ^l): norms and clipping never form a (batch, n_{l-1}, n_l) array and need no
second backward pass. This holds for backprop, feedback alignment, direct
feedback alignment, sign symmetry and Kolen-Pollack (rules with a
``Rule.project``), not for ``autodiff`` (its δ's are jax.grad's, not exposed)
nor for a rule given only ``value_and_grads``: those are refused.

Scaling conventions: per-example quantities are those of the per-example
costs c(ŷ_i, y_i), whatever the net's ``reduction``. So Σ_i g_i equals
``net.backprop`` for ``reduction="sum"`` and B times it for ``"mean"`` (batch
B): ``net.backprop`` is the mean of the g_i there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np

from ._core import backprop as bp
from ._core.params import Params
from ._network import MLP, check_xy
from ._validate import fraction, integer, non_negative_number, positive_number
from ._vjp import as_params, check_net, rule_state
from .rules import Rule
from .rules.delta_rules import check_delta_rule, example_deltas

Array = jax.Array


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _per_example(what: str, net: MLP, rule: Rule, params, state, x, y, clip_norm):
    """One δ pass, then ``what``: "grads", "norms" or "clipped" (checked inputs)."""
    layers = net.blocks
    cache, _, deltas = example_deltas(net, rule, params, state, x, y)
    if what == "grads":
        return bp.per_example_weight_grads(layers, cache, deltas)
    if what == "norms":
        return jnp.sqrt(bp.per_example_sq_norms(layers, cache, deltas))
    sq_norms, sums = bp.per_example_sq_norms_and_sums(layers, cache, deltas)
    return sums(bp.clip_factors(sq_norms, clip_norm))


def _checked(net, params, x, y, rule, state):
    net = check_net(net)
    rule = check_delta_rule(rule)
    x, y = check_xy(net, params, x, y)
    params = as_params(params)
    return net, rule, params, rule_state(rule, net, params, state), x, y


def per_example_grads(
    net: MLP, params: Params, x, y, *, rule: Rule | None = None, state=None
) -> Params:
    r"""Every example's own update g_i = ∂c(ŷ_i, y_i)/∂θ for backprop (the
    rule's update for one example otherwise), before the batch reduction.

    One forward and one δ backward pass over the batch, then an outer product
    per example and layer: w_i = (a^{l-1}_i)ᵀ δ^l_i, b_i = δ^l_i (see
    ``jaxprop._per_example``). That is batch·n_{l-1}·n_l numbers per layer:
    for norms and clipping use :func:`per_example_grad_norms` and
    :func:`clipped_grads`, which never form them.

    Σ_i g_i is ``net.backprop(params, x, y)`` for ``reduction="sum"``, and its
    mean is for ``"mean"``.

    Args:
      net, params: the network and its parameters.
      x: (batch, n_0) inputs; y: targets as for ``net.loss``.
      rule: a δ rule (default backprop); ``state``: its state, required when
        it has one.

    Returns:
      A pytree like ``params`` with a leading (batch,) axis on every leaf:
      DenseParams(w: (batch, n_{l-1}, n_l), b: (batch, n_l)).
    """
    args = _checked(net, params, x, y, rule, state)
    return _per_example("grads", *args, None)


def per_example_grad_norms(
    net: MLP, params: Params, x, y, *, rule: Rule | None = None, state=None
) -> Array:
    r"""‖g_i‖ of every example's update g_i (see :func:`per_example_grads`),
    over all parameters, without forming g_i.

    .. math:: ‖g_i‖ = \sqrt{Σ_l ‖δ^l_i‖² (‖a^{l-1}_i‖² + 1)}

    Memory and work are O(batch · Σ_l n_l) beyond the forward pass: no
    (batch, n_{l-1}, n_l) array exists in the compiled program.

    Args:
      as for :func:`per_example_grads`.

    Returns:
      (batch,) norms, the per-example costs' (not scaled by the reduction).
    """
    args = _checked(net, params, x, y, rule, state)
    return _per_example("norms", *args, None)


def _check_clip_norm(clip_norm):
    if isinstance(clip_norm, bool):
        raise TypeError(f"clip_norm must be a positive number; got {clip_norm!r}.")
    if isinstance(clip_norm, (int, float, np.integer, np.floating)):
        if not (clip_norm > 0 and not math.isnan(clip_norm)):
            raise ValueError(f"clip_norm must be positive; got {clip_norm}.")
        return clip_norm
    if getattr(clip_norm, "shape", None) != ():
        raise TypeError(
            f"clip_norm must be a positive number or a scalar array; got "
            f"{type(clip_norm).__name__}"
            + (f" of shape {clip_norm.shape}." if hasattr(clip_norm, "shape") else ".")
        )
    return clip_norm  # a scalar array, possibly traced (not checked then)


def clipped_grads(
    net: MLP,
    params: Params,
    x,
    y,
    clip_norm,
    *,
    rule: Rule | None = None,
    state=None,
) -> Params:
    r"""The sum of the examples' updates, each clipped to norm at most C.

    .. math:: Σ_i g_i \min(1, C/‖g_i‖)

    From one backward pass: the norms as in :func:`per_example_grad_norms`,
    then one weighted contraction per layer, (a^{l-1})ᵀ (s ⊙ δ^l) with s_i =
    min(1, C/‖g_i‖). The sum is not divided by the batch for
    ``reduction="mean"``: it is the clipped sum DP-SGD adds its noise to (see
    ``jp.rules.dp_sgd``). With C = ∞ it is Σ_i g_i.

    Args:
      net, params, x, y, rule, state: as for :func:`per_example_grads`.
      clip_norm: C > 0 (``inf`` for no clipping), a number or a scalar array.

    Returns:
      A pytree like ``params``.
    """
    clip_norm = _check_clip_norm(clip_norm)
    args = _checked(net, params, x, y, rule, state)
    return _per_example("clipped", *args, clip_norm)


def _dp_accounting(caller: str):
    """The ``dp_accounting`` module, or an ImportError that says how to get it."""
    try:
        import dp_accounting
        from dp_accounting import rdp  # noqa: F401  (dp_accounting.rdp below)
    except ImportError as e:
        # Not "pip install 'jaxprop[privacy]'": that name on the package index
        # is an unrelated project (see the README); the extra is for source
        # installs.
        raise ImportError(
            f"jp.{caller} needs the dp-accounting package: pip install "
            f"dp-accounting, or pip install -e '.[privacy]' in jaxprop's source."
        ) from e
    return dp_accounting


def _dp_steps(sampling_rate, steps, delta) -> tuple[float, int, float]:
    """q in (0, 1], steps ≥ 0 and δ in (0, 1), checked and named."""
    q = fraction(sampling_rate, "sampling_rate")
    steps = integer(steps, "steps", low=0)
    d = positive_number(delta, "delta")
    if d >= 1:
        raise ValueError(f"delta must be in (0, 1); got {d}.")
    return q, steps, d


def _dp_sgd_event(dp_accounting, sigma: float, q: float, steps: int):
    """DP-SGD's run as one dp_accounting event: ``steps`` Poisson-sampled
    Gaussian mechanisms (the RDP accountant composes a self-composed event as
    ``compose(event, steps)``: the same numbers)."""
    step = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    return dp_accounting.SelfComposedDpEvent(step, steps)


def dp_epsilon(
    noise_multiplier: float, sampling_rate: float, steps: int, delta: float
) -> float:
    r"""The ε of (ε, δ)-differential privacy of DP-SGD with Poisson sampling.

    ``steps`` compositions of the sampled Gaussian mechanism (each example in
    a step with probability q, noise σ times the clipping norm), accounted by
    Rényi DP (Mironov 2017; Mironov, Talwar & Zhang 2019) with Google's
    ``dp_accounting`` package (``RdpAccountant`` over its default orders,
    add-or-remove-one neighbours), the accounting Opacus and TF Privacy use.
    It bounds a run of ``jp.rules.dp_sgd(C, σ, sampling="poisson",
    sampling_rate=q)`` trained with ``batch_size=None``; see ``dp_sgd`` for
    minibatches. :func:`dp_noise_multiplier` is its inverse in σ.

    Args:
      noise_multiplier: σ ≥ 0 (0 gives ε = ∞).
      sampling_rate: q in (0, 1].
      steps: the number of steps, ≥ 0.
      delta: δ in (0, 1).

    Returns:
      ε as a Python float (``inf`` when nothing bounds it).

    Raises:
      ImportError: without ``dp_accounting`` (``pip install dp-accounting``, or
        the ``privacy`` extra of a source install).
    """
    sigma = non_negative_number(noise_multiplier, "noise_multiplier")
    q, steps, d = _dp_steps(sampling_rate, steps, delta)
    dp_accounting = _dp_accounting("dp_epsilon")
    if steps == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(_dp_sgd_event(dp_accounting, sigma, q, steps))
    return float(accountant.get_epsilon(d))


#: How close :func:`dp_noise_multiplier`'s σ is to the smallest that meets the
#: target (dp_accounting's tolerance, in σ): ε(σ) is within about TOL/σ of the
#: target, relatively.
NOISE_TOLERANCE = 1e-6


def dp_noise_multiplier(
    target_epsilon: float, sampling_rate: float, steps: int, delta: float
) -> float:
    r"""The smallest noise multiplier σ whose DP-SGD run has ε ≤ ``target_epsilon``.

    The inverse of :func:`dp_epsilon` in σ, with its accounting (RDP,
    ``dp_accounting.RdpAccountant``, ``steps`` Poisson-sampled Gaussian
    mechanisms at rate q): dp-accounting's own search,
    ``dp_accounting.calibrate_dp_mechanism``, brackets σ from [0, 1] upwards
    (``LowerEndpointAndGuess``) and runs Brent's method to within
    ``NOISE_TOLERANCE`` (1e-6) in σ, returning a σ whose ε is at most the
    target (never above it: the search checks its root). ε falls as σ grows,
    so ``dp_epsilon(σ, q, steps, δ) ≤ target_epsilon``, and a σ smaller by
    more than the tolerance would exceed it.

    Train with ``jp.rules.dp_sgd(C, σ, sampling="poisson", sampling_rate=q)``
    and ``batch_size=None`` (or q = 1 without sampling) for ε to bound the
    run; see :func:`dp_epsilon`.

    Args:
      target_epsilon: ε > 0, finite (ε = 0 would need σ = ∞).
      sampling_rate: q in (0, 1].
      steps: the number of steps, ≥ 0. With 0 steps nothing is released and
        ε = 0 whatever σ: the answer is 0.0.
      delta: δ in (0, 1).

    Returns:
      σ as a Python float.

    Raises:
      TypeError, ValueError: a bad argument, named.
      ValueError: no σ up to about 2³⁰ reaches the target (a target too small
        for the accountant's numbers).
      ImportError: without ``dp_accounting``, as for :func:`dp_epsilon`.
    """
    target = positive_number(target_epsilon, "target_epsilon")
    q, steps, d = _dp_steps(sampling_rate, steps, delta)
    dp_accounting = _dp_accounting("dp_noise_multiplier")
    if steps == 0:
        return 0.0
    try:
        with _quiet_accountant():
            sigma = dp_accounting.calibrate_dp_mechanism(
                dp_accounting.rdp.RdpAccountant,
                lambda sigma: _dp_sgd_event(dp_accounting, sigma, q, steps),
                target,
                d,
                dp_accounting.LowerEndpointAndGuess(0.0, 1.0),
                tol=NOISE_TOLERANCE,
            )
    except dp_accounting.mechanism_calibration.NoBracketIntervalFoundError:
        raise ValueError(
            f"target_epsilon: no noise multiplier up to 2^30 gives ε ≤ {target:g} "
            f"with sampling_rate {q:g}, {steps} steps and delta {d:g}; ask for a "
            f"larger ε."
        ) from None
    return float(sigma)


@contextlib.contextmanager
def _quiet_accountant():
    """Drops dp_accounting's log lines about the trial σ's of a search (orders
    it skipped, RDP rounded to 0), which say nothing about the answer; the
    ``absl`` logger is left as it was."""
    logger = logging.getLogger("absl")
    quiet = lambda record: "dp_accounting" not in record.pathname  # noqa: E731
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
