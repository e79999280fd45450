"""User activations and costs: accepted wherever names are, checked, and trained.

A user's ``jp.Activation`` or ``jp.Cost`` must give gradients that agree with
``jax.grad`` and finite differences as the built-ins do, train over many seeds
on the runs-last path, and be refused with a clear message when malformed.
``jp.check_activation``/``jp.check_cost`` must pass the built-ins and fail
wrong derivatives, non-finite outputs and functions that break the runs-last
constraint. ``hinge`` is a built-in written as a user's cost.
"""

import inspect
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop._core import costs as _costs
from jaxprop._network import runs_last_pays
from tests.helpers import assert_trees_close, make_case, value_and_backprop_runs_last
from tests.test_bad_input import check_raises

ROOT = Path(__file__).resolve().parents[1]

BETA = 1.5


def swish_fn(z):
    return z * jax.nn.sigmoid(BETA * z)


def swish_derivative(z, a):
    # σ = z s with s = sigmoid(β z): σ' = s + β z s (1 − s) = s + β a (1 − s).
    s = jax.nn.sigmoid(BETA * z)
    return s + BETA * a * (1 - s)


SWISH = jp.Activation("swish", swish_fn, swish_derivative)


def log_cosh_value_and_delta(z, a, y, sigma):
    # c = Σ log cosh(ŷ − y), as |r| + log1p(e^{−2|r|}) − log 2 (finite for any
    # r); δ = tanh(ŷ − y) ⊙ σ'(z): a cost for any output activation.
    r = a - y
    c = jnp.abs(r) + jnp.log1p(jnp.exp(-2 * jnp.abs(r))) - math.log(2.0)
    return jnp.sum(c, axis=1), jnp.tanh(r) * sigma.derivative(z, a)


LOG_COSH = jp.Cost("log_cosh", log_cosh_value_and_delta)


def naive_hinge(z, a, y, sigma):
    # max has a split gradient (½) at the kink, where this δ says 0.
    return jnp.sum(jnp.maximum(0, 1 - y * z), axis=1), -y * (y * z < 1)


def last_axis_mse(z, a, y, sigma):
    # Sums over axis −1: the outputs only while there are no run axes.
    r = a - y
    return 0.5 * jnp.sum(r * r, axis=-1), r * sigma.derivative(z, a)


def naive_bce(z, a, y, sigma):
    # log σ and ∂c/∂a = (ŷ − y) / (ŷ (1 − ŷ)): 0/0 and log 0 once σ saturates.
    c = -(y * jnp.log(a) + (1 - y) * jnp.log(1 - a))
    return jnp.sum(c, axis=1), (a - y) / (a * (1 - a)) * sigma.derivative(z, a)


# ------------------------------------------------------------ nets built on them
def test_names_and_objects_make_equal_nets():
    by_name = jp.MLP((2, 3, 1), "tanh", "sigmoid", "binary_cross_entropy")
    by_object = jp.MLP(
        (2, 3, 1),
        jp.ACTIVATIONS["tanh"],
        jp.ACTIVATIONS["sigmoid"],
        jp.COSTS["binary_cross_entropy"],
    )
    assert by_object == by_name and hash(by_object) == hash(by_name)
    assert by_object.activation == "tanh" and by_object.cost == "binary_cross_entropy"
    user = jp.MLP((2, 3, 1), SWISH, cost=LOG_COSH)
    assert user.activation is SWISH and user.cost is LOG_COSH
    assert user == jp.MLP((2, 3, 1), SWISH, cost=LOG_COSH)
    assert hash(user) == hash(jp.MLP((2, 3, 1), SWISH, cost=LOG_COSH))
    assert str(user.activation) == "swish"  # reads as a name in logs
    # Another function object is another configuration.
    other = SWISH._replace(fn=lambda z: swish_fn(z))
    assert jp.MLP((2, 3, 1), other) != jp.MLP((2, 3, 1), SWISH)


def test_equal_user_nets_share_one_compiled_program():
    traces = []

    def f(net, params, x, y):
        traces.append(net)
        return net.loss(params, x, y)

    f = jax.jit(f, static_argnums=0)
    for _ in range(2):
        net = jp.MLP((2, 3, 1), SWISH, "identity", "hinge")
        params = net.init(jax.random.key(0), dtype="float64")
        f(net, params, jnp.ones((4, 2)), jnp.ones((4, 1)))
    assert len(traces) == 1


def test_user_activation_default_scheme(key):
    glorot = jp.MLP((3, 5, 2), SWISH).init(key, dtype="float64")
    assert_trees_close(
        glorot, jp.MLP((3, 5, 2), "tanh").init(key, "glorot", "float64"), 0
    )
    he = jp.MLP((3, 5, 2), SWISH._replace(scheme="he")).init(key, dtype="float64")
    assert_trees_close(he, jp.MLP((3, 5, 2), "relu").init(key, dtype="float64"), 0)


def test_user_activation_and_cost_match_autodiff_and_train(seed):
    net, params, x, y = make_case(
        seed, (3, 5, 4, 2), SWISH, (LOG_COSH, "sigmoid", "unit"), "mean", batch=7
    )
    report = jp.check_grads(net, params, x, y, numeric=False, rtol=(1e-12, 0))
    assert report.passed, report
    result = jp.train(net, params, x, y, optax.sgd(0.1), 20)
    assert result.losses[-1] < result.losses[0]


@pytest.mark.parametrize(
    "reduction", ["sum", pytest.param("mean", marks=pytest.mark.slow)]
)
def test_hinge_against_autodiff_and_finite_differences(seed, reduction):
    net, params, x, y = make_case(
        seed, (3, 5, 4, 2), "tanh", ("hinge", "identity", "signs"), reduction
    )
    (value, manual), autodiff = jax.jit(
        lambda p: (net.value_and_backprop(p, x, y), jax.grad(net.loss)(p, x, y))
    )(params)
    assert_trees_close(manual, autodiff, rtol=1e-12)
    assert jp.check_grads(net, params, x, y).passed
    # A hand-derived value: Σ_examples Σ_k max(0, 1 − y ŷ).
    margins = np.maximum(0, 1 - np.asarray(y) * np.asarray(net.forward(params, x)))
    per_example = margins.sum(axis=1)
    want = per_example.sum() if reduction == "sum" else per_example.mean()
    np.testing.assert_allclose(value, want, rtol=1e-14)


def test_hinge_at_its_kink_agrees_with_autodiff():
    # ŷ = w x exactly on the margin y ŷ = 1 for two outputs, inside/outside
    # for the others: δ = 0 at the kink, as jax.grad of the where-form says.
    net = jp.MLP((1, 4), "identity", "identity", "hinge", "sum")
    params = (jp.Layer(jnp.array([[1.0, -1.0, 0.5, 2.0]]), jnp.zeros(4)),)
    x = jnp.array([[1.0]])
    y = jnp.array([[1.0, -1.0, 1.0, -1.0]])  # y ŷ = 1, 1, 0.5, −2
    grads = net.backprop(params, x, y)
    np.testing.assert_array_equal(grads[0].b, [0.0, 0.0, -1.0, 1.0])
    assert_trees_close(grads, jax.grad(net.loss)(params, x, y), rtol=1e-15)
    assert net.loss(params, x, y) == pytest.approx(0.5 + 3.0)


def test_hinge_accuracy_threshold_and_targets():
    net = jp.MLP((1, 1), "identity", "identity", "hinge")
    assert jp.classification_threshold(net) == 0.0
    params = (jp.Layer(jnp.ones((1, 1)), jnp.zeros(1)),)  # ŷ = x
    x = jnp.array([[-2.0], [-0.1], [0.3], [1.5]])
    y = jnp.array([[-1.0], [1.0], [1.0], [-1.0]])
    assert jp.accuracy(net, params, x, y) == 0.5
    assert not jp.solved(net, params, x, y)
    assert jp.solved(net, params, x, jnp.sign(x))
    check_raises(
        ValueError,
        r"hinge needs targets y of -1 and \+1 \(class 0 is -1\); got values "
        r"from 0 to 1",
        net.loss,
        params,
        x,
        (y > 0).astype(float),
    )


def test_cost_api_for_target_shaping():
    labels = np.array([0, 1, 1, 0])
    hinge, mse = jp.COSTS["hinge"], jp.COSTS["mse"]
    assert hinge.class_values("identity") == (-1.0, 1.0)
    assert hinge.threshold("identity") == 0.0
    np.testing.assert_array_equal(
        hinge.targets_from_labels(labels, 1, "identity"), [[-1], [1], [1], [-1]]
    )
    assert mse.class_values("tanh") == (-1.0, 1.0)
    assert mse.class_values("relu") == (0.0, 1.0)
    assert jp.COSTS["binary_cross_entropy"].class_values("sigmoid") == (0.0, 1.0)
    np.testing.assert_array_equal(
        mse.targets_from_labels(labels, 2, "sigmoid"), np.eye(2)[labels]
    )
    softmax = jp.COSTS["softmax_cross_entropy"]
    np.testing.assert_array_equal(
        softmax.targets_from_labels(labels, 2, "identity"), labels
    )
    # How each reads a class off ŷ: argmax against labels or rows; a threshold.
    y_hat = jnp.array([[2.0, -1.0], [0.5, 3.0]])
    np.testing.assert_array_equal(
        softmax.correct(y_hat, jnp.array([0, 0]), None), [True, False]
    )
    np.testing.assert_array_equal(
        softmax.correct(y_hat, jnp.eye(2), None), [True, True]
    )
    np.testing.assert_array_equal(
        hinge.correct(y_hat, jnp.array([[1.0, -1.0], [1.0, 1.0]]), 0.0), [True, True]
    )
    np.testing.assert_array_equal(
        hinge.correct(y_hat, jnp.array([[1.0, 1.0], [1.0, 1.0]]), 0.0), [False, True]
    )
    assert mse.fits("tanh") and not softmax.fits("sigmoid")
    assert "labels" in jp.COSTS["softmax_cross_entropy"].targets
    assert jp.COSTS["softmax_cross_entropy"].classify == "argmax"
    assert set(jp.TARGET_KINDS) == {"real", "unit", "probabilities", "labels", "signs"}


def test_user_bounded_output_and_argmax_cost():
    scaled = jp.Activation(
        "scaled_tanh",
        lambda z: 2 * jnp.tanh(z),
        lambda z, a: 2 * (1 - (a / 2) ** 2),
        bounds=(-2.0, 2.0),
    )
    assert jp.classification_threshold(jp.MLP((2, 1), "relu", scaled, "mse")) == 0.0
    # A cost of probability rows only, classifying by argmax.
    rows_only = jp.COSTS["softmax_cross_entropy"]._replace(
        name="softmax_rows", targets=("probabilities",)
    )
    net = jp.MLP((2, 2), "identity", "identity", rows_only)
    params = (jp.Layer(jnp.eye(2), jnp.zeros(2)),)
    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0]])
    y = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert jp.accuracy(net, params, x, y) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"net: cost='softmax_rows' \(user\).*argmax"):
        jp.classification_threshold(net)
    check_raises(
        ValueError,
        r"y must have shape \(3, 2\); got shape \(3,\)",
        net.loss,
        params,
        x,
        jnp.array([0, 1, 0]),
    )


# ------------------------------------------------------------------- runs last
def test_runs_last_with_user_functions_equals_each_run(seed):
    n_runs = 5
    cases = [
        make_case(seed + r, (3, 4, 2), SWISH, (LOG_COSH, "tanh", "real"), "mean", 6)
        for r in range(n_runs)
    ]
    net = cases[0][0]
    params, x, y = jax.tree.map(lambda *l: jnp.stack(l), *[c[1:] for c in cases])
    assert runs_last_pays(net, 6)
    fn = jax.vmap(value_and_backprop_runs_last(net), in_axes=(0, None, None))
    assert "dot_general" not in str(jax.make_jaxpr(fn)(params, x[0], y[0]))
    value, grads = jax.jit(fn)(params, x[0], y[0])
    for r in range(n_runs):
        one = jax.tree.map(lambda l: l[r], params)
        ref_value, ref_grads = net.value_and_backprop(one, x[0], y[0])
        np.testing.assert_allclose(value[r], ref_value, rtol=1e-13)
        assert_trees_close(jax.tree.map(lambda l: l[r], grads), ref_grads, 1e-12)


@pytest.mark.slow  # two train_seeds compiles, 6-8 s
def test_train_seeds_with_user_functions_runs_last_equals_autodiff(key):
    # XOR over many seeds of a tiny net (runs last under grad="manual") with a
    # user activation and the hinge, against vmapped jax.grad (grad="autodiff").
    net = jp.MLP((2, 3, 1), SWISH, "identity", "hinge", "sum")
    x, y = jp.data.xor()
    y = 2 * y - 1
    assert runs_last_pays(net, 4)
    keys = jax.random.split(key, 64)
    sgd = optax.sgd(0.1)
    manual = jp.train_seeds(net, keys, x, y, sgd, 100, dtype="float64")
    autodiff = jp.train_seeds(
        net, keys, x, y, sgd, 100, dtype="float64", grad="autodiff"
    )
    assert_trees_close(manual.params, autodiff.params, rtol=1e-10)
    np.testing.assert_allclose(manual.losses, autodiff.losses, rtol=1e-10, atol=1e-12)
    assert np.all(np.isfinite(manual.losses))


# ---------------------------------------------------------------- the checkers
@pytest.mark.parametrize("name", ["relu"])
def test_check_activation_passes_builtins(name):
    report = jp.check_activation(name)
    assert report.passed, report
    assert report.kind == "activation" and report.name == name
    assert [r.case for r in report.rows[:4]] == [
        "z ~ N(0, 1)",
        "1 < |z| < 30",
        "30 <= |z| <= 300",
        "near kinks",
    ]
    assert report.rows[-1].check == "runs last"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(jp.ACTIVATIONS))
def test_check_activation_passes_every_builtin(name):
    assert jp.check_activation(name).passed


@pytest.mark.parametrize("name", ["hinge"])
def test_check_cost_passes_builtins(name):
    report = jp.check_cost(name)
    assert report.passed, report
    assert report.raise_if_failed() is report


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["mse", "binary_cross_entropy", "softmax_cross_entropy"]
)
def test_check_cost_passes_every_builtin(name):
    report = jp.check_cost(name)
    assert report.passed, report
    # softmax is checked with labels and with probability rows.
    kinds = {r.case.split(":")[0] for r in report.rows}
    assert len(kinds) == len(jp.COSTS[name].targets) * (
        len(jp.COSTS[name].output_activations or ()) or 4
    )


def test_check_user_functions_pass_and_run_in_float64():
    assert jp.check_cost(LOG_COSH, output_activations=SWISH).passed
    with jax.enable_x64(False):
        report = jp.check_activation(SWISH)
        assert jnp.ones(1).dtype == jnp.float32  # the switch is scoped
    assert report.passed and "(float64)" in str(report)


def failed(report):
    """(check, case) of every failed row."""
    assert not report.passed
    return [(r.check, r.case) for r in report.rows if not r.passed]


@pytest.mark.parametrize(
    "derivative",
    [
        pytest.param(lambda z, a: 1.001 * swish_derivative(z, a), id="0.1% off"),
        pytest.param(
            lambda z, a: jnp.where(z < 0, -1, 1) * swish_derivative(z, a),
            id="wrong sign for z < 0",
        ),
        pytest.param(
            lambda z, a: swish_derivative(z, a) + 1e-6 * (jnp.abs(z) > 100),
            id="off by 1e-6 at large |z|",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_check_activation_catches_wrong_derivatives(derivative):
    report = jp.check_activation(SWISH._replace(derivative=derivative))
    rows = failed(report)
    assert all(check == "vs jax.grad" for check, _ in rows)
    text = str(report)
    assert "FAILED" in text and "where they disagree most" in text
    assert "derivative" in text and "jax.grad" in text
    with pytest.raises(jp.GradCheckError, match="swish"):
        report.raise_if_failed()


def test_check_activation_catches_a_wrong_kink():
    # relu with σ'(0) = ½: right everywhere but at the kink.
    half = jp.Activation(
        "relu_half",
        jax.nn.relu,
        lambda z, a: jnp.where(z > 0, 1.0, jnp.where(z == 0, 0.5, 0.0)),
    )
    assert failed(jp.check_activation(half)) == [("vs jax.grad", "near kinks")]
    # A kink of the user's own, at 2, found through points=.
    shifted = jp.Activation(
        "relu_at_2",
        lambda z: jax.nn.relu(z - 2),
        lambda z, a: (z >= 2).astype(z.dtype),  # jax.grad takes 0 at z = 2
    )
    assert jp.check_activation(shifted).passed  # 2 is not where it looks
    assert failed(jp.check_activation(shifted, points=[2.0])) == [
        ("vs jax.grad", "near kinks")
    ]


def test_check_activation_catches_non_finite_and_non_elementwise():
    cube = jp.Activation("exp_cubed", lambda z: jnp.exp(z) ** 3, lambda z, a: 3 * a)
    report = jp.check_activation(cube)
    assert failed(report) == [("vs jax.grad", "30 <= |z| <= 300")]
    assert report.rows[2].n_nonfinite > 0 and "fn=inf" in report.rows[2].worst
    centered = jp.Activation(
        "centered",
        lambda z: z - jnp.mean(z, axis=-1, keepdims=True),
        lambda z, a: jnp.ones_like(z),
    )
    report = jp.check_activation(centered)
    assert [check for check, _ in failed(report)] == ["call", "runs last"]
    assert "jax.grad(fn) on scalar z" in str(report)


def test_check_cost_catches_the_kink_of_max():
    report = jp.check_cost(
        jp.Cost("naive_hinge", naive_hinge, ("identity",), ("signs",))
    )
    assert failed(report) == [
        ("vs jax.grad", "output identity, targets signs: near kinks")
    ]
    assert "jax.grad 0.5" in str(report) or "jax.grad -0.5" in str(report)


def test_check_cost_catches_a_wrong_delta():
    def off(z, a, y, sigma):
        c, delta = log_cosh_value_and_delta(z, a, y, sigma)
        return c, 1.001 * delta

    rows = failed(jp.check_cost(jp.Cost("off", off), output_activations="identity"))
    assert len(rows) == 4 and all(check == "vs jax.grad" for check, _ in rows)


def test_check_cost_catches_the_runs_last_axis():
    report = jp.check_cost(
        jp.Cost("last_axis", last_axis_mse), output_activations="tanh"
    )
    [(check, case)] = failed(report)
    assert check == "runs last" and "(batch, n_out, 3)" in case
    assert "with the runs last" in report.rows[-1].worst


def test_check_cost_catches_non_finite_outputs():
    report = jp.check_cost(jp.Cost("naive_bce", naive_bce, ("sigmoid",), ("unit",)))
    assert failed(report) == [
        ("vs jax.grad", "output sigmoid, targets unit: 30 <= |z| <= 300")
    ]
    assert "c=inf" in str(report)


def test_check_cost_reports_a_wrong_shape():
    def per_output(z, a, y, sigma):  # c: (batch, n_out), not (batch,)
        return 0.5 * (a - y) ** 2, a - y

    report = jp.check_cost(jp.Cost("per_output", per_output, ("identity",)))
    assert failed(report)[0][0] == "call"
    assert "must be (batch,) and (batch, n_out)" in str(report)


def test_checkers_refuse_bad_arguments():
    check_raises(TypeError, r"activation must be a string", jp.check_activation, 3)
    check_raises(TypeError, r"cost must be a string", jp.check_cost, SWISH)
    check_raises(ValueError, r"rtol must be", jp.check_activation, SWISH, rtol=0)
    check_raises(TypeError, r"points must be", jp.check_activation, SWISH, points=1)
    check_raises(ValueError, r"n_out must be", jp.check_cost, "mse", n_out=0)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (
            {"activation": 3},
            TypeError,
            r"activation must be a string, one of .* "
            r"or a jp.Activation\(name, fn, derivative\); got int",
        ),
        (
            {"output_activation": (swish_fn, swish_derivative)},
            TypeError,
            r"output_activation must be a string",
        ),
        ({"cost": jax.nn.relu}, TypeError, r"cost must be a string, .*or a jp.Cost"),
        (
            {"activation": SWISH._replace(fn=1.0)},
            TypeError,
            r"activation.fn of 'swish' must be callable; got float",
        ),
        (
            {"activation": SWISH._replace(derivative=None)},
            TypeError,
            r"activation.derivative of 'swish' must be callable",
        ),
        (
            {"activation": SWISH._replace(name=None)},
            TypeError,
            r"activation.name must be a non-empty string",
        ),
        (
            {"activation": SWISH._replace(scheme="xavier")},
            ValueError,
            r"activation.scheme of 'swish' must be None or one of",
        ),
        (
            {"output_activation": SWISH._replace(bounds=(1.0, -1.0))},
            ValueError,
            r"output_activation.bounds of 'swish' must be None or a tuple",
        ),
        (
            {"cost": LOG_COSH._replace(value_and_delta="mse")},
            TypeError,
            r"cost.value_and_delta of 'log_cosh' must be callable; got str",
        ),
        (
            {"cost": LOG_COSH._replace(targets="signs")},
            TypeError,
            r"cost.targets of 'log_cosh' must be a non-empty tuple of target kinds",
        ),
        (
            {"cost": LOG_COSH._replace(targets=("sign",))},
            ValueError,
            r"cost.targets of 'log_cosh': unknown target kind 'sign'",
        ),
        (
            {"cost": LOG_COSH._replace(classify="max")},
            ValueError,
            r"cost.classify of 'log_cosh' must be one of \['threshold', 'argmax'\]",
        ),
        (
            {"cost": LOG_COSH._replace(targets=("labels",))},
            ValueError,
            r"accepts integer labels, so it must classify by \"argmax\"",
        ),
        (
            {"cost": LOG_COSH._replace(output_activations=("softmax",))},
            ValueError,
            r"Unknown cost.output_activations 'softmax'",
        ),
        (
            {"cost": "hinge", "output_activation": "sigmoid"},
            ValueError,
            r"cost='hinge' needs output_activation in \['identity'\], got 'sigmoid'",
        ),
        (
            {"cost": LOG_COSH._replace(output_activations=(SWISH,))},
            ValueError,
            r"cost='log_cosh' \(user\) needs output_activation in \['swish'\], got "
            r"'identity'\.$",
        ),
        # A user activation named like a built-in is not the built-in.
        (
            {"cost": "hinge", "output_activation": SWISH._replace(name="identity")},
            ValueError,
            r"got 'identity' \(user\)",
        ),
    ],
)
def test_bad_user_objects_raise_naming_the_argument(kwargs, exc, match):
    check_raises(exc, match, jp.MLP, (2, 3, 1), **kwargs)


def test_a_cost_fitting_a_user_activation():
    net = jp.MLP((2, 1), "relu", SWISH, LOG_COSH._replace(output_activations=(SWISH,)))
    assert net.output_activation is SWISH


# ---------------------------------------------------------------------- docs
def test_the_docs_show_the_hinge_as_written_in_the_library():
    readme = (ROOT / "docs" / "custom.md").read_text()
    assert inspect.getsource(_costs.hinge_value_and_delta) in readme
    assert (
        'hinge = jp.Cost("hinge", hinge_value_and_delta, ("identity",), '
        'targets=("signs",))' in readme
    )
