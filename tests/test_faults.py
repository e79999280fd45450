"""Fault injection: killed, half-written, diverging and full-disk runs of
``jaxprop train`` end with every result a user would want and a clear message.

Slow (a dozen processes): behind the ``faults`` marker, run by ``.ci/run`` after
the default suite (``python -m pytest -m faults``).
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxprop as jp
from jaxprop import _experiment, _io
from jaxprop._cli import main
from jaxprop._experiment import build, load_checkpoint, read_config
from tests.helpers import xla_flags

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("_fault_driver.py")
RUN = [
    "--data", "moons", "--n-train", "64", "--n-test", "64", "--sizes", "2,8,1",
    "--optimizer", "adam", "--lr", "0.01,0.05", "--seeds", "4", "--batch-size",
    "16", "--steps", "3000", "--log-every", "50", "--checkpoint-every", "500",
    "--quiet",
]  # fmt: skip
#: Some seeds of the larger learning rate diverge, at different steps.
MIXED = [
    "--data", "moons", "--sizes", "2,16,16,1", "--activation", "relu",
    "--output-activation", "identity", "--reduction", "sum", "--optimizer",
    "momentum", "--lr", "0.04,0.1", "--seeds", "8", "--steps", "400",
    "--batch-size", "16", "--log-every", "10", "--quiet",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _started_backend():
    jax.devices()


def command(*args, fault="none", env=None):
    """`jaxprop train ARGS` in its own process (with a fault injected)."""
    return [sys.executable, str(DRIVER), fault, "train", *map(str, args)]


def run(*args, fault="none", timeout=300):
    return subprocess.run(
        command(*args, fault=fault),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_same_files(a: Path, b: Path):
    """final.npz and curves.npz equal bit for bit, metrics.json's runs equal."""
    for name in ("final.npz", "curves.npz"):
        with np.load(a / name) as x, np.load(b / name) as y:
            assert x.files == y.files
            for k in x.files:  # bit for bit (the zip headers hold write times)
                assert x[k].tobytes() == y[k].tobytes(), (name, k)
    runs = [json.loads((d / "metrics.json").read_text())["runs"] for d in (a, b)]
    assert runs[0] == runs[1]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every interrupted one must end as."""
    out = tmp_path_factory.mktemp("straight") / "run"
    done = run(*RUN, "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.parametrize(
    "fault", ["kill-before-checkpoint", "kill-mid-write", "kill-before-results"]
)
def test_killed_at_a_fault_point_then_resumed(tmp_path, straight, fault):
    out = tmp_path / "run"
    killed = run(*RUN, "--out", out, fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (out / "config.json").exists() and not (out / "metrics.json").exists()
    if fault == "kill-before-checkpoint":
        assert not (out / "checkpoint.npz").exists()
    else:  # the last complete checkpoint survived the kill
        exp = build(read_config(out))
        step = load_checkpoint(out, exp).state.step
        assert step == (500 if fault == "kill-mid-write" else 3000)
    if fault == "kill-mid-write":  # the half-written file is a stray temporary
        assert [p.name for p in out.glob(".checkpoint.npz.*.tmp")]
    resumed = run("--resume", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert_same_files(out, straight)
    listed = resumed.stdout.splitlines()[-1]
    assert listed.startswith("results in") and ".tmp" not in listed


def test_killed_at_a_random_moment_then_resumed(tmp_path, straight, request):
    """SIGKILL at a random time (seeded by the test id) while the run goes."""
    rng = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
    for trial in range(2):
        out = tmp_path / f"run{trial}"
        proc = subprocess.Popen(
            command(*RUN, "--out", out),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Once the folder exists the run has compiled or is compiling; then a
        # random moment within about the run's length.
        deadline = time.monotonic() + 120
        while not (out / "config.json").exists() and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        resumed = run("--resume", out)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert_same_files(out, straight)


def test_runs_resume_on_another_device_count(tmp_path, straight):
    """Killed with one device per core, resumed with one device: equal to rounding."""
    out = tmp_path / "run"
    killed = run(*RUN, "--out", out, fault="kill-before-results")
    assert killed.returncode == -signal.SIGKILL
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    resumed = subprocess.run(
        command("--resume", out), cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with np.load(out / "curves.npz") as a, np.load(straight / "curves.npz") as b:
        np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5)


def test_a_grid_where_every_seed_diverges(tmp_path, capsys):
    out = tmp_path / "run"
    args = MIXED[:-1] + ["--lr", "10", "--quiet"]  # the last --lr wins
    assert main(["train", *args, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    s = metrics["summary"]["lr=10"]
    assert s["diverged"] == 8 and s[metrics["headline"]]["n"] == 0
    assert "8/8 diverged" in stdout and "every run diverged" in stdout
    for name in ("loss.png", f"{metrics['headline']}.png", "regions.png"):
        assert (out / name).stat().st_size > 1000


def test_seeds_that_diverge_at_different_steps_leave_the_others_alone(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *MIXED, "--out", str(out)]) == 0
    run_ = jp.load_run(out)
    diverged = run_.curves["diverged"]
    at = run_.curves["diverged_at"][diverged]
    assert diverged[1].any() and not diverged[1].all()  # NaN in some runs only
    assert len(set(at.tolist())) > 1  # at different steps
    assert all(np.isfinite(l).all() for l in jax.tree.leaves(run_.params))
    # A healthy run of the diverging learning rate is the run trained alone.
    healthy = int(np.flatnonzero(~diverged[1])[0])
    exp = build(read_config(out))
    keys = jax.random.split(jax.random.key(0), 8)[healthy : healthy + 1]
    alone = jp.train_seeds(
        exp.net,
        keys,
        exp.data.x,
        exp.data.y,
        _experiment.make_optimizer(exp.config),
        400,
        batch_size=16,
        log_every=10,
        dtype="float32",
        hparams={"learning_rate": np.array([0.1], np.float32)},
    )
    np.testing.assert_allclose(
        run_.curves["losses"][1, healthy], alone.losses[0, 0], rtol=1e-4
    )
    metrics = json.loads((out / "metrics.json").read_text())
    s = metrics["summary"]["lr=0.1"]
    assert s["diverged"] == int(diverged[1].sum())
    assert s["diverged_at"]["first"] < s["diverged_at"]["last"]
    assert s[metrics["headline"]]["n"] == 8 - s["diverged"]


def test_a_disk_that_fills_up_mid_run(tmp_path, capsys, monkeypatch):
    """A checkpoint that cannot be written is reported and training goes on; results
    that cannot be written are reported with the summary, and --resume writes them."""
    out = tmp_path / "run"
    save, calls = _io.save, []

    def full_on_second(path, tree, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(path, tree, **kwargs)

    monkeypatch.setattr(_experiment.store, "save", full_on_second)
    assert main(["train", *RUN, "--steps", "1500", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "checkpoint at step 1000 not written (No space left on device)" in err
    assert (out / "metrics.json").exists()

    out2 = tmp_path / "run2"

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_experiment.store, "save", save)
    monkeypatch.setattr(_experiment.store, "write_json", no_room)
    code = main(["train", *RUN, "--steps", "500", "--out", str(out2)])
    captured = capsys.readouterr()
    assert code == 2  # config.json cannot be written: refused before training
    assert "--out: cannot write to" in captured.err

    write_results = _experiment.write_results
    monkeypatch.undo()
    monkeypatch.setattr(_experiment, "write_results", no_room)
    assert main(["train", *RUN, "--steps", "500", "--out", str(out2)]) == 1
    captured = capsys.readouterr()
    assert "could not write the results" in captured.err
    assert "Traceback" not in captured.err
    assert "eval accuracy median" in captured.out  # the summary is still printed
    monkeypatch.setattr(_experiment, "write_results", write_results)
    assert main(["train", "--resume", str(out2), "--quiet"]) == 0
    assert (out2 / "metrics.json").exists()
