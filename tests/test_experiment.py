"""`jaxprop train` under divergence and odd settings: nothing lost, nothing silent.

Each test reproduces one finding of a new user's review of the command (issue 11)
in process; the kills and injected faults are in ``test_faults.py``.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop import _experiment
from jaxprop._cli import main
from jaxprop._experiment import (
    SAMPLED_ENTRIES,
    build,
    gradient_check,
    load_checkpoint,
    make_config,
    read_config,
)
from tests.helpers import xla_flags

DIVERGING = [
    "--data", "xor", "--sizes", "2,16,1", "--activation", "relu",
    "--output-activation", "identity", "--reduction", "sum", "--lr", "0.1,10",
    "--seeds", "8", "--steps", "1000",
]  # fmt: skip
MOONS = [
    "--data", "moons", "--n-train", "64", "--n-test", "64", "--sizes", "2,6,1",
    "--optimizer", "adam", "--lr", "0.02", "--batch-size", "16", "--seeds", "3",
    "--log-every", "10", "--eval-every", "50", "--quiet", "--no-gradcheck",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _started_backend():
    """JAX started before the command, which then keeps this worker's devices."""
    jax.devices()


def strict_json(path):
    return json.loads(
        path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in {path}")
    )


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_a_diverging_learning_rate_loses_nothing(tmp_path, capsys):
    """The issue's command: lr 10 diverges for every seed; lr 0.1 keeps everything."""
    out = tmp_path / "alldiv"
    assert main(["train", *DIVERGING, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json", "metrics.json", "curves.npz", "final.npz", "checkpoint.npz",
        "loss.png", "train_accuracy.png", "regions.png", "gradcheck.txt",
        "gradcheck.png",
    } <= names  # fmt: skip
    metrics = strict_json(out / "metrics.json")
    bad, good = metrics["summary"]["lr=10"], metrics["summary"]["lr=0.1"]
    assert bad["diverged"] == 8 and bad["runs"] == 8
    assert bad["train_accuracy"]["n"] == 0 and bad["train_accuracy"]["n_nan"] == 8
    assert bad["train_accuracy"]["median"] is None  # NaN, as strict JSON's null
    assert 0 <= bad["diverged_at"]["first"] <= bad["diverged_at"]["last"] < 1000
    assert bad["solved"]["successes"] == 0
    assert good["diverged"] == 0 and good["train_accuracy"]["n"] == 8
    assert good["diverged_at"] is None
    runs = [r for r in metrics["runs"] if r["lr"] == 10]
    assert all(r["diverged"] and 0 <= r["diverged_at"] < 1000 for r in runs)
    assert "lr 10: no train accuracy: every run diverged" in stdout
    assert "8/8 diverged (at step" in stdout and "0/8 diverged" in stdout
    with np.load(out / "curves.npz") as curves:
        assert np.all(np.isfinite(curves["losses"][0]))
        assert np.isnan(curves["losses"][1, :, -1]).all()
    # The healthy runs' params are all there (and finite for every run).
    run = jp.load_run(out)
    assert all(np.isfinite(l).all() for l in jax.tree.leaves(run.params))


def test_xor_is_measured_on_its_training_points_and_reports_solved(tmp_path, capsys):
    out = tmp_path / "xor"
    args = ["--data", "xor", "--sizes", "2,2,1", "--activation", "sigmoid",
            "--init", "uniform01", "--cost", "mse", "--reduction", "sum",
            "--lr", "0.5", "--seeds", "16", "--steps", "2000", "--quiet"]  # fmt: skip
    assert main(["train", *args, "--out", str(out), "--no-gradcheck"]) == 0
    stdout = capsys.readouterr().out
    metrics = strict_json(out / "metrics.json")
    assert metrics["headline"] == "train_accuracy"
    assert metrics["evaluated_on"] == "the training data"
    solved = metrics["summary"]["lr=0.5"]["solved"]
    assert solved["n"] == 16 and 0 < solved["successes"] <= 16
    assert solved["ci95_low"] <= solved["fraction"] <= solved["ci95_high"]
    assert "train accuracy (on the training data) median" in stdout
    assert f"solved {solved['successes']}/16" in stdout
    assert "eval" not in " ".join(np.load(out / "curves.npz").files)
    assert not (out / "gradcheck.txt").exists()  # --no-gradcheck
    # XOR has no held-out data: asking for evaluations is refused, not ignored.
    assert main(["train", *args, "--eval-every", "100"]) == 2
    assert "eval_every needs held-out data" in capsys.readouterr().err


@pytest.mark.parametrize(
    "strategy", ["auto", "vmap", "sequential", "chunked"], ids=lambda s: s
)
@pytest.mark.parametrize(
    "lrs",
    [pytest.param([0.1], marks=pytest.mark.slow, id="one-lr"),
     pytest.param([0.1, 0.2], id="lr-grid")],
)  # fmt: skip
def test_gradient_check_reads_runs_through_the_public_accessor(strategy, lrs):
    """Every layout the command can pick (one device here; two in test_faults)."""
    values = {"data": "moons", "sizes": [2, 5, 1], "seeds": 3, "lr": lrs,
              "strategy": strategy, "steps": 10}  # fmt: skip
    if strategy == "chunked":
        values["chunk_size"] = 2
    exp = build(make_config(values))
    assert exp.trainer.strategy[0] in ("vmap", "chunked", "sequential")
    if strategy == "sequential":
        assert exp.trainer.strategy[0] == "sequential"
    check = gradient_check(exp)
    assert check.report.passed and check.numeric_entries is None
    first = jax.tree.map(lambda l: l[0, 0], exp.trainer.runs(exp.trainer.init()).params)
    assert check.report.rows[0].shape == first[0].w.shape


def test_wide_networks_check_sampled_entries_and_still_catch_a_small_error(key):
    net = jp.MLP((40, 256, 256, 10), "relu", "identity", "softmax_cross_entropy")
    params = net.init(key, dtype="float64")
    x = jax.random.normal(key, (8, 40), "float64")
    y = np.arange(8) % 10
    assert jp.check_grads(net, params, x, y, numeric_entries=SAMPLED_ENTRIES).passed

    def buggy(p, x, y):  # one array 0.1% off
        grads = list(net.backprop(p, x, y))
        grads[1] = grads[1]._replace(w=grads[1].w * 1.001)
        return tuple(grads)

    report = jp.check_grads(
        net, params, x, y, backprop=buggy, numeric_entries=SAMPLED_ENTRIES
    )
    assert not report.passed and not report.rows[2].passed
    assert report.rows[2].numeric_ratio > 1 and report.rows[0].numeric_ratio < 1
    with pytest.raises(ValueError, match="numeric_entries must be a positive"):
        jp.check_grads(net, params, x, y, numeric_entries=0)


def test_check_command_on_a_single_device_layout(capsys):
    """`jaxprop check --data mnist1d --sizes 40,32,10` crashed (sequential layout)."""
    pytest.importorskip("mnist1d")
    args = ["--data", "mnist1d", "--sizes", "40,32,10", "--cost",
            "softmax_cross_entropy", "--output-activation", "identity"]  # fmt: skip
    code = main(["check", *args])
    out = capsys.readouterr().out
    assert code == 0 and "Gradient check (float64): PASSED" in out
    assert "8 examples of mnist1d" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--data", "moons", "--eval-data", "E.csv"],
            "--eval-data applies to file data",
        ),
        (["--data", "moons", "--classes", "3"], "classes applies to spirals and blobs"),
        (["--data", "xor", "--n-train", "10"], "--n-train applies to moons"),
        (["--data", "xor", "--data-seed", "3"], "--data-seed applies to moons"),
        (["--momentum", "1.5", "--optimizer", "adam"], "momentum must be in [0, 1)"),
        (["--momentum", "0.5"], "--momentum does not apply to --optimizer 'sgd'"),
        (["--data", "moons", "--sizes", "2,8"], "2 classes, so sizes must end with"),
        (
            [
                "--data",
                "spirals",
                "--cost",
                "softmax_cross_entropy",
                "--output-activation",
                "identity",
                "--sizes",
                "2,8,5",
            ],
            "sizes must end with 2",
        ),
        (["--checkpoint-every", "10"], "--checkpoint-every needs --out"),
        (["--strategy", "chunked"], "--strategy 'chunked' needs --chunk-size"),
        (
            ["--strategy", "vmap", "--chunk-size", "4"],
            "--chunk-size goes with --strategy 'chunked'",
        ),
        (["--data", "spirals", "--classes", "1"], "classes must be an integer ≥ 2"),
    ],
    ids=lambda a: a[1] if isinstance(a, list) else None,
)
def test_options_that_would_be_ignored_are_refused(tmp_path, capsys, args, message):
    args = [str(tmp_path / "e.csv") if a == "E.csv" else a for a in args]
    code = main(["train", "--steps", "20", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err


def test_options_that_take_effect(capsys):
    """chunk_size reaches the trainer; tanh outputs get ±1 targets and are scored
    at 0, the midpoint of their range."""
    exp = build(make_config({"seeds": 5, "strategy": "chunked", "chunk_size": 2}))
    assert exp.trainer.strategy == ("chunked", 2)
    exp = build(make_config({"data": "moons", "output_activation": "tanh"}))
    assert set(np.unique(exp.data.y)) == {-1.0, 1.0}
    assert set(np.unique(exp.data.y_eval)) == {-1.0, 1.0}
    args = ["--data", "moons", "--output-activation", "tanh", "--sizes", "2,8,1",
            "--lr", "0.3", "--steps", "500", "--seeds", "2", "--quiet"]  # fmt: skip
    assert main(["train", *args]) == 0
    line = next(
        l for l in capsys.readouterr().out.splitlines() if l.startswith("lr 0.3")
    )
    median = float(line.split("median ")[1].split()[0])
    assert median > 0.8, line


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_ctrl_c_before_the_first_checkpoint_says_nothing_can_be_resumed(
    tmp_path, capsys, monkeypatch
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_experiment.driver, "train_chunks", interrupted)
    out = tmp_path / "run"
    assert main(["train", "--steps", "100", "--quiet", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "before the first checkpoint: nothing can be resumed yet" in err
    assert "continues from the last checkpoint" not in err
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert "has no checkpoint yet: starting from step 0" in capsys.readouterr().err
    assert (out / "metrics.json").exists()


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_load_run_and_extend_a_finished_run(tmp_path, capsys):
    """jp.load_run needs no optimizer; --resume --steps N continues a finished run
    to the same bits as a run of N steps with the same schedule."""
    short, straight = tmp_path / "short", tmp_path / "straight"
    assert main(["train", *MOONS, "--steps", "100", "--out", str(short)]) == 0
    run = jp.load_run(short)
    assert run.config.steps == 100 and run.net.sizes == (2, 6, 1)
    settings = run.config.as_dict()  # config.json's "config", as a dict
    saved = json.loads((short / "config.json").read_text())["config"]
    assert settings == saved and settings["lr"] == [0.02]
    assert make_config(saved).as_dict() == settings
    assert run.params[0].w.shape == (1, 3, 2, 6)
    assert run.curves["losses"].shape == (1, 3, 10)
    assert run.metrics["headline"] == "eval_accuracy"
    state = load_checkpoint(short, build(read_config(short))).state
    runs = build(read_config(short)).trainer.runs(state)
    for a, b in zip(
        jax.tree.leaves(run.params), jax.tree.leaves(runs.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(run.opt_state) == jax.tree.structure(runs.opt_state)
    np.testing.assert_array_equal(run.run(0, 2)[1].b, runs.params[1].b[0, 2])

    assert main(["train", "--resume", str(short), "--steps", "250", "--quiet"]) == 0
    assert "extending the run from 100 to 250 steps" in capsys.readouterr().err
    assert main(["train", *MOONS, "--steps", "250", "--out", str(straight)]) == 0
    for name in ("final.npz", "curves.npz"):
        with np.load(short / name) as a, np.load(straight / name) as b:
            assert a.files == b.files
            for k in a.files:
                assert a[k].tobytes() == b[k].tobytes(), (name, k)
    assert read_config(short).steps == 250
    assert json.loads((short / "config.json").read_text())["extended_from"] == 100

    capsys.readouterr()
    for steps, message in ((200, "not shorten it"), (255, "a multiple of 10")):
        assert main(["train", "--resume", str(short), "--steps", str(steps)]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"has no final\.npz"):
        (short / "final.npz").unlink()
        jp.load_run(short)
    with pytest.raises(ValueError, match=r"^path: .*config\.json' is missing"):
        jp.load_run(tmp_path)  # not a run's folder: named as load_run's argument


def test_an_unwritable_out_is_refused_before_training(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["train", "--steps", "10", "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out: cannot write to" in err

    def full(path):
        return type("Usage", (), {"free": 1000})()

    monkeypatch.setattr(_experiment.store.shutil, "disk_usage", full)
    assert main(["train", "--steps", "10", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "MiB free; this run's checkpoints and results need about" in err


TWO_DEVICES = """
import jax
jax.config.update("jax_enable_x64", True)
assert len(jax.devices()) == 2
from jaxprop._experiment import build, gradient_check, make_config
cases = [("auto", 1), ("vmap", 3), ("sequential", 3), ("chunked", 3)]
for strategy, seeds in cases:
    values = {"data": "moons", "sizes": [2, 5, 1], "seeds": seeds,
              "lr": [0.1, 0.2], "strategy": strategy, "steps": 10}
    if strategy == "chunked":
        values["chunk_size"] = 2
    exp = build(make_config(values))
    assert gradient_check(exp).report.passed, (strategy, seeds)
    print(strategy, seeds, exp.trainer.strategy)
"""


@pytest.mark.slow
def test_gradient_check_and_the_issue_commands_on_two_devices(tmp_path):
    """The layouts of a two-device machine (one device per core, as the command
    sets up), and the two commands that crashed under the sequential layout."""
    env = dict(os.environ, XLA_FLAGS=xla_flags(2))
    done = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    layouts = {line.split(" ", 2)[2] for line in done.stdout.splitlines()}
    assert "('chunked', 2)" in layouts  # sequential on two devices: one run each
    big = subprocess.run(
        [sys.executable, "-m", "jaxprop", "train", "--data", "moons", "--sizes",
         "2,512,512,1", "--seeds", "1", "--steps", "20", "--quiet", "--out",
         str(tmp_path / "big")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert big.returncode == 0, big.stderr[-3000:]
    assert "random entries per array): PASSED" in big.stdout


@pytest.mark.slow  # several seconds (subprocesses or compiles): .ci/run runs it
def test_train_with_a_rule_writes_its_alignment(tmp_path, capsys):
    out = tmp_path / "dfa"
    args = ["--data", "moons", "--n-train", "64", "--n-test", "64", "--sizes",
            "2,8,8,1", "--lr", "0.3", "--rule", "dfa", "--seeds", "3", "--steps",
            "200", "--log-every", "10", "--alignment-every", "50", "--quiet",
            "--no-gradcheck"]  # fmt: skip
    assert main(["train", *args, "--out", str(out)]) == 0
    assert "rule dfa" in capsys.readouterr().err
    with np.load(out / "curves.npz") as curves:
        np.testing.assert_array_equal(curves["alignment_steps"], [50, 100, 150, 200])
        assert curves["alignment_grad"].shape == (1, 3, 3, 4)
        assert np.isnan(curves["alignment_feedback"]).all()  # DFA's B is not W's shape
        assert np.isfinite(curves["alignment_delta"]).all()
    metrics = strict_json(out / "metrics.json")
    assert 0 < metrics["summary"]["lr=0.3"]["alignment_grad_1"]["median"] < 180
    assert "solved" not in metrics["summary"]["lr=0.3"]  # scored on held-out data
    assert_png = (out / "alignment.png").read_bytes()[:4] == b"\x89PNG"
    assert assert_png
    run = jp.load_run(out)
    assert [b.shape for b in run.rule_state.feedback] == [(1, 3, 1, 8), (1, 3, 1, 8)]
    assert run.config.rule == "dfa"


@pytest.mark.parametrize(
    "name, short",
    [
        ("backprop", "backprop"),
        ("autodiff", "autodiff"),
        ("feedback_alignment", "fa"),
        ("direct_feedback_alignment", "dfa"),
        ("sign_symmetry", "sign"),
        ("kolen_pollack", "kp"),
        ("fa", "fa"),
    ],
)
def test_rules_are_read_by_the_library_names_too(name, short):
    """config.json keeps the short name, so a saved run reads back the same."""
    config = make_config({"rule": name})
    assert config.rule == short
    assert make_config(dataclasses.asdict(config)) == config


def test_config_as_a_dict_round_trips():
    config = make_config({"data": "moons", "lr": "0.1,0.3", "rule": "kolen_pollack",
                          "kp_decay": 0.01, "sizes": "2,4,1"})  # fmt: skip
    settings = config.as_dict()
    assert type(settings) is dict and settings["lr"] == [0.1, 0.3]  # JSON's lists
    assert settings["rule"] == "kp" and settings["sizes"] == [2, 4, 1]
    assert make_config(json.loads(json.dumps(settings))) == config  # config.json


def test_the_command_takes_a_library_rule_name(capsys):
    args = ["--rule", "sign_symmetry", "--steps", "20", "--no-gradcheck"]
    assert main(["train", *args]) == 0
    assert "rule sign, float32" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--rule", "backprob"],
            "Unknown --rule 'backprob'; did you mean 'backprop'? Expected one of",
        ),
        (
            ["--rule", "feedbak_alignment"],
            "did you mean 'feedback_alignment'?",
        ),
        (["--rule", "fa", "--grad", "manual"], "--grad and --rule: give one"),
        (["--rule", "fa", "--kp-lr", "0.1"], "--kp-lr applies to --rule kp only"),
        (
            ["--rule", "fa", "--feedback-scale", "-1"],
            "--feedback-scale must be a positive number; got -1.0.",
        ),
        (
            ["--rule", "feedback_alignment", "--feedback-scale", "0"],
            "--feedback-scale must be a positive number",
        ),
        (["--rule", "kp", "--kp-decay", "1.5"], "--kp-decay must be in [0, 1)"),
        (["--rule", "kp", "--kp-lr", "0"], "--kp-lr must be a positive number"),
        (
            ["--rule", "kp", "--optimizer", "adam", "--kp-paired", "true"],
            "--kp-paired pairs Kolen-Pollack with SGD's weight decay",
        ),
        (["--rule", "fa", "--kp-paired", "false"], "--kp-paired applies to --rule kp"),
        (["--rule", "kp", "--kp-paired", "maybe"], "--kp-paired must be true or false"),
        (["--feedback-scale", "0.5"], "--feedback-scale applies to --rule fa or dfa"),
        (["--clip-norm", "1"], "DP-SGD needs both"),
        (["--noise-multiplier", "1", "--delta", "1e-5"], "DP-SGD needs both"),
        (["--clip-norm", "0", "--noise-multiplier", "1"], "--clip-norm must be a"),
        (["--clip-norm", "1", "--noise-multiplier", "-1"], "--noise-multiplier must"),
        (["--clip-norm", "1", "--noise-multiplier", "1", "--delta", "1"], "--delta"),
        (
            ["--clip-norm", "1", "--noise-multiplier", "1", "--rule", "autodiff"],
            "--clip-norm (DP-SGD) needs a δ rule; --rule autodiff has none",
        ),
        (["--alignment-every", "10"], "rule backprop computes backprop's own"),
        (
            ["--rule", "autodiff", "--alignment-every", "10"],
            "--alignment-every measures a rule's angles to backprop; --rule "
            "autodiff computes backprop's own gradient, so it would measure nothing",
        ),
    ],
    ids=lambda a: a[1] if isinstance(a, list) else None,
)
def test_rule_options_are_checked(capsys, args, message):
    assert main(["train", "--steps", "20", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    for library_name in ("scale", "decay", "learning_rate", "base", "projection"):
        assert f" {library_name} " not in err, err  # the option, never jp.rules' name


@pytest.mark.slow  # several seconds (subprocesses or compiles): .ci/run runs it
def test_dp_sgd_from_the_command_line_reports_epsilon(tmp_path, capsys):
    """--clip-norm/--noise-multiplier train with jp.rules.dp_sgd on the rule and
    report ε (jp.dp_epsilon with q = batch / n) in metrics.json and the summary;
    the run's DP state (noise keys) is saved and read back."""
    out = tmp_path / "run"
    args = [*MOONS, "--steps", "100", "--rule", "fa", "--clip-norm", "0.5",
            "--noise-multiplier", "1.1", "--delta", "1e-6"]  # fmt: skip
    args += ["--out", str(out)]
    assert main(["train", *args]) == 0
    printed = capsys.readouterr().out
    p = strict_json(out / "metrics.json")["privacy"]
    assert p["sampling_rate"] == 16 / 64 and p["steps"] == 100
    assert p["epsilon"] == pytest.approx(jp.dp_epsilon(1.1, 0.25, 100, 1e-6))
    assert f"ε = {p['epsilon']:.3g} at δ = 1e-06" in printed
    run = jp.load_run(out)
    assert isinstance(run.rule_state, jp.rules.DPSGDState)
    assert np.asarray(run.rule_state.clip_norm).shape == (1, 3)
    assert "alignment_grad_1" not in run.curves  # angles of private data: off


def test_file_targets_of_plus_minus_one_or_real_values(tmp_path):
    """±1 labels are classes 0/1 (not all 1); real-valued 1-D targets are one
    regression column (a user review found both turned into all-1 targets)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    pm1 = np.where(x[:, 0] > 0, 1.0, -1.0)
    np.savez(tmp_path / "pm1.npz", x=x, y=pm1)
    np.savez(tmp_path / "real.npz", x=x, y=x.sum(1) * 0.3)
    exp = build(make_config({"data": str(tmp_path / "pm1.npz")}))
    np.testing.assert_array_equal(exp.data.y[:, 0], (pm1 > 0).astype("float32"))
    assert exp.data.classification and exp.net.sizes[-1] == 1
    exp = build(make_config({"data": str(tmp_path / "real.npz"),
                             "output_activation": "identity"}))  # fmt: skip
    assert exp.data.y.shape == (40, 1) and not exp.data.classification
    np.testing.assert_allclose(exp.data.y[:, 0], x.sum(1) * 0.3, rtol=1e-6)
    with pytest.raises(ValueError, match="needs class ids"):
        build(make_config({"data": str(tmp_path / "real.npz"),
                           "cost": "softmax_cross_entropy",
                           "output_activation": "identity"}))  # fmt: skip


@pytest.mark.slow  # several seconds (subprocesses or compiles): .ci/run runs it
def test_hinge_from_the_command_line_gets_plus_minus_one_targets(tmp_path, capsys):
    """The command shapes targets by asking the Cost (jp.Cost.targets,
    class_values), not by its name: hinge gets ±1, and the run reports an
    accuracy (the class is the sign of the output)."""
    config = make_config({"data": "moons", "n_train": 64, "n_test": 64,
                          "cost": "hinge", "output_activation": "identity",
                          "sizes": "2,8,1"})  # fmt: skip
    exp = build(config)
    assert set(np.unique(exp.data.y)) == {-1.0, 1.0} and exp.data.classification
    args = [*MOONS, "--cost", "hinge", "--output-activation", "identity",
            "--steps", "200", "--out", str(tmp_path / "run")]  # fmt: skip
    args[args.index("2,6,1")] = "2,8,1"
    assert main(["train", *args]) == 0
    doc = strict_json(tmp_path / "run" / "metrics.json")
    assert doc["headline"] == "eval_accuracy"
    assert doc["summary"]["lr=0.02"]["eval_accuracy"]["median"] > 0.6
    capsys.readouterr()


@pytest.mark.parametrize(
    "steps,log_every",
    [(2000, 10), (401, 1), (1234, 2), (2001, 23), (5001, 3), (7, 1), (60000, 300)],
)
def test_the_default_log_every_is_the_divisor_nearest_a_200th(steps, log_every):
    """About 200 logged points: the divisor of steps nearest steps / 200 on a
    log scale (2001 = 3·23·29: 23 is nearer 10 than 3 is; a prime: 1)."""
    exp = build(make_config({"steps": steps}))
    assert exp.trainer.log_every == log_every


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_a_run_is_self_contained_and_its_folder_its_own(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 2))
    (tmp_path / "work").mkdir()
    np.savez(tmp_path / "work" / "d.npz", x=x, y=(x[:, 0] > 0).astype(int))
    monkeypatch.chdir(tmp_path / "work")
    args = ["--data", "d.npz", "--steps", "40", "--quiet", "--no-gradcheck"]
    assert main(["train", *args, "--out", "run"]) == 0
    saved = read_config(tmp_path / "work" / "run")
    assert saved.data == str(tmp_path / "work" / "d.npz")  # absolute
    monkeypatch.chdir(tmp_path)  # resumed from elsewhere
    capsys.readouterr()
    assert main(["train", "--resume", "work/run", "--steps", "80", "--quiet"]) == 0
    # The data changed under the run: refused, not silently trained on.
    np.savez(tmp_path / "work" / "d.npz", x=x + 1, y=(x[:, 0] > 0).astype(int))
    assert main(["train", "--resume", "work/run", "--steps", "120"]) == 2
    assert "changed since the run" in capsys.readouterr().err
    # A folder with other files is not a result folder.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["train", "--steps", "10", "--out", str(tmp_path / "mine")]) == 2
    assert "holds other files (notes.txt)" in capsys.readouterr().err
    notes = tmp_path / "mine" / "notes.txt"
    assert main(["train", "--steps", "10", "--out", str(notes)]) == 2
    assert f"--out: {str(notes)!r} is a file;" in capsys.readouterr().err
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "config.json").write_text('{"x": 1}')
    assert main(["train", "--steps", "10", "--out", str(tmp_path / "theirs")]) == 2
    assert "not a jaxprop config" in capsys.readouterr().err
    assert main(["train", "--steps", "10", "--lr", "0.1,0.10000001"]) == 2
    assert "the same learning rate twice" in capsys.readouterr().err


def test_sigterm_stops_a_run_like_ctrl_c(tmp_path, capsys, monkeypatch):
    import signal

    def terminated(exp, checkpoint, *, on_checkpoint=None, **kw):
        on_checkpoint(checkpoint)
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(_experiment.driver, "train_chunks", terminated)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    assert main(["train", "--steps", "100", "--quiet", "--out", str(out)]) == 130
    assert f"interrupted; jaxprop train --resume {out} continues" in (
        capsys.readouterr().err
    )
    assert signal.getsignal(signal.SIGTERM) == before  # restored


def test_confidence_intervals_stay_in_the_metrics_range():
    from jaxprop._experiment.results import summary_of

    s = summary_of(np.array([1.0, 1.0, 0.9]), "eval_accuracy")
    assert s["ci95_high"] == 1.0 and s["ci95_low"] < s["mean"]
    s = summary_of(np.array([1e-9, 3e-3, 1e-10]), "train_loss")
    assert s["ci95_low"] == 0.0


def test_kp_pairs_with_sgd_and_old_runs_resume_unpaired(tmp_path):
    """The command trains kp with jp.rules.kolen_pollack_sgd by default (sgd),
    B's rate following each grid point's learning rate; with another optimizer
    or kp_paired false, the optimizer alone. A config.json written before the
    pairing (no kp_paired) reads as unpaired: its checkpoints' optimizer state."""
    config = _experiment.make_config({"rule": "kp", "lr": "0.1,0.3"})
    assert config.kp_paired is True
    assert jp.rules.is_kolen_pollack_sgd(_experiment.make_optimizer(config))
    grid = _experiment.build(config).trainer._settings["hparams"]
    assert grid == {"optimizer.learning_rate": ["0.1", "0.3"],
                    "rule.learning_rate": ["0.1", "0.3"]}  # fmt: skip
    with pytest.warns(UserWarning, match="W − B no longer shrinks"):
        adam = _experiment.make_config({"rule": "kp", "optimizer": "adam"})
    assert adam.kp_paired is False
    with pytest.warns(UserWarning, match="B steps at another rate than W"):
        with_kp_lr = _experiment.make_config(
            {"rule": "kp", "lr": "0.1,0.3", "kp_lr": 1}
        )
    grid = _experiment.build(with_kp_lr).trainer._settings["hparams"]
    assert grid == {"optimizer.learning_rate": ["0.1", "0.3"]}  # kp_lr is kept
    assert _experiment.make_config({"rule": "fa"}).kp_paired is None
    doc = {"config": {"rule": "kp", "lr": [0.1], "optimizer": "sgd"}}
    (tmp_path / "config.json").write_text(json.dumps(doc))
    old = _experiment.read_config(tmp_path)
    assert old.kp_paired is False
    assert not jp.rules.is_kolen_pollack_sgd(_experiment.make_optimizer(old))


@pytest.mark.slow  # a run of the command: .ci/run runs it
def test_kp_from_the_command_line_closes_w_minus_b(tmp_path, capsys):
    """W − B = (1 − kp_decay)^t (W₀ − B₀) for every run of the grid."""
    out, decay, steps = tmp_path / "kp", 0.05, 40
    args = ["--data", "moons", "--n-train", "32", "--n-test", "32", "--sizes",
            "2,6,6,1", "--rule", "kp", "--kp-decay", str(decay), "--lr", "0.1,0.3",
            "--seeds", "2", "--steps", str(steps), "--log-every", "10",
            "--dtype", "float64", "--quiet", "--no-gradcheck"]  # fmt: skip
    assert main(["train", *args, "--out", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    run = jp.load_run(out)
    start = _experiment.build(run.config).trainer
    start = start.runs(start.init())
    for l in (1, 2):
        gap0 = start.params[l].w - start.rule_state.feedback[l - 1]
        gap = run.params[l].w - run.rule_state.feedback[l - 1]
        np.testing.assert_allclose(gap, (1 - decay) ** steps * gap0, rtol=1e-9)
    adam = ["--optimizer", "adam", "--out", str(tmp_path / "adam")]
    assert main(["train", *args, *adam]) == 0
    err = capsys.readouterr().err
    assert "warning: --rule kp with --optimizer adam: W does not" in err, err


def test_kp_settings_that_would_unpair_it_are_said_in_the_options_words(capsys):
    """Another optimizer or a --kp-lr other than --lr: a one-line warning
    naming the options typed; under DP-SGD a grid of --lr needs --kp-lr (B's
    rate cannot follow it there); a saved config.json reads without warning."""
    cli = {
        "rule": "--rule",
        "optimizer": "--optimizer",
        "kp_lr": "--kp-lr",
        "lr": "--lr",
        "kp_decay": "--kp-decay",
        "clip_norm": "--clip-norm",
    }
    with pytest.warns(UserWarning, match=r"^--rule kp with --optimizer adam: W"):
        _experiment.make_config({"rule": "kp", "optimizer": "adam"}, names=cli)
    with pytest.warns(UserWarning, match=r"^--kp-lr 0.5 with --lr 0.05: B steps"):
        _experiment.make_config({"rule": "kp", "kp_lr": 0.5, "lr": 0.05}, names=cli)
    dp = {"rule": "kp", "clip_norm": 1, "noise_multiplier": 0.5}
    with pytest.raises(ValueError, match=r"--kp-lr: under DP-SGD \(--clip-norm\)"):
        _experiment.make_config(dp | {"lr": "0.1,0.2"}, names=cli)
    config = _experiment.make_config(dp | {"lr": "0.1"})
    assert "rule.learning_rate" not in _experiment.make_grid(config)
    dp_kp = ["--rule", "kp", "--clip-norm", "1", "--noise-multiplier", "0.5"]
    assert main(["train", "--steps", "20", *dp_kp, "--quiet", "--no-gradcheck"]) == 0


def test_eval_data_takes_a_dataset_without_a_held_out_part():
    x, y = jp.data.two_moons(jax.random.key(0), 32)
    held_out = jp.data.two_moons(jax.random.key(1), 16)
    net = jp.MLP((2, 4, 1), "tanh", "sigmoid", "binary_cross_entropy")
    keys = jax.random.split(jax.random.key(2), 2)
    y, held_out = y[:, None], jp.data.Dataset(held_out.x, held_out.y[:, None])
    result = jp.train_seeds(net, keys, x, y, optax.sgd(0.1), 10, eval_data=held_out)
    assert result.eval_accuracy.shape == (2, 1)
    with pytest.raises(TypeError, match=r"give \(data.x_test, data.y_test\)"):
        jp.train_seeds(
            net,
            keys,
            x,
            y,
            optax.sgd(0.1),
            10,
            eval_data=jp.data.two_moons(jax.random.key(1), 16, n_test=8),
        )


FIXTURES = Path(__file__).with_name("fixtures")
# Run folders written by earlier releases: d43bfb0 (before grid names were
# qualified and kp was paired) and b461326 (before the layer rebuild).
OLD_RUNS = [
    pytest.param(FIXTURES / f"runs-{release}" / rule, paired, id=f"{release}-{rule}")
    for release, pairs in {
        "d43bfb0": {"kp": False, "fa": None},
        "b461326": {"kp": True, "fa": None},
    }.items()
    for rule, paired in pairs.items()
]


@pytest.mark.parametrize("folder, paired", OLD_RUNS)
def test_run_folders_of_earlier_releases_load(folder, paired):
    """load_run reads them, their config as it was (d43bfb0's kp unpaired)."""
    run = jp.load_run(folder)
    rule = folder.name
    assert run.config.rule == rule and run.config.steps == 40
    assert run.config.kp_paired is paired
    n_lr = 1 if (rule == "kp" and not paired) else 2
    assert run.params[0].w.shape == (n_lr, 2, 2, 4)  # (lrs, seeds, n_0, n_1)
    assert np.isfinite(run.params[0].w).all()
    np.testing.assert_array_equal(run.curves["steps"], [10, 20, 30, 40])


@pytest.mark.slow  # resumed runs and fresh ones: .ci/run runs it
@pytest.mark.parametrize("folder, paired", OLD_RUNS)
def test_run_folders_of_earlier_releases_resume(folder, paired, tmp_path, capsys):
    """--resume --steps 60 extends them with the optimizer and grid they
    recorded (for d43bfb0's kp: plain SGD, the bare learning_rate setting W's
    and B's rate), as a run of the same settings trained from the start does,
    to float32's rounding (the checkpoint's first 40 steps may have run on
    another machine)."""
    out = tmp_path / folder.name
    shutil.copytree(folder, out)
    assert main(["train", "--resume", str(out), "--steps", "60", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err  # nothing to choose on resume
    resumed = jp.load_run(out)
    trainer = _experiment.build(resumed.config).trainer
    fresh = trainer.result(trainer.advance(trainer.init(), 60))
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(fresh.params),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_saved_config_keeps_what_older_versions_accepted(tmp_path):
    """alignment_every with backprop is refused for new runs but kept in a
    config.json written by an older version, which then loads and resumes."""
    values = {"rule": "backprop", "alignment_every": 20, "steps": 100}
    with pytest.raises(ValueError, match="would measure nothing"):
        make_config(values)
    doc = {"config": _experiment.make_config({"steps": 100}).as_dict()}
    doc["config"] |= {"alignment_every": 20}
    (tmp_path / "config.json").write_text(json.dumps(doc))
    assert _experiment.read_config(tmp_path).alignment_every == 20


def test_diagnostics_settings_are_checked_and_named():
    config = make_config({"diagnostics_every": "20", "sharpness": "ggn"})
    assert (config.diagnostics_every, config.sharpness) == (20, "ggn")
    names = {"sharpness": "--sharpness", "diagnostics_every": "--diagnostics-every"}
    with pytest.raises(ValueError, match="--sharpness goes with --diagnostics-every"):
        make_config({"sharpness": "none"}, names=names)
    with pytest.raises(ValueError, match="Unknown --sharpness 'hess'"):
        make_config({"diagnostics_every": 20, "sharpness": "hess"}, names=names)


@pytest.mark.slow  # a run's compiles: .ci/run runs it
def test_train_with_diagnostics_writes_them(tmp_path):
    out = tmp_path / "run"
    args = ["--data", "moons", "--n-train", "64", "--n-test", "64", "--sizes",
            "2,8,1", "--seeds", "2", "--steps", "100", "--log-every", "10",
            "--diagnostics-every", "50", "--quiet", "--no-gradcheck"]  # fmt: skip
    assert main(["train", *args, "--out", str(out)]) == 0
    with np.load(out / "curves.npz") as curves:
        np.testing.assert_array_equal(curves["diagnostics_steps"], [50, 100])
        for name in ("grad_norm", "norm_test", "snr", "sharpness"):
            assert curves[f"diagnostics_{name}"].shape == (1, 2, 2)
            assert np.isfinite(curves[f"diagnostics_{name}"]).all()
    summary = strict_json(out / "metrics.json")["summary"]["lr=0.1"]
    assert summary["grad_norm"]["median"] > 0 and summary["sharpness"]["n"] == 2
