"""Trainer (runs advanced in chunks of steps), jp.save / jp.load."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop._engine.layout import _advance_runs
from jaxprop._io import atomic_write

NET = jp.MLP((2, 6, 2), "tanh", "identity", "softmax_cross_entropy", "mean")
ADAM_H = optax.inject_hyperparams(optax.adam)(learning_rate=1e-2)


@pytest.fixture(scope="module")
def moons():
    x, y = jp.data.two_moons(jax.random.key(1), 64)
    x_eval, y_eval = jp.data.two_moons(jax.random.key(2), 32)
    return x, y, (x_eval, y_eval)


def make_trainer(moons, n_seeds=3, steps=120, **kw):
    x, y, eval_data = moons
    keys = jax.random.split(jax.random.key(0), n_seeds)
    kw = (
        dict(
            batch_size=16,
            log_every=10,
            eval_data=eval_data,
            eval_every=40,
            hparams={"optimizer.learning_rate": jnp.array([1e-2, 5e-2])},
            dtype="float64",
        )
        | kw
    )
    return jp.Trainer(NET, keys, x, y, ADAM_H, steps, **kw), (keys, x, y, kw)


def assert_bitwise_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(leaves_a, leaves_b, strict=True):
        if jax.dtypes.issubdtype(getattr(u, "dtype", None), jax.dtypes.prng_key):
            u, v = jax.random.key_data(u), jax.random.key_data(v)
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


@pytest.mark.parametrize(
    "strategy", ["vmap", pytest.param("chunked", marks=pytest.mark.slow), "sequential"]
)
def test_any_split_of_the_steps_gives_the_same_bits(moons, strategy):
    kw = {"chunk_size": 2} if strategy == "chunked" else {"strategy": strategy}
    trainer, (keys, x, y, args) = make_trainer(moons, **kw)
    whole = jp.train_seeds(NET, keys, x, y, ADAM_H, 120, **args)
    state = trainer.init()
    for k in (10, 50, 10, 40, 10):
        state = trainer.advance(state, k)
    assert state.step == 120
    assert_bitwise_equal(trainer.result(state), whole)
    # One compiled program for every chunk length.
    assert trainer.strategy[0] == ("chunked" if strategy == "chunked" else strategy)


def test_no_recompilation_for_new_chunk_lengths(moons):
    trainer, _ = make_trainer(moons)
    state = trainer.advance(trainer.init(), 10)
    size = _advance_runs._cache_size()
    for k in (20, 30, 60):
        state = trainer.advance(state, k)
    assert _advance_runs._cache_size() == size


def test_views_and_the_log_as_it_fills(moons):
    trainer, _ = make_trainer(moons)
    assert trainer.shape == (2, 3)
    state = trainer.advance(trainer.init(), 30)
    log = trainer.log(state)
    assert log.losses.shape == (2, 3, 12)
    assert np.all(np.isfinite(log.losses[..., :3]))
    assert np.all(np.isnan(log.losses[..., 3:]))
    np.testing.assert_array_equal(trainer.last_losses(state), log.losses[..., 2])
    runs = trainer.runs(state)
    assert runs.params[0].w.shape == (2, 3, 2, 6)
    assert runs.diverged.shape == (2, 3)


def test_save_load_a_state_and_resume_bit_for_bit(moons, tmp_path):
    trainer, _ = make_trainer(moons)
    state = trainer.advance(trainer.init(), 60)
    path = jp.save(tmp_path / "state.npz", state)
    loaded = jp.load(path, like=trainer.init())
    assert isinstance(loaded, jp.TrainState) and loaded.step == 60
    assert_bitwise_equal(loaded, state)
    resumed = trainer.result(trainer.advance(loaded, 60))
    straight = trainer.result(trainer.advance(state, 60))
    assert_bitwise_equal(resumed, straight)


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_checkpoints_are_portable_across_layouts(moons, tmp_path):
    """trainer.save writes leading run axes: a padded chunked run resumes under vmap."""
    chunked, _ = make_trainer(moons, n_seeds=3, chunk_size=4)  # 6 runs padded to 8
    vmapped, _ = make_trainer(moons, n_seeds=3, strategy="vmap")
    assert chunked.strategy == ("chunked", 4) and vmapped.strategy == ("vmap", 6)
    state = chunked.advance(chunked.init(), 60)
    path = chunked.save(tmp_path / "ck.npz", state)
    with np.load(path) as f:  # (n_hparams, n_seeds) leading axes, no padding
        leading = {a.shape[:2] for k, a in f.items() if k != "__jaxprop__" and a.ndim}
    assert leading == {(2, 3)}
    resumed = vmapped.load(path)
    assert resumed.step == 60
    np.testing.assert_array_equal(
        vmapped.log(resumed).losses, chunked.log(state).losses
    )
    a = vmapped.result(vmapped.advance(resumed, 60))
    b = chunked.result(chunked.advance(state, 60))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match=r"n_seeds \(saved 3, this trainer 2\)"):
        make_trainer(moons, n_seeds=2)[0].load(path)


def test_load_names_each_setting_that_differs(moons, tmp_path):
    """trainer.save records the settings that shape the runs; a trainer built
    with others refuses the checkpoint and names each one (a grid or keys that
    differ would otherwise resume silently, with the saved values). A file
    without settings (jp.save of a portable state) loads as before."""
    trainer, (keys, x, y, kw) = make_trainer(moons, n_seeds=2)
    state = trainer.init()
    path = trainer.save(tmp_path / "ck.npz", state)
    assert_bitwise_equal(trainer.load(path), state)
    other_keys = jax.random.split(jax.random.key(9), 2)
    cases = [
        ({"hparams": {"learning_rate": jnp.array([1e-2, 0.1])}},
         r"hparams \(saved \{'optimizer.learning_rate': \['0.01', '0.05'\]\}, "
         r"this trainer \{'optimizer.learning_rate': \['0.01', '0.1'\]\}\)"),
        ({"keys": other_keys}, r"other settings: keys \(other arrays\)\. Build"),
        ({"x": x + 1.0}, r"other settings: data \(other arrays\)\. Build"),
        ({"batch_size": 8}, r"batch_size \(saved 16, this trainer 8\)"),
        ({"log_every": 20, "eval_every": 40},
         r"log_every \(saved 10, this trainer 20\)"),
        ({"optimizer": optax.sgd(0.1), "hparams": None},
         r"optimizer state \(another structure"),
        ({"rule": jp.rules.feedback_alignment()}, r"rule state \(another structure"),
    ]  # fmt: skip
    for change, says in cases:
        args = dict(net=NET, keys=keys, x=x, y=y, optimizer=ADAM_H, steps=120) | kw
        with pytest.raises(ValueError, match=says):
            jp.Trainer(**(args | change)).load(path)
    bare = jp.save(tmp_path / "bare.npz", trainer.portable(state))
    assert_bitwise_equal(trainer.load(bare), state)
    # The same runs from other array types (NumPy, int32 or int64 labels, raw
    # uint32 keys) load: what is compared is what the runs use.
    raw_keys = jax.random.key_data(keys)
    for same in [
        {"x": np.asarray(x), "y": np.asarray(y).astype(np.int64)},
        {"y": jnp.asarray(y, jnp.int32), "keys": raw_keys},
        {"hparams": {"learning_rate": [1e-2, 5e-2]}},
        {"hparams": {"optimizer.learning_rate": [1e-2, 5e-2]}},
    ]:
        args = dict(net=NET, keys=keys, x=x, y=y, optimizer=ADAM_H, steps=120) | kw
        assert_bitwise_equal(jp.Trainer(**(args | same)).load(path), state)


@pytest.mark.filterwarnings("ignore:Kolen-Pollack with an optimizer")
def test_load_reads_the_bare_grid_names_of_older_files(moons, tmp_path):
    """Files saved before grid names were qualified record bare names, which
    set the name wherever the optimizer or the rule held it: they load into
    the trainer that sets the same places, and not into one that sets others."""
    x, y, _ = moons
    keys = jax.random.split(jax.random.key(4), 2)
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    kp = jp.rules.kolen_pollack(0.1, 0.01)
    both = {"optimizer.learning_rate": [0.1, 0.2], "rule.learning_rate": [0.1, 0.2]}
    trainer = jp.Trainer(NET, keys, x, y, opt, 20, rule=kp, hparams=both)
    state = trainer.init()
    settings = dict(trainer._settings)
    settings["hparams"] = {"learning_rate": settings["hparams"]["rule.learning_rate"]}
    old = jp.save(
        tmp_path / "old.npz", trainer.portable(state), meta={"trainer": settings}
    )
    assert_bitwise_equal(trainer.load(old), state)
    only_w = {"optimizer.learning_rate": [0.1, 0.2]}
    with pytest.raises(ValueError, match=r"hparams \(saved"):
        jp.Trainer(NET, keys, x, y, opt, 20, rule=kp, hparams=only_w).load(old)


def test_trainer_rejects_bad_calls(moons):
    trainer, _ = make_trainer(moons)
    state = trainer.init()
    with pytest.raises(ValueError, match="multiple of log_every"):
        trainer.advance(state, 15)
    with pytest.raises(ValueError, match="past their 120 steps"):
        trainer.advance(state, 130)
    with pytest.raises(ValueError, match="steps must be a positive"):
        trainer.advance(state, 0)
    with pytest.raises(TypeError, match=r"state must be a jp\.TrainState"):
        trainer.advance(state.runs, 10)
    with pytest.raises(ValueError, match="not finished"):
        trainer.result(state)


@pytest.mark.parametrize(
    "devices,exc,match",
    [
        ([], ValueError, "devices must name at least one device"),
        (["cpu"], TypeError, r"devices must be a sequence of jax\.Device"),
        ("twice", ValueError, r"must not name a device twice; cpu:0 is"),
    ],
)
def test_trainer_rejects_bad_devices(moons, devices, exc, match):
    if devices == "twice":
        devices = jax.devices()[:1] * 2
    with pytest.raises(exc, match=match):
        make_trainer(moons, devices=devices)


# --------------------------------------------------------------- save / load
def test_save_load_every_kind_of_leaf(tmp_path):
    tree = {
        "f64": np.random.default_rng(0).normal(size=(3, 2)),
        "f32": jnp.arange(5, dtype=jnp.float32) / 3,
        "bf16": jnp.array([1.5, -2.25, 3e-3], jnp.bfloat16),
        "i32": jnp.array([[1, -2]], jnp.int32),
        "bool": jnp.array([True, False]),
        "key": jax.random.split(jax.random.key(3), 4),
        "raw_key": jax.random.PRNGKey(1),
        "scalars": (7, 2.5, True),
        "empty": optax.EmptyState(),
        "nan": jnp.array([np.nan, np.inf, -0.0]),
    }
    path = jp.save(tmp_path / "tree.npz", tree)
    back = jp.load(path, like=tree)
    assert_bitwise_equal(back, tree)
    assert back["bf16"].dtype == jnp.bfloat16
    assert back["scalars"] == (7, 2.5, True)
    assert type(back["scalars"][0]) is int
    assert str(jax.random.key_impl(back["key"])) == str(
        jax.random.key_impl(tree["key"])
    )
    np.testing.assert_array_equal(np.signbit(back["nan"]), [False, False, True])
    flat = jp.load(path)  # no template: a dict by key path
    assert set(flat) >= {"['f64']", "['key']", "['scalars'][0]"}


def test_load_checks_the_template(tmp_path):
    params = NET.init(jax.random.key(0), dtype="float32")
    path = jp.save(tmp_path / "p.npz", params)
    other = jp.MLP((2, 5, 2), "tanh", "identity", "softmax_cross_entropy")
    with pytest.raises(ValueError, match=r"leaf \[0\]\.w is float32 of shape \(2, 6\)"):
        jp.load(path, like=other.init(jax.random.key(0), dtype="float32"))
    with pytest.raises(ValueError, match="like expects float64"):
        jp.load(path, like=NET.init(jax.random.key(0), dtype="float64"))
    with pytest.raises(ValueError, match="structure"):
        jp.load(path, like=params[:1])
    with pytest.raises(ValueError, match="no such file"):
        jp.load(tmp_path / "missing.npz", like=params)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        jp.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="a zip archive") as e:
        jp.load(tmp_path / "junk.npz")
    assert "pickle" not in str(e.value)  # NumPy's advice does not apply
    np.savez(tmp_path / "plain.npz", x=np.zeros(2))
    with pytest.raises(
        ValueError, match=r"no jaxprop header \(damaged, or not written by jp\.save\)"
    ):
        jp.load(tmp_path / "plain.npz")
    with pytest.raises(TypeError, match="leaves must be arrays"):
        jp.save(tmp_path / "bad.npz", {"a": "text"})


def test_a_crash_mid_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "ck.npz"
    jp.save(path, {"a": np.arange(3)})
    before = path.read_bytes()

    def crash(f):
        f.write(b"half a file")
        raise KeyboardInterrupt  # the process dies mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temp left
    np.testing.assert_array_equal(
        jp.load(path, like={"a": np.arange(3)})["a"], [0, 1, 2]
    )


def test_save_path_is_returned_and_parent_must_exist(tmp_path):
    out = jp.save(tmp_path / "a.npz", {"x": np.ones(2)})
    assert out == Path(tmp_path / "a.npz") and out.exists()
    with pytest.raises(FileNotFoundError):
        jp.save(tmp_path / "no" / "dir.npz", {"x": np.ones(2)})
    assert os.listdir(tmp_path) == ["a.npz"]


@pytest.mark.filterwarnings("ignore:Kolen-Pollack with an optimizer")
@pytest.mark.parametrize(
    "dtype", ["float32", pytest.param("float64", marks=pytest.mark.slow)]
)
def test_the_init_compiled_at_O1_draws_the_bits_of_xla_default(moons, dtype):
    """On a CPU the init program compiles at LLVM -O1 (INIT_COMPILER_OPTIONS);
    it must draw what XLA's default -O3 draws: every scheme's weights, a rule's
    random feedback, the data keys (at -O0, He's and the rules' draws differ)."""
    from jaxprop._engine import layout as _layout

    assert _layout.INIT_COMPILER_OPTIONS["cpu"] == {"xla_backend_optimization_level": 1}
    o3 = jax.jit(
        _layout._init_runs_traced,
        static_argnums=(0, 1, 2),
        compiler_options={"xla_backend_optimization_level": 3},
    )
    for scheme, rule in [
        ("glorot", jp.rules.direct_feedback_alignment()),
        ("he", jp.rules.kolen_pollack(0.01, 0.001)),
    ]:
        trainer, _ = make_trainer(moons, scheme=scheme, rule=rule, dtype=dtype)
        state = trainer.init()
        expected = o3(trainer._plan, 64, True, *trainer._init_args)
        assert_bitwise_equal((state.runs, state.log), expected)


def counting_rule(n_align):
    """Backprop that counts, through ``jax.debug.callback``, its calls on
    ``n_align`` examples (the alignment measure's; the steps' batches are
    smaller): one call per run measured."""
    calls = []
    backprop = jp.rules.backprop()

    def value_and_grads(net, params, state, x, y):
        loss, grads, state = backprop.value_and_grads(net, params, state, x, y)
        if x.shape[0] == n_align:
            jax.debug.callback(lambda loss: calls.append(loss), loss)
        return loss, grads, state

    return jp.rules.Rule(backprop.init, value_and_grads, runs_last=False), calls


@pytest.mark.parametrize("strategy", ["vmap", "sequential"])
def test_alignment_is_measured_only_when_due(moons, strategy):
    # Under the runs' vmap, a per-run flag in the cond's predicate made it a
    # select: the measure ran for every run after every block.
    x, y, _ = moons
    rule, calls = counting_rule(x.shape[0])
    keys = jax.random.split(jax.random.key(0), 3)
    result = jp.train_seeds(NET, keys, x, y, optax.sgd(0.1), 120, rule=rule,
                            batch_size=16, log_every=10, alignment_every=40,
                            strategy=strategy, dtype="float64")  # fmt: skip
    jax.effects_barrier()
    np.testing.assert_array_equal(result.alignment_steps[0], [40, 80, 120])
    assert len(calls) == 3 * 3  # 3 runs, 3 measures each (12 blocks)
    assert np.all(np.isfinite(result.alignment.grad))


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_alignment_of_a_sweep_with_diverging_runs(moons):
    # lr 4 and 10 diverge between the measures (steps 81 to 118), lr 0.05 and
    # 2 do not: each measure is jp.alignment of the params at its step, NaN
    # for the runs diverged by then; training is the same with it off.
    x, labels, _ = moons
    y = labels[:, None]
    net = jp.MLP((2, 8, 8, 1), "tanh", "identity", "mse")
    fa = jp.rules.feedback_alignment()
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    keys = jax.random.split(jax.random.key(0), 4)
    lrs = {"learning_rate": jnp.array([0.05, 2.0, 4.0, 10.0])}
    kw = dict(rule=fa, hparams=lrs, batch_size=16, log_every=10, strategy="vmap",
              dtype="float64")  # fmt: skip
    on = jp.train_seeds(net, keys, x, y, sgd, 120, alignment_every=40, **kw)
    off = jp.train_seeds(net, keys, x, y, sgd, 120, **kw)
    assert_bitwise_equal(
        (on.params, on.opt_state, on.rule_state, on.losses, on.diverged_at),
        (off.params, off.opt_state, off.rule_state, off.losses, off.diverged_at),
    )
    at = np.asarray(on.diverged_at)
    assert np.any((at > 80) & (at < 120)) and np.any(at == -1)

    trainer = jp.Trainer(net, keys, x, y, sgd, 120, alignment_every=40, **kw)
    measure = jax.jit(
        jax.vmap(jax.vmap(lambda p, s: jp.alignment(net, fa, p, s, x, y)))
    )
    state = trainer.init()
    for i in range(3):
        state = trainer.advance(state, 40)
        runs = trainer.runs(state)
        want = measure(runs.params, runs.rule_state)
        for got, expected in zip(on.alignment, want, strict=True):
            expected = np.where(runs.diverged[..., None], np.nan, expected)
            np.testing.assert_allclose(got[..., i], expected, rtol=1e-10, atol=1e-6)
