"""Hyperparameter grids: every value checked by its constructor's definition,
every name with one place, refused before anything compiles."""

import jax
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop import rules

# These tests are about the grid, not Kolen-Pollack's pairing (test_rules.py).
pytestmark = pytest.mark.filterwarnings("ignore:Kolen-Pollack with an optimizer")

NET = jp.MLP((2, 4, 1), "tanh", "sigmoid", "binary_cross_entropy")
SGD = optax.sgd(0.1)
SGD_H = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
ADAM_H = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
KP = rules.kolen_pollack(0.1, 0.01)
DP = rules.dp_sgd(1.0, 1.0)
DP_POISSON = rules.dp_sgd(1.0, 1.0, sampling="poisson", sampling_rate=0.5)


def trainer(optimizer, rule, hparams):
    """A Trainer's construction only: the checks, nothing compiled."""
    x, y = jp.data.xor()
    keys = jax.random.split(jax.random.key(0), 2)
    return jp.Trainer(NET, keys, x, y, optimizer, 10, rule=rule, hparams=hparams)


@pytest.mark.parametrize(
    "rule,hparams,says",
    [
        (DP, {"clip_norm": [-1, 1]},
         r"hparams\['clip_norm'\] must be a positive number; got -1\.0\."),
        (DP, {"clip_norm": [1, 0]},
         r"hparams\['clip_norm'\] must be a positive number; got 0\.0\."),
        (DP, {"noise_multiplier": [1, -1]},
         r"hparams\['noise_multiplier'\] must be ≥ 0; got -1\.0\."),
        (DP_POISSON, {"sampling_rate": [0, 0.5]},
         r"hparams\['sampling_rate'\] must be in \(0, 1\]; got 0\.0\."),
        (DP_POISSON, {"sampling_rate": [0.5, 2]},
         r"hparams\['sampling_rate'\] must be in \(0, 1\]; got 2\.0\."),
        (KP, {"decay": [-1, 0.1]}, r"hparams\['decay'\] must be in \[0, 1\); got -1"),
        (KP, {"decay": [0.1, 2]}, r"hparams\['decay'\] must be in \[0, 1\); got 2"),
        (KP, {"rule.learning_rate": [0.1, 0]},
         r"hparams\['rule.learning_rate'\] must be a positive number; got 0\.0"),
        (None, {"learning_rate": [0.1, np.nan]},
         r"hparams\['learning_rate'\] must be finite; got nan"),
        (None, {"learning_rate": [True, False]},
         r"hparams\['learning_rate'\] must be a number; got True"),
        (None, {"learning_rate": [0.1, -0.1]},
         r"hparams\['learning_rate'\] must be a positive number; got -0\.1"),
        (None, {"learning_rate": ["0.1", "0.2"]},
         r"hparams\['learning_rate'\] must hold numbers; got array\(\['0\.1'"),
    ],
    ids=["clip-negative", "clip-zero", "noise-negative", "rate-zero", "rate-two",
         "decay-negative", "decay-two", "kp-lr-zero", "lr-nan", "lr-bool",
         "lr-negative", "lr-strings"],
)  # fmt: skip
def test_every_grid_value_is_checked_as_its_constructor_checks_it(rule, hparams, says):
    with pytest.raises((ValueError, TypeError), match=says):
        trainer(SGD_H, rule, hparams)


def test_grid_and_constructor_share_one_definition():
    """The same words for the same constraint, from the one check each uses."""
    cases = [
        (lambda: rules.dp_sgd(-1.0, 1.0), DP, "clip_norm", -1.0),
        (lambda: rules.kolen_pollack(0.1, 2.0), KP, "decay", 2.0),
        (
            lambda: rules.dp_sgd(1.0, 1.0, sampling="poisson", sampling_rate=2.0),
            DP_POISSON,
            "sampling_rate",
            2.0,
        ),
    ]
    for construct, rule, name, value in cases:
        with pytest.raises(ValueError) as by_constructor:
            construct()
        with pytest.raises(ValueError) as by_grid:
            trainer(SGD_H, rule, {name: [value, value]})
        words = str(by_constructor.value).removeprefix(name)
        assert str(by_grid.value) == f"hparams[{name!r}]{words}"


@pytest.mark.parametrize(
    "optimizer,rule,hparams,says",
    [
        # A grid name with no effect: DP-SGD reads sampling_rate with Poisson
        # sampling only (two grid points trained identically).
        (SGD_H, DP, {"sampling_rate": [0.5, 1.0]},
         r"hparams\['sampling_rate'\]: sampling_rate has no effect without "
         r"sampling='poisson'"),
        # Plain SGD keeps no learning rate: with KP a bare learning_rate swept
        # only KP's feedback rate; with backprop it was refused.
        (SGD, KP, {"learning_rate": [0.1, 0.2]},
         r"could mean the optimizer's learning_rate or the rule's "
         r"\(kolen_pollack's\): write 'optimizer.learning_rate' or "
         r"'rule.learning_rate'.*optax.inject_hyperparams"),
        (SGD_H, KP, {"learning_rate": [0.1, 0.2]}, r"could mean the optimizer's"),
        (SGD, None, {"learning_rate": [0.1, 0.2]},
         r"neither the optimizer nor the rule.*optax.inject_hyperparams"),
        (SGD, KP, {"optimizer.learning_rate": [0.1, 0.2]},
         r"the optimizer holds no hyperparameters in its state"),
        (SGD_H, None, {"rule.decay": [0.1, 0.2]},
         r"the rule backprop has no hyperparameter 'decay'"),
        # A state's own counters are not hyperparameters (Adam's count was set).
        (ADAM_H, None, {"count": [1, 2]}, r"neither the optimizer nor the rule"),
        (SGD_H, DP, {"key": [1, 2]}, r"'key' is part of the rule's state"),
        (SGD_H, None, {"learnin_rate": [0.1, 0.2]}, r"Did you mean 'learning_rate'"),
        (SGD_H, None, {"opt.learning_rate": [0.1]}, r"'optimizer.NAME' or 'rule.NAME'"),
        (SGD_H, None, {"learning_rate": [0.1], "optimizer.learning_rate": [0.1]},
         r"given twice"),
        (SGD_H, KP, {"decay": [0.1, 0.2], "optimizer.learning_rate": [0.1]},
         r"must all have the same length"),
    ],
    ids=["no-effect", "plain-sgd-kp", "both-hold", "plain-sgd", "opt-missing",
         "rule-missing", "adam-count", "dp-key", "typo", "bad-prefix", "twice",
         "lengths"],
)  # fmt: skip
def test_a_grid_name_has_one_place(optimizer, rule, hparams, says):
    with pytest.raises(ValueError, match=says):
        trainer(optimizer, rule, hparams)


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_a_rules_numbers_sweep_per_grid_point():
    """Rule numbers set per grid point, each where its name says; DP-SGD's
    sampling_rate with Poisson sampling, KP's two learning rates apart."""
    x, y = jp.data.xor()
    keys = jax.random.split(jax.random.key(1), 2)
    result = jp.train_seeds(
        NET, keys, x, y, SGD_H, 4, rule=DP_POISSON, log_every=2,
        hparams={"sampling_rate": [0.25, 1.0], "clip_norm": [0.5, 2.0]},
    )  # fmt: skip
    np.testing.assert_array_equal(result.rule_state.sampling_rate[:, 0], [0.25, 1.0])
    np.testing.assert_array_equal(result.rule_state.clip_norm[:, 1], [0.5, 2.0])
    result = jp.train_seeds(
        NET, keys, x, y, SGD_H, 4, rule=KP, log_every=2,
        hparams={"rule.learning_rate": [0.5, 0.25], "optimizer.learning_rate": [1, 2]},
    )  # fmt: skip
    np.testing.assert_array_equal(result.rule_state.learning_rate[:, 0], [0.5, 0.25])
    np.testing.assert_array_equal(
        result.opt_state.hyperparams["learning_rate"][:, 0], [1, 2]
    )


def test_a_user_rules_scalar_fields_are_its_hyperparameters():
    """A Rule that declares no hyperparameters: its scalar float fields may be
    swept (checked finite), its other fields may not."""
    from typing import NamedTuple

    import jax.numpy as jnp

    class State(NamedTuple):
        gain: jax.Array
        feedback: tuple

    def init(key, net, params):
        return State(jnp.ones((), params[0].w.dtype), ())

    def project(params, state):  # backprop's: δ^{l+1} (W^{l+1})ᵀ
        return lambda l, delta_next, _: rules.contract(delta_next, params[l].w, 1, 1)

    mine = rules.delta_rule(init, project, name="mine")
    assert mine.hyperparams is None
    trainer(SGD_H, mine, {"gain": [0.5, 2.0]})
    with pytest.raises(ValueError, match=r"hparams\['gain'\] must be finite"):
        trainer(SGD_H, mine, {"gain": [0.5, np.inf]})
    with pytest.raises(ValueError, match=r"the rule mine's: \['gain'\]"):
        trainer(SGD_H, mine, {"feedback": [0.5, 2.0]})


def test_the_paired_optimizers_numbers_are_checked_as_its_constructor_checks_them():
    """kolen_pollack_sgd is jaxprop's: its grid values get its own checks (a
    zero rate made decay/η infinite: NaN losses)."""
    opt = rules.kolen_pollack_sgd(0.1, 0.01)
    for grid, says in [
        ({"optimizer.learning_rate": [0.0, 0.1]}, r"must be a positive number"),
        ({"optimizer.decay": [-1.0, 0.1]}, r"must be in \[0, 1\); got -1\.0"),
    ]:
        with pytest.raises(ValueError, match=says):
            trainer(opt, KP, grid)


@pytest.mark.filterwarnings("default")  # this test asserts the warning itself
def test_kolen_pollack_warns_where_a_grid_point_unpairs_it():
    """The paired optimizer with other numbers than the rule's, at any grid
    point, warns; the same values for optimizer.NAME and rule.NAME do not."""
    opt = rules.kolen_pollack_sgd(0.1, 0.01)
    lrs = [0.1, 0.3]
    with pytest.warns(
        UserWarning, match=r"learning_rate \[0\.1\] for B but \[0\.1, 0\.3\]"
    ):
        trainer(opt, KP, {"optimizer.learning_rate": lrs})
    with pytest.warns(UserWarning, match=r"decay \[0\.01\] for B but \[0\.05\]"):
        trainer(rules.kolen_pollack_sgd(0.1, 0.05), KP, None)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer(opt, KP, {"optimizer.learning_rate": lrs, "rule.learning_rate": lrs})
        trainer(opt, KP, None)
