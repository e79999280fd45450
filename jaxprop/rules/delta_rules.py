r"""Credit-assignment rules as values: backprop and rules jax.grad cannot express.

A :class:`Rule` is a NamedTuple of two pure functions, as an optax
``GradientTransformation`` is:

    state = rule.init(key, net, params)        # the run's rule state (a pytree)
    loss, grads, state = rule.value_and_grads(net, params, state, x, y)

Every rule below is the library's forward pass, its output error δ^L (true for
every rule) and its δ recursion (``jaxprop._core.backprop.recursion``)
with another projection in the step δ^l = project(l, δ^{l+1}, δ^L) ⊙ σ'(z^l):

============================  ================================================
rule                          project(l, δ^{l+1}, δ^L)
============================  ================================================
backprop                      δ^{l+1} (W^{l+1})ᵀ
feedback_alignment            δ^{l+1} (B^{l+1})ᵀ, B fixed, random (Lillicrap
                              et al. 2016)
direct_feedback_alignment     δ^L B^l, B^l: (n_L, n_l) fixed, random (Nøkland
                              2016)
sign_symmetry                 δ^{l+1} sign(W^{l+1})ᵀ (Liao, Leibo & Poggio 2016)
kolen_pollack                 δ^{l+1} (B^{l+1})ᵀ with B learned:
                              B ← (1 − decay) B − learning_rate ∂W (Akrout et
                              al. 2019)
============================  ================================================

The projection is the rule's ``Rule.project`` field: with it, a rule is a *δ
rule* whose δ's are linear in δ^L, example by example, and it also serves
``jp.loss_with_vjp`` and ``jp.apply_with_vjp`` (its δ pass as a JAX VJP),
per-example gradients, norms and clipping (``jp.per_example_grads``, ...) and
``jp.rules.dp_sgd`` (``privacy.py``), which clips and noises any δ rule's
per-example updates (Abadi et al. 2016). How a rule aligns with backprop is
``jp.alignment`` (``angles.py``); Kolen-Pollack's paired optimizer,
:func:`kolen_pollack_sgd`, is in ``pairing.py``.

The rules that put another weight in W^{l+1}'s place (feedback alignment,
sign symmetry, Kolen-Pollack, and backprop with W itself) hand it to each
layer's adjoint (``jaxprop._core.backprop.Through``); direct feedback alignment
and user rules give layer l's signal itself.

The building blocks (:func:`forward`, :func:`output_delta`,
:func:`delta_recursion`, :func:`weight_grads`, :func:`contract`) are public, so
a rule of one's own is a few lines and trains with ``jp.train_seeds`` unchanged
(see docs/rules.md's direct random target projection); :func:`delta_rule` makes
a δ rule from a projection. They do no validation (the trainer checks its
inputs once) and work on the runs-last arrays of the tiny-network fast path: a
user rule that uses them, elementwise operations and :func:`contract` for
products keeps that path.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._core import backprop as bp
from .._core.backprop import Cache
from .._core.layers import Dense, out_sizes
from .._core.params import Params
from .._network import MLP, loss_and_output_delta
from .._validate import positive_number
from .pairing import KOLEN_POLLACK_HYPERPARAMS, NUMBERS

Array = jax.Array


class Rule(NamedTuple):
    """A credit-assignment rule: two pure functions, a flag, and optionally the
    projection that makes it a δ rule.

    ``Rule(init, value_and_grads)`` is a complete rule for the trainer. A rule
    that also gives ``project`` is a *δ rule*: its updates are the δ recursion
    with that projection, ``weight_grads(cache, delta_recursion(net, cache,
    δ^L, project(params, state)))``, so its δ's are linear in δ^L, example by
    example. Only δ rules work with ``jp.loss_with_vjp``, ``jp.apply_with_vjp``,
    the per-example gradients and clipping (``jp.per_example_grads``, ...) and
    as the base of :func:`dp_sgd`; :func:`delta_rule` builds one from a
    projection.

    Attributes:
      init: ``(key, net, params) -> state``, the run's rule state (a pytree of
        arrays; ``()`` when there is none). ``key`` is the run's own.
      value_and_grads: ``(net, params, state, x, y) -> (loss, grads, state)``;
        ``grads`` is a pytree like ``params`` (the update direction the
        optimizer receives), ``state`` the next state. x: (batch, n_0).
      runs_last: whether ``value_and_grads`` may run on the runs-last arrays of
        the tiny-network fast path (true for rules built from this module's
        blocks; false for ``autodiff``).
      project: None, or ``(params, state) -> project`` with ``project(l,
        δ^{l+1}, δ^L) -> (batch, n_l)``, the signal that reaches layer l before
        σ'(z^l) in the δ recursion (see the table above), or a
        ``jaxprop._core.backprop.Through`` of the weights each layer's adjoint
        takes in W's place (the built-in rules but DFA). None for
        ``autodiff``, :func:`dp_sgd` and rules given only ``value_and_grads``.
      update: None, or ``(state, grads) -> state`` for a δ rule whose state
        learns from the updates (Kolen-Pollack's B); ``value_and_grads``
        applies it after each step.
      hyperparams: the numbers of the state (fields of a NamedTuple state)
        that a ``hparams`` grid may set, each with the check its constructor
        applies to it: ``((name, check), ...)``, ``check(value, argname)``
        returning the value or raising a ValueError or TypeError that names
        ``argname`` (``jaxprop._validate``'s checks). None: every scalar
        floating field of the state, checked finite.
      name: the rule's name in messages.
    """

    init: Callable[..., Any]
    value_and_grads: Callable[..., tuple[Array, Params, Any]]
    runs_last: bool = True
    project: Callable[..., Callable] | None = None
    update: Callable[..., Any] | None = None
    hyperparams: tuple[tuple[str, Callable[[Any, str], Any]], ...] | None = None
    name: str = "rule"


class FeedbackState(NamedTuple):
    """Feedback matrices of a rule.

    Attributes:
      feedback: feedback_alignment and kolen_pollack: (B^2, ..., B^L), B^l of
        W^l's shape (n_{l-1}, n_l); direct_feedback_alignment: (B^1, ...,
        B^{L-1}), B^l: (n_L, n_l).
    """

    feedback: tuple[Array, ...]


class KolenPollackState(NamedTuple):
    """Kolen-Pollack's learned feedback and its hyperparameters (vmappable).

    Attributes:
      feedback: (B^2, ..., B^L), B^l: (n_{l-1}, n_l).
      learning_rate, decay: () scalars of the B update.
    """

    feedback: tuple[Array, ...]
    learning_rate: Array
    decay: Array


# ------------------------------------------------------------ building blocks
def forward(net: MLP, params: Params, x: Array) -> tuple[Array, Cache]:
    """ŷ = a^L and the cache (a^0..a^L, z^1..z^L) of the forward pass."""
    return bp.forward(net.blocks, params, x, net.sigma, net.sigma_out)


def output_delta(net: MLP, cache: Cache, y: Array) -> tuple[Array, Array]:
    """(L, δ^L = ∂L/∂z^L: (batch, n_L)), the batch reduction included."""
    return loss_and_output_delta(net, cache, y)


def delta_recursion(net: MLP, cache: Cache, delta: Array, project) -> tuple:
    """(δ^1, ..., δ^L) from δ^L with ``project(l, δ^{l+1}, δ^L) -> (batch, n_l)``
    in place of δ^{l+1} (W^{l+1})ᵀ (see ``jaxprop._core.backprop.recursion``)."""
    return bp.recursion(net.blocks, cache, delta, net.sigma, project)


def weight_grads(cache: Cache, deltas, scale: Array | None = None) -> Params:
    """(DenseParams((a^{l-1})ᵀ δ^l, Σ_batch δ^l) for each l) of an MLP, whose
    Dense layers are read off the shapes of a^{l-1} and δ^l; with ``scale`` s:
    (batch,), each example's δ^l_i weighted by s_i first.

    Kept, for this release, for rules written before layers had kinds: each
    layer's own ``net.blocks[l - 1].grads(a^{l-1}, δ^l, scale)`` works for
    every kind."""
    layers = tuple(
        Dense(a.shape[1], d.shape[1]) for a, d in zip(cache.a, deltas, strict=False)
    )
    return bp.weight_grads(layers, cache, deltas, scale)


def contract(u: Array, v: Array, i: int, j: int) -> Array:
    """Σ_k u[..k..] v[..k..] over axis i of u and axis j of v: ``u @ v`` is
    ``contract(u, v, 1, 0)``, ``u @ vᵀ`` is ``contract(u, v, 1, 1)``; safe on
    runs-last arrays."""
    return bp.contract(u, v, i, j)


def _step(net, params, x, y, project, name) -> tuple[Array, Params]:
    _, cache = forward(net, params, x)
    loss, delta = output_delta(net, cache, y)
    deltas = bp.recursion(net.blocks, cache, delta, net.sigma, project, name)
    return loss, bp.weight_grads(net.blocks, cache, deltas)


def _no_state(key, net, params):
    return ()


# --------------------------------------------------------------------- rules
def _check_scale(scale, name: str = "scale") -> float | None:
    return None if scale is None else positive_number(scale, name)


def delta_rule(
    init,
    project,
    update=None,
    *,
    hyperparams=None,
    name: str | None = None,
    runs_last: bool = True,
) -> Rule:
    """A δ rule: the δ recursion with ``project(params, state)`` in place of
    backprop's, and ``update(state, grads)`` for a state that learns.

    Its ``value_and_grads`` is the library's forward pass, the true δ^L, the
    recursion with the projection and the weight gradients; the rule works
    with the trainer (runs-last fast path included), ``jp.loss_with_vjp``,
    the per-example functions and ``dp_sgd(base=...)``. A new call makes a new
    rule (and a new compiled program): build it once. When traced, it checks
    that the state has the shapes ``init`` gives and that the projection gives
    each layer δ's shape (a ValueError naming the rule, the layer and both
    shapes, where a mismatch would otherwise broadcast silently).

    Args:
      init: ``(key, net, params) -> state``.
      project: ``(params, state) -> project(l, δ^{l+1}, δ^L) -> (batch, n_l)``;
        it must be linear in its δ arguments, example by example (products
        with matrices, as every built-in rule's), for per-example gradients
        and clipping to be the rule's.
      update: ``(state, grads) -> state``, or None for a state that stays.
      hyperparams, name, runs_last: as for :class:`Rule` (name: ``project``'s
        name by default, ``"delta_rule"`` for a lambda or a function named
        ``project``; runs_last=False for a projection written for (batch,
        n) arrays only, e.g. with ``@``, which tiny networks then train on the
        plain vmapped path).
    """
    name = name or getattr(project, "__name__", "<lambda>")
    if name in ("<lambda>", "project"):  # says nothing in a message
        name = "delta_rule"

    def value_and_grads(net, params, state, x, y):
        check_state_fits(rule, net, params, state)
        loss, grads = _step(net, params, x, y, project(params, state), name)
        return loss, grads, state if update is None else update(state, grads)

    rule = Rule(init, value_and_grads, runs_last, project, update, hyperparams, name)
    return rule


def through_w(params, state) -> bp.Through:
    """Backprop's projection: each layer's adjoint with its own W."""
    return bp.through_weights(params)


def _through_feedback(params, state):
    return bp.Through(tuple(state.feedback))


# Rules are static configuration hashed by identity (as optax optimizers are):
# the factories are cached so that equal arguments give the same Rule, and the
# same compiled program.
@functools.cache
def backprop() -> Rule:
    """Backpropagation: the δ recursion with the forward weights (grad="manual")."""
    return delta_rule(_no_state, through_w, hyperparams=(), name="backprop")


@functools.cache
def autodiff() -> Rule:
    """``jax.value_and_grad(net.loss)`` (grad="autodiff"), the oracle."""

    def value_and_grads(net, params, state, x, y):
        check_state_fits(rule, net, params, state)
        loss, grads = jax.value_and_grad(net.loss)(params, x, y)
        return loss, grads, state

    rule = Rule(_no_state, value_and_grads, False, hyperparams=(), name="autodiff")
    return rule


def _uniform_feedback(key, shapes, scale, dtype):
    r"""Fixed random B ~ U[−s, s], s = scale or 1/√n with n the entries each
    backward product sums over: n_l for FA's B^l: (n_{l-1}, n_l) used as
    δ^l (B^l)ᵀ, n_L for DFA's B^l: (n_L, n_l) used as δ^L B^l. That keeps the
    fed-back signal's variance near δ's, as a 1/√fan-in initialization does for
    the forward pass (Nøkland 2016 draws U[−1/√fan, 1/√fan]; his code was not
    checked for which fan)."""
    keys = jax.random.split(key, max(len(shapes), 1))
    out = []
    for k, (shape, n) in zip(keys, shapes, strict=False):
        s = scale or 1 / math.sqrt(n)
        out.append(jax.random.uniform(k, shape, dtype, -s, s))
    return tuple(out)


def _fa_init(scale):
    def init(key, net, params):
        # n: the entries δ^l (B^l)ᵀ sums over per input entry, all of W's but
        # the input axis (-2): n_l for Dense, k C_out for a conv kernel.
        shapes = [(p.w.shape, p.w.size // p.w.shape[-2]) for p in params[1:]]
        return FeedbackState(_uniform_feedback(key, shapes, scale, params[0].w.dtype))

    return init


@functools.cache
def _feedback_alignment(scale: float | None) -> Rule:
    return delta_rule(
        _fa_init(scale), _through_feedback, hyperparams=(), name="feedback_alignment"
    )


def feedback_alignment(scale: float | None = None) -> Rule:
    r"""Feedback alignment (Lillicrap et al. 2016): δ^{l-1} = (δ^l (B^l)ᵀ) ⊙ σ'(z^{l-1})
    with fixed random B^l of W^l's shape, drawn per run.

    Args:
      scale: B^l ~ U[−scale, scale]; None: 1/√n_l (n_l: the entries each
        product δ^l (B^l)ᵀ sums over).
    """
    return _feedback_alignment(_check_scale(scale))


def _dfa_project(params, state):
    # δ^L B^l, B^l: (n_L, n_l)
    return lambda l, _, delta_out: bp.contract(delta_out, state.feedback[l - 1], 1, 0)


def _spread_feedback(params, state):
    return bp.Spread(tuple(state.feedback))


def _kernel_dfa_init(scale):
    def init(key, net, params):
        # B^{l+1}: W^{l+1}'s shape with n_L output channels; n: the entries
        # each product sums over per input entry (kernel positions × n_L).
        n_out = out_sizes(net.blocks)[-1]
        shapes = [(p.w.shape[:-1] + (n_out,), p.w.size // p.w.shape[-2]
                   // p.w.shape[-1] * n_out) for p in params[1:]]  # fmt: skip
        return FeedbackState(_uniform_feedback(key, shapes, scale, params[0].w.dtype))

    return init


@functools.cache
def _direct_feedback_alignment(scale: float | None, kernel_shaped: bool) -> Rule:
    if kernel_shaped:
        return delta_rule(
            _kernel_dfa_init(scale),
            _spread_feedback,
            hyperparams=(),
            name="direct_feedback_alignment",
        )

    def init(key, net, params):
        # B^l: (n_L, size of z^l); a conv layer's δ^L B^l is reshaped to z^l's
        # shape by the recursion (Nøkland's dense projection).
        sizes = out_sizes(net.blocks)
        shapes = [((sizes[-1], n), sizes[-1]) for n in sizes[:-1]]
        return FeedbackState(_uniform_feedback(key, shapes, scale, params[0].w.dtype))

    return delta_rule(
        init, _dfa_project, hyperparams=(), name="direct_feedback_alignment"
    )


def direct_feedback_alignment(
    scale: float | None = None, *, kernel_shaped: bool = False
) -> Rule:
    r"""Direct feedback alignment (Nøkland 2016): δ^l = (δ^L B^l) ⊙ σ'(z^l) for
    every hidden layer, B^l: (n_L, size of z^l) fixed and random (reshaped to
    z^l's shape for a conv layer); the output layer gets its true δ^L.

    With ``kernel_shaped=True``, biotorch's variant for convolutions: δ^L,
    copied to every output position of layer l + 1, goes back through that
    layer's adjoint with a fixed random B^{l+1} of its kernel's shape but n_L
    output channels, (*kernel, C_in, n_L) (for a Dense layer l + 1,
    (n_l, n_L): the dense DFA with B transposed): local feedback with far
    fewer entries. A user's layer must accept such a weight in its adjoint.

    Args:
      scale: B^l ~ U[−scale, scale]; None: 1/√n with n the entries each
        product sums over (n_L for the dense B^l).
      kernel_shaped: biotorch's kernel-shaped B (see above).
    """
    if not isinstance(kernel_shaped, bool):
        raise TypeError(f"kernel_shaped must be True or False; got {kernel_shaped!r}.")
    return _direct_feedback_alignment(_check_scale(scale), kernel_shaped)


def _glorot_scale(w: Array) -> float:
    """√(2 / (fan_in + fan_out)) of a weight (n_in, n_out) or a kernel
    (*kernel, C_in, C_out), whose receptive field counts in both fans."""
    receptive = math.prod(w.shape[:-2])
    return math.sqrt(2.0 / (receptive * (w.shape[-2] + w.shape[-1])))


def _sign_project(scaled: bool):
    def project(params, state):
        if not scaled:
            return bp.Through(tuple(jnp.sign(p.w) for p in params[1:]))
        return bp.Through(tuple(jnp.sign(p.w) * _glorot_scale(p.w) for p in params[1:]))

    return project


@functools.cache
def _sign_symmetry(scaled: bool) -> Rule:
    return delta_rule(
        _no_state, _sign_project(scaled), hyperparams=(), name="sign_symmetry"
    )


def sign_symmetry(*, scaled: bool = False) -> Rule:
    """Sign symmetry (Liao, Leibo & Poggio 2016): sign(W^l) in place of W^l.

    Args:
      scaled: sign(W^l) · √(2 / (fan_in + fan_out)) instead, biotorch's uSF
        ("uniform sign-concordant feedback"): feedback of the size of a
        Glorot-initialized W (a conv kernel's fans count its receptive field).
        Unscaled, every entry is ±1, where W's are about 1/√fan_in: with SGD
        and momentum on LeNet-5 that feedback can be too large to train
        (docs/conv.md).
    """
    if not isinstance(scaled, bool):
        raise TypeError(f"scaled must be True or False; got {scaled!r}.")
    return _sign_symmetry(scaled)


def _kp_update(state, grads):
    # B^l takes the step W^l takes under SGD with weight decay.
    keep, eta = 1 - state.decay, state.learning_rate
    feedback = tuple(
        keep * b - eta * g.w for b, g in zip(state.feedback, grads[1:], strict=True)
    )
    return state._replace(feedback=feedback)


@functools.cache
def _kolen_pollack(learning_rate: float, decay: float, scale: float | None) -> Rule:
    def init(key, net, params):
        dtype = params[0].w.dtype
        return KolenPollackState(
            _fa_init(scale)(key, net, params).feedback,
            jnp.asarray(learning_rate, dtype),
            jnp.asarray(decay, dtype),
        )

    rule = delta_rule(
        init,
        _through_feedback,
        _kp_update,
        hyperparams=KOLEN_POLLACK_HYPERPARAMS,
        name="kolen_pollack",
    )
    NUMBERS[id(rule)] = {"learning_rate": learning_rate, "decay": decay}
    return rule


def kolen_pollack(
    learning_rate: float, decay: float, scale: float | None = None
) -> Rule:
    r"""Kolen-Pollack (Akrout et al. 2019): feedback B^l of W^l's shape, learned
    by the update W^l receives, B^l ← (1 − decay) B^l − learning_rate ∂W^l.

    Train it with :func:`kolen_pollack_sgd` of the same two numbers, SGD with
    the matching weight decay (W ← (1 − decay) W − learning_rate ∂W): then
    W^l − B^l = (1 − decay)^t (W^l_0 − B^l_0), B and W converge and the rule
    approaches backprop. With another optimizer (Adam, or SGD without the
    decay) W does not take B's step, W − B no longer shrinks as
    (1 − decay)^t, and the trainer warns. The two numbers live in the rule
    state (``KolenPollackState``), per run: a grid sweeps them as
    ``rule.learning_rate`` and ``rule.decay`` (give ``optimizer.learning_rate``
    and ``optimizer.decay`` the same values to keep the pairing).

    Args:
      learning_rate: η of the B update, > 0.
      decay: weight decay in [0, 1).
      scale: the initial B's range, as for :func:`feedback_alignment`.
    """
    check = dict(KOLEN_POLLACK_HYPERPARAMS)
    return _kolen_pollack(
        check["learning_rate"](learning_rate, "learning_rate"),
        check["decay"](decay, "decay"),
        _check_scale(scale),
    )


# ------------------------------------------------- δ rules' per-example δ's
def check_delta_rule(rule, argname: str = "rule") -> Rule:
    """``rule`` if it is a δ rule (a :class:`Rule` with a ``project``)."""
    if rule is None:
        return backprop()
    if not isinstance(rule, Rule):
        raise TypeError(
            f"{argname} must be a jp.rules.Rule such as jp.rules.backprop(); "
            f"got {type(rule).__name__}."
        )
    if rule.project is None:
        raise ValueError(
            f"{argname} has no projection (Rule.project is None): its updates "
            f"are not known to be the δ recursion's, so it has no per-example "
            f"δ's, clipping or hand-written VJP. Use a δ rule: backprop, "
            f"feedback_alignment, direct_feedback_alignment, sign_symmetry, "
            f"kolen_pollack or one made with jp.rules.delta_rule (not autodiff, "
            f"dp_sgd, or a Rule given only value_and_grads)."
        )
    return rule


def example_deltas(net: MLP, rule: Rule, params: Params, state, x, y):
    """(cache, c: (batch,), (δ^1, ..., δ^L)) of a δ rule, per example: δ^L_i =
    ∂c_i/∂z^L_i, before the batch reduction (``bp.per_example_output_delta``)."""
    _, cache = forward(net, params, x)
    c, delta = bp.per_example_output_delta(cache, y, net.cost_fn, net.sigma_out)
    project = rule.project(params, state)
    return (
        cache,
        c,
        bp.recursion(net.blocks, cache, delta, net.sigma, project, rule.name),
    )


#: The rules by name (the command's ``--rule``).
RULES: Mapping[str, Callable[..., Rule]] = MappingProxyType(
    {
        "backprop": backprop,
        "autodiff": autodiff,
        "fa": feedback_alignment,
        "dfa": direct_feedback_alignment,
        "sign": sign_symmetry,
        "kp": kolen_pollack,
    }
)


def check_rule(rule) -> Rule:
    """``rule`` if it is a :class:`Rule`, else a TypeError naming the argument."""
    if not isinstance(rule, Rule):
        raise TypeError(
            f"rule must be a jp.rules.Rule such as jp.rules.feedback_alignment(); "
            f"got {type(rule).__name__}."
        )
    return rule


def check_rule_state(rule: Rule, net: MLP, params: Params, state, key, argname: str):
    """``state`` if it has the shapes and dtypes ``rule.init`` gives, else a
    ValueError naming ``argname``; ``rule.init(key, net, params)`` if None."""
    if state is None:
        return rule.init(key, net, params)
    check_state_fits(rule, net, params, state, argname)
    return state


def check_state_fits(
    rule: Rule, net: MLP, params: Params, state, argname: str = "state"
) -> None:
    """A ValueError naming ``argname`` and the rule unless ``state`` has the
    structure, shapes and dtypes ``rule.init(key, net, params)`` gives.

    Shapes only (``jax.eval_shape``): it runs where the rule is traced, on
    concrete arrays or tracers. On the runs-last arrays of the tiny-network
    fast path every leaf of params and state has a trailing runs axis, which
    the comparison leaves out.
    """
    # On the runs-last path every leaf has one more axis than its layer's.
    runs_last = np.ndim(params[0].w) > len(net.blocks[0].shapes(jnp.float32).w.shape)
    own = (lambda shape: shape[:-1]) if runs_last else (lambda shape: shape)
    probe = jax.tree.map(
        lambda l: jax.ShapeDtypeStruct(own(np.shape(l)), l.dtype), params
    )
    expected = jax.eval_shape(
        lambda k, p: rule.init(k, net, p), jax.random.key(0), probe
    )

    def describe(l):  # a PRNG key of any implementation fits a key
        key = jax.dtypes.issubdtype(l.dtype, jax.dtypes.prng_key)
        return tuple(np.shape(l)), "key" if key else str(l.dtype)

    want = jax.tree.map(describe, expected)
    try:
        got = jax.tree.map(
            lambda l: describe(jax.ShapeDtypeStruct(own(l.shape), l.dtype)), state
        )
        fits = jax.tree.structure(expected) == jax.tree.structure(state)
        fits = fits and want == got
    except (AttributeError, TypeError, ValueError):
        fits, got = False, jax.tree.map(np.shape, state)
    if not fits:
        raise ValueError(
            f"{argname} does not fit the rule {rule.name}: expected the shapes "
            f"and dtypes {want}; got {got}. Draw it with rule.init(key, net, "
            f"params) for this rule and net."
        )
