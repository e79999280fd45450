"""The N-D convolution layer kind (``jaxprop._core.conv``): apply against a
naive loop, each hand-written derivative against JAX's own derivatives of
``apply`` in float64, over 1-D, 2-D and 3-D inputs, strides 1-3, kernels 1-5,
every padding form and input sizes that the stride does not divide."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop as jp
from jaxprop._core.conv import Conv
from tests.helpers import alternate_slow, apply_vjp, assert_close_leaves

BATCH = 3
PADDINGS_2D = ["SAME", "VALID", 1, ((1, 0), (0, 2))]
# (stride, kernel, padding, in_shape, C_out): every (stride, kernel, padding)
# of the 2-D product once, the input shapes in turn; in_shape holds odd and even
# sizes, so that some strided windows leave entries no output reads.
GRID = [
    (stride, kernel, padding, shape)
    for (stride, kernel, padding), shape in zip(
        itertools.product([(1, 1), (2, 2)], [(1, 1), (3, 3), (2, 3)], PADDINGS_2D),
        itertools.cycle([((6, 5, 1), 3), ((7, 4, 3), 1), ((5, 6, 3), 3)]),
    )
]
# 1-D: strides 1-3 × kernels 1-5, each padding form in turn; the kernel an int,
# or a 1-tuple at stride 2.
GRID += [
    (stride, (kernel,) if stride == 2 else kernel, padding, shape)
    for (stride, kernel), padding, shape in zip(
        itertools.product([1, 2, 3], [1, 2, 3, 4, 5]),
        itertools.cycle(["VALID", "same", 2, ((2, 0),)]),
        itertools.cycle([((9, 2), 3), ((10, 1), 2), ((11, 3), 1)]),
    )
]
# Strides that differ per axis, larger than the kernel, a 5×5 kernel, 3-D.
GRID += [
    ((2, 3), (3, 2), "VALID", ((7, 8, 2), 3)),
    ((3, 1), (2, 3), "SAME", ((8, 5, 3), 2)),
    ((3, 3), 1, "VALID", ((7, 7, 2), 2)),
    (2, 5, ((2, 1), (0, 3)), ((9, 8, 2), 2)),
    (2, (2, 3, 1), 1, ((5, 6, 4, 2), 3)),
]
GRID = [
    (stride, kernel, padding, in_shape, c_out)
    for stride, kernel, padding, (in_shape, c_out) in GRID
]


def _id(case):
    stride, kernel, padding, in_shape, c_out = case
    join = lambda v: "".join(map(str, np.ravel(v)))  # noqa: E731
    pad = padding if isinstance(padding, str) else join(padding)
    shape = "x".join(map(str, in_shape))
    return f"s{join(stride)}-k{join(kernel)}-p{pad}-{shape}-o{c_out}"


def _case(seed, stride, kernel, padding, in_shape, c_out):
    """The layer, θ, a^{l-1}: (batch, *in_shape), δ^l of z's shape, s: (batch,)."""
    layer = Conv(c_out, kernel, stride, padding).bind(in_shape)
    k = jax.random.split(jax.random.key(seed), 5)
    theta = jp.DenseParams(
        jax.random.normal(k[0], layer.kernel_shape),
        jax.random.normal(k[1], (c_out,)),
    )
    a = jax.random.normal(k[2], (BATCH, *layer.in_shape))
    delta = jax.random.normal(k[3], (BATCH, *layer.out_shape))
    scale = jax.random.uniform(k[4], (BATCH,))
    return layer, theta, a, delta, scale


def _naive_conv(a, w, b, stride, padding):
    """z by a loop over output positions, the padding derived here
    independently: SAME's out = ⌈n / s⌉, total = max((out − 1) s + k − n, 0),
    the odd one after; an int p is (p, p) on every axis."""
    kernel, rank = w.shape[:-2], w.ndim - 2
    stride = (stride,) * rank if isinstance(stride, int) else stride
    if padding in ("VALID", "valid"):
        pads = [(0, 0)] * rank
    elif isinstance(padding, str):
        pads = []
        for n, k, s in zip(a.shape[1:-1], kernel, stride, strict=True):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
    elif isinstance(padding, int):
        pads = [(padding, padding)] * rank
    else:
        pads = list(padding)
    a = np.pad(np.asarray(a), ((0, 0), *pads, (0, 0)))
    out = [
        (n - k) // s + 1 for n, k, s in zip(a.shape[1:-1], kernel, stride, strict=True)
    ]
    z = np.empty((a.shape[0], *out, w.shape[-1]))
    for t in itertools.product(*map(range, out)):
        window = tuple(
            slice(i * s, i * s + k) for i, s, k in zip(t, stride, kernel, strict=True)
        )
        patch = a[(slice(None), *window)]
        z[(slice(None), *t)] = np.tensordot(patch, np.asarray(w), rank + 1)
    return z + np.asarray(b)


@pytest.mark.parametrize("case", alternate_slow(GRID, _id, every=4))
def test_conv_apply_is_the_naive_loop(seed, case):
    layer, theta, a, _, _ = _case(seed, *case)
    stride, _, padding = case[:3]
    z = jax.jit(layer.apply)(theta, a)
    assert z.shape == (BATCH, *layer.out_shape)
    assert_close_leaves(z, _naive_conv(a, theta.w, theta.b, stride, padding))


@pytest.mark.parametrize("case", alternate_slow(GRID, _id, every=4))
def test_conv_adjoint_and_grads_are_the_vjp_of_apply(seed, case):
    layer, theta, a, delta, scale = _case(seed, *case)
    want_theta, want_a = apply_vjp(layer, theta, a, delta)
    assert_close_leaves(jax.jit(layer.adjoint)(theta.w, delta), want_a)
    # The layer input is accepted and ignored.
    assert_close_leaves(jax.jit(layer.adjoint)(theta.w, delta, a), want_a)
    assert_close_leaves(jax.jit(layer.grads)(a, delta), want_theta)
    scaled = jnp.expand_dims(scale, tuple(range(1, delta.ndim))) * delta
    assert_close_leaves(
        jax.jit(layer.grads)(a, delta, scale),
        apply_vjp(layer, theta, a, scaled)[0],
    )


def _per_example_oracle(layer, theta, a, delta):
    """Every example's ∂θ by ``vmap`` of ``jax.grad`` of ⟨δ_i, z_i⟩, and
    ‖∂θ_i‖²."""

    def inner(theta, a_i, delta_i):
        return jnp.sum(delta_i * layer.apply(theta, a_i[None])[0])

    grads = jax.vmap(jax.grad(inner), in_axes=(None, 0, 0))(theta, a, delta)
    norms = sum(jnp.sum(g**2, axis=tuple(range(1, g.ndim))) for g in grads)
    return grads, norms


@pytest.mark.parametrize("case", GRID[::3], ids=_id)
def test_conv_per_example_grads_and_both_sq_norms_are_vmap_of_grad(seed, case):
    layer, theta, a, delta, _ = _case(seed, *case)
    want, want_norms = _per_example_oracle(layer, theta, a, delta)
    assert_close_leaves(jax.jit(layer.per_example_grads)(a, delta), want)
    scale = jax.random.uniform(jax.random.key(seed + 7), (a.shape[0],))
    want_sum = jax.tree.map(lambda g: jnp.tensordot(scale, g, 1), want)
    for method in ("gram", "materialized", "auto"):
        norms = jax.jit(layer.sq_norms, static_argnums=2)(a, delta, method)
        assert_close_leaves(norms, want_norms)
        # What clipping takes: the norms, and Σ_i s_i ∂θ_i from what they formed.
        both = jax.jit(
            lambda a, d, s, m=method: (lambda q, sums: (q, sums(s)))(
                *layer.sq_norms_and_sums(a, d, m)
            )
        )(a, delta, scale)
        assert_close_leaves(both, (want_norms, want_sum))


def test_conv_adjoint_takes_a_replacement_weight(seed):
    """A rule's B in W's place: the VJP of the layer whose kernel is B."""
    layer, theta, a, delta, _ = _case(seed, *GRID[-4])
    b_feedback = jax.random.normal(jax.random.key(seed + 1), layer.kernel_shape)
    want_a = apply_vjp(layer, theta._replace(w=b_feedback), a, delta)[1]
    assert_close_leaves(jax.jit(layer.adjoint)(b_feedback, delta), want_a)


def test_a_tenth_of_a_percent_error_is_caught(seed):
    """Tests the tester: the comparisons above fail on an adjoint off by 0.1%,
    whether everywhere or in one kernel entry only, and on a norm off by 0.1%
    in one example."""
    layer, theta, a, delta, _ = _case(seed, *GRID[len(GRID) // 4])
    want_a = apply_vjp(layer, theta, a, delta)[1]
    with pytest.raises(AssertionError):
        assert_close_leaves(layer.adjoint(theta.w * 1.001, delta), want_a)
    with pytest.raises(AssertionError):
        assert_close_leaves(
            layer.adjoint(theta.w.at[0, 0, 0, 0].multiply(1.001), delta), want_a
        )
    _, want_norms = _per_example_oracle(layer, theta, a, delta)
    for method in ("gram", "materialized"):
        norms = layer.sq_norms(a, delta, method)
        with pytest.raises(AssertionError):
            assert_close_leaves(norms.at[1].multiply(1.001), want_norms)


@pytest.mark.parametrize(
    ("in_shape", "rule"),
    [((40, 1), "materialized"), ((19, 25), "materialized"), ((10, 25), "gram")],
)
def test_sq_norms_picks_the_form_with_fewer_multiply_adds(in_shape, rule):
    """MNIST-1D's ConvBase: its first conv (T = 19, K = 5) and second (T = 10,
    K = 75, C_out = 25) materialize, the third (T = 5) takes the Gram form:
    the faster of the two for each on a CPU at batch 256."""
    layer = Conv(25, 5 if in_shape[1] == 1 else 3, 2, 1).bind(in_shape)
    t, k = math.prod(layer.out_spatial), math.prod(layer.kernel_shape[:-1])
    assert layer.sq_norm_costs() == {
        "gram": t * t * (k + 25),
        "materialized": t * k * 25,
    }
    assert layer.sq_norm_method() == rule


def test_conv_shapes_params_and_flops():
    layer = Conv(4, (3, 2), 2).bind((8, 7, 3))
    assert layer.in_shape == (8, 7, 3) and layer.out_shape == (3, 3, 4)
    assert layer.kernel_size == (3, 2) and layer.stride == (2, 2)
    assert layer.pads == ((0, 0), (0, 0))
    assert Conv(4, (3, 2), 2, "SAME").bind((8, 7, 3)).out_shape == (4, 4, 4)
    assert layer.shapes(np.float32) == jp.DenseParams(
        jax.ShapeDtypeStruct((3, 2, 3, 4), np.float32),
        jax.ShapeDtypeStruct((4,), np.float32),
    )
    assert layer.n_params == 3 * 2 * 3 * 4 + 4
    n = 2 * 5 * (3 * 3) * (3 * 2 * 3 * 4)
    assert layer.flops(5) == (n, n, n)
    # MNIST-1D's ConvBase: (40, 1) → (19, 25) → (10, 25) → (5, 25).
    shape = (40, 1)
    for k in (5, 3, 3):
        shape = Conv(25, k, stride=2, padding=1).bind(shape).out_shape
        assert shape[1] == 25
    assert shape == (5, 25)


def test_conv_bind_normalizes_and_is_idempotent():
    """Equal configurations compare and hash equal (they share compiled
    programs), however spelled; binding twice changes nothing."""
    layer = Conv(4, 3, padding=1, activation="relu").bind((9, 2))
    assert layer.kernel_size == (3,) and layer.stride == (1,)
    assert layer.padding == ((1, 1),) and layer.pads == ((1, 1),)
    assert layer.bind((9, 2)) == layer and layer.bind([9, 2]) == layer
    assert layer == Conv(4, [3], (1,), [(1, 1)], "relu", (9, 2))
    assert layer == Conv(4, np.int64(3), padding=np.int64(1), activation="relu").bind(
        (9, 2)
    )
    assert hash(layer) == hash(Conv(4, (3,), 1, ((1, 1),), "relu").bind((9, 2)))
    assert Conv(4, 3, padding="same") == Conv(4, 3, padding="SAME")
    assert Conv(4, 3, padding="same").bind((6, 6, 1)).padding == "SAME"
    assert Conv(4, 3, padding="same").bind((6, 6, 1)).pads == ((1, 1), (1, 1))
    assert Conv(4, 3).in_shape is None and Conv(4, 3).kernel_size == 3
    assert layer != Conv(4, 3, padding=1, activation="tanh").bind((9, 2))


@pytest.mark.parametrize("scheme", ["he", "lecun", "glorot", "uniform01"])
@pytest.mark.parametrize("kernel", [(3, 2), (4,)], ids=["2d", "1d"])
def test_conv_init_fan_in_is_kernel_size_times_c_in(key, scheme, kernel):
    layer = Conv(5, kernel).bind((*(6,) * len(kernel), 3))
    theta = layer.init(jax.random.split(key, layer.n_keys), scheme, np.float64)
    assert jax.tree.map(np.shape, theta) == jp.DenseParams((*kernel, 3, 5), (5,))
    fan_in, fan_out = math.prod(kernel) * 3, math.prod(kernel) * 5
    if scheme in ("he", "lecun"):
        # The same draw with the receptive field named as input axes.
        explicit = jax.nn.initializers.variance_scaling(
            {"he": 2.0, "lecun": 1.0}[scheme],
            "fan_in",
            "truncated_normal",
            in_axis=tuple(range(len(kernel) + 1)),
            out_axis=len(kernel) + 1,
        )
        w = explicit(jax.random.split(key, 2)[0], layer.kernel_shape, np.float64)
        np.testing.assert_array_equal(theta.w, w)
    elif scheme == "glorot":
        assert np.abs(theta.w).max() <= math.sqrt(6 / (fan_in + fan_out))
    assert np.all(np.isfinite(theta.w)) and np.std(theta.w) > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"features": 0}, ValueError, "features must be a positive integer"),
        ({"features": 2.0}, TypeError, "features must be a positive integer"),
        ({"kernel_size": 0}, ValueError, "kernel_size must be a positive integer"),
        ({"kernel_size": 2.5}, TypeError, "kernel_size must be a positive integer"),
        ({"kernel_size": (3, 0)}, ValueError, r"kernel_size\[1\] must be a posi"),
        ({"kernel_size": ()}, ValueError, r"kernel_size must not be empty"),
        ({"stride": 0}, ValueError, "stride must be a positive integer; got 0."),
        ({"stride": (True, 1)}, TypeError, r"stride\[0\] must be a positive int"),
        ({"padding": "VALD"}, ValueError, "Unknown padding 'VALD'; did you mean"),
        ({"padding": 1.5}, TypeError, "padding must be 'SAME', 'VALID', an int"),
        ({"padding": -1}, ValueError, r"padding must be an integer ≥ 0; got -1"),
        ({"padding": (1, 1)}, TypeError, r"\(low, high\) pairs"),
        ({"padding": ((1, -1),)}, ValueError, r"padding\[0\] must be an integer ≥ 0"),
        ({"activation": ["relu"]}, TypeError, "activation must be hashable"),
    ],
)
def test_conv_bad_config_is_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        Conv(**{"features": 3, "kernel_size": 3, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "in_shape", "error", "match"),
    [
        (
            {},
            (125,),
            ValueError,
            r"Conv needs an input \(\*spatial, channels\).*"
            r"got in_shape \(125,\): put it before Flatten",
        ),
        ({}, 40, TypeError, r"in_shape must be a tuple \(\*spatial, channels\)"),
        ({}, (40, 0), ValueError, r"in_shape\[1\] must be a positive integer"),
        (
            {"kernel_size": (3, 3)},
            (40, 1),
            ValueError,
            r"kernel_size \(3, 3\) has 2 entries but the input in_shape \(40, 1\) "
            "has spatial rank 1",
        ),
        ({"stride": (1,)}, (8, 8, 1), ValueError, r"stride \(1,\) has 1 entries"),
        ({"padding": ((1, 1),)}, (8, 8, 1), ValueError, r"padding \(\(1, 1\),\) has"),
        (
            {"kernel_size": (5, 3)},
            (4, 4, 2),
            ValueError,
            r"kernel_size \(5, 3\) is larger than the input in_shape \(4, 4, 2\) "
            r"padded \('VALID'\) along spatial axis 0: 4 \+ 0 < 5",
        ),
        (
            {"kernel_size": 6, "padding": ((1, 0),)},
            (4, 2),
            ValueError,
            r"kernel_size \(6,\) is larger .* padded \(\(\(1, 0\),\)\)",
        ),
    ],
)
def test_conv_bad_bind_is_named(kwargs, in_shape, error, match):
    with pytest.raises(error, match=match):
        Conv(**{"features": 3, "kernel_size": 3, **kwargs}).bind(in_shape)


def test_unbound_conv_and_unknown_sq_norm_method_are_named():
    with pytest.raises(ValueError, match=r"has no input shape yet: bind it first"):
        Conv(3, 3).out_shape  # noqa: B018
    layer, _, a, delta, _ = _case(0, *GRID[0])
    with pytest.raises(ValueError, match="Unknown method 'ghost'; expected one of"):
        layer.sq_norms(a, delta, "ghost")
