"""What every study shares: the environment record and the timing method.

Timing method: each contender is called once to compile (its "first call"), then
the timed repeats of all contenders are interleaved, so that a slow phase of a
shared machine falls on all of them alike; every time is taken around
``jax.block_until_ready`` and figures are medians.
"""

from __future__ import annotations

import datetime
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import optax

import jaxprop as jp
from jaxprop._devices import usable_cores

#: Benchmark sizes, from the targets' sizes down to a seconds-long smoke test.
SIZE_NAMES = ("full", "quick", "smoke")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Device, versions and machine facts recorded with every result."""
    device = jax.devices()[0]
    return {
        "date": datetime.date.today().isoformat(),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "n_devices": len(jax.devices()),
        "cpu": cpu_model(),
        # The cores the benchmark may run on (its affinity: taskset), which
        # jp.use_all_cores gives one device each.
        "cpu_count": usable_cores(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None),
        "numpy": np.__version__,
        "optax": optax.__version__,
        "jaxprop": jp.__version__,
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
    }


def device_name(env: dict) -> str:
    """A file-name-friendly device label: ``cpu-2core`` or ``gpu-nvidia-h100-...``."""
    if env["platform"] == "cpu":
        return f"cpu-{env['cpu_count']}core"
    kind = "".join(c if c.isalnum() else "-" for c in env["device_kind"].lower())
    return f"{env['platform']}-{kind.strip('-')}"


def timed(
    contenders: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, list[float]]]:
    """{name: (first call in seconds, steady-state times)} of zero-argument callables.

    Every contender is warmed up (compiled) first; the timed repeats are then
    interleaved across contenders.
    """
    first = {}
    for name, fn in contenders.items():
        start = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - start
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: (first[name], times[name]) for name in contenders}


def calibrate(fn: Callable[[int], object], target_s: float, k_max: int = 2**20) -> int:
    """The smallest power-of-4 repeat count k with ``fn(k)`` taking ≥ target_s.

    ``fn(k)`` runs k iterations inside one compiled call; timing k of them at once
    keeps the ~10 µs dispatch of a call out of a per-iteration time.
    """
    k = 1
    while k < k_max:
        start = time.perf_counter()
        jax.block_until_ready(fn(k))
        if time.perf_counter() - start >= target_s:
            break
        k *= 4
    return k


def median(times: list[float]) -> float:
    return statistics.median(times)
