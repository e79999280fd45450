"""A cost's curvature (``Cost.ggn_at``, ``hessian_sqrt``, ``sample_targets``):
the built-ins' against ``jax.hessian`` and by sampling, through ``jp.check_cost``,
which must catch a square root 0.1% off and a sampler of the wrong variance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_bad_input import check_raises

import jaxprop as jp
from jaxprop._core import costs as costs_module


def curvature_rows(report):
    return [r for r in report.rows if r.check in ("hessian", "sampler")]


@pytest.mark.parametrize(
    "name, outputs",
    [
        pytest.param("mse", "sigmoid", marks=pytest.mark.slow),
        ("binary_cross_entropy", None),
        pytest.param("softmax_cross_entropy", None, marks=pytest.mark.slow),
        pytest.param("mse", None, marks=pytest.mark.slow),
    ],
)
def test_builtin_curvature_passes_check_cost(name, outputs):
    report = jp.check_cost(name, output_activations=outputs)
    assert report.passed, report
    rows = curvature_rows(report)
    checks = [r.check for r in report.rows]
    # One hessian and one sampler row per (output activation, target kind).
    assert (
        checks.count("hessian") == checks.count("sampler") == checks.count("runs last")
    )
    assert all(r.n > 0 and r.max_ratio <= 1 for r in rows)


def test_builtin_fields():
    assert {n: c.ggn_at for n, c in jp.COSTS.items()} == {
        "mse": "output",
        "binary_cross_entropy": "logits",
        "softmax_cross_entropy": "logits",
        "hinge": None,
    }
    hinge = jp.COSTS["hinge"]
    assert hinge.hessian_sqrt is None and hinge.sample_targets is None
    # Nothing to check beyond δ for a cost without curvature.
    assert not curvature_rows(jp.check_cost("hinge"))


def test_softmax_root_and_sampler_by_hand():
    # S Sᵀ = diag p − p pᵀ at z = (0, log 2, log 5): p = (1, 2, 5) / 8.
    cost = jp.COSTS["softmax_cross_entropy"]
    z = jnp.log(jnp.array([[1.0, 2.0, 5.0]]))
    p = np.array([1, 2, 5]) / 8
    for y in (jnp.array([2]), jnp.array([[0.0, 0.5, 0.5]])):
        s = cost.hessian_sqrt(z, z, y, jp.ACTIVATIONS["identity"])
        np.testing.assert_allclose(s[0] @ s[0].T, np.diag(p) - np.outer(p, p))
    ident = jp.ACTIVATIONS["identity"]
    labels = cost.sample_targets(jax.random.key(0), z, z, jnp.array([1]), ident)
    rows = cost.sample_targets(jax.random.key(0), z, z, jnp.ones((1, 3)) / 3, ident)
    assert labels.dtype == jnp.array([1]).dtype and labels.shape == (1,)
    assert rows.shape == (1, 3) and float(rows.sum()) == 1.0
    assert int(jnp.argmax(rows[0])) == int(labels[0])  # one draw, two forms


def test_bce_root_is_finite_where_the_sigmoid_saturates():
    cost = jp.COSTS["binary_cross_entropy"]
    z = jnp.array([[-700.0, 0.0, 40.0]])
    s = cost.hessian_sqrt(z, jax.nn.sigmoid(z), z, jp.ACTIVATIONS["sigmoid"])
    np.testing.assert_allclose(
        jnp.diagonal(s[0]) ** 2,
        [np.exp(-700), 0.25, np.exp(-40) / (1 + np.exp(-40)) ** 2],
        rtol=1e-12,
    )


def mse_with(**fields):
    return jp.COSTS["mse"]._replace(name="mse_planted", **fields)


def test_check_cost_catches_a_root_off_by_a_tenth_of_a_percent():
    mse = jp.COSTS["mse"]
    planted = mse_with(hessian_sqrt=lambda *args: 1.001 * mse.hessian_sqrt(*args))
    report = jp.check_cost(planted, output_activations="tanh")
    failed = [(r.check, r.case) for r in report.rows if not r.passed]
    # The sampler is checked against jax.hessian, not against S: it passes.
    assert failed == [("hessian", "output tanh, targets real: S Sᵀ in a")]
    assert "jax.hessian" in str(report)


def test_check_cost_catches_a_sampler_of_the_wrong_variance():
    def wide(key, z, a, y, sigma):  # N(ŷ, 1.1 I): E[δ δᵀ] 10% too large
        return a + jnp.sqrt(1.1) * jax.random.normal(key, a.shape, a.dtype)

    report = jp.check_cost(mse_with(sample_targets=wide), output_activations="identity")
    failed = [r for r in report.rows if not r.passed]
    assert [r.check for r in failed] == ["sampler"]
    assert "E[δ δᵀ]" in failed[0].worst and "standard errors" in failed[0].worst


def test_check_cost_catches_a_biased_sampler():
    def biased(key, z, a, y, sigma):  # mean ŷ + 0.05: E[δ] ≠ 0
        return a + 0.05 + jax.random.normal(key, a.shape, a.dtype)

    report = jp.check_cost(
        mse_with(sample_targets=biased), output_activations="identity"
    )
    [row] = [r for r in report.rows if not r.passed]
    assert row.check == "sampler" and "E[δ]" in row.worst


@pytest.mark.slow
def test_check_cost_catches_a_sampler_of_the_wrong_kind():
    softmax = jp.COSTS["softmax_cross_entropy"]

    def rows_always(key, z, a, y, sigma):  # one-hot rows even for labels
        k = jax.random.categorical(key, z, axis=1)
        return jax.nn.one_hot(k, z.shape[1], dtype=z.dtype)

    report = jp.check_cost(softmax._replace(name="sx", sample_targets=rows_always))
    [row] = [r for r in report.rows if not r.passed]
    assert row.check == "sampler" and "labels" in row.case
    assert "it must match y" in row.worst


def test_check_cost_reports_a_root_of_the_wrong_shape():
    flat = mse_with(hessian_sqrt=lambda z, a, y, sigma: jnp.ones_like(z))
    report = jp.check_cost(flat, output_activations="identity")
    [row] = [r for r in report.rows if not r.passed]
    assert row.check == "hessian" and "(batch, n_out, k)" in row.worst


@pytest.mark.parametrize(
    "fields, exc, match",
    [
        ({"ggn_at": "hidden"}, ValueError, r"cost.ggn_at of 'c' must be None or one"),
        ({"hessian_sqrt": 3}, TypeError, r"cost.hessian_sqrt of 'c' must be None or"),
        (
            {"ggn_at": None, "hessian_sqrt": lambda *a: a[0]},
            ValueError,
            r"hessian_sqrt of 'c' needs ggn_at",
        ),
        (
            {"ggn_at": None, "sample_targets": lambda *a: a[0]},
            ValueError,
            r"sample_targets of 'c' needs ggn_at",
        ),
    ],
)
def test_bad_curvature_fields(fields, exc, match):
    cost = jp.Cost("c", costs_module.hinge_value_and_delta, **fields)
    check_raises(exc, match, jp.check_cost, cost)
    check_raises(exc, match, jp.MLP, (2, 1), cost=cost)
