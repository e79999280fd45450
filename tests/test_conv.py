"""The 2-D convolution layer kind (``jaxprop._core.conv``): apply against a
naive loop, each hand-written derivative against JAX's own derivatives of
``apply`` in float64, over strides, kernels, paddings and input sizes that the
stride does not divide."""

import itertools
import math

import jax
import numpy as np
import pytest

import jaxprop as jp
from jaxprop._core.conv import Conv2D
from tests.helpers import apply_vjp, assert_close_leaves

BATCH = 3
# (stride, kernel, padding, in_hw, C_in, C_out): in_hw holds an odd and an even
# size, so that some strided windows leave rows or columns no output reads.
GRID = [
    (stride, kernel, padding, in_hw, c_in, c_out)
    for stride, kernel, padding, (in_hw, c_in, c_out) in itertools.product(
        [(1, 1), (2, 2)],
        [(1, 1), (3, 3), (2, 3)],
        ["SAME", "VALID"],
        [((6, 5), 1, 3), ((7, 4), 3, 1), ((5, 6), 3, 3)],
    )
]
# Strides that differ per axis, and a stride larger than the kernel.
GRID += [
    ((2, 3), (3, 2), "VALID", (7, 8), 2, 3),
    ((3, 1), (2, 3), "SAME", (8, 5), 3, 2),
    ((3, 3), (1, 1), "VALID", (7, 7), 2, 2),
]


def _id(case):
    stride, kernel, padding, in_hw, c_in, c_out = case
    return (
        f"s{stride[0]}{stride[1]}-k{kernel[0]}{kernel[1]}-{padding}"
        f"-{in_hw[0]}x{in_hw[1]}-c{c_in}{c_out}"
    )


def _case(seed, stride, kernel, padding, in_hw, c_in, c_out):
    """The layer, θ, a^{l-1}: (batch, H, W, C_in), δ^l of z's shape, s: (batch,)."""
    layer = Conv2D(c_in, c_out, kernel, stride, padding, in_hw)
    k = jax.random.split(jax.random.key(seed), 5)
    theta = jp.DenseParams(
        jax.random.normal(k[0], layer.kernel_shape),
        jax.random.normal(k[1], (c_out,)),
    )
    a = jax.random.normal(k[2], (BATCH, *layer.in_shape))
    delta = jax.random.normal(k[3], (BATCH, *layer.out_shape))
    scale = jax.random.uniform(k[4], (BATCH,))
    return layer, theta, a, delta, scale


def _naive_conv(a, w, b, stride, kernel, padding):
    """z by loops over positions, SAME's padding derived here independently:
    out = ⌈n / s⌉, total = max((out − 1) s + k − n, 0), the odd one after."""
    pads = []
    for n, k, s in zip(a.shape[1:3], kernel, stride, strict=True):
        if padding == "VALID":
            pads.append((0, 0))
        else:
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
    a = np.pad(np.asarray(a), ((0, 0), *pads, (0, 0)))
    (sh, sw), (kh, kw) = stride, kernel
    out_h = (a.shape[1] - kh) // sh + 1
    out_w = (a.shape[2] - kw) // sw + 1
    z = np.empty((a.shape[0], out_h, out_w, w.shape[3]))
    for p in range(out_h):
        for q in range(out_w):
            patch = a[:, p * sh : p * sh + kh, q * sw : q * sw + kw, :]
            z[:, p, q, :] = np.einsum("nijc,ijco->no", patch, np.asarray(w))
    return z + np.asarray(b)


@pytest.mark.parametrize("case", GRID, ids=_id)
def test_conv_apply_is_the_naive_loop(seed, case):
    layer, theta, a, _, _ = _case(seed, *case)
    stride, kernel, padding = case[:3]
    z = jax.jit(layer.apply)(theta, a)
    assert z.shape == (BATCH, *layer.out_shape)
    assert_close_leaves(z, _naive_conv(a, theta.w, theta.b, stride, kernel, padding))


@pytest.mark.parametrize("case", GRID, ids=_id)
def test_conv_adjoint_and_grads_are_the_vjp_of_apply(seed, case):
    layer, theta, a, delta, scale = _case(seed, *case)
    want_theta, want_a = apply_vjp(layer, theta, a, delta)
    assert_close_leaves(jax.jit(layer.adjoint)(theta.w, delta), want_a)
    assert_close_leaves(jax.jit(layer.grads)(a, delta), want_theta)
    scaled = scale[:, None, None, None] * delta
    assert_close_leaves(
        jax.jit(layer.grads)(a, delta, scale),
        apply_vjp(layer, theta, a, scaled)[0],
    )


@pytest.mark.parametrize("case", GRID[::4], ids=_id)
def test_conv_per_example_grads_and_sq_norms_are_per_example_vjps(seed, case):
    layer, theta, a, delta, _ = _case(seed, *case)
    per_example = [
        apply_vjp(layer, theta, a[i : i + 1], delta[i : i + 1])[0] for i in range(BATCH)
    ]
    want = jax.tree.map(lambda *leaves: np.stack(leaves), *per_example)
    assert_close_leaves(jax.jit(layer.per_example_grads)(a, delta), want)
    norms = [sum(float(np.sum(g**2)) for g in jax.tree.leaves(p)) for p in per_example]
    assert_close_leaves(jax.jit(layer.sq_norms)(a, delta), np.array(norms))


def test_conv_adjoint_takes_a_replacement_weight(seed):
    """A rule's B in W's place: the VJP of the layer whose kernel is B."""
    layer, theta, a, delta, _ = _case(seed, *GRID[-3])
    b_feedback = jax.random.normal(jax.random.key(seed + 1), layer.kernel_shape)
    want_a = apply_vjp(layer, theta._replace(w=b_feedback), a, delta)[1]
    assert_close_leaves(jax.jit(layer.adjoint)(b_feedback, delta), want_a)


def test_a_tenth_of_a_percent_adjoint_error_is_caught(seed):
    """Tests the tester: the comparison above fails on an adjoint off by 0.1%,
    whether everywhere or in one kernel entry only."""
    layer, theta, a, delta, _ = _case(seed, *GRID[len(GRID) // 2])
    want_a = apply_vjp(layer, theta, a, delta)[1]
    with pytest.raises(AssertionError):
        assert_close_leaves(layer.adjoint(theta.w * 1.001, delta), want_a)
    with pytest.raises(AssertionError):
        assert_close_leaves(
            layer.adjoint(theta.w.at[0, 0, 0, 0].multiply(1.001), delta), want_a
        )


def test_conv_shapes_params_and_flops():
    layer = Conv2D(3, 4, (3, 2), (2, 2), "VALID", (8, 7))
    assert layer.in_shape == (8, 7, 3) and layer.out_shape == (3, 3, 4)
    assert Conv2D(3, 4, (3, 2), (2, 2), "SAME", (8, 7)).out_shape == (4, 4, 4)
    assert layer.shapes(np.float32) == jp.DenseParams(
        jax.ShapeDtypeStruct((3, 2, 3, 4), np.float32),
        jax.ShapeDtypeStruct((4,), np.float32),
    )
    assert layer.n_params == 3 * 2 * 3 * 4 + 4
    n = 2 * 5 * (3 * 3) * (3 * 2 * 3 * 4)
    assert layer.flops(5) == (n, n, n)
    # Static configuration hashed by value: equal layers share compiled programs.
    assert layer == Conv2D(3, 4, [3, 2], (2, 2), "valid", (8, 7))
    assert hash(layer) == hash(Conv2D(3, 4, (3, 2), (2, 2), "VALID", (8, 7)))


@pytest.mark.parametrize("scheme", ["he", "lecun", "glorot", "uniform01"])
def test_conv_init_fan_in_is_kernel_area_times_c_in(key, scheme):
    layer = Conv2D(3, 5, (3, 2), in_hw=(4, 4))
    theta = layer.init(jax.random.split(key, layer.n_keys), scheme, np.float64)
    assert jax.tree.map(np.shape, theta) == jp.DenseParams((3, 2, 3, 5), (5,))
    fan_in, fan_out = 3 * 2 * 3, 3 * 2 * 5
    if scheme in ("he", "lecun"):
        # The same draw with the receptive field named as input axes.
        explicit = jax.nn.initializers.variance_scaling(
            {"he": 2.0, "lecun": 1.0}[scheme],
            "fan_in",
            "truncated_normal",
            in_axis=(0, 1, 2),
            out_axis=3,
        )
        w = explicit(jax.random.split(key, 2)[0], layer.kernel_shape, np.float64)
        np.testing.assert_array_equal(theta.w, w)
    elif scheme == "glorot":
        assert np.abs(theta.w).max() <= math.sqrt(6 / (fan_in + fan_out))
    assert np.all(np.isfinite(theta.w)) and np.std(theta.w) > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"in_channels": 0}, ValueError, "in_channels must be a positive integer"),
        ({"out_channels": 2.0}, TypeError, "out_channels must be a positive integer"),
        ({"kernel": 3}, TypeError, "kernel must be a pair of positive integers"),
        ({"kernel": (3, 3, 3)}, TypeError, "kernel must be a pair"),
        ({"kernel": (3, 0)}, ValueError, r"kernel\[1\] must be a positive integer"),
        ({"stride": (0, 1)}, ValueError, r"stride\[0\] must be a positive integer"),
        ({"stride": (True, 1)}, TypeError, r"stride\[0\] must be a positive integer"),
        ({"in_hw": (4,)}, TypeError, "in_hw must be a pair"),
        ({"padding": "VALD"}, ValueError, "Unknown padding 'VALD'; did you mean"),
        ({"padding": 1}, TypeError, "padding must be one of"),
        ({"kernel": (5, 3)}, ValueError, r"kernel \(5, 3\) is larger than the input"),
    ],
)
def test_conv_bad_config_is_named(kwargs, error, match):
    config = {"in_channels": 2, "out_channels": 3, "kernel": (3, 3), "in_hw": (4, 4)}
    with pytest.raises(error, match=match):
        Conv2D(**{**config, **kwargs})
