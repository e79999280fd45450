"""Experiments: a validated configuration, its data, and a run saved to a folder.

``jaxprop train`` is :func:`run_experiment` on an :class:`ExperimentConfig`. A run
trains every (learning rate, seed) pair side by side with a :class:`Trainer`, in
compiled chunks of steps; between chunks it reports progress and, every
``checkpoint_every`` steps, writes ``checkpoint.npz`` atomically. ``--resume``
loads that checkpoint and continues with the same compiled chunks, so it ends
with the same bits as a run that was never interrupted."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TextIO

import jax

from .._engine.progress import Progress
from .._engine.train import advance_in_chunks, agree_max
from .build import Experiment
from .store import (
    Checkpoint,
    data_fingerprint,
    load_checkpoint,
    prepare_out,
    read_doc,
    readable_results,
    save_checkpoint,
)

#: Seconds between checkpoints when ``checkpoint_every`` is not set.
CHECKPOINT_SECONDS = 60.0


def train_chunks(
    exp: Experiment,
    checkpoint: Checkpoint,
    *,
    progress: Progress | None = None,
    on_checkpoint=None,
    chunk_seconds: float | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
    stop_requested=None,
) -> Checkpoint:
    """Trains from ``checkpoint`` to the end in chunks of about ``chunk_seconds``
    (``jaxprop._engine.train.advance_in_chunks``: any split gives the same bits).

    After each chunk, ``progress`` gets the runs' last logged losses, and
    ``on_checkpoint(checkpoint)`` is called at the end and every
    ``exp.checkpoint_every`` steps (chunks stop there), or, if that is None, at
    the first chunk end ``checkpoint_seconds`` after the last.

    ``stop_requested()``: whether this process was asked to stop (a signal);
    after each chunk every process learns whether any was, and all checkpoint
    and raise ``KeyboardInterrupt`` at that same point (unless the run is
    done; None: never asked).
    """
    steps = exp.trainer.steps
    state, seconds = checkpoint
    start_time = time.perf_counter() - seconds
    last_checkpoint = time.perf_counter()

    def on_chunk(state, losses):
        nonlocal last_checkpoint
        # A collective where the runs span processes: all stop, or none (and
        # save first: every process is at this step).
        stop = stop_requested is not None and bool(
            agree_max(exp.trainer, stop_requested())
        )
        if progress is not None:
            progress.update_losses(state.step, losses)
        if exp.checkpoint_every is None:
            due = time.perf_counter() - last_checkpoint >= checkpoint_seconds
            # Every process checkpoints at the same step (a collective save).
            due = bool(agree_max(exp.trainer, due))
        else:
            due = state.step % exp.checkpoint_every == 0
        if on_checkpoint is not None and (due or stop or state.step == steps):
            on_checkpoint(Checkpoint(state, time.perf_counter() - start_time))
            last_checkpoint = time.perf_counter()
        if stop and state.step < steps:  # after the last step: finish instead
            raise KeyboardInterrupt

    state = advance_in_chunks(
        exp.trainer,
        state,
        on_chunk=on_chunk,
        stop_every=exp.checkpoint_every,
        chunk_seconds=chunk_seconds,
    )
    jax.block_until_ready(state)
    return Checkpoint(state, time.perf_counter() - start_time)


def start(
    exp: Experiment,
    out: Path | None = None,
    *,
    resume: bool = False,
    saved_steps: int | None = None,
    argv=None,
    stream: TextIO | None = None,
    write: bool = True,
    ready=None,
) -> Checkpoint:
    """The checkpoint a run starts from, with ``out`` made ready for it.

    A fresh run (or ``resume`` with no checkpoint yet in ``out``) starts at step
    0 and writes ``out/config.json``; a resumed one loads ``out/checkpoint.npz``
    (``saved_steps``: as for :func:`load_checkpoint`) and rewrites config.json
    if the run is extended. Every error is raised here, before any training.

    Args:
      write: False to check and read only, writing nothing (the processes of a
        run across processes other than process 0, which writes ``out``).
      ready: called once every check of the settings, data and checkpoint has
        passed, before anything is written (where the processes of a run agree
        that each of them can start).

    Raises:
      ValueError: ``out`` is not writable or too small, or its checkpoint does
        not fit the run.
    """
    stream = sys.stderr if stream is None else stream
    if out is not None and resume and (out / "checkpoint.npz").exists():
        saved = (read_doc(out).get("resolved") or {}).get("data_sha256")
        if saved is not None and saved != data_fingerprint(exp.data):
            raise ValueError(
                f"--resume: the data of {exp.config.data!r} changed since the run in "
                f"{out} started (their SHA-256 differs from config.json's); "
                f"restore them, or start a new run."
            )
        try:
            checkpoint = load_checkpoint(out, exp, saved_steps)
        except ValueError as e:
            raise ValueError(f"--resume: {e} {_how_to_go_on(out)}") from None
        if ready is not None:
            ready()
        print(f"resuming {out} at step {checkpoint.state.step}", file=stream)
        if saved_steps is not None and saved_steps != exp.config.steps:
            print(
                f"extending the run from {saved_steps} to {exp.config.steps} steps",
                file=stream,
            )
            if write:
                prepare_out(out, exp, argv, extended_from=saved_steps)
        return checkpoint
    if ready is not None:
        ready()
    if out is not None:
        if resume:
            print(f"{out} has no checkpoint yet: starting from step 0", file=stream)
        if write:
            prepare_out(out, exp, argv)
    return Checkpoint(exp.trainer.init(), 0.0)


def _how_to_go_on(out: Path) -> str:
    """What of ``out`` a checkpoint that cannot be resumed leaves, and the ways on."""
    results = readable_results(out)
    if len(results) == 3:
        intact = (
            "config.json and the finished run's results (final.npz, curves.npz, "
            "metrics.json: jp.load_run reads them) are intact"
        )
    elif results:
        intact = f"config.json, {', '.join(results)} are intact"
    else:
        intact = "config.json is intact"
    return (
        f"{intact}. To go on, start a new run with another --out, or delete "
        f"{out}/checkpoint.npz and run jaxprop train --resume {out} again: that "
        f"trains the run from step 0 in that folder and replaces its results "
        f"(copy them first to keep them)."
    )


def run_experiment(
    exp: Experiment,
    checkpoint: Checkpoint,
    out: Path | None = None,
    *,
    progress: str = "auto",
    stream: TextIO | None = None,
    stop_requested=None,
) -> Checkpoint:
    """Trains a built experiment from ``checkpoint`` (see :func:`start`) to the end.

    With ``out``, ``checkpoint.npz`` is written atomically as the run goes; a
    checkpoint that cannot be written (a full disk) is reported on ``stream``
    and training goes on, the previous checkpoint kept.

    Args:
      exp: from :func:`build`.
      checkpoint: where to start.
      out: result folder, or None to keep nothing.
      progress: a :class:`Progress` mode (``"off"`` for none).
      stream: where progress and messages go (default ``sys.stderr``).
      stop_requested: as for :func:`train_chunks`.

    Returns:
      The final :class:`Checkpoint` (state, whole log, training seconds).
    """
    stream = sys.stderr if stream is None else stream
    bar = Progress(
        exp.config.steps,
        math.prod(exp.trainer.shape),
        start=checkpoint.state.step,
        mode=progress,
        stream=stream,
    )  # closed on the way out, Ctrl-C included, before any message

    def on_checkpoint(c: Checkpoint) -> None:
        try:
            save_checkpoint(out, exp, c)
        except OSError as e:
            print(
                f"jaxprop train: checkpoint at step {c.state.step} not written "
                f"({e.strerror or e}); training goes on, the last checkpoint is "
                f"kept.",
                file=stream,
            )

    with bar:
        return train_chunks(
            exp,
            checkpoint,
            progress=bar,
            on_checkpoint=None if out is None else on_checkpoint,
            stop_requested=stop_requested,
        )
