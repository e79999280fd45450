"""Behaviour of the MLP: shapes, jit and vmap, dtypes, numerics, init, feedback."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop as jp
from tests.helpers import assert_trees_close, make_case


def test_shapes_batched_and_single_example(seed):
    net, params, x, y = make_case(seed, (3, 5, 2), "tanh", "mse-identity", batch=4)
    assert net.forward(params, x).shape == (4, 2)
    assert net.forward(params, x[0]).shape == (2,)
    np.testing.assert_allclose(
        net.forward(params, x[0]), net.forward(params, x)[0], rtol=1e-15
    )
    assert net.loss(params, x, y).shape == ()
    # A single example is a batch of one.
    np.testing.assert_allclose(
        net.loss(params, x[1], y[1]), net.loss(params, x[1:2], y[1:2]), rtol=1e-15
    )
    assert_trees_close(
        net.backprop(params, x[1], y[1]),
        net.backprop(params, x[1:2], y[1:2]),
        rtol=1e-15,
    )
    grads = net.backprop(params, x, y)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(isinstance(g, jp.Layer) for g in grads)
    assert net.n_in == 3 and net.n_out == 2 and net.n_layers == 2


def test_reductions(seed):
    net_sum, params, x, y = make_case(seed, (3, 4, 2), "tanh", "mse-identity", "sum")
    net_mean = jp.MLP(net_sum.sizes, "tanh", "identity", "mse", "mean")
    batch = x.shape[0]
    np.testing.assert_allclose(
        net_mean.loss(params, x, y) * batch, net_sum.loss(params, x, y), rtol=1e-14
    )
    assert_trees_close(
        jax.tree.map(lambda g: g * batch, net_mean.backprop(params, x, y)),
        net_sum.backprop(params, x, y),
        rtol=1e-13,
    )


def test_mse_is_the_reference_loss(seed):
    """L = ½ Σ (y − ŷ)², summed over outputs and batch (reduction="sum")."""
    net, params, x, y = make_case(seed, (3, 4, 2), "sigmoid", "mse-sigmoid", "sum")
    y_hat = net.forward(params, x)
    np.testing.assert_allclose(
        net.loss(params, x, y), 0.5 * np.sum((y - y_hat) ** 2), rtol=1e-14
    )


@pytest.mark.parametrize("config", ["bce-sigmoid", "softmax-labels", "softmax-rows"])
def test_cross_entropies_match_optax(seed, config):
    import optax

    net, params, x, y = make_case(seed, (3, 4, 3), "tanh", config, "mean")
    _, cache = net.forward_with_cache(params, x)
    logits = cache.z[-1]
    if config == "bce-sigmoid":
        expected = optax.sigmoid_binary_cross_entropy(logits, y).sum(-1).mean()
    elif config == "softmax-labels":
        expected = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    else:
        expected = optax.softmax_cross_entropy(logits, y).mean()
    np.testing.assert_allclose(net.loss(params, x, y), expected, rtol=1e-12)


def test_labels_equal_one_hot_rows(seed):
    net, params, x, labels = make_case(seed, (3, 4, 5), "relu", "softmax-labels")
    rows = jax.nn.one_hot(labels, 5, dtype=x.dtype)
    np.testing.assert_allclose(
        net.loss(params, x, labels), net.loss(params, x, rows), rtol=1e-15
    )
    assert_trees_close(
        net.backprop(params, x, labels), net.backprop(params, x, rows), rtol=1e-15
    )


def test_value_and_backprop_and_loss_from_cache(seed):
    net, params, x, y = make_case(seed, (3, 4, 4, 2), "silu", "mse-identity")
    value, grads = net.value_and_backprop(params, x, y)
    y_hat, cache = net.forward_with_cache(params, x)
    np.testing.assert_allclose(y_hat, net.forward(params, x), rtol=1e-15)
    assert len(cache.a) == 4 and len(cache.z) == 3
    np.testing.assert_allclose(net.loss_from_cache(cache, y), value, rtol=1e-15)
    np.testing.assert_allclose(value, net.loss(params, x, y), rtol=1e-15)
    assert_trees_close(net.backward(params, cache, y), grads, rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_methods_under_jit_keep_dtype(seed, dtype):
    net, params, x, y = make_case(seed, (3, 4, 2), "tanh", "mse-identity", dtype=dtype)
    for method in (net.forward, net.loss, net.backprop):
        args = (params, x) if method == net.forward else (params, x, y)
        eager, jitted = method(*args), jax.jit(method)(*args)
        assert all(v.dtype == dtype for v in jax.tree.leaves(jitted))
        assert_trees_close(jitted, eager, rtol=1e-6 if dtype == np.float32 else 1e-14)

    # The net as a static argument of the user's own jitted function.
    @jax.jit
    def step(params):
        return jax.tree.map(
            lambda p, g: p - 0.1 * g, params, net.backprop(params, x, y)
        )

    stepped = step(params)
    assert all(p.dtype == dtype for p in jax.tree.leaves(stepped))
    assert net.loss(stepped, x, y) < net.loss(params, x, y)


def test_static_net_argument_shares_compilation(seed):
    net, params, x, y = make_case(seed, (3, 4, 2), "tanh", "mse-identity")
    same = jp.MLP([3, 4, 2], "tanh", "identity", "mse", "sum")  # a list is normalized
    assert same == net and hash(same) == hash(net) and same.sizes == (3, 4, 2)

    @chex.assert_max_traces(n=1)
    def loss(net, params, x, y):
        return net.loss(params, x, y)

    jitted = jax.jit(loss, static_argnums=0)
    for n, scale in ((net, 1.0), (same, 2.0), (net, 3.0)):
        jitted(n, jax.tree.map(lambda p: p * scale, params), x + scale, y)


def test_no_retracing_for_new_values(seed):
    net, params, x, y = make_case(seed, (3, 4, 2), "tanh", "mse-identity")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def value_and_grads(params, x, y):
        return net.value_and_backprop(params, x, y)

    for i in range(3):
        value_and_grads(jax.tree.map(lambda p: p + i, params), x * i, y)


def test_vmap_over_stacked_params(seed):
    net, _, x, y = make_case(seed, (3, 6, 2), "gelu", "mse-identity", batch=7)
    keys = jax.random.split(jax.random.key(seed), 5)
    stacked = jax.vmap(net.init)(keys)
    assert stacked[0].w.shape == (5, 3, 6) and stacked[1].b.shape == (5, 2)
    batched = jax.jit(jax.vmap(net.value_and_backprop, in_axes=(0, None, None)))(
        stacked, x, y
    )
    for i, k in enumerate(keys):
        params = net.init(k)
        assert_trees_close(jax.tree.map(lambda s: s[i], stacked), params, rtol=0)
        value, grads = net.value_and_backprop(params, x, y)
        np.testing.assert_allclose(batched[0][i], value, rtol=1e-13)
        assert_trees_close(jax.tree.map(lambda s: s[i], batched[1]), grads, rtol=1e-13)


def test_vmap_over_examples_gives_per_example_gradients(seed):
    net, params, x, y = make_case(seed, (3, 4, 2), "tanh", "mse-identity", "sum")
    per_example = jax.vmap(net.backprop, in_axes=(None, 0, 0))(params, x, y)
    assert per_example[0].w.shape == (x.shape[0], 3, 4)
    assert_trees_close(
        jax.tree.map(lambda g: g.sum(0), per_example),
        net.backprop(params, x, y),
        rtol=1e-13,
    )


def test_integer_inputs_are_cast(seed):
    net, params, _, y = make_case(seed, (2, 3, 1), "sigmoid", "mse-sigmoid")
    x_int = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, -1]])
    x_bool = x_int[:4].astype(bool)
    np.testing.assert_allclose(
        net.loss(params, x_int, y),
        net.loss(params, x_int.astype(np.float64), y),
        rtol=0,
    )
    assert net.forward(params, x_bool).dtype == jnp.float64
    np.testing.assert_allclose(
        net.forward(params, [[0, 1], [1, 1]]),
        net.forward(params, x_int[[1, 3]]),
        rtol=0,
    )


# ------------------------------------------------------------------- numerics
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "config,scale",
    [
        ("bce-sigmoid", 1e4),
        ("softmax-labels", 1e4),
        ("softmax-rows", 1e4),
        ("mse-sigmoid", 1e4),
        ("mse-tanh", 1e4),
    ],
)
def test_saturated_outputs_stay_finite(seed, config, scale, dtype):
    net, params, x, y = make_case(seed, (3, 4, 3), "tanh", config, dtype=dtype)
    params = jax.tree.map(lambda p: p * scale, params)  # logits of order ±1e4
    _, cache = net.forward_with_cache(params, x)
    assert np.max(np.abs(cache.z[-1])) > 1e3
    value, grads = net.value_and_backprop(params, x, y)
    assert np.isfinite(value)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    autodiff = jax.grad(net.loss)(params, x, y)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(autodiff))


def test_bce_huge_logits_exact_value():
    """log σ(−1000) = −1000 exactly; a naive log(sigmoid) gives −inf."""
    net = jp.MLP((1, 1), "identity", "sigmoid", "binary_cross_entropy", "sum")
    params = (jp.Layer(jnp.array([[1.0]]), jnp.array([0.0])),)
    x, y = jnp.array([[-1000.0], [1000.0]]), jnp.array([[1.0], [1.0]])
    np.testing.assert_allclose(net.loss(params, x, y), 1000.0, rtol=1e-15)
    np.testing.assert_allclose(net.backprop(params, x, y)[0].b, [-1.0], rtol=1e-15)


@pytest.mark.parametrize("activation", list(jp.ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_finite_at_extremes(activation, dtype):
    sigma = jp.ACTIVATIONS[activation]
    z = jnp.asarray([-1e30, -1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4, 1e30], dtype)
    a = sigma.fn(z)
    d = sigma.derivative(z, a)
    assert d.dtype == dtype
    finite = np.abs(np.asarray(z)) < 1e20 if activation == "identity" else True
    assert np.all(np.isfinite(np.asarray(a)[finite])) and np.all(np.isfinite(d))


@pytest.mark.parametrize("activation", list(jp.ACTIVATIONS))
def test_activation_derivatives_match_autodiff(activation):
    """σ' by hand equals jax.grad of σ, including at 0 (the kink of relu)."""
    sigma = jp.ACTIVATIONS[activation]
    z = jnp.concatenate([jnp.linspace(-8.0, 8.0, 161), jnp.array([0.0, -0.0, 1e-300])])
    expected = jax.vmap(jax.grad(sigma.fn))(z)
    np.testing.assert_allclose(
        sigma.derivative(z, sigma.fn(z)), expected, rtol=1e-13, atol=1e-15
    )


# ----------------------------------------------------------------------- init
@pytest.mark.parametrize(
    "dtype", [pytest.param(np.float32, marks=pytest.mark.slow), np.float64]
)
@pytest.mark.parametrize("scheme", jp.SCHEMES)
def test_init_schemes(key, scheme, dtype):
    net = jp.MLP((200, 300, 10), "tanh")
    params = net.init(key, scheme=scheme, dtype=dtype)
    assert [p.w.shape for p in params] == [(200, 300), (300, 10)]
    assert [p.b.shape for p in params] == [(300,), (10,)]
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(params))
    w = np.asarray(params[0].w, np.float64)
    if scheme == "uniform01":
        assert 0 <= w.min() and w.max() < 1 and abs(w.mean() - 0.5) < 0.01
        assert 0 <= params[0].b.min() and params[0].b.max() < 1
    else:
        assert np.all(params[0].b == 0) and abs(w.mean()) < 0.01
        expected_var = {"glorot": 2 / (200 + 300), "he": 2 / 200, "lecun": 1 / 200}
        np.testing.assert_allclose(w.var(), expected_var[scheme], rtol=0.05)
    # Deterministic per key; another key, other values.
    assert_trees_close(net.init(key, scheme=scheme, dtype=dtype), params, rtol=0)
    other = net.init(jax.random.split(key)[0], scheme=scheme, dtype=dtype)
    assert not np.array_equal(other[0].w, params[0].w)


def test_init_default_scheme_follows_activation(key):
    for activation, scheme in jp.DEFAULT_SCHEME.items():
        net = jp.MLP((4, 5, 2), activation)
        assert_trees_close(net.init(key), net.init(key, scheme=scheme), rtol=0)
    assert set(jp.DEFAULT_SCHEME) == set(jp.ACTIVATIONS)


def test_init_accepts_legacy_keys():
    net = jp.MLP((2, 3, 1))
    params = net.init(jax.random.PRNGKey(0))
    assert params[0].w.shape == (2, 3)


# ------------------------------------------------------------------- feedback
def test_feedback_path_is_replaceable(seed):
    net, params, x, y = make_case(seed, (3, 5, 4, 2), "tanh", "mse-identity")
    _, cache = net.forward_with_cache(params, x)
    grads = net.backprop(params, x, y)
    weights = [layer.w for layer in params[1:]]
    assert_trees_close(net.backward(params, cache, y, feedback=weights), grads, rtol=0)
    # Fixed random feedback (feedback alignment): only the last layer keeps its
    # true gradient, which does not pass through any feedback matrix.
    rng = np.random.default_rng(seed)
    b = [jnp.asarray(rng.normal(size=w.shape)) for w in weights]
    fa = net.backward(params, cache, y, feedback=b)
    assert_trees_close(fa[-1], grads[-1], rtol=0)
    assert not np.allclose(fa[0].w, grads[0].w)
    # Hand-derived: δ² = (δ³ B³ᵀ) ⊙ σ'(z²) with the output δ³ = ŷ − y (identity).
    delta3 = cache.a[3] - y
    delta2 = (delta3 @ b[1].T) * (1 - cache.a[2] ** 2)
    np.testing.assert_allclose(fa[1].w, cache.a[1].T @ delta2, rtol=1e-13)


@pytest.mark.parametrize("sizes", [(5, 3), (32, 64, 64, 10), (2, 2, 1), (7, 1, 9, 4)])
def test_flops_count_the_compiled_step(sizes):
    # MLP.flops counts the matmuls; XLA's cost analysis of the compiled pass
    # counts those and the elementwise work on top, which is small beside them.
    net = jp.MLP(sizes, "tanh", "identity", "mse", "mean")
    params = net.init(jax.random.key(0))
    x = jnp.ones((16, sizes[0]))
    y = jnp.ones((16, sizes[-1]))
    for backward, fn in [(False, net.forward), (True, net.backprop)]:
        args = (params, x) if not backward else (params, x, y)
        xla = jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]
        ours = net.flops(16, backward=backward)
        assert ours <= xla <= 1.2 * ours + 200 * 16 * sum(sizes), (backward, ours, xla)
    assert net.flops(16) > net.flops(16, backward=False)


def test_a_net_holds_its_objects_resolved_once_and_pickles_as_its_configuration():
    import copy
    import pickle

    net = jp.MLP((2, 3, 1), "tanh", "sigmoid", "mse")
    assert net.sigma is jp.ACTIVATIONS["tanh"] and net.cost_fn is jp.COSTS["mse"]
    assert net.sigma_out is jp.ACTIVATIONS["sigmoid"]
    assert net.layers == (jp.Dense(2, 3), jp.Dense(3, 1))
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert other == net and hash(other) == hash(net)
        assert other.sigma is net.sigma and other.layers == net.layers
