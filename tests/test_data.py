"""Datasets: generators, held-out splits, MNIST-1D, files."""

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop as jp
from jaxprop.data import _synthetic

GENERATORS = [
    (jp.data.two_moons, {"n": 101}, 2),
    (jp.data.spirals, {"n": 99, "n_classes": 3}, 3),
    (jp.data.blobs, {"n": 60, "n_classes": 4, "n_features": 5}, 4),
]


@pytest.mark.parametrize("make,kwargs,n_classes", GENERATORS)
def test_generators_are_deterministic_per_key(key, make, kwargs, n_classes):
    x, y = make(key, **kwargs)
    n = kwargs["n"]
    assert x.shape == (n, kwargs.get("n_features", 2)) and y.shape == (n,)
    assert np.all(np.isfinite(x)) and set(np.unique(y)) == set(range(n_classes))
    counts = np.bincount(y)
    assert counts.max() - counts.min() <= 1  # balanced classes
    x2, y2 = make(key, **kwargs)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = make(jax.random.fold_in(key, 1), **kwargs)
    assert not np.allclose(x, x3)


def test_generators_reject_bad_arguments(key):
    with pytest.raises(ValueError, match=r"n must be an integer ≥ 2"):
        jp.data.two_moons(key, n=1)
    with pytest.raises(TypeError, match=r"key must be a PRNG key"):
        jp.data.blobs(0)
    with pytest.raises(ValueError, match=r"n must be an integer ≥ 3"):
        jp.data.spirals(key, n=2, n_classes=3)


# ----------------------------------------------------------- held-out parts
@pytest.mark.parametrize("make,kwargs,n_classes", GENERATORS)
def test_generators_n_test_zero_is_unchanged(key, make, kwargs, n_classes):
    before = make(key, **kwargs)
    after = make(key, **kwargs, n_test=0)
    assert isinstance(after, jp.data.Dataset)
    assert after.x_test is None and after.y_test is None
    for a, b in zip(before, after, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    # And the private generator the public one wrapped before n_test existed.
    n = kwargs["n"]
    if make is jp.data.two_moons:
        raw = _synthetic._two_moons(key, n, 0.1)
    elif make is jp.data.spirals:
        raw = _synthetic._spirals(key, n, n_classes, 0.02, 1.0)
    else:
        raw = _synthetic._blobs(key, n, n_classes, kwargs["n_features"], 1.0, 5.0)
    for a, b in zip(raw, after, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make,kwargs,n_classes", GENERATORS)
def test_generators_hold_out_n_test_points(key, make, kwargs, n_classes):
    n, n_test, d = kwargs["n"], 37, kwargs.get("n_features", 2)
    data = make(key, **kwargs, n_test=n_test)
    assert isinstance(data, jp.data.Dataset)
    assert data.x.shape == (n, d) and data.y.shape == (n,)
    assert data.x_test.shape == (n_test, d) and data.y_test.shape == (n_test,)
    assert data.x.dtype == data.x_test.dtype and data.y.dtype == data.y_test.dtype
    # Held-out points are new draws, none equal to a training point.
    x, x_test = np.asarray(data.x), np.asarray(data.x_test)
    assert not (x_test[:, None, :] == x[None, :, :]).all(-1).any()
    assert np.all(np.isfinite(x_test))
    for y in (data.y, data.y_test):  # each part stays balanced
        counts = np.bincount(np.asarray(y), minlength=n_classes)
        assert counts.max() - counts.min() <= 1
    again = make(key, **kwargs, n_test=n_test)
    np.testing.assert_array_equal(again.x_test, data.x_test)


@pytest.mark.parametrize("make,kwargs,n_classes", GENERATORS)
@pytest.mark.parametrize("n_test", [0, 5])
def test_generators_return_one_type_that_unpacks_as_x_y(
    key, make, kwargs, n_classes, n_test
):
    data = make(key, **kwargs, n_test=n_test)
    assert type(data) is jp.data.Dataset
    if n_test == 0:
        x, y = data  # as the tuple these generators returned
    else:
        x, y, x_test, y_test = data  # as the NamedTuple they returned
        assert x_test is data.x_test and data[3] is y_test
    assert x is data.x and y is data.y and x.shape[0] == kwargs["n"]
    assert (data.x_test is None) == (n_test == 0)
    # A pytree of its arrays, as the NamedTuple it was: jax.tree functions work.
    leaves = jax.tree.leaves(data)
    assert len(leaves) == (2 if n_test == 0 else 4)
    doubled = jax.tree.map(lambda a: 2 * a, data)
    assert type(doubled) is jp.data.Dataset
    np.testing.assert_array_equal(doubled.x, 2 * x)


def test_blobs_held_out_points_share_the_centers(key):
    data = jp.data.blobs(key, 400, n_classes=4, std=0.5, spread=5.0, n_test=400)
    for c in range(4):
        train = np.asarray(data.x[data.y == c]).mean(0)
        test = np.asarray(data.x_test[data.y_test == c]).mean(0)
        # Class means of 100 points each: standard error 0.05 per coordinate.
        np.testing.assert_allclose(test, train, atol=0.3)


def test_generators_reject_bad_n_test(key):
    for bad in (-1, 2.5, True, "3"):
        error = ValueError if type(bad) is int else TypeError
        with pytest.raises(error, match=r"n_test must be an integer ≥ 0"):
            jp.data.two_moons(key, 10, n_test=bad)
    with pytest.raises(ValueError, match=r"n_test"):
        jp.data.blobs(key, 10, n_test=-5)
    with pytest.raises(TypeError, match=r"n_test"):
        jp.data.spirals(key, 10, n_test=None)


def test_split_last_examples_or_shuffled(key):
    x, y = np.arange(20.0).reshape(10, 2), np.arange(10) % 3
    d = jp.data.split(x, y, 3)
    assert isinstance(d, jp.data.Dataset) and isinstance(d.x, np.ndarray)
    np.testing.assert_array_equal(d.x, x[:7])
    np.testing.assert_array_equal(d.y, y[:7])
    np.testing.assert_array_equal(d.x_test, x[7:])
    np.testing.assert_array_equal(d.y_test, y[7:])
    s = jp.data.split(x, y, 3, key=key)
    assert s.x.shape == (7, 2) and s.x_test.shape == (3, 2)
    # A permutation of the examples, rows kept with their labels.
    rows = np.concatenate([s.x, s.x_test])
    np.testing.assert_array_equal(np.sort(rows[:, 0]), x[:, 0])
    np.testing.assert_array_equal(np.concatenate([s.y, s.y_test]), rows[:, 0] // 2 % 3)
    assert not np.array_equal(rows, x)
    again = jp.data.split(x, y, 3, key=key)
    np.testing.assert_array_equal(again.x_test, s.x_test)
    # JAX arrays stay JAX arrays; lists become NumPy arrays.
    j = jp.data.split(jnp.asarray(x), jnp.asarray(y), 1, key=key)
    assert isinstance(j.x, jax.Array) and j.x_test.shape == (1, 2)
    assert jp.data.split(x.tolist(), y.tolist(), 9).x.shape == (1, 2)


def test_split_rejects_bad_arguments(key):
    x, y = np.zeros((5, 2)), np.zeros(5)
    for bad in (0, 5, -1, 1.0, True, None):
        error = ValueError if type(bad) is int else TypeError
        with pytest.raises(error, match=r"n_test must be an integer in \[1, 4\]"):
            jp.data.split(x, y, bad)
    with pytest.raises(ValueError, match=r"x and y must have the same length"):
        jp.data.split(x, y[:4], 1)
    with pytest.raises(ValueError, match=r"n_test: .* hold 1 example"):
        jp.data.split(x[:1], y[:1], 1)
    with pytest.raises(ValueError, match=r"y must have a leading example axis"):
        jp.data.split(x, np.float64(1.0), 1)
    with pytest.raises(TypeError, match=r"key must be a PRNG key"):
        jp.data.split(x, y, 1, key=0)


# ------------------------------------------------------------------- others
def test_xor_data():
    x, y = jp.data.xor()
    assert x.shape == (4, 2) and y.shape == (4, 1)
    np.testing.assert_array_equal(y[:, 0], np.logical_xor(x[:, 0], x[:, 1]))


def test_mnist1d_generated_locally_and_cached(tmp_path):
    pytest.importorskip("mnist1d")
    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    data = jp.data.mnist1d(cache_dir=tmp_path)
    # The package's global seeding does not leak out.
    np.testing.assert_array_equal(np.random.get_state()[1], np_before)
    assert random.getstate() == py_before
    assert data.x.shape == (4000, 40) and data.x_test.shape == (1000, 40)
    assert data.y.shape == (4000,) and data.x.dtype == np.float32
    assert set(np.unique(data.y)) == set(range(10))
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 1
    again = jp.data.mnist1d(cache_dir=tmp_path)
    np.testing.assert_array_equal(again.x, data.x)
    np.testing.assert_array_equal(again.y_test, data.y_test)
    with pytest.raises(ValueError, match=r"Unknown mnist1d arguments \['samples'\]"):
        jp.data.mnist1d(cache_dir=tmp_path, samples=10)
    # A channel axis for a 1-D conv (NWC), read from the same cache.
    cl = jp.data.mnist1d(cache_dir=tmp_path, channels_last=True)
    assert cl.x.shape == (4000, 40, 1) and cl.x_test.shape == (1000, 40, 1)
    assert cl.x.dtype == np.float32 and len(list(tmp_path.glob("*.npz"))) == 1
    np.testing.assert_array_equal(cl.x.reshape(4000, -1), data.x)
    np.testing.assert_array_equal(cl.x_test[:, :, 0], data.x_test)
    np.testing.assert_array_equal(cl.y, data.y)
    with pytest.raises(TypeError, match=r"channels_last must be one of \[False, Tr"):
        jp.data.mnist1d(cache_dir=tmp_path, channels_last="yes")


def test_check_dataset():
    x, y = np.ones((5, 3)), np.zeros(5, int)
    jp.data.check_dataset(x, y)
    x_nan = x.copy()
    x_nan[3, 1] = np.nan
    x_nan[4, 0] = np.inf
    with pytest.raises(
        ValueError,
        match=r"x holds 2 NaN or inf values, in 2 rows "
        r"\(first: row 3\)",
    ):
        jp.data.check_dataset(x_nan, y)
    with pytest.raises(
        ValueError,
        match=r"x and y must have the same length; got 5 "
        r"and 4",
    ):
        jp.data.check_dataset(x, y[:4])
    with pytest.raises(
        ValueError,
        match=r"data: x must be \(n, n_in\) or \(n, \*input_shape\) .* shape \(3,\)",
    ):
        jp.data.check_dataset(x[0], y)
    with pytest.raises(TypeError, match=r"y must be numeric"):
        jp.data.check_dataset(x, np.array(list("abcde")))


def test_check_dataset_takes_inputs_with_a_channel_axis():
    x, y = np.zeros((6, 4, 4, 1), np.float32), np.arange(6) % 3
    x2, y2 = jp.data.check_dataset(x, y)
    assert x2.shape == (6, 4, 4, 1) and y2.shape == (6,)
    assert jp.data.check_dataset(x[..., 0, 0], y)[0].shape == (
        6,
        4,
    )  # (n, 4): as before
    x[4, 1, 2, 0] = np.nan
    x[5, 0, 0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"x holds 2 NaN or inf values, in 2 rows"):
        jp.data.check_dataset(x, y)
    with pytest.raises(ValueError, match=r"same length; got 6 and 5"):
        jp.data.check_dataset(x, y[:5])


def test_split_keeps_the_shape_of_each_example(key):
    x, y = np.arange(10 * 8.0).reshape(10, 4, 2, 1), np.arange(10)
    d = jp.data.split(x, y, 3)
    assert d.x.shape == (7, 4, 2, 1) and d.x_test.shape == (3, 4, 2, 1)
    np.testing.assert_array_equal(d.x_test, x[7:])
    s = jp.data.split(jnp.asarray(x), y, 3, key=key)
    # Each image moves whole, with its label.
    np.testing.assert_array_equal(np.asarray(s.x_test)[:, 0, 0, 0] // 8, s.y_test)


def test_load_npz(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(6, 3)), np.arange(6) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y, inputs=x)
    x2, y2 = jp.data.load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    jp.data.load_npz(tmp_path / "d.npz", x="inputs")
    with pytest.raises(
        ValueError,
        match=r"no arrays named \['features'\]; it holds "
        r"\['inputs', 'x', 'y'\]",
    ):
        jp.data.load_npz(tmp_path / "d.npz", x="features")
    with pytest.raises(ValueError, match=r"no such file"):
        jp.data.load_npz(tmp_path / "missing.npz")
    np.save(tmp_path / "single.npy", x)
    with pytest.raises(ValueError, match=r"not a .npz archive of named arrays"):
        jp.data.load_npz(tmp_path / "single.npy")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(ValueError, match=r"not a readable .npz file"):
        jp.data.load_npz(tmp_path / "bad.npz")


def test_load_csv(tmp_path):
    (tmp_path / "labels.csv").write_text("a,b,label\n0.5,1,0\n-1,2,2\n3,4.5,1\n")
    x, y = jp.data.load_csv(tmp_path / "labels.csv")
    np.testing.assert_allclose(x, [[0.5, 1], [-1, 2], [3, 4.5]])
    assert y.dtype == np.int32 and y.tolist() == [0, 2, 1]
    (tmp_path / "targets.csv").write_text("0.5,1,0.25,0.5\n-1,2,1,2\n")
    x, y = jp.data.load_csv(tmp_path / "targets.csv", target_columns=2)
    assert x.shape == (2, 2) and y.shape == (2, 2) and y.dtype == np.float64
    (tmp_path / "nan.csv").write_text("1,2,0\nnan,2,1\n")
    with pytest.raises(ValueError, match=r"x holds 1 NaN or inf values"):
        jp.data.load_csv(tmp_path / "nan.csv")
    (tmp_path / "text.csv").write_text("1,2,0\n1,x,1\n")
    with pytest.raises(ValueError, match=r"not a table of numbers"):
        jp.data.load_csv(tmp_path / "text.csv")
    with pytest.raises(ValueError, match=r"leave no inputs"):
        jp.data.load_csv(tmp_path / "labels.csv", target_columns=3)


def test_generators_refuse_a_negative_spread(key):
    for make, kwargs, says in [
        (jp.data.two_moons, {"noise": -0.1}, r"noise must be ≥ 0; got -0\.1"),
        (jp.data.spirals, {"turns": 0}, r"turns must be a positive number"),
        (jp.data.blobs, {"std": -1}, r"std must be ≥ 0; got -1\.0"),
    ]:
        with pytest.raises(ValueError, match=says):
            make(key, 12, **kwargs)
