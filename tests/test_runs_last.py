"""Many runs of a small network computed at once with the runs as the last axis.

The trainer's runs-last batching rule (``jaxprop._network.over_runs``, here
over the manual gradient: ``tests.helpers.value_and_backprop_runs_last``) must
give, under ``jax.vmap``, exactly what each run's own ``value_and_backprop``
gives, on both of its paths (runs last for tiny networks, vmapped matmuls
otherwise), and the trainer must use it.
"""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop._core.backprop import contract as _contract
from jaxprop._network import (
    RUNS_LAST_MAX_BATCH,
    RUNS_LAST_MAX_WIDTH,
    runs_last_pays,
)
from tests.helpers import (
    COST_CONFIGS,
    assert_trees_close,
    make_case,
    value_and_backprop_runs_last,
)

N_RUNS = 5


def stacked_cases(seed, sizes, activation, cost_config, reduction, batch):
    """N_RUNS independent draws of (params, x, y) for one net, stacked on axis 0."""
    cases = [
        make_case(seed + r, sizes, activation, cost_config, reduction, batch)
        for r in range(N_RUNS)
    ]
    net = cases[0][0]
    params, x, y = jax.tree.map(
        lambda *leaves: jnp.stack(leaves), *[c[1:] for c in cases]
    )
    return net, params, x, y


def per_run(net, params, x, y, in_axes):
    """Each run's own value_and_backprop, stacked: the reference."""
    outs = []
    for r in range(N_RUNS):
        take = lambda tree, ax: jax.tree.map(lambda l: l[r], tree) if ax == 0 else tree  # noqa: E731
        outs.append(
            net.value_and_backprop(
                take(params, in_axes[0]), take(x, in_axes[1]), take(y, in_axes[2])
            )
        )
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *outs)


@pytest.mark.parametrize(
    "reduction", [pytest.param("sum", marks=pytest.mark.slow), "mean"]
)
@pytest.mark.parametrize(
    "cost_config, activation",
    # every cost with a different hidden activation (the cost is what changes
    # shape handling; activations are elementwise and tested per-run elsewhere)
    list(
        zip(
            COST_CONFIGS,
            ["sigmoid", "tanh", "relu", "gelu", "elu", "silu"],
            strict=True,
        )
    ),
)
def test_runs_last_equals_each_run(seed, activation, cost_config, reduction):
    net, params, x, y = stacked_cases(
        seed, (3, 5, 4, 3), activation, cost_config, reduction, batch=6
    )
    assert runs_last_pays(net, 6)
    # Shared data (as in full-batch training) and per-run data (minibatches).
    for in_axes in [(0, None, None), (0, 0, 0)]:
        xs, ys = (x[0], y[0]) if in_axes[1] is None else (x, y)
        fn = jax.jit(jax.vmap(value_and_backprop_runs_last(net), in_axes=in_axes))
        value, grads = fn(params, xs, ys)
        ref_value, ref_grads = per_run(net, params, xs, ys, in_axes)
        np.testing.assert_allclose(value, ref_value, rtol=1e-13)
        assert_trees_close(grads, ref_grads, rtol=1e-12)


@pytest.mark.parametrize(
    "sizes, batch",
    [
        ((2, RUNS_LAST_MAX_WIDTH + 1, 1), 4),  # too wide
        ((2, 3, 1), RUNS_LAST_MAX_BATCH + 1),  # batch too large
    ],
)
def test_wider_nets_keep_vmapped_matmuls(seed, sizes, batch):
    net, params, x, y = stacked_cases(seed, sizes, "tanh", "mse-identity", "sum", batch)
    assert not runs_last_pays(net, batch)
    fn = jax.vmap(value_and_backprop_runs_last(net), in_axes=(0, None, None))
    value, grads = jax.jit(fn)(params, x[0], y[0])
    ref_value, ref_grads = per_run(net, params, x[0], y[0], (0, None, None))
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    assert_trees_close(grads, ref_grads, rtol=1e-12)
    # This path is the matmuls: dot_general in the program.
    assert "dot_general" in str(jax.make_jaxpr(fn)(params, x[0], y[0]))


def test_runs_last_path_is_taken_and_unbatched_call_is_plain(seed):
    net, params, x, y = stacked_cases(
        seed, (2, 2, 1), "sigmoid", "mse-sigmoid", "sum", 4
    )
    fn = value_and_backprop_runs_last(net)
    vmapped = str(
        jax.make_jaxpr(jax.vmap(fn, in_axes=(0, None, None)))(params, x[0], y[0])
    )
    assert "dot_general" not in vmapped  # elementwise products only
    one = jax.tree.map(lambda l: l[0], params)
    assert "dot_general" in str(jax.make_jaxpr(fn)(one, x[0], y[0]))
    value, grads = fn(one, x[0], y[0])
    ref_value, ref_grads = net.value_and_backprop(one, x[0], y[0])
    np.testing.assert_allclose(value, ref_value, rtol=1e-15)
    assert_trees_close(grads, ref_grads, rtol=1e-15)


@pytest.mark.parametrize("i, j", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_contract_with_trailing_runs(i, j):
    # Σ_k over axis i of u and axis j of v (k = 4), runs on the trailing axis.
    rng = np.random.default_rng(2 * i + j)
    u = rng.normal(size=(3, 4, 7) if i == 1 else (4, 3, 7))
    v = rng.normal(size=(4, 5, 7) if j == 0 else (5, 4, 7))
    spec = ("mkr" if i == 1 else "kmr") + "," + ("knr" if j == 0 else "nkr") + "->mnr"
    got = _contract(jnp.asarray(u), jnp.asarray(v), i, j)
    np.testing.assert_allclose(got, np.einsum(spec, u, v), rtol=1e-13)
    # A shared operand (a trailing 1) broadcasts against the runs.
    shared = u[..., :1]
    got = _contract(jnp.asarray(shared), jnp.asarray(v), i, j)
    want = np.einsum(spec, np.broadcast_to(shared, u.shape), v)
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_trainer_runs_last_matches_autodiff_and_single_runs(key):
    # XOR seeds through train_seeds (runs last) against autodiff (vmapped) and
    # against jp.train of each seed alone (no vmap at all), in float64.
    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
    x, y = jp.data.xor()
    keys = jax.random.split(key, 6)
    sgd = optax.sgd(0.5)
    manual = jp.train_seeds(net, keys, x, y, sgd, 300, dtype="float64")
    autodiff = jp.train_seeds(
        net, keys, x, y, sgd, 300, dtype="float64", grad="autodiff"
    )
    assert_trees_close(manual.params, autodiff.params, rtol=1e-10)
    np.testing.assert_allclose(manual.losses, autodiff.losses, rtol=1e-10)
    for r in range(2):
        params = jax.tree.map(lambda l: l[r], manual.params)
        start = net.init(jax.random.split(keys[r])[0], dtype="float64")
        alone = jp.train(net, start, x, y, sgd, 300)
        assert_trees_close(params, alone.params, rtol=1e-12)


def _eqns(jaxpr):
    """The equations of ``jaxpr`` and of every jaxpr nested in it."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _eqns(sub)


def _scan_bodies(jaxpr):
    """The body jaxprs of every ``scan`` in ``jaxpr``, nested ones included."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            yield eqn.params["jaxpr"].jaxpr
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _scan_bodies(sub)


OPTIMIZERS = {
    "sgd": optax.sgd(0.3),
    # per-run hyperparameters in the state, moments of every parameter
    "adam": optax.inject_hyperparams(optax.adam)(learning_rate=0.05),
    # a norm over all of one run's parameters: must stay per run
    "clipped": optax.chain(optax.clip_by_global_norm(0.1), optax.sgd(0.3)),
}


@pytest.mark.parametrize(
    "optimizer, batch_size", [("sgd", None), ("adam", None), ("clipped", 3)]
)
def test_training_loop_runs_last_equals_each_run(optimizer, batch_size):
    """The trainer's scan of steps under vmap over runs (runs last from its first
    step to its last: the optimizer mapped over the trailing axis, minibatches
    drawn per run) gives each run's own scan, and transposes nothing per step."""
    from jaxprop._engine.loop import _Config, _steps

    net = jp.MLP((2, 3, 1), "tanh", "sigmoid", "mse", "mean")
    x, y = jp.data.xor("float64")
    opt = OPTIMIZERS[optimizer]
    config = _Config(net, opt, 12, jp.rules.backprop(), batch_size, 4, None)
    keys = jax.random.split(jax.random.key(3), N_RUNS)
    params = jax.vmap(lambda k: net.init(k, dtype="float64"))(keys)
    opt_state = jax.vmap(opt.init)(params)
    if optimizer == "adam":  # a different learning rate for every run
        opt_state.hyperparams["learning_rate"] = jnp.linspace(0.01, 0.1, N_RUNS)
    runs = (params, opt_state, ())
    steps = _steps(config, x.shape[0], 3)
    shared = (jnp.int32(0), jnp.int32(3), x, y)  # 3 blocks of 4 steps from step 0
    over = jax.vmap(steps, in_axes=(0, 0, None, None, None, None))
    many = jax.jit(over)(runs, keys, *shared)
    for r in range(N_RUNS):
        run = jax.tree.map(lambda l: l[r], runs)
        alone = jax.jit(steps)(run, keys[r], *shared)
        assert_trees_close(jax.tree.map(lambda l: l[r], many), alone, rtol=1e-12)
    jaxpr = jax.make_jaxpr(over)(runs, keys, *shared).jaxpr
    body = next(_scan_bodies(jaxpr))  # a block's steps
    names = {eqn.primitive.name for eqn in _eqns(body)}
    assert "dot_general" not in names  # elementwise products
    if optimizer == "sgd":  # (JAX moves the runs axis of an elementwise op
        # between a run's scalar and its arrays, such as Adam's step count, to
        # the front; so do a global norm and minibatches gathered per run.)
        # Transposes of a batch's (examples, features) axes only: the state's
        # runs axis stays last from step to step.
        moves = [
            eqn.params["permutation"]
            for eqn in _eqns(body)
            if eqn.primitive.name == "transpose"
        ]
        assert all(p[-1] == len(p) - 1 for p in moves), moves
