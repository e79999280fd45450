"""Runs across processes: two processes of one device each against one process
of two devices, the same work on the same machine (issue 14's target: within
1.1×).

Each layout is a fresh set of Python processes (``python -m
benchmarks.processes worker SPEC``): the two-process one joins over
``jax.distributed`` on 127.0.0.1 (CPU collectives by gloo). A worker calls
``jp.train_seeds`` once to compile, then times ``inner`` calls, each started
together on every process (a barrier) and ended when the gathered result is on
the host of process 0; the layouts' launches alternate (A B, B A, ...), and
figures are medians over every timed call. Both layouts split the runs into the
same chunks over two devices, so they return the same bits (checked).

The two-process layout runs twice: as the processes start, and with each
process pinned to a core of its own (``os.sched_setaffinity``, as ``taskset -c
I`` would): XLA sizes a process's thread pools to the cores it may use, so two
unpinned processes each run as many threads as the machine has cores (on the
MNIST-1D recipe's matmuls, 600 steps: 1.46× one process unpinned, 1.12×
pinned, 2026-12-02). Several processes on one machine should be pinned so.

Workloads: XOR 2-2-1 (float32, full-batch SGD) over 65536 seeds, and the
MNIST-1D recipe (40-100-100-10 ReLU, Adam 1e-2, batch 100, float32) over 32
seeds (with the ``mnist1d`` package).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: {workload: (seeds, steps)} per size.
SIZES = {
    "full": {"xor": (65536, 1000), "mnist1d": (32, 1500)},
    "quick": {"xor": (16384, 300), "mnist1d": (8, 300)},
    "smoke": {"xor": (64, 20)},
}
#: Timed calls per launch (after the compiling one).
INNER = 3
#: Seconds a launch may take before it counts as hung.
TIMEOUT = 600
#: {name: (processes, devices per process, each process pinned to its own core)}
LAYOUTS = {
    "1 process × 2 devices": (1, 2, False),
    "2 processes × 1 device": (2, 1, False),
    "2 processes × 1 device, pinned": (2, 1, True),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _xla_flags(devices: int) -> str:
    """The caller's XLA_FLAGS with ``devices`` CPU devices per process."""
    count = "--xla_force_host_platform_device_count"
    kept = os.environ.get("XLA_FLAGS", "").split()
    kept = [f for f in kept if not f.startswith(count)]
    return " ".join([*kept, f"{count}={devices}"])


def _launch(
    workload: str, seeds: int, steps: int, processes: int, devices: int, pin: bool
):
    """One launch of a layout; process 0's report (times, digest of the result)."""
    port = _free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        XLA_FLAGS=_xla_flags(devices),
    )
    spec = dict(workload=workload, seeds=seeds, steps=steps, processes=processes,
                port=port, inner=INNER, pin=pin)  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.processes", "worker",
             json.dumps(spec | {"process_id": i})],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]  # fmt: skip
    reports = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            if p.returncode != 0:
                raise RuntimeError(f"a worker failed ({p.returncode}): {err[-2000:]}")
            line = next(l for l in out.splitlines() if l.startswith("REPORT "))
            reports.append(json.loads(line[len("REPORT ") :]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    if len({r["digest"] for r in reports}) != 1:
        raise RuntimeError("the processes of one launch hold different results")
    return reports[0]


def bench_processes(size: str, repeats: int) -> dict:
    """Seconds per ``train_seeds`` call of each layout, per workload, same run."""
    from benchmarks._common import median

    workloads = dict(SIZES[size])
    notes = {}
    if "mnist1d" in workloads:
        try:
            import mnist1d  # noqa: F401
        except ImportError:
            del workloads["mnist1d"]
            notes["mnist1d"] = "skipped: pip install mnist1d"
    rows = []
    for workload, (seeds, steps) in workloads.items():
        reports = {name: [] for name in LAYOUTS}
        for r in range(repeats):
            order = list(LAYOUTS) if r % 2 == 0 else list(LAYOUTS)[::-1]
            for name in order:
                reports[name].append(_launch(workload, seeds, steps, *LAYOUTS[name]))
        digests = {rep["digest"] for name in LAYOUTS for rep in reports[name]}
        one = None
        for name in LAYOUTS:
            times = [t for rep in reports[name] for t in rep["times_s"]]
            row = {
                "workload": workload,
                "seeds": seeds,
                "steps": steps,
                "layout": name,
                "median_s": median(times),
                "first_call_s": median([rep["first_s"] for rep in reports[name]]),
                "times_s": times,
                "seed_steps_per_s": seeds * steps / median(times),
                "same_bits": len(digests) == 1,
            }
            one = one or row["median_s"]
            row["vs_one_process"] = row["median_s"] / one
            rows.append(row)
            print(
                f"  {workload} {seeds} seeds × {steps} steps, {name}: "
                f"{row['median_s']:.3f} s ({row['seed_steps_per_s']:.3g} "
                f"seed-steps/s), {row['vs_one_process']:.3f}× one process"
                f"{'' if row['same_bits'] else ' (DIFFERENT BITS)'}"
            )
    return {"inner": INNER, "rows": rows, "notes": notes}


# ------------------------------------------------------------------ worker
def _workload(name: str, seeds: int, steps: int):
    """``run() -> TrainResult`` of a workload."""
    import jax
    import optax

    import jaxprop as jp

    keys = jax.random.split(jax.random.key(0), seeds)
    log_every = steps // 10 if steps % 10 == 0 else steps
    if name == "xor":
        net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
        x, y = jp.data.xor()
        sgd = optax.sgd(0.5)
        return lambda: jp.train_seeds(
            net, keys, x, y, sgd, steps, scheme="uniform01", dtype="float32",
            log_every=log_every,
        )  # fmt: skip
    data = jp.data.mnist1d()
    sizes = (40, 100, 100, 10)
    net = jp.MLP(sizes, "relu", "identity", "softmax_cross_entropy", "mean")
    adam = optax.adam(1e-2)
    return lambda: jp.train_seeds(
        net, keys, data.x, data.y, adam, steps, batch_size=100, dtype="float32",
        log_every=log_every,
    )  # fmt: skip


def _worker(spec: dict) -> None:
    if spec.get("pin"):  # process i on core i: its XLA thread pools size to it
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[spec["process_id"] % len(cores)]})
    import jax

    if spec["processes"] > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            f"127.0.0.1:{spec['port']}",
            spec["processes"],
            spec["process_id"],
            cluster_detection_method="deactivate",
            initialization_timeout=120,
            shutdown_timeout_seconds=120,
        )
    import numpy as np
    from jax.experimental import multihost_utils

    def together():
        if spec["processes"] > 1:
            multihost_utils.sync_global_devices("benchmarks.processes")

    try:
        run = _workload(spec["workload"], spec["seeds"], spec["steps"])
        together()
        start = time.perf_counter()
        result = jax.block_until_ready(run())
        first = time.perf_counter() - start
        times = []
        for _ in range(spec["inner"]):
            together()
            start = time.perf_counter()
            result = jax.block_until_ready(run())
            times.append(time.perf_counter() - start)
        losses = np.asarray(result.losses)
        report = {
            "first_s": first,
            "times_s": times,
            "digest": hashlib.sha256(losses.tobytes()).hexdigest(),
            "devices": len(jax.devices()),
        }
        print("REPORT " + json.dumps(report), flush=True)
    finally:
        if spec["processes"] > 1:
            jax.distributed.shutdown()


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        raise SystemExit("usage: python -m benchmarks processes (this is its worker)")
    _worker(json.loads(sys.argv[2]))
