"""The training engine: one run, many seeds, hyperparameter grids, strategies."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop._engine.layout import _advance_runs
from jaxprop._engine.loop import _train
from jaxprop._engine.shuffle import permutation
from tests.helpers import assert_trees_close, choose_strategy, make_case, xla_flags

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
XOR_Y = np.array([[0], [1], [1], [0]], float)
XOR_NET = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
SGD = optax.sgd(0.1)
ADAM = optax.adam(1e-2)
SGD_H = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)


def hand_rolled(
    net, params, x, y, optimizer, steps, grad="manual", batch_size=None, key=None
):
    """The reference loop: a Python for over steps, one jitted step each."""
    value_and_grad = (
        net.value_and_backprop if grad == "manual" else jax.value_and_grad(net.loss)
    )
    opt_state = optimizer.init(params)
    losses = []
    n = x.shape[0]
    for t in range(steps):
        if batch_size is None:
            xb, yb = x, y
        else:
            n_batches = n // batch_size
            epoch, i = divmod(t, n_batches)
            perm = permutation(key, epoch, n)  # the keyed bijection, whole
            idx = perm[i * batch_size : (i + 1) * batch_size]
            xb, yb = x[idx], y[idx]
        loss, grads = value_and_grad(params, xb, yb)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        losses.append(loss)
    return params, opt_state, np.array(losses)


@pytest.mark.parametrize("optimizer", [SGD, ADAM], ids=["sgd", "adam"])
def test_train_equals_hand_rolled_loop(seed, optimizer):
    net, params, x, y = make_case(
        seed, (3, 6, 2), "tanh", "mse-identity", "mean", batch=12
    )
    result = jp.train(net, params, x, y, optimizer, 40)
    params_ref, opt_state_ref, losses_ref = hand_rolled(
        net, params, x, y, optimizer, 40
    )
    assert result.losses.shape == (40,)
    np.testing.assert_allclose(result.losses, losses_ref, rtol=1e-12)
    assert_trees_close(result.params, params_ref, rtol=1e-12)
    assert_trees_close(result.opt_state, opt_state_ref, rtol=1e-12)
    assert not result.diverged and result.diverged_at == -1


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_minibatches_equal_hand_rolled_loop(seed, key):
    net, params, x, y = make_case(
        seed, (3, 5, 4), "relu", "softmax-labels", "mean", batch=11
    )
    # 11 examples in batches of 3: 3 batches an epoch, 2 examples dropped.
    result = jp.train(net, params, x, y, ADAM, 20, batch_size=3, key=key)
    params_ref, _, losses_ref = hand_rolled(
        net, params, x, y, ADAM, 20, batch_size=3, key=key
    )
    np.testing.assert_allclose(result.losses, losses_ref, rtol=1e-12)
    assert_trees_close(result.params, params_ref, rtol=1e-12)
    # Each epoch draws a new order, and different keys give different orders.
    other = jp.train(
        net, params, x, y, ADAM, 20, batch_size=3, key=jax.random.fold_in(key, 1)
    )
    assert not np.allclose(other.losses, result.losses)


def test_manual_and_autodiff_trajectories_agree(seed, key):
    net, params, x, y = make_case(
        seed, (3, 8, 8, 3), "gelu", "softmax-rows", "mean", batch=16
    )
    manual = jp.train(net, params, x, y, ADAM, 200, batch_size=4, key=key)
    autodiff = jp.train(
        net, params, x, y, ADAM, 200, batch_size=4, key=key, grad="autodiff"
    )
    np.testing.assert_allclose(manual.losses, autodiff.losses, rtol=1e-10)
    assert_trees_close(manual.params, autodiff.params, rtol=1e-9)


def test_losses_decrease_and_xor_reference_run():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "xor", Path(__file__).resolve().parents[1] / "scripts" / "xor.py"
    )
    xor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(xor)
    params = xor.reference_params()
    result = jp.train(XOR_NET, params, XOR_X, XOR_Y, SGD, 10000)
    assert result.losses[-1] < 0.01 < 0.5 < result.losses[0]
    assert np.all(np.diff(result.losses) < 0)  # this run descends monotonically
    # The same updates as scripts/xor.py's loop (which prints pre-update outputs).
    final, _, _ = xor.train(params, jnp.asarray(XOR_X), jnp.asarray(XOR_Y), 0.1, 10000)
    assert_trees_close(result.params, final, rtol=1e-12)


def test_log_every_records_block_means(seed):
    net, params, x, y = make_case(seed, (3, 4, 2), "tanh", "mse-identity")
    every = jp.train(net, params, x, y, SGD, 30)
    blocks = jp.train(net, params, x, y, SGD, 30, log_every=10)
    assert blocks.losses.shape == (3,)
    np.testing.assert_allclose(
        blocks.losses, every.losses.reshape(3, 10).mean(1), rtol=1e-13
    )
    assert_trees_close(blocks.params, every.params, rtol=0)


def test_evaluation(seed, key):
    net, params, x, y = make_case(
        seed, (3, 6, 3), "tanh", "softmax-labels", "mean", batch=20
    )
    x_eval, y_eval = x[:7] + 0.1, y[:7]
    result = jp.train(
        net,
        params,
        x,
        y,
        ADAM,
        50,
        batch_size=5,
        key=key,
        eval_data=(x_eval, y_eval),
        eval_every=20,
        log_every=5,
    )
    np.testing.assert_array_equal(result.eval_steps, [20, 40, 50])
    # The last evaluation is of the final params.
    np.testing.assert_allclose(
        result.eval_loss[-1], net.loss(result.params, x_eval, y_eval), rtol=1e-13
    )
    np.testing.assert_allclose(
        result.eval_accuracy[-1], jp.accuracy(net, result.params, x_eval, y_eval)
    )
    at_20 = jp.train(net, params, x, y, ADAM, 20, batch_size=5, key=key)
    np.testing.assert_allclose(
        result.eval_loss[0], net.loss(at_20.params, x_eval, y_eval), rtol=1e-13
    )
    assert np.all((0 <= result.eval_accuracy) & (result.eval_accuracy <= 1))


def test_accuracy_definitions():
    params = (jp.Layer(jnp.eye(2), jnp.zeros(2)),)
    softmax = jp.MLP((2, 2), "identity", "identity", "softmax_cross_entropy")
    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    assert jp.accuracy(softmax, params, x, jnp.array([0, 1, 1])) == pytest.approx(2 / 3)
    binary = jp.MLP((2, 2), "identity", "sigmoid", "binary_cross_entropy")
    # sigmoid(1) > 0.5, sigmoid(0) = 0.5 is not > 0.5: rows 1 and 3 fully right.
    y = jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert jp.accuracy(binary, params, x, y) == pytest.approx(2 / 3)


# ------------------------------------------------------------------- seeds
@pytest.mark.slow  # test_runs_last checks XOR seeds against jp.train alone too
def test_train_seeds_init_and_order_come_from_each_key(key):
    keys = jax.random.split(key, 6)
    result = jp.train_seeds(
        XOR_NET, keys, XOR_X, XOR_Y, SGD, 300, scheme="uniform01", log_every=1
    )  # train's default: every step
    assert result.losses.shape == (6, 300) and result.params[0].w.shape == (6, 2, 2)
    assert result.diverged.shape == (6,)
    for i in (0, 4):
        key_init, _ = jax.random.split(keys[i])
        params = XOR_NET.init(key_init, scheme="uniform01")
        single = jp.train(XOR_NET, params, XOR_X, XOR_Y, SGD, 300)
        np.testing.assert_allclose(result.losses[i], single.losses, rtol=1e-12)
    assert np.all(np.std(result.losses[:, 0]) > 0)


# Slow (20 s in the default suite's time): minibatches and Adam over seeds vs
# one seed alone are checked in the default suite by test_runs_last's
# training-loop test and test_strategies_equal_vmap.
@pytest.mark.slow
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-5)])
def test_seed_in_batch_equals_seed_alone(key, dtype, rtol):
    # float32: the batched and single programs round differently (other fusion
    # and summation order); over 200 Adam steps that stays within ~10 ulps of
    # the loss, and 1e-5 leaves margin.
    net, _, x, y = make_case(1, (3, 8, 2), "tanh", "mse-identity", "mean", batch=24)
    keys = jax.random.split(key, 5)
    kwargs = dict(batch_size=6, dtype=dtype)
    batched = jp.train_seeds(net, keys, x, y, ADAM, 200, **kwargs)
    for i in (0, 3):
        alone = jp.train_seeds(net, keys[i : i + 1], x, y, ADAM, 200, **kwargs)
        assert alone.losses.dtype == dtype
        np.testing.assert_allclose(batched.losses[i], alone.losses[0], rtol=rtol)
        assert_trees_close(
            jax.tree.map(lambda l: l[i], batched.params),
            jax.tree.map(lambda l: l[0], alone.params),
            rtol=rtol * 10,
            atol_scale=rtol,
        )


@pytest.mark.parametrize(
    "strategy,chunk_size",
    [
        pytest.param("sequential", None, marks=pytest.mark.slow),
        # chunked vs vmap (padded chunks) is in the default suite as
        # test_trainer's test_checkpoints_are_portable_across_layouts
        pytest.param("chunked", 2, marks=pytest.mark.slow),
        pytest.param("chunked", 3, marks=pytest.mark.slow),
        pytest.param("auto", None, marks=pytest.mark.slow),
    ],
)
def test_strategies_equal_vmap(key, strategy, chunk_size):
    net, _, x, y = make_case(2, (3, 5, 2), "tanh", "mse-identity", "mean", batch=8)
    keys = jax.random.split(key, 7)
    kwargs = dict(batch_size=4, log_every=5)
    reference = jp.train_seeds(net, keys, x, y, ADAM, 30, strategy="vmap", **kwargs)
    result = jp.train_seeds(
        net, keys, x, y, ADAM, 30, strategy=strategy, chunk_size=chunk_size, **kwargs
    )
    assert result.losses.shape == (7, 6)
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-12)
    assert_trees_close(result.params, reference.params, rtol=1e-12)


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_raw_uint32_keys_train_as_their_typed_keys():
    """Keys from jax.random.PRNGKey (raw uint32 data) draw what the typed keys
    of jax.random.key draw: the tiny runs-last path and minibatches, in
    train_seeds, and jp.train's data order."""
    raw = jax.random.split(jax.random.PRNGKey(3), 3)
    typed = jax.random.split(jax.random.key(3), 3)
    assert raw.dtype == jnp.uint32
    for net, kw in [(XOR_NET, {}), (XOR_NET, dict(batch_size=2, log_every=2))]:
        a = jp.train_seeds(net, raw, XOR_X, XOR_Y, SGD, 8, **kw)
        b = jp.train_seeds(net, typed, XOR_X, XOR_Y, SGD, 8, **kw)
        np.testing.assert_array_equal(a.losses, b.losses)
        assert_trees_close(a.params, b.params, rtol=0)
    params = XOR_NET.init(jax.random.key(0))
    a = jp.train(XOR_NET, params, XOR_X, XOR_Y, SGD, 8, batch_size=2,
                 key=jax.random.PRNGKey(5))  # fmt: skip
    b = jp.train(XOR_NET, params, XOR_X, XOR_Y, SGD, 8, batch_size=2,
                 key=jax.random.key(5))  # fmt: skip
    np.testing.assert_array_equal(a.losses, b.losses)


def test_prestacked_params(key):
    keys = jax.random.split(key, 4)
    params = jax.vmap(lambda k: XOR_NET.init(k, scheme="uniform01"))(keys)
    result = jp.train_seeds(
        XOR_NET, keys, XOR_X, XOR_Y, SGD, 50, params=params, log_every=1
    )  # the same log_every as train's default (a sweep's would be 10)
    single = jp.train(
        XOR_NET, jax.tree.map(lambda l: l[2], params), XOR_X, XOR_Y, SGD, 50
    )
    np.testing.assert_allclose(result.losses[2], single.losses, rtol=1e-12)


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_hyperparameter_grid(key):
    keys = jax.random.split(key, 3)
    rates = jnp.array([0.01, 0.1, 1.0, 3.0])
    grid = jp.train_seeds(
        XOR_NET,
        keys,
        XOR_X,
        XOR_Y,
        SGD_H,
        100,
        scheme="uniform01",
        hparams={"learning_rate": rates},
        chunk_size=5,
    )
    # The default log_every: 10 steps a block (XOR 2-2-1's 112 FLOPs a step).
    assert grid.losses.shape == (4, 3, 10) and grid.params[1].b.shape == (4, 3, 1)
    for h, rate in enumerate(rates):
        plain = jp.train_seeds(
            XOR_NET, keys, XOR_X, XOR_Y, optax.sgd(float(rate)), 100, scheme="uniform01"
        )
        np.testing.assert_allclose(grid.losses[h], plain.losses, rtol=1e-12)
    np.testing.assert_allclose(
        grid.opt_state.hyperparams["learning_rate"],
        np.broadcast_to(rates[:, None], (4, 3)),
    )


@pytest.mark.slow  # several seconds (subprocesses or compiles): .ci/run runs it
def test_a_diverging_run_is_flagged_frozen_and_harmless(key):
    net = jp.MLP((2, 8, 1), "tanh", "identity", "mse", "sum")
    keys = jax.random.split(key, 3)
    rates = jnp.array([0.05, 1e3])
    grid = jp.train_seeds(
        net,
        keys,
        XOR_X,
        XOR_Y,
        SGD_H,
        60,
        hparams={"learning_rate": rates},
        log_every=10,
    )
    assert grid.diverged.tolist() == [[False] * 3, [True] * 3]
    assert np.all(grid.diverged_at[0] == -1)
    assert np.all((grid.diverged_at[1] >= 0) & (grid.diverged_at[1] < 60))
    # Frozen at a finite state; its losses are NaN from the block where it broke.
    assert all(np.all(np.isfinite(l)) for l in jax.tree.leaves(grid.params))
    first_block = grid.diverged_at[1] // 10
    for s in range(3):
        assert np.all(np.isnan(grid.losses[1, s, first_block[s] :]))
        assert np.all(np.isfinite(grid.losses[1, s, : first_block[s]]))
    # The healthy runs are exactly what they are without the diverging ones.
    alone = jp.train_seeds(net, keys, XOR_X, XOR_Y, optax.sgd(0.05), 60, log_every=10)
    np.testing.assert_allclose(grid.losses[0], alone.losses, rtol=1e-12)
    assert not np.any(alone.diverged)


LINEAR = jp.MLP((2, 1), "identity", "identity", "mse", "sum")
#: SGD on LINEAR with these rates diverges (float32) at steps ~290, ~100, ~57,
#: ~37, or not at all (0.05): in the middle of stretches of checks.
DIVERGING_RATES = jnp.array([0.05, 0.34, 0.4, 0.5, 0.7])


def _diverging_sweep(key, log_every, steps=300, split=None):
    keys = jax.random.split(key, 3)
    trainer = jp.Trainer(
        LINEAR,
        keys,
        XOR_X,
        XOR_Y,
        SGD_H,
        steps,
        log_every=log_every,
        hparams={"learning_rate": DIVERGING_RATES},
        dtype="float32",
    )
    state = trainer.init()
    for k in split or [steps]:
        state = trainer.advance(state, k)
    return trainer.result(state)


@pytest.mark.parametrize("log_every", [1, pytest.param(4, marks=pytest.mark.slow)])
def test_stretches_record_what_a_check_after_every_block_records(
    key, monkeypatch, log_every
):
    """Blocks run in stretches checked once (CHECK_STEPS); a run found diverged
    takes its stretch again checked after every block: params, losses and
    diverged_at are bit for bit those of a check after every block, however
    the steps are split into calls."""
    stretched = _diverging_sweep(key, log_every)
    split = _diverging_sweep(key, log_every, split=[4, 96, 100, 4 * 23, 8])
    at = np.asarray(stretched.diverged_at)
    assert np.all(at[0] == -1) and np.all(at[1:] > 30)
    assert len(set((at[1:] // 100).ravel())) >= 2  # in more than one stretch
    # and in the split's short stretches (steps 4-99 and 200-291), which run
    # unchecked like full ones.
    assert np.any((at > 4) & (at < 100)) and np.any((at >= 200) & (at < 292))
    monkeypatch.setattr(jp._engine.loop, "CHECK_STEPS", 1)
    jax.clear_caches()
    every = _diverging_sweep(key, log_every)
    for other in (split, every):
        for a, b in zip(
            jax.tree.leaves(stretched), jax.tree.leaves(other), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    # The NaNs start at the block of the first non-finite loss.
    blocks = np.arange(300 // log_every)
    expect_nan = (at[..., None] >= 0) & (blocks >= at[..., None] // log_every)
    assert np.array_equal(np.isnan(stretched.losses), expect_nan)


def test_a_single_run_is_checked_in_stretches_too(monkeypatch):
    params = LINEAR.init(jax.random.key(3), dtype="float32")
    run = lambda: jp.train(LINEAR, params, XOR_X, XOR_Y, optax.sgd(0.4), 300)  # noqa: E731
    stretched = run()
    assert 30 < stretched.diverged_at < 300
    monkeypatch.setattr(jp._engine.loop, "CHECK_STEPS", 1)
    jax.clear_caches()
    for a, b in zip(jax.tree.leaves(stretched), jax.tree.leaves(run()), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_default_log_every_records_every_step_unless_the_record_is_large():
    """log_every=None: the smallest divisor of steps (and eval_every) whose
    record (runs × blocks × rows) fits in LOG_BYTES and, for a sweep, whose
    blocks hold MIN_BLOCK_FLOPS of a run's steps; jp.train: the bytes alone."""
    x, y = jp.data.xor(np.float32)

    def chosen(n_seeds, steps, **kw):
        keys = jax.random.split(jax.random.key(0), n_seeds)
        trainer = jp.Trainer(XOR_NET, keys, x, y, SGD, steps, dtype="float32", **kw)
        return trainer.log_every

    # 2-2-1 on 4 examples: 112 FLOPs a step, 10 steps to a block's 1024.
    assert XOR_NET.flops(4) == 112 and chosen(8, 2000) == 10
    assert chosen(8, 2001) == 23  # the smallest divisor of 2001 = 3 × 23 × 29
    assert chosen(8, 1009) == 1  # a prime: not one block of all the steps
    wide = jp.MLP((2, 64, 1), "tanh", "sigmoid", "mse", "mean")  # 3584 FLOPs
    assert jp.Trainer(wide, jax.random.split(jax.random.key(0), 8), x, y, SGD,
                      2000, dtype="float32").log_every == 1  # fmt: skip
    # 16384 × 2000 × 4 bytes = 131 MB a step at a time: 8 steps a block fit
    # 16 MB; with the FLOPs, 10.
    assert chosen(16384, 2000) == 10
    wide_keys = jax.random.split(jax.random.key(0), 16384)
    assert jp.Trainer(wide, wide_keys, x, y, SGD, 2000, dtype="float32").log_every == 8
    assert chosen(16384, 2000, log_every=1) == 1  # asked for: kept
    # Held-out loss and accuracy are two more rows; blocks divide eval_every.
    ev = dict(eval_data=(x, y), eval_every=500)
    every = chosen(16384, 2000, **ev)
    assert (
        500 % every == 0 and 16384 * 2000 // every * 3 * 4 <= jp._engine.train.LOG_BYTES
    )
    assert chosen(16384, 2000, **ev) > chosen(16384, 2000)
    # A single run: every step.
    result = jp.train(XOR_NET, XOR_NET.init(jax.random.key(0)), x, y, SGD, 50)
    assert result.losses.shape == (50,)


def test_no_recompilation_for_new_values(key):
    net, params, x, y = make_case(3, (3, 4, 2), "tanh", "mse-identity", batch=6)
    jp.train(net, params, x, y, SGD, 10)
    size = _train._cache_size()
    for i in range(3):
        jp.train(net, jax.tree.map(lambda p: p * i, params), x + i, y, SGD, 10)
    assert _train._cache_size() == size
    keys = jax.random.split(key, 4)
    jp.train_seeds(net, keys, x, y, SGD, 10)
    size = _advance_runs._cache_size()
    jp.train_seeds(net, jax.random.split(keys[0], 4), x * 2, y, SGD, 10)
    assert _advance_runs._cache_size() == size


@pytest.mark.slow  # several seconds of compiles: run by .ci/run with -m slow
def test_runs_split_across_devices_equal_one_device(tmp_path):
    """Several CPU devices need XLA_FLAGS before jax starts: a process of its own."""
    script = tmp_path / "devices.py"
    script.write_text(
        textwrap.dedent("""
        import jax, numpy as np, optax
        jax.config.update("jax_enable_x64", True)
        import jaxprop as jp
        assert len(jax.devices()) == 4
        net = jp.MLP((2, 3, 1), "sigmoid", "sigmoid", "mse", "sum")
        x, y = jp.data.xor(np.float64)
        keys = jax.random.split(jax.random.key(0), 10)
        kw = dict(scheme="uniform01", log_every=10)
        one = jp.train_seeds(net, keys, x, y, optax.sgd(0.5), 200,
                             devices=jax.devices()[:1], **kw)
        for strategy, chunk in [("vmap", None), ("chunked", 3), ("sequential", None)]:
            many = jp.train_seeds(net, keys, x, y, optax.sgd(0.5), 200,
                                  strategy=strategy, chunk_size=chunk, **kw)
            np.testing.assert_allclose(many.losses, one.losses, rtol=1e-12)
            assert len(many.losses.sharding.device_set) >= 1
        # Each device holds a contiguous slab of the runs: the result comes
        # back to the leading order without moving anything between devices.
        from jaxprop._engine.layout import _finish
        keys = jax.random.split(jax.random.key(1), 12)
        for strategy, chunk in [("vmap", None), ("chunked", 4)]:
            tr = jp.Trainer(net, keys, x, y, optax.sgd(0.5), 20, strategy=strategy,
                            chunk_size=chunk, **kw)
            state = tr.advance(tr.init(), 20)
            hlo = _finish.lower(tr._plan, state.runs, state.log).compile().as_text()
            for collective in ("all-gather", "all-to-all", "collective-permute"):
                assert collective not in hlo, (strategy, collective)
            res = tr.result(state)
            rows = sorted((s.index[0].start, s.index[0].stop)
                          for s in res.losses.addressable_shards)
            assert rows == [(0, 3), (3, 6), (6, 9), (9, 12)], rows
            alone = jp.train_seeds(net, keys[5:6], x, y, optax.sgd(0.5), 20,
                                   devices=jax.devices()[:1], **kw)
            np.testing.assert_array_equal(res.losses[5:6], alone.losses)
        print("OK")
    """)
    )
    env = dict(
        os.environ,
        XLA_FLAGS=xla_flags(4),
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"steps": 0}, ValueError, r"steps must be a positive integer; got 0"),
        ({"steps": 2.5}, TypeError, r"steps must be a positive integer; got 2.5"),
        ({"optimizer": "adam"}, TypeError, r"optimizer must be an optax.GradientTrans"),
        (
            {"grad": "numeric"},
            ValueError,
            r"Unknown grad 'numeric'; expected one of "
            r"\['manual', 'autodiff'\]",
        ),
        (
            {"batch_size": 5, "key": jax.random.key(0)},
            ValueError,
            r"batch_size \(5\) must not exceed the number of training examples \(4\)",
        ),
        ({"batch_size": 2}, ValueError, r"key is required with batch_size"),
        ({"log_every": 3}, ValueError, r"log_every \(3\) must divide steps \(10\)"),
        ({"eval_every": 5}, ValueError, r"eval_every needs eval_data"),
        (
            {"y": XOR_Y[:3]},
            ValueError,
            r"x and y must have the same length; got 4 and 3",
        ),
        ({"x": XOR_X[:, :1]}, ValueError, r"x must have shape \(batch, 2\)"),
        (
            {"x": np.where(XOR_X == 1, np.nan, XOR_X)},
            ValueError,
            r"x, y: x holds 4 NaN or inf values, in 3 rows \(first: row 1\)",
        ),
        (
            {"eval_data": (XOR_X, np.where(XOR_Y == 1, np.inf, XOR_Y))},
            ValueError,
            r"x_eval, y_eval: y holds 2 NaN or inf values",
        ),
        (
            {"eval_data": (XOR_X, XOR_Y[:2])},
            ValueError,
            r"x_eval and y_eval must have the same length",
        ),
    ],
)
def test_train_bad_input(kwargs, exc, match):
    args = dict(
        net=XOR_NET,
        params=XOR_NET.init(jax.random.key(0)),
        x=XOR_X,
        y=XOR_Y,
        optimizer=SGD,
        steps=10,
    )
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        jp.train(**args)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (
            {"keys": jax.random.key(0)},
            TypeError,
            r"keys must be a 1-D array of PRNG keys",
        ),
        (
            {"keys": np.arange(4)},
            TypeError,
            r"keys must be an array of PRNG keys.*int64",
        ),
        (
            {"strategy": "pmap"},
            ValueError,
            r"Unknown strategy 'pmap'; did you mean 'vmap'\? Expected one of",
        ),
        ({"strategy": "chunked"}, ValueError, r"strategy='chunked' needs chunk_size"),
        ({"strategy": "vmap", "chunk_size": 2}, ValueError, r"chunk_size goes with"),
        ({"chunk_size": 0}, ValueError, r"chunk_size must be a positive integer"),
        (
            {"hparams": {"learning_rate": [0.1, 0.2]}},
            ValueError,
            r"hparams\['learning_rate'\]: neither the optimizer nor the rule has "
            r"such a hyperparameter.*optax.inject_hyperparams",
        ),
        (
            {"optimizer": SGD_H, "hparams": {"learning_rate": [[0.1, 0.2]]}},
            ValueError,
            r"hparams\['learning_rate'\] must be a non-empty 1-D array .* "
            r"shape \(1, 2\)",
        ),
        (
            {
                "optimizer": optax.inject_hyperparams(optax.sgd)(
                    learning_rate=0.1, momentum=0.9
                ),
                "hparams": {"learning_rate": [0.1, 0.2], "momentum": [0.9]},
            },
            ValueError,
            r"hparams arrays must all have the same length",
        ),
        (
            {"params": (XOR_NET.init(jax.random.key(0)))},
            ValueError,
            r"params must be stacked with a leading axis of n_seeds=3",
        ),
        ({"scheme": "orthogonal"}, ValueError, r"Unknown scheme 'orthogonal'"),
        ({"devices": []}, ValueError, r"devices must name at least one device"),
        (
            {"eval_data": (np.ones((3, 5)), XOR_Y[:3])},
            ValueError,
            r"^x_eval must have shape \(batch, 2\)",
        ),
        (
            {"eval_data": (XOR_X, XOR_Y[:, 0])},
            ValueError,
            r"^y_eval must have shape \(4, 1\)",
        ),
    ],
)
def test_train_seeds_bad_input(kwargs, exc, match):
    args = dict(
        net=XOR_NET,
        keys=jax.random.split(jax.random.key(0), 3),
        x=XOR_X,
        y=XOR_Y,
        optimizer=SGD,
        steps=10,
    )
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        jp.train_seeds(**args)


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
@pytest.mark.parametrize("n_devices", [1, 2, 4])
@pytest.mark.parametrize("n_runs", [1, 7, 862, 863, 4096, 131072])
def test_auto_strategy_chunks_are_balanced(n_runs, n_devices, grad):
    # auto picks chunks near the cache-sized one (at least AUTO_RUNS_LAST_CHUNK
    # per device where the manual step puts the runs last, as it does for XOR),
    # balanced so that padding the runs to whole chunks costs less than one run
    # per device and chunk.
    from jaxprop._engine.layout import (
        AUTO_CACHE_BYTES,
        AUTO_RUNS_LAST_CHUNK,
    )
    from jaxprop._engine.loop import _Config

    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
    rule = jp.rules.backprop() if grad == "manual" else jp.rules.autodiff()
    config = _Config(net, optax.sgd(0.1), 10, rule, None, 10, None)
    strategy, chunk = choose_strategy(config, n_runs, "auto", None, 4, 4, n_devices)
    assert chunk % n_devices == 0 and chunk >= n_devices
    n_chunks = -(-n_runs // chunk)
    assert (strategy == "vmap") == (n_chunks == 1)
    assert n_chunks * chunk - n_runs < n_chunks * n_devices
    per_run = 4 * (8 * 9 + 4 * 4 * 5)  # the cost model's bytes for XOR in float32
    per_device = AUTO_CACHE_BYTES // per_run
    if grad == "manual":
        per_device = max(per_device, AUTO_RUNS_LAST_CHUNK)
    assert chunk <= per_device * n_devices + n_devices
    if n_runs >= 4 * per_device * n_devices:  # many chunks: each near the target
        assert chunk >= per_device * n_devices * 3 // 4
