"""The run's folder: config.json, checkpoint.npz (atomic, portable across
device counts), and reading a finished run back (``load_run``); a study's
folder of several rules (study.json and one run folder per rule)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import platform
import shutil
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._engine.train import TrainState, checkpoint_meta, differences, write_once
from .._io import (
    DAMAGE,
    atomic_write,
    digest,
    load,
    npz_array,
    open_npz,
    save,
    saved_meta,
)
from .._network import Net
from .build import Experiment, make_optimizer
from .config import ExperimentConfig, make_config, make_rule
from .data import Data, make_net


class Checkpoint(NamedTuple):
    """What ``checkpoint.npz`` holds."""

    state: TrainState
    seconds: float  # training time so far


def versions() -> dict[str, str]:
    from .. import __version__

    device = jax.devices()[0]
    processes = (
        f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    )
    return {
        "jaxprop": __version__,
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": f"{device.platform}: {device.device_kind} × "
        f"{len(jax.devices())}{processes}",
    }


def _plain(value):
    """JSON-ready: NaN and inf become null (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_json(path: Path, doc) -> None:
    text = json.dumps(_plain(doc), indent=1, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode()))


def data_fingerprint(data: Data) -> str:
    """SHA-256 of the training and evaluation arrays (as the network sees them)."""
    return digest((data.x, data.y, data.x_eval, data.y_eval))


def resolved(exp: Experiment) -> dict[str, Any]:
    """The settings that defaults resolve from the data and the run's length,
    and the data's fingerprint (checked on resume)."""
    return {
        "data_sha256": data_fingerprint(exp.data),
        **_dims(exp),
        "log_every": exp.trainer.log_every,
        "eval_every": exp.eval_every,
        "checkpoint_every": exp.checkpoint_every,
        "alignment_every": exp.alignment_every,
    }


def _dims(exp: Experiment) -> dict[str, list[int]]:
    """What the network's construction resolved from the data: the MLP's
    sizes, or the Network's input shape (its layers are the config's)."""
    if exp.config.layers is None:
        return {"sizes": list(exp.net.sizes)}
    return {"input_shape": list(exp.net.input_shape)}


def write_config(out: Path, exp: Experiment, argv=None, **extra) -> None:
    doc = {
        "config": dataclasses.asdict(exp.config),
        "resolved": resolved(exp),
        "versions": versions(),
        "command": ["jaxprop", *argv] if argv is not None else None,
        **extra,
    }
    write_json(out / "config.json", doc)


def read_doc(out: Path, argname: str = "--resume") -> dict:
    """The run folder ``out``'s config.json; ``argname`` names ``out`` in errors."""
    path = Path(out) / "config.json"
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc["config"], dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(
            f"{argname}: {str(path)!r} is missing or not a jaxprop config.json."
        ) from None
    return doc


def read_config(out: Path) -> ExperimentConfig:
    """The configuration saved in ``out/config.json`` (for ``--resume``)."""
    values = read_doc(out)["config"]
    if values.get("rule") == "kp":  # runs saved before the pairing: unpaired
        values.setdefault("kp_paired", False)
    with warnings.catch_warnings():  # said when the run started; nothing to choose
        warnings.simplefilter("ignore")
        return make_config(values, source=str(Path(out) / "config.json"), saved=True)


def extend_config(out: Path, steps: int) -> tuple[ExperimentConfig, int]:
    """The saved run's configuration with ``steps`` steps in all, and its own steps.

    The schedule the saved run resolved from its length (log_every, eval_every,
    checkpoint_every) is kept, so that the extended run takes the same steps as
    one that was given ``steps`` from the start with that schedule.

    Raises:
      ValueError: fewer steps than saved, or a count the schedule cannot take.
    """
    config = read_config(out)
    if steps < config.steps:
        raise ValueError(
            f"--steps: the run in {out} has {config.steps} steps; --resume can "
            f"extend a run, not shorten it (got {steps})."
        )
    if steps == config.steps:
        return config, config.steps
    if config.target_epsilon is not None:
        raise ValueError(
            f"--steps: the run in {out} was given the noise multiplier that "
            f"reaches ε {config.target_epsilon:g} in {config.steps} steps "
            f"(target_epsilon); more steps would spend more privacy than that. "
            f"Start a new run with the steps you want."
        )
    schedule = read_doc(out).get("resolved") or {}
    log_every = schedule.get("log_every") or config.log_every
    if log_every is None:
        raise ValueError(f"--steps: {out}/config.json has no resolved log_every.")
    if steps % log_every:
        raise ValueError(
            f"--steps: the run logs its loss every {log_every} steps, so the new "
            f"length must be a multiple of {log_every}; got {steps}."
        )
    return dataclasses.replace(
        config,
        steps=steps,
        log_every=log_every,
        eval_every=schedule.get("eval_every", config.eval_every),
        checkpoint_every=schedule.get("checkpoint_every", config.checkpoint_every),
        alignment_every=schedule.get("alignment_every", config.alignment_every),
    ), config.steps


def _saved_like(exp: Experiment, saved_steps: int | None = None) -> Checkpoint:
    """The shapes of a checkpoint of ``exp``'s runs after ``saved_steps`` steps
    in all (default: the experiment's own), for ``load``."""
    trainer = exp.trainer
    like = trainer.portable_shapes()
    n_saved = (saved_steps or trainer.steps) // trainer.log_every
    log = jax.tree.map(
        lambda l: jax.ShapeDtypeStruct((*l.shape[:-1], n_saved), l.dtype), like.log
    )
    return Checkpoint(like._replace(log=log), 0.0)


def save_checkpoint(out: Path, exp: Experiment, checkpoint: Checkpoint) -> Path:
    """Writes ``out/checkpoint.npz`` atomically (portable: any device count and
    process count; across processes every one calls it and process 0 writes)."""
    state = exp.trainer.portable(checkpoint.state)
    tree = checkpoint._replace(state=state)._asdict()
    path = out / "checkpoint.npz"
    meta = checkpoint_meta(exp.trainer)  # what load_checkpoint compares
    return write_once(exp.trainer, lambda: save(path, tree, meta=meta), path)


def load_checkpoint(
    out: Path, exp: Experiment, saved_steps: int | None = None
) -> Checkpoint:
    """``out/checkpoint.npz`` as a state of ``exp``'s trainer.

    Args:
      saved_steps: the saved run's length when ``exp`` extends it to more
        steps (its log gains NaN blocks); default ``exp``'s own.

    Raises:
      ValueError: naming the file: it is damaged, or was saved by a run of
        other settings (each one that differs is named).
    """
    trainer = exp.trainer
    path = Path(out) / "checkpoint.npz"
    differ = differences(trainer, saved_meta(path), skip=("steps",))  # extended
    if differ:
        raise ValueError(
            f"{path}: saved by another run than {path.parent}/config.json "
            f"describes: {'; '.join(differ)}."
        )
    saved = load(path, _saved_like(exp, saved_steps)._asdict())
    state = saved["state"]
    n_blocks = trainer.steps // trainer.log_every
    log = jax.tree.map(
        lambda l: np.concatenate(
            [l, np.full((*l.shape[:-1], n_blocks - l.shape[-1]), np.nan, l.dtype)],
            axis=-1,
        ),
        state.log,
    )
    return Checkpoint(trainer.restore(state._replace(log=log)), saved["seconds"])


def checkpoint_bytes(exp: Experiment) -> int:
    """Bytes of one checkpoint of ``exp``'s runs (its arrays, uncompressed)."""
    state = _saved_like(exp).state
    leaves = jax.tree.leaves((state.runs, state.log))
    # PRNG keys: two uint32 each (their dtype has no NumPy itemsize).
    itemsize = lambda d: getattr(d, "itemsize", 8)  # noqa: E731
    return sum(math.prod(l.shape) * itemsize(l.dtype) for l in leaves)


def readable_results(out: Path) -> list[str]:
    """Which of a run's result files in ``out`` read back whole: final.npz and
    curves.npz (every member's CRC-32 checked), metrics.json (parsed)."""
    ok = []
    for name in ("final.npz", "curves.npz", "metrics.json"):
        path = out / name
        try:
            if name.endswith(".npz"):
                with zipfile.ZipFile(path) as z:
                    whole = z.testzip() is None
            else:
                json.loads(path.read_text())
                whole = True
        except DAMAGE:
            whole = False
        if whole:
            ok.append(name)
    return ok


#: What ``jaxprop train --out`` writes (and nothing else lives in its folder).
OUT_FILES = (
    "config.json", "metrics.json", "curves.npz", "final.npz", "checkpoint.npz",
    "loss.png", "regions.png", "alignment.png", "gradcheck.txt", "gradcheck.png",
    "train_accuracy.png", "eval_accuracy.png", "train_loss.png", "eval_loss.png",
)  # fmt: skip


def check_out_is_free(out: Path) -> None:
    """``out`` is new, empty, or holds only a jaxprop run's own files.

    Raises:
      ValueError: ``out`` is a file, or other files are there (they would be
        mixed with the results), or a config.json that is not jaxprop's.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"--out: {str(out)!r} is a file; give a new or empty folder (or one "
            f"of jaxprop's own)."
        )
    if not out.is_dir():
        return
    foreign = sorted(
        p.name for p in out.iterdir()
        if p.name not in OUT_FILES and not p.name.startswith(".")
    )  # fmt: skip
    if not foreign and (out / "config.json").exists():
        try:
            json.loads((out / "config.json").read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            foreign = ["config.json (not a jaxprop config)"]
    if foreign:
        raise ValueError(
            f"--out: {str(out)!r} holds other files ({', '.join(foreign[:3])}); "
            f"choose an empty or new folder."
        )


def prepare_out(out: Path, exp: Experiment, argv=None, **extra) -> None:
    """Makes ``out`` and writes ``config.json``: a folder that cannot take the
    run's files fails here, before any training.

    Raises:
      ValueError: ``out`` cannot be created or written, or its disk has less
        free space than about three checkpoints (the old, the new being
        written, and final.npz).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        need = 3 * checkpoint_bytes(exp) + 2**22  # and a few MB of plots
        free = shutil.disk_usage(out).free
        if free < need:
            raise ValueError(
                f"--out: {str(out)!r} is on a disk with {free / 2**20:.1f} MiB free; "
                f"this run's checkpoints and results need about "
                f"{need / 2**20:.1f} MiB."
            )
        write_config(out, exp, argv, **extra)
    except OSError as e:
        raise ValueError(
            f"--out: cannot write to {str(out)!r} ({e.strerror or e})."
        ) from None


# --------------------------------------------------------------- reading back
class SavedRun(NamedTuple):
    """A finished ``jaxprop train --out DIR`` run, read back by :func:`load_run`.

    Attributes:
      path: the folder.
      config: its settings, config.json's ``"config"``, as an
        :class:`ExperimentConfig` (a frozen dataclass: ``config.lr``,
        ``config.rule``, ...); ``config.as_dict()`` is a dict of them.
      net: the trained network (``jp.MLP``, or ``jp.Network`` for a run of
        ``layers``).
      params: every run's final params, leaves with leading (n_lr, n_seeds) axes.
      opt_state: every run's final optimizer state, the same leading axes.
      curves: ``curves.npz`` as a dict of NumPy arrays (``steps``, ``losses``
        (n_lr, n_seeds, n_logged), ``eval_*``, and the final per-run metrics).
      metrics: ``metrics.json`` (summaries per learning rate, one record per run).
      rule_state: every run's final rule state (``()`` for backprop).
    """

    path: Path
    config: ExperimentConfig
    net: Net
    params: Any
    opt_state: Any
    curves: dict[str, np.ndarray]
    metrics: dict[str, Any]
    rule_state: Any = ()

    def run(self, lr_index: int, seed: int):
        """The final params of one (learning rate, seed) run."""
        return jax.tree.map(lambda l: l[lr_index, seed], self.params)


#: The file that makes a folder a study of several rules (``jaxprop train
#: --rule backprop,fa ...``): beside it, one run folder per rule.
STUDY_FILE = "study.json"
#: What a study's folder holds beside its rules' folders.
STUDY_FILES = (STUDY_FILE, "comparison.md", "comparison.json", "comparison.png")


def is_study(path) -> bool:
    """Whether ``path`` is the folder of a study of several rules."""
    return (Path(path) / STUDY_FILE).is_file()


def read_study(out: Path, argname: str = "--resume") -> dict:
    """A study's ``study.json``: ``{"rules": [...], "configs": {rule: settings}}``
    (each rule's settings as its config.json will hold them)."""
    path = Path(out) / STUDY_FILE
    try:
        doc = json.loads(path.read_text())
        rules, configs = doc["rules"], doc["configs"]
        if not (isinstance(rules, list) and isinstance(configs, dict)):
            raise TypeError
        if set(rules) != set(configs) or not all(isinstance(r, str) for r in rules):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(
            f"{argname}: {str(path)!r} is missing or not a jaxprop study.json."
        ) from None
    return doc


class SavedStudy(Mapping):
    """A finished study of several rules (``jaxprop train --rule a,b,... --out
    DIR``), read back by :func:`load_run`: a mapping from each rule, in the
    command's order, to its :class:`SavedRun`.

    Attributes:
      path: the study's folder.
      rules: the rules' names, in order (the first is the comparison's reference).
      comparison: ``comparison.json`` (the table's rows), or None if absent.
    """

    def __init__(self, path: Path, runs: dict[str, SavedRun], comparison):
        self.path, self._runs, self.comparison = path, runs, comparison
        self.rules = tuple(runs)

    def __getitem__(self, rule: str) -> SavedRun:
        return self._runs[rule]

    def __iter__(self) -> Iterator[str]:
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)

    def __repr__(self) -> str:
        return f"SavedStudy({str(self.path)!r}, rules={self.rules})"


def _load_study(path: Path) -> SavedStudy:
    rules = read_study(path, "path")["rules"]
    runs = {rule: load_run(path / rule) for rule in rules}
    try:
        comparison = json.loads((path / "comparison.json").read_text())
    except (OSError, ValueError):
        comparison = None
    return SavedStudy(path, runs, comparison)


def load_run(path) -> SavedRun | SavedStudy:
    """Reads a finished ``jaxprop train --out DIR`` folder back.

    A study's folder (``--rule backprop,fa,...``; it holds ``study.json``) reads
    back as a :class:`SavedStudy`, a mapping from each rule to its
    :class:`SavedRun` (``load_run(DIR)["fa"]`` is ``load_run(DIR / "fa")``).

    Needs no data and no optimizer from the user: the network and the
    optimizer's state structure are rebuilt from ``config.json``.

    Args:
      path: the run's folder (``--out DIR``).

    Returns:
      A :class:`SavedRun`: ``.config`` the run's settings (an
      ``ExperimentConfig``, a frozen dataclass; ``.config.as_dict()`` gives
      them as a dict), ``.net``, ``.params`` and ``.opt_state`` with leading
      (n_lr, n_seeds) axes, ``.curves``, ``.metrics``, ``.rule_state``; for a
      study's folder, a :class:`SavedStudy` of one such run per rule.

    Raises:
      ValueError: not a finished run's folder (says which file is missing).
    """
    path = Path(path)
    if is_study(path):
        return _load_study(path)
    doc = read_doc(path, "path")
    config = read_config(path)
    for name in ("final.npz", "curves.npz", "metrics.json"):
        if not (path / name).is_file():
            raise ValueError(
                f"path: {str(path)!r} has no {name}: the run did not finish "
                f"(jaxprop train --resume {path} finishes it)."
            )
    dims = "sizes" if config.layers is None else "input_shape"
    net = make_net(
        config, (doc.get("resolved") or {}).get(dims) or getattr(config, dims)
    )
    optimizer, rule = make_optimizer(config), make_rule(config)

    def like():
        params = net.init(jax.random.key(0), dtype=config.dtype)
        tree = {"params": params, "opt_state": optimizer.init(params)}
        rule_state = rule.init(jax.random.key(0), net, params)
        if jax.tree.leaves(rule_state):
            tree["rule_state"] = rule_state
        lead = (len(config.lr), config.seeds)
        return jax.tree.map(lambda l: jnp.broadcast_to(l, lead + l.shape), tree)

    final = load(path / "final.npz", like=jax.eval_shape(like))
    with open_npz(path / "curves.npz") as f:
        curves = {k: npz_array(f, k, path / "curves.npz") for k in f.files}
    try:
        metrics = json.loads((path / "metrics.json").read_text())
    except ValueError as e:  # cut short or overwritten
        raise ValueError(f"{path / 'metrics.json'}: not readable JSON ({e}).") from None
    return SavedRun(
        path,
        config,
        net,
        final["params"],
        final["opt_state"],
        curves,
        metrics,
        final.get("rule_state", ()),
    )
