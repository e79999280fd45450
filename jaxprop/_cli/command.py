"""The ``jaxprop`` command: ``jaxprop {xor,train,compare,check,bench} [options]``.

A user mistake (an unknown option value, an unreadable data file, a cost that
does not fit the output activation) prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from . import xor
from .errors import FAILED, OK, USAGE, Parser, UsageError, user_errors
from .options import (
    CHECK_FIELDS,
    TRAIN_FIELDS,
    add_config_options,
    config_values,
    option_names,
)
from .processes import (
    DISTRIBUTED_TIMEOUT,
    distributed_args,
    run_across_processes,
    setup_jax,
)
from .train import train


def make_parser() -> argparse.ArgumentParser:
    """The parser of ``jaxprop`` and its four commands."""
    from .. import __version__

    parser = Parser(
        prog="jaxprop",
        description="Neural networks with a hand-written δ backward pass.",
    )
    parser.add_argument("--version", action="version", version=f"jaxprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _add_xor(sub)
    _add_train(sub)
    _add_compare(sub)
    _add_check(sub)
    _add_bench(sub)
    return parser


def _add_xor(sub) -> None:
    """``jaxprop xor``."""
    p = sub.add_parser(
        "xor",
        help="the reference XOR example, reproduced",
        description=xor.DESCRIPTION,
    )
    xor.add_arguments(p)


def _add_train(sub) -> None:
    """``jaxprop train`` and its options for several processes."""
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
    add_config_options(p, TRAIN_FIELDS)
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


def _add_compare(sub) -> None:
    """``jaxprop compare``."""
    p = sub.add_parser(
        "compare",
        help="one table and figure comparing finished runs (or a study's rules)",
        description="Compares finished runs of jaxprop train --out: per run and "
        "learning rate, the headline metric (held-out accuracy where there is "
        "held-out data) with its 95%% CI, the fraction diverged, and the "
        "difference to the first run with its 95%% CI, paired seed by seed when "
        "both ran the same seeds on the same data (as their config.json say), "
        "unpaired (Welch) otherwise; and a figure of the curves and of each "
        "layer's angle to backprop. A study's folder (--rule a,b,...) stands for "
        "its rules.",
    )
    p.add_argument("runs", nargs="+", metavar="DIR", help="run or study folders")
    p.add_argument(
        "--out",
        metavar="DIR",
        default=".",
        help="where comparison.md, comparison.json and comparison.png go "
        "(default: the current folder)",
    )


def _add_check(sub) -> None:
    """``jaxprop check``."""
    p = sub.add_parser(
        "check",
        help="the gradient-check table for an architecture and data",
        description="Compares the hand-written gradients with jax.grad and finite "
        "differences at a network's initial parameters; exits with 1 if a check fails.",
    )
    p.add_argument(
        "--config", metavar="FILE.toml", help="settings file; options override it"
    )
    add_config_options(p, CHECK_FIELDS)
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


def _add_bench(sub) -> None:
    """``jaxprop bench``: every later argument is the suite's own."""
    p = sub.add_parser(
        "bench",
        help="the benchmark suite (python -m benchmarks)",
        description="Runs the benchmark suite from a source checkout; "
        "`jaxprop bench --help` after the study shows its options.",
        add_help=False,
    )
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="study and options")


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
    """Parses ``argv`` and runs its command; a UsageError is one line, status 2."""
    try:
        if argv[:1] == ["bench"]:  # every later argument is the suite's own
            return _bench(argparse.Namespace(bench_args=argv[1:]))
        args = parser.parse_args(argv)
        distributed = distributed_args(args) if args.command == "train" else None
        if args.command != "bench":
            setup_jax()
        if args.command == "xor":
            return xor.command(args)
        if args.command == "check":
            return _check(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "train":
            if distributed is None:
                return train(args, argv)
            return run_across_processes(
                lambda group: train(args, argv, group),
                distributed,
                args.distributed_timeout,
            )
        return _bench(args)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return USAGE


def _check(args) -> int:
    """``jaxprop check``: the gradient-check table at a net's initial params."""
    import jax

    from .._experiment import build, describe_net, gradient_check, make_config
    from .._experiment.config import DTYPES
    from .._validate import choice

    examples = args.examples
    with user_errors("check"):
        if examples < 1:
            raise ValueError(f"--examples must be at least 1; got {examples}.")
        choice(args.dtype, "--dtype", DTYPES)
        values = config_values(args, CHECK_FIELDS) | {"dtype": args.dtype}
        exp = build(make_config(values, names=option_names(args, CHECK_FIELDS)))
    config = exp.config
    check = gradient_check(exp, n=examples, dtype=args.dtype)
    net = exp.net
    sampled = (
        ""
        if check.numeric_entries is None
        else f", finite differences at {check.numeric_entries} random entries per array"
    )
    print(
        f"{describe_net(net)} {net.activation}/{net.output_activation}, "
        f"{net.cost} ({net.reduction}), {check.examples} examples "
        f"of {config.data}, seed {config.seed}'s initial params, {args.dtype} "
        f"on {jax.devices()[0].platform}{sampled}"
    )
    print(check.report)
    return OK if check.report.passed else FAILED


def _compare(args) -> int:
    """``jaxprop compare``: the table printed, and its files in --out."""
    from pathlib import Path

    from .._experiment import format_table, read_folders, write_comparison

    out = Path(args.out)
    with user_errors("compare"):
        runs = read_folders(args.runs)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out: {str(out)!r} is a file; give a folder.")
        try:
            doc = write_comparison(out, runs)
        except OSError as e:
            raise ValueError(
                f"--out: cannot write to {str(out)!r} ({e.strerror or e})."
            ) from None
    print(format_table(doc), end="")
    print(f"comparison in {out}/: comparison.md, comparison.json, comparison.png")
    return OK


def _bench(args) -> int:
    """``jaxprop bench``: the benchmark suite of a source checkout."""
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


def console() -> None:
    """The ``jaxprop`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
