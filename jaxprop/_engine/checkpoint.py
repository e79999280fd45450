"""What a :class:`Trainer` checkpoint records beside its state, and the writes
that every process of a run spanning processes takes part in.

A checkpoint stores the trainer's settings (each argument that shapes the
runs, by name: JSON values, arrays as digests of their bits, the optimizer's
and rule's states by their tree structure); loading compares them with the
loading trainer's and names each one that differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from .._core.activations import describe
from .._core.params import DenseParams
from .._io import digest
from .grid import legacy_names
from .layout import _agree_max
from .options import Options

if TYPE_CHECKING:
    from .trainer import Trainer


def settings(options: Options, data) -> dict[str, Any]:
    """What a checkpoint records of a trainer's runs: ``options`` (its keys,
    grid, schedule, ...), and ``data``, the arrays as the runs use them (cast,
    on the devices, replicated): equal runs digest equally whatever array
    types the user passed."""
    x, y, x_eval, y_eval = (None if a is None else a.addressable_data(0) for a in data)
    config = options.config
    net = config.net
    opt_state = jax.eval_shape(config.optimizer.init, options.probe)
    return {
        "net": " ".join(
            [
                net.architecture,
                *(describe(f) for f in (net.activation, net.output_activation)),
                describe(net.cost),
                net.reduction,
            ]
        ),
        "n_seeds": options.n_seeds,
        "keys": _digest(jax.random.key_data(options.keys)),
        # Each value as its dtype prints it (shortest round trip): exact.
        "hparams": {
            k: [str(e) for e in np.asarray(v)] for k, v in options.hparams.items()
        },
        "params": "drawn"
        if options.params is None
        else _digest(*jax.tree.leaves(options.params)),
        "scheme": options.scheme,
        "dtype": options.dtype,
        "steps": config.steps,
        "log_every": config.log_every,
        "batch_size": config.batch_size,
        "eval_every": config.eval_every,
        "alignment_every": config.alignment_every,
        "diagnostics_every": config.diagnostics_every,
        # The matrix and its power-iteration steps, when diagnostics are on.
        "sharpness": None
        if config.diagnostics_every is None or config.sharpness is None
        else f"{config.sharpness}, {config.sharpness_iters} iterations",
        "data": _digest(x, y),
        "eval_data": None if x_eval is None else _digest(x_eval, y_eval),
        "optimizer state": _structure(opt_state),
        "rule state": _structure(options.probe_rule),
    }


def checkpoint_meta(trainer: Trainer) -> dict:
    """What a checkpoint of ``trainer``'s runs stores beside the state (a
    ``Trainer.save`` file or a run folder's ``checkpoint.npz``), and
    :func:`differences` reads."""
    return {"trainer": trainer._settings}


def differences(trainer: Trainer, meta: dict | None, skip=()) -> list[str]:
    """The settings (not in ``skip``) in which a file's ``meta`` (see
    :func:`checkpoint_meta`) differs from ``trainer``'s, each said for a message."""
    options, mine = trainer._options, trainer._settings
    saved = (meta or {}).get("trainer")
    if not isinstance(saved, dict):  # files of older versions carry none
        return []
    mine = json.loads(json.dumps(mine))  # as read back
    saved = _renamed(saved)
    if isinstance(saved.get("hparams"), dict):  # bare names of older files
        opt_state = jax.eval_shape(options.config.optimizer.init, options.probe)
        saved = saved | {
            "hparams": legacy_names(saved["hparams"], opt_state, options.probe_rule)
        }
    return [
        _difference(k, saved.get(k), mine[k])
        for k in mine
        if k not in skip and saved.get(k) != mine[k]
    ]


def _renamed(saved: dict) -> dict:
    """A file's settings with the params' class under its present name: the
    optimizer and rule states of files written before it was ``DenseParams`` name
    ``Layer`` (the same class, so such files still resume)."""
    new = f"namedtuple[{DenseParams.__name__}]"
    return saved | {
        k: saved[k].replace("namedtuple[Layer]", new)
        for k in ("optimizer state", "rule state")
        if isinstance(saved.get(k), str)
    }


def _digest(*arrays) -> str:
    """16 hex digits of :func:`jaxprop._io.digest`, integers by value (labels
    train alike as int32 or int64)."""
    return digest(arrays, integers_by_value=True)[:16]


def _structure(tree) -> str:
    """A tree's structure with its leaves' shapes and dtypes, as text."""
    leaves = [f"{l.dtype}{list(l.shape)}" for l in jax.tree.leaves(tree)]
    return f"{jax.tree.structure(tree)} {' '.join(leaves)}"


def _difference(name: str, saved, here) -> str:
    """One setting that differs between a checkpoint and a trainer, for a message."""
    if name in ("keys", "params", "data", "eval_data"):
        return f"{name} (other arrays)"
    if name in ("optimizer state", "rule state"):
        return f"{name} (another structure: another {name.split()[0]} or its options)"
    return f"{name} (saved {saved!r}, this trainer {here!r})"


def agree_max(trainer: Trainer, value: int) -> int:
    """The largest of every process's ``value`` where ``trainer``'s runs span
    processes (a collective: every process calls it at the same point); else
    ``value``. What decides a collective step (a chunk's length, whether to
    checkpoint now) must be the same on every process."""
    return _agree_max(value, trainer._spans)


def write_once(trainer: Trainer, write, path):
    """``write()``, which writes the file ``path`` from a tree that every process
    holds whole (gathered); returns ``Path(path)``.

    Where ``trainer``'s runs span processes, every process calls it: process 0
    writes and the others wait for it (a collective); if the write fails, each
    process raises (process 0 its own error, the others an ``OSError`` naming it).
    """
    if not trainer._spans:
        write()
        return Path(path)
    error = None
    if jax.process_index() == 0:
        try:
            write()
        except Exception as e:  # every process must reach the agreement below
            error = e
    if agree_max(trainer, error is not None):
        if error is not None:
            raise error
        raise OSError(f"process 0 could not write {path}.")
    return Path(path)
