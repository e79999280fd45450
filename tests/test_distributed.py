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
from pathlib import Path

import numpy as np
import pytest

import jaxprop as jp
from tests._dist_worker import GLOO_MISSING, flat, problem

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_dist_worker.py")
TIMEOUT = 120


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(commands, timeout=TIMEOUT, env=None, meanwhile=None):
    """Runs the commands side by side (and ``meanwhile()`` here while they run);
    [(returncode, stdout, stderr)]. Every process is killed at ``timeout``;
    gloo missing skips the test."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    procs = [
        subprocess.Popen(
            c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
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


def workers(tmp_path, name, processes, devices, **spec):
    """The commands of ``processes`` workers of ``devices`` devices each."""
    port = free_port()
    out = str(tmp_path / f"{name}-{{process_id}}.npz")
    base = dict(
        devices=devices, processes=processes, port=port, load=None, stop=None,
        save=None, chunks=False, light=False, out=out,
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
    for code, _, err in outs:
        assert code == 0, err[-3000:]
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
