"""Launching the command's processes: one CPU device per core and x64, joining
the other processes of a run (flags or a SLURM job step, ``jax.distributed``),
agreeing on every outcome, stopping on a scheduler's signal, and keeping
native libraries' prints off stdout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import sys
import traceback
import zlib

from .._devices import use_all_cores
from .errors import FAILED, OK, USAGE, UsageError

#: Seconds a process of a run across processes waits for the others (to start,
#: to answer, to finish) before every process stops with an error.
DISTRIBUTED_TIMEOUT = 300


def _slurm_tasks() -> int:
    """Tasks of the SLURM job step this process is one of (``srun``); 1 outside one.

    JAX's own SLURM detection reads the same variables; a batch script run
    without ``srun`` has no step of several tasks, so it trains alone.
    """
    needed = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID")
    if not all(v in os.environ for v in needed):
        return 1
    try:
        return int(os.environ.get("SLURM_STEP_NUM_TASKS", "1"))
    except ValueError:
        return 1


def _check_address(address: str, where: str) -> str:
    host, sep, port = address.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 2**16):
        raise UsageError(
            f"jaxprop train: {where} must be HOST:PORT, process 0's host name or "
            f"address and a free TCP port (e.g. 10.0.0.1:12345); got {address!r}."
        )
    return address


def distributed_args(args) -> dict | None:
    """``jax.distributed.initialize``'s arguments from ``--coordinator``,
    ``--num-processes`` and ``--process-id``, or from a SLURM job step of several
    tasks when those are absent; None: one process. Checked before JAX starts.

    Raises:
      UsageError: options that do not go together, an id out of range, or a
        malformed address.
    """
    n, i, timeout = args.num_processes, args.process_id, args.distributed_timeout
    if timeout < 1:
        raise UsageError(
            f"jaxprop train: --distributed-timeout must be at least 1 second; "
            f"got {timeout}."
        )
    coordinator = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    where = "--coordinator" if args.coordinator else "JAX_COORDINATOR_ADDRESS"
    if n is None and i is None:
        if _slurm_tasks() > 1:  # JAX reads the rest from the job step
            if coordinator is None:
                return {}
            return {"coordinator_address": _check_address(coordinator, where)}
        if coordinator is not None:
            raise UsageError(
                f"jaxprop train: {where} needs --num-processes N and --process-id I "
                f"(or a SLURM job step of several tasks, which sets them)."
            )
        return None
    if n is None:
        raise UsageError(
            "jaxprop train: --process-id needs --num-processes N (and "
            "--coordinator HOST:PORT)."
        )
    if i is None:
        raise UsageError(
            f"jaxprop train: --num-processes needs --process-id I (this process's "
            f"index, 0 to {max(n, 1) - 1})."
        )
    if n < 1:
        raise UsageError(f"jaxprop train: --num-processes must be at least 1; got {n}.")
    if not 0 <= i < n:
        raise UsageError(
            f"jaxprop train: --process-id must be between 0 and {n - 1} "
            f"(--num-processes {n}); got {i}."
        )
    if coordinator is None:
        raise UsageError(
            "jaxprop train: --num-processes needs --coordinator HOST:PORT, "
            "process 0's host and a free port (the same for every process)."
        )
    return {
        "coordinator_address": _check_address(coordinator, where),
        "num_processes": n,
        "process_id": i,
        # Only what the options say: no cluster's environment changes it.
        "cluster_detection_method": "deactivate",
    }


def join(kwargs: dict, timeout: int) -> None:
    """``jax.distributed.initialize``: joins the other processes (before JAX
    starts its backends). A process that cannot reach them within ``timeout``
    seconds is stopped by JAX's runtime, which says why."""
    import jax

    # CPU devices of several processes talk through gloo (built into jaxlib).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    who = (
        f"process {kwargs['process_id']} of {kwargs['num_processes']}"
        if "num_processes" in kwargs
        else "a process of the SLURM job step"
    )
    where = kwargs.get("coordinator_address", "the job's first host")
    print(
        f"jaxprop train: {who}: joining the others at {where} (waiting up to "
        f"{timeout} s)",
        file=sys.stderr,
        flush=True,
    )
    try:
        jax.distributed.initialize(
            **kwargs,
            initialization_timeout=timeout,
            heartbeat_timeout_seconds=min(timeout, 100),
            shutdown_timeout_seconds=timeout,
        )
    except RuntimeError as e:  # JAX already started (jaxprop's main() in-process)
        raise UsageError(f"jaxprop train: cannot join other processes: {e}") from None


class Processes:
    """The processes of one run, which must agree on every outcome (for one
    process, every method is immediate)."""

    def __init__(self):
        import jax

        self.count, self.index = jax.process_count(), jax.process_index()
        # Where the others' progress and messages go (process 0: the default).
        self.stream = None if self.main else open(os.devnull, "w")

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()

    @property
    def main(self) -> bool:
        """Process 0: it writes ``--out`` and prints progress."""
        return self.index == 0

    def gather(self, *values: int) -> list[tuple[int, ...]]:
        """Every process's ``values`` (a collective: all call it at once)."""
        if self.count == 1:
            return [values]
        import numpy as np
        from jax.experimental import multihost_utils

        rows = multihost_utils.process_allgather(np.array(values, np.uint32))
        return [tuple(int(v) for v in row) for row in rows]

    def agree(self, status: int, fingerprint: tuple[int, ...] | None = None) -> int:
        """The status every process ends with: the largest (OK=0 < FAILED=1 <
        USAGE=2 < INTERRUPTED=130); USAGE if the processes' settings differ.

        ``fingerprint``: :func:`fingerprint`'s checksums (None: not compared).
        Process 0 says which processes failed, or which settings differ.
        """
        parts = fingerprint_parts()
        rows = self.gather(status, *(fingerprint or (0,) * len(parts)))
        failed = [k for k, (s, *_) in enumerate(rows) if s != OK]
        differ = [
            name
            for i, name in enumerate(parts, start=1)
            if len({row[i] for row in rows}) > 1
        ]
        if not failed and differ:
            if self.main:
                print(
                    f"jaxprop train: the processes were started with different "
                    f"{', '.join(differ)} (each must run the same command but "
                    f"for --process-id).",
                    file=sys.stderr,
                )
            return USAGE
        if failed and self.main and status == OK:
            print(
                f"jaxprop train: stopped: process(es) {failed} failed (see their "
                f"messages).",
                file=sys.stderr,
            )
        return max(s for s, *_ in rows)


@functools.cache
def fingerprint_parts() -> tuple[str, ...]:
    """What :func:`fingerprint` checks, in its order: every setting (as its
    option), the data, whether there is an ``--out``, whether it resumes."""
    from .._experiment.config import ExperimentConfig

    names = [f.name for f in dataclasses.fields(ExperimentConfig)]
    return (*(f"--{n.replace('_', '-')}" for n in names), "data", "--out", "--resume")


def fingerprint(config, out, resume, data) -> tuple[int, ...]:
    """Checksums of what every process of a run must share, one per part of
    :func:`fingerprint_parts`: each setting, the data's bits (not their paths,
    which may differ between hosts), whether there is an ``--out`` and whether
    the run resumes."""
    from .._experiment.store import data_fingerprint

    settings = dataclasses.asdict(config)
    for path in ("data", "eval_data"):
        if str(settings.get(path)).endswith((".npz", ".csv")):
            settings[path] = None  # compared through the data's bits
    values = (*settings.values(), data_fingerprint(data), out is None, resume is None)
    return tuple(zlib.crc32(repr(v).encode()) for v in values)


def setup_jax() -> None:
    """One XLA CPU device per core this process may run on (train_seeds splits
    runs over them; :func:`jaxprop.use_all_cores`), and x64.

    Counting the process's CPU affinity, not the machine's cores, lets processes
    pinned with ``taskset`` take one device per pinned core each. Every array
    jaxprop's command makes has an explicit dtype, so 64-bit mode only makes
    float64 available (``--dtype float64``, the gradient check).
    """
    import jax

    try:
        use_all_cores()
    except RuntimeError:  # a backend already started (jaxprop used in-process)
        pass
    jax.config.update("jax_enable_x64", True)


@contextlib.contextmanager
def native_stdout_to_stderr():
    """Sends what native libraries print on file descriptor 1 to stderr, so that
    stdout holds only jaxprop's report. Gloo prints a line ("[Gloo] Rank 0 is
    connected to 1 peer ranks...") to stdout for every group of devices that
    first meets in a collective; Python's ``sys.stdout`` keeps its destination.
    """
    stdout = sys.stdout
    try:
        python_fd = stdout.fileno()
    except (AttributeError, OSError, ValueError):  # None, or without a file
        python_fd = None
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all (closed): nothing to keep apart
        yield
        return
    with contextlib.suppress(AttributeError, OSError, ValueError):
        stdout.flush()
    ours = stdout
    if python_fd == 1:  # Python's own prints keep going where fd 1 went
        ours = open(
            os.dup(saved),
            "w",
            buffering=1,
            encoding=stdout.encoding,
            errors=stdout.errors,
        )
        sys.stdout = ours
    os.dup2(2, 1)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):  # a closed pipe
            if ours is not stdout:
                ours.close()
        if sys.stdout is ours:
            sys.stdout = stdout
        os.dup2(saved, 1)
        os.close(saved)


def run_across_processes(train, distributed: dict, timeout: int) -> int:
    """``jaxprop train`` as one of several processes: every process ends with
    the same status, and none waits for the others longer than the timeout.

    Args:
      train: ``train(group)`` runs the command as one of the :class:`Processes`
        ``group`` and returns its status.
      distributed: :func:`distributed_args`'s arguments of
        ``jax.distributed.initialize``.
      timeout: ``--distributed-timeout``, in seconds.
    """
    import jax

    join(distributed, timeout)
    group = Processes()
    with native_stdout_to_stderr():
        try:
            try:
                status = train(group)
            except Exception:  # say so before JAX's runtime stops every process
                traceback.print_exc()
                print(
                    f"jaxprop train: process {group.index} of {group.count} stopped "
                    f"by the error above; the others stop within "
                    f"--distributed-timeout ({timeout} s).",
                    file=sys.stderr,
                    flush=True,
                )
                return FAILED
            return group.agree(status)
        finally:
            group.close()
            # Waits (up to the timeout) for the others; a process that left
            # early or hangs makes JAX's runtime stop every process with an error.
            jax.distributed.shutdown()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals(count: int):
    """A scheduler's SIGTERM (SLURM, Kubernetes) stops a run as Ctrl-C does.

    One process stops at once (KeyboardInterrupt); several stop together at the
    next chunk's end, as soon as any of them is signalled (an exception
    mid-collective in one would abort them all).

    Args:
      count: the processes of the run.

    Yields:
      None for one process; for several, ``stop_requested()``: whether this
      process was signalled. The previous handlers are back on exit.
    """
    signalled = []

    def stop_at_chunk_end(signum, frame):
        signalled.append(signum)
        signal.signal(signum, _interrupt)  # a second signal stops this one now

    if count == 1:
        handlers = {signal.SIGTERM: _interrupt}
    else:
        handlers = dict.fromkeys((signal.SIGTERM, signal.SIGINT), stop_at_chunk_end)
    previous = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        yield None if count == 1 else lambda: bool(signalled)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
