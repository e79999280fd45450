"""The ``jaxprop`` command: ``jaxprop {xor,train,check,bench} [options]``.

A user mistake (an unknown option value, an unreadable data file, a cost that
does not fit the output activation) prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import os
import signal
import sys
import traceback
import warnings
import zlib
from pathlib import Path

from ._experiment import FIELDS

#: Exit statuses.
OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A mistake in the command line, reported in one line with status 2."""


@contextlib.contextmanager
def _user_errors(command: str):
    """Turns the ValueError/TypeError of jaxprop's checks into a UsageError.

    Only around reading the command line, the settings and the data, and building
    the network and trainer: an error while training is a bug, with a traceback.
    """
    try:
        yield
    except (ValueError, TypeError) as e:
        raise UsageError(f"jaxprop {command}: {e}") from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (no usage dump) and no SystemExit."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


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


def _distributed_args(args) -> dict | None:
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


def _join(kwargs: dict, timeout: int) -> None:
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


class _Processes:
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

        ``fingerprint``: :func:`_fingerprint`'s checksums (None: not compared).
        Process 0 says which processes failed, or which settings differ.
        """
        parts = _fingerprint_parts()
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
def _fingerprint_parts() -> tuple[str, ...]:
    """What :func:`_fingerprint` checks, in its order: every setting (as its
    option), the data, whether there is an ``--out``, whether it resumes."""
    from ._experiment.config import ExperimentConfig

    names = [f.name for f in dataclasses.fields(ExperimentConfig)]
    return (*(f"--{n.replace('_', '-')}" for n in names), "data", "--out", "--resume")


def _fingerprint(config, out, resume, data) -> tuple[int, ...]:
    """Checksums of what every process of a run must share, one per part of
    :func:`_fingerprint_parts`: each setting, the data's bits (not their paths,
    which may differ between hosts), whether there is an ``--out`` and whether
    the run resumes."""
    from ._experiment.store import data_fingerprint

    settings = dataclasses.asdict(config)
    for path in ("data", "eval_data"):
        if str(settings.get(path)).endswith((".npz", ".csv")):
            settings[path] = None  # compared through the data's bits
    values = (*settings.values(), data_fingerprint(data), out is None, resume is None)
    return tuple(zlib.crc32(repr(v).encode()) for v in values)


def _setup_jax() -> None:
    """One XLA CPU device per core (train_seeds splits runs over them), and x64.

    Every array jaxprop's command makes has an explicit dtype, so 64-bit mode only
    makes float64 available (``--dtype float64``, the gradient check).
    """
    import jax

    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        try:
            jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
        except RuntimeError:  # a backend already started (jaxprop used in-process)
            pass
    jax.config.update("jax_enable_x64", True)


# ------------------------------------------------------------------ options
_HELP = {
    "data": "xor, moons, spirals, blobs, mnist1d, digits (scikit-learn's 8x8 "
    "digits), mnist:PATH or fashion_mnist:PATH (a folder of the four IDX files, "
    "gzipped or not, or a Keras-style .npz; nothing is downloaded), or PATH.npz "
    "(arrays x, y) / PATH.csv (targets in the last column)",
    "eval_data": "held-out PATH.npz/.csv, for file data only (the built-in data "
    "sets, mnist and fashion_mnist bring their own test split; xor has none)",
    "n_train": "training examples of moons/spirals/blobs (default 200)",
    "n_test": "test examples of moons/spirals/blobs (default 1000)",
    "classes": "classes of spirals (default 2) and blobs (default 3)",
    "data_seed": "seed of moons/spirals/blobs (default 0)",
    "sizes": "layer widths, e.g. 2,8,1 (default: n_in,8,n_out)",
    "activation": "hidden activation (default tanh)",
    "output_activation": "output activation (default sigmoid)",
    "cost": "mse, binary_cross_entropy, softmax_cross_entropy or hinge (labels ±1, "
    "identity output) (default mse)",
    "reduction": "sum or mean over the batch (default mean)",
    "init": "initialization scheme (default: the activation's)",
    "optimizer": "sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad, lion "
    "(default sgd)",
    "lr": "learning rate, or a comma-separated grid: every seed is trained at each "
    "(default 0.1)",
    "momentum": "momentum in [0, 1), or β₁ for adam/adamw/lion (default 0.9, "
    "0 for rmsprop; momentum, nesterov, rmsprop, adam, adamw and lion only)",
    "steps": "training steps (default 1000); with --resume, a larger number "
    "extends the saved run",
    "batch_size": "minibatch size (default: the full batch)",
    "seeds": "networks trained side by side, one per seed (default 1)",
    "seed": "seed of the first network's key (default 0)",
    "grad": "manual (the δ backward pass) or autodiff (jax.grad) (default manual; "
    "the same as --rule backprop/autodiff)",
    "rule": "credit-assignment rule: backprop, autodiff, fa (or feedback_alignment), "
    "dfa (direct_feedback_alignment), sign (sign_symmetry), kp (kolen_pollack) "
    "(default backprop)",
    "feedback_scale": "fa/dfa/kp: random feedback drawn from U[-s, s] (default "
    "1/sqrt of the fed-back width)",
    "kp_lr": "kp: learning rate of the feedback update (default: --lr, one value)",
    "kp_decay": "kp: weight decay of the feedback update, in [0, 1) (default 0.001)",
    "kp_paired": "kp: true (the default with --optimizer sgd) trains with the SGD "
    "whose weight decay matches the feedback's, so W - B shrinks as "
    "(1 - decay)^t; false: the optimizer alone",
    "clip_norm": "DP-SGD: clip each example's update to this norm (with "
    "--noise-multiplier; any rule but autodiff)",
    "noise_multiplier": "DP-SGD: Gaussian noise of std noise_multiplier × clip_norm "
    "on the clipped sum",
    "delta": "DP-SGD: the δ at which metrics.json reports ε (default 1e-5)",
    "alignment_every": "steps between measures of the rule's alignment with "
    "backprop, for fa/dfa/sign/kp (default ~1/20 of the run)",
    "dtype": "float32 or float64 (default float32)",
    "strategy": "how seeds share the devices: auto, vmap, sequential, chunked",
    "chunk_size": "runs per vmapped chunk (with --strategy chunked)",
    "log_every": "steps per logged loss (default: about 1/200 of the run)",
    "eval_every": "steps between evaluations on the test split (default ~1/20)",
    "checkpoint_every": "steps between checkpoints in --out (default: every minute)",
}


def _add_config_options(parser, fields) -> None:
    for name in fields:
        flag = "--" + name.replace("_", "-")
        metavar = name.upper().replace("_", "-")
        parser.add_argument(
            flag, dest=name, default=None, metavar=metavar, help=_HELP[name]
        )


def _config_values(args, fields) -> dict:
    """Settings from --config FILE.toml, overridden by the options given."""
    from ._experiment import read_toml

    values = read_toml(args.config) if getattr(args, "config", None) else {}
    values.update({k: getattr(args, k) for k in fields if getattr(args, k) is not None})
    return values


def _option_names(args, fields) -> dict[str, str]:
    """``make_config``'s names of the settings: options (``--kp-lr``), but for
    those read from --config, which keep their key, as the file spells them."""
    from ._experiment import read_toml

    in_file = set(read_toml(args.config)) if getattr(args, "config", None) else set()
    return {
        k: "--" + k.replace("_", "-")
        for k in fields
        if getattr(args, k) is not None or k not in in_file
    }


# ------------------------------------------------------------------ commands
def _xor(args) -> int:
    from . import reference

    with _user_errors("xor"):
        reference.check_arguments(args)
    reference.run(args)
    return OK


_CHECK_FIELDS = (
    "data",
    "n_train",
    "classes",
    "data_seed",
    "sizes",
    "activation",
    "output_activation",
    "cost",
    "reduction",
    "init",
    "seed",
)


def _check(args) -> int:
    import jax

    from ._experiment import build, gradient_check, make_config
    from ._experiment.config import DTYPES
    from ._validate import choice

    examples = args.examples
    with _user_errors("check"):
        if examples < 1:
            raise ValueError(f"--examples must be at least 1; got {examples}.")
        choice(args.dtype, "--dtype", DTYPES)
        values = _config_values(args, _CHECK_FIELDS) | {"dtype": args.dtype}
        exp = build(make_config(values, names=_option_names(args, _CHECK_FIELDS)))
    config = exp.config
    check = gradient_check(exp, n=examples, dtype=args.dtype)
    net = exp.net
    sampled = (
        ""
        if check.numeric_entries is None
        else f", finite differences at {check.numeric_entries} random entries per array"
    )
    print(
        f"{'-'.join(map(str, net.sizes))} {net.activation}/{net.output_activation}, "
        f"{net.cost} ({net.reduction}), {check.examples} examples "
        f"of {config.data}, seed {config.seed}'s initial params, {args.dtype} "
        f"on {jax.devices()[0].platform}{sampled}"
    )
    print(check.report)
    return OK if check.report.passed else FAILED


_TRAIN_FIELDS = tuple(FIELDS)  # every setting of ExperimentConfig
_STEPS = {"steps": "--steps"}


def _train(args, argv, group: _Processes | None = None) -> int:
    """``jaxprop train``: one process, or one of the ``group`` (every process
    runs the same steps; process 0 writes ``--out`` and prints)."""
    from ._experiment import (
        absolute_paths,
        build,
        check_out_is_free,
        extend_config,
        make_config,
        read_config,
        start,
    )

    group = _Processes() if group is None else group
    agreed = False  # whether this process reached the agreement before writing
    fingerprint = None

    def ready():  # every check passed here: do all processes agree?
        nonlocal agreed
        agreed = True
        if group.agree(OK, fingerprint) != OK:
            raise UsageError("")  # the failing process said why

    status, message = OK, ""
    try:
        with _user_errors("train"):
            saved_steps = None
            if args.resume is not None:
                extra = [
                    f"--{k.replace('_', '-')}"
                    for k in _TRAIN_FIELDS
                    if k != "steps" and getattr(args, k) is not None
                ]
                extra += [
                    f for f in ("--config", "--out") if getattr(args, f[2:]) is not None
                ]
                if extra:
                    raise UsageError(
                        f"jaxprop train: --resume takes every setting from "
                        f"{args.resume}/config.json (only --steps can extend it); "
                        f"drop {', '.join(extra)}."
                    )
                out = Path(args.resume)
                if not out.is_dir():
                    raise ValueError(f"--resume: no such folder {str(out)!r}.")
                if args.steps is None:
                    config = read_config(out)
                else:
                    steps = make_config({"steps": args.steps}, names=_STEPS).steps
                    config, saved_steps = extend_config(out, steps)
            else:
                names = _option_names(args, _TRAIN_FIELDS)
                config = make_config(_config_values(args, _TRAIN_FIELDS), names=names)
                config = absolute_paths(config)  # config.json reruns from anywhere
                out = None if args.out is None else Path(args.out)
                if out is not None and (out / "checkpoint.npz").exists():
                    raise ValueError(
                        f"--out: {str(out)!r} already holds a run; continue it with "
                        f"--resume {out}, or choose another folder."
                    )
                if out is not None:
                    check_out_is_free(out)
                if out is None and config.checkpoint_every is not None:
                    raise ValueError(
                        f"{names.get('checkpoint_every', 'checkpoint_every')} needs "
                        f"--out DIR (checkpoints are written there)."
                    )
            exp = build(config)
            if group.count > 1:
                fingerprint = _fingerprint(config, out, args.resume, exp.data)
            checkpoint = start(
                exp, out, resume=args.resume is not None, saved_steps=saved_steps,
                argv=argv, write=group.main, ready=ready, stream=group.stream,
            )  # fmt: skip
    except UsageError as e:
        status, message = USAGE, str(e)
    if message:
        print(message, file=sys.stderr)
    if not agreed:  # failed before the agreement: the others wait in it
        status = group.agree(status)
    # ... and once more: process 0's writes of --out may have failed.
    status = group.agree(status)
    if status != OK:
        return status
    return _run(args, exp, checkpoint, out, group)


def _run(args, exp, checkpoint, out, group) -> int:
    from ._experiment import run_experiment

    config = exp.config
    quiet = args.quiet or not group.main
    lead = "×".join(map(str, exp.trainer.shape))
    net = exp.net
    on = f" over {group.count} processes" if group.count > 1 else ""
    if group.main:
        print(
            f"{config.data}: {'-'.join(map(str, net.sizes))} {net.activation}/"
            f"{net.output_activation} {net.cost}, {config.optimizer} lr "
            f"{','.join(f'{x:g}' for x in config.lr)}, {config.steps} steps, "
            f"{config.seeds} seeds ({lead} runs, {exp.trainer.strategy[0]}{on}), "
            f"rule "
            f"{config.rule or {'autodiff': 'autodiff'}.get(config.grad, 'backprop')}, "
            f"{config.dtype}",
            file=sys.stderr if args.quiet else sys.stdout,
        )
    # A scheduler's SIGTERM (SLURM, Kubernetes) stops a run as Ctrl-C does. One
    # process stops at once; several stop together at the next chunk's end, as
    # soon as any of them is signalled (an exception mid-collective in one
    # would abort them all).
    signalled = []

    def stop_at_chunk_end(signum, frame):
        signalled.append(signum)
        signal.signal(signum, _interrupt)  # a second signal stops this one now

    if group.count == 1:
        handlers = {signal.SIGTERM: _interrupt}
    else:
        handlers = dict.fromkeys((signal.SIGTERM, signal.SIGINT), stop_at_chunk_end)
    previous = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        final = run_experiment(
            exp,
            checkpoint,
            out,
            progress="off" if quiet else "auto",
            stream=group.stream,
            stop_requested=None if group.count == 1 else lambda: bool(signalled),
        )
    except KeyboardInterrupt:
        if not group.main:
            pass
        elif out is None:
            where = " (nothing was saved: no --out)"
        elif (out / "checkpoint.npz").exists():
            where = f"; jaxprop train --resume {out} continues from the last checkpoint"
        else:
            where = (
                f" before the first checkpoint: nothing can be resumed yet "
                f"(jaxprop train --resume {out} starts it again from step 0)"
            )
        if group.main:
            print(f"jaxprop train: interrupted{where}.", file=sys.stderr)
        return INTERRUPTED
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return _finish(exp, final, out, gradcheck=not args.no_gradcheck, main=group.main)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _finish(exp, final, out, gradcheck: bool, main: bool = True) -> int:
    """Result files (with --out) and the summary; a folder that can no longer
    be written is reported, with the summary still printed.

    Across processes every process computes the results and the gradient check
    (their gathers are collectives); process 0 (``main``) writes and prints.
    """
    from ._experiment import (
        gradient_check,
        results_doc,
        write_gradient_check,
        write_results,
    )

    status = OK
    results = results_doc(exp, final)
    check = gradient_check(exp) if out is not None and gradcheck else None
    if not main:
        return OK if check is None or check.report.passed else FAILED
    if out is not None:
        try:
            write_results(out, exp, final, results)
        except OSError as e:
            print(
                f"jaxprop train: could not write the results to {out} "
                f"({e.strerror or e}); checkpoint.npz holds the finished run: "
                f"jaxprop train --resume {out} writes them once there is room.",
                file=sys.stderr,
            )
            status = FAILED
    _print_summary(exp, final, results[0])
    if out is not None and status == OK:
        if check is not None:
            try:
                write_gradient_check(out, exp, check)
            except OSError as e:
                print(
                    f"jaxprop train: gradient check not written ({e.strerror or e}).",
                    file=sys.stderr,
                )
            else:
                print(check.describe() + f" (table in {out}/gradcheck.txt)")
                if not check.report.passed:
                    status = FAILED
        print(
            f"results in {out}/: "
            + ", ".join(
                sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
            )
        )
    return status


def _print_summary(exp, final, doc) -> None:
    key = doc["headline"]
    n_runs = math.prod(exp.trainer.shape)
    print(
        f"trained {n_runs} runs × {exp.config.steps} steps in {final.seconds:.2f} s "
        f"({n_runs * exp.config.steps / max(final.seconds, 1e-9):,.0f} run-steps/s)"
    )
    fmt = lambda v: "nan" if v is None or not math.isfinite(v) else f"{v:.4g}"  # noqa: E731
    where = "" if "eval" in key else " (on the training data)"
    for lr in exp.config.lr:
        s = doc["summary"][f"lr={lr:g}"]
        m = s[key]
        if m["n"] == 0:
            line = f"lr {lr:g}: no {key.replace('_', ' ')}: every run diverged"
        elif m["n"] == 1:  # no spread or interval from one run
            line = (
                f"lr {lr:g}: {key.replace('_', ' ')}{where} {fmt(m['mean'])} (one run)"
            )
        else:
            line = (
                f"lr {lr:g}: {key.replace('_', ' ')}{where} median {fmt(m['median'])} "
                f"[IQR {fmt(m['q1'])}, {fmt(m['q3'])}], mean {fmt(m['mean'])} "
                f"(95% CI {fmt(m['ci95_low'])} to {fmt(m['ci95_high'])})"
            )
        if "solved" in s:
            p = s["solved"]
            line += (
                f", solved {p['successes']}/{p['n']} ({p['fraction']:.1%}; 95% CI "
                f"{p['ci95_low']:.1%} to {p['ci95_high']:.1%})"
            )
        line += f", {s['diverged']}/{s['runs']} diverged"
        if s["diverged_at"] is not None:
            at = s["diverged_at"]
            line += (
                f" (at step {at['first']})"
                if at["first"] == at["last"]
                else f" (at steps {at['first']} to {at['last']})"
            )
        print(line)
    if "privacy" in doc:
        p = doc["privacy"]
        eps = (
            "not computed (pip install dp-accounting)"
            if p["epsilon"] is None
            else (f"{p['epsilon']:.3g}")
        )
        print(
            f"DP-SGD: clip norm {p['clip_norm']:g}, noise multiplier "
            f"{p['noise_multiplier']:g}, q {p['sampling_rate']:.3g}, "
            f"{p['steps']} steps: ε = {eps} at δ = {p['delta']:g}"
        )


def _bench(args) -> int:
    try:
        from benchmarks.__main__ import main as bench_main
    except ImportError:
        raise UsageError(
            "jaxprop bench: the benchmark suite runs from a source checkout "
            "(pip install -e . in a clone of the repository)."
        ) from None
    try:
        bench_main(args.bench_args)
    except SystemExit as e:  # argparse inside the suite
        return e.code if isinstance(e.code, int) else USAGE
    return OK


# ------------------------------------------------------------------- parser
def make_parser() -> argparse.ArgumentParser:
    from . import __version__, reference

    parser = _Parser(
        prog="jaxprop",
        description="Neural networks with a hand-written δ backward pass.",
    )
    parser.add_argument("--version", action="version", version=f"jaxprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "xor",
        help="the reference XOR example, reproduced",
        description=reference.__doc__.split("\n\n")[0],
    )
    reference.add_arguments(p)

    p = sub.add_parser(
        "train",
        help="train a network over many seeds; save, plot, resume",
        description="Trains one network per seed (and learning rate) side by side "
        "in compiled chunks of steps, with a progress line; --out DIR keeps the "
        "configuration, curves, metrics, final params and optimizer states, plots "
        "and checkpoints, and --resume DIR continues an interrupted run.",
    )
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="settings file (keys as the options, with _ or -); options override it",
    )
    _add_config_options(p, _TRAIN_FIELDS)
    p.add_argument(
        "--out", metavar="DIR", help="folder for the results and checkpoints"
    )
    p.add_argument(
        "--resume", metavar="DIR", help="continue the interrupted run saved in DIR"
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--no-gradcheck",
        action="store_true",
        help="skip the gradient check written to --out after training",
    )
    g = p.add_argument_group(
        "several processes or machines",
        "One process per machine, each with the same command but for its "
        "--process-id: the runs are split over every device of every process "
        "(jax.distributed); process 0 writes --out and prints progress. Under "
        "SLURM's srun, leave these out: they are read from the job step.",
    )
    g.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="process 0's host and a free TCP port, the same for every process "
        "(default: $JAX_COORDINATOR_ADDRESS)",
    )
    g.add_argument("--num-processes", type=int, metavar="N", help="processes in all")
    g.add_argument(
        "--process-id", type=int, metavar="I", help="this process's index, 0 to N-1"
    )
    g.add_argument(
        "--distributed-timeout",
        type=int,
        default=DISTRIBUTED_TIMEOUT,
        metavar="SECONDS",
        help="how long a process waits for the others to start, answer or finish "
        f"before every process stops with an error (default {DISTRIBUTED_TIMEOUT})",
    )

    p = sub.add_parser(
        "check",
        help="the gradient-check table for an architecture and data",
        description="Compares the hand-written gradients with jax.grad and finite "
        "differences at a network's initial parameters; exits with 1 if a check fails.",
    )
    p.add_argument(
        "--config", metavar="FILE.toml", help="settings file; options override it"
    )
    _add_config_options(p, _CHECK_FIELDS)
    p.add_argument(
        "--dtype",
        default="float64",
        help="precision of the check: float32 or float64 (default float64)",
    )
    p.add_argument(
        "--examples",
        type=int,
        default=8,
        help="training examples in the batch checked (default 8)",
    )

    p = sub.add_parser(
        "bench",
        help="the benchmark suite (python -m benchmarks)",
        description="Runs the benchmark suite from a source checkout; "
        "`jaxprop bench --help` after the study shows its options.",
        add_help=False,
    )
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="study and options")
    return parser


def main(argv=None) -> int:
    """Runs the command; returns its exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    command = argv[0] if argv else ""
    with warnings.catch_warnings():
        # A warning is one line in the command's words, as its errors are.
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *_, **__: print(
            f"jaxprop {command}: warning: {message}", file=sys.stderr
        )
        return _main(parser, argv)


def _main(parser, argv) -> int:
    try:
        if argv[:1] == ["bench"]:  # every later argument is the suite's own
            return _bench(argparse.Namespace(bench_args=argv[1:]))
        args = parser.parse_args(argv)
        distributed = _distributed_args(args) if args.command == "train" else None
        if args.command != "bench":
            _setup_jax()
        if args.command == "xor":
            return _xor(args)
        if args.command == "check":
            return _check(args)
        if args.command == "train":
            if distributed is None:
                return _train(args, argv)
            return _train_across_processes(args, argv, distributed)
        return _bench(args)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return USAGE


def _train_across_processes(args, argv, distributed: dict) -> int:
    """``jaxprop train`` as one of several processes: every process ends with
    the same status, and none waits for the others longer than the timeout."""
    import jax

    _join(distributed, args.distributed_timeout)
    group = _Processes()
    with _native_stdout_to_stderr():
        try:
            try:
                status = _train(args, argv, group)
            except Exception:  # say so before JAX's runtime stops every process
                traceback.print_exc()
                print(
                    f"jaxprop train: process {group.index} of {group.count} stopped "
                    f"by the error above; the others stop within "
                    f"--distributed-timeout ({args.distributed_timeout} s).",
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


@contextlib.contextmanager
def _native_stdout_to_stderr():
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


def console() -> None:
    """The ``jaxprop`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
