"""Layer kinds (``jaxprop._core.layers``): each function of Dense against JAX's
own derivatives of ``apply`` in float64, and the network built from them."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop._core.layers import Dense, dense_layers
from jaxprop._engine.checkpoint import checkpoint_meta, differences
from tests.helpers import apply_vjp, assert_close_leaves

SHAPES = [(1, 1, 1), (5, 3, 4), (7, 6, 2)]  # (batch, n_in, n_out)


def _case(seed, batch, n_in, n_out):
    """A Dense layer, θ, a^{l-1}: (batch, n_in), δ^l: (batch, n_out), s: (batch,)."""
    k = jax.random.split(jax.random.key(seed), 5)
    layer = Dense(n_in, n_out)
    theta = jp.DenseParams(
        jax.random.normal(k[0], (n_in, n_out)), jax.random.normal(k[1], (n_out,))
    )
    a = jax.random.normal(k[2], (batch, n_in))
    delta = jax.random.normal(k[3], (batch, n_out))
    scale = jax.random.uniform(k[4], (batch,))
    return layer, theta, a, delta, scale


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_apply_is_a_w_plus_b(seed, shape):
    layer, theta, a, _, _ = _case(seed, *shape)
    assert_close_leaves(layer.apply(theta, a), a @ theta.w + theta.b)
    assert layer.out_shape == (shape[2],) and layer.in_shape == (shape[1],)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_adjoint_is_the_vjp_of_apply(seed, shape):
    layer, theta, a, delta, _ = _case(seed, *shape)
    assert_close_leaves(
        jax.jit(layer.adjoint)(theta.w, delta), apply_vjp(layer, theta, a, delta)[1]
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_grads_are_the_vjp_of_apply_in_theta(seed, shape):
    """grads(a, δ) is θ's VJP; with a scale s, the VJP of the cotangent s ⊙ δ."""
    layer, theta, a, delta, s = _case(seed, *shape)
    assert_close_leaves(
        jax.jit(layer.grads)(a, delta), apply_vjp(layer, theta, a, delta)[0]
    )
    scaled = apply_vjp(layer, theta, a, s[:, None] * delta)[0]
    assert_close_leaves(jax.jit(layer.grads)(a, delta, s), scaled)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_per_example_grads_and_sq_norms(seed, shape):
    """Every example's own VJP in θ, and the squared norm of each, unformed."""
    layer, theta, a, delta, _ = _case(seed, *shape)
    one = lambda a_i, d_i: apply_vjp(layer, theta, a_i[None], d_i[None])[0]  # noqa: E731
    want = jax.vmap(one)(a, delta)
    assert_close_leaves(jax.jit(layer.per_example_grads)(a, delta), want)
    sq = sum(jnp.sum(l.reshape(l.shape[0], -1) ** 2, 1) for l in jax.tree.leaves(want))
    assert_close_leaves(jax.jit(layer.sq_norms)(a, delta), sq)


def test_the_check_catches_a_gradient_off_by_a_tenth_of_a_percent(seed):
    """Negative test: an adjoint or gradient 0.1% off fails the comparison."""
    layer, theta, a, delta, _ = _case(seed, 5, 3, 4)
    dtheta, da = apply_vjp(layer, theta, a, delta)
    with pytest.raises(AssertionError):
        assert_close_leaves(1.001 * layer.adjoint(theta.w, delta), da)
    off = layer.grads(a, delta)._replace(b=1.001 * layer.grads(a, delta).b)
    with pytest.raises(AssertionError):
        assert_close_leaves(off, dtheta)


def test_dense_on_runs_last_arrays_is_each_runs_own(seed):
    """With a trailing runs axis on every array (the tiny-network path), each
    function gives every run what it gives that run alone."""
    runs = 3
    layer, theta, a, _, s = _case(seed, 4, 3, 2)
    k = jax.random.split(jax.random.key(seed + 1), 2)
    w = jax.random.normal(k[0], (runs, 3, 2))
    d = jax.random.normal(k[1], (runs, 4, 2))
    last = lambda x: jnp.moveaxis(x, 0, -1)  # noqa: E731
    theta_r = jp.DenseParams(w, jnp.stack([theta.b] * runs))
    cases = {
        "apply": (layer.apply, (theta_r, a), (0, None)),
        "adjoint": (layer.adjoint, (w, d), (0, 0)),
        "grads": (layer.grads, (a, d, s), (None, 0, None)),
        "sq_norms": (layer.sq_norms, (a, d), (None, 0)),
    }
    for fn, args, axes in cases.values():
        want = jax.vmap(fn, in_axes=axes)(*args)
        moved = [
            jax.tree.map(last, x)
            if ax == 0
            else jax.tree.map(lambda v: v[..., None], x)
            for x, ax in zip(args, axes, strict=True)
        ]
        got = jax.tree.map(lambda g: jnp.moveaxis(g, -1, 0), fn(*moved))
        got = jax.tree.map(lambda g, w: jnp.broadcast_to(g, w.shape), got, want)
        assert_close_leaves(got, want)


def test_a_network_is_its_dense_layers():
    """net.layers follows sizes; layers are configuration equal by value (one
    compiled program for equal nets), not part of the net's identity."""
    net = jp.MLP((2, 5, 3, 1), "tanh", "sigmoid", "mse")
    assert net.layers == (Dense(2, 5), Dense(5, 3), Dense(3, 1))
    assert net.layers == dense_layers(net.sizes)
    assert hash(Dense(2, 5)) == hash(Dense(2, 5))
    assert net == jp.MLP((2, 5, 3, 1), "tanh", "sigmoid", "mse")
    assert "layers" not in repr(net)


@pytest.mark.parametrize("sizes", [(3, 4), (2, 5, 3, 1), (4, 7, 5, 3)])
def test_flops_are_summed_over_layers(sizes):
    """2·batch·Σ n_{l-1} n_l forward; the backward adds as much for the
    gradients and again for each adjoint but the first layer's."""
    net = jp.MLP(sizes)
    products = [i * o for i, o in itertools.pairwise(sizes)]
    assert net.flops(8, backward=False) == 2 * 8 * sum(products)
    assert net.flops(8) == 2 * 8 * (2 * sum(products) + sum(products[1:]))


@pytest.mark.parametrize("scheme", jp.SCHEMES)
def test_init_draws_each_layers_theta_from_its_own_keys(scheme):
    """One split of the key, two keys a layer in order: w from the first
    (its initializer at fan-in n_{l-1}), b from the second."""
    net = jp.MLP((3, 4, 2), "tanh")
    key = jax.random.key(7)
    params = net.init(key, scheme=scheme)
    keys = jax.random.split(key, 4)
    for l, (layer, theta) in enumerate(zip(net.layers, params, strict=True)):
        want = layer.init(keys[2 * l : 2 * l + 2], scheme, theta.w.dtype)
        assert_close_leaves(theta, want)
        assert theta.w.shape == (layer.n_in, layer.n_out)
    assert isinstance(params[0], jp.Layer) and jp.Layer is jp.DenseParams


def test_checkpoints_that_name_the_params_layer_still_load():
    """Adam's state holds the params' class: files written while it was called
    ``Layer`` record ``namedtuple[Layer]`` and still match (same class); a
    state of another structure still differs."""
    x, y = jp.data.xor("float64")
    net = jp.MLP((2, 3, 1), "tanh", "sigmoid", "mse")
    keys = jax.random.split(jax.random.key(0), 2)
    trainer = jp.Trainer(net, keys, x, y, optax.adam(0.1), 4)
    meta = checkpoint_meta(trainer)
    mine = meta["trainer"]["optimizer state"]
    assert "namedtuple[DenseParams]" in mine
    old = mine.replace("namedtuple[DenseParams]", "namedtuple[Layer]")
    assert (
        differences(trainer, {"trainer": meta["trainer"] | {"optimizer state": old}})
        == []
    )
    other = mine.replace("namedtuple[DenseParams]", "namedtuple[Other]")
    assert differences(
        trainer, {"trainer": meta["trainer"] | {"optimizer state": other}}
    ) == ["optimizer state (another structure: another optimizer or its options)"]


@pytest.mark.parametrize(
    "n_in, exc", [(0, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_a_dense_layer_of_no_width_or_a_fractional_one_is_refused(n_in, exc):
    with pytest.raises(exc, match="n_in must be a positive integer"):
        jp.Dense(n_in, 3)


def test_a_rule_state_that_names_the_params_layer_still_loads():
    """A user rule whose state holds the params' class (``jp.Layer``, now
    ``DenseParams``): files of that time record ``namedtuple[Layer]`` in the
    rule state too, and still match."""
    x, y = jp.data.xor("float64")
    net = jp.MLP((2, 3, 1), "tanh", "sigmoid", "mse")
    rule = jp.rules.delta_rule(
        lambda key, net, params: tuple(jp.Layer(p.w, p.b) for p in params),
        lambda params, state: jp.rules.backprop().project(params, None),
        name="layer_state",
    )
    keys = jax.random.split(jax.random.key(0), 2)
    trainer = jp.Trainer(net, keys, x, y, optax.sgd(0.1), 4, rule=rule)
    meta = checkpoint_meta(trainer)["trainer"]
    mine = meta["rule state"]
    assert "namedtuple[DenseParams]" in mine
    old = mine.replace("namedtuple[DenseParams]", "namedtuple[Layer]")
    assert differences(trainer, {"trainer": meta | {"rule state": old}}) == []


def test_a_rule_written_around_a_built_in_projection_still_works():
    """User rules of the time before layers called a built-in rule's projection
    as a function (l, δ^{l+1}, δ^L) -> signal; they still can."""
    x, y = jp.data.xor("float64")
    net = jp.MLP((2, 3, 1), "tanh", "sigmoid", "mse")
    params = net.init(jax.random.key(0), dtype="float64")
    bp_rule = jp.rules.backprop()

    def project(params, state):
        inner = bp_rule.project(params, state)
        return lambda l, d, d_out: 0.5 * inner(l, d, d_out)

    half = jp.rules.delta_rule(lambda key, net, params: None, project, name="half")
    _, grads, _ = half.value_and_grads(net, params, None, x, y)
    _, exact = net.value_and_backprop(params, x, y)
    # The output layer's δ is the true one; the hidden layer's is halved.
    np.testing.assert_allclose(grads[1].w, exact[1].w, rtol=1e-12)
    np.testing.assert_allclose(grads[0].w, 0.5 * exact[0].w, rtol=1e-12)
