"""One XLA CPU device per core: ``jp.use_all_cores()``, for scripts and the command.

XLA runs a training loop on one CPU core and makes one CPU device unless told
otherwise; ``jp.train_seeds`` and ``jp.Trainer`` split their runs over the
devices, so a script that wants every core asks for one device per core before
JAX starts its backend (the count is fixed from then on).
"""

from __future__ import annotations

import os
import re

#: The XLA flag that, when the user sets it in ``XLA_FLAGS``, says how many CPU
#: devices to make; ``use_all_cores`` then leaves the count to it.
_FORCE_COUNT = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (``taskset``, a
    scheduler's cgroup cpuset), or every core where the platform has no
    affinity (macOS, Windows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def use_all_cores() -> int:
    """Gives XLA one CPU device per core this process may run on.

    Call it first thing in a script, right after ``import jaxprop as jp`` and
    before any JAX array is made: ``jp.train_seeds`` and ``jp.Trainer`` then
    split their runs over every core. A process pinned to some cores
    (``taskset -c 0 python script.py``, a SLURM task's cpuset) gets one device
    per pinned core, so pinned processes on one machine do not each take them
    all. The count is JAX's ``jax_num_cpu_devices`` setting; it applies to the
    CPU backend only, so on a GPU or TPU machine the accelerators are untouched
    (and still the default devices).

    The user's own count wins: with ``--xla_force_host_platform_device_count=N``
    in ``XLA_FLAGS``, or ``jax_num_cpu_devices`` already set (the
    ``JAX_NUM_CPU_DEVICES`` variable, ``jax.config.update``, or an earlier
    call of this function), nothing changes and that count is returned. So
    calling it twice is harmless.

    Returns:
      The number of CPU devices JAX makes (or, once started, has made).

    Raises:
      RuntimeError: JAX's backend already started (an array was made or a
        computation ran) with the default count: the devices can no longer
        change. A warning would let the script run on one core, silently twice
        as slow or worse; the fix is to move the call up.
    """
    forced = _FORCE_COUNT.findall(os.environ.get("XLA_FLAGS", ""))
    if forced:  # XLA takes the flag's last value
        return int(forced[-1])
    import jax

    chosen = jax.config.jax_num_cpu_devices
    if chosen >= 0:
        return chosen
    n = usable_cores()
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX's check: its backends already started
        started = len(jax.devices("cpu"))
        if started == n:  # what was asked for (one usable core): nothing lost
            return n
        raise RuntimeError(
            f"jp.use_all_cores() came too late: JAX already started with "
            f"{started} CPU device(s), and their number cannot change now. Call "
            f"it first thing, right after `import jaxprop as jp`, before any "
            f"array is made or computed."
        ) from None
    return n
