"""``jp.Network``: a network of layers. Dense-only networks are MLPs bit for
bit; its configuration is checked before anything compiles; a user's layer
trains under every rule with no change to the library."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop import rules

RULES = {
    "backprop": rules.backprop(),
    "fa": rules.feedback_alignment(),
    "dfa": rules.direct_feedback_alignment(),
    "sign": rules.sign_symmetry(),
    "kp": rules.kolen_pollack(0.05, 0.01),
}


def dense_pair():
    """A Network of Dense layers and the MLP of the same widths."""
    net = jp.Network(
        input_shape=(5,),
        layers=(jp.layers.Dense(7), jp.layers.Dense(4), jp.layers.Dense(3)),
        activation="tanh",
        cost="softmax_cross_entropy",
    )
    return net, jp.MLP((5, 7, 4, 3), "tanh", "identity", "softmax_cross_entropy")


def test_a_network_of_dense_layers_is_the_mlp_bit_for_bit():
    net, mlp = dense_pair()
    assert net.blocks == mlp.layers and net.sigma is mlp.sigma
    params = mlp.init(jax.random.key(0))
    jax.tree.map(np.testing.assert_array_equal, net.init(jax.random.key(0)), params)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 5)).astype(np.float32), rng.integers(0, 3, 6)
    jax.tree.map(
        np.testing.assert_array_equal,
        net.value_and_backprop(params, x, y),
        mlp.value_and_backprop(params, x, y),
    )
    keys = jax.random.split(jax.random.key(1), 3)
    a, b = (
        jp.train_seeds(n, keys, x, y, optax.sgd(0.1), 6, rule=RULES["dfa"])
        for n in (net, mlp)
    )
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)


def test_per_layer_activation_overrides_the_nets():
    net = jp.Network(
        (4,),
        (
            jp.layers.Dense(3, activation="sigmoid"),
            jp.layers.Dense(3),
            jp.layers.Dense(2),
        ),
        activation="tanh",
    )
    assert [s.name for s in net.sigma] == ["sigmoid", "tanh"]
    params = net.init(jax.random.key(0), dtype=jnp.float64)
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    a1 = jax.nn.sigmoid(x @ params[0].w + params[0].b)
    a2 = jnp.tanh(a1 @ params[1].w + params[1].b)
    np.testing.assert_allclose(
        net.forward(params, x), a2 @ params[2].w + params[2].b, rtol=1e-12
    )
    report = jp.check_grads(net, params, x, np.ones((3, 2)))
    assert report.passed, report


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(input_shape=(8, 2), layers=(jp.layers.Dense(3),)),
            ValueError,
            r"layers\[0\] = Dense\(features=3.*input shape \(8, 2\).*Flatten",
        ),
        (dict(input_shape=(4,), layers=()), ValueError, "at least one parametrized"),
        (
            dict(input_shape=(4,), layers=(jp.layers.Dense(2), "relu")),
            TypeError,
            r"layers\[1\] must be a layer",
        ),
        (
            dict(input_shape=(4,), layers=(jp.layers.Dense(2, activation="tanh"),)),
            ValueError,
            "output layer",
        ),
        (
            dict(input_shape=(0, 3), layers=(jp.layers.Dense(2),)),
            ValueError,
            "input_shape",
        ),
        (
            dict(input_shape="40", layers=(jp.layers.Dense(2),)),
            TypeError,
            "input_shape",
        ),
        (
            dict(input_shape=(4,), layers=jp.layers.Dense(2)),
            TypeError,
            "layers must be a sequence",
        ),
    ],
)
def test_bad_configurations_are_refused_naming_the_layer(kwargs, error, match):
    with pytest.raises(error, match=match):
        jp.Network(**kwargs)


def test_dense_refuses_a_width_of_zero():
    with pytest.raises(ValueError, match="features"):
        jp.layers.Dense(0)


def test_inputs_of_the_wrong_shape_are_refused_before_compiling():
    net, _ = dense_pair()
    params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 5\) or \(5,\)"):
        net.forward(params, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"params\[1\].w.*layer 2: layers\[1\]"):
        net.forward((params[0], params[0], params[2]), np.ones((2, 5)))


def test_a_network_pickles_and_hashes_by_its_configuration():
    import pickle

    net, _ = dense_pair()
    again = pickle.loads(pickle.dumps(net))
    assert again == net and hash(again) == hash(net) and again.blocks == net.blocks
