"""The parameter-free maps (``jaxprop._core.pool``): apply against naive loops,
each hand-written adjoint against ``jax.vjp`` in float64, over 1-D, 2-D and 3-D
inputs, windows and strides 1-3 (overlapping, tiling and gapped windows), sizes
the stride does not divide, and max pooling's ties."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprop._core.pool import AvgPool, Flatten, MaxPool
from tests.helpers import alternate_slow, assert_close_leaves

BATCH = 2
# One example's shapes: sizes that 2 and 3 do not divide (uncovered tails) and
# sizes that they do, several channels.
SHAPES = [(7, 3), (6, 2), (7, 5, 2), (6, 4, 3)]
GRID = [
    (shape, window, stride)
    for shape, window, stride in itertools.product(SHAPES, [1, 2, 3], [1, 2, 3])
]
# Windows and strides that differ per axis, and 3-D inputs.
GRID += [
    ((7, 8, 2), (2, 3), (1, 2)),
    ((8, 5, 1), (3, 1), (2, 3)),
    ((5, 4, 6, 2), 2, None),
    ((5, 4, 6, 2), (2, 3, 1), (1, 2, 3)),
]


def _id(case):
    shape, window, stride = case
    name = lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
    return f"{name(shape)}-k{name(window)}-s{name(stride)}"


def _inputs(seed, shape):
    """a: (batch, *shape) as normal draws, integers in {0, 1, 2} (ties within
    windows) and a constant (every window tied), and g of the output's shape."""
    rng = np.random.default_rng(seed)
    return {
        "normal": rng.normal(size=(BATCH, *shape)),
        "integers": rng.integers(0, 3, size=(BATCH, *shape)).astype(np.float64),
        "constant": np.full((BATCH, *shape), 0.5),
    }


def _naive(a, window, stride, reduce):
    """Pooling by loops over output positions: ``reduce`` over each window's
    spatial axes, VALID."""
    spatial = a.shape[1:-1]
    out = [(n - k) // s + 1 for n, k, s in zip(spatial, window, stride, strict=True)]
    z = np.empty((a.shape[0], *out, a.shape[-1]))
    for p in itertools.product(*map(range, out)):
        box = tuple(
            slice(q * s, q * s + k) for q, k, s in zip(p, window, stride, strict=True)
        )
        z[(slice(None), *p)] = reduce(
            a[(slice(None), *box)], axis=tuple(range(1, 1 + len(p)))
        )
    return z


def _reduce_window(layer):
    """The oracle's forward: ``lax.reduce_window`` of the layer's windows, as
    its own code (not the layer's) writes it."""
    dims, strides = (1, *layer.window, 1), (1, *layer.stride, 1)
    if isinstance(layer, MaxPool):
        return lambda a: jax.lax.reduce_window(
            a, -jnp.inf, jax.lax.max, dims, strides, "VALID"
        )
    return lambda a: (
        jax.lax.reduce_window(a, 0.0, jax.lax.add, dims, strides, "VALID") / layer.size
    )


def _vjp(fn):
    """(a, g) -> g ∂fn/∂a by jax.vjp, jitted."""
    return jax.jit(lambda a, g: jax.vjp(fn, a)[1](g)[0])


@pytest.mark.parametrize("cls", [AvgPool, MaxPool])
@pytest.mark.parametrize("case", alternate_slow(GRID, _id))
def test_pool_apply_is_the_naive_loop_and_adjoint_is_the_vjp(seed, cls, case):
    """For normal, integer and constant inputs (ties: the first maximum in
    row-major window order takes g, as jax.grad of reduce_window max does)."""
    shape, window, stride = case
    layer = cls(window, stride).bind(shape)
    apply, adjoint = jax.jit(layer.apply), jax.jit(layer.adjoint)
    oracle = _vjp(_reduce_window(layer))
    reduce = np.max if cls is MaxPool else np.mean
    g = np.random.default_rng(seed + 1).normal(size=(BATCH, *layer.out_shape))
    for a in _inputs(seed, shape).values():
        z = apply(a)
        assert z.shape == (BATCH, *layer.out_shape)
        assert_close_leaves(z, _naive(a, layer.window, layer.stride, reduce))
        assert_close_leaves(adjoint(g, a), oracle(a, g))


@pytest.mark.parametrize("cls", [AvgPool, MaxPool])
@pytest.mark.parametrize("case", GRID[::4], ids=_id)
def test_jax_grad_of_apply_is_the_adjoint(seed, cls, case):
    """jax.grad of a network's loss differentiates ``apply`` itself: its VJP
    must route ties as the adjoint does (``jnp.max``'s would split them)."""
    shape, window, stride = case
    layer = cls(window, stride).bind(shape)
    a = _inputs(seed, shape)["integers"]
    g = np.random.default_rng(seed + 1).normal(size=(BATCH, *layer.out_shape))
    assert_close_leaves(jax.jit(layer.adjoint)(g, a), _vjp(layer.apply)(a, g))


def test_maxpool_ties_go_to_the_first_maximum_in_row_major_order():
    """Hand-derived routes: in each 2×2 window the first maximum, row by row,
    takes g; overlapping windows of a constant each route to their own first
    entry, and the routes add."""
    a = np.array([[0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 1.0]])
    g = np.array([[1, 2], [3, 4.0]])
    layer = MaxPool(2).bind((4, 4, 1))
    want = np.array([[0, 1, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0.0]])
    got = layer.adjoint(g[None, :, :, None], a[None, :, :, None])
    np.testing.assert_array_equal(got[0, :, :, 0], want)

    layer = MaxPool((2, 2), stride=1).bind((3, 3, 1))
    got = layer.adjoint(g[None, :, :, None], np.ones((1, 3, 3, 1)))
    want = np.array([[1, 2, 0], [3, 4, 0], [0, 0, 0.0]])
    np.testing.assert_array_equal(got[0, :, :, 0], want)


@pytest.mark.parametrize("cls", [AvgPool, MaxPool])
def test_a_tenth_of_a_percent_adjoint_error_is_caught(seed, cls):
    """Tests the tester: the comparison above fails on an adjoint off by 0.1%,
    whether everywhere or in one entry only."""
    layer = cls(3, 2).bind((7, 5, 2))
    a = _inputs(seed, layer.in_shape)["normal"]
    g = np.random.default_rng(seed + 1).normal(size=(BATCH, *layer.out_shape))
    want = _vjp(_reduce_window(layer))(a, g)
    got = layer.adjoint(g, a)
    assert_close_leaves(got, want)
    with pytest.raises(AssertionError):
        assert_close_leaves(got * 1.001, want)
    # The entry with the largest |g^a|: an error there cannot hide under atol.
    at = np.unravel_index(np.argmax(np.abs(want)), want.shape)
    with pytest.raises(AssertionError):
        assert_close_leaves(got.at[at].multiply(1.001), want)


def test_flatten_apply_and_adjoint(seed):
    layer = Flatten().bind((5, 4, 3))
    assert layer.out_shape == (60,)
    a = _inputs(seed, layer.in_shape)["normal"]
    z = jax.jit(layer.apply)(a)
    np.testing.assert_array_equal(z, a.reshape(BATCH, 60))
    g = np.random.default_rng(seed + 1).normal(size=(BATCH, 60))
    got = jax.jit(layer.adjoint)(g, a)
    np.testing.assert_array_equal(got, _vjp(layer.apply)(a, g))
    np.testing.assert_array_equal(got, g.reshape(BATCH, 5, 4, 3))


def test_bind_normalizes_and_is_idempotent():
    layer = MaxPool(2).bind((7, 5, 3))
    assert layer == MaxPool((2, 2), (2, 2), (7, 5, 3))
    assert (layer.window, layer.stride, layer.in_shape) == ((2, 2), (2, 2), (7, 5, 3))
    assert layer.out_shape == (3, 2, 3)
    assert layer.bind((7, 5, 3)) == layer
    # Static configuration hashed by value: equal maps share compiled programs.
    same = MaxPool([2, 2], stride=[2, 2]).bind([7, 5, 3])
    assert same == layer and hash(same) == hash(layer)
    assert AvgPool(2).bind((7, 5, 3)) != layer
    overlapping = AvgPool(3, stride=(1, 2)).bind((7, 6, 1))
    assert overlapping.window == (3, 3) and overlapping.out_shape == (5, 2, 1)
    assert AvgPool((2,)).bind((9, 4)).out_shape == (4, 4)
    assert AvgPool(2, 3).bind((4, 5, 6, 1)).out_shape == (1, 2, 2, 1)
    assert Flatten().bind((3, 2)) == Flatten((3, 2))
    assert Flatten((3, 2)).bind([3, 2]) == Flatten((3, 2))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: AvgPool(0),
            ValueError,
            r"^window must be a positive integer; got 0\.$",
        ),
        (
            lambda: MaxPool(2, stride=0),
            ValueError,
            r"^stride must be a positive integer; got 0\.$",
        ),
        (
            lambda: AvgPool((2, 0)),
            ValueError,
            r"window\[1\] must be a positive integer; got 0",
        ),
        (
            lambda: MaxPool(2, (1, -1)),
            ValueError,
            r"stride\[1\] must be a positive integer",
        ),
        (lambda: AvgPool(2.0), TypeError, "window must be a positive integer; got 2.0"),
        (
            lambda: MaxPool((True, 2)),
            TypeError,
            r"window\[0\] must be a positive integer",
        ),
        (
            lambda: AvgPool(()),
            ValueError,
            "window must be a positive integer or a non-empty tuple",
        ),
        (
            lambda: MaxPool((2, 2)).bind((40, 1)),
            ValueError,
            r"window \(2, 2\) has 2 entries, but in_shape \(40, 1\) has 1 spatial axis",
        ),
        (
            lambda: AvgPool(2, stride=(1, 1, 1)).bind((8, 8, 1)),
            ValueError,
            r"stride \(1, 1, 1\) has 3 entries, but in_shape \(8, 8, 1\) "
            "has 2 spatial axes",
        ),
        (
            lambda: AvgPool(5).bind((4, 6, 1)),
            ValueError,
            r"window \(5, 5\) does not fit in_shape \(4, 6, 1\): "
            "5 > 4 along spatial axis 0",
        ),
        (
            lambda: MaxPool((1, 4)).bind((4, 3, 2)),
            ValueError,
            r"window \(1, 4\) does not fit in_shape \(4, 3, 2\): "
            "4 > 3 along spatial axis 1",
        ),
        (
            lambda: MaxPool(2).bind((125,)),
            ValueError,
            r"MaxPool pools over the spatial axes .* in_shape \(125,\) has none",
        ),
        (
            lambda: AvgPool(2).bind(8),
            TypeError,
            "in_shape must be a tuple of positive integers",
        ),
        (lambda: Flatten().bind(()), ValueError, "in_shape must be a non-empty tuple"),
        (
            lambda: Flatten((3, 0)),
            ValueError,
            r"in_shape\[1\] must be a positive integer",
        ),
        (
            lambda: AvgPool(2).out_shape,
            ValueError,
            r"AvgPool has no in_shape: call bind\(in_shape\)",
        ),
        (
            lambda: Flatten().apply(np.ones((2, 3))),
            ValueError,
            "Flatten has no in_shape",
        ),
        (
            lambda: MaxPool(2).bind((6, 6, 2)).apply(np.ones((1, 6, 6, 3))),
            ValueError,
            r"MaxPool: a must have shape \(batch, \*\(6, 6, 2\)\); got \(1, 6, 6, 3\)",
        ),
        (
            lambda: AvgPool(2).bind((6, 2)).adjoint(np.ones((1, 6, 2))),
            ValueError,
            r"AvgPool: g must have shape \(batch, \*\(3, 2\)\); got \(1, 6, 2\)",
        ),
    ],
)
def test_bad_config_is_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("cls", [AvgPool, MaxPool, Flatten])
def test_maps_under_vmap_over_seeds_are_each_seed_alone(seed, cls):
    """Runs over seeds add a leading axis by ``vmap``: each run's result is
    the map of its own arrays (integer inputs: ties in every run)."""
    layer = (Flatten() if cls is Flatten else cls(2, 1)).bind((5, 4, 2))
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, size=(3, BATCH, *layer.in_shape)).astype(np.float64)
    g = rng.normal(size=(3, BATCH, *layer.out_shape))
    z = jax.jit(jax.vmap(layer.apply))(a)
    got = jax.jit(jax.vmap(layer.adjoint))(g, a)
    for run in range(3):
        assert_close_leaves(z[run], layer.apply(a[run]))
        assert_close_leaves(got[run], layer.adjoint(g[run], a[run]))
