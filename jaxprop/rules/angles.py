"""How well a rule's updates align with backprop's: :func:`alignment`, the
angles per layer between the rule's weight updates and δ's and backprop's, and
between W and a feedback B of its shape."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._core import backprop as bp
from .._core.params import Params
from .._network import MLP, check_xy, loss_and_output_delta
from .delta_rules import Rule, autodiff, check_rule, check_state_fits, through_w

Array = jax.Array


class Alignment(NamedTuple):
    """Angles in degrees between a rule and backprop, per layer: (L,) arrays.

    Attributes:
      grad: between the rule's (∂W^l, ∂b^l) and backprop's, flattened together.
      delta: between the rule's δ^l and backprop's δ^l, per example, averaged
        over the batch (the measure of Nøkland 2016 and Refinetti et al. 2021;
        NaN for examples where either δ is zero are left out of the average).
      feedback: between W^l and the rule's B^l where B^l has W^l's shape
        (feedback alignment, Kolen-Pollack: layers 2..L); NaN elsewhere.
    """

    grad: Array
    delta: Array
    feedback: Array


def _angle(u: Array, v: Array, axis=None) -> Array:
    """Degrees between u and v (over ``axis``); NaN if either is zero."""
    dot = jnp.sum(u * v, axis=axis)
    norms = jnp.sqrt(jnp.sum(u * u, axis=axis) * jnp.sum(v * v, axis=axis))
    cos = jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1), jnp.nan)
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1, 1)))


def _rows(delta: Array) -> Array:
    """δ^l as one row per example: (batch, size of z^l)."""
    return delta.reshape(delta.shape[0], -1)


def alignment(net: MLP, rule: Rule, params: Params, state, x, y) -> Alignment:
    """How well a rule's updates align with backprop's at ``params`` on (x, y).

    One definition for every rule (see :class:`Alignment`); every rule gets
    ``grad`` (and ``feedback`` if its state has a ``feedback`` of W's shapes);
    ``delta`` is measured for δ rules (a ``Rule.project``) and autodiff, and
    is NaN for :func:`dp_sgd` (whose per-example δ's are its base's,
    rescaled) and for rules given only ``value_and_grads``.

    Args:
      net, params: the network and its parameters.
      rule, state: the rule and the run's rule state.
      x: (batch, n_0); y: targets as for ``net.loss``.

    Returns:
      An :class:`Alignment` of (L,) arrays, degrees.
    """
    check_rule(rule)
    x, y = check_xy(net, params, x, y)
    check_state_fits(rule, net, params, state)
    layers = net.blocks
    _, cache = bp.forward(layers, params, x, net.sigma, net.sigma_out)
    _, delta = loss_and_output_delta(net, cache, y)
    true = bp.recursion(layers, cache, delta, net.sigma, bp.through_weights(params))
    true_grads = bp.weight_grads(layers, cache, true)
    _, grads, _ = rule.value_and_grads(net, params, state, x, y)
    flat = lambda g: jnp.concatenate([g.w.ravel(), g.b.ravel()])  # noqa: E731
    grad = jnp.stack(
        [_angle(flat(g), flat(t)) for g, t in zip(grads, true_grads, strict=True)]
    )
    make_project = rule.project
    if rule is autodiff():
        make_project = through_w  # its δ's are backprop's
    mine = (
        None
        if make_project is None
        else bp.recursion(
            layers, cache, delta, net.sigma, make_project(params, state), rule.name
        )
    )
    nan = jnp.full((net.n_layers,), jnp.nan, x.dtype)
    delta_angles = (
        nan
        if mine is None
        else jnp.stack(
            [
                jnp.nanmean(_angle(_rows(m), _rows(t), axis=-1))
                for m, t in zip(mine, true, strict=True)
            ]
        )
    )
    feedback = nan
    fb = getattr(state, "feedback", None)
    if fb is not None and [b.shape for b in fb] == [p.w.shape for p in params[1:]]:
        angles = [
            _angle(b.ravel(), p.w.ravel()) for b, p in zip(fb, params[1:], strict=True)
        ]
        feedback = nan.at[1:].set(jnp.stack(angles))
    return Alignment(grad, delta_angles, feedback)
