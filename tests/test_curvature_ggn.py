"""jp.curvature's GGN quantities against jax (float64): the diagonal, the
Monte Carlo diagonal, G v and the Kronecker factors, each from the hand-written
δ pass; jax.jacrev/jax.hessian/jax.jvp/jax.vjp build the references here only."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import Depthwise1D, assert_trees_close, make_case, scale_layer
from test_bad_input import check_raises

import jaxprop as jp
from jaxprop._core import backprop as bp
from jaxprop._core import curvature

Conv, Dense, Flatten = jp.layers.Conv, jp.layers.Dense, jp.layers.Flatten
MaxPool = jp.layers.MaxPool

MLP_CASES = {
    "mse-sigmoid-sum": ((3, 4, 2), "tanh", "mse-sigmoid", "sum"),
    "mse-sigmoid-mean": ((3, 4, 2), "tanh", "mse-sigmoid", "mean"),
    "softmax-labels-mean": ((3, 5, 3), "relu", "softmax-labels", "mean"),
    "softmax-rows-sum": ((3, 4, 3), "tanh", "softmax-rows", "sum"),
    "bce-sum": ((3, 4, 4, 2), "tanh", "bce-sigmoid", "sum"),
}


def mlp_case(name, seed=0, batch=5):
    sizes, act, cost, reduction = MLP_CASES[name]
    return make_case(seed, sizes, act, cost, reduction, batch=batch)


def conv_net_case(input_shape, layers, seed, batch, labels):
    """A softmax cross-entropy conv net of ``layers``, float64 params with
    nonzero biases (zeros would hide a bias term), N(0, 1) inputs and
    ``labels(rng, batch)``."""
    net = jp.Network(
        input_shape, layers, "tanh", cost="softmax_cross_entropy", reduction="mean"
    )
    params = net.init(jax.random.key(seed), dtype=jnp.float64)
    params = tuple(t._replace(b=t.b + 0.3) for t in params)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(batch, *input_shape)))
    return net, params, x, jnp.asarray(labels(rng, batch))


def conv_case(seed=0, batch=4, pool=True):
    maps = (MaxPool(2),) if pool else ()
    layers = (Conv(3, 3), *maps, Flatten(), Dense(3))
    return conv_net_case((9, 2), layers, seed, batch, lambda r, b: r.integers(0, 3, b))


# ------------------------------------------------------------- references
def split_output(net, params, x):
    """u: (batch, n_out), z^L for a "logits" cost, ŷ for an "output" one."""
    _, cache = bp.forward(net.blocks, params, x, net.sigma, net.sigma_out)
    return cache.z[-1] if net.cost_fn.ggn_at == "logits" else cache.a[-1]


def loss_hessians(net, params, x, y):
    """ρ ∂²c_i/∂u_i²: (batch, n_out, n_out), by jax.hessian."""
    cost, sigma = net.cost_fn, net.sigma_out
    u = split_output(net, params, x)
    _, cache = bp.forward(net.blocks, params, x, net.sigma, net.sigma_out)
    rho = 1.0 if net.reduction == "sum" else 1.0 / x.shape[0]

    def one(u_i, z_i, y_i):
        def c(u):
            z, a = (u, sigma.fn(u)) if cost.ggn_at == "logits" else (z_i, u)
            return cost.value_and_delta(z[None], a[None], y_i[None], sigma)[0][0]

        return jax.hessian(c)(u_i)

    return rho * jax.vmap(one)(u, cache.z[-1], y)


def dense_ggn(net, params, x, y):
    """(G: (P, P) over ravel_pytree(params)'s order, unravel)."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    jac = jax.jacrev(lambda f: split_output(net, unravel(f), x))(flat)  # (N, o, P)
    h = loss_hessians(net, params, x, y)
    return jnp.einsum("iop,ioq,iqr->pr", jac, h, jac), unravel


def ggn_vp_by_jax(net, params, x, y, v):
    """ρ Σ_i J_iᵀ H_i J_i v by jax.jvp and jax.vjp of the split output."""
    f = lambda p: split_output(net, p, x)  # noqa: E731
    _, ju = jax.jvp(f, (params,), (v,))
    hju = jnp.einsum("ioq,iq->io", loss_hessians(net, params, x, y), ju)
    return jax.vjp(f, params)[1](hju)[0]


def random_like(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda t: jnp.asarray(rng.normal(size=t.shape)), params)


# ---------------------------------------------------------------- diag_ggn
@pytest.mark.parametrize(
    "name",
    [
        n if n.startswith("mse") else pytest.param(n, marks=pytest.mark.slow)
        for n in sorted(MLP_CASES)
    ],
)
def test_diag_ggn_matches_jax_on_mlps(name):
    net, params, x, y = mlp_case(name)
    g, unravel = dense_ggn(net, params, x, y)
    want = unravel(jnp.diagonal(g))
    got = jax.jit(lambda p: jp.curvature.diag_ggn(net, p, x, y))(params)
    assert_trees_close(got, want, 1e-12)
    # A 0.1% error in one layer's weights is caught by the same comparison.
    with pytest.raises(AssertionError):
        assert_trees_close(scale_layer(got, 0, "w", 1.001), want, 1e-12)


@pytest.mark.parametrize(
    "pool",
    [
        pytest.param(True, id="maxpool", marks=pytest.mark.slow),
        pytest.param(False, id="no-pool", marks=pytest.mark.slow),
    ],
    ids=["maxpool", "no-pool"],
)
def test_diag_ggn_matches_jax_on_a_conv_network(pool):
    net, params, x, y = conv_case(pool=pool)
    g, unravel = dense_ggn(net, params, x, y)
    want = unravel(jnp.diagonal(g))
    assert_trees_close(jp.curvature.diag_ggn(net, params, x, y), want, 1e-12)
    with pytest.raises(AssertionError):
        assert_trees_close(
            scale_layer(jp.curvature.diag_ggn(net, params, x, y), 0, "b", 1.001),
            want,
            1e-12,
        )


# ------------------------------------------------------------- diag_ggn_mc
def test_diag_ggn_mc_converges_to_the_exact_diagonal():
    net, params, x, y = mlp_case("softmax-labels-mean", batch=4)
    exact = jax.flatten_util.ravel_pytree(jp.curvature.diag_ggn(net, params, x, y))[0]
    key = jax.random.key(7)

    def rel_error(samples):
        mc = jp.curvature.diag_ggn_mc(net, params, x, y, key, samples)
        flat = jax.flatten_util.ravel_pytree(mc)[0]
        return float(jnp.linalg.norm(flat - exact) / jnp.linalg.norm(exact))

    errors = [rel_error(m) for m in (64, 4096)]
    # ~1/√M: 64× more samples divide the error by about 8.
    assert errors[0] > 4 * errors[1], errors
    assert errors[1] < 0.03, errors
    # The empirical Fisher (true targets, not sampled) is another matrix: its
    # error does not shrink, and this comparison would fail it.
    fisher = jax.flatten_util.ravel_pytree(jp.per_example_grads(net, params, x, y))[0]
    fisher_diag = jnp.sum(fisher.reshape(4, -1) ** 2, 0) / 4**2
    assert float(jnp.linalg.norm(fisher_diag - exact) / jnp.linalg.norm(exact)) > 0.1


@pytest.mark.slow
def test_diag_ggn_mc_is_unbiased_for_mse():
    # mse with an identity output: δ_s = ŷ − y_s = −ε, ε ~ N(0, I), so
    # E[δ_s δ_sᵀ] = I = S Sᵀ; the mean of many single-sample estimates is exact
    # to its standard error.
    net, params, x, y = make_case(3, (2, 3, 2), "tanh", "mse-identity", "sum", batch=3)
    exact = jp.curvature.diag_ggn(net, params, x, y)
    keys = jax.random.split(jax.random.key(1), 2000)
    one = jax.vmap(lambda k: jp.curvature.diag_ggn_mc(net, params, x, y, k))(keys)
    mean = jax.tree.map(lambda t: jnp.mean(t, 0), one)
    se = jax.tree.map(lambda t: jnp.std(t, 0) / np.sqrt(2000), one)
    for m, s, e in zip(*map(jax.tree.leaves, (mean, se, exact)), strict=True):
        assert np.all(np.abs(m - e) <= 5 * s + 1e-12)


# ------------------------------------------------------ ggn_vector_product
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("mse-sigmoid-mean", marks=pytest.mark.slow),
        pytest.param("softmax-rows-sum", marks=pytest.mark.slow),
        "bce-sum",
    ],
)
def test_ggn_vector_product_matches_jvp_vjp(name):
    net, params, x, y = mlp_case(name)
    v = random_like(params, 1)
    want = ggn_vp_by_jax(net, params, x, y, v)
    got = jax.jit(lambda p, v: jp.curvature.ggn_vector_product(net, p, x, y, v))(
        params, v
    )
    assert_trees_close(got, want, 1e-12)
    with pytest.raises(AssertionError):
        assert_trees_close(scale_layer(got, 1, "w", 1.001), want, 1e-12)


def test_ggn_vector_product_on_a_conv_network_with_max_pooling():
    net, params, x, y = conv_case()
    v = random_like(params, 2)
    want = ggn_vp_by_jax(net, params, x, y, v)
    assert_trees_close(
        jp.curvature.ggn_vector_product(net, params, x, y, v), want, 1e-12
    )


# -------------------------------------------------------------------- kfac
def layer_ggn_block(net, params, x, y, l):
    """The exact GGN block of layer l's [W; b] (W's rows flattened: a conv
    kernel's (*kernel_size, C_in)), vectorized row-major."""
    theta = params[l]
    n_out = theta.w.shape[-1]
    wb = jnp.concatenate([theta.w.reshape(-1, n_out), theta.b[None]])

    def u_of(wb_flat):
        wb = wb_flat.reshape(-1, n_out)
        p = list(params)
        p[l] = jp.DenseParams(wb[:-1].reshape(theta.w.shape), wb[-1])
        return split_output(net, tuple(p), x)

    jac = jax.jacrev(u_of)(wb.ravel())
    h = loss_hessians(net, params, x, y)
    return jnp.einsum("iop,ioq,iqr->pr", jac, h, jac)


@pytest.mark.parametrize(
    "name",
    [
        "mse-sigmoid-mean",
        pytest.param("softmax-labels-mean", marks=pytest.mark.slow),
        pytest.param("bce-sum", marks=pytest.mark.slow),
    ],
)
def test_kfac_at_batch_one_is_the_exact_block(name):
    net, params, x, y = mlp_case(name, batch=1)
    factors = jax.jit(lambda p: jp.curvature.kfac(net, p, x, y))(params)
    assert len(factors) == len(params)
    for l, f in enumerate(factors):
        n_in, n_out = params[l].w.shape
        assert f.A.shape == (n_in + 1, n_in + 1) and f.G.shape == (n_out, n_out)
        want = layer_ggn_block(net, params, x, y, l)
        np.testing.assert_allclose(jnp.kron(f.A, f.G), want, rtol=1e-12, atol=1e-14)
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(
                jnp.kron(f.A, 1.001 * f.G), want, rtol=1e-12, atol=1e-14
            )


@pytest.mark.slow
def test_kfac_factors_at_a_batch():
    net, params, x, y = mlp_case("softmax-labels-mean", batch=6)
    factors = jp.curvature.kfac(net, params, x, y)
    # A is the mean of ā āᵀ, its corner the ones' column: 1. G's diagonal is
    # the GGN diagonal of the biases, ρ Σ_i Σ_k d_{ik}²: diag_ggn's b.
    diag = jp.curvature.diag_ggn(net, params, x, y)
    for f, d in zip(factors, diag, strict=True):
        assert float(f.A[-1, -1]) == 1.0
        np.testing.assert_allclose(jnp.diagonal(f.G), d.b, rtol=1e-12)
    # Monte Carlo factors approach the exact G as samples grow.
    key = jax.random.key(0)
    mc = jp.curvature.kfac(net, params, x, y, key, samples=4096)
    for f, g in zip(mc, factors, strict=True):
        np.testing.assert_allclose(f.A, g.A, rtol=1e-12)
        assert float(jnp.linalg.norm(f.G - g.G) / jnp.linalg.norm(g.G)) < 0.05


# --------------------------------------------------------- kfac of convs (KFC)
def whole_kernel_case(batch=1):
    """Rank-1 convs whose kernel covers their whole input, VALID: one output
    position each, where KFC is K-FAC of the flattened kernel."""
    net = jp.Network(
        (4, 2),
        (Conv(3, 4), Conv(2, 1), Flatten(), Dense(3)),
        "tanh",
        cost="softmax_cross_entropy",
        reduction="mean",
    )
    params = net.init(jax.random.key(1), dtype=jnp.float64)
    params = tuple(t._replace(b=t.b + 0.3) for t in params)
    rng = np.random.default_rng(1)
    return net, params, jnp.asarray(rng.normal(size=(batch, 4, 2))), jnp.arange(batch)


def strided_case(seed=0, batch=3):
    """Rank-2 convs: stride 2 with SAME padding, max pooling, then padding 1."""
    layers = (
        Conv(3, 3, stride=2, padding="SAME"),
        MaxPool(2),
        Conv(2, (2, 1), padding=1),
        Flatten(),
        Dense(3),
    )
    return conv_net_case((5, 4, 2), layers, seed, batch, lambda r, b: np.arange(b) % 3)


def reference_kfactors(net, params, x, y, l):
    """(A, G) of layer l written here: ā from lax.conv_general_dilated_patches
    (channel-major, reordered to W's (*kernel, C_in)), the δ's of the GGN from
    jax.vjp of the output with respect to z^l; G = (1/|T|) Σ_{i,t} J_{i,t}ᵀ H_i
    J_{i,t}, J_{i,t} = ∂u_i/∂z^l_{i,t}, H_i = ρ ∂²c_i/∂u_i²."""
    cost, last = net.cost_fn, len(params) - 1

    def output(eps):
        """(u, the input u^l of layer l) with ε added to z^l."""
        a, seen = x, None
        for j, (block, theta) in enumerate(zip(net.blocks, params, strict=True)):
            if j == l:
                seen = block.inputs(a)[-1] if hasattr(block, "inputs") else a
            z = block.apply(theta, a) + (eps if j == l else 0.0)
            a = (net.sigma_out if j == last else bp.hidden(net.sigma, j + 1)).fn(z)
        return (z if cost.ggn_at == "logits" else a), seen

    zero = jnp.zeros((x.shape[0], *net.blocks[l].out_shape), x.dtype)
    u, vjp, u_l = jax.vjp(output, zero, has_aux=True)
    n_out = u.shape[1]
    jac = jax.vmap(lambda o: vjp(jnp.zeros_like(u).at[:, o].set(1.0))[0])(
        jnp.arange(n_out)
    )  # (n_out, batch, *out_spatial, C)
    jac = jac.reshape(n_out, x.shape[0], -1, jac.shape[-1])
    h = loss_hessians(net, params, x, y)
    g = jnp.einsum("oitc,ioq,qitd->cd", jac, h, jac) / jac.shape[2]
    layer = getattr(net.blocks[l], "layer", net.blocks[l])
    if isinstance(layer, Conv):
        p = jax.lax.conv_general_dilated_patches(
            u_l, layer.kernel_size, layer.stride, layer.padding,
            dimension_numbers=("NHWC", "OIHW", "NHWC"),
        )  # fmt: skip
        p = p.reshape(*p.shape[:3], u_l.shape[-1], -1).swapaxes(-1, -2)
        p = p.reshape(x.shape[0], -1, p.shape[-1] * p.shape[-2])
    else:
        p = u_l[:, None, :]
    a_bar = jnp.concatenate([p, jnp.ones((*p.shape[:2], 1))], axis=2)
    return jnp.einsum("itj,itk->jk", a_bar, a_bar) / x.shape[0], g


def test_kfac_of_a_whole_input_conv_at_batch_one_is_the_exact_block():
    net, params, x, y = whole_kernel_case()
    factors = jax.jit(lambda p: jp.curvature.kfac(net, p, x, y))(params)
    blocks = jax.jit(
        lambda p: [layer_ggn_block(net, p, x, y, l) for l in range(len(p))]
    )(params)
    shapes = [((9, 9), (3, 3)), ((4, 4), (2, 2)), ((3, 3), (3, 3))]
    for f, shape, want in zip(factors, shapes, blocks, strict=True):
        assert (f.A.shape, f.G.shape) == shape
        np.testing.assert_allclose(jnp.kron(f.A, f.G), want, rtol=1e-12, atol=1e-14)
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(
                jnp.kron(1.001 * f.A, f.G), want, rtol=1e-12, atol=1e-14
            )


def test_conv_as_matrix_round_trips_in_the_ggn_layout():
    net, params, x, y = whole_kernel_case()
    factors = jp.curvature.kfac(net, params, x, y)
    v = random_like(params, 3)
    for l, (block, f) in enumerate(zip(net.blocks, factors, strict=True)):
        m = curvature.as_matrix(block, v[l])
        assert m.shape == (f.A.shape[0], f.G.shape[0])
        assert_trees_close(curvature.from_matrix(block, m), v[l], 0.0)
        # One position, batch 1: A ⊗ G is the block, so (A ⊗ G) vec(V^l) is
        # layer l's share of G v for v nonzero in layer l alone.
        only = tuple(t if j == l else jax.tree.map(jnp.zeros_like, t)
                     for j, t in enumerate(v))  # fmt: skip
        gv = jp.curvature.ggn_vector_product(net, params, x, y, only)[l]
        got = jnp.kron(f.A, f.G) @ m.ravel()
        np.testing.assert_allclose(
            got, curvature.as_matrix(block, gv).ravel(), rtol=1e-12, atol=1e-14
        )


def test_kfac_of_strided_padded_convs_after_pooling_matches_a_reference():
    net, params, x, y = strided_case()
    factors = jax.jit(lambda p: jp.curvature.kfac(net, p, x, y))(params)
    references = jax.jit(
        lambda p: [reference_kfactors(net, p, x, y, l) for l in range(len(p))]
    )(params)
    for f, (want_a, want_g) in zip(factors, references, strict=True):
        close = lambda got, want: np.testing.assert_allclose(  # noqa: E731
            got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max()
        )
        close(f.A, want_a)
        close(f.G, want_g)
        # A 0.1% error in A (or G) is caught by the same comparison.
        with pytest.raises(AssertionError):
            close(1.001 * f.A, want_a)
        with pytest.raises(AssertionError):
            close(f.G.at[0, 0].multiply(1.001), want_g)
    # Ω's bias corner counts the output positions: 3·2 after stride 2, SAME.
    assert float(factors[0].A[-1, -1]) == 6.0


@pytest.mark.slow
def test_kfac_monte_carlo_converges_on_a_conv_net():
    net, params, x, y = strided_case()
    exact = jp.curvature.kfac(net, params, x, y)
    key = jax.random.key(0)
    errors = []
    for samples in (16, 4096):
        mc = jp.curvature.kfac(net, params, x, y, key, samples=samples)
        for f, g in zip(mc, exact, strict=True):
            np.testing.assert_allclose(f.A, g.A, rtol=1e-12)
        errors.append(
            max(float(jnp.linalg.norm(f.G - g.G) / jnp.linalg.norm(g.G))
                for f, g in zip(mc, exact, strict=True))
        )  # fmt: skip
    assert errors[1] < 0.05 and errors[1] < errors[0] / 4, errors


@pytest.mark.slow
def test_kfac_of_a_conv_net_under_vmap_over_seeds():
    net, _, x, y = strided_case()
    seeds = [strided_case(seed=s)[1] for s in range(3)]
    stacked = jax.tree.map(lambda *t: jnp.stack(t), *seeds)
    keys = jax.random.split(jax.random.key(0), 3)
    fn = lambda p, k: jp.curvature.kfac(net, p, x, y, k, samples=2)  # noqa: E731
    batched = jax.jit(jax.vmap(fn))(stacked, keys)
    for s in range(3):
        one = jax.tree.map(lambda t, s=s: t[s], batched)
        assert_trees_close(one, fn(seeds[s], keys[s]), 1e-12)
    assert not np.allclose(batched[0].G[0], batched[0].G[1])


# ---------------------------------------------------------- vmap over seeds
@pytest.mark.parametrize(
    "name",
    [
        "diag_ggn_mc",
        "ggn_vector_product",
        pytest.param("diag_ggn", marks=pytest.mark.slow),
        pytest.param("kfac", marks=pytest.mark.slow),
    ],
)
def test_vmap_over_seeds_equals_a_loop(name):
    net, _, x, y = mlp_case("softmax-labels-mean")
    seeds = [mlp_case("softmax-labels-mean", seed=s)[1] for s in range(3)]
    stacked = jax.tree.map(lambda *t: jnp.stack(t), *seeds)
    v = random_like(seeds[0], 5)
    keys = jax.random.split(jax.random.key(0), 3)
    fns = {
        "diag_ggn": lambda p, k: jp.curvature.diag_ggn(net, p, x, y),
        "diag_ggn_mc": lambda p, k: jp.curvature.diag_ggn_mc(net, p, x, y, k, 2),
        "ggn_vector_product": lambda p, k: jp.curvature.ggn_vector_product(
            net, p, x, y, v
        ),
        "kfac": lambda p, k: jp.curvature.kfac(net, p, x, y, k),
    }
    fn = fns[name]
    batched = jax.jit(jax.vmap(fn))(stacked, keys)
    for s in range(3):
        one = jax.tree.map(lambda t, s=s: t[s], batched)
        assert_trees_close(one, fn(seeds[s], keys[s]), 1e-12)
    # The seeds differ (the last layer's leaf: kfac's first A is x's alone).
    last = jax.tree.leaves(batched)[-1]
    assert not np.allclose(last[0], last[1])


# ----------------------------------------------------------------- bad input
def test_bad_input_is_refused_before_compiling():
    net, params, x, y = mlp_case("mse-sigmoid-sum")
    key = jax.random.key(0)
    hinge = jp.MLP((3, 4, 2), "tanh", "identity", "hinge")
    signs = jnp.ones((5, 2))
    for fn, args, missing in [
        (jp.curvature.diag_ggn, (), "hessian_sqrt"),
        (jp.curvature.diag_ggn_mc, (key,), "sample_targets"),
        (jp.curvature.kfac, (), "hessian_sqrt"),
        (jp.curvature.kfac, (key,), "sample_targets"),
        (jp.curvature.ggn_vector_product, (params,), "hessian_sqrt"),
    ]:
        check_raises(
            ValueError,
            rf"{fn.__name__} needs the cost's {missing}; cost 'hinge' has none",
            fn,
            hinge,
            params,
            x,
            signs,
            *args,
        )
    mc = jp.curvature.diag_ggn_mc
    check_raises(ValueError, r"samples must be", mc, net, params, x, y, key, 0)
    check_raises(TypeError, r"samples must be", mc, net, params, x, y, key, 1.5)
    check_raises(TypeError, r"key must be a PRNG key", mc, net, params, x, y, 3)
    gvp = jp.curvature.ggn_vector_product
    pairs = tuple((t.w, t.b) for t in params)
    check_raises(
        TypeError, r"v\[0\] must be a jp.DenseParams", gvp, net, params, x, y, pairs
    )
    check_raises(TypeError, r"v must be a tuple", gvp, net, params, x, y, params[0].w)
    check_raises(
        ValueError, r"v has 1 layers; params has 2", gvp, net, params, x, y, params[:1]
    )
    short = (params[0]._replace(b=params[0].b[:2]), params[1])
    check_raises(
        ValueError, r"v\[0\].b has shape \(2,\)", gvp, net, params, x, y, short
    )
    f32 = jax.tree.map(lambda t: t.astype(jnp.float32), params)
    check_raises(
        TypeError,
        r"v\[0\].w must be an array of the params' dtype",
        gvp,
        net,
        params,
        x,
        y,
        f32,
    )
    listed = (params[0]._replace(w=np.asarray(params[0].w).tolist()), params[1])
    check_raises(
        TypeError,
        r"params\[0\].w must be a floating array",
        jp.curvature.diag_ggn,
        net,
        listed,
        x,
        y,
    )
    check_raises(
        TypeError, r"net must be a jp.MLP", jp.curvature.diag_ggn, "net", params, x, y
    )
    user = jp.Network((7, 2), (Depthwise1D(3), Flatten(), Dense(2)), "tanh")
    user_params = user.init(jax.random.key(0), dtype=jnp.float64)
    check_raises(
        ValueError,
        r"params\[0\].* is a Depthwise1D, neither Dense nor Conv",
        jp.curvature.kfac,
        user,
        user_params,
        jnp.ones((2, 7, 2)),
        jnp.zeros((2, 2)),
    )
