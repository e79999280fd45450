"""DP-SGD from the command line: ``--sampling poisson --sampling-rate q`` (ε a
guarantee) and ``--target-epsilon`` (σ from ``jp.dp_noise_multiplier``), their
checks, and what a run records and prints."""

import json
from types import SimpleNamespace

import jax
import numpy as np
import pytest

import jaxprop as jp
from jaxprop._cli import main
from jaxprop._experiment import describe_rule, make_config, make_rule
from jaxprop._experiment.results import privacy

DP = ["--clip-norm", "1", "--noise-multiplier", "1"]
POISSON = ["--sampling", "poisson", "--sampling-rate", "0.1"]


def _experiment(config, n: int):
    """What results.privacy reads of an Experiment: the config and n examples
    (a build would load the data and make the trainer)."""
    return SimpleNamespace(config=config, data=SimpleNamespace(x=np.zeros((n, 2))))


@pytest.fixture(autouse=True)
def _started_backend():
    """JAX started before the command, which then keeps this worker's devices."""
    jax.devices()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [*DP, *POISSON, "--batch-size", "16"],
            "--sampling poisson and --batch-size: give one. Poisson sampling draws "
            "each example of the whole data set with probability q every step, so "
            "the batch size is random, q·n on average (--sampling-rate sets it)",
        ),
        (
            [*DP, "--sampling-rate", "0.1"],
            "--sampling-rate is each example's probability of being in a step's "
            "Poisson sample: it goes with --sampling poisson.",
        ),
        ([*DP, "--sampling", "poisson"], "--sampling poisson needs --sampling-rate"),
        ([*DP, "--sampling", "uniform", "--sampling-rate", "0.1"],
         "Unknown --sampling 'uniform'"),
        ([*DP, "--sampling", "poisson", "--sampling-rate", "1.5"],
         "--sampling-rate must be in (0, 1]; got 1.5."),
        ([*DP, "--sampling", "poisson", "--sampling-rate", "0"],
         "--sampling-rate must be in (0, 1]; got 0.0."),
        ([*POISSON, "--noise-multiplier", "1"], "DP-SGD needs both"),
        (["--target-epsilon", "2"], "DP-SGD needs both, or --clip-norm and "
         "--target-epsilon (which computes --noise-multiplier)"),
        ([*POISSON, "--clip-norm", "1"], "DP-SGD needs both"),
        (
            [*DP, "--target-epsilon", "2"],
            "--noise-multiplier and --target-epsilon: give one",
        ),
        (
            ["--clip-norm", "1", "--target-epsilon", "2", "--batch-size", "16"],
            "--target-epsilon calibrates the noise for a guarantee, which shuffled "
            "minibatches (--batch-size) do not have",
        ),
        (["--clip-norm", "1", "--target-epsilon", "0"],
         "--target-epsilon must be a positive number; got 0.0."),
        (["--clip-norm", "1", "--target-epsilon", "inf"],
         "--target-epsilon must be finite"),
        (
            ["--clip-norm", "1", "--target-epsilon", "2", *POISSON, "--rule",
             "autodiff"],
            "--clip-norm (DP-SGD) needs a δ rule; --rule autodiff has none",
        ),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else None,
)  # fmt: skip
def test_dp_options_are_checked(capsys, args, message):
    assert main(["train", "--steps", "20", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_target_epsilon_resolves_the_noise_multiplier_the_config_records():
    """make_config computes σ = jp.dp_noise_multiplier(E, q, steps, δ) (q = 1
    for full batches) and keeps E beside it; the saved settings read back to
    the same σ without a new search, the rule samples as asked, and
    metrics.json's privacy section (results.privacy, no training) states ε as
    a guarantee within 1% of the target."""
    values = {"clip_norm": 1, "target_epsilon": "2", "steps": 50, "delta": 1e-6}
    poisson = {"sampling": "poisson", "sampling_rate": "0.1"}
    config = make_config(values | poisson)
    sigma = config.noise_multiplier
    assert 0.99 * 2 <= jp.dp_epsilon(sigma, 0.1, 50, 1e-6) <= 2 and sigma > 0
    assert config.target_epsilon == 2.0
    assert config.sampling == "poisson" and config.sampling_rate == 0.1
    full = make_config(values)  # full batches: q = 1
    assert full.noise_multiplier == jp.dp_noise_multiplier(2.0, 1.0, 50, 1e-6)
    assert full.sampling is None and full.sampling_rate is None
    saved = json.loads(json.dumps(config.as_dict()))
    assert make_config(saved, saved=True) == config
    with pytest.raises(ValueError, match="noise_multiplier and target_epsilon"):
        make_config(saved)  # a user's settings: one or the other
    state = make_rule(config).init(
        jax.random.key(0), jp.MLP((2, 3, 1)), jp.MLP((2, 3, 1)).init(jax.random.key(1))
    )
    assert float(state.sampling_rate) == pytest.approx(0.1)
    assert float(state.noise_multiplier) == pytest.approx(sigma)
    assert describe_rule(config) == (
        f"dp_sgd(backprop, C 1, σ {sigma:.4g} for ε 2 at δ 1e-06, Poisson q 0.1)"
    )
    assert describe_rule(make_config({"rule": "fa"})) == "fa"
    p = privacy(_experiment(config, n=200))
    assert p["epsilon"] == jp.dp_epsilon(sigma, 0.1, 50, 1e-6)
    assert p["sampling"] == "poisson" and p["sampling_rate"] == 0.1
    assert p["target_epsilon"] == 2.0 and p["guarantee"] is True
    assert p["accounting"] == (
        "RDP upper bound, every step a Poisson sample of the whole data set with "
        "q = sampling_rate (a guarantee for this sampling)"
    )


@pytest.mark.slow  # a compile and the plots: several seconds (.ci/run runs it)
def test_a_poisson_run_to_a_target_epsilon_reports_a_guarantee(tmp_path, capsys):
    """A real run: ε in metrics.json is at most the target and within 1% of it,
    stated as a guarantee for Poisson sampling; the header and the summary name
    the rule; the saved run rebuilds the same rule, resumes with it and
    refuses more steps (they would spend more than the target)."""
    out = tmp_path / "run"
    args = ["--data", "moons", "--n-train", "64", "--n-test", "64", "--sizes",
            "2,4,1", "--steps", "20", "--log-every", "10", "--no-gradcheck",
            "--clip-norm", "1", *POISSON, "--target-epsilon", "2", "--out",
            str(out)]  # fmt: skip
    assert main(["train", *args]) == 0
    printed = capsys.readouterr().out
    sigma = jp.dp_noise_multiplier(2.0, 0.1, 20, 1e-5)
    rule = f"dp_sgd(backprop, C 1, σ {sigma:.4g} for ε 2 at δ 1e-05, Poisson q 0.1)"
    header = printed.splitlines()[0]
    assert header.startswith("moons: 2-4-1") and f"rule {rule}, float32" in header
    p = json.loads((out / "metrics.json").read_text())["privacy"]
    assert 0.99 * 2 <= p["epsilon"] <= 2
    assert p["noise_multiplier"] == sigma and p["target_epsilon"] == 2
    assert p["sampling"] == "poisson" and p["sampling_rate"] == 0.1
    assert p["guarantee"] is True
    assert "a guarantee for this sampling" in p["accounting"]
    assert "approximation" not in p["accounting"]
    assert (
        f"DP-SGD: {rule}, 20 steps: ε = {p['epsilon']:.3g} at δ = 1e-05 "
        f"(a guarantee)" in printed
    )
    run = jp.load_run(out)
    assert run.config.noise_multiplier == sigma
    np.testing.assert_allclose(run.rule_state.sampling_rate, 0.1)
    assert main(["train", "--resume", str(out), "--steps", "40"]) == 2
    err = capsys.readouterr().err
    assert "more steps would spend more privacy than that" in err, err
    # --resume reads σ from config.json (no new search) and writes the same ε.
    assert main(["train", "--resume", str(out), "--no-gradcheck"]) == 0
    assert f"rule {rule}, float32" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["privacy"] == p


def test_shuffled_minibatches_keep_the_approximation_wording():
    """Without --sampling, minibatches are accounted with q = B/n, and
    metrics.json says it is an approximation (results.privacy, no training)."""
    config = make_config({"batch_size": 16, "clip_norm": 1, "noise_multiplier": 1})
    p = privacy(_experiment(config, n=64))
    assert p["sampling_rate"] == 0.25 and p["sampling"] is None
    assert "an approximation of shuffled minibatches" in p["accounting"]
    assert p["guarantee"] is False and "target_epsilon" not in p
