"""Datasets and summaries."""

import random

import jax
import numpy as np
import pytest
import scipy.stats

import jaxprop as jp


@pytest.mark.parametrize(
    "make,kwargs,n_classes",
    [
        (jp.data.two_moons, {"n": 101}, 2),
        (jp.data.spirals, {"n": 99, "n_classes": 3}, 3),
        (jp.data.blobs, {"n": 60, "n_classes": 4, "n_features": 5}, 4),
    ],
)
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
    with pytest.raises(ValueError, match=r"x must be 2-D"):
        jp.data.check_dataset(x[0], y)
    with pytest.raises(TypeError, match=r"y must be numeric"):
        jp.data.check_dataset(x, np.array(list("abcde")))


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


def test_summarize_against_scipy():
    values = np.random.default_rng(1).normal(3.0, 2.0, size=50)
    s = jp.summarize(np.r_[values, np.nan, np.nan])
    assert (s.n, s.n_nan) == (50, 2)
    assert s.mean == pytest.approx(values.mean()) and s.std == pytest.approx(
        values.std(ddof=1)
    )
    low, high = scipy.stats.t.interval(
        0.95, 49, loc=values.mean(), scale=scipy.stats.sem(values)
    )
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert s.median == pytest.approx(np.median(values))
    assert s.q05 < s.q25 < s.median < s.q75 < s.q95
    assert "95% CI" in str(s) and "2 NaN left out" in str(s)
    with pytest.raises(ValueError, match="no non-NaN value"):
        jp.summarize([np.nan])


def wilson_by_quadratic(k, n, z):
    """Wilson's interval as the roots p of (k/n − p)² = z² p (1 − p) / n."""
    p_hat = k / n
    # (1 + z²/n) p² − (2 p̂ + z²/n) p + p̂² = 0
    return sorted(np.roots([1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat]))


def test_proportion_wilson_interval():
    p = jp.proportion(np.arange(1000) < 123)
    assert (p.successes, p.n, p.fraction) == (123, 1000, 0.123)
    z = scipy.stats.norm.ppf(0.975)
    low, high = wilson_by_quadratic(123, 1000, z)
    assert (p.ci_low, p.ci_high) == (
        pytest.approx(low, rel=1e-9),
        pytest.approx(high, rel=1e-9),
    )
    assert 0.1040 < p.ci_low < 0.1041 and 0.1448 < p.ci_high < 0.1449  # by hand
    zero = jp.proportion(np.zeros(10, bool))
    assert zero.ci_low == 0
    assert zero.ci_high == pytest.approx(wilson_by_quadratic(0, 10, z)[1], rel=1e-9)
    with pytest.raises(ValueError, match="confidence"):
        jp.proportion([True], confidence=1.5)
