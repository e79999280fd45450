"""The gradient's diagnostics: jp.curvature.grad_diagnostics against autodiff
and dense eigenvalues (float64), and the trainer's ``diagnostics_every``."""

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop._engine.steps import _Config, batch_at

NET = jp.MLP((3, 5, 2), "tanh", "identity", "mse")


def oracle(net, params, x, y):
    """(‖∇L‖, T, SNR, the Hessian's eigenvalue of largest magnitude) from
    jax.grad, vmap(grad) per example and numpy's eigvalsh of jax.hessian."""
    *stats, hessian = _autodiff(net, params, x, y)
    eig = np.linalg.eigvalsh(np.asarray(hessian))
    return (*stats, eig[np.argmax(np.abs(eig))])


@functools.partial(jax.jit, static_argnums=0)
def _autodiff(net, params, x, y):
    flat, unflatten = jax.flatten_util.ravel_pytree(params)
    loss = lambda f, x, y: net.loss(unflatten(f), x, y)  # noqa: E731
    B = x.shape[0]
    # Each example's share of ∇L (any common scale leaves T and SNR alone).
    g = jax.vmap(lambda xi, yi: jax.grad(loss)(flat, xi[None], yi[None]))(x, y)
    g_bar = g.mean(0)
    norm_test = jnp.sum((g - g_bar) ** 2) / ((B - 1) * B * jnp.sum(g_bar**2))
    snr = jnp.mean(g_bar**2 / g.var(0))
    norm = jnp.linalg.norm(jax.grad(loss)(flat, x, y))
    return norm, norm_test, snr, jax.hessian(loss)(flat, x, y)


def _case(seed, batch=6, reduction="mean"):
    net = jp.MLP((3, 5, 2), "tanh", "identity", "mse", reduction)
    params = net.init(jax.random.key(seed), dtype="float64")
    kx, ky = jax.random.split(jax.random.key(seed + 1))
    x = jax.random.normal(kx, (batch, 3), jnp.float64)
    return net, params, x, jax.random.normal(ky, (batch, 2), jnp.float64)


@pytest.mark.parametrize(
    "reduction", ["mean", pytest.param("sum", marks=pytest.mark.slow)]
)
def test_grad_diagnostics_equal_autodiff_and_eigvalsh(seed, reduction):
    net, params, x, y = _case(seed, reduction=reduction)
    got = jp.curvature.grad_diagnostics(
        net, params, x, y, jax.random.key(seed), iters=400
    )
    want = oracle(net, params, x, y)
    np.testing.assert_allclose(got[:3], want[:3], rtol=1e-10)
    np.testing.assert_allclose(got.sharpness, want[3], rtol=1e-8)
    # A 0.1% error in any of them is caught at these tolerances.
    for g, w in zip(got[:3], want[:3], strict=True):
        assert abs(1.001 * g - w) > 1e-10 * abs(w)


def test_equal_examples_have_no_noise():
    """All g_i equal: T = 0, and no parameter's variance is above rounding, so
    the SNR is NaN (not rounding's 1/0-sized ratios)."""
    net, params, x, y = _case(1)
    x, y = jnp.repeat(x[:1], 6, axis=0), jnp.repeat(y[:1], 6, axis=0)
    out = jp.curvature.grad_diagnostics(net, params, x, y, sharpness=None)
    assert 0 <= out.norm_test < 1e-12 and np.isnan(out.snr)
    np.testing.assert_allclose(out.grad_norm, oracle(net, params, x, y)[0], 1e-12)


def test_grad_diagnostics_refuse_bad_arguments():
    net, params, x, y = _case(0)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="Unknown sharpness 'hess'"):
        jp.curvature.grad_diagnostics(net, params, x, y, key, sharpness="hess")
    with pytest.raises(ValueError, match="iters"):
        jp.curvature.grad_diagnostics(net, params, x, y, key, iters=0)
    with pytest.raises(ValueError, match="needs key"):
        jp.curvature.grad_diagnostics(net, params, x, y)
    hinge = jp.MLP((3, 5, 2), "tanh", "identity", "hinge")
    signs = jnp.sign(y)
    with pytest.raises(ValueError, match=r"sharpness='hessian'.*sharpness=None"):
        jp.curvature.grad_diagnostics(hinge, params, x, signs, key)
    out = jp.curvature.grad_diagnostics(hinge, params, x, signs, sharpness=None)
    assert out.sharpness is None and np.isfinite(out.grad_norm)


# The trainer ------------------------------------------------------------------
X = jax.random.normal(jax.random.key(1), (24, 3), jnp.float64)
Y = jax.random.normal(jax.random.key(2), (24, 2), jnp.float64)
KEYS = jax.random.split(jax.random.key(0), 2)
SGD = optax.sgd(0.2)


def test_train_logs_the_diagnostics_of_its_last_params():
    """jp.train with a rule that is not backprop: the last measure is the loss
    gradient's at the final params (full batch); entries at the due steps."""
    params = NET.init(jax.random.key(4), dtype="float64")
    result = jp.train(NET, params, X, Y, SGD, 8, rule=jp.rules.sign_symmetry(),
                      log_every=2, diagnostics_every=6, sharpness=None)  # fmt: skip
    np.testing.assert_array_equal(result.diagnostics_steps, [6, 8])
    assert result.diagnostics.sharpness is None
    want = oracle(NET, result.params, X, Y)
    got = [a[-1] for a in result.diagnostics[:3]]
    np.testing.assert_allclose(got, want[:3], rtol=1e-10)
    assert np.isfinite(np.asarray(result.diagnostics[:3])).all()


def _counting_tanh(calls):
    """tanh whose σ'' (read by the sharpness's R-operator alone) counts its calls."""
    tanh = jp.ACTIVATIONS["tanh"]

    def second(z, a):
        # An argument of each run's: called once per run under vmap.
        jax.debug.callback(lambda _: calls.append(1), jnp.sum(z))
        return tanh.second_derivative(z, a)

    return tanh._replace(name="counting_tanh", second_derivative=second)


@pytest.mark.slow  # about 10 s of compiles: .ci/run runs it
@pytest.mark.parametrize("batch_size, strategy", [(None, "vmap"), (8, "sequential")])
def test_the_trainer_logs_the_true_gradients_diagnostics_when_due(
    batch_size, strategy, tmp_path
):
    """Under feedback alignment (updates that are not the gradient), each
    measure is the loss gradient's, on the batch the next step takes, at the
    params after its step; measured at the due steps only (as for alignment:
    a per-run flag in the cond's predicate would make it a select under the
    runs' vmap, measuring every run after every block); a checkpoint keeps
    them and names their settings."""
    calls = []
    net = jp.MLP((3, 5, 2), _counting_tanh(calls), "identity", "mse")
    fa = jp.rules.feedback_alignment()
    kw = dict(rule=fa, batch_size=batch_size, log_every=2, diagnostics_every=4,
              sharpness_iters=400, strategy=strategy, dtype="float64")  # fmt: skip
    trainer = jp.Trainer(net, KEYS, X, Y, SGD, 10, **kw)
    state = trainer.init()
    config = _Config(net, SGD, 10, fa, batch_size, 2, None)
    counts = []
    for t in [4, 8, 10]:  # blocks of 2 steps: a measure after the 2nd, 4th, 5th
        state = trainer.advance(state, t - state.step)
        jax.effects_barrier()
        counts.append(len(calls))
        if t == 4:
            trainer.save(tmp_path / "c.npz", state)
        runs = trainer.runs(state)
        for s in range(2):
            params = jax.tree.map(lambda a: a[s], runs.params)
            x, y = batch_at(config, runs.key[s], t, X, Y)
            want = oracle(net, params, x, y)
            got = [a[s, t // 2 - 1] for a in trainer.log(state).diagnostics]
            np.testing.assert_allclose(got[:3], want[:3], rtol=1e-10)
            np.testing.assert_allclose(got[3], want[3], rtol=1e-7)
    # Measured after every block, the counts would go as 2 : 4 : 5 blocks.
    assert counts[0] > 0 and counts == [counts[0], 2 * counts[0], 3 * counts[0]]
    result = trainer.result(state)
    np.testing.assert_array_equal(result.diagnostics_steps, [[4, 8, 10]] * 2)
    log = trainer.log(state).diagnostics
    due = np.array([False, True, False, True, True])  # blocks ending at 2..10
    for a in log:
        assert np.isnan(a[:, ~due]).all() and np.isfinite(a[:, due]).all()
    for got, a in zip(result.diagnostics, log, strict=True):
        np.testing.assert_array_equal(got, a[:, due])

    resumed = trainer.result(trainer.advance(trainer.load(tmp_path / "c.npz"), 6))
    for a, b in zip(result.diagnostics, resumed.diagnostics, strict=True):
        np.testing.assert_array_equal(a, b)
    other = jp.Trainer(net, KEYS, X, Y, SGD, 10, **(kw | {"sharpness": "ggn"}))
    with pytest.raises(ValueError, match="sharpness \\(saved 'hessian, 400"):
        other.load(tmp_path / "c.npz")


@pytest.mark.slow  # four programs of seconds each: .ci/run runs it
def test_seeds_measure_as_each_seed_alone_and_train_as_without():
    keys = jax.random.split(jax.random.key(3), 3)
    kw = dict(batch_size=8, log_every=2, dtype="float64")
    on = jp.train_seeds(NET, keys, X, Y, SGD, 12, diagnostics_every=6,
                        sharpness="ggn", **kw)  # fmt: skip
    off = jp.train_seeds(NET, keys, X, Y, SGD, 12, **kw)
    for a, b in [(on.params, off.params), (on.losses, off.losses)]:
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(u, v)
    for s in range(3):
        alone = jp.train_seeds(NET, keys[s : s + 1], X, Y, SGD, 12,
                               diagnostics_every=6, sharpness="ggn", **kw)  # fmt: skip
        for a, b in zip(on.diagnostics, alone.diagnostics, strict=True):
            np.testing.assert_allclose(a[s], b[0], rtol=1e-12)


@pytest.mark.parametrize(
    "options, says",
    [
        ({"diagnostics_every": 3}, r"diagnostics_every \(3\) must be a multiple of "
                                   r"log_every \(2\)"),
        ({"diagnostics_every": 0}, "diagnostics_every"),
        ({"diagnostics_every": 2, "sharpness": "hess"}, "Unknown sharpness 'hess'"),
        ({"diagnostics_every": 2, "sharpness_iters": 0}, "sharpness_iters"),
        ({"sharpness": "ggn"}, "go with diagnostics_every"),
    ],
)  # fmt: skip
def test_bad_diagnostics_options_are_refused_before_compiling(options, says):
    with pytest.raises((ValueError, TypeError), match=says):
        jp.train_seeds(NET, KEYS, X, Y, SGD, 8, log_every=2, **options)
    params = NET.init(KEYS[0], dtype="float64")
    with pytest.raises((ValueError, TypeError), match=says):
        jp.train(NET, params, X, Y, SGD, 8, log_every=2, **options)


def test_a_net_without_second_order_needs_sharpness_none():
    hinge = jp.MLP((3, 5, 2), "tanh", "identity", "hinge")
    with pytest.raises(ValueError, match=r"sharpness='hessian'.*sharpness=None"):
        jp.Trainer(hinge, KEYS, X, jnp.sign(Y), SGD, 8, diagnostics_every=4)
