"""Conv nets (``jp.Network`` of Conv, pooling, Flatten and Dense layers):
the hand-written δ pass against ``jax.grad`` and finite differences over a
generated covering set of nets, every rule on conv layers, per-example
quantities, runs over seeds, max pooling's ties, a user's layer, bad input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop import rules
from jaxprop.layers import AvgPool, Conv, Dense, Flatten, MaxPool
from tests.helpers import COST_CONFIGS, Depthwise1D, assert_trees_close, scale_layer

ACTIVATIONS = list(jp.ACTIVATIONS)
COSTS = [*COST_CONFIGS.values(), ("hinge", "identity", "signs")]
PADDINGS = ["VALID", "SAME", "int", "pairs"]
POOLS = [None, "avg", "max"]
N_OUT, BATCH = 3, 3


def conv_net(rank, kernel, stride, padding, pool, activation, cost):
    """A net of two convs (the first with the case's kernel, stride and
    padding), an optional pool between them, Flatten and Dense."""
    in_shape = (13, 2) if rank == 1 else (9, 8, 2)
    pads = {
        "VALID": "VALID",
        "SAME": "SAME",
        "int": 1,
        "pairs": ((1, 2),) if rank == 1 else ((1, 2), (2, 0)),
    }[padding]
    layers = [Conv(3, kernel, stride=stride, padding=pads)]
    if pool is not None:
        kind = AvgPool if pool == "avg" else MaxPool
        layers.append(kind(2, stride=1 + kernel % 2))
    layers += [Conv(4, 2, padding="SAME"), Flatten(), Dense(N_OUT)]
    cost_name, out_act, _ = cost
    return jp.Network(in_shape, tuple(layers), activation, out_act, cost_name, "sum")


def draw(net, targets, seed, dtype=np.float64):
    """params (N(0, 1/fan-in) weights, N(0, 0.3²) biases), x and y by NumPy."""
    rng = np.random.default_rng(seed)
    params = []
    for block in net.blocks:
        shapes = block.shapes(dtype)
        fan_in = np.prod(shapes.w.shape[:-1])
        params.append(
            jp.DenseParams(
                jnp.asarray(rng.normal(size=shapes.w.shape) / np.sqrt(fan_in), dtype),
                jnp.asarray(0.3 * rng.normal(size=shapes.b.shape), dtype),
            )
        )
    x = jnp.asarray(rng.normal(size=(BATCH, *net.input_shape)), dtype)
    n = net.n_out
    y = {
        "real": lambda: rng.normal(size=(BATCH, n)),
        "unit": lambda: rng.uniform(size=(BATCH, n)),
        "labels": lambda: rng.integers(0, n, BATCH),
        "signs": lambda: rng.choice([-1.0, 1.0], (BATCH, n)),
        "rows": lambda: rng.dirichlet(np.ones(n), BATCH),
    }[targets]()
    y = jnp.asarray(y) if targets == "labels" else jnp.asarray(y, dtype)
    return tuple(params), x, y


def case(i, rank, kernel, stride, padding, pool, activation, cost):
    """One net of the set; ``activation`` and ``cost`` index ACTIVATIONS and
    COSTS, ``i`` seeds its draw."""
    cost = COSTS[cost]
    net = conv_net(rank, kernel, stride, padding, pool, ACTIVATIONS[activation], cost)
    return (net, *draw(net, cost[2], i))


# The default suite: 30 nets in which every rank, kernel 1-5, stride 1-3,
# padding form, pool, activation and cost occurs (the indices cycle). Under
# `slow`, 33 more nets (a greedy all-pairs covering, made once and written
# here) with which every pair of values of any two of those seven factors
# occurs in some net: the full product would be 22680 nets.
STRUCTURE = [
    (1 + i % 2, 1 + i % 5, 1 + i % 3, PADDINGS[i % 4], POOLS[(i // 4) % 3], i % 9,
     i % len(COSTS))
    for i in range(30)
]  # fmt: skip
PAIRS = [
    (2, 4, 3, "int", "max", 7, 5),
    (1, 3, 3, "SAME", "max", 6, 4),
    (2, 1, 2, "VALID", "avg", 3, 2),
    (1, 5, 1, "pairs", "avg", 8, 6),
    (2, 2, 1, "pairs", "avg", 4, 3),
    (2, 3, 2, "VALID", None, 5, 6),
    (1, 5, 3, "int", None, 3, 4),
    (1, 4, 1, "pairs", None, 2, 3),
    (2, 4, 2, "int", "avg", 6, 2),
    (2, 2, 3, "SAME", "avg", 0, 1),
    (1, 1, 3, "pairs", None, 4, 5),
    (1, 1, 2, "SAME", "avg", 8, 4),
    (1, 3, 1, "int", "avg", 1, 6),
    (2, 5, 1, "SAME", None, 7, 3),
    (1, 2, 1, "int", "max", 5, 1),
    (2, 1, 2, "SAME", None, 0, 5),
    (1, 5, 2, "pairs", "avg", 2, 5),
    (1, 4, 3, "pairs", None, 1, 4),
    (2, 4, 3, "VALID", "max", 6, 0),
    (1, 2, 1, "SAME", "max", 8, 2),
    (1, 1, 2, "pairs", "avg", 1, 2),
    (1, 3, 1, "int", "avg", 3, 1),
    (1, 2, 3, "VALID", "max", 2, 0),
    (1, 1, 2, "VALID", "avg", 7, 1),
    (2, 1, 1, "SAME", "avg", 3, 6),
    (2, 4, 1, "pairs", "avg", 5, 4),
    (1, 4, 1, "SAME", None, 4, 2),
    (1, 3, 3, "SAME", "avg", 4, 0),
    (1, 3, 2, "SAME", None, 7, 6),
    (2, 4, 3, "VALID", "max", 5, 3),
    (1, 3, 2, "SAME", "avg", 0, 3),
    (1, 3, 1, "SAME", None, 8, 0),
    (1, 5, 3, "pairs", None, 6, 5),
]
FACTORS = [
    [1, 2],
    range(1, 6),
    range(1, 4),
    PADDINGS,
    POOLS,
    range(9),
    range(len(COSTS)),
]
NETS = [pytest.param(i, *s, id=f"{i}") for i, s in enumerate(STRUCTURE)] + [
    pytest.param(30 + i, *s, id=f"{30 + i}", marks=pytest.mark.slow)
    for i, s in enumerate(PAIRS)
]


def value_pairs(nets):
    """Every (factor a, its value, factor b, its value) occurring in ``nets``."""
    return {
        (a, net[a], b, net[b])
        for net in nets
        for a, b in itertools.combinations(range(len(FACTORS)), 2)
    }


def test_the_covering_sets_cover_every_value_and_every_pair():
    for axis, values in enumerate(FACTORS):
        assert {s[axis] for s in STRUCTURE} == set(values)
    assert len(ACTIVATIONS) == 9 and len(COSTS) == 7
    every = value_pairs(itertools.product(*FACTORS))
    assert value_pairs(STRUCTURE + PAIRS) == every
    # The check can fail: without the first or the last net, pairs are missing.
    assert value_pairs(STRUCTURE + PAIRS[1:]) != every
    assert value_pairs(STRUCTURE + PAIRS[:-1]) != every


@pytest.mark.parametrize(
    "i, rank, kernel, stride, padding, pool, activation, cost", NETS
)
def test_conv_net_gradients_are_jax_grad_and_finite_differences(
    i, rank, kernel, stride, padding, pool, activation, cost
):
    net, params, x, y = case(i, rank, kernel, stride, padding, pool, activation, cost)
    report = jp.check_grads(net, params, x, y, numeric_entries=24, rtol=(1e-12, 1e-6))
    jax.clear_caches()  # every net is new: its programs would only hold memory maps
    assert report.passed, str(report)


def test_the_gradient_check_catches_a_tenth_of_a_percent_on_a_conv_layer():
    net, params, x, y = case(7, 2, 3, 2, "SAME", "max", activation=7, cost=0)
    for layer, param in [(0, "w"), (1, "b")]:

        def wrong(p, x, y, layer=layer, param=param):
            return scale_layer(net.backprop(p, x, y), layer, param, 1.001)

        report = jp.check_grads(net, params, x, y, backprop=wrong, numeric=False)
        assert not report.passed


def test_max_pool_ties_go_where_jax_grad_sends_them():
    # Integer inputs and weights and relu: windows hold equal maxima (and
    # zeros), which jax.grad of lax.reduce_window routes to the first.
    net = jp.Network(
        (6, 6, 1),
        (Conv(2, 2, padding="SAME"), MaxPool(2, stride=1), Flatten(), Dense(2)),
        activation="relu",
    )
    rng = np.random.default_rng(0)
    params = (
        jp.DenseParams(
            jnp.asarray(rng.integers(-1, 2, (2, 2, 1, 2)), float), jnp.zeros(2)
        ),
        jp.DenseParams(jnp.asarray(rng.normal(size=(50, 2))), jnp.zeros(2)),
    )
    x = jnp.asarray(rng.integers(0, 2, (4, 6, 6, 1)), float)
    y = jnp.asarray(rng.normal(size=(4, 2)))
    a = jax.nn.relu(net.blocks[0].apply(params[0], x))
    windows = jnp.stack([a[:, :-1, :-1], a[:, 1:, :-1], a[:, :-1, 1:], a[:, 1:, 1:]])
    assert np.any(np.sum(windows == windows.max(0), axis=0) > 1)  # ties occur
    _, grads = net.value_and_backprop(params, x, y)
    assert_trees_close(grads, jax.grad(net.loss)(params, x, y), 1e-13)


@pytest.fixture(scope="module")
def mixed():
    """A 1-D conv net with a pool, its float64 params and data."""
    net = conv_net(1, 3, 2, "int", "avg", "tanh", COST_CONFIGS["softmax-labels"])
    return (net, *draw(net, "labels", 3))


def test_feedback_alignment_with_b_equal_to_w_is_backprop(mixed):
    net, params, x, y = mixed
    state = rules.FeedbackState(tuple(p.w for p in params[1:]))
    _, grads, _ = rules.feedback_alignment().value_and_grads(net, params, state, x, y)
    assert_trees_close(grads, net.backprop(params, x, y), 1e-13)  # two programs
    drawn = rules.feedback_alignment().init(jax.random.key(0), net, params).feedback
    assert [b.shape for b in drawn] == [p.w.shape for p in params[1:]]


def test_sign_symmetry_on_weights_of_plus_minus_one_is_backprop(mixed):
    net, params, x, y = mixed
    params = (params[0], *(p._replace(w=jnp.sign(p.w)) for p in params[1:]))
    _, grads, _ = rules.sign_symmetry().value_and_grads(net, params, (), x, y)
    assert_trees_close(grads, net.backprop(params, x, y), 1e-13)


def test_dfa_projects_delta_out_densely_into_each_conv_layer():
    # One hidden conv layer before Flatten+Dense: backprop's δ^1 is
    # reshape(δ^L W^2ᵀ) ⊙ σ'(z^1), so DFA with B^1 = W^2ᵀ is backprop.
    net = jp.Network((10, 2), (Conv(3, 3, stride=2), Flatten(), Dense(4)), "tanh")
    params, x, y = draw(net, "real", 5)
    state = rules.direct_feedback_alignment().init(jax.random.key(0), net, params)
    assert [b.shape for b in state.feedback] == [(4, 4 * 3)]  # (n_L, size of z^1)
    state = rules.FeedbackState((params[1].w.T,))
    rule = rules.direct_feedback_alignment()
    _, grads, _ = rule.value_and_grads(net, params, state, x, y)
    assert_trees_close(grads, net.backprop(params, x, y), 1e-13)


def test_kolen_pollack_learns_a_kernel_shaped_b(mixed):
    net, params, x, y = mixed
    rule = rules.kolen_pollack(0.1, 0.01)
    state = rule.init(jax.random.key(0), net, params)
    _, grads, new = rule.value_and_grads(net, params, state, x, y)
    for b, b_new, g in zip(state.feedback, new.feedback, grads[1:], strict=True):
        np.testing.assert_allclose(b_new, 0.99 * b - 0.1 * g.w, rtol=1e-12)


def test_alignment_on_a_conv_net(mixed):
    net, params, x, y = mixed
    state = rules.FeedbackState(tuple(p.w for p in params[1:]))
    angles = rules.alignment(net, rules.feedback_alignment(), params, state, x, y)
    assert angles.grad.shape == (net.n_layers,)
    np.testing.assert_allclose(angles.grad, 0, atol=1e-5)
    np.testing.assert_allclose(angles.delta, 0, atol=1e-5)


def one_example_grads(net, params, x, y):
    """Each example's gradient by jax.grad of its own loss (the oracle)."""
    return jax.vmap(lambda xi, yi: jax.grad(net.loss)(params, xi[None], yi[None]))(x, y)


def test_per_example_grads_norms_and_clipping_are_vmap_of_grad(mixed):
    net, params, x, y = mixed
    want = one_example_grads(net, params, x, y)
    assert_trees_close(jp.per_example_grads(net, params, x, y), want, 1e-12)
    norms = jnp.sqrt(
        sum(jnp.sum(l.reshape(BATCH, -1) ** 2, axis=1) for l in jax.tree.leaves(want))
    )
    np.testing.assert_allclose(
        jp.per_example_grad_norms(net, params, x, y), norms, rtol=1e-12
    )
    c = float(jnp.median(norms))
    factor = jnp.minimum(1, c / norms)
    clipped = jax.tree.map(lambda g: jnp.tensordot(factor, g, 1), want)
    assert_trees_close(jp.clipped_grads(net, params, x, y, c), clipped, 1e-12)


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_dp_sgd_trains_a_conv_net_and_its_clipped_sum_is_the_oracle(mixed):
    net, params, x, y = mixed
    rule = rules.dp_sgd(clip_norm=0.5, noise_multiplier=0.0)
    state = rule.init(jax.random.key(0), net, params)
    _, grads, _ = rule.value_and_grads(net, params, state, x, y)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    result = jp.train_seeds(
        net,
        jax.random.split(jax.random.key(0), 2),
        x,
        y,
        optax.sgd(0.1),
        4,
        rule=rules.dp_sgd(clip_norm=0.5, noise_multiplier=1.0),
    )
    assert not np.any(result.diverged)


@pytest.mark.slow  # four trainings of a conv net: .ci/run runs it
def test_runs_over_seeds_equal_each_seed_alone(mixed):
    net, _, x, y = mixed
    keys = jax.random.split(jax.random.key(3), 3)
    kwargs = dict(rule=rules.feedback_alignment(), batch_size=2, log_every=3)
    together = jp.train_seeds(net, keys, x, y, optax.adam(1e-2), 6, **kwargs)
    for i in range(3):
        alone = jp.train_seeds(
            net, keys[i : i + 1], x, y, optax.adam(1e-2), 6, **kwargs
        )
        assert_trees_close(
            jax.tree.map(lambda l: l[i], together.params),
            jax.tree.map(lambda l: l[0], alone.params),
            1e-12,
        )


USER_NET = jp.Network(
    (12, 3), (Depthwise1D(3), Depthwise1D(2), Flatten(), Dense(2)), "tanh"
)


def test_a_users_layer_has_the_gradient_of_jax_grad():
    params, x, y = draw(USER_NET, "real", 2)
    assert isinstance(USER_NET.blocks[0], jp.layers.Conv) is False
    report = jp.check_grads(USER_NET, params, x, y, rtol=(1e-12, 1e-6))
    assert report.passed, str(report)
    want = one_example_grads(USER_NET, params, x, y)
    assert_trees_close(jp.per_example_grads(USER_NET, params, x, y), want, 1e-12)


@pytest.mark.parametrize("name", list(rules.RULES))
def test_a_users_layer_trains_under_every_rule(name):
    rule = rules.RULES[name](0.05, 0.0) if name == "kp" else rules.RULES[name]()
    _, x, y = draw(USER_NET, "real", 4, np.float32)
    optimizer = rules.kolen_pollack_sgd(0.05, 0.0) if name == "kp" else optax.sgd(0.05)
    result = jp.train_seeds(
        USER_NET,
        jax.random.split(jax.random.key(0), 2),
        x,
        y,
        optimizer,
        20,
        rule=rule,
        log_every=10,
    )
    assert not np.any(result.diverged)
    assert np.all(result.losses[:, -1] < result.losses[:, 0])


@pytest.mark.parametrize(
    "layers, input_shape, match",
    [
        (
            (Conv(2, 5), Flatten(), Dense(2)),
            (4, 1),
            r"layers\[0\] = Conv.*kernel_size \(5,\) is larger",
        ),
        ((Conv(2, 3), Dense(2)), (8, 1), r"layers\[1\] = Dense.*Flatten"),
        (
            (Conv(2, 3), MaxPool(4), Flatten(), Dense(2)),
            (5, 1),
            r"layers\[1\] = MaxPool.*does not fit",
        ),
        ((Flatten(), Conv(2, 1), Dense(2)), (8, 1), r"layers\[1\] = Conv"),
        ((Conv(2, 3), Flatten()), (8, 1), "must end with a parametrized layer"),
        ((Conv(2, 4),), (4, 1), r"output layer and gives z\^L of shape \(1, 2\)"),
    ],
)
def test_bad_conv_nets_are_refused_naming_the_layer(layers, input_shape, match):
    with pytest.raises(ValueError, match=match):
        jp.Network(input_shape, layers)


def test_a_stride_of_zero_is_refused_when_the_layer_is_made():
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        Conv(2, 3, stride=0)


def test_inputs_and_feedback_of_the_wrong_shape_are_refused(mixed):
    net, params, x, y = mixed
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 13, 2\)"):
        net.loss(params, x[:, :-1], y)
    _, cache = net.forward_with_cache(params, x)
    with pytest.raises(
        ValueError,
        match=r"feedback\[0\] must have shape \(2, 3, 4\) "
        r"\(B\^2, in place of W\^2 \(layer 2: layers\[2\]",
    ):
        net.backward(params, cache, y, feedback=(params[1].w[:1], params[2].w))
    bad = rules.FeedbackState((params[1].w[:1], params[2].w))
    with pytest.raises(ValueError, match="does not fit the rule feedback_alignment"):
        jp.per_example_grads(
            net, params, x, y, rule=rules.feedback_alignment(), state=bad
        )


def test_a_conv_trainer_checkpoints_and_resumes_bit_for_bit(mixed, tmp_path):
    net, _, x, y = mixed
    keys = jax.random.split(jax.random.key(0), 2)
    make = lambda: jp.Trainer(  # noqa: E731
        net, keys, x, y, rules.kolen_pollack_sgd(0.01, 0.0), 12, batch_size=2,
        log_every=3, rule=rules.kolen_pollack(0.01, 0.0), eval_data=(x, y),
        eval_every=6,
    )  # fmt: skip
    trainer = make()
    state = trainer.advance(trainer.init(), 6)
    path = trainer.save(tmp_path / "ck.npz", state)
    resumed = make().load(path)
    a = trainer.result(trainer.advance(state, 6))
    b = trainer.result(trainer.advance(resumed, 6))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    layers = (Conv(2, 3), Flatten(), Dense(net.n_out))
    other = jp.Network(net.input_shape, layers, cost=net.cost)
    with pytest.raises(ValueError, match="net"):
        jp.Trainer(other, keys, x, y, optax.adam(1e-2), 12, batch_size=2).load(path)


def test_kernel_shaped_dfa_is_delta_out_through_each_next_layers_adjoint():
    # biotorch's DFA for convolutions: δ^L copied to every output position of
    # layer l + 1 and carried back by that layer's VJP with a kernel-shaped B.
    net = jp.Network(
        (11, 2), (Conv(3, 3), Conv(4, 2, stride=2), Flatten(), Dense(3)), "tanh"
    )
    params, x, y = draw(net, "real", 6)
    rule = rules.direct_feedback_alignment(kernel_shaped=True)
    state = rule.init(jax.random.key(0), net, params)
    assert [b.shape for b in state.feedback] == [(2, 3, 3), (16, 3)]
    _, grads, _ = rule.value_and_grads(net, params, state, x, y)
    _, cache = net.forward_with_cache(params, x)
    d_out = (cache.a[-1] - y) / BATCH  # mse, identity output, mean: (ŷ − y)/N
    sigma_prime = lambda z: 1 - jnp.tanh(z) ** 2  # noqa: E731

    def signal(l):  # δ^L through layer l + 1's VJP with B^{l+1}
        block, b = net.blocks[l], state.feedback[l - 1]
        theta = jp.DenseParams(b, jnp.zeros(b.shape[-1]))
        z, vjp = jax.vjp(lambda u: block.apply(theta, u), cache.a[l])
        spread = jnp.broadcast_to(
            d_out.reshape(d_out.shape[0], *(1,) * (z.ndim - 2), -1), z.shape
        )
        return vjp(spread)[0]

    deltas = [signal(l) * sigma_prime(cache.z[l - 1]) for l in (1, 2)]
    assert_trees_close(grads[0], net.blocks[0].grads(x, deltas[0]), 1e-12)
    assert_trees_close(grads[1], net.blocks[1].grads(cache.a[1], deltas[1]), 1e-12)
    with pytest.raises(TypeError, match="kernel_shaped"):
        rules.direct_feedback_alignment(kernel_shaped="yes")


def test_the_delta_pass_as_a_vjp_inside_other_jax_code(mixed):
    net, params, x, y = mixed
    f = jp.loss_with_vjp(net)
    g_params, g_x = jax.grad(f, argnums=(0, 1))(params, x, y)
    assert_trees_close(g_params, net.backprop(params, x, y), 1e-12)
    assert_trees_close(g_x, jax.grad(net.loss, argnums=1)(params, x, y), 1e-12)
    apply = jp.apply_with_vjp(net)
    loss = lambda p, x: jnp.sum(jnp.sin(apply(p, x)))  # noqa: E731
    want = jax.grad(lambda p: jnp.sum(jnp.sin(net.forward(p, x))))(params)
    assert_trees_close(jax.grad(loss)(params, x), want, 1e-12)


def test_equal_configurations_written_differently_are_one_network():
    def make(kernel):
        return jp.Network((8, 1), (Conv(4, kernel), Flatten(), Dense(2)))

    assert make(3) == make((3,)) == make([3])
    assert hash(make(3)) == hash(make((3,)))
    assert make(3).architecture == make((3,)).architecture
    assert make(3) != make(2)


def test_a_users_layer_lacking_the_protocol_is_named():
    class NoGrads(Depthwise1D):
        def __getattribute__(self, name):
            if name == "grads":
                raise AttributeError(name)
            return super().__getattribute__(name)

    with pytest.raises(TypeError, match=r"layers\[0\] = .* lacks grads"):
        jp.Network((6, 2), (NoGrads(2), Flatten(), Dense(2)))
    with pytest.raises(TypeError, match="got the class Dense"):
        jp.Network((4,), (Dense,))


def test_the_mlps_dense_layer_binds_to_its_own_width():
    net = jp.Network((4,), (jp.Dense(4, 3), Dense(2)))
    assert net.blocks == jp.MLP((4, 3, 2)).layers
    with pytest.raises(ValueError, match=r"takes inputs of shape \(5,\)"):
        jp.Network((4,), (jp.Dense(5, 3), Dense(2)))


@pytest.mark.parametrize(
    "layers",
    [
        (Conv(3, 3), Conv(2, 2), Flatten(), Dense(2)),
        (Conv(2, 3), MaxPool(2), Flatten(), Dense(2)),
    ],
    ids=["conv-conv", "conv-pool"],
)
def test_a_users_rule_wrapping_a_built_in_projection_runs_each_layers_adjoint(layers):
    net = jp.Network((8, 1), layers, "tanh")
    params, x, y = draw(net, "real", 8)
    for base in (rules.backprop(), rules.sign_symmetry()):

        def project(params, state, base=base):
            inner = base.project(params, state)
            return lambda l, d, d_out: inner(l, d, d_out)

        mine = rules.delta_rule(lambda k, n, p: (), project, name="wrapped")
        want = base.value_and_grads(net, params, (), x, y)[1]
        got = mine.value_and_grads(net, params, (), x, y)[1]
        assert_trees_close(got, want, 1e-13)


def test_scaled_sign_symmetry_is_biotorchs_usf(mixed):
    net, params, x, y = mixed
    # Layer 2 is Conv(4, 2) on 3 channels (after the pool), layer 3 Dense(3)
    # on 4·(positions) inputs: Glorot's √(2 / (fan_in + fan_out)) of each.
    scales = [np.sqrt(2 / (2 * (3 + 4))), np.sqrt(2 / sum(params[2].w.shape))]
    weights = tuple(jnp.sign(p.w) * s for p, s in zip(params[1:], scales, strict=True))
    want = rules.delta_rule(
        lambda k, n, p: (), lambda p, s: rules.Through(weights), name="usf"
    ).value_and_grads(net, params, (), x, y)[1]
    rule = rules.sign_symmetry(scaled=True)
    assert_trees_close(rule.value_and_grads(net, params, (), x, y)[1], want, 1e-13)
    assert rule is rules.sign_symmetry(scaled=True)
    with pytest.raises(TypeError, match="scaled must be True or False"):
        rules.sign_symmetry(scaled=1)
