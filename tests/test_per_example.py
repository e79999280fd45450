"""Per-example gradients, norms and clipping from one δ pass; DP-SGD and its
privacy accounting."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop as jp
import jaxprop._network
from jaxprop import rules
from tests.helpers import (
    assert_trees_close,
    make_case,
    numpy_rule_state,
    with_runs_last,
)

SIZES = (3, 6, 5, 2)


def per_example_oracle(net, params, x, y):
    """jax.vmap of jax.grad of each example's own cost (autodiff, tests only)."""
    one = lambda p, x_i, y_i: net.loss(p, x_i, y_i)  # noqa: E731 (unbatched: c_i)
    return jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(params, x, y)


def explicit_norms(per_ex):
    """‖g_i‖ from the per-example gradients formed explicitly."""
    flat = [l.reshape(l.shape[0], -1) for l in jax.tree.leaves(per_ex)]
    return jnp.sqrt(sum(jnp.sum(f * f, axis=1) for f in flat))


def explicit_clipped(per_ex, clip_norm):
    """Σ_i g_i min(1, C/‖g_i‖) from the per-example gradients."""
    s = jnp.minimum(1, clip_norm / explicit_norms(per_ex))
    return jax.tree.map(lambda g: jnp.tensordot(s, g, 1), per_ex)


def per_example_and_oracles(seed, activation, cost_config, reduction):
    """The three per-example functions (clip C: the median norm) and backprop,
    with the autodiff oracle: one compiled program."""
    net, params, x, y = make_case(
        seed, SIZES, activation, cost_config, reduction, batch=7
    )

    def everything(params, x, y):
        norms = jp.per_example_grad_norms(net, params, x, y)
        clip = jnp.median(norms)  # some examples clipped, others not
        return dict(
            per_ex=jp.per_example_grads(net, params, x, y),
            norms=norms,
            clip=clip,
            clipped=jp.clipped_grads(net, params, x, y, clip),
            no_clip=jp.clipped_grads(net, params, x, y, math.inf),
            oracle=per_example_oracle(net, params, x, y),
            grads=net.backprop(params, x, y),
        )

    return jax.jit(everything)(params, x, y)


@pytest.mark.parametrize(
    "activation, cost_config, reduction",
    [
        ("tanh", "mse-sigmoid", "sum"),
        ("relu", "softmax-labels", "mean"),
        pytest.param("gelu", "bce-sigmoid", "mean", marks=pytest.mark.slow),
        pytest.param("elu", "softmax-rows", "sum", marks=pytest.mark.slow),
    ],
)
def test_per_example_quantities_against_their_definitions(
    seed, activation, cost_config, reduction
):
    r = per_example_and_oracles(seed, activation, cost_config, reduction)
    assert all(l.shape[0] == 7 for l in jax.tree.leaves(r["per_ex"]))
    assert_trees_close(r["per_ex"], r["oracle"], rtol=1e-12)
    # The conventions: per-example costs, unreduced; backprop reduces them.
    total = jax.tree.map(lambda g: jnp.sum(g, axis=0), r["per_ex"])
    if reduction == "mean":
        total = jax.tree.map(lambda g: g / 7, total)
    assert_trees_close(total, r["grads"], rtol=1e-12)
    np.testing.assert_allclose(r["norms"], explicit_norms(r["oracle"]), rtol=1e-12)
    clipped = explicit_clipped(r["oracle"], r["clip"])
    assert_trees_close(r["clipped"], clipped, rtol=1e-12)
    assert not np.allclose(r["clipped"][0].w, jnp.sum(r["oracle"][0].w, 0))
    # C = ∞: the plain sum.
    summed = jax.tree.map(lambda g: jnp.sum(g, 0), r["oracle"])
    assert_trees_close(r["no_clip"], summed, rtol=1e-12)

    # Test the tester: a 0.1% error in one example's gradient or norm, or in
    # the clipping bound, fails these checks.
    one_off = jax.tree.map(lambda g: g.at[3].multiply(1.001), r["per_ex"])
    with pytest.raises(AssertionError):
        assert_trees_close(one_off, r["oracle"], rtol=1e-12)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(
            r["norms"].at[3].multiply(1.001), explicit_norms(r["oracle"]), rtol=1e-12
        )
    wrong_clip = explicit_clipped(r["oracle"], r["clip"] * 1.001)
    with pytest.raises(AssertionError):
        assert_trees_close(r["clipped"], wrong_clip, rtol=1e-12)


@pytest.mark.parametrize(
    "rule",
    [rules.feedback_alignment(), rules.direct_feedback_alignment()],
    ids=["fa", "dfa"],
)
def test_other_rules_per_example_updates(seed, rule):
    """A δ rule's per-example updates are its updates on one example alone, and
    their sum is its update on the batch (reduction="sum")."""
    net, params, x, y = make_case(seed, SIZES, "tanh", "mse-identity", "sum", batch=6)
    state = numpy_rule_state(rule, net, params, seed)

    def everything(params, state):
        alone = jax.vmap(
            lambda x_i, y_i: rule.value_and_grads(
                net, params, state, x_i[None], y_i[None]
            )[1]
        )(x, y)
        return (
            jp.per_example_grads(net, params, x, y, rule=rule, state=state),
            jp.per_example_grad_norms(net, params, x, y, rule=rule, state=state),
            alone,
            rule.value_and_grads(net, params, state, x, y)[1],
        )

    per_ex, norms, alone, batch = jax.jit(everything)(params, state)
    assert_trees_close(per_ex, alone, rtol=1e-12)
    assert_trees_close(jax.tree.map(lambda g: jnp.sum(g, 0), per_ex), batch, 1e-12)
    np.testing.assert_allclose(norms, explicit_norms(alone), rtol=1e-12)
    assert not np.allclose(norms, jp.per_example_grad_norms(net, params, x, y))


def test_norms_and_clipping_never_form_per_example_gradients():
    """A wide layer: batch·n_{l-1}·n_l numbers (31 MB here) never appear in the
    compiled programs of the norms and the clipped sum, and their scratch
    memory stays far below that; the per-example gradients, which must form
    them, are the positive control of both checks."""
    batch, sizes = 64, (16, 300, 200, 3)
    net = jp.MLP(sizes, "tanh", "identity", "mse", "mean")
    params = tuple(
        jp.Layer(jnp.zeros((i, o)), jnp.zeros(o)) for i, o in itertools.pairwise(sizes)
    )
    x, y = jnp.zeros((batch, 16)), jnp.zeros((batch, 3))
    outer = batch * 300 * 200 * 8  # float64 bytes of the widest layer's g_i

    def compiled(fn):
        return jax.jit(fn).lower(params, x, y).compile()

    programs = {
        "norms": compiled(lambda p, x, y: jp.per_example_grad_norms(net, p, x, y)),
        "clipped": compiled(lambda p, x, y: jp.clipped_grads(net, p, x, y, 1.0)),
        "grads": compiled(lambda p, x, y: jp.per_example_grads(net, p, x, y)),
    }
    shape = f"f64[{batch},300,200]"
    for name in ("norms", "clipped"):
        program = programs[name]
        assert shape not in program.as_text(), name
        memory = program.memory_analysis()
        assert memory.temp_size_in_bytes < outer / 20, (name, memory)
        assert memory.output_size_in_bytes < outer / 20, (name, memory)
    grads = programs["grads"]
    assert shape in grads.as_text()
    assert grads.memory_analysis().output_size_in_bytes > outer


def test_refused_rules_and_arguments(seed):
    net, params, x, y = make_case(seed, SIZES, "tanh", "mse-identity", "sum")
    with pytest.raises(ValueError, match="rule has no projection"):
        jp.per_example_grads(net, params, x, y, rule=rules.autodiff())
    user = rules.Rule(rules.autodiff().init, rules.autodiff().value_and_grads)
    with pytest.raises(ValueError, match="rule has no projection"):
        jp.per_example_grad_norms(net, params, x, y, rule=user)
    with pytest.raises(ValueError, match="state is required"):
        jp.clipped_grads(net, params, x, y, 1.0, rule=rules.feedback_alignment())
    with pytest.raises(ValueError, match="clip_norm must be positive"):
        jp.clipped_grads(net, params, x, y, -1.0)
    with pytest.raises(TypeError, match="clip_norm must be"):
        jp.clipped_grads(net, params, x, y, np.ones(3))
    with pytest.raises(ValueError, match="x must have shape"):
        jp.per_example_grads(net, params, x[:, :1], y)


# ------------------------------------------------------------------- DP-SGD
def test_dp_sgd_without_noise_or_clipping_is_its_base(seed):
    """σ = 0 and C far above every norm: the base rule's updates (backprop with
    both reductions, feedback alignment), and the step counter advances."""
    cases = [
        (*make_case(seed, SIZES, "tanh", "softmax-labels", r, batch=6), base)
        for r, base in (
            ("sum", rules.backprop()),
            ("mean", rules.backprop()),
            ("mean", rules.feedback_alignment()),
        )
    ]
    states = [
        numpy_rule_state(base, net, params, seed) for net, params, _, _, base in cases
    ]

    def everything(states):
        out = []
        for (net, params, x, y, base), state in zip(cases, states, strict=True):
            dp = rules.dp_sgd(1e30, 0.0, base=base)
            dp_state = dp.init(jax.random.key(0), net, params)._replace(base=state)
            out.append(
                (
                    dp.value_and_grads(net, params, dp_state, x, y),
                    base.value_and_grads(net, params, state, x, y),
                )
            )
        return out

    for (loss, grads, state), (ref_loss, ref, _) in jax.jit(everything)(states):
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-14)
        assert_trees_close(grads, ref, rtol=1e-12)
        assert int(state.count) == 1


def noise_case(seed):
    """A net of 1323 parameters (sum reduction) and a dp_sgd state with σC = 1."""
    net, params, x, y = make_case(seed, (10, 40, 20, 3), "tanh", "mse-identity")
    rule = rules.dp_sgd(0.5, 2.0)
    return net, params, x, y, rule, rule.init(jax.random.key(seed), net, params)


def test_dp_sgd_noise_has_std_sigma_c(seed):
    """noise = dp_sgd's update − the clipped sum, over 4 steps: 5292 draws whose
    mean and standard deviation are 0 and σC = 1 (sampling errors ≈ 0.014 and
    0.01; the bounds are 3.5 of those), each step and parameter its own."""
    net, params, x, y, rule, state = noise_case(seed)

    def noise(state):
        _, grads, state = rule.value_and_grads(net, params, state, x, y)
        clipped = jp.clipped_grads(net, params, x, y, 0.5)
        diff = jax.tree.map(lambda g, c: (g - c).ravel(), grads, clipped)
        return state, jnp.concatenate(jax.tree.leaves(diff))

    noise_steps = jax.jit(lambda s: jax.lax.scan(lambda s, _: noise(s), s, None, 4))
    last, draws = noise_steps(state)
    assert draws.shape == (4, 1323) and int(last.count) == 4
    assert abs(float(jnp.mean(draws))) < 0.05
    assert abs(float(jnp.std(draws)) - 1.0) < 0.035
    corr = np.corrcoef(np.asarray(draws))  # the steps' draws are independent
    assert np.max(np.abs(corr - np.eye(4))) < 0.1
    # Reproducible per seed: the same state draws the same noise, another
    # key other noise.
    assert np.asarray(noise_steps(state)[1]).tobytes() == np.asarray(draws).tobytes()
    other = state._replace(key=jax.random.fold_in(state.key, 1))
    assert not np.allclose(noise_steps(other)[1], draws)


def test_poisson_sampling_masks_and_normalizes(seed):
    """Each example kept with probability q; the kept clipped sum (+ noise)
    divided by q·B for reduction="mean", as Abadi et al. normalize."""
    net, params, x, y = make_case(seed, SIZES, "tanh", "mse-identity", "mean", 400)
    q = 0.25
    rule = rules.dp_sgd(1e30, 0.0, sampling="poisson", sampling_rate=q)
    state = rule.init(jax.random.key(seed), net, params)

    def everything(state):
        _, grads, _ = rule.value_and_grads(net, params, state, x, y)
        # The mask as the rule documents it: uniform(fold_in(fold_in(key, t), 0)).
        step_key = jax.random.fold_in(jax.random.fold_in(state.key, state.count), 0)
        keep = jax.random.uniform(step_key, (400,), x.dtype) < q
        per_ex = jp.per_example_grads(net, params, x, y)
        expected = jax.tree.map(
            lambda g: jnp.tensordot(keep.astype(g.dtype), g, 1) / (q * 400), per_ex
        )
        return grads, expected, keep

    grads, expected, keep = jax.jit(everything)(state)
    assert_trees_close(grads, expected, rtol=1e-12)
    assert 0.2 < float(jnp.mean(keep)) < 0.3  # 100 ± 8.7 of 400 expected


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_dp_sgd_step_runs_last_equals_each_run():
    """The runs-last batching rule (``_network.over_runs`` under vmap; the rule state's
    keys gain a trailing runs axis) gives each run's own plain step: same
    noise, same Poisson mask, same Kolen-Pollack update."""
    x, y = jp.data.xor("float64")
    tiny = jp.MLP((2, 3, 1), "sigmoid", "sigmoid", "mse", "sum")
    assert jaxprop._network.runs_last_pays(tiny, 4)
    dp = rules.dp_sgd(
        1.0, 0.3, base=rules.kolen_pollack(0.1, 0.01), sampling="poisson",
        sampling_rate=0.5,
    )  # fmt: skip
    cases = [make_case(s, tiny.sizes, "sigmoid", "mse-sigmoid") for s in range(3)]
    params = jax.tree.map(lambda *l: jnp.stack(l), *[c[1] for c in cases])
    states = jax.tree.map(
        lambda *l: jnp.stack(l),
        *[numpy_rule_state(dp, tiny, c[1], s) for s, c in enumerate(cases)],
    )

    def both(params, states):
        step = with_runs_last(tiny, functools.partial(dp.value_and_grads, tiny), 2)
        over = jax.vmap(step, in_axes=(0, 0, None, None))
        alone = [
            dp.value_and_grads(tiny, *jax.tree.map(lambda l: l[i], (params, states)),
                               x, y)
            for i in range(3)
        ]  # fmt: skip
        return over(params, states, x, y), alone

    over, alone = jax.jit(both)(params, states)
    pick = lambda r: (r[0], r[1], r[2].base)  # noqa: E731 (keys are not floats)
    for i in range(3):
        mine = jax.tree.map(lambda l: l[i], pick(over))
        assert_trees_close(mine, pick(alone[i]), rtol=1e-12)
        assert int(over[2].count[i]) == int(alone[i][2].count) == 1


@pytest.mark.slow  # two trainer programs: 8 s; the step is checked above
@pytest.mark.filterwarnings("ignore:Kolen-Pollack with")  # not its pairing
def test_dp_sgd_trains_over_seeds_as_each_seed_alone():
    """Tiny XOR nets vmapped over seeds take the runs-last path, where the rule
    state's keys gain a trailing runs axis; strategy="sequential" runs each
    seed alone with a plain step. Both give the same runs, with Poisson
    sampling and a Kolen-Pollack base (whose B learns from the private
    updates)."""
    x, y = jp.data.xor("float64")
    keys = jax.random.split(jax.random.key(5), 4)
    tiny = jp.MLP((2, 3, 1), "sigmoid", "sigmoid", "mse", "sum")
    assert jaxprop._network.runs_last_pays(tiny, 4)
    dp = rules.dp_sgd(
        1.0, 0.3, base=rules.kolen_pollack(0.1, 0.01), sampling="poisson",
        sampling_rate=0.5,
    )  # fmt: skip
    kw = dict(rule=dp, log_every=10, dtype="float64", scheme="glorot")
    many = jp.train_seeds(tiny, keys, x, y, optax.sgd(0.5), 100, strategy="vmap", **kw)
    alone = jp.train_seeds(
        tiny, keys, x, y, optax.sgd(0.5), 100, strategy="sequential", **kw
    )
    pick = lambda r: (r.params, r.losses, r.rule_state.base)  # noqa: E731
    assert_trees_close(pick(many), pick(alone), rtol=1e-10)
    assert np.all(np.isfinite(many.losses)) and np.all(many.rule_state.count == 100)
    # Seeds draw different noise.
    assert not np.allclose(many.params[0].w[0], many.params[0].w[1])


@pytest.mark.slow
def test_dp_sgd_over_seeds_and_a_grid_on_vmaps_path():
    """A wider net takes vmap's path; a grid sweeps clip_norm through the
    rule state; the grid point with the rule's own clip_norm equals a plain
    run of that seed."""
    xm, labels = jp.data.two_moons(jax.random.key(0), 32)
    ym = np.asarray(labels, "float64")[:, None]
    keys = jax.random.split(jax.random.key(5), 2)
    net = jp.MLP((2, 16, 1), "tanh", "sigmoid", "mse", "mean")
    dp = rules.dp_sgd(0.5, 1.0, sampling="poisson", sampling_rate=0.5)
    kw = dict(rule=dp, log_every=10, dtype="float64")
    grid = {"clip_norm": np.array([0.5, 2.0])}
    many = jp.train_seeds(net, keys, xm, ym, optax.sgd(0.1), 20, hparams=grid, **kw)
    one = jp.train_seeds(net, keys[1:2], xm, ym, optax.sgd(0.1), 20, **kw)
    assert_trees_close(
        jax.tree.map(lambda l: l[0, 1:2], many.params), one.params, rtol=1e-10
    )
    np.testing.assert_array_equal(many.rule_state.clip_norm, [[0.5] * 2, [2.0] * 2])
    assert np.all(np.isfinite(many.losses))
    assert not np.allclose(many.params[0].w[0, 1], many.params[0].w[1, 1])


def test_dp_sgd_state_saves_and_loads(tmp_path, seed):
    net, params, *_ = make_case(seed, SIZES, "tanh", "mse-identity")
    rule = rules.dp_sgd(1.0, 1.0, base=rules.feedback_alignment())
    state = numpy_rule_state(rule, net, params, seed)
    jp.save(tmp_path / "state.npz", state)
    back = jp.load(tmp_path / "state.npz", like=state)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    np.testing.assert_array_equal(
        jax.random.key_data(back.key), jax.random.key_data(state.key)
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(clip_norm=0.0, noise_multiplier=1.0), ValueError, "clip_norm must be"),
        (dict(clip_norm="1", noise_multiplier=1.0), TypeError, "clip_norm must be"),
        (dict(clip_norm=1.0, noise_multiplier=-1), ValueError, "noise_multiplier"),
        (dict(clip_norm=1.0, noise_multiplier=math.nan), ValueError, "noise_mult"),
        (dict(clip_norm=1, noise_multiplier=1, base="fa"), TypeError, "base must"),
        (
            dict(clip_norm=1, noise_multiplier=1, base=rules.autodiff()),
            ValueError,
            "base has no projection",
        ),
        (dict(clip_norm=1, noise_multiplier=1, sampling="u"), ValueError, "sampling"),
        (
            dict(clip_norm=1, noise_multiplier=1, sampling="poisson"),
            ValueError,
            "needs sampling_rate",
        ),
        (
            dict(clip_norm=1, noise_multiplier=1, sampling_rate=0.1),
            ValueError,
            "sampling_rate goes with",
        ),
        (
            dict(clip_norm=1, noise_multiplier=1, sampling="poisson", sampling_rate=2),
            ValueError,
            r"sampling_rate must be in \(0, 1\]",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_dp_sgd_bad_arguments_raise_before_compiling(kwargs, error, message):
    with pytest.raises(error, match=message):
        rules.dp_sgd(**kwargs)


def test_dp_sgd_rules_are_cached_and_nested_refused():
    assert rules.dp_sgd(1.0, 2.0) is rules.dp_sgd(1, 2.0, base=rules.backprop())
    assert rules.dp_sgd(1.0, 2.0) is not rules.dp_sgd(1.0, 3.0)
    with pytest.raises(ValueError, match="base has no projection"):
        rules.dp_sgd(1.0, 1.0, base=rules.dp_sgd(1.0, 1.0))


# ------------------------------------------------------------- accounting
def test_dp_epsilon_matches_dp_accounting_and_known_values():
    import dp_accounting
    from dp_accounting import rdp

    accountant = rdp.RdpAccountant()
    accountant.compose(
        dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(1.1)),
        3000,
    )
    assert jp.dp_epsilon(1.1, 0.02, 3000, 1e-6) == accountant.get_epsilon(1e-6)
    # Abadi et al. 2016's MNIST setting (q = 0.01, σ = 4, 10^4 steps, δ = 1e-5):
    # the paper's moments accountant reports about 1.26; dp-accounting 0.6's
    # RDP accountant (finer orders) gives 1.0355.
    assert jp.dp_epsilon(4.0, 0.01, 10_000, 1e-5) == pytest.approx(1.0355, abs=2e-3)
    eps = [jp.dp_epsilon(s, 0.01, 1000, 1e-5) for s in (0.8, 1.0, 2.0)]
    assert eps[0] > eps[1] > eps[2] > 0  # more noise, less privacy loss
    assert jp.dp_epsilon(1.0, 0.01, 2000, 1e-5) > eps[1]  # more steps, more loss
    assert jp.dp_epsilon(1.0, 0.01, 0, 1e-5) == 0.0
    assert jp.dp_epsilon(0.0, 0.01, 10, 1e-5) == math.inf


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((1.0, 0.0, 10, 1e-5), ValueError, "sampling_rate"),
        ((1.0, 1.5, 10, 1e-5), ValueError, "sampling_rate"),
        ((-1.0, 0.1, 10, 1e-5), ValueError, "noise_multiplier"),
        ((1.0, 0.1, 2.5, 1e-5), TypeError, "steps must be an integer ≥ 0"),
        ((1.0, 0.1, -1, 1e-5), ValueError, "steps must be"),
        ((1.0, 0.1, 10, 1.0), ValueError, "delta must be in"),
    ],
)
def test_dp_epsilon_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        jp.dp_epsilon(*args)


def _without_dp_accounting(monkeypatch):
    """Imports of dp_accounting fail from here on (as where it is not installed)."""
    import builtins

    real_import = builtins.__import__

    def no_dp_accounting(name, *args, **kwargs):
        if name.startswith("dp_accounting"):
            raise ImportError("no dp_accounting")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dp_accounting)


def test_dp_epsilon_without_the_package(monkeypatch):
    _without_dp_accounting(monkeypatch)
    with pytest.raises(
        ImportError,
        match=r"pip install dp-accounting, or pip install -e '\.\[privacy\]'",
    ):
        jp.dp_epsilon(1.0, 0.1, 10, 1e-5)


@pytest.mark.parametrize(
    "target, q, steps, delta",
    [(2.0, 0.1, 50, 1e-5), (1.0, 0.02, 500, 1e-6), (8.0, 1.0, 100, 1e-5),
     (0.5, 1.0, 1, 1e-6)],
)  # fmt: skip
def test_dp_noise_multiplier_reaches_the_target_and_no_less_noise_does(
    target, q, steps, delta
):
    """σ's ε is at most the target and within 1% of it; a σ 1% smaller has an
    ε above the target, so the check below would catch a σ found too small."""
    sigma = jp.dp_noise_multiplier(target, q, steps, delta)
    assert isinstance(sigma, float) and sigma > 0
    eps = jp.dp_epsilon(sigma, q, steps, delta)
    assert 0.99 * target <= eps <= target
    assert jp.dp_epsilon(0.99 * sigma, q, steps, delta) > target


def test_dp_noise_multiplier_is_monotonic_and_leaves_the_logger_as_it_was():
    """More ε allowed, less noise; more steps or a smaller δ, more noise (q = 1:
    milliseconds each). The search's log filter is removed afterwards."""
    import logging

    absl = logging.getLogger("absl")
    filters = list(absl.filters)
    sigmas = [jp.dp_noise_multiplier(e, 1.0, 10, 1e-5) for e in (0.5, 1, 2, 4, 8)]
    assert all(a > b for a, b in itertools.pairwise(sigmas)), sigmas
    by_steps = [jp.dp_noise_multiplier(2.0, 1.0, t, 1e-5) for t in (1, 10, 100)]
    assert by_steps[0] < by_steps[1] < by_steps[2]
    assert jp.dp_noise_multiplier(2.0, 1.0, 10, 1e-8) > sigmas[2]
    assert absl.filters == filters


def test_dp_noise_multiplier_of_no_steps_is_zero():
    """With 0 steps nothing is released: ε = 0 for any σ, the smallest is 0."""
    assert jp.dp_noise_multiplier(1.0, 0.1, 0, 1e-5) == 0.0
    assert jp.dp_epsilon(0.0, 0.1, 0, 1e-5) == 0.0


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((0.0, 0.1, 10, 1e-5), ValueError, "target_epsilon must be a positive"),
        ((-1.0, 0.1, 10, 1e-5), ValueError, "target_epsilon must be a positive"),
        ((math.inf, 0.1, 10, 1e-5), ValueError, "target_epsilon must be finite"),
        (("2", 0.1, 10, 1e-5), TypeError, "target_epsilon must be a number"),
        ((True, 0.1, 10, 1e-5), TypeError, "target_epsilon must be a number"),
        ((1.0, 0.0, 10, 1e-5), ValueError, r"sampling_rate must be in \(0, 1\]"),
        ((1.0, 1.5, 10, 1e-5), ValueError, r"sampling_rate must be in \(0, 1\]"),
        ((1.0, 0.1, 2.5, 1e-5), TypeError, "steps must be an integer ≥ 0"),
        ((1.0, 0.1, -1, 1e-5), ValueError, "steps must be an integer ≥ 0"),
        ((1.0, 0.1, 10, 1.0), ValueError, r"delta must be in \(0, 1\)"),
        ((1.0, 0.1, 10, 0.0), ValueError, "delta must be a positive number"),
    ],
)
def test_dp_noise_multiplier_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        jp.dp_noise_multiplier(*args)


def test_dp_noise_multiplier_unreachable_target_and_no_package(monkeypatch):
    """A search that finds no bracket (no σ up to 2^30 of dp-accounting's
    search reaches the target) is a ValueError naming target_epsilon; without
    dp-accounting, the ImportError of dp_epsilon."""

    import dp_accounting

    def no_bracket(*args, **kwargs):
        raise dp_accounting.mechanism_calibration.NoBracketIntervalFoundError()

    with monkeypatch.context() as m:
        m.setattr(dp_accounting, "calibrate_dp_mechanism", no_bracket)
        with pytest.raises(ValueError, match=r"^target_epsilon: no noise multiplier"):
            jp.dp_noise_multiplier(1e-3, 0.1, 10, 1e-5)
    _without_dp_accounting(monkeypatch)
    with pytest.raises(ImportError, match=r"jp.dp_noise_multiplier needs the dp-acc"):
        jp.dp_noise_multiplier(1.0, 0.1, 10, 1e-5)
