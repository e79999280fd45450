r"""The δ backward pass as a JAX VJP: an MLP block inside any JAX model.

``loss_with_vjp(net, rule)`` and ``apply_with_vjp(net, rule)`` are
``jax.custom_vjp`` functions whose backward is the rule's δ recursion
(``jaxprop._core.backprop.recursion``), written by hand: no autodiff
runs inside them.
``jax.grad`` of any function that calls them runs that recursion for the MLP's
part and JAX's own VJPs around it.

Given the cotangent of the block's output, the backward pass is

    δ^L = g ⊙ σ_L'(z^L)          (apply: g = ∂L/∂ŷ from downstream code)
    δ^L = g · ∂L/∂z^L            (loss: g the scalar cotangent, 1 under jax.grad)
    δ^l = project(l, δ^{l+1}, δ^L) ⊙ σ'(z^l),   l = L−1, ..., 1
    ∂L/∂W^l = (a^{l-1})ᵀ δ^l,   ∂L/∂b^l = Σ_batch δ^l
    ∂L/∂x = δ^1 (W^1)ᵀ           (the recursion's step to δ^0, without a σ')

With backprop's projection, δ^{l+1} (W^{l+1})ᵀ, these are the exact
gradients. With another δ rule's they are that rule's updates.

∂L/∂x uses the forward weights W^1 for every rule. A rule's feedback path
runs between the MLP's layers (feedback alignment's B^2..B^L, DFA's B^l from
δ^L to the hidden layers); none has a matrix for the input, and the step from
δ^1 to x is the same chain rule through z^1 = x W^1 + b^1 that gives the
rule's own ∂W^1 = xᵀ δ^1. So a layer below the block receives the rule's δ^1
carried through the true first layer: exact for backprop, and for the other
rules the input-side counterpart of the update W^1 already receives.
"""

from __future__ import annotations

import functools

import jax

from ._core import backprop as bp
from ._core.backprop import Cache
from ._core.params import DenseParams, Params
from ._network import MLP, check_net, check_x, check_xy, loss_and_output_delta
from .rules import Rule
from .rules.delta_rules import check_delta_rule, check_rule_state

Array = jax.Array


def _backward(
    net: MLP, rule: Rule, params: Params, state, cache: Cache, delta: Array
) -> tuple[Params, Array]:
    """(∂L/∂params, ∂L/∂x: (batch, n_0)) from δ^L: (batch, n_L) by the rule's
    δ recursion (the equations in the module docstring)."""
    layers, project = net.blocks, rule.project(params, state)
    deltas = bp.recursion(layers, cache, delta, net.sigma, project, rule.name)
    dx = layers[0].adjoint(params[0].w, deltas[0], cache.a[0])  # δ^1 (W^1)ᵀ
    return bp.weight_grads(layers, cache, deltas), dx


def rule_state(rule: Rule, net: MLP, params: Params, state):
    """The rule state to use: ``state`` checked against the rule, or ``()``
    for a rule without one; a clear error if a needed state is missing."""
    key = jax.random.key(0)  # shapes only
    if state is None:
        expected = jax.eval_shape(lambda k, p: rule.init(k, net, p), key, params)
        if jax.tree.leaves(expected):
            raise ValueError(
                "state is required: this rule has a state (e.g. feedback "
                "matrices); pass state=rule.init(key, net, params) as the "
                "last argument."
            )
        return expected  # no leaves: () or an empty NamedTuple
    return check_rule_state(rule, net, params, state, key, "state")


def as_params(params) -> Params:
    """params as a tuple of DenseParams (the custom VJP's cotangent has its
    shape)."""
    return tuple(DenseParams(*theta) for theta in params)


@functools.cache
def _loss_core(net: MLP, rule: Rule):
    @jax.custom_vjp
    def loss(params, x, y, state):
        _, cache = bp.forward(net.blocks, params, x, net.sigma, net.sigma_out)
        return loss_and_output_delta(net, cache, y)[0]

    def fwd(params, x, y, state):
        _, cache = bp.forward(net.blocks, params, x, net.sigma, net.sigma_out)
        value, delta = loss_and_output_delta(net, cache, y)
        return value, (params, cache, delta, state)

    def bwd(res, g):
        params, cache, delta, state = res
        grads, dx = _backward(net, rule, params, state, cache, g * delta)
        return grads, dx, None, None  # targets and state: zero cotangents

    loss.defvjp(fwd, bwd)
    return jax.jit(loss)


@functools.cache
def _apply_core(net: MLP, rule: Rule):
    @jax.custom_vjp
    def apply(params, x, state):
        return bp.forward(net.blocks, params, x, net.sigma, net.sigma_out)[0]

    def fwd(params, x, state):
        y_hat, cache = bp.forward(net.blocks, params, x, net.sigma, net.sigma_out)
        return y_hat, (params, cache, state)

    def bwd(res, g):
        params, cache, state = res
        z, a = cache.z[-1], cache.a[-1]
        delta = g * net.sigma_out.derivative(z, a)  # δ^L = g ⊙ σ_L'(z^L)
        grads, dx = _backward(net, rule, params, state, cache, delta)
        return grads, dx, None

    apply.defvjp(fwd, bwd)
    return jax.jit(apply)


def loss_with_vjp(net: MLP, rule: Rule | None = None):
    r"""``net``'s loss as a function whose VJP is ``rule``'s δ backward pass.

    ``f = loss_with_vjp(net, rule)`` computes ``f(params, x, y) == net.loss(params,
    x, y)``; ``jax.grad(f, argnums=(0, 1))`` runs the hand-written δ recursion
    (equations in ``jaxprop._vjp``) and gives ``(∂L/∂params, ∂L/∂x)``, with
    ∂L/∂x = δ^1 (W^1)ᵀ. With backprop (the default) this is the gradient,
    equal to ``jax.grad(net.loss)`` (the oracle, which stays plain autodiff);
    with another δ rule it is that rule's update, so feedback alignment can
    train an MLP block inside any JAX model. ``f`` works under ``jax.jit``,
    ``jax.vmap`` (over seeds: stacked params and states; over examples: x of
    shape (n_0,)) and inside ``jax.grad`` of a larger function.

    Targets are constants: the cotangent for y is zero (as after
    ``jax.lax.stop_gradient``); differentiate ``net.loss`` for ∂L/∂y. The rule
    state gets a zero cotangent too, and a state that learns is not updated
    by a VJP: Kolen-Pollack's B update is ``rule.update(state, grads)``, to be
    applied by the caller after each step. As for any ``jax.custom_vjp``
    function, forward mode (``jax.jvp``, ``jax.jacfwd``) is not defined.

    Args:
      net: the network.
      rule: a δ rule (``jp.rules.backprop()`` if None): one with a projection,
        so not ``autodiff`` (use ``net.loss``) or ``dp_sgd`` (clipping and
        noise are no VJP; use its ``value_and_grads``).

    Returns:
      ``f(params, x, y, state=None) -> ()`` loss. x: (batch, n_0) or (n_0,); y
      as for ``net.loss``; ``state``: the rule's state (``rule.init(key, net,
      params)``), required when the rule has one.

    Raises:
      TypeError, ValueError: a bad net or rule here, bad arguments in ``f``
        (before anything compiles).
    """
    net = check_net(net)
    rule = check_delta_rule(rule)
    core = _loss_core(net, rule)

    def f(params, x, y, state=None):
        x, y = check_xy(net, params, x, y)
        state = rule_state(rule, net, params, state)
        return core(as_params(params), x, y, state)

    return f


def apply_with_vjp(net: MLP, rule: Rule | None = None):
    r"""``net``'s forward pass as a function whose VJP is ``rule``'s δ pass.

    ``apply = apply_with_vjp(net, rule)`` computes ``apply(params, x) ==
    net.forward(params, x)``. Its VJP takes the cotangent g = ∂L/∂ŷ from any
    downstream JAX code (a loss of one's own, more layers) and returns the
    rule's ``(∂L/∂params, ∂L/∂x)`` from δ^L = g ⊙ σ_L'(z^L) by the δ recursion
    (see :func:`loss_with_vjp`; the equations are in ``jaxprop._vjp``).

    Args:
      net: the network.
      rule: a δ rule (``jp.rules.backprop()`` if None).

    Returns:
      ``apply(params, x, state=None) -> ŷ``: (batch, n_L), or (n_L,) for x of
      shape (n_0,). ``state`` as for :func:`loss_with_vjp`.

    Raises:
      TypeError, ValueError: a bad net or rule here, bad arguments in
        ``apply`` (before anything compiles).
    """
    net = check_net(net)
    rule = check_delta_rule(rule)
    core = _apply_core(net, rule)

    def apply(params, x, state=None):
        x, unbatched = check_x(net, params, x)
        state = rule_state(rule, net, params, state)
        y_hat = core(as_params(params), x, state)
        return y_hat[0] if unbatched else y_hat

    return apply
