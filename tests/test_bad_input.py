"""User mistakes: a ValueError or TypeError naming the argument, before compiling."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop as jp
from tests.helpers import make_case

PACKAGE = Path(jp.__file__).parent


def raised_by_jaxprop(excinfo) -> bool:
    """The error comes from jaxprop's own checks, not from inside JAX or XLA."""
    return PACKAGE in Path(str(excinfo.traceback[-1].path)).parents


def check_raises(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match) as excinfo:
        fn(*args, **kwargs)
    assert raised_by_jaxprop(excinfo), excinfo.traceback[-1]


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "sizes,exc,match",
    [
        ((3,), ValueError, r"sizes needs at least two entries"),
        ((), ValueError, r"sizes needs at least two entries"),
        ((3, 0, 1), ValueError, r"sizes must be positive; got \(3, 0, 1\)"),
        ((3, -2), ValueError, r"sizes must be positive"),
        ((3, 2.5), TypeError, r"sizes must hold integers; got 2.5"),
        ((3, True), TypeError, r"sizes must hold integers"),
        ("3,4", TypeError, r"sizes must be a sequence"),
        (3, TypeError, r"sizes must be a sequence"),
    ],
)
def test_bad_sizes(sizes, exc, match):
    check_raises(exc, match, jp.MLP, sizes)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"activation": "sigmoidd"},
            r"Unknown activation 'sigmoidd'; did you mean 'sigmoid'\? Expected one "
            r"of \["
            r"'elu', 'gelu', 'identity', 'leaky_relu', 'relu', "
            r"'sigmoid', 'silu', 'softplus', 'tanh'\]",
        ),
        (
            {"output_activation": "softmax"},
            r"Unknown output_activation 'softmax'; "
            r"expected one of \[.*'identity'",
        ),
        (
            {"cost": "cross_entropy"},
            r"Unknown cost 'cross_entropy'; did you mean 'binary_cross_entropy'\? "
            r"Expected one of "
            r"\['binary_cross_entropy', 'hinge', 'mse', "
            r"'softmax_cross_entropy'\]",
        ),
        (
            {"reduction": "avg"},
            r"Unknown reduction 'avg'; expected one of "
            r"\['sum', 'mean'\]",
        ),
    ],
)
def test_unknown_names(kwargs, match):
    check_raises(ValueError, match, jp.MLP, (2, 3, 1), **kwargs)


def test_non_string_names():
    check_raises(
        TypeError, "activation must be a string", jp.MLP, (2, 1), activation=jnp.tanh
    )
    check_raises(TypeError, "cost must be a string", jp.MLP, (2, 1), cost=None)


@pytest.mark.parametrize(
    "cost,output,fits",
    [
        ("binary_cross_entropy", "identity", r"\['sigmoid'\]"),
        ("binary_cross_entropy", "tanh", r"\['sigmoid'\]"),
        ("softmax_cross_entropy", "sigmoid", r"\['identity'\]"),
    ],
)
def test_cost_and_output_activation_must_fit(cost, output, fits):
    check_raises(
        ValueError,
        rf"cost='{cost}' needs output_activation in {fits}, got "
        rf"'{output}'; costs and the output activations they fit: mse with any",
        jp.MLP,
        (2, 3, 2),
        output_activation=output,
        cost=cost,
    )


def test_net_is_immutable():
    net = jp.MLP((2, 3, 1))
    with pytest.raises(AttributeError):
        net.sizes = (2, 1)


# --------------------------------------------------------------------- init
@pytest.mark.parametrize(
    "key,match",
    [
        (0, r"key must be a PRNG key from jax.random.key\(seed\).*got int"),
        (np.zeros(2, np.int64), r"key must be a PRNG key.*dtype int64"),
        (jnp.zeros(3, jnp.uint32), r"key must be a PRNG key.*shape \(3,\)"),
    ],
)
def test_bad_key(key, match):
    check_raises(TypeError, match, jp.MLP((2, 1)).init, key)


def test_many_keys_for_one_init():
    keys = jax.random.split(jax.random.key(0), 3)
    check_raises(
        TypeError,
        r"single PRNG key; got a key array of shape \(3,\)",
        jp.MLP((2, 1)).init,
        keys,
    )


def test_bad_scheme_and_dtype():
    net, key = jp.MLP((2, 1)), jax.random.key(0)
    check_raises(
        ValueError,
        r"Unknown scheme 'xavier'; expected one of "
        r"\['uniform01', 'glorot', 'he', 'lecun'\]",
        net.init,
        key,
        "xavier",
    )
    check_raises(
        TypeError,
        r"dtype must be a floating dtype.*got int32",
        net.init,
        key,
        dtype=jnp.int32,
    )


# ------------------------------------------------------------------- params
@pytest.fixture
def case(seed):
    return make_case(seed, (3, 4, 2), "tanh", "mse-identity", batch=5)


def test_params_wrong_structure(case):
    net, params, x, y = case
    check_raises(
        ValueError,
        r"params has 1 layers; sizes=\(3, 4, 2\) needs 2: "
        r"DenseParams\(w: \(3, 4\), b: \(4,\)\), "
        r"DenseParams\(w: \(4, 2\), b: \(2,\)\)",
        net.loss,
        params[:1],
        x,
        y,
    )
    check_raises(
        TypeError,
        r"params must be a tuple of jp.DenseParams\(w, b\).*got dict",
        net.forward,
        {"w": 1},
        x,
    )
    check_raises(
        TypeError,
        r"params\[1\] must be a jp.DenseParams\(w, b\); got ArrayImpl",
        net.forward,
        (params[0], params[1].w),
        x,
    )
    check_raises(
        TypeError,
        r"params\[0\] must be a jp.DenseParams\(w, b\); got tuple "
        r"\(wrap \(w, b\) pairs",
        net.forward,
        tuple((w, b) for w, b in params),
        x,
    )


def test_params_wrong_shapes(case):
    net, params, x, y = case
    bad = (params[0], jp.Layer(params[1].w.T, params[1].b))
    check_raises(
        ValueError,
        r"params\[1\].w has shape \(2, 4\); sizes=\(3, 4, 2\) "
        r"needs \(4, 2\)",
        net.backprop,
        bad,
        x,
        y,
    )
    bad = (jp.Layer(params[0].w, params[0].b[:, None]), params[1])
    check_raises(
        ValueError,
        r"params\[0\].b has shape \(4, 1\).*needs \(4,\)",
        net.forward,
        bad,
        x,
    )


def test_params_wrong_dtype(case):
    net, params, x, y = case
    ints = (jp.Layer(params[0].w.astype(int), params[0].b), params[1])
    check_raises(
        TypeError,
        r"params\[0\].w must be a floating array; got ArrayImpl "
        r"of dtype int64",
        net.loss,
        ints,
        x,
        y,
    )
    mixed = (params[0], jax.tree.map(lambda p: p.astype(jnp.float32), params[1]))
    check_raises(
        TypeError, r"params mix dtypes \['float32', 'float64'\]", net.loss, mixed, x, y
    )
    check_raises(
        TypeError,
        r"params\[1\].b must be a floating array; got list",
        net.loss,
        (params[0], jp.Layer(params[1].w, [0.0, 0.0])),
        x,
        y,
    )


# -------------------------------------------------------------------- x, y
def test_x_wrong_features(case):
    net, params, x, y = case
    check_raises(
        ValueError,
        r"x must have shape \(batch, 3\) or \(3,\) for a network "
        r"with 3 inputs; got shape \(5, 4\)",
        net.forward,
        params,
        jnp.ones((5, 4)),
    )
    check_raises(
        ValueError,
        r"x must have shape \(batch, 3\).*got shape \(5, 3, 1\)",
        net.loss,
        params,
        x[..., None],
        y,
    )
    check_raises(
        ValueError, r"x must hold at least one example", net.loss, params, x[:0], y[:0]
    )


def test_x_bad_type(case):
    net, params, x, _y = case
    check_raises(
        TypeError,
        r"x must have a real .* dtype; got complex128",
        net.forward,
        params,
        x.astype(complex),
    )
    check_raises(
        TypeError,
        r"x must be an array; got list \(setting an array",
        net.forward,
        params,
        [[1.0, 2.0, 3.0], [1.0]],
    )
    check_raises(
        TypeError,
        r"x must have a real .* dtype; got <U1",
        net.forward,
        params,
        np.array(["a", "b", "c"]),
    )


def test_y_wrong_shape(case):
    net, params, x, y = case
    check_raises(
        ValueError,
        r"y must have shape \(5, 2\); got shape \(4, 2\)",
        net.loss,
        params,
        x,
        y[:4],
    )
    check_raises(
        ValueError,
        r"y must have shape \(5, 2\); got shape \(2, 5\)",
        net.backprop,
        params,
        x,
        y.T,
    )
    check_raises(
        ValueError,
        r"y must have shape \(2,\); got shape \(1, 2\)",
        net.loss,
        params,
        x[0],
        y[:1],
    )


def test_y_single_output_hint(seed):
    net, params, x, y = make_case(seed, (3, 4, 1), "tanh", "mse-sigmoid")
    check_raises(
        ValueError,
        r"y must have shape \(5, 1\) \(for a single output, "
        r"pass y\[:, None\]\); got shape \(5,\)",
        net.loss,
        params,
        x,
        y[:, 0],
    )


def test_class_ids(seed):
    net, params, x, y = make_case(seed, (3, 4, 3), "tanh", "softmax-labels")
    check_raises(
        ValueError,
        r"y holds class ids from \d to 3; a network with 3 "
        r"outputs needs ids in \[0, 3\)",
        net.loss,
        params,
        x,
        y.at[0].set(3),
    )
    check_raises(ValueError, r"ids from -1", net.backprop, params, x, y.at[1].set(-1))
    check_raises(
        ValueError,
        r"y must have integer class ids of shape \(5,\) or "
        r"probability rows of shape \(5, 3\) \(these ids have dtype float64; "
        r"use an integer dtype\)",
        net.loss,
        params,
        x,
        y.astype(float),
    )
    check_raises(
        ValueError,
        r"y must have integer class ids of shape \(5,\)",
        net.loss,
        params,
        x,
        y[:3],
    )
    check_raises(
        ValueError,
        r"probability rows .*row sums from",
        net.loss,
        params,
        x,
        jax.nn.one_hot(y, 3) * 2,
    )


def test_bce_targets_outside_unit_interval(seed):
    net, params, x, y = make_case(seed, (3, 4, 2), "tanh", "bce-sigmoid")
    check_raises(
        ValueError,
        r"binary_cross_entropy needs targets y in \[0, 1\]; got "
        r"values from -1 to",
        net.loss,
        params,
        x,
        y.at[0, 0].set(-1.0),
    )
    check_raises(
        ValueError,
        r"targets y in \[0, 1\]; got values from .* to 2",
        net.value_and_backprop,
        params,
        x,
        y.at[0, 0].set(2.0),
    )


def test_shape_errors_also_under_jit(case):
    """Shapes are static: the same error is raised while tracing, before XLA."""
    net, params, x, y = case
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 3\)") as excinfo:
        jax.jit(net.loss)(params, jnp.ones((5, 4)), y)
    assert raised_by_jaxprop(excinfo)
    with pytest.raises(ValueError, match=r"y must have shape \(5, 2\)"):
        jax.jit(jax.grad(net.loss))(params, x, y[:, :1])
    with pytest.raises(ValueError, match=r"params\[1\].w has shape"):
        jax.vmap(net.forward, in_axes=(0, None))(
            jax.tree.map(
                lambda p: (
                    p[None].swapaxes(-1, -2)
                    if p.ndim == 2 and p.shape == (4, 2)
                    else p[None]
                ),
                params,
            ),
            x,
        )


def test_feedback_wrong_shape(case):
    net, params, x, y = case
    _, cache = net.forward_with_cache(params, x)
    check_raises(
        ValueError,
        r"feedback must be a sequence of 1 matrices with shapes "
        r"\[\(4, 2\)\]",
        net.backward,
        params,
        cache,
        y,
        feedback=[],
    )
    check_raises(
        ValueError,
        r"feedback\[0\] must have shape \(4, 2\) \(B\^2, in place of W\^2\); "
        r"got \(2, 4\)",
        net.backward,
        params,
        cache,
        y,
        feedback=[params[1].w.T],
    )


def test_float64_without_x64_is_refused(tmp_path):
    """Without 64-bit mode JAX would silently give float32: jaxprop says so."""
    import subprocess
    import sys

    code = (
        "import jax, jaxprop as jp\n"
        "try:\n"
        "    jp.MLP((2, 1)).init(jax.random.key(0), dtype='float64')\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "JAX_ENABLE_X64": "0"},
    )
    assert "dtype float64 needs 64-bit mode: call jax.config.update(" in out.stdout, (
        out.stdout + out.stderr
    )


def test_train_seeds_takes_the_trainers_options_and_names_a_wrong_one():
    """train_seeds' options are Trainer's, and train's a part of them, written
    once (typed keywords, PEP 692: IDEs list them): a misspelt one is refused
    by name before anything runs."""
    import inspect
    import typing

    from jaxprop._engine.options import RunOptions, SweepOptions

    def options(fn):
        hint = typing.get_type_hints(fn)["options"]
        assert typing.get_origin(hint) is typing.Unpack
        return typing.get_args(hint)[0]

    assert options(jp.train_seeds) is options(jp.Trainer.__init__) is SweepOptions
    assert options(jp.train) is RunOptions
    assert set(RunOptions.__annotations__) < set(SweepOptions.__annotations__)
    assert "progress" in inspect.signature(jp.train_seeds).parameters
    x, y = jp.data.xor()
    net = jp.MLP((2, 2, 1))
    keys = jax.random.split(jax.random.key(0), 2)
    check_raises(
        TypeError,
        r"train_seeds\(\) got an unexpected keyword argument 'log_evry'",
        jp.train_seeds,
        net,
        keys,
        x,
        y,
        None,
        10,
        log_evry=5,
    )
    for fn, first in ((jp.Trainer, keys), (jp.train, net.init(keys[0]))):
        name = "Trainer" if fn is jp.Trainer else "train"
        check_raises(
            TypeError,
            rf"{name}\(\) got an unexpected keyword argument 'log_evry'",
            fn,
            net,
            first,
            x,
            y,
            None,
            10,
            log_evry=5,
        )


@pytest.mark.parametrize("name", ["train", "train_seeds", "Trainer", "loss_with_vjp"])
def test_something_else_than_a_network_is_named(name):
    """A net that is not a jp.MLP is refused by name before anything reads it."""
    import optax

    x, y = jp.data.xor()
    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid")
    params = net.init(jax.random.key(0))
    keys = jax.random.split(jax.random.key(0), 2)
    call = {
        "train": lambda: jp.train(3, params, x, y, optax.sgd(0.1), 2),
        "train_seeds": lambda: jp.train_seeds(3, keys, x, y, optax.sgd(0.1), 2),
        "Trainer": lambda: jp.Trainer(3, keys, x, y, optax.sgd(0.1), 2),
        "loss_with_vjp": lambda: jp.loss_with_vjp(3),
    }[name]
    check_raises(TypeError, "net must be a jp.MLP or a jp.Network; got int", call)


def test_labels_closed_over_inside_jit_are_checked_not_traced(seed):
    """Concrete labels captured by a jitted function: checked on the host (a
    jax.Array's own min() would be traced and raise ConcretizationTypeError)."""
    net, params, x, y = make_case(seed, (3, 4, 3), "tanh", "softmax-labels")
    want = net.loss(params, x, y)
    np.testing.assert_allclose(jax.jit(lambda p: net.loss(p, x, y))(params), want)
    bad = y.at[0].set(3)
    with pytest.raises(ValueError, match=r"y holds class ids from \d to 3"):
        jax.jit(lambda p: net.loss(p, x, bad))(params)
