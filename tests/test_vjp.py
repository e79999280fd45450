"""loss_with_vjp and apply_with_vjp: the δ pass as a JAX VJP, against autodiff
(and finite differences), inside larger JAX functions, under jit and vmap, and
with other rules."""

import itertools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

import jaxprop as jp
from jaxprop import rules
from tests.helpers import (
    COST_CONFIGS,
    assert_trees_close,
    every_pair,
    make_case,
    numpy_rule_state,
    scale_layer,
)

SIZES = (3, 5, 4, 2)


def vjp_and_autodiff(net, params, x, y):
    """((∂params, ∂x) of loss_with_vjp, of apply_with_vjp under a downstream
    function), and the same from jax.grad through net.loss / net.forward: one
    compiled program."""
    f = jp.loss_with_vjp(net)
    apply = jp.apply_with_vjp(net)
    # Any downstream code: a smooth function of ŷ that is not the net's cost.
    after = lambda y_hat: jnp.sum(jnp.sin(y_hat) * jnp.arange(1.0, 1 + net.n_out))  # noqa: E731

    def both(params, x, y):
        return (
            jax.value_and_grad(f, argnums=(0, 1))(params, x, y),
            jax.grad(lambda p, x: after(apply(p, x)), argnums=(0, 1))(params, x),
            jax.value_and_grad(net.loss, argnums=(0, 1))(params, x, y),
            jax.grad(lambda p, x: after(net.forward(p, x)), argnums=(0, 1))(params, x),
        )

    return jax.jit(both)(params, x, y)


def matrix():
    """Every activation with every cost config (tests.helpers.every_pair: all
    pairs of activation, cost and reduction). The default suite runs ten of
    them, every activation once with the cost configs in turn and one mean
    (so every cost and both reductions appear); the others are marked slow
    (.ci/run runs them): at about 0.6 s of compilation each. The δ recursion
    itself is checked on the whole product by test_gradients; these cases
    check the VJP's wiring."""
    cases, n = every_pair(), len(COST_CONFIGS)
    fast = {cases[i * n + i % n] for i in range(len(jp.ACTIVATIONS))} | {cases[1]}
    return [
        pytest.param(*case, marks=() if case in fast else pytest.mark.slow)
        for case in cases
    ]


@pytest.mark.parametrize("activation, cost_config, reduction", matrix())
def test_vjp_equals_autodiff_float64(seed, activation, cost_config, reduction):
    net, params, x, y = make_case(seed, SIZES, activation, cost_config, reduction)
    (value, loss_grads), apply_grads, (ref_value, ref_loss), ref_apply = (
        vjp_and_autodiff(net, params, x, y)
    )
    np.testing.assert_allclose(value, ref_value, rtol=1e-14)
    assert_trees_close(loss_grads, ref_loss, rtol=1e-12)  # ∂x included
    assert_trees_close(apply_grads, ref_apply, rtol=1e-12)
    # Test the tester: 1e-12 is far above rounding and far below a 0.1% bug
    # (planted where the gradient is not zero: relu can zero whole layers).
    (grads, dx), (ref, ref_dx) = loss_grads, ref_loss
    for layer, param in itertools.product(range(net.n_layers), ("w", "b")):
        if np.any(getattr(grads[layer], param)):
            with pytest.raises(AssertionError):
                assert_trees_close(scale_layer(grads, layer, param, 1.001), ref, 1e-12)
    if np.any(dx):
        with pytest.raises(AssertionError):
            assert_trees_close(dx * 1.001, ref_dx, rtol=1e-12)


def test_vjp_against_finite_differences(seed):
    """A second oracle: jax.test_util.check_grads runs the custom VJP (reverse
    mode) against numerical directional derivatives, params and x at once."""
    net, params, x, y = make_case(seed, SIZES, "softplus", "bce-sigmoid", "mean")
    f = jax.jit(jp.loss_with_vjp(net))
    jax.test_util.check_grads(
        lambda p, x: f(p, x, y), (params, x), order=1, modes=["rev"], eps=1e-5
    )


def test_mlp_block_between_two_jax_layers(seed):
    """x -> tanh(x A) -> MLP (apply_with_vjp) -> ŷ C -> a squared error: the
    gradients of A, the MLP's params and C equal autodiff's, and so do those of
    the same model ending in loss_with_vjp."""
    net, params, _, _ = make_case(seed, (4, 6, 5, 3), "gelu", "mse-identity", "sum")
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.normal(size=(7, 4)) / np.sqrt(7))
    c = jnp.asarray(rng.normal(size=(3, 2)))
    x = jnp.asarray(rng.normal(size=(9, 7)))
    t = jnp.asarray(rng.normal(size=(9, 2)))
    y = jnp.asarray(rng.normal(size=(9, 3)))
    apply, f = jp.apply_with_vjp(net), jp.loss_with_vjp(net)

    def model(forward):
        return lambda a, p, c: jnp.mean((forward(p, jnp.tanh(x @ a)) @ c - t) ** 2)

    def ends_in_the_loss(loss):
        return lambda a, p: loss(p, jnp.tanh(x @ a), y) * jnp.sum(a**2)

    grads = jax.jit(
        lambda a, p, c: (
            jax.grad(model(apply), argnums=(0, 1, 2))(a, p, c),
            jax.grad(model(net.forward), argnums=(0, 1, 2))(a, p, c),
            jax.grad(ends_in_the_loss(f), argnums=(0, 1))(a, p),
            jax.grad(ends_in_the_loss(net.loss), argnums=(0, 1))(a, p),
        )
    )(a, params, c)
    assert_trees_close(grads[0], grads[1], rtol=1e-12)
    assert_trees_close(grads[2], grads[3], rtol=1e-12)


@pytest.fixture(scope="module")
def fa_case():
    net, params, x, y = make_case(11, (3, 6, 5, 2), "tanh", "mse-identity", "mean")
    return net, params, x, y


@pytest.mark.parametrize(
    "rule",
    [
        rules.feedback_alignment(),
        rules.direct_feedback_alignment(),
        rules.sign_symmetry(),
        rules.kolen_pollack(0.1, 0.01),
    ],
    ids=["fa", "dfa", "sign", "kp"],
)
def test_other_rules_under_the_vjp_are_the_rules_updates(fa_case, rule):
    """Under a non-backprop rule the VJP is that rule's update, both for the
    loss and for apply_with_vjp with the net's own cost downstream (½‖ŷ − y‖²,
    mean over the batch); ∂L/∂x = δ^1 (W^1)ᵀ with the rule's δ^1 (the
    documented choice); the state gets no update from a VJP (KP's B)."""
    net, params, x, y = fa_case
    state = numpy_rule_state(rule, net, params, 1)
    f, apply = jp.loss_with_vjp(net, rule), jp.apply_with_vjp(net, rule)

    def own_cost(p, x, state):
        return 0.5 * jnp.mean(jnp.sum((apply(p, x, state) - y) ** 2, axis=1))

    (loss, grads, new_state), (value, (by_vjp, dx)), by_apply, per_ex = jax.jit(
        lambda p, s: (
            rule.value_and_grads(net, p, s, x, y),
            jax.value_and_grad(f, argnums=(0, 1))(p, x, y, s),
            jax.grad(own_cost)(p, x, s),
            jp.per_example_grads(net, p, x, y, rule=rule, state=s),
        )
    )(params, state)
    np.testing.assert_allclose(value, loss, rtol=1e-14)
    assert_trees_close(by_vjp, grads, rtol=1e-12)
    assert_trees_close(by_apply, grads, rtol=1e-12)
    assert not np.allclose(by_vjp[0].w, net.backprop(params, x, y)[0].w)
    delta1 = per_ex[0].b / x.shape[0]  # the rule's δ^1, rows; reduction="mean"
    np.testing.assert_allclose(dx, delta1 @ params[0].w.T, rtol=1e-12, atol=1e-15)
    if rule.update is not None:  # KP: the caller applies B's update
        assert_trees_close(rule.update(state, by_vjp), new_state, rtol=1e-12)


def test_vmap_over_seeds_and_examples(fa_case):
    net, params, x, y = fa_case
    fa = rules.feedback_alignment()
    seeds = [make_case(s, net.sizes, "tanh", "mse-identity", "mean") for s in (1, 2, 3)]
    stacked = jax.tree.map(lambda *l: jnp.stack(l), *[c[1] for c in seeds])
    states = jax.tree.map(
        lambda *l: jnp.stack(l),
        *[numpy_rule_state(fa, net, params, s) for s in (1, 2, 3)],
    )
    f, g = jp.loss_with_vjp(net, fa), jp.loss_with_vjp(net)

    def everything(stacked, states, params):
        many = jax.vmap(jax.grad(f), in_axes=(0, None, None, 0))(stacked, x, y, states)
        alone = [  # a Python loop over seeds: the reference
            fa.value_and_grads(net, *jax.tree.map(lambda l: l[i], (stacked, states)),
                               x, y)[1]
            for i in range(3)
        ]  # fmt: skip
        # Over examples: single (n_0,) inputs, each example's own gradient.
        per_ex = jax.vmap(jax.grad(g), in_axes=(None, 0, 0))(params, x, y)
        y_hat = jax.vmap(jp.apply_with_vjp(net), in_axes=(None, 0))(params, x)
        return many, alone, per_ex, y_hat

    many, alone, per_ex, y_hat = jax.jit(everything)(stacked, states, params)
    for i in range(3):
        assert_trees_close(jax.tree.map(lambda l: l[i], many), alone[i], rtol=1e-12)
    assert_trees_close(per_ex, jp.per_example_grads(net, params, x, y), rtol=1e-12)
    np.testing.assert_allclose(y_hat, net.forward(params, x), rtol=1e-14)


def test_bad_uses_are_refused_before_compiling(fa_case):
    net, params, x, y = fa_case
    with pytest.raises(ValueError, match="rule has no projection"):
        jp.loss_with_vjp(net, rules.autodiff())
    with pytest.raises(ValueError, match="rule has no projection"):
        jp.apply_with_vjp(net, rules.dp_sgd(1.0, 1.0))
    with pytest.raises(TypeError, match=r"rule must be a jp\.rules\.Rule"):
        jp.loss_with_vjp(net, "fa")
    with pytest.raises(TypeError, match=r"net must be a jp\.MLP"):
        jp.apply_with_vjp((3, 6, 5, 2))
    fa = rules.feedback_alignment()
    with pytest.raises(ValueError, match="state is required"):
        jp.loss_with_vjp(net, fa)(params, x, y)
    with pytest.raises(ValueError, match="state does not fit the rule"):
        jp.apply_with_vjp(net, fa)(params, x, rules.FeedbackState((x,)))
    with pytest.raises(ValueError, match="x must have shape"):
        jp.loss_with_vjp(net)(params, x[:, :2], y)


def _primitive_counts(jaxpr, counts=None):
    """{primitive name: count} over a jaxpr and every jaxpr nested in it."""
    counts = {} if counts is None else counts
    for eqn in jaxpr.eqns:
        counts[eqn.primitive.name] = counts.get(eqn.primitive.name, 0) + 1
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    _primitive_counts(inner, counts)
    return counts


def test_grad_runs_the_hand_written_delta_pass():
    # jax.grad of loss_with_vjp traces the custom VJP's backward, not JAX's
    # transpose of the forward: no `transpose` primitive (autodiff's dot_general
    # transposes emit them), and the δ pass's own dot_generals: L forward, L
    # weight gradients, L − 1 projections δ (W)ᵀ and one for ∂L/∂x = δ^1 (W^1)ᵀ.
    net = jp.MLP(SIZES, "tanh", "identity", "softmax_cross_entropy", "mean")
    params = net.init(jax.random.key(0))
    x, y = jnp.ones((6, SIZES[0])), jnp.arange(6) % SIZES[-1]
    f = jp.loss_with_vjp(net)
    forward = _primitive_counts(jax.make_jaxpr(f)(params, x, y).jaxpr)
    assert (
        forward.get("custom_vjp_call", 0) + forward.get("custom_vjp_call_jaxpr", 0) == 1
    )
    mine = _primitive_counts(jax.make_jaxpr(jax.grad(f))(params, x, y).jaxpr)
    n_layers = len(SIZES) - 1
    assert "transpose" not in mine
    assert mine["dot_general"] == 3 * n_layers
    auto = _primitive_counts(jax.make_jaxpr(jax.grad(net.loss))(params, x, y).jaxpr)
    assert auto.get("transpose", 0) > 0  # the check can tell the two apart
