"""A study of several rules in one command (``jaxprop train --rule backprop,fa,...``):
each rule's configuration, and the study's folder.

A study trains every rule with the same settings and the same seeds, each rule
its own compiled program, so that seed s of one rule starts from the same
parameters and sees the same minibatches as seed s of another: their results
are paired. Its folder ``OUT`` holds::

    OUT/study.json        the rules in order and each one's settings
    OUT/<rule>/           one ordinary run folder per rule (config.json, ...)
    OUT/comparison.md     the comparison table (and .json, and the figure .png)

``jp.load_run(OUT)`` reads it back as a mapping from rule to run, and
``jaxprop train --resume OUT`` goes on with it rule by rule: a finished rule's
results are rewritten as they were, an interrupted one continues from its last
checkpoint, and a rule not yet started starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._validate import choice
from .config import (
    RULE_NAMES,
    RULE_SETTINGS,
    ExperimentConfig,
    as_list,
    make_config,
)
from .store import (
    STUDY_FILE,
    STUDY_FILES,
    is_study,
    read_config,
    read_doc,
    read_study,
    versions,
    write_json,
)


def study_rules(values: Mapping[str, Any], n=lambda key: key) -> list[str] | None:
    """The rules of a study when ``values["rule"]`` names more than one
    (``"backprop,fa"`` or a list), each by its short name; else None.

    Raises:
      ValueError: an unknown rule, one named twice, or ``grad`` given too.
    """
    names = as_list(values.get("rule"), "rule") if values.get("rule") else []
    if len(names) < 2:
        return None
    rules = [RULE_NAMES[choice(str(r), n("rule"), RULE_NAMES)] for r in names]
    twice = sorted({r for r in rules if rules.count(r) > 1})
    if twice:
        raise ValueError(
            f"{n('rule')} names {twice[0]!r} twice (the library's long names are "
            f"the short ones': feedback_alignment is fa); got {values['rule']!r}."
        )
    if values.get("grad") is not None:
        raise ValueError(
            f"{n('grad')} and {n('rule')}: give one (the rules of a study "
            f"include backprop and autodiff by name)."
        )
    return rules


def study_configs(
    values: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> dict[str, ExperimentConfig]:
    """Each rule's configuration, in order, for the settings ``values`` whose
    ``rule`` names several rules.

    The settings of some rules only (``RULE_SETTINGS``: the feedback's scale,
    Kolen-Pollack's, alignment_every) go to the rules that read them; one that
    no listed rule reads is refused, as it is for a single rule.

    Raises:
      ValueError, TypeError: as ``make_config``, for the first rule whose
        settings fail, named.
    """
    n = lambda key: (names or {}).get(key, key)  # noqa: E731
    rules = study_rules(values, n)
    if rules is None:
        raise ValueError(f"{n('rule')}: a study needs two or more rules.")
    for key, readers in RULE_SETTINGS.items():
        if values.get(key) is not None and not set(readers) & set(rules):
            raise ValueError(
                f"{n(key)} applies to {n('rule')} {' or '.join(readers)} only; "
                f"none of {','.join(rules)} reads it."
            )
    configs = {}
    for rule in rules:
        own = {
            k: v
            for k, v in values.items()
            if k not in RULE_SETTINGS or rule in RULE_SETTINGS[k]
        }
        try:
            configs[rule] = make_config(own | {"rule": rule}, names=names)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{n('rule')} {rule}: {e}") from None
    return configs


def check_study_out(out: Path) -> None:
    """``out`` can take a new study: new, empty, or a study's own files only.

    Raises:
      ValueError: ``out`` is a file, holds a study or a run already, or other
        files.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {str(out)!r} is a file; give a new or empty folder.")
    if is_study(out) or (out / "config.json").exists():
        raise ValueError(
            f"--out: {str(out)!r} already holds a "
            f"{'study' if is_study(out) else 'run'}; continue it with --resume "
            f"{out}, or choose another folder."
        )
    if out.is_dir():
        foreign = sorted(
            p.name
            for p in out.iterdir()
            if p.name not in STUDY_FILES and not p.name.startswith(".")
        )
        if foreign:
            raise ValueError(
                f"--out: {str(out)!r} holds other files ({', '.join(foreign[:3])}); "
                f"choose an empty or new folder."
            )


def write_study(out: Path, configs: Mapping[str, ExperimentConfig], argv=None) -> None:
    """Makes ``out`` and writes ``study.json``.

    Raises:
      ValueError: ``out`` cannot be created or written.
    """
    doc = {
        "rules": list(configs),
        "configs": {rule: c.as_dict() for rule, c in configs.items()},
        "layout": "one run folder per rule: <rule>/config.json, metrics.json, ...",
        "versions": versions(),
        "command": ["jaxprop", *argv] if argv is not None else None,
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / STUDY_FILE, doc)
    except OSError as e:
        raise ValueError(
            f"--out: cannot write to {str(out)!r} ({e.strerror or e})."
        ) from None


def resumed_study(
    out: Path, steps: int | None, extend
) -> list[tuple[str, ExperimentConfig, int | None, bool]]:
    """The rules of the study in ``out`` to go on with: ``(rule, config,
    saved_steps, started)`` each, where ``started`` says whether the rule's
    folder holds a run (``--resume`` goes on with it) or not (it starts).

    Args:
      steps: ``--steps`` (a longer run for every rule), or None.
      extend: ``extend_config(folder, steps)`` → (config, saved steps).

    Raises:
      ValueError: a damaged study.json, or settings that no longer validate.
    """
    doc = read_study(out)
    plans, schedule = [], None
    for rule in doc["rules"]:
        folder = out / rule
        if (folder / "config.json").exists():
            if steps is None:
                config, saved = read_config(folder), None
            else:
                config, saved = extend(folder, steps)
            schedule = schedule or (read_doc(folder).get("resolved") or {})
            plans.append((rule, config, saved, True))
            continue
        config = make_config(doc["configs"][rule], source=str(out / STUDY_FILE))
        plans.append((rule, config, None, False))
    if steps is None:
        return plans
    # A rule not started yet takes the new length on the schedule the others
    # resolved from the old one (they log, evaluate, and checkpoint alike).
    return [
        (rule, config if started else _lengthened(config, steps, schedule), saved,
         started)
        for rule, config, saved, started in plans
    ]  # fmt: skip


def _lengthened(config: ExperimentConfig, steps: int, schedule) -> ExperimentConfig:
    if steps < config.steps:
        raise ValueError(
            f"--steps: the study has {config.steps} steps; --resume can extend a "
            f"run, not shorten it (got {steps})."
        )
    if not schedule:  # no rule started: as if given the new length at first
        return dataclasses.replace(config, steps=steps)
    keep = {
        k: schedule.get(k) or getattr(config, k)
        for k in ("log_every", "eval_every", "checkpoint_every")
    }
    return dataclasses.replace(config, steps=steps, **keep)
