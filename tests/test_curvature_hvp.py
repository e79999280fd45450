"""jp.curvature's gradient statistics, Hessian-vector products by the
R-operator and top eigenvalue, and the activations' σ'', in float64 against
per_example_grads, vmap(grad), jax.jvp(jax.grad) and eigvalsh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxprop as jp
from jaxprop.layers import AvgPool, Conv, Dense, Flatten, MaxPool
from tests.helpers import (
    COST_CONFIGS,
    Depthwise1D,
    assert_trees_close,
    every_pair,
    make_case,
    scale_layer,
)
from tests.test_bad_input import check_raises
from tests.test_conv_nets import draw

RTOL = 1e-12


def conv_case(cost_config, reduction, seed, pool=MaxPool):
    """A 1-D conv net with max pooling (ties unlikely with random inputs)."""
    cost, out_act, targets = COST_CONFIGS[cost_config]
    layers = (Conv(3, 3, stride=1), pool(2), Conv(2, 2), Flatten(), Dense(3))
    net = jp.Network((9, 2), layers, "tanh", out_act, cost, reduction)
    return (net, *draw(net, targets, seed))


def mlp_case(seed, activation, cost_config, reduction, sizes=(3, 4, 3)):
    return make_case(seed, sizes, activation, cost_config, reduction, batch=5)


# ------------------------------------------------------ gradient statistics
def oracle_grads(net, params, x, y):
    """Every example's g_i by vmap(grad) of its own cost, with the reduction's
    scaling (1/N for "mean")."""
    n = x.shape[0]
    scale = 1.0 if net.reduction == "sum" else 1.0 / n
    one = lambda p, xi, yi: net.loss(p, xi[None], yi[None])  # noqa: E731
    g = jax.vmap(jax.grad(one), (None, 0, 0))(params, x, y)
    return jax.tree.map(lambda leaf: scale * leaf, g)


CASES = {
    "mlp": lambda r, s: mlp_case(s, "tanh", "mse-sigmoid", r),
    "conv": lambda r, s: conv_case("softmax-labels", r, s),
}


@pytest.mark.parametrize(
    "kind,reduction",
    [
        ("mlp", "sum"),
        ("conv", "mean"),
        pytest.param("mlp", "mean", marks=pytest.mark.slow),
        pytest.param("conv", "sum", marks=pytest.mark.slow),
    ],
)
def test_sum_grad_squared_and_variance_are_the_per_example_oracles(
    kind, reduction, seed
):
    net, params, x, y = CASES[kind](reduction, seed)
    n = x.shape[0]
    scale = 1.0 if reduction == "sum" else 1.0 / n

    @jax.jit
    def everything(params, x, y):
        g = jp.per_example_grads(net, params, x, y)
        return (
            jp.curvature.sum_grad_squared(net, params, x, y),
            jp.curvature.grad_variance(net, params, x, y),
            jax.tree.map(lambda l: scale * l, g),
            oracle_grads(net, params, x, y),
        )

    sgs, var, g, oracle = everything(params, x, y)
    assert_trees_close(g, oracle, RTOL)
    want = jax.tree.map(lambda l: jnp.sum(l * l, 0), g)
    assert_trees_close(sgs, want, RTOL)
    with pytest.raises(AssertionError):  # the check catches 0.1% on one layer
        assert_trees_close(scale_layer(sgs, 0, "w", 1.001), want, RTOL)
    # BackPACK's Variance: the population variance of the scaled g_i (for
    # "mean", 1/N² times that of the unscaled ∂c_i/∂θ).
    want = jax.tree.map(lambda l: jnp.var(l, 0), g)
    assert_trees_close(var, want, 1e-10, 1e-13)
    assert all(np.all(leaf >= 0) for leaf in jax.tree.leaves(var))


def test_sum_grad_squared_of_a_users_layer(seed):
    layers = (Depthwise1D(3), Flatten(), Dense(2))
    net = jp.Network((7, 2), layers, "tanh", "identity", "mse", "sum")
    params, x, y = draw(net, "real", seed)
    want = jax.tree.map(lambda l: jnp.sum(l * l, 0), oracle_grads(net, params, x, y))
    assert_trees_close(jp.curvature.sum_grad_squared(net, params, x, y), want, RTOL)


def stacked_params(net, seeds):
    return [net.init(jax.random.key(s), dtype=jnp.float64) for s in seeds]


def test_vmap_over_seeds_equals_a_loop(seed):
    net, _, x, y = mlp_case(seed, "softplus", "softmax-labels", "mean")
    ps = stacked_params(net, [seed, seed + 1, seed + 2])
    stacked = jax.tree.map(lambda *l: jnp.stack(l), *ps)
    v = jax.tree.map(lambda l: jnp.cos(l + 1.0), stacked)

    def fn(p, v, x, y):
        return (
            jp.curvature.sum_grad_squared(net, p, x, y),
            jp.curvature.grad_variance(net, p, x, y),
            jp.curvature.hessian_vector_product(net, p, x, y, v),
        )

    batched = jax.jit(jax.vmap(fn, (0, 0, None, None)))(stacked, v, x, y)
    alone = jax.jit(fn)
    for i, p in enumerate(ps):
        one = alone(p, jax.tree.map(lambda l, i=i: l[i], v), x, y)
        assert_trees_close(jax.tree.map(lambda l, i=i: l[i], batched), one, 1e-13)


# ------------------------------------------------------ activations' σ''
@pytest.mark.parametrize(
    "name",
    [
        n if n in ("relu", "silu") else pytest.param(n, marks=pytest.mark.slow)
        for n in sorted(jp.ACTIVATIONS)
    ],
)
def test_every_builtin_has_a_second_derivative_equal_to_autodiffs(name):
    act = jp.ACTIVATIONS[name]
    z = jnp.concatenate([jnp.linspace(-8, 8, 161), jnp.array([0.0, 1e-9, -1e-9])])
    got = act.second_derivative(z, act.fn(z))
    want = jax.vmap(jax.grad(jax.grad(act.fn)))(z)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_check_activation_checks_the_second_derivative():
    tanh = jp.ACTIVATIONS["tanh"]
    report = jp.check_activation(tanh)
    assert report.passed, report
    second = [r for r in report.rows if r.check == "σ'' vs grad"]
    assert len(second) == 4 and all(r.n > 0 for r in second)
    off = tanh._replace(
        name="tanh_off",
        second_derivative=lambda z, a: 1.001 * tanh.second_derivative(z, a),
    )
    report = jp.check_activation(off)
    assert not report.passed
    assert {r.check for r in report.rows if not r.passed} == {"σ'' vs grad"}
    assert "jax.grad(jax.grad(fn))" in str(report)
    check_raises(
        TypeError,
        r"activation.second_derivative of 'x' must be None or callable",
        jp.MLP,
        (2, 1),
        jp.Activation("x", jnp.tanh, lambda z, a: 1 - a * a, second_derivative=3),
    )


# ------------------------------------------------------ Hessian-vector products
def autodiff_hvp(net, params, x, y, v):
    return jax.jvp(lambda p: jax.grad(net.loss)(p, x, y), (params,), (v,))[1]


def both(net, params, x, y, v):
    """(the R-operator's H v, jax.jvp of jax.grad's), in one program."""
    hv = jp.curvature.hessian_vector_product(net, params, x, y, v)
    return hv, autodiff_hvp(net, params, x, y, v)


def direction(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda l: jnp.asarray(rng.normal(size=l.shape)), params)


MLP_CASES = [
    ("sigmoid", "mse-sigmoid", "sum"),
    ("tanh", "softmax-labels", "mean"),
    ("gelu", "bce-sigmoid", "sum"),
]
SLOW_CASES = [c for c in every_pair() if c not in MLP_CASES]


@pytest.mark.parametrize(
    "activation,cost_config,reduction",
    MLP_CASES + [pytest.param(*c, marks=pytest.mark.slow) for c in SLOW_CASES],
)
def test_hvp_of_an_mlp_is_jvp_of_grad(activation, cost_config, reduction, seed):
    net, params, x, y = mlp_case(seed, activation, cost_config, reduction, (3, 4, 4, 3))
    v = direction(params, seed)
    got, want = jax.jit(both, static_argnums=0)(net, params, x, y, v)
    assert_trees_close(got, want, RTOL)
    with pytest.raises(AssertionError):  # the check catches 0.1% on one layer
        assert_trees_close(scale_layer(got, 1, "b", 1.001), want, RTOL)


@pytest.mark.parametrize(
    "cost_config,pool",
    [
        ("softmax-labels", MaxPool),
        pytest.param("mse-sigmoid", MaxPool, marks=pytest.mark.slow),
        pytest.param("bce-sigmoid", AvgPool, marks=pytest.mark.slow),
    ],
)
def test_hvp_of_a_conv_net_with_pooling_is_jvp_of_grad(cost_config, pool, seed):
    net, params, x, y = conv_case(cost_config, "mean", seed, pool)
    v = direction(params, seed)
    got, want = jax.jit(both, static_argnums=0)(net, params, x, y, v)
    assert_trees_close(got, want, RTOL)


def test_hvp_refuses_what_it_cannot_differentiate(seed):
    net, params, x, y = mlp_case(seed, "tanh", "mse-sigmoid", "sum")
    hvp = jp.curvature.hessian_vector_product
    check_raises(
        ValueError, r"v has 1 layers; params has 2", hvp, net, params, x, y, params[:1]
    )
    bad = (params[0], params[1]._replace(b=params[1].b[:1]))
    check_raises(
        ValueError,
        r"v\[1\]\.b has shape \(1,\); params\[1\]\.b has \(3,\)",
        hvp,
        net,
        params,
        x,
        y,
        bad,
    )
    check_raises(
        TypeError, r"v\[0\] must be a jp.DenseParams", hvp, net, params, x, y, (1, 2)
    )
    hinge, p, xh, yh = make_case(seed, (3, 2), "tanh", ("hinge", "identity", "signs"))
    check_raises(
        ValueError, r"cost 'hinge' has no hessian_sqrt", hvp, hinge, p, xh, yh, p
    )
    plain = jp.Activation("plain_tanh", jnp.tanh, lambda z, a: 1 - a * a)
    net2 = jp.MLP((3, 4, 3), plain, "sigmoid", "mse", "sum")
    check_raises(
        ValueError,
        r"hidden activation of layer 1 'plain_tanh' has no second_derivative",
        hvp,
        net2,
        params,
        x,
        y,
        params,
    )
    net3 = jp.MLP((3, 4, 3), "tanh", plain, "mse", "sum")
    check_raises(
        ValueError, r"output activation 'plain_tanh'", hvp, net3, params, x, y, params
    )
    user = jp.Network((7, 2), (Depthwise1D(3), Flatten(), Dense(2)), "tanh")
    pu, xu, yu = draw(user, "real", seed)
    check_raises(
        ValueError,
        r"params\[0\] .*Depthwise1D.*bilinear = True",
        hvp,
        user,
        pu,
        xu,
        yu,
        pu,
    )


# ------------------------------------------------------ top eigenvalue
def test_top_eigenvalue_is_eigvalsh_of_the_dense_hessian(seed):
    net, params, x, y = mlp_case(seed, "tanh", "mse-identity", "sum", (3, 4, 2))
    flat, unravel = ravel_pytree(params)
    dense = jax.jit(jax.hessian(lambda f: net.loss(unravel(f), x, y)))(flat)
    eig = np.linalg.eigvalsh(np.asarray(dense))
    want = eig[np.argmax(np.abs(eig))]
    top = jax.jit(
        jax.vmap(lambda k: jp.curvature.top_eigenvalue(net, params, x, y, k, iters=200))
    )(jax.random.split(jax.random.key(seed), 3))
    np.testing.assert_allclose(top, want, rtol=1e-8)
    check_raises(
        ValueError,
        r"Unknown matrix 'hesian'",
        jp.curvature.top_eigenvalue,
        net,
        params,
        x,
        y,
        jax.random.key(0),
        matrix="hesian",
    )
    check_raises(
        ValueError,
        r"iters",
        jp.curvature.top_eigenvalue,
        net,
        params,
        x,
        y,
        jax.random.key(0),
        iters=0,
    )


def test_top_eigenvalue_of_the_ggn_is_eigvalsh_of_its_dense_matrix(seed):
    """The GGN's columns G e_j from ggn_vector_product (checked against jax
    in test_curvature_ggn.py): its largest eigenvalue, PSD."""
    net, params, x, y = mlp_case(seed, "tanh", "mse-sigmoid", "mean", (3, 4, 2))
    flat, unravel = ravel_pytree(params)
    gvp = jax.jit(
        lambda e: ravel_pytree(
            jp.curvature.ggn_vector_product(net, params, x, y, unravel(e))
        )[0]
    )
    dense = np.stack([gvp(e) for e in np.eye(flat.size, dtype=flat.dtype)], 1)
    eig = np.linalg.eigvalsh((dense + dense.T) / 2)
    assert eig.min() > -1e-12  # positive semi-definite
    top = jp.curvature.top_eigenvalue(
        net, params, x, y, jax.random.key(seed), matrix="ggn", iters=300
    )
    np.testing.assert_allclose(top, eig[-1], rtol=1e-8)
