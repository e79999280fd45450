"""The README's two-process example against one process, as a user runs them:
wall time of the whole ``jaxprop train`` command (start, data, compile, train,
run folder), two processes each pinned to a core of its own (``taskset -c I``,
one device each through ``jp.use_all_cores``) against one process on the same
cores (two devices). Launches alternate (A B, B A, ...); medians and spread.

``python -m benchmarks.processes_command [REPEATS [STEPS]]`` (needs ``taskset``, two
usable cores and the ``mnist1d`` package) writes
``benchmarks/results/<device>-<date>-processes-command.{json,md}``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The README's example (docs/processes.md's MNIST-1D recipe, 32 seeds).
ARGS = [
    "train", "--data", "mnist1d", "--sizes", "40,100,100,10", "--activation",
    "relu", "--output-activation", "identity", "--cost", "softmax_cross_entropy",
    "--optimizer", "adam", "--lr", "0.01", "--batch-size", "100", "--steps",
    "1500", "--seeds", "32",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(pin: str, out: Path, extra=()) -> list[str]:
    return ["taskset", "-c", pin, sys.executable, "-m", "jaxprop", *ARGS,
            "--out", str(out), *extra]  # fmt: skip


def _launch(layout: str, cores: list[int], folder: Path) -> float:
    """Seconds from the first process's start to the last one's exit."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = folder / f"{layout}-{time.monotonic_ns()}"
    if layout == "one":
        commands = [_command(",".join(map(str, cores)), out)]
    else:
        where = f"127.0.0.1:{_free_port()}"
        commands = [
            _command(str(c), out, ["--num-processes", str(len(cores)),
                     "--process-id", str(i), "--coordinator", where])
            for i, c in enumerate(cores)
        ]  # fmt: skip
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
        for c in commands
    ]  # fmt: skip
    errors = [p.communicate(timeout=900)[1] for p in procs]
    seconds = time.perf_counter() - start
    for p, err in zip(procs, errors, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"{layout}: status {p.returncode}: {err[-2000:]}")
    device = json.loads((out / "config.json").read_text())["versions"]["device"]
    train_s = json.loads((out / "metrics.json").read_text())["timing"]["train_s"]
    shutil.rmtree(out)
    return seconds, device, train_s


def main(repeats: int = 3, steps: int | None = None, results: Path | None = None):
    from benchmarks._common import device_name, environment

    if steps is not None:
        ARGS[ARGS.index("--steps") + 1] = str(steps)
    cores = sorted(os.sched_getaffinity(0))[:2]
    if len(cores) < 2 or shutil.which("taskset") is None:
        raise SystemExit("needs taskset and two usable cores")
    times = {"one": [], "two": []}
    trained = {"one": [], "two": []}  # the command's own training seconds
    devices = {}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(repeats):
            for layout in ("one", "two") if r % 2 == 0 else ("two", "one"):
                seconds, devices[layout], train_s = _launch(layout, cores, Path(folder))
                times[layout].append(seconds)
                trained[layout].append(train_s)
                print(f"  {layout}: {seconds:.2f} s, training {train_s:.2f} s "
                      f"({devices[layout]})", flush=True)  # fmt: skip
    env = environment()
    one, two = (statistics.median(times[k]) for k in ("one", "two"))
    t_one, t_two = (statistics.median(trained[k]) for k in ("one", "two"))
    result = {
        "environment": env,
        "command": ["jaxprop", *ARGS],
        "cores": cores,
        "times_s": times,
        "devices": devices,
        "median_s": {"one": one, "two": two},
        "ratio": two / one,
        "ratios_per_repeat": [
            b / a for a, b in zip(times["one"], times["two"], strict=True)
        ],
        "train_s": trained,
        "train_ratio": t_two / t_one,
    }
    steps = ARGS[ARGS.index("--steps") + 1]
    name = f"{device_name(env)}-{env['date']}-processes-command-{steps}"
    path = (results or ROOT / "benchmarks" / "results") / name
    path.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    spread = {k: f"{min(v):.2f}–{max(v):.2f} s" for k, v in times.items()}
    path.with_suffix(".md").write_text(
        f"# The README's two-process example, pinned, against one process\n\n"
        f"{env['cpu']}, cores {cores}; jax {env['jax']}, jaxprop "
        f"{env['jaxprop']}. Wall time of `jaxprop {' '.join(ARGS)}`, "
        f"{repeats} alternating launches of each layout.\n\n"
        f"| layout | devices | median | spread |\n| --- | --- | --- | --- |\n"
        f"| 1 process, `taskset -c {','.join(map(str, cores))}` | "
        f"{devices['one']} | {one:.2f} s | {spread['one']} |\n"
        f"| 2 processes, `taskset -c {cores[0]}` / `-c {cores[1]}` | "
        f"{devices['two']} | {two:.2f} s | {spread['two']} |\n\n"
        f"Two processes / one: {two / one:.3f}× (per repeat: "
        f"{', '.join(f'{x:.3f}' for x in result['ratios_per_repeat'])}).\n\n"
        f"The command's own training time (metrics.json's `timing.train_s`: the "
        f"chunks of steps with their compile), medians: one process "
        f"{t_one:.2f} s, two {t_two:.2f} s, {t_two / t_one:.3f}×.\n"
    )
    print(f"two / one: {two / one:.3f}×; wrote {path}.json and .md")
    return result


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
