"""The jaxprop command: end to end on small runs, bad input, resume after a kill."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from matplotlib.image import imread

import jaxprop as jp
from jaxprop import _experiment
from jaxprop._cli import UsageError, main
from jaxprop._cli.command import console
from jaxprop._experiment import build, load_checkpoint, read_config

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
SMALL = [
    "--data", "moons", "--n-train", "64", "--n-test", "64", "--sizes", "2,6,1",
    "--optimizer", "adam", "--lr", "0.01,0.05", "--steps", "200", "--batch-size",
    "16", "--seeds", "3", "--log-every", "10",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _started_backend():
    """The command sets one CPU device per core when it starts JAX; in this
    process JAX is started first, so in-process calls leave the worker's
    device count (and the other tests in it) as they are."""
    jax.devices()


def run_cli(*args, timeout=300, env=None):
    """The command in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "jaxprop", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_png(path: Path):
    assert path.read_bytes()[:8] == PNG
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@pytest.mark.slow  # several seconds (subprocesses or compiles): .ci/run runs it
def test_train_writes_a_complete_result_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert "trained 6 runs × 200 steps" in stdout
    assert stdout.count("eval accuracy median") == 2  # one line per learning rate
    assert "200/200 steps, 6 runs" in stderr  # plain progress lines: not a terminal
    names = {p.name for p in out.iterdir()}
    assert names == {
        "config.json", "metrics.json", "curves.npz", "final.npz", "checkpoint.npz",
        "gradcheck.txt", "gradcheck.png", "loss.png", "eval_accuracy.png",
        "regions.png",
    }  # fmt: skip
    for png in out.glob("*.png"):
        assert_png(png)

    config = json.loads((out / "config.json").read_text())
    assert config["config"]["lr"] == [0.01, 0.05] and config["config"]["seeds"] == 3
    assert config["versions"]["jax"] == jax.__version__
    assert config["command"][:2] == ["jaxprop", "train"]
    assert read_config(out) == build(read_config(out)).config

    # Strict JSON (no NaN), one record per (learning rate, seed).
    metrics = json.loads(
        (out / "metrics.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"),
    )
    assert metrics["headline"] == "eval_accuracy"
    assert [(r["lr"], r["seed"]) for r in metrics["runs"]] == [
        (lr, s) for lr in (0.01, 0.05) for s in range(3)
    ]
    summary = metrics["summary"]["lr=0.05"]["eval_accuracy"]
    assert summary["n"] == 3 and 0.5 < summary["median"] <= 1
    assert summary["q1"] <= summary["median"] <= summary["q3"]

    with np.load(out / "curves.npz") as curves:
        assert curves["losses"].shape == (2, 3, 20)
        np.testing.assert_array_equal(curves["steps"], np.arange(10, 201, 10))
        assert np.all(np.isfinite(curves["losses"]))
        assert curves["eval_accuracy"].shape[:2] == (2, 3)
        np.testing.assert_array_equal(
            curves["eval_accuracy"][..., -1],
            [
                [r["eval_accuracy"] for r in metrics["runs"][i * 3 : i * 3 + 3]]
                for i in (0, 1)
            ],
        )
    assert "PASSED" in (out / "gradcheck.txt").read_text()

    # final.npz reloads bit for bit: it is the checkpointed state's params.
    exp = build(read_config(out))
    state = load_checkpoint(out, exp).state
    assert state.step == 200
    runs = exp.trainer.runs(state)
    like = {"params": runs.params, "opt_state": runs.opt_state}
    final = jp.load(out / "final.npz", like=like)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(like), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert final["params"][0].w.shape == (2, 3, 2, 6)


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_config_file_with_options_overriding_it(tmp_path, capsys):
    config = tmp_path / "exp.toml"
    config.write_text(
        'data = "spirals"\nclasses = 3\nsizes = [2, 8, 3]\n'
        'output-activation = "identity"\ncost = "softmax_cross_entropy"\n'
        "lr = 0.05\nsteps = 100\nseeds = 2\n"
    )
    out = tmp_path / "run"
    args = ["train", "--config", config, "--steps", "60", "--out", out, "--quiet"]
    assert main([str(a) for a in args]) == 0
    assert capsys.readouterr().err.count("\n") == 1  # the header line only
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["data"] == "spirals" and saved["sizes"] == [2, 8, 3]
    assert saved["steps"] == 60  # the option wins over the file
    assert saved["lr"] == [0.05]
    assert_png(out / "regions.png")


def test_train_on_csv_files_without_out(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x.sum(1) > 0).astype(int)
    np.savetxt(tmp_path / "train.csv", np.c_[x, y], delimiter=",", header="a,b,c,y")
    np.savetxt(tmp_path / "test.csv", np.c_[x[:10], y[:10]], delimiter=",")
    code = main([
        "train", "--data", str(tmp_path / "train.csv"), "--eval-data",
        str(tmp_path / "test.csv"), "--steps", "50", "--lr", "0.5", "--quiet",
    ])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "trained 1 runs × 50 steps" in out
    assert re.search(r"eval accuracy [\d.]+ \(one run\)", out)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--optimizer", "adamm"],
            "Unknown --optimizer 'adamm'; did you mean 'adam'? Expected one of",
        ),
        (["--data", "moon"], "--data: unknown dataset 'moon'; did you mean 'moons'?"),
        (["--data", "circles"], "data: unknown dataset 'circles'"),
        (["--data", "mnist"], "data: mnist needs the path of its files: mnist:PATH"),
        (["--data", "fashion_mnist:nowhere"], "data: no such folder or file"),
        (["--data", "missing.npz"], "no such file"),
        (["--data", "BAD_CSV"], "not a table of numbers"),
        (
            ["--data", "IMAGES_NPZ"],
            "x of shape (6, 4, 4); an MLP (sizes) trains on (n, n_in)",
        ),
        (
            ["--cost", "binary_cross_entropy", "--output-activation", "identity"],
            "binary_cross_entropy",
        ),
        (["--sizes", "3,4,1"], "sizes must start with 2"),
        (["--sizes", "2,4,3"], "sizes must end with 1"),
        (
            ["--data", "spirals", "--classes", "3", "--sizes", "2,4,2"],
            "sizes must end with 3",
        ),
        (["--steps", "0"], "steps must be a positive integer"),
        (["--lr", "-0.1"], "lr must be one or more positive numbers"),
        (["--lr", "fast"], "lr must be a number"),
        (["--dtype", "float16"], "Unknown --dtype 'float16'"),
        (["--strategy", "chunk"], "Unknown --strategy 'chunk'; did you mean 'chunked'"),
        (["--config", "BAD_TOML"], "not valid TOML"),
        (["--config", "UNKNOWN_KEY"], "unknown setting 'learning_rate'"),
        (["--config", "TYPO_KEY"], "unknown setting 'feedback_scal'; did you mean"),
        # A file's settings are named as the file spells them.
        (["--config", "KP_TOML"], "kp_decay must be in [0, 1); got 2.0."),
        (["--config", "nowhere.toml"], "--config: cannot read"),
        (["--log-every", "7"], "log_every (7) must divide steps (100)"),
        (["--resume", "NO_RUN"], "--resume: no such folder"),
        (["--resume", "EMPTY"], "config.json' is missing or not a jaxprop"),
        (["--resume", "NO_RUN", "--lr", "5"], "drop --lr"),
        (["--batch-size", "500"], "must not exceed the number of training"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--sizes", "2,4,1", "--layers", "dense1"], "--sizes and --layers: give one"),
        (["--input-shape", "2"], "--input-shape goes with --layers"),
        (
            ["--layers", "dense1", "--input-shape", "3"],
            "input_shape (3,) holds 3 entries per example; the data have 2",
        ),
        (
            ["--layers", "conv8k3,flatten,dense1"],
            "input_shape: data 'xor' are rows of 2 features and layers start with "
            "conv8k3",
        ),
        # The Network's own messages, naming the layer and the shapes.
        (
            ["--layers", "conv8k3,flatten,dense1", "--input-shape", "2"],
            "(input shape (2,)): Conv needs an input (*spatial, channels)",
        ),
        (
            ["--layers", "conv8k3,flatten,dense1", "--input-shape", "2,1"],
            "layers[0] = Conv(features=8, kernel_size=3",
        ),
        (
            ["--layers", "conv2k1,dense1", "--input-shape", "2,1"],
            "Dense needs a flat input (n,); got shape (2, 2)",
        ),
        (
            ["--layers", "conv2k1,flatten,dense3", "--input-shape", "2,1"],
            "layers: the data have 1 target column(s), so the last layer must have "
            "1 outputs; got 3.",
        ),
    ],
)
def test_user_mistakes_are_one_line_and_status_2(tmp_path, capsys, args, message):
    (tmp_path / "bad.csv").write_text("1,2,x\n3,4,y\n5,6\n")
    (tmp_path / "bad.toml").write_text("steps = = 3\n")
    (tmp_path / "key.toml").write_text("learning_rate = 0.1\n")
    (tmp_path / "typo.toml").write_text("feedback_scal = 0.1\n")
    (tmp_path / "kp.toml").write_text('rule = "kolen_pollack"\nkp_decay = 2\n')
    (tmp_path / "made").mkdir()
    np.savez(tmp_path / "images.npz", x=np.zeros((6, 4, 4)), y=np.arange(6) % 2)
    subs = {
        "IMAGES_NPZ": tmp_path / "images.npz",
        "BAD_CSV": tmp_path / "bad.csv",
        "BAD_TOML": tmp_path / "bad.toml",
        "UNKNOWN_KEY": tmp_path / "key.toml",
        "TYPO_KEY": tmp_path / "typo.toml",
        "KP_TOML": tmp_path / "kp.toml",
        "EMPTY": tmp_path / "made",
        "NO_RUN": tmp_path / "empty",
    }
    args = [str(subs.get(a, a)) for a in args]
    base = [] if "--resume" in args else ["--data", "xor", "--steps", "100"]
    code = main(["train", *base, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("jaxprop"), err
    assert message in err and "Traceback" not in err


def test_a_bad_layer_spec_is_quoted_with_a_caret_and_status_2(capsys):
    code = main(["train", "--data", "xor", "--layers", "conv8k3,conx2,dense1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.splitlines() == [
        "jaxprop train: --layers: unknown layer 'conx2' at token 2 (did you mean "
        "'conv'? expected one of ['conv', 'maxpool', 'avgpool', 'flatten', 'dense']):",
        "  conv8k3,conx2,dense1",
        "          ^^^^^",
    ]


def test_train_a_conv_net_on_an_image_npz(tmp_path, capsys):
    """x of shape (n, 4, 4, 1) is read as images with --layers (an MLP refuses
    it); the input shape is the file's."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4, 4, 1))
    np.savez(tmp_path / "images.npz", x=x, y=(x[:, :2].sum((1, 2, 3)) > 0) * 1)
    out = tmp_path / "run"
    code = main([
        "train", "--data", str(tmp_path / "images.npz"), "--layers",
        "conv3k3,maxpool2,flatten,dense1", "--steps", "4", "--out", str(out),
        "--no-gradcheck",
    ])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0
    assert "conv3k3,maxpool2,flatten,dense1 on 4x4x1 tanh/sigmoid mse" in stdout
    doc = json.loads((out / "config.json").read_text())
    assert doc["resolved"]["input_shape"] == [4, 4, 1]
    assert "sizes" not in doc["resolved"]
    assert isinstance(jp.load_run(out).net, jp.Network)


CONV_BASE = "conv25k5s2p1,conv25k3s2p1,conv25k3s2p1,flatten,dense10"


@pytest.mark.slow  # about 20 s (MNIST-1D, compiles, the gradient check)
def test_train_mnist1d_conv_base_and_load_the_run(tmp_path, capsys):
    """MNIST-1D's ConvBase by the command: the input shape (40, 1) inferred,
    the spec and shape recorded, load_run rebuilds the Network."""
    pytest.importorskip("mnist1d")
    out = tmp_path / "run"
    code = main([
        "train", "--data", "mnist1d", "--layers", CONV_BASE, "--activation", "relu",
        "--output-activation", "identity", "--cost", "softmax_cross_entropy",
        "--optimizer", "adam", "--lr", "0.01", "--batch-size", "16", "--steps", "3",
        "--seeds", "2", "--out", str(out),
    ])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert stdout.startswith(f"mnist1d: {CONV_BASE} on 40x1 relu/identity")
    assert "gradient check" in stdout and "PASSED" in stdout
    run = jp.load_run(out)
    assert isinstance(run.net, jp.Network)
    assert run.net.input_shape == (40, 1)
    assert (
        run.net.layers
        == jp.Network((40, 1), _experiment.parse_layers(CONV_BASE)).layers
    )
    assert run.config.layers == CONV_BASE and run.config.sizes is None
    shapes = [(p.w.shape, p.b.shape) for p in run.params]
    assert shapes == [
        ((1, 2, 5, 1, 25), (1, 2, 25)),
        ((1, 2, 3, 25, 25), (1, 2, 25)),
        ((1, 2, 3, 25, 25), (1, 2, 25)),
        ((1, 2, 125, 10), (1, 2, 10)),
    ]
    assert not np.allclose(run.params[0].w[0, 0], run.params[0].w[0, 1])  # 2 seeds
    np.testing.assert_array_equal(run.curves["steps"], [1, 2, 3])


@pytest.mark.slow  # three compiles of a conv net: .ci/run runs it
def test_resume_extends_a_conv_run_as_a_fresh_run_trains(tmp_path, capsys):
    pytest.importorskip("mnist1d")
    out = tmp_path / "run"
    args = [
        "train", "--data", "mnist1d", "--layers",
        "conv4k5s2p1,maxpool2,flatten,dense10", "--output-activation", "identity",
        "--cost", "softmax_cross_entropy",
        "--batch-size", "8", "--steps", "3", "--seeds", "2", "--out", str(out),
        "--no-gradcheck", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    assert main(["train", "--resume", str(out), "--steps", "6", "--quiet"]) == 0
    capsys.readouterr()
    resumed = jp.load_run(out)
    assert resumed.config.steps == 6
    np.testing.assert_array_equal(resumed.curves["steps"], np.arange(1, 7))
    trainer = build(resumed.config).trainer
    fresh = trainer.result(trainer.advance(trainer.init(), 6))
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(fresh.params),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


SLURM_STEP = {
    "SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_NTASKS": "2",
    "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0",
}  # fmt: skip


@pytest.fixture
def no_cluster(monkeypatch):
    """No JAX coordinator or SLURM job step in the environment."""
    for name in ["JAX_COORDINATOR_ADDRESS", *SLURM_STEP]:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--process-id", "1"], "--process-id needs --num-processes N"),
        (["--num-processes", "2"], "--num-processes needs --process-id I"),
        (
            ["--num-processes", "2", "--process-id", "2"],
            "--process-id must be between 0 and 1 (--num-processes 2); got 2",
        ),
        (["--num-processes", "0", "--process-id", "0"], "at least 1; got 0"),
        (
            ["--num-processes", "2", "--process-id", "0"],
            "--num-processes needs --coordinator HOST:PORT",
        ),
        (
            ["--num-processes", "2", "--process-id", "0", "--coordinator", "host"],
            "--coordinator must be HOST:PORT, process 0's host name or address "
            "and a free TCP port (e.g. 10.0.0.1:12345); got 'host'",
        ),
        (
            ["--num-processes", "2", "--process-id", "0", "--coordinator", ":80"],
            "got ':80'",
        ),
        (
            ["--num-processes", "2", "--process-id", "0", "--coordinator", "h:99999"],
            "got 'h:99999'",
        ),
        (["--coordinator", "h:1234"], "--coordinator needs --num-processes N"),
        (["--distributed-timeout", "0"], "at least 1 second; got 0"),
        (["--num-processes", "two"], "invalid int value: 'two'"),
    ],
)
def test_distributed_options_are_checked_before_jax_starts(
    capsys, no_cluster, args, message
):
    """Before any compile or connection: one line, status 2."""
    code = main(["train", "--data", "xor", "--steps", "100", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err


def test_distributed_options_from_flags_slurm_and_jax_variables(
    monkeypatch, no_cluster
):
    from jaxprop._cli import make_parser
    from jaxprop._cli.processes import distributed_args

    def parsed(*args):
        return distributed_args(make_parser().parse_args(["train", *args]))

    assert parsed() is None  # one process
    flags = ["--coordinator", "10.0.0.1:1234", "--num-processes", "4"]
    assert parsed(*flags, "--process-id", "3") == {
        "coordinator_address": "10.0.0.1:1234",
        "num_processes": 4,
        "process_id": 3,
        "cluster_detection_method": "deactivate",
    }
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "[::1]:99")  # JAX's own variable
    two = parsed("--num-processes", "2", "--process-id", "0")
    assert two["coordinator_address"] == "[::1]:99"
    with pytest.raises(UsageError, match="JAX_COORDINATOR_ADDRESS needs --num-proc"):
        parsed()
    for name, value in SLURM_STEP.items():  # srun: JAX reads the job step
        monkeypatch.setenv(name, value)
    assert parsed() == {"coordinator_address": "[::1]:99"}
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
    assert parsed() == {}
    # Options win over the job step.
    assert parsed(*flags, "--process-id", "0")["cluster_detection_method"] == (
        "deactivate"
    )
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # a step of one task
    assert parsed() is None


@pytest.mark.slow  # several seconds (subprocesses or compiles): .ci/run runs it
def test_ctrl_c_stops_with_a_note_on_resuming(tmp_path, capsys, monkeypatch):
    from jaxprop._experiment import driver

    train_chunks = driver.train_chunks

    def interrupted(exp, checkpoint, *, on_checkpoint=None, **kw):
        on_checkpoint(checkpoint)  # a checkpoint was written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "train_chunks", interrupted)
    out = tmp_path / "run"
    assert main(["train", "--steps", "100", "--quiet", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted; jaxprop train --resume {out} continues" in err
    # The folder holds a run now: a new run there is refused.
    assert main(["train", "--steps", "100", "--quiet", "--out", str(out)]) == 2
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err
    monkeypatch.setattr(driver, "train_chunks", train_chunks)
    assert main(["train", "--resume", str(out)]) == 0
    assert "resuming" in capsys.readouterr().err and (out / "final.npz").exists()


def test_check_command(capsys):
    assert main(["check", "--data", "spirals", "--sizes", "2,5,5,2", "--activation",
                 "relu", "--output-activation", "identity", "--cost",
                 "softmax_cross_entropy", "--examples", "16"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "2-5-5-2 relu/identity, softmax_cross_entropy" in out
    assert "Gradient check (float64): PASSED" in out
    assert out.count("| ok") == 6
    assert main(["check", "--examples", "0"]) == 2
    assert "--examples must be at least 1" in capsys.readouterr().err
    assert main(["check", "--dtype", "float6"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "jaxprop check: Unknown --dtype 'float6'; did you mean 'float64'? "
        "Expected one of ['float32', 'float64'].\n"
    )


def test_xor_command_reproduces_the_reference(capsys):
    assert main(["xor"]) == 0
    out = capsys.readouterr().out
    assert "[[0.06029012]" in out and "matches to 1e-3" in out
    assert main(["xor", "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_console_script_and_help(capsys):
    from importlib.metadata import entry_points

    (script,) = [
        e for e in entry_points(group="console_scripts") if e.name == "jaxprop"
    ]
    assert script.load() is console  # pyproject: jaxprop._cli.command:console
    top = run_cli("--help")
    assert top.returncode == 0
    assert all(c in top.stdout for c in ("xor", "train", "check", "bench"))
    for command, flag in (
        ("train", "--resume"),
        ("check", "--examples"),
        ("xor", "--eta"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0 and flag in capsys.readouterr().out
    bad = run_cli("train", "--optimizer", "adamm")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_bench_command_runs_the_suite(capsys, monkeypatch):
    # Importing the suite sets XLA_FLAGS for its own process: restore it after.
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    assert main(["bench", "--help"]) == 0  # the suite's own help
    out = capsys.readouterr().out
    assert "usage: python -m benchmarks" in out and "step-time" in out
    assert main(["bench", "bogus"]) == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
