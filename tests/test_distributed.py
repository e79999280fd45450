"""Runs across processes (``jax.distributed``) on one CPU machine: two local
processes on 127.0.0.1, CPU collectives by gloo, against a single process.

Each process is a ``tests/_dist_worker.py`` (the library) or ``python -m
jaxprop train`` (the command) with its own XLA device count; every launch has
a timeout, so a hang fails the test instead of blocking the suite.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import jaxprop as jp
from tests._dist_worker import GLOO_MISSING, flat, problem
from tests.helpers import xla_flags

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_dist_worker.py")
TIMEOUT = 120


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(commands, timeout=TIMEOUT, envs=None, meanwhile=None):
    """Runs the commands side by side (each with its ``envs`` entry added to the
    environment, and ``meanwhile()`` here while they run); [(returncode, stdout,
    stderr)]. Every process is killed at ``timeout``; gloo missing skips the test."""
    base = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            c, cwd=ROOT, env=base | (envs[k] if envs else {}),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for k, c in enumerate(commands)
    ]  # fmt: skip
    outs = []
    try:
        if meanwhile is not None:
            meanwhile()
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            outs.append((p.returncode, out, err))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        details = [p.communicate()[1][-2000:] for p in procs]
        pytest.fail(f"a process hung past {timeout} s: {details}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(code == GLOO_MISSING for code, _, _ in outs):
        pytest.skip("gloo CPU collectives are not available in this jaxlib")
    return outs


def assert_all_ok(outs):
    """Every process exited 0; else every failed process's stderr, each its own
    (process 0's alone may only say that another failed)."""
    failed = [(k, code, err[-3000:]) for k, (code, _, err) in enumerate(outs) if code]
    assert not failed, "\n".join(
        f"process {k} (status {c}):\n{e}" for k, c, e in failed
    )


def workers(tmp_path, name, processes, devices, **spec):
    """The commands of ``processes`` workers of ``devices`` devices each."""
    port = free_port()
    out = str(tmp_path / f"{name}-{{process_id}}.npz")
    base = dict(
        devices=devices, processes=processes, port=port, load=None, stop=None,
        save=None, chunks=False, light=False, conv=False, out=out,
    ) | spec  # fmt: skip
    return [
        [sys.executable, str(WORKER), json.dumps(base | {"process_id": i})]
        for i in range(processes)
    ]


def run(*groups, meanwhile=None):
    """Runs groups of workers (``workers(...)``) side by side; the result of each
    group as a dict of NumPy arrays (every process of a group must hold all of
    it, the same bits)."""
    outs = launch([c for g in groups for c in g], meanwhile=meanwhile)
    assert_all_ok(outs)
    results = []
    for group in groups:
        out = json.loads(group[0][2])["out"]
        per_process = []
        for i in range(len(group)):
            with np.load(out.format(process_id=i)) as f:
                per_process.append({k: f[k] for k in f.files})
        for other in per_process[1:]:
            assert_equal(other, per_process[0])
        results.append(per_process[0])
    return results


def assert_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k  # bit for bit, NaNs too


def assert_close(a: dict, b: dict, rtol=1e-12):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-300, err_msg=k)


@pytest.mark.slow  # several seconds (subprocesses or compiles): .ci/run runs it
def test_two_processes_hold_the_result_of_one(tmp_path):
    """``jp.train_seeds`` unchanged in two processes of one device each: every
    process holds the whole result, that of one process (to rounding: one
    device batches the runs in other chunks)."""
    net, keys, x, y, sgd, steps, options = problem(light=True)
    alone = {}
    (two,) = run(
        workers(tmp_path, "two", processes=2, devices=1, light=True),
        meanwhile=lambda: alone.update(
            flat(jp.train_seeds(net, keys, x, y, sgd, steps, **options))
        ),
    )
    assert two[".losses"].shape == (8, 30)
    assert np.isfinite(two[".losses"]).all()
    assert_close(two, alone)


@pytest.fixture(scope="module")
def one_of_two(tmp_path_factory):
    """Minibatches and a learning-rate grid in one process of two devices."""
    (result,) = run(workers(tmp_path_factory.mktemp("one"), "one", 1, devices=2))
    assert result[".losses"].shape == (2, 8, 30)
    return result


@pytest.mark.slow
def test_two_processes_of_one_device_equal_one_process_of_two(tmp_path, one_of_two):
    """The same chunks on the same number of devices: the same bits."""
    (two,) = run(workers(tmp_path, "two", processes=2, devices=1))
    assert_equal(two, one_of_two)


@pytest.mark.slow
def test_a_conv_net_in_two_processes_equals_one_process_of_two_devices(tmp_path):
    """A jp.Network of Conv, MaxPool, Flatten and Dense, over two processes of
    one device each: the bits of one process of two devices."""
    two, one = run(
        workers(tmp_path, "two", processes=2, devices=1, conv=True),
        workers(tmp_path, "one", processes=1, devices=2, conv=True),
    )
    assert two[".losses"].shape == (2, 8, 30) and np.isfinite(two[".losses"]).all()
    assert_equal(two, one)


@pytest.mark.slow
def test_two_processes_of_two_devices(tmp_path):
    """2 × 2 devices, in chunks whose lengths the processes agree: bit for bit
    as 1 × 4."""
    two, four = run(
        workers(tmp_path, "two", processes=2, devices=2, chunks=True),
        workers(tmp_path, "four", processes=1, devices=4),
    )
    assert_equal(two, four)


@pytest.mark.slow
def test_checkpoints_resume_on_another_number_of_processes(tmp_path, one_of_two):
    """A checkpoint written by two processes resumes in one, and one written
    by one process resumes in two, ending as the run that never stopped."""
    by_two, by_one = str(tmp_path / "by-two.npz"), str(tmp_path / "by-one.npz")
    saved, _ = run(
        workers(tmp_path, "save2", processes=2, devices=1, stop=150, save=by_two),
        workers(tmp_path, "save1", processes=1, devices=2, stop=150, save=by_one),
    )
    assert np.isnan(saved["['log'].losses"][..., 15:]).all()
    assert np.isfinite(saved["['log'].losses"][..., :15]).all()
    on_one, on_two = run(
        workers(tmp_path, "resume1", processes=1, devices=2, load=by_two),
        workers(tmp_path, "resume2", processes=2, devices=1, load=by_one),
    )
    assert_equal(on_one, one_of_two)
    assert_equal(on_two, one_of_two)


# ------------------------------------------------------------- the command
RUN = [
    "--data", "moons", "--n-train", "64", "--n-test", "64", "--sizes", "2,6,1",
    "--optimizer", "adam", "--lr", "0.01,0.05", "--steps", "200", "--batch-size",
    "16", "--seeds", "3", "--log-every", "10", "--checkpoint-every", "100",
    "--dtype", "float64", "--quiet",
]  # fmt: skip


def train(*args):
    return [sys.executable, "-m", "jaxprop", "train", *map(str, args)]


def of(port, processes, i, timeout=60):
    """The options that make a command process i of ``processes``."""
    return ["--coordinator", f"127.0.0.1:{port}", "--num-processes", processes,
            "--process-id", i, "--distributed-timeout", timeout]  # fmt: skip


def devices(n):
    return {"XLA_FLAGS": xla_flags(n)}


def assert_docs_close(a, b, rtol=1e-12):
    """Two JSON documents equal, their floats to ``rtol``."""
    if isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= rtol * abs(b), (a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_docs_close(a[k], b[k], rtol)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            assert_docs_close(u, v, rtol)
    else:
        assert a == b


@pytest.mark.slow
def test_the_command_in_two_processes_writes_the_results_of_one(tmp_path):
    """``jaxprop train`` as two processes of one device each writes what one
    process of two devices writes: the same training bits (final.npz,
    curves.npz's losses), the same metrics.json but for the time and rounding
    (the final metrics are computed from the gathered result on one device of
    each process, not across two); only process 0 writes and prints, and
    stdout holds jaxprop's report alone."""
    two, one = tmp_path / "two", tmp_path / "one"
    port = free_port()
    outs = launch(
        [train(*RUN, "--out", two, *of(port, 2, i)) for i in range(2)]
        + [train(*RUN, "--out", one)],
        envs=[devices(1), devices(1), devices(2)],
    )
    assert_all_ok(outs)
    assert "trained 6 runs × 200 steps" in outs[0][1]
    assert "trained" not in outs[1][1] and "results in" not in outs[1][1]
    # Gloo's "[Gloo] Rank 0 is connected to 1 peer ranks" lines go to stderr.
    assert "Gloo" in outs[0][2] and "Gloo" not in outs[0][1] + outs[1][1]
    assert sorted(os.listdir(two)) == sorted(os.listdir(one))
    for name in ("final.npz", "checkpoint.npz", "curves.npz"):
        with np.load(two / name) as a, np.load(one / name) as b:
            for k in a.files:
                if name == "checkpoint.npz" and k == "leaf0":  # seconds trained
                    continue
                if name == "curves.npz" and k.startswith("train_"):
                    np.testing.assert_allclose(a[k], b[k], rtol=1e-12)
                    continue
                assert a[k].tobytes() == b[k].tobytes(), (name, k)
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (two, one)]
    for m in metrics:
        del m["timing"]["train_s"], m["timing"]["run_steps_per_s"]
    assert_docs_close(*metrics)
    config = json.loads((two / "config.json").read_text())
    assert config["versions"]["device"].endswith("× 2 in 2 processes")
    assert config["command"][-6:] == ["--num-processes", "2", "--process-id", "0",
                                      "--distributed-timeout", "60"]  # fmt: skip


@pytest.mark.slow
def test_a_study_in_two_processes_writes_the_study_of_one(tmp_path):
    """``--rule backprop,fa`` across two processes: each rule's folder holds the
    bits one process of two devices trains, and the comparison is the same."""
    two, one = tmp_path / "two", tmp_path / "one"
    study = [*RUN, "--rule", "backprop,fa", "--no-gradcheck"]
    port = free_port()
    outs = launch(
        [train(*study, "--out", two, *of(port, 2, i)) for i in range(2)]
        + [train(*study, "--out", one)],
        envs=[devices(1), devices(1), devices(2)],
        timeout=240,
    )
    assert_all_ok(outs)
    assert "| fa | 0.05 |" in outs[0][1] and "| fa |" not in outs[1][1]
    for rule in ("backprop", "fa"):
        with (
            np.load(two / rule / "final.npz") as a,
            np.load(one / rule / "final.npz") as b,
        ):
            for k in a.files:
                assert a[k].tobytes() == b[k].tobytes(), (rule, k)
    docs = [json.loads((d / "comparison.json").read_text()) for d in (two, one)]
    assert_docs_close(*docs)


def test_process_0_writes_a_study_once_every_process_found_its_folder_free(tmp_path):
    """On a shared file system every process checks the one --out that process
    0 writes: it writes the study only after all agreed, or a process slower to
    check finds the folder taken and the run stops (a CI run did)."""
    from jaxprop._cli.command import make_parser
    from jaxprop._cli.errors import OK, USAGE
    from jaxprop._cli.train import train

    out = tmp_path / "study"
    seen = []  # (status, whether the study was written) at each agreement

    class Process0Of2:  # the other process agrees, then stops the run
        count, index, main, stream = 2, 0, True, None

        def agree(self, status, fingerprint=None):
            seen.append((status, (out / "study.json").exists()))
            return status if len(seen) < 2 else USAGE

    argv = ["train", *map(str, RUN), "--rule", "backprop,fa", "--out", str(out)]
    assert train(make_parser().parse_args(argv), argv, Process0Of2()) == USAGE
    assert seen == [(OK, False), (OK, True)]


@pytest.mark.parametrize(
    "mistake,says",
    [
        (["--data", "NO_SUCH.npz"], "process(es) [1] failed"),
        pytest.param(
            ["--seed", "1"], "started with different --seed (", marks=pytest.mark.slow
        ),
    ],
    ids=["bad-data", "other-seed"],
)
def test_a_mistake_in_one_process_stops_all_with_status_2(tmp_path, mistake, says):
    """Process 1 alone cannot start: every process stops before training, with
    the same status, none waiting for the others."""
    port = free_port()
    args = [*RUN, "--steps", "100000", "--out", tmp_path / "run"]
    mistake = [str(tmp_path / m) if m.endswith(".npz") else m for m in mistake]
    outs = launch(
        [train(*args, *of(port, 2, 0)), train(*args, *mistake, *of(port, 2, 1))],
        envs=[devices(1)] * 2,
        timeout=60,
    )
    assert [code for code, _, _ in outs] == [2, 2], outs
    assert says in outs[0][2]
    if mistake[0] == "--data":
        assert "NO_SUCH.npz" in outs[1][2]
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.slow
def test_a_process_that_dies_stops_the_others(tmp_path):
    """Process 1 killed mid-run: process 0 stops with an error within the
    timeout instead of waiting for it forever."""
    port = free_port()
    out = tmp_path / "run"
    args = [*RUN, "--steps", "200000", "--checkpoint-every", "100", "--out", out]
    env = dict(os.environ, PYTHONPATH=str(ROOT), **devices(1))
    procs = [
        subprocess.Popen(
            train(*args, *of(port, 2, i, timeout=10)), cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (out / "checkpoint.npz").exists():  # training, together
            assert time.monotonic() < deadline and procs[0].poll() is None
            time.sleep(0.2)
        procs[1].kill()
        start = time.monotonic()
        _, err = procs[0].communicate(timeout=TIMEOUT)
        assert procs[0].returncode != 0, err[-3000:]
        assert time.monotonic() - start < 60
        print(err[-3000:])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


@pytest.mark.slow
def test_a_signal_to_one_process_stops_all_with_status_130(tmp_path):
    """SIGTERM to process 1 alone (a node's scheduler, a Ctrl-C in one
    terminal): both processes stop together at the next chunk's end, save a
    checkpoint there (none other is due in this run), exit 130, and process 0
    says how to resume."""
    import signal

    port = free_port()
    out = tmp_path / "run"
    args = [*RUN, "--steps", "2000000", "--checkpoint-every", "1000000", "--out", out]
    env = dict(os.environ, PYTHONPATH=str(ROOT), **devices(1))
    logs = [tmp_path / f"err{i}.txt" for i in range(2)]
    files = [open(log, "w") for log in logs]
    procs = [
        subprocess.Popen(
            train(*args, *of(port, 2, i, timeout=30)), cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=files[i], text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while "2-6-1" not in logs[0].read_text():  # the header: set up, together
            assert time.monotonic() < deadline and procs[0].poll() is None
            time.sleep(0.2)
        time.sleep(3)  # compiled, and training
        assert not (out / "checkpoint.npz").exists()
        procs[1].send_signal(signal.SIGTERM)
        for p in procs:
            p.communicate(timeout=TIMEOUT)
        codes = [p.returncode for p in procs]
        errs = [log.read_text() for log in logs]
        assert codes == [130, 130], [e[-3000:] for e in errs]
        assert f"interrupted; jaxprop train --resume {out}" in errs[0]
        step = jp.load(out / "checkpoint.npz")["['state'].step"]
        assert 0 < step < 1000000  # saved where they stopped
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
        for f in files:
            f.close()
