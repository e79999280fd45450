"""``jaxprop train``: settings, the run in compiled chunks, its results and summary."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

from .errors import FAILED, INTERRUPTED, OK, USAGE, UsageError, user_errors
from .options import TRAIN_FIELDS, config_values, option_names
from .processes import Processes, fingerprint, stop_on_signals

_STEPS = {"steps": "--steps"}


class Study(NamedTuple):
    """A study of several rules: its folder (None: no --out)."""

    out: Path | None


class Job(NamedTuple):
    """One run the command trains: alone, or one rule of a study."""

    config: Any  # ExperimentConfig
    out: Path | None
    saved_steps: int | None  # a saved run extended by --steps: its own steps
    resume: bool  # go on with the run in out (else start it there)
    rule: str | None = None  # its rule, in a study


def train(args, argv, group: Processes | None = None) -> int:
    """``jaxprop train``: one process, or one of the ``group`` (every process
    runs the same steps; process 0 writes ``--out`` and prints). With several
    rules (``--rule backprop,fa``), a study: each rule in turn, then the
    comparison of them."""
    from .._experiment import write_study

    group = Processes() if group is None else group
    status, planned = _agreed(group, lambda: _jobs(args))
    if status != OK:
        return status
    jobs, study = planned
    if study is not None and study.out is not None and args.resume is None:
        # Only once every process has found --out free: on a shared file
        # system they all check the one folder that process 0 then writes.
        def write():
            if group.main:
                write_study(study.out, {j.rule: j.config for j in jobs}, argv)

        status, _ = _agreed(group, write)
        if status != OK:
            return status
    if study is not None and group.main:
        _print_study(jobs, study.out, args)
    compared, worst = [], OK
    for i, job in enumerate(jobs):
        resume_dir = job.out if study is None else study.out
        status, run = _train_job(args, argv, group, job, resume_dir, i == 0)
        if status not in (OK, FAILED):
            return status
        worst = max(worst, status)
        compared.append(run)
    if study is not None and group.main:
        _compare(compared, study.out)
    return worst


def _train_job(args, argv, group, job: Job, resume_dir, gradcheck: bool):
    """Builds, starts and trains one run: ``(status, its Compared or None)``;
    ``resume_dir``: what ``--resume`` takes to go on with it (its folder, or
    its study's)."""
    from .._experiment import build, start

    agreed = False  # whether this process reached the agreement before writing
    checksums = None

    def ready():  # every check passed here: do all processes agree?
        nonlocal agreed
        agreed = True
        if group.agree(OK, checksums) != OK:
            raise UsageError("")  # the failing process said why

    status, message = OK, ""
    try:
        with user_errors("train"):
            exp = build(job.config)
            if group.count > 1:
                checksums = fingerprint(job.config, job.out, job.resume, exp.data)
            checkpoint = start(
                exp, job.out, resume=job.resume, saved_steps=job.saved_steps,
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
        return status, None
    return _run(args, exp, checkpoint, job.out, group, resume_dir, gradcheck, job.rule)


def _agreed(group: Processes, step):
    """``step()`` in every process, a usage error printed where it happens:
    ``(the status all processes agree, what step returned or None)``."""
    status, result = OK, None
    try:
        with user_errors("train"):
            result = step()
    except UsageError as e:
        status = USAGE
        print(e, file=sys.stderr)
    return group.agree(status), result


def _jobs(args) -> tuple[list[Job], Study | None]:
    """The runs to train, and their study (None: a single run)."""
    from .._experiment import extend_config, is_study, resumed_study, study_rules

    if args.resume is not None and is_study(Path(args.resume)):
        _only_steps(args)
        out = Path(args.resume)
        plans = resumed_study(out, _steps(args), extend_config)
        jobs = [
            Job(config, out / rule, saved, started, rule)
            for rule, config, saved, started in plans
        ]
        return jobs, Study(out)
    if args.resume is None:
        names = option_names(args, TRAIN_FIELDS)
        values = config_values(args, TRAIN_FIELDS)
        if study_rules(values, lambda k: names.get(k, k)) is not None:
            return _new_study(args, values, names)
    config, out, saved_steps = _settings(args)
    return [Job(config, out, saved_steps, args.resume is not None)], None


def _new_study(args, values, names) -> tuple[list[Job], Study]:
    """A new study: each rule's settings, and its folder (checked free)."""
    from .._experiment import absolute_paths, check_study_out, study_configs

    configs = study_configs(values, names)
    out = None if args.out is None else Path(args.out)
    if out is not None:
        check_study_out(out)
    first = next(iter(configs.values()))
    if out is None and first.checkpoint_every is not None:
        raise ValueError(
            f"{names.get('checkpoint_every', 'checkpoint_every')} needs "
            f"--out DIR (checkpoints are written there)."
        )
    jobs = [
        Job(absolute_paths(c), None if out is None else out / rule, None, False, rule)
        for rule, c in configs.items()
    ]
    return jobs, Study(out)


def _print_study(jobs, out: Path | None, args) -> None:
    rules = [j.rule for j in jobs]
    where = "" if out is None else f" into {out}/<rule>/"
    print(
        f"study of {len(rules)} rules ({', '.join(rules)}), one after another, "
        f"each its own compiled program, on the same "
        f"{jobs[0].config.seeds} seeds (paired){where}",
        file=sys.stderr if args.quiet else sys.stdout,
    )


def _compare(compared, study: Path | None) -> None:
    """The study's comparison table (printed) and, with --out, its files."""
    from .._experiment import comparison, format_table, write_comparison

    if study is None:
        doc = comparison(compared)
    else:
        try:
            doc = write_comparison(study, compared)
        except OSError as e:
            print(
                f"jaxprop train: the comparison was not written ({e.strerror or e}); "
                f"jaxprop compare {study} writes it.",
                file=sys.stderr,
            )
            doc = comparison(compared)
            study = None
    print(f"\ncomparison of the rules ({doc['metric'].replace('_', ' ')}):")
    print(format_table(doc), end="")
    if study is not None:
        print(f"comparison in {study}/: comparison.md, comparison.json, comparison.png")


def _settings(args):
    """The run's configuration, its ``--out`` folder (or None) and, for a saved
    run extended by ``--steps``, the steps it was saved with (else None)."""
    if args.resume is not None:
        return _resumed_settings(args)
    return (*_new_settings(args), None)


def _resumed_settings(args):
    """``--resume DIR``: the settings of DIR/config.json, ``--steps`` aside."""
    from .._experiment import extend_config, read_config

    _only_steps(args)
    out = Path(args.resume)
    if not out.is_dir():
        raise ValueError(f"--resume: no such folder {str(out)!r}.")
    steps = _steps(args)
    if steps is None:
        return read_config(out), out, None
    config, saved_steps = extend_config(out, steps)
    return config, out, saved_steps


def _only_steps(args) -> None:
    """``--resume`` takes no setting but ``--steps``."""
    extra = [
        f"--{k.replace('_', '-')}"
        for k in TRAIN_FIELDS
        if k != "steps" and getattr(args, k) is not None
    ]
    extra += [f for f in ("--config", "--out") if getattr(args, f[2:]) is not None]
    if extra:
        raise UsageError(
            f"jaxprop train: --resume takes every setting from the run saved in "
            f"{args.resume} (only --steps can extend it); drop {', '.join(extra)}."
        )


def _steps(args) -> int | None:
    """``--steps`` checked, or None."""
    from .._experiment import make_config

    if args.steps is None:
        return None
    return make_config({"steps": args.steps}, names=_STEPS).steps


def _new_settings(args):
    """A new run: the settings of the options and ``--config``, and ``--out``."""
    from .._experiment import absolute_paths, check_out_is_free, make_config

    names = option_names(args, TRAIN_FIELDS)
    config = make_config(config_values(args, TRAIN_FIELDS), names=names)
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
    return config, out


def _run(args, exp, checkpoint, out, group, resume_dir, gradcheck, rule):
    """Trains, stopping on Ctrl-C or a scheduler's SIGTERM, then :func:`_finish`."""
    from .._experiment import describe_net, describe_rule, run_experiment

    config = exp.config
    quiet = args.quiet or not group.main
    lead = "×".join(map(str, exp.trainer.shape))
    net = exp.net
    on = f" over {group.count} processes" if group.count > 1 else ""
    if group.main:
        print(
            f"{config.data}: {describe_net(net)} {net.activation}/"
            f"{net.output_activation} {net.cost}, {config.optimizer} lr "
            f"{','.join(f'{x:g}' for x in config.lr)}, {config.steps} steps, "
            f"{config.seeds} seeds ({lead} runs, {exp.trainer.strategy[0]}{on}), "
            f"rule {describe_rule(config)}, {config.dtype}",
            file=sys.stderr if args.quiet else sys.stdout,
        )
    try:
        with stop_on_signals(group.count) as stop_requested:
            final = run_experiment(
                exp,
                checkpoint,
                out,
                progress="off" if quiet else "auto",
                stream=group.stream,
                stop_requested=stop_requested,
            )
    except KeyboardInterrupt:
        if group.main:
            note = _resume_note(out, resume_dir, rule)
            print(f"jaxprop train: interrupted{note}.", file=sys.stderr)
        return INTERRUPTED, None
    gradcheck = gradcheck and not args.no_gradcheck
    return _finish(exp, final, out, gradcheck, group.main, rule)


def _resume_note(out, resume_dir, rule) -> str:
    """What an interrupted run left in ``out`` (None: no --out); ``resume_dir``
    is what --resume takes (a study's folder, or ``out``)."""
    if out is None:
        return " (nothing was saved: no --out)"
    whose = "the" if rule is None else f"{rule}'s"
    if (out / "checkpoint.npz").exists():
        return (
            f"; jaxprop train --resume {resume_dir} continues from {whose} last "
            f"checkpoint"
        )
    return (
        f" before {whose} first checkpoint: nothing "
        f"{'' if rule is None else f'of {rule} '}can be resumed yet "
        f"(jaxprop train --resume {resume_dir} starts it again from step 0)"
    )


def _finish(exp, final, out, gradcheck: bool, main: bool = True, rule=None):
    """Result files (with --out) and the summary; a folder that can no longer
    be written is reported, with the summary still printed.

    Across processes every process computes the results and the gradient check
    (their gathers are collectives); process 0 (``main``) writes and prints.
    Returns the status and, for a study's ``rule``, the run to compare.
    """
    from .._experiment import (
        compared_of,
        gradient_check,
        results_doc,
        write_gradient_check,
        write_results,
    )

    status = OK
    results = results_doc(exp, final)
    check = gradient_check(exp) if out is not None and gradcheck else None
    if not main:
        return (OK if check is None or check.report.passed else FAILED), None
    compared = None if rule is None else compared_of(rule, exp, results)
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
    if rule is not None:
        print(f"rule {rule}:", end=" ")
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
    return status, compared


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
        print(_privacy_line(exp, doc["privacy"]))


def _privacy_line(exp, p) -> str:
    """The summary's DP-SGD line: the rule, ε at δ, and whether ε is a guarantee."""
    from .._experiment import describe_rule

    if p["epsilon"] is None:
        eps = "not computed (pip install dp-accounting)"
    else:
        kind = "a guarantee" if p["guarantee"] else "approximate: shuffled minibatches"
        eps = f"{p['epsilon']:.3g} at δ = {p['delta']:g} ({kind})"
    q = "" if p["sampling"] == "poisson" else f", q {p['sampling_rate']:.3g}"
    return f"DP-SGD: {describe_rule(exp.config)}{q}, {p['steps']} steps: ε = {eps}"
