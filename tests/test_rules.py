"""Credit-assignment rules: each against its definition, under vmap, through
checkpoints, and a user's own rule built from the public blocks."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop import rules
from tests.helpers import make_case

ALL = {
    "backprop": rules.backprop(),
    "autodiff": rules.autodiff(),
    "fa": rules.feedback_alignment(),
    "dfa": rules.direct_feedback_alignment(),
    "sign": rules.sign_symmetry(),
    "kp": rules.kolen_pollack(0.1, 0.01),
}
XOR_NET = jp.MLP((2, 3, 1), "sigmoid", "sigmoid", "mse", "sum")


def close(a, b, rtol=1e-12):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=rtol * 1e-3)


def test_backprop_and_autodiff_rules_are_the_references(seed):
    net, params, x, y = make_case(seed, (3, 5, 4, 2), "tanh", "softmax-labels")
    value, grads = net.value_and_backprop(params, x, y)
    for name in ("backprop", "autodiff"):
        rule = ALL[name]
        assert rule.init(jax.random.key(0), net, params) == ()
        loss, g, state = jax.jit(rule.value_and_grads, static_argnums=0)(
            net, params, (), x, y
        )
        close(loss, value)
        close(g, grads)
        close(g, jax.grad(net.loss)(params, x, y))
        assert state == ()


def test_feedback_alignment_with_b_equal_to_w_is_backprop(seed, key):
    net, params, x, y = make_case(seed, (3, 6, 5, 2), "relu", "mse-identity")
    state = rules.FeedbackState(tuple(p.w for p in params[1:]))
    _, grads, _ = rules.feedback_alignment().value_and_grads(net, params, state, x, y)
    jax.tree.map(np.testing.assert_array_equal, grads, net.backprop(params, x, y))
    # Its own state: B^l of W^l's shape, U[-1/sqrt(n_l), 1/sqrt(n_l)].
    drawn = rules.feedback_alignment().init(key, net, params).feedback
    assert [b.shape for b in drawn] == [(6, 5), (5, 2)]
    assert all(np.abs(b).max() <= 1 / np.sqrt(b.shape[1]) for b in drawn)
    assert all(b.dtype == params[0].w.dtype for b in drawn)


def test_dfa_on_one_hidden_layer_with_b_from_w_is_backprop(seed, key):
    net, params, x, y = make_case(seed, (3, 6, 2), "tanh", "mse-sigmoid")
    state = rules.FeedbackState((params[1].w.T,))  # B^1 = (W^2)ᵀ: (n_L, n_1)
    dfa = rules.direct_feedback_alignment()
    _, grads, _ = dfa.value_and_grads(net, params, state, x, y)
    # The same sums; the product δ^L B^1 is laid out transposed: a few ulps,
    # more in an entry where the sum cancels (3e-14 at XLA's -O0).
    close(grads, net.backprop(params, x, y), rtol=1e-12)
    deep = jp.MLP((3, 6, 5, 4, 2), "tanh", "identity", "mse")
    fb = dfa.init(key, deep, deep.init(key, dtype="float64")).feedback
    assert [b.shape for b in fb] == [(2, 6), (2, 5), (2, 4)]
    assert all(np.abs(b).max() <= 1 / np.sqrt(2) for b in fb)


def test_sign_symmetry_against_a_hand_computed_case():
    net = jp.MLP((2, 2, 1), "identity", "identity", "mse", "sum")
    w1, w2 = np.array([[1.0, -2.0], [0.5, 3.0]]), np.array([[-4.0], [0.25]])
    params = (
        jp.Layer(jnp.asarray(w1), jnp.zeros(2)),
        jp.Layer(jnp.asarray(w2), jnp.zeros(1)),
    )
    x, y = np.array([[1.0, 2.0]]), np.array([[0.5]])
    h = x @ w1  # identity activations: a^1 = z^1
    e = h @ w2 - y  # δ^2 for ½(ŷ − y)²
    d1 = e @ np.sign(w2).T  # sign(W^2) = [[-1], [1]]
    _, grads, _ = rules.sign_symmetry().value_and_grads(net, params, (), x, y)
    np.testing.assert_allclose(grads[1].w, h.T @ e, rtol=1e-15)
    np.testing.assert_allclose(grads[0].w, x.T @ d1, rtol=1e-15)
    np.testing.assert_allclose(grads[0].b, d1[0], rtol=1e-15)
    assert not np.allclose(grads[0].w, net.backprop(params, x, y)[0].w)


def test_kolen_pollack_closes_the_gap_as_one_minus_decay_to_the_t(key):
    """Akrout et al. 2019: with SGD + weight decay on W, W − B = (1 − λ)^t (W₀ − B₀)."""
    eta, decay, steps = 0.1, 0.05, 40
    rule = rules.kolen_pollack(eta, decay)
    opt = rules.kolen_pollack_sgd(eta, decay)
    x, y = jp.data.two_moons(key, 64)
    net = jp.MLP((2, 8, 8, 1), "tanh", "sigmoid", "mse")
    params = net.init(key, dtype="float64")
    state0 = rule.init(jax.random.key(3), net, params)
    result = jp.train(net, params, x, y[:, None].astype("float64"), opt, steps,
                      rule=rule, rule_state=state0)  # fmt: skip
    for l in (1, 2):
        gap0 = params[l].w - state0.feedback[l - 1]
        gap = result.params[l].w - result.rule_state.feedback[l - 1]
        np.testing.assert_allclose(gap, (1 - decay) ** steps * gap0, rtol=1e-10)
    assert float(result.rule_state.learning_rate) == eta


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_kolen_pollack_pairs_over_a_grid_of_seeds_and_rates():
    """Through train_seeds, each grid point's W and B take the same step when
    the paired optimizer and the rule share the grid's numbers."""
    decay, steps = 0.05, 30
    x, y = jp.data.two_moons(jax.random.key(2), 32)
    y = y.astype("float64")
    net = jp.MLP((2, 6, 6, 1), "tanh", "sigmoid", "mse")
    keys = jax.random.split(jax.random.key(7), 3)
    lrs, decays = np.array([0.05, 0.2]), np.array([decay, 2 * decay])
    grid = {"optimizer.learning_rate": lrs, "rule.learning_rate": lrs,
            "optimizer.decay": decays, "rule.decay": decays}  # fmt: skip
    kw = dict(rule=rules.kolen_pollack(0.1, decay), hparams=grid, dtype="float64")
    trainer = jp.Trainer(net, keys, x, y[:, None], rules.kolen_pollack_sgd(0.1, decay),
                         steps, log_every=10, **kw)  # fmt: skip
    start = trainer.runs(trainer.init())
    result = jp.train_seeds(net, keys, x, y[:, None],
                            rules.kolen_pollack_sgd(0.1, decay), steps,
                            log_every=10, **kw)  # fmt: skip
    shrink = ((1 - decays) ** steps)[:, None, None, None]
    for l in (1, 2):
        gap0 = start.params[l].w - start.rule_state.feedback[l - 1]
        gap = result.params[l].w - result.rule_state.feedback[l - 1]
        np.testing.assert_allclose(gap, shrink * gap0, rtol=1e-10)


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_kolen_pollack_warns_without_its_optimizer(moons):
    """W − B shrinks as (1 − decay)^t only with kolen_pollack_sgd; another
    optimizer (Adam, plain SGD) gets a warning, and with plain SGD the gap
    does not close (B does not converge to W)."""
    x, y, _ = moons
    net = jp.MLP((2, 6, 6, 1), "tanh", "sigmoid", "mse")
    keys = jax.random.split(jax.random.key(1), 2)
    rule = rules.kolen_pollack(0.1, 0.05)
    for opt in (optax.adam(0.1), optax.sgd(0.1)):
        with pytest.warns(UserWarning, match=r"W − B no longer shrinks as"):
            jp.Trainer(net, keys, x, y, opt, 10, rule=rule)
    jp.Trainer(net, keys, x, y, rules.kolen_pollack_sgd(0.1, 0.05), 10, rule=rule)
    with pytest.warns(UserWarning, match=r"kolen_pollack_sgd"):
        plain = jp.train_seeds(net, keys, x, y, optax.sgd(0.1), 40, rule=rule,
                               dtype="float64")  # fmt: skip
    paired = jp.train_seeds(net, keys, x, y, rules.kolen_pollack_sgd(0.1, 0.05),
                            40, rule=rule, dtype="float64")  # fmt: skip

    def gap(result):
        return np.linalg.norm(result.params[2].w - result.rule_state.feedback[1])

    assert gap(paired) < 0.2 * gap(plain)


def test_kolen_pollack_sgd_checks_its_numbers():
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\); got 1\.0"):
        rules.kolen_pollack_sgd(0.1, 1.0)
    with pytest.raises(TypeError, match="learning_rate must be a number"):
        rules.kolen_pollack_sgd("fast", 0.1)
    assert rules.kolen_pollack_sgd(0.1, 0.01) is rules.kolen_pollack_sgd(0.1, 0.01)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow)
        if n in ("autodiff", "sign", "backprop", "dfa", "fa")
        else n
        for n in ALL
    ],  # autodiff takes no runs-last path; sign's projection is backprop's shape;
    # the default suite keeps Kolen-Pollack, whose feedback matrices (fa's
    # state) also learn
)
def test_every_rule_over_seeds_equals_each_seed_alone(name):
    """Tiny nets take the runs-last path; one seed alone takes a plain step."""
    rule = ALL[name]
    x, y = jp.data.xor("float64")
    keys = jax.random.split(jax.random.key(5), 6)
    kw = dict(rule=rule, log_every=10, dtype="float64", scheme="glorot")
    opt = rules.kolen_pollack_sgd(0.1, 0.01) if name == "kp" else optax.sgd(0.5)
    many = jp.train_seeds(XOR_NET, keys, x, y, opt, 200, **kw)
    one = jp.train_seeds(XOR_NET, keys[4:5], x, y, opt, 200, **kw)
    close(jax.tree.map(lambda l: l[4:5], many), one, rtol=1e-10)
    assert np.all(np.isfinite(many.losses))


@pytest.mark.slow  # several seconds (subprocesses or compiles): .ci/run runs it
@pytest.mark.filterwarnings("ignore:Kolen-Pollack with")  # not its pairing
def test_rules_keep_the_seeds_init_and_data_keys(moons):
    """The rule state's key is folded from the run's key: init params and data
    order are those of backprop runs, and grad='manual' is rule=backprop()."""
    x, y, _ = moons
    keys = jax.random.split(jax.random.key(1), 4)
    common = dict(batch_size=16, log_every=5, dtype="float64")
    net = jp.MLP((2, 6, 1), "tanh", "sigmoid", "mse")
    some = (rules.backprop(), rules.kolen_pollack(0.1, 0))
    inits = [
        jp.Trainer(net, keys, x, y, optax.sgd(0.1), 10, rule=r, **common).init()
        for r in some
    ]
    for state in inits[1:]:
        assert state.runs.params[0].w.tobytes() == inits[0].runs.params[0].w.tobytes()
        assert (
            jax.random.key_data(state.runs.key).tobytes()
            == jax.random.key_data(inits[0].runs.key).tobytes()
        )
    a = jp.train_seeds(net, keys, x, y, optax.sgd(0.1), 50, grad="manual", **common)
    b = jp.train_seeds(
        net, keys, x, y, optax.sgd(0.1), 50, rule=rules.backprop(), **common
    )
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(u).tobytes() == np.asarray(v).tobytes()


@pytest.fixture
def moons():
    x, y = jp.data.two_moons(jax.random.key(0), 64)
    return np.asarray(x, "float64"), np.asarray(y, "float64")[:, None], None


# Slow (11 s): a rule's state is one more part of the run state whose
# checkpoints test_trainer's save/load/resume tests check bit for bit.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Kolen-Pollack with")  # not its pairing
@pytest.mark.parametrize("name", ["kp", "kfac"])  # states that change every step
def test_rule_state_survives_a_checkpoint_bit_for_bit(tmp_path, moons, name):
    x, y, _ = moons
    net = jp.MLP((2, 6, 5, 1), "tanh", "sigmoid", "mse")
    keys = jax.random.split(jax.random.key(2), 3)
    rule = rules.kfac(1e-2, ema=0.9) if name == "kfac" else ALL[name]
    trainer = jp.Trainer(net, keys, x, y, optax.adam(0.01), 60, rule=rule,
                         batch_size=16, log_every=10, dtype="float64")  # fmt: skip
    straight = trainer.result(trainer.advance(trainer.init(), 60))
    trainer.save(tmp_path / "ckpt.npz", trainer.advance(trainer.init(), 30))
    resumed = trainer.result(trainer.advance(trainer.load(tmp_path / "ckpt.npz"), 30))

    def data(leaf):  # a key's bits (K-FAC's state holds the run's key)
        typed = jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
        return jax.random.key_data(leaf) if typed else leaf

    straight, resumed = jax.tree.map(data, (straight, resumed))
    for u, v in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        assert np.asarray(u).tobytes() == np.asarray(v).tobytes()
    assert jax.tree.leaves(straight.rule_state)  # the state is really there


def test_alignment_one_definition_for_every_rule(seed, key):
    net, params, x, y = make_case(seed, (3, 6, 5, 2), "tanh", "mse-identity", batch=16)
    angles = jp.alignment(net, rules.backprop(), params, (), x, y)
    assert angles.grad.shape == angles.delta.shape == angles.feedback.shape == (3,)
    np.testing.assert_allclose(angles.grad, 0, atol=1e-5)
    np.testing.assert_allclose(angles.delta, 0, atol=1e-5)
    assert np.all(np.isnan(angles.feedback))
    fa = rules.feedback_alignment()
    state = fa.init(key, net, params)
    a = jp.alignment(net, fa, params, state, x, y)
    assert a.grad[-1] < 1e-5 and a.delta[-1] < 1e-5  # the output layer's true δ^L
    assert np.all((a.grad[:-1] > 1) & (a.grad[:-1] < 180))
    assert np.isnan(a.feedback[0]) and np.all(a.feedback[1:] > 1)
    # B = W: every angle is zero.
    same = rules.FeedbackState(tuple(p.w for p in params[1:]))
    np.testing.assert_allclose(
        jp.alignment(net, fa, params, same, x, y).feedback[1:], 0, atol=1e-5
    )
    dfa = rules.direct_feedback_alignment()
    d = jp.alignment(net, dfa, params, dfa.init(key, net, params), x, y)
    assert np.all(np.isnan(d.feedback)) and np.all(np.isfinite(d.delta))


def test_alignment_curves_from_the_trainer(moons):
    x, y, _ = moons
    net = jp.MLP((2, 8, 8, 1), "tanh", "sigmoid", "mse")
    keys = jax.random.split(jax.random.key(4), 4)
    kp = rules.kolen_pollack_sgd(0.5, 0.01)
    result = jp.train_seeds(net, keys, x, y, kp, 400, log_every=10,
                            rule=rules.kolen_pollack(0.5, 0.01), alignment_every=100,
                            dtype="float64")  # fmt: skip
    np.testing.assert_array_equal(result.alignment_steps[0], [100, 200, 300, 400])
    assert result.alignment.feedback.shape == (4, 3, 4)
    fb = np.asarray(result.alignment.feedback)
    # W − B shrinks as 0.99^t: B turns towards W.
    assert np.all(np.isnan(fb[:, 0])) and np.all(fb[:, 1:, -1] < fb[:, 1:, 0] / 2)


def drtp(scale=1.0):
    """Direct random target projection (Frenkel et al. 2021): the hidden layers
    get the target projected by fixed random B^l, δ^l = (y B^l) ⊙ σ'(z^l) —
    the README's example of a rule written by a user."""

    def init(key, net, params):
        keys = jax.random.split(key, net.n_layers - 1)
        return rules.FeedbackState(tuple(
            jax.random.uniform(k, (net.n_out, n), params[0].w.dtype, -scale, scale)
            for k, n in zip(keys, net.sizes[1:-1], strict=True)
        ))  # fmt: skip

    def value_and_grads(net, params, state, x, y):
        _, cache = rules.forward(net, params, x)
        loss, delta = rules.output_delta(net, cache, y)
        project = lambda l, _, __: rules.contract(y, state.feedback[l - 1], 1, 0)  # noqa: E731
        deltas = rules.delta_recursion(net, cache, delta, project)
        return loss, rules.weight_grads(cache, deltas), state

    return rules.Rule(init, value_and_grads)


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_a_users_rule_trains_over_seeds_unchanged(moons):
    x, labels, _ = moons
    y = np.eye(2)[labels[:, 0].astype(int)]  # one-hot targets, as DRTP projects
    rule = drtp()
    net = jp.MLP((2, 16, 2), "tanh", "sigmoid", "mse")
    keys = jax.random.split(jax.random.key(6), 8)
    result = jp.train_seeds(net, keys, x, y, optax.sgd(0.5), 500, rule=rule,
                            log_every=50, dtype="float64",
                            alignment_every=250)  # fmt: skip
    acc = jax.vmap(lambda p: jp.accuracy(net, p, x, y))(result.params)
    assert np.median(acc) > 0.8 and not result.diverged.any()
    assert np.all(np.isfinite(result.alignment.grad)) and np.all(
        np.isnan(result.alignment.delta)
    )
    # The tiny-network runs-last path with the same rule equals seeds alone.
    xor_x, xor_y = jp.data.xor("float64")
    tiny = jp.MLP((2, 4, 1), "tanh", "sigmoid", "mse", "sum")
    many = jp.train_seeds(
        tiny,
        keys,
        xor_x,
        xor_y,
        optax.sgd(0.3),
        100,
        rule=rule,
        dtype="float64",
        log_every=10,
    )
    one = jp.train_seeds(
        tiny,
        keys[3:4],
        xor_x,
        xor_y,
        optax.sgd(0.3),
        100,
        rule=rule,
        dtype="float64",
        log_every=10,
    )
    close(jax.tree.map(lambda l: l[3:4], many.params), one.params, rtol=1e-10)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: rules.feedback_alignment(-1.0),
            ValueError,
            "scale must be a positive",
        ),
        (lambda: rules.direct_feedback_alignment("big"), TypeError, "scale must be"),
        (
            lambda: rules.kolen_pollack(0.1, 1.5),
            ValueError,
            r"decay must be in \[0, 1\)",
        ),
        (lambda: rules.kolen_pollack(0.0, 0.1), ValueError, "learning_rate must be"),
    ],
    ids=["fa-negative-scale", "dfa-string-scale", "kp-decay", "kp-lr"],
)
def test_bad_rule_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_rule_use_is_refused_before_compiling(moons):
    x, y, _ = moons
    net = jp.MLP((2, 6, 1), "tanh", "sigmoid", "mse")
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(TypeError, match=r"rule must be a jp\.rules\.Rule"):
        jp.train_seeds(net, keys, x, y, optax.sgd(0.1), 10, rule="fa")
    with pytest.raises(ValueError, match="give grad or rule, not both"):
        jp.train_seeds(net, keys, x, y, optax.sgd(0.1), 10, grad="manual",
                       rule=rules.backprop())  # fmt: skip
    params = net.init(jax.random.key(0), dtype="float64")
    wrong = rules.FeedbackState((jnp.zeros((3, 1)),))
    with pytest.raises(ValueError, match="rule_state does not fit"):
        jp.train(net, params, x, y, optax.sgd(0.1), 10,
                 rule=rules.feedback_alignment(), rule_state=wrong)  # fmt: skip
    assert rules.feedback_alignment(0.5) is rules.feedback_alignment(0.5)  # cached


def test_rules_by_name_cover_the_issue_contract():
    assert set(rules.RULES) == {"backprop", "autodiff", "fa", "dfa", "sign", "kp"}
    for a, b in itertools.combinations(ALL.values(), 2):
        assert a is not b


def test_a_grid_reaches_the_rule_state(moons):
    """hparams names held by the rule's state (KP's learning_rate, decay) are set
    per grid point; a name both could hold is qualified, and both keys set both."""
    x, y, _ = moons
    net = jp.MLP((2, 6, 1), "tanh", "sigmoid", "mse")
    keys = jax.random.split(jax.random.key(3), 2)
    opt = rules.kolen_pollack_sgd(0.1, 0.01)
    lrs = np.array([0.1, 0.3])
    result = jp.train_seeds(
        net, keys, x, y, opt, 20, rule=rules.kolen_pollack(0.1, 0.01),
        hparams={"optimizer.learning_rate": lrs, "rule.learning_rate": lrs,
                 "rule.decay": [0.0, 0.02], "optimizer.decay": [0.0, 0.02]},
        log_every=10, dtype="float64",
    )  # fmt: skip
    np.testing.assert_array_equal(
        result.rule_state.learning_rate, [[0.1] * 2, [0.3] * 2]
    )
    np.testing.assert_array_equal(result.rule_state.decay, [[0.0] * 2, [0.02] * 2])
    np.testing.assert_array_equal(
        result.opt_state.hyperparams["learning_rate"], [[0.1] * 2, [0.3] * 2]
    )
    with pytest.raises(ValueError, match="neither the optimizer nor the rule"):
        jp.train_seeds(net, keys, x, y, opt, 20, hparams={"momentum": np.ones(2)})


def test_a_rule_state_that_does_not_fit_is_named(seed):
    """Called directly, a rule refuses a state of other shapes (which raised
    JAX's dot_general or an IndexError), naming the rule, as jp.alignment does."""
    net, params, x, y = make_case(seed, (3, 5, 4, 2), "tanh", "softmax-labels")
    fa, dfa = ALL["fa"], ALL["dfa"]
    fa_state = fa.init(jax.random.key(0), net, params)
    b2, b3 = fa_state.feedback
    cases = [
        (dfa, fa_state, "direct_feedback_alignment"),  # FA's state given to DFA
        (fa, rules.FeedbackState((b2,)), "feedback_alignment"),  # too few
        (fa, rules.FeedbackState((b2, b3.T)), "feedback_alignment"),  # transposed
        (ALL["kp"], fa_state, "kolen_pollack"),
        (ALL["backprop"], fa_state, "backprop"),
        (rules.dp_sgd(1.0, 1.0, base=fa), fa_state, r"dp_sgd\(feedback_alignment\)"),
    ]
    for rule, state, name in cases:
        says = rf"state does not fit the rule {name}: expected the shapes"
        with pytest.raises(ValueError, match=says):
            rule.value_and_grads(net, params, state, x, y)
        with pytest.raises(ValueError, match=says):
            jp.alignment(net, rule, params, state, x, y)


def test_a_projection_of_the_wrong_shape_is_named(seed):
    """A user projection whose output would broadcast against σ'(z^l) (a (batch,
    1) signal for a width-4 layer trained silently wrong) is refused when
    traced, naming the rule, the layer and both shapes; in the trainer too."""
    net, params, x, y = make_case(seed, (3, 5, 4, 2), "tanh", "softmax-labels")

    def project(params, state):
        return lambda l, delta_next, _: jnp.sum(delta_next, axis=1, keepdims=True)

    def project_3d(params, state):  # a trailing axis that is no runs axis
        return lambda l, delta_next, _: jnp.stack([delta_next @ params[l].w.T] * 3, -1)

    wide = rules.delta_rule(lambda key, net, params: (), project_3d)
    with pytest.raises(
        ValueError, match=r"project_3d: the projection gave shape \(\d+, 4, 3\)"
    ):
        wide.value_and_grads(net, params, (), x, y)
    narrow = rules.delta_rule(lambda key, net, params: (), project, name="narrow")
    says = (
        r"narrow: the projection gave shape \(\d+, 1\) for layer 2, whose z\^2 "
        r"has shape \(\d+, 4\)"
    )
    with pytest.raises(ValueError, match=says):
        narrow.value_and_grads(net, params, (), x, y)
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=says):
        jp.train_seeds(net, keys, x, y, optax.sgd(0.1), 2, rule=narrow)


def test_an_alignment_every_that_does_not_divide_the_steps_measures_the_last_too():
    """Documented: every alignment_every steps and after the last step."""
    x, y = jp.data.xor("float64")
    keys = jax.random.split(jax.random.key(2), 2)
    result = jp.train_seeds(XOR_NET, keys, x, y, optax.sgd(0.5), 50, log_every=10,
                            rule=ALL["fa"], alignment_every=20)  # fmt: skip
    np.testing.assert_array_equal(result.alignment_steps[0], [20, 40, 50])
    assert np.isfinite(result.alignment.grad).all()


def test_a_state_fits_whatever_its_keys_implementation(seed):
    """DP-SGD's state holds a PRNG key: one of another implementation (rbg)
    fits as a key does (it was refused as not fitting)."""
    net, params, x, y = make_case(seed, (3, 5, 2), "tanh", "softmax-labels")
    dp = rules.dp_sgd(1.0, 0.5)
    state = dp.init(jax.random.key(1, impl="rbg"), net, params)
    loss, grads, _ = dp.value_and_grads(net, params, state, x, y)
    assert np.isfinite(loss) and all(
        np.isfinite(g).all() for g in jax.tree.leaves(grads)
    )


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_a_projection_that_fails_on_the_runs_last_arrays_says_why():
    """Tiny networks train on runs-last arrays: a projection written with @
    fails there with a message that says so and how to go on (it was JAX's
    dot_general error); with runs_last=False it trains on the plain path."""
    x, y = jp.data.xor("float64")
    keys = jax.random.split(jax.random.key(0), 4)

    def project(params, state):
        return lambda l, delta_next, _: delta_next @ params[l].w.T

    def init(key, net, params):
        return ()

    matmul = rules.delta_rule(init, project, name="matmul")
    with pytest.raises(ValueError, match=r"matmul: the projection failed .*"
                       r"runs-last arrays .*jp\.rules\.contract"):  # fmt: skip
        jp.train_seeds(XOR_NET, keys, x, y, optax.sgd(0.5), 20, rule=matmul)
    plain = rules.delta_rule(init, project, name="matmul", runs_last=False)
    mine = jp.train_seeds(XOR_NET, keys, x, y, optax.sgd(0.5), 20, rule=plain)
    ref = jp.train_seeds(XOR_NET, keys, x, y, optax.sgd(0.5), 20)
    close(mine.params, ref.params, rtol=1e-10)
