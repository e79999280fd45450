"""Results are pinned: the layer rebuild (issue 25) and later refactors keep them.

``fixtures/pinned/results-b461326.npz`` holds the final leaves of every case in
``fixtures/pinned/make.py`` (every rule, both dtypes, every strategy, grids,
Adam with eval, the single-run and per-example functions) as main at b461326
computed them. On the machine that wrote them (same jax and CPU model) they must
match bit for bit; elsewhere XLA may vectorise reductions differently, so to
float rounding.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

PINNED = Path(__file__).with_name("fixtures") / "pinned"
sys.path.insert(0, str(PINNED))
import make  # noqa: E402

sys.path.remove(str(PINNED))

SAVED = np.load(PINNED / "results-b461326.npz")
SAME_MACHINE = str(SAVED["__machine__"]) == make.machine()
# The default suite runs the float64 cases of two rules; .ci/run runs them all.
QUICK = ("float64/backprop/vmap", "float64/fa/chunked", "xor/", "mlp/")


def _compare(only):
    got = make.compute(only)
    want = {k: SAVED[k] for k in SAVED.files if k != "__machine__" and only(k)}
    assert got.keys() == want.keys()
    for name, value in want.items():
        if SAME_MACHINE:
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        else:
            rtol = 1e-4 if value.dtype == np.float32 else 1e-10
            np.testing.assert_allclose(
                got[name], value, rtol=rtol, atol=rtol, err_msg=name
            )


def test_pinned_results_quick():
    _compare(lambda name: name.startswith(QUICK))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pinned_results_all(dtype):
    """Every case of the dtype but the sequential and chunked strategies' (their
    bits are vmap's, which test_train and test_trainer check every run)."""
    _compare(
        lambda name: (
            name.startswith(dtype + "/")
            and "/sequential" not in name  # a case's name, or one of its leaves'
            and "/chunked" not in name
        )
    )


def test_the_comparison_catches_a_change():
    """Negative test: one leaf off by one ulp fails the comparison."""
    name = "xor/grads[1][0].w"
    value = SAVED[name]
    bumped = np.nextafter(value, np.inf)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(bumped, value)
