"""Metrics: accuracy and its threshold, solved, summaries across seeds."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jaxprop as jp

STATS = ("mean", "std", "median", "min", "max", "ci_low", "ci_high")
STATS += ("q05", "q25", "q75", "q95")


# ---------------------------------------------------------------- summaries
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


def test_summarize_all_nan_says_so_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy "mean of empty slice" etc.
        s = jp.summarize(np.full(8, np.nan))
        text = str(s)
    assert (s.n, s.n_nan, s.confidence) == (0, 8, 0.95)
    assert all(math.isnan(getattr(s, k)) for k in STATS)
    assert text == "no finite value (8 NaN left out)"
    # A (seeds, lrs) grid of diverged runs: flattened, no crash.
    assert jp.summarize(jnp.full((2, 3), jnp.inf)).n_nan == 6


def test_summarize_leaves_out_inf_like_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = jp.summarize([1.0, np.inf, 2.0, -np.inf, np.nan, 3.0])
        one = jp.summarize([np.inf, 5.0])
    assert (s.n, s.n_nan) == (3, 3)
    assert (s.mean, s.min, s.max, s.median) == (2.0, 1.0, 3.0, 2.0)
    assert "3 NaN left out" in str(s)
    # A single finite value: a mean, no spread or interval.
    assert (one.n, one.n_nan, one.mean) == (1, 1, 5.0)
    assert math.isnan(one.std) and math.isnan(one.ci_low)
    assert "n=1" in str(one)


def test_summarize_rejects_empty_and_bad_confidence():
    with pytest.raises(ValueError, match=r"values: no runs"):
        jp.summarize([])
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        jp.summarize([1.0, 2.0], confidence=1.0)


# ----------------------------------------------------------------- accuracy
XOR_X = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_PM = jnp.array([[-1.0], [1.0], [1.0], [-1.0]])  # XOR as ±1 targets
TANH_NET = jp.MLP((2, 2, 1), "tanh", "tanh", "mse", "sum")


def tanh_xor_params(out_scale=0.3):
    """A hand-made tanh XOR net: hidden OR and AND units, out = tanh(s(OR − AND − 1)).

    With the small ``out_scale`` the outputs are ±tanh(0.3) ≈ ±0.29: on the right
    side of 0 for every example, but below 0.5 for the positive ones.
    """
    k = 10.0
    hidden = jp.Layer(jnp.array([[k, k], [k, k]]), jnp.array([-0.5 * k, -1.5 * k]))
    s = out_scale
    out = jp.Layer(jnp.array([[s], [-s]]), jnp.array([-s]))
    return (hidden, out)


def test_classification_threshold():
    def net(out, cost="mse"):
        return jp.MLP((2, 1), "relu", out, cost)

    assert jp.classification_threshold(net("sigmoid")) == 0.5
    assert jp.classification_threshold(TANH_NET) == 0.0
    for unbounded in ("identity", "relu", "softplus", "elu", "gelu"):
        assert jp.classification_threshold(net(unbounded)) == 0.5
    bce = net("sigmoid", "binary_cross_entropy")
    assert jp.classification_threshold(bce) == 0.5
    softmax = jp.MLP((2, 3), "relu", "identity", "softmax_cross_entropy")
    with pytest.raises(ValueError, match=r"net: .*argmax"):
        jp.classification_threshold(softmax)


def test_tanh_outputs_with_pm1_targets():
    params = tanh_xor_params()
    y_hat = TANH_NET.forward(params, XOR_X)
    np.testing.assert_allclose(jnp.abs(y_hat), np.tanh(0.3), rtol=1e-3)
    assert jp.accuracy(TANH_NET, params, XOR_X, XOR_PM) == 1
    assert jp.solved(TANH_NET, params, XOR_X, XOR_PM)
    np.testing.assert_array_equal(jp.accuracy_from_output(TANH_NET, y_hat, XOR_PM), 1.0)
    # The old rule, output > 0.5: both positive examples wrong.
    assert jp.accuracy(TANH_NET, params, XOR_X, XOR_PM, threshold=0.5) == 0.5
    assert not jp.solved(TANH_NET, params, XOR_X, XOR_PM, threshold=0.5)
    np.testing.assert_array_equal(
        jp.accuracy_from_output(TANH_NET, y_hat, XOR_PM, threshold=0.5), 0.5
    )
    # A wrong net: every output flipped.
    flipped = (params[0], jp.Layer(-params[1].w, -params[1].b))
    assert jp.accuracy(TANH_NET, flipped, XOR_X, XOR_PM) == 0
    assert not jp.solved(TANH_NET, flipped, XOR_X, XOR_PM)


def test_threshold_override_on_other_targets():
    net = jp.MLP((1, 1), "relu", "identity", "mse")
    params = (jp.Layer(jnp.ones((1, 1)), jnp.zeros(1)),)  # ŷ = x
    x = jnp.array([[0.5], [1.5], [2.5], [3.5]])
    y = jnp.array([[1.0], [1.0], [3.0], [3.0]])  # classes 1 and 3, midpoint 2
    # The default 0.5 reads every target as class 1, and ŷ = 0.5 as class 0.
    assert jp.accuracy(net, params, x, y) == 0.75
    assert jp.accuracy(net, params, x, y, threshold=2) == 1
    assert jp.solved(net, params, x, y, threshold=np.float32(2.0))


def test_sigmoid_rule_unchanged():
    net = jp.MLP((2, 2), "identity", "sigmoid", "binary_cross_entropy")
    params = (jp.Layer(jnp.eye(2), jnp.zeros(2)),)
    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [-1.0, -3.0]])
    y = jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    y_hat = net.forward(params, x)
    old = jnp.mean(jnp.all((y_hat > 0.5) == (y > 0.5), axis=-1))
    assert jp.accuracy(net, params, x, y) == old == 0.75
    assert jp.accuracy(net, params, x, y, threshold=0.5) == old


def test_under_jit_and_vmap_over_stacked_params():
    params = tanh_xor_params()
    flipped = (params[0], jp.Layer(-params[1].w, -params[1].b))
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, flipped)

    @jax.jit
    def metrics(p):
        return (
            jp.accuracy(TANH_NET, p, XOR_X, XOR_PM),
            jp.solved(TANH_NET, p, XOR_X, XOR_PM),
            jp.solved(TANH_NET, p, XOR_X, XOR_PM, threshold=0.5),
        )

    acc, ok, ok_half = metrics(params)
    assert acc == 1 and ok and not ok_half
    acc, ok, ok_half = jax.vmap(metrics)(stacked)
    np.testing.assert_array_equal(acc, [1.0, 0.0])
    np.testing.assert_array_equal(ok, [True, False])
    np.testing.assert_array_equal(ok_half, [False, False])


def test_bad_threshold_raises_naming_it():
    params = tanh_xor_params()
    for bad, err in (("0", TypeError), (True, TypeError), (jnp.zeros(2), TypeError)):
        with pytest.raises(err, match=r"threshold must be a real number"):
            jp.accuracy(TANH_NET, params, XOR_X, XOR_PM, threshold=bad)
    with pytest.raises(ValueError, match=r"threshold must be finite"):
        jp.solved(TANH_NET, params, XOR_X, XOR_PM, threshold=math.nan)
    softmax = jp.MLP((2, 2), "relu", "identity", "softmax_cross_entropy")
    sm_params = (jp.Layer(jnp.eye(2), jnp.zeros(2)),)
    with pytest.raises(ValueError, match=r"threshold: .*argmax"):
        jp.accuracy(softmax, sm_params, XOR_X, jnp.array([0, 1, 1, 0]), threshold=0.5)
    # Without a threshold softmax classifies by argmax as before (ties: class 0).
    assert jp.accuracy(softmax, sm_params, XOR_X, jnp.array([0, 1, 1, 0])) == 0.75


# ------------------------------------------------------------- proportions


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
    assert jp.proportion(np.array([0.0, 1.0, 1.0])).successes == 2  # 0/1 count as flags
    with pytest.raises(ValueError, match=r"flags must be booleans .* from 0.2 to 0.7"):
        jp.proportion(np.array([0.2, 0.7]))  # accuracies, not flags
