"""The ``jaxprop`` command: ``jaxprop {xor,train,check,bench} [options]``.

A user mistake (an unknown option value, an unreadable data file, a cost that
does not fit the output activation) prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
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
    "rule": "credit-assignment rule: backprop, autodiff, fa (feedback alignment), "
    "dfa (direct feedback alignment), sign (sign symmetry), kp (Kolen-Pollack) "
    "(default backprop)",
    "feedback_scale": "fa/dfa/kp: random feedback drawn from U[-s, s] (default "
    "1/sqrt of the fed-back width)",
    "kp_lr": "kp: learning rate of the feedback update (default: --lr, one value)",
    "kp_decay": "kp: weight decay of the feedback update, in [0, 1) (default 0.001)",
    "clip_norm": "DP-SGD: clip each example's update to this norm (with "
    "--noise-multiplier; any rule but autodiff)",
    "noise_multiplier": "DP-SGD: Gaussian noise of std noise_multiplier × clip_norm "
    "on the clipped sum",
    "delta": "DP-SGD: the δ at which metrics.json reports ε (default 1e-5)",
    "alignment_every": "steps between measures of the rule's alignment with "
    "backprop (default ~1/20 of the run for fa/dfa/sign/kp)",
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

    examples = args.examples
    with _user_errors("check"):
        if examples < 1:
            raise ValueError(f"--examples must be at least 1; got {examples}.")
        values = _config_values(args, _CHECK_FIELDS) | {"dtype": args.dtype}
        exp = build(make_config(values))
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


def _train(args, argv) -> int:
    from ._experiment import (
        absolute_paths,
        build,
        check_out_is_free,
        extend_config,
        make_config,
        read_config,
        run_experiment,
        start,
    )

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
            if args.steps is None:
                config = read_config(out)
            else:
                steps = make_config({"steps": args.steps}).steps
                config, saved_steps = extend_config(out, steps)
        else:
            config = make_config(_config_values(args, _TRAIN_FIELDS))
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
                    "checkpoint_every needs --out DIR (checkpoints are written there)."
                )
        exp = build(config)
        checkpoint = start(
            exp, out, resume=args.resume is not None, saved_steps=saved_steps,
            argv=argv,
        )  # fmt: skip
    progress = "off" if args.quiet else "auto"
    lead = "×".join(map(str, exp.trainer.shape))
    net = exp.net
    print(
        f"{config.data}: {'-'.join(map(str, net.sizes))} {net.activation}/"
        f"{net.output_activation} {net.cost}, {config.optimizer} lr "
        f"{','.join(f'{x:g}' for x in config.lr)}, {config.steps} steps, "
        f"{config.seeds} seeds ({lead} runs, {exp.trainer.strategy[0]}), "
        f"rule {config.rule or {'autodiff': 'autodiff'}.get(config.grad, 'backprop')}, "
        f"{config.dtype}",
        file=sys.stderr if args.quiet else sys.stdout,
    )
    # A scheduler's SIGTERM (SLURM, Kubernetes) stops a run as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        final = run_experiment(exp, checkpoint, out, progress=progress)
    except KeyboardInterrupt:
        if out is None:
            where = " (nothing was saved: no --out)"
        elif (out / "checkpoint.npz").exists():
            where = f"; jaxprop train --resume {out} continues from the last checkpoint"
        else:
            where = (
                f" before the first checkpoint: nothing can be resumed yet "
                f"(jaxprop train --resume {out} starts it again from step 0)"
            )
        print(f"jaxprop train: interrupted{where}.", file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return _finish(exp, final, out, gradcheck=not args.no_gradcheck)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _finish(exp, final, out, gradcheck: bool) -> int:
    """Result files (with --out) and the summary; a folder that can no longer
    be written is reported, with the summary still printed."""
    from ._experiment import results_doc, write_gradient_check, write_results

    status = OK
    doc = None
    if out is not None:
        try:
            doc = write_results(out, exp, final)
        except OSError as e:
            print(
                f"jaxprop train: could not write the results to {out} "
                f"({e.strerror or e}); checkpoint.npz holds the finished run: "
                f"jaxprop train --resume {out} writes them once there is room.",
                file=sys.stderr,
            )
            status = FAILED
    if doc is None:
        doc = results_doc(exp, final)[0]
    _print_summary(exp, final, doc)
    if out is not None and status == OK:
        if gradcheck:
            try:
                check = write_gradient_check(out, exp)
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
        choices=("float32", "float64"),
        default="float64",
        help="precision of the check (default float64)",
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
    try:
        if argv[:1] == ["bench"]:  # every later argument is the suite's own
            return _bench(argparse.Namespace(bench_args=argv[1:]))
        args = parser.parse_args(argv)
        if args.command != "bench":
            _setup_jax()
        if args.command == "xor":
            return _xor(args)
        if args.command == "check":
            return _check(args)
        if args.command == "train":
            return _train(args, argv)
        return _bench(args)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return USAGE


def console() -> None:
    """The ``jaxprop`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
