"""Experiments: a validated configuration, its data, and a run saved to a folder.

``jaxprop train`` is :func:`run_experiment` on an :class:`ExperimentConfig`. A run
trains every (learning rate, seed) pair side by side with a :class:`Trainer`, in
compiled chunks of steps; between chunks it reports progress and, every
``checkpoint_every`` steps, writes ``checkpoint.npz`` atomically. ``--resume``
loads that checkpoint and continues with the same compiled chunks, so it ends
with the same bits as a run that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import platform
import shutil
import sys
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _data
from ._activations import ACTIVATIONS
from ._check import check_grads
from ._costs import COSTS, REDUCTIONS
from ._io import atomic_write, load, save
from ._layout import STRATEGIES
from ._loop import TrainResult
from ._metrics import (
    accuracy_from_output,
    classification_threshold,
    proportion,
    summarize,
)
from ._mlp import MLP
from ._params import SCHEMES
from ._progress import Progress
from ._rules import RULES, Rule
from ._train import GRADS, Trainer, TrainState, advance_in_chunks

DATASETS = ("xor", "moons", "spirals", "blobs", "mnist1d")
DTYPES = ("float32", "float64")
#: name: optax constructor of (learning_rate, momentum).
OPTIMIZERS = {
    "sgd": lambda lr, m: optax.sgd(lr),
    "momentum": lambda lr, m: optax.sgd(lr, momentum=m),
    "nesterov": lambda lr, m: optax.sgd(lr, momentum=m, nesterov=True),
    "adam": lambda lr, m: optax.adam(lr, b1=m),
    "adamw": lambda lr, m: optax.adamw(lr, b1=m),
    "rmsprop": lambda lr, m: optax.rmsprop(lr, momentum=m),
    "adagrad": lambda lr, m: optax.adagrad(lr),
    "lion": lambda lr, m: optax.lion(lr, b1=m),
}
#: Default momentum (β₁ for adam, adamw and lion) of the optimizers that have one.
MOMENTUM = {
    "momentum": 0.9,
    "nesterov": 0.9,
    "adam": 0.9,
    "adamw": 0.9,
    "lion": 0.9,
    "rmsprop": 0.0,
}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a training experiment (``config.json`` holds it).

    Attributes:
      data: ``xor``, ``moons``, ``spirals``, ``blobs``, ``mnist1d``, or a path
        to a ``.npz`` (arrays ``x``, ``y``) or ``.csv`` (targets in the last column).
      eval_data: optional held-out ``.npz``/``.csv``, for file data only (moons,
        spirals, blobs and mnist1d bring their own test split; XOR has only its
        4 training points, so it has no held-out metrics).
      n_train, n_test: examples drawn for moons/spirals/blobs (default 200, 1000).
      classes: classes for spirals and blobs (default 2 and 3).
      data_seed: seed of moons/spirals/blobs (n_train + n_test points, split in two).
      sizes: layer widths (n_in, ..., n_out); default (n_in, 8, n_out).
      activation, output_activation, cost, reduction: as for ``jp.MLP``.
      init: initialization scheme (default: the activation's).
      optimizer: one of ``OPTIMIZERS``; lr: one or more learning rates (a grid:
        every seed is trained at each); momentum: momentum or β₁ in [0, 1), for
        the optimizers that have one (``MOMENTUM``).
      steps, batch_size (None: full batch), seeds, seed (the first key), grad,
      dtype, strategy, chunk_size: as for ``jp.train_seeds``.
      rule: a credit-assignment rule by name (``jp.rules.RULES``: backprop,
        autodiff, fa, dfa, sign, kp); grad is the older alias of the first two.
      feedback_scale: the range of fa/dfa/kp's random feedback (default
        theirs); kp_lr, kp_decay: Kolen-Pollack's B update (default: the
        learning rate, which must then be one, and 0.001).
      alignment_every: steps between measures of the rule's alignment with
        backprop (default: with a rule other than backprop/autodiff, ~1/20).
      log_every: steps per logged loss (default: about 1/200 of the run).
      eval_every: steps between evaluations on the test split (default ~1/20).
      checkpoint_every: steps between checkpoints (default ~1/10).
    """

    data: str = "xor"
    eval_data: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    classes: int | None = None
    data_seed: int | None = None  # None: 0
    sizes: tuple[int, ...] | None = None
    activation: str = "tanh"
    output_activation: str = "sigmoid"
    cost: str = "mse"
    reduction: str = "mean"
    init: str | None = None
    optimizer: str = "sgd"
    lr: tuple[float, ...] = (0.1,)
    momentum: float | None = None
    steps: int = 1000
    batch_size: int | None = None
    seeds: int = 1
    seed: int = 0
    grad: str | None = None  # None: manual, unless a rule is given
    rule: str | None = None  # None: backprop (or grad's)
    feedback_scale: float | None = None
    kp_lr: float | None = None
    kp_decay: float | None = None
    alignment_every: int | None = None
    dtype: str = "float32"
    strategy: str = "auto"
    chunk_size: int | None = None
    log_every: int | None = None
    eval_every: int | None = None
    checkpoint_every: int | None = None


FIELDS = {f.name: f for f in dataclasses.fields(ExperimentConfig)}


# --------------------------------------------------------------- validation
def _int(value, name: str, low: int = 1) -> int:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ValueError(f"{name} must be an integer; got {value!r}.") from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}.")
    if value < low:
        raise ValueError(f"{name} must be ≥ {low}; got {value}.")
    return int(value)


def _float(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}.")
    return value


def _choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(
            f"{name}: unknown value {value!r}; expected one of {list(choices)}."
        )
    return value


def _list(value, name: str) -> list:
    """A list from a TOML/JSON array or a comma-separated string."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def make_config(values: Mapping[str, Any], source: str = "") -> ExperimentConfig:
    """A validated ``ExperimentConfig`` from user values (strings, TOML, JSON).

    Raises:
      ValueError: an unknown key or a value that does not fit, named.
    """
    where = f"{source}: " if source else ""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"{where}unknown setting {unknown[0]!r}; expected some of {sorted(FIELDS)}."
        )
    v = {k: x for k, x in values.items() if x is not None}
    out: dict[str, Any] = {}
    for key in ("data", "eval_data"):
        if key in v:
            out[key] = str(v[key])
    data = out.get("data", "xor")
    if data not in DATASETS and Path(data).suffix not in (".npz", ".csv"):
        raise ValueError(
            f"{where}data: unknown dataset {data!r}; expected one of "
            f"{list(DATASETS)} or a path to a .npz or .csv file."
        )
    if "eval_data" in out and Path(out["eval_data"]).suffix not in (".npz", ".csv"):
        raise ValueError(
            f"{where}eval_data must be a .npz or .csv file; got {out['eval_data']!r}."
        )
    # Settings that only some data sets read: refused elsewhere, never ignored.
    synthetic = data in ("moons", "spirals", "blobs")
    for key, applies, which in (
        ("n_train", synthetic, "moons, spirals and blobs"),
        ("n_test", synthetic, "moons, spirals and blobs"),
        ("data_seed", synthetic, "moons, spirals and blobs"),
        ("classes", data in ("spirals", "blobs"), "spirals and blobs"),
        (
            "eval_data",
            data not in DATASETS,
            "file data (the built-in data sets "
            "bring their own test split, or have none: xor)",
        ),
    ):
        if key in v and not applies:
            raise ValueError(
                f"{where}{key} applies to {which} only; it would be ignored with "
                f"data {data!r}."
            )
    for key in (
        "n_train",
        "n_test",
        "classes",
        "alignment_every",
        "steps",
        "seeds",
        "batch_size",
        "chunk_size",
        "log_every",
        "eval_every",
        "checkpoint_every",
    ):
        if key in v:
            out[key] = _int(v[key], where + key)
    for key in ("data_seed", "seed"):
        if key in v:
            out[key] = _int(v[key], where + key, low=0)
    if "sizes" in v:
        sizes = tuple(_int(s, where + "sizes") for s in _list(v["sizes"], "sizes"))
        if len(sizes) < 2:
            raise ValueError(
                f"{where}sizes needs at least an input and an output width; "
                f"got {sizes}."
            )
        out["sizes"] = sizes
    for key, choices in (
        ("activation", ACTIVATIONS),
        ("output_activation", ACTIVATIONS),
        ("cost", COSTS),
        ("reduction", REDUCTIONS),
        ("init", SCHEMES),
        ("optimizer", OPTIMIZERS),
        ("grad", GRADS),
        ("rule", RULES),
        ("dtype", DTYPES),
        ("strategy", STRATEGIES),
    ):
        if key in v:
            out[key] = _choice(v[key], where + key, choices)
    if "lr" in v:
        lr = tuple(_float(x, where + "lr") for x in _list(v["lr"], "lr"))
        if not lr or min(lr) <= 0:
            raise ValueError(
                f"{where}lr must be one or more positive numbers; got {v['lr']!r}."
            )
        if len({f"{x:g}" for x in lr}) != len(lr):
            raise ValueError(
                f"{where}lr: the grid has the same learning rate twice (to 6 "
                f"digits); got {v['lr']!r}."
            )
        out["lr"] = lr
    if "grad" in out and "rule" in out:
        raise ValueError(
            f"{where}grad and rule: give one (grad manual is rule backprop, "
            f"autodiff is rule autodiff)."
        )
    rule = out.get("rule", "backprop")
    for key, rules_ in (
        ("feedback_scale", ("fa", "dfa", "kp")),
        ("kp_lr", ("kp",)),
        ("kp_decay", ("kp",)),
    ):
        if key in v:
            if rule not in rules_:
                raise ValueError(
                    f"{where}{key} applies to rule {' or '.join(rules_)} only; it "
                    f"would be ignored with rule {rule!r}."
                )
            out[key] = _float(v[key], where + key)
    if "classes" in out and out["classes"] < 2:
        raise ValueError(f"{where}classes must be ≥ 2; got {out['classes']}.")
    if "momentum" in v:
        momentum = _float(v["momentum"], where + "momentum")
        optimizer = out.get("optimizer", "sgd")
        if optimizer not in MOMENTUM:
            raise ValueError(
                f"{where}momentum does not apply to optimizer {optimizer!r}; it "
                f"applies to {sorted(MOMENTUM)} (sgd with momentum is 'momentum')."
            )
        if not 0 <= momentum < 1:
            raise ValueError(f"{where}momentum must be in [0, 1); got {momentum}.")
        out["momentum"] = momentum
    if "chunk_size" in out and out.get("strategy", "auto") not in ("auto", "chunked"):
        raise ValueError(
            f"{where}chunk_size goes with strategy 'chunked'; got strategy "
            f"{out['strategy']!r}."
        )
    if out.get("strategy") == "chunked" and "chunk_size" not in out:
        raise ValueError(f"{where}strategy 'chunked' needs chunk_size.")
    config = ExperimentConfig(**out)
    make_rule(config)  # the rule's own checks (scale, decay, ...)
    # Cost and output activation must fit each other: jp.MLP says why not.
    MLP(
        (1, 1),
        config.activation,
        config.output_activation,
        config.cost,
        config.reduction,
    )
    return config


def make_rule(config: ExperimentConfig) -> Rule:
    """The configuration's credit-assignment rule (``grad`` is an alias).

    Raises:
      ValueError, TypeError: a rule parameter out of range, named.
    """
    name = config.rule or {"autodiff": "autodiff"}.get(config.grad, "backprop")
    if name in ("fa", "dfa"):
        return RULES[name](config.feedback_scale)
    if name == "kp":
        lr = config.kp_lr
        if lr is None:
            if len(config.lr) > 1:
                raise ValueError(
                    "kp_lr: give Kolen-Pollack's feedback learning rate with a grid "
                    "of learning rates (it defaults to the one learning rate)."
                )
            lr = config.lr[0]
        decay = 0.001 if config.kp_decay is None else config.kp_decay
        return RULES[name](lr, decay, config.feedback_scale)
    return RULES[name]()


def read_toml(path: str | Path) -> dict[str, Any]:
    """The settings of a TOML config file (keys as in ``ExperimentConfig``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(
            f"--config: cannot read {str(path)!r} ({e.strerror})."
        ) from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML ({e}).") from None
    values = {k.replace("-", "_"): x for k, x in values.items()}
    for key in ("data", "eval_data"):  # file paths are relative to the file's folder
        value = values.get(key)
        if isinstance(value, str) and Path(value).suffix in (".npz", ".csv"):
            values[key] = str(path.parent / value)
    return values


# ---------------------------------------------------------------------- data
class Data(NamedTuple):
    """Training and evaluation arrays shaped for the network's cost."""

    x: np.ndarray
    y: np.ndarray
    x_eval: np.ndarray | None
    y_eval: np.ndarray | None
    classification: bool  # accuracy is meaningful


def _raw_data(config: ExperimentConfig):
    """(x, y, x_eval, y_eval) as the source gives them (labels or targets)."""
    name = config.data
    key = jax.random.key(config.data_seed or 0)
    n, n_test = config.n_train or 200, config.n_test or 1000
    if name == "xor":  # four points, all for training: no held-out metrics
        x, y = _data.xor()
        return x, y, None, None
    # One draw of n + n_test points, the last n_test held out (the blobs' test
    # points share the training centers).
    if name == "moons":
        d = _data.two_moons(key, n, n_test=n_test)
    elif name == "spirals":
        d = _data.spirals(key, n, config.classes or 2, n_test=n_test)
    elif name == "blobs":
        d = _data.blobs(key, n, config.classes or 3, n_test=n_test)
    if name in ("moons", "spirals", "blobs"):
        return d.x, d.y, d.x_test, d.y_test
    if name == "mnist1d":
        try:
            d = _data.mnist1d()
        except ImportError:
            raise ValueError(
                "data: mnist1d needs the mnist1d package: pip install mnist1d."
            ) from None
        return d.x, d.y, d.x_test, d.y_test
    x, y = _load_file(name, "data")
    x_eval = y_eval = None
    if config.eval_data is not None:
        x_eval, y_eval = _load_file(config.eval_data, "eval_data")
    return x, y, x_eval, y_eval


def _load_file(path: str, name: str):
    loader = _data.load_npz if Path(path).suffix == ".npz" else _data.load_csv
    try:
        return loader(path)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: {str(e).removeprefix('path: ')}") from None


#: Output activations whose targets for class 0 / class 1 are not 0 / 1.
TARGET_VALUES = {"tanh": (-1.0, 1.0)}


def _shape_targets(y, n_out: int, net: MLP, dtype) -> np.ndarray:
    """Labels (n,) as the cost needs them: kept (softmax), one column (one
    output) or one-hot, with the output activation's two target values (0/1,
    or ±1 for tanh: the class is the side of the range's midpoint,
    ``jp.classification_threshold``)."""
    y = np.asarray(y)
    if y.ndim == 2 or net.cost == "softmax_cross_entropy":
        return y if y.ndim == 1 else y.astype(dtype)
    low, high = TARGET_VALUES.get(net.output_activation, (0.0, 1.0))
    onehot = y[:, None] if n_out == 1 else np.eye(n_out, dtype=bool)[y]
    return np.where(onehot, high, low).astype(dtype)


def _check_outputs(n_classes: int, n_out: int, cost: str) -> None:
    """The output width must fit the classes: one output (2 classes) or one each."""
    fits = n_out == n_classes or (
        n_out == 1 and n_classes <= 2 and cost != ("softmax_cross_entropy")
    )
    if not fits:
        hint = (
            f"{n_classes}"
            if cost == "softmax_cross_entropy" or n_classes > 2
            else f"1 (one 0/1 output) or {n_classes} (one-hot)"
        )
        raise ValueError(
            f"sizes: the data have {n_classes} classes, so sizes must end with "
            f"{hint}; got {n_out}."
        )


def _net(config: ExperimentConfig, sizes) -> MLP:
    return MLP(
        tuple(sizes),
        config.activation,
        config.output_activation,
        config.cost,
        config.reduction,
    )


def load_data(config: ExperimentConfig) -> tuple[Data, tuple[int, ...]]:
    """The experiment's data and its network sizes (checked against the data)."""
    x, y, x_eval, y_eval = (
        None if a is None else np.asarray(a) for a in _raw_data(config)
    )
    if y.ndim == 1:
        ids = _as_labels(y, "data")
        ids_eval = None if y_eval is None else _as_labels(y_eval, "eval_data")
        if ids is None or (y_eval is not None and ids_eval is None):
            # Real-valued 1-D targets: one output column, not classes.
            if config.cost == "softmax_cross_entropy":
                raise ValueError(
                    "data: softmax_cross_entropy needs class ids 0..k-1 (or ±1) as "
                    "targets; these are real numbers."
                )
            y = y[:, None]
            y_eval = None if y_eval is None else y_eval.reshape(-1, 1)
        else:
            y, y_eval = ids, ids_eval
    labels = y.ndim == 1
    n_classes = (
        int(max(y.max(), -1 if y_eval is None else y_eval.max())) + 1
        if labels
        else None
    )
    if config.sizes is None:
        if labels:
            n_out = (
                1
                if n_classes <= 2 and config.cost != "softmax_cross_entropy"
                else n_classes
            )
        else:
            n_out = y.shape[1]
        sizes = (x.shape[1], 8, n_out)
    else:
        sizes = config.sizes
    if sizes[0] != x.shape[1]:
        raise ValueError(
            f"sizes: the data have {x.shape[1]} input features, so sizes must "
            f"start with {x.shape[1]}; got {sizes[0]}."
        )
    if x_eval is not None and x_eval.shape[1] != x.shape[1]:
        raise ValueError(
            f"eval_data has {x_eval.shape[1]} input features; the data have "
            f"{x.shape[1]}."
        )
    if not labels and y.shape[1] != sizes[-1]:
        raise ValueError(
            f"sizes: the data have {y.shape[1]} target column(s), so sizes must "
            f"end with {y.shape[1]}; got {sizes[-1]}."
        )
    if labels:
        _check_outputs(n_classes, sizes[-1], config.cost)
    classification = labels or bool(np.all((y == 0) | (y == 1)))
    dtype = np.dtype(config.dtype)
    net = _net(config, sizes)
    y = _shape_targets(y, sizes[-1], net, dtype)
    if y_eval is not None:
        y_eval = _shape_targets(y_eval, sizes[-1], net, dtype)
    return Data(
        x.astype(dtype),
        y,
        None if x_eval is None else x_eval.astype(dtype),
        y_eval,
        classification,
    ), sizes


# --------------------------------------------------------------- experiment
def _divisor_near(n: int, target: float) -> int:
    """The divisor of n nearest to target (on a log scale); 1 for a prime n."""
    target = max(1.0, target)
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return min(small + [n // d for d in small], key=lambda d: abs(math.log(d / target)))


def _as_labels(y: np.ndarray, name: str) -> np.ndarray | None:
    """1-D targets as class ids: 0..k-1 as they are, ±1 as 0/1; None for other
    values (real-valued targets, a regression: one output column)."""
    if y.ndim != 1 or y.size == 0:
        return None
    values = np.unique(y)
    if np.all(values == np.round(values)) and values.min() >= 0:
        return y.astype(np.int64)
    if set(values.tolist()) <= {-1.0, 1.0}:
        return (y > 0).astype(np.int64)  # ±1 labels: -1 is class 0
    return None


class Experiment(NamedTuple):
    """A configuration made concrete: data, network, optimizer, trainer, schedule."""

    config: ExperimentConfig
    data: Data
    net: MLP
    trainer: Trainer
    checkpoint_every: int | None  # a multiple of log_every; None: by time
    eval_every: int | None  # None: no held-out data
    alignment_every: int | None  # None: alignment not measured


def _optimizer(config: ExperimentConfig) -> optax.GradientTransformation:
    momentum = (
        config.momentum
        if config.momentum is not None
        else MOMENTUM.get(config.optimizer, 0.0)
    )
    make = OPTIMIZERS[config.optimizer]
    return optax.inject_hyperparams(
        lambda learning_rate: make(learning_rate, momentum)
    )(learning_rate=config.lr[0])


def build(config: ExperimentConfig) -> Experiment:
    """Loads the data and builds the network and trainer; every check runs here.

    Raises:
      ValueError, TypeError: a setting that does not fit the data or the others.
    """
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype: float64 needs jax.config.update('jax_enable_x64', True) "
            "before any array is made (the jaxprop command does it)."
        )
    data, sizes = load_data(config)
    net = _net(config, sizes)
    steps = config.steps
    log_every = config.log_every or _divisor_near(steps, steps / 200)
    if steps % log_every:
        raise ValueError(f"log_every ({log_every}) must divide steps ({steps}).")
    n_blocks = steps // log_every
    checkpoint_every = None
    if config.checkpoint_every is not None:  # whole blocks
        checkpoint_every = -(-config.checkpoint_every // log_every) * log_every
    eval_every = None
    if data.x_eval is not None:
        eval_every = config.eval_every or log_every * max(1, n_blocks // 20)
        if eval_every % log_every:
            raise ValueError(
                f"eval_every ({eval_every}) must be a multiple of log_every "
                f"({log_every})."
            )
    elif config.eval_every is not None:
        raise ValueError(
            f"eval_every needs held-out data, which data {config.data!r} does not "
            f"have (moons, spirals, blobs and mnist1d do; eval_data adds it to "
            f"file data)."
        )
    alignment_every = config.alignment_every
    if alignment_every is None and make_rule(config) not in (
        RULES["backprop"](),
        RULES["autodiff"](),
    ):
        alignment_every = log_every * max(1, n_blocks // 20)
    if alignment_every is not None and alignment_every % log_every:
        raise ValueError(
            f"alignment_every ({alignment_every}) must be a multiple of log_every "
            f"({log_every})."
        )
    keys = jax.random.split(jax.random.key(config.seed), config.seeds)
    trainer = Trainer(
        net,
        keys,
        data.x,
        data.y,
        _optimizer(config),
        steps,
        scheme=config.init,
        rule=make_rule(config),
        batch_size=config.batch_size,
        hparams={"learning_rate": jnp.asarray(config.lr, config.dtype)},
        strategy=config.strategy,
        chunk_size=config.chunk_size,
        eval_data=None if data.x_eval is None else (data.x_eval, data.y_eval),
        eval_every=eval_every,
        alignment_every=alignment_every,
        log_every=log_every,
        dtype=config.dtype,
    )
    return Experiment(
        config, data, net, trainer, checkpoint_every, eval_every, alignment_every
    )


class Checkpoint(NamedTuple):
    """What ``checkpoint.npz`` holds."""

    state: TrainState
    seconds: float  # training time so far


def versions() -> dict[str, str]:
    from . import __version__

    device = jax.devices()[0]
    return {
        "jaxprop": __version__,
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": f"{device.platform}: {device.device_kind} × {len(jax.devices())}",
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
    h = hashlib.sha256()
    for a in (data.x, data.y, data.x_eval, data.y_eval):
        if a is not None:
            h.update(str((a.shape, a.dtype.str)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def resolved(exp: Experiment) -> dict[str, Any]:
    """The settings that defaults resolve from the data and the run's length,
    and the data's fingerprint (checked on resume)."""
    return {
        "data_sha256": data_fingerprint(exp.data),
        "sizes": list(exp.net.sizes),
        "log_every": exp.trainer.log_every,
        "eval_every": exp.eval_every,
        "checkpoint_every": exp.checkpoint_every,
        "alignment_every": exp.alignment_every,
    }


def write_config(out: Path, exp: Experiment, argv=None, **extra) -> None:
    doc = {
        "config": dataclasses.asdict(exp.config),
        "resolved": resolved(exp),
        "versions": versions(),
        "command": ["jaxprop", *argv] if argv is not None else None,
        **extra,
    }
    write_json(out / "config.json", doc)


def _read_doc(out: Path) -> dict:
    path = Path(out) / "config.json"
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc["config"], dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(
            f"--resume: {str(path)!r} is missing or not a jaxprop config.json."
        ) from None
    return doc


def read_config(out: Path) -> ExperimentConfig:
    """The configuration saved in ``out/config.json`` (for ``--resume``)."""
    return make_config(_read_doc(out)["config"], source=str(Path(out) / "config.json"))


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
    schedule = _read_doc(out).get("resolved") or {}
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
) -> Checkpoint:
    """Trains from ``checkpoint`` to the end in chunks of about ``chunk_seconds``
    (``jaxprop._train.advance_in_chunks``: any split gives the same bits).

    After each chunk, ``progress`` gets the runs' last logged losses, and
    ``on_checkpoint(checkpoint)`` is called at the end and every
    ``exp.checkpoint_every`` steps (chunks stop there), or, if that is None, at
    the first chunk end ``checkpoint_seconds`` after the last.
    """
    steps = exp.trainer.steps
    state, seconds = checkpoint
    start_time = time.perf_counter() - seconds
    last_checkpoint = time.perf_counter()

    def on_chunk(state, losses):
        nonlocal last_checkpoint
        if progress is not None:
            progress.update_losses(state.step, losses)
        if exp.checkpoint_every is None:
            due = time.perf_counter() - last_checkpoint >= checkpoint_seconds
        else:
            due = state.step % exp.checkpoint_every == 0
        if on_checkpoint is not None and (due or state.step == steps):
            on_checkpoint(Checkpoint(state, time.perf_counter() - start_time))
            last_checkpoint = time.perf_counter()

    state = advance_in_chunks(
        exp.trainer,
        state,
        on_chunk=on_chunk,
        stop_every=exp.checkpoint_every,
        chunk_seconds=chunk_seconds,
    )
    jax.block_until_ready(state)
    return Checkpoint(state, time.perf_counter() - start_time)


def _saved_like(exp: Experiment, saved_steps: int | None = None) -> Checkpoint:
    """The shapes of a checkpoint of ``exp``'s runs after ``saved_steps`` steps
    in all (default: the experiment's own), for ``load``."""
    trainer = exp.trainer
    like = jax.eval_shape(lambda: trainer.portable(trainer.init()))._replace(step=0)
    n_saved = (saved_steps or trainer.steps) // trainer.log_every
    log = jax.tree.map(
        lambda l: jax.ShapeDtypeStruct((*l.shape[:-1], n_saved), l.dtype), like.log
    )
    return Checkpoint(like._replace(log=log), 0.0)


def save_checkpoint(out: Path, exp: Experiment, checkpoint: Checkpoint) -> Path:
    """Writes ``out/checkpoint.npz`` atomically (portable: any device count)."""
    state = exp.trainer.portable(checkpoint.state)
    return save(out / "checkpoint.npz", checkpoint._replace(state=state)._asdict())


def load_checkpoint(
    out: Path, exp: Experiment, saved_steps: int | None = None
) -> Checkpoint:
    """``out/checkpoint.npz`` as a state of ``exp``'s trainer.

    Args:
      saved_steps: the saved run's length when ``exp`` extends it to more
        steps (its log gains NaN blocks); default ``exp``'s own.
    """
    trainer = exp.trainer
    saved = load(Path(out) / "checkpoint.npz", _saved_like(exp, saved_steps)._asdict())
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


#: What ``jaxprop train --out`` writes (and nothing else lives in its folder).
OUT_FILES = (
    "config.json", "metrics.json", "curves.npz", "final.npz", "checkpoint.npz",
    "loss.png", "regions.png", "alignment.png", "gradcheck.txt", "gradcheck.png",
    "train_accuracy.png", "eval_accuracy.png", "train_loss.png", "eval_loss.png",
)  # fmt: skip


def absolute_paths(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with its data files as absolute paths."""
    files = {
        k: str(Path(getattr(config, k)).resolve())
        for k in ("data", "eval_data")
        if getattr(config, k) is not None
        and Path(getattr(config, k)).suffix in (".npz", ".csv")
    }
    return dataclasses.replace(config, **files)


def check_out_is_free(out: Path) -> None:
    """``out`` is new, empty, or holds only a jaxprop run's own files.

    Raises:
      ValueError: other files there (they would be mixed with the results), or
        a config.json that is not jaxprop's.
    """
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


# ------------------------------------------------------------------- results
def final_metrics(exp: Experiment, result: TrainResult) -> dict[str, np.ndarray]:
    """Per-run (n_lr, n_seeds) final metrics; NaN where a run diverged.

    ``solved`` (classification without held-out data, such as XOR): every
    training example classified correctly (``jp.solved``); a diverged run is
    not solved.
    """
    net, data = exp.net, exp.data

    @jax.jit
    def on(params, x, y):
        def one(p):
            y_hat, cache = net.forward_with_cache(p, x)
            return net.loss_from_cache(cache, y), accuracy_from_output(net, y_hat, y)

        return jax.vmap(jax.vmap(one))(params)

    train_loss, train_acc = on(result.params, data.x, data.y)
    diverged = np.asarray(result.diverged)
    metrics = {
        "train_loss": np.asarray(train_loss),
        "diverged": diverged,
        "diverged_at": np.asarray(result.diverged_at),
    }
    if data.classification:
        metrics["train_accuracy"] = np.asarray(train_acc)
        if data.x_eval is None:  # scored on its training points: solved or not
            metrics["solved"] = ~diverged & (metrics["train_accuracy"] == 1)
    if result.eval_loss is not None:
        metrics["eval_loss"] = np.asarray(result.eval_loss[..., -1])
        if data.classification:
            metrics["eval_accuracy"] = np.asarray(result.eval_accuracy[..., -1])
    for k in ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy"):
        if k in metrics:  # a diverged run has no final metric
            metrics[k] = np.where(diverged, np.nan, metrics[k])
    if result.alignment is not None:  # the last measure, per layer l = 1..L
        for measure, angles in result.alignment._asdict().items():
            for l in range(exp.net.n_layers):
                metrics[f"alignment_{measure}_{l + 1}"] = np.asarray(angles[..., l, -1])
    return metrics


#: Per-run metrics that are flags or steps, not values to summarize.
_NOT_SUMMARIZED = ("diverged", "diverged_at", "solved")


def headline(metrics: Mapping[str, np.ndarray]) -> str:
    """The metric that sums a run up: held-out accuracy, else train accuracy or loss."""
    for k in ("eval_accuracy", "train_accuracy", "eval_loss", "train_loss"):
        if k in metrics:
            return k
    raise AssertionError("no metric")


def _bounds(metric: str) -> tuple[float, float]:
    """The range a metric's values can take (its confidence interval is clipped
    to it: a t-interval of accuracies near 1 can reach past 1)."""
    if "accuracy" in metric:
        return 0.0, 1.0
    if metric.startswith("alignment"):
        return 0.0, 180.0
    return 0.0, math.inf  # the costs: mse, cross-entropies


def _summary(values: np.ndarray, metric: str) -> dict[str, float]:
    """``jp.summarize`` as a dict, with quartiles (NaN, i.e. null, if n is 0)."""
    s = summarize(values)
    low, high = _bounds(metric)
    finite = values[np.isfinite(values)]
    q1, q3 = np.percentile(finite, [25, 75]) if finite.size else (math.nan, math.nan)
    return {
        "n": s.n,
        "n_nan": s.n_nan,
        "mean": s.mean,
        "ci95_low": min(max(s.ci_low, low), high),
        "ci95_high": max(min(s.ci_high, high), low),
        "median": s.median,
        "q1": float(q1),
        "q3": float(q3),
        "min": s.min,
        "max": s.max,
    }


def _group(metrics: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    """The summary of learning rate i's runs."""
    out: dict[str, Any] = {
        k: _summary(v[i], k) for k, v in metrics.items() if k not in _NOT_SUMMARIZED
    }
    diverged = metrics["diverged"][i]
    at = metrics["diverged_at"][i][diverged]
    out["runs"] = int(diverged.size)
    out["diverged"] = int(diverged.sum())
    out["diverged_at"] = (
        {"first": int(at.min()), "median": float(np.median(at)), "last": int(at.max())}
        if at.size
        else None
    )
    if "solved" in metrics:
        p = proportion(metrics["solved"][i])
        out["solved"] = {
            "successes": p.successes,
            "n": p.n,
            "fraction": p.fraction,
            "ci95_low": p.ci_low,
            "ci95_high": p.ci_high,
        }
    return out


def results_doc(exp: Experiment, checkpoint: Checkpoint):
    """(metrics.json's document, the TrainResult, per-run metrics) of a finished run.

    Summaries of a learning rate whose every run diverged have n = 0 and null
    statistics; nothing raises.
    """
    config, trainer = exp.config, exp.trainer
    result = trainer.result(checkpoint.state)
    metrics = final_metrics(exp, result)
    seconds = checkpoint.seconds
    n_runs = math.prod(trainer.shape)
    doc = {
        "headline": headline(metrics),
        "evaluated_on": (
            "held-out data" if exp.data.x_eval is not None else "the training data"
        ),
        "summary": {f"lr={lr:g}": _group(metrics, i) for i, lr in enumerate(config.lr)},
        "runs": [
            {"lr": lr, "seed": s} | {k: v[i, s].item() for k, v in metrics.items()}
            for i, lr in enumerate(config.lr)
            for s in range(config.seeds)
        ],
        "timing": {
            "train_s": seconds,
            "steps": config.steps,
            "runs": n_runs,
            "run_steps_per_s": n_runs * config.steps / seconds if seconds else None,
            "strategy": list(trainer.strategy),
        },
    }
    return doc, result, metrics


def _best_lr(doc: Mapping[str, Any], lrs) -> int:
    """Index of the learning rate with the best median headline metric."""
    key = doc["headline"]
    sign = 1 if "accuracy" in key else -1
    medians = [doc["summary"][f"lr={lr:g}"][key]["median"] for lr in lrs]
    scores = [sign * m if math.isfinite(m) else -math.inf for m in medians]
    return int(np.argmax(scores))


def write_results(out: Path, exp: Experiment, checkpoint: Checkpoint) -> dict:
    """metrics.json, curves.npz, final.npz, then the plots; returns the metrics doc."""
    from . import _plots

    config = exp.config
    doc, result, metrics = results_doc(exp, checkpoint)
    write_json(out / "metrics.json", doc)
    every = exp.trainer.log_every
    steps = every * np.arange(1, config.steps // every + 1)
    curves = {
        "steps": steps,
        "lr": np.asarray(config.lr),
        "losses": np.asarray(result.losses),
        **{k: v for k, v in metrics.items()},
    }
    evals = {}
    if result.eval_loss is not None:
        evals = {
            "eval_steps": np.asarray(result.eval_steps[0, 0]),
            "eval_loss": np.asarray(result.eval_loss),
            "eval_accuracy": np.asarray(result.eval_accuracy),
        }
        if not exp.data.classification:
            del evals["eval_accuracy"]
    curves |= evals
    if result.alignment is not None:
        curves["alignment_steps"] = np.asarray(result.alignment_steps[0, 0])
        for measure, angles in result.alignment._asdict().items():
            curves[f"alignment_{measure}"] = np.asarray(angles)  # (n_lr, n_seeds, L, n)
    atomic_write(out / "curves.npz", lambda f: np.savez(f, **curves))
    final = {"params": result.params, "opt_state": result.opt_state}
    if jax.tree.leaves(result.rule_state):
        final["rule_state"] = result.rule_state
    save(out / "final.npz", final)
    _plots.loss_curves(
        out / "loss.png", steps, np.asarray(result.losses), config.lr, **evals
    )
    if result.alignment is not None:
        _plots.alignment_curves(
            out / "alignment.png",
            curves["alignment_steps"],
            {k: curves[f"alignment_{k}"] for k in result.alignment._fields},
            config.lr,
            config.rule,
        )
    key = doc["headline"]
    _plots.histogram(out / f"{key}.png", metrics[key], config.lr, key.replace("_", " "))
    if exp.data.x.shape[1] == 2:
        i = _best_lr(doc, config.lr)
        params = jax.tree.map(lambda l: l[i], result.params)
        threshold = (
            0.5
            if exp.net.cost == "softmax_cross_entropy"
            else classification_threshold(exp.net)
        )
        _plots.decision_regions(
            out / "regions.png",
            exp.net,
            params,
            exp.data,
            config.lr[i],
            threshold=threshold,
            diverged=metrics["diverged"][i],
        )
    return doc


#: Finite differences at this many random entries of each parameter array when
#: a network has more than ``FULL_CHECK_PARAMS`` parameters (a 40-256-256-10 MLP:
#: 3 s instead of 2 minutes).
SAMPLED_ENTRIES = 32
FULL_CHECK_PARAMS = 5000


class GradientCheck(NamedTuple):
    """A gradient check of one run's initial parameters, and what it covered."""

    report: Any  # jp.GradCheckReport
    examples: int
    numeric_entries: int | None  # per array; None: every entry

    def describe(self) -> str:
        fd = (
            "every entry"
            if self.numeric_entries is None
            else f"{self.numeric_entries} random entries per array"
        )
        return (
            f"gradient check of the first run's initial parameters on "
            f"{self.examples} training examples ({self.report.dtype}; finite "
            f"differences at {fd}): {'PASSED' if self.report.passed else 'FAILED'}"
        )


def gradient_check(
    exp: Experiment, n: int = 8, dtype: str | None = None
) -> GradientCheck:
    """check_grads of the first run's initial params on the first ≤ n examples.

    The params are read through the trainer's public accessor (any strategy and
    device count). In ``dtype``; by default float64 where 64-bit mode is on
    (else float32). Finite differences cover every entry of networks up to
    ``FULL_CHECK_PARAMS`` parameters, else ``SAMPLED_ENTRIES`` per array.
    """
    if dtype is None:
        dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    trainer = exp.trainer
    first = (0,) * len(trainer.shape)
    params = jax.tree.map(
        lambda l: jnp.asarray(l[first], dtype), trainer.runs(trainer.init()).params
    )
    x, y = exp.data.x[:n].astype(dtype), exp.data.y[:n]
    if y.dtype.kind == "f":
        y = y.astype(dtype)
    n_params = sum(l.size for l in jax.tree.leaves(params))
    entries = None if n_params <= FULL_CHECK_PARAMS else SAMPLED_ENTRIES
    report = check_grads(exp.net, params, x, y, numeric_entries=entries)
    return GradientCheck(report, int(x.shape[0]), entries)


def write_gradient_check(out: Path, exp: Experiment) -> GradientCheck:
    """``gradcheck.txt`` and ``gradcheck.png`` of :func:`gradient_check`."""
    from . import _plots

    check = gradient_check(exp)
    text = f"{check.describe()}\n\n{check.report}\n"
    atomic_write(out / "gradcheck.txt", lambda f: f.write(text.encode()))
    _plots.gradcheck(out / "gradcheck.png", check.report)
    return check


def start(
    exp: Experiment,
    out: Path | None = None,
    *,
    resume: bool = False,
    saved_steps: int | None = None,
    argv=None,
    stream: TextIO | None = None,
) -> Checkpoint:
    """The checkpoint a run starts from, with ``out`` made ready for it.

    A fresh run (or ``resume`` with no checkpoint yet in ``out``) starts at step
    0 and writes ``out/config.json``; a resumed one loads ``out/checkpoint.npz``
    (``saved_steps``: as for :func:`load_checkpoint`) and rewrites config.json
    if the run is extended. Every error is raised here, before any training.

    Raises:
      ValueError: ``out`` is not writable or too small, or its checkpoint does
        not fit the run.
    """
    stream = sys.stderr if stream is None else stream
    if out is not None and resume and (out / "checkpoint.npz").exists():
        saved = (_read_doc(out).get("resolved") or {}).get("data_sha256")
        if saved is not None and saved != data_fingerprint(exp.data):
            raise ValueError(
                f"--resume: the data of {exp.config.data!r} changed since the run in "
                f"{out} started (their SHA-256 differs from config.json's); "
                f"restore them, or start a new run."
            )
        checkpoint = load_checkpoint(out, exp, saved_steps)
        print(f"resuming {out} at step {checkpoint.state.step}", file=stream)
        if saved_steps is not None and saved_steps != exp.config.steps:
            print(
                f"extending the run from {saved_steps} to {exp.config.steps} steps",
                file=stream,
            )
            prepare_out(out, exp, argv, extended_from=saved_steps)
        return checkpoint
    if out is not None:
        if resume:
            print(f"{out} has no checkpoint yet: starting from step 0", file=stream)
        prepare_out(out, exp, argv)
    return Checkpoint(exp.trainer.init(), 0.0)


def run_experiment(
    exp: Experiment,
    checkpoint: Checkpoint,
    out: Path | None = None,
    *,
    progress: str = "auto",
    stream: TextIO | None = None,
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
        )


# --------------------------------------------------------------- reading back
class SavedRun(NamedTuple):
    """A finished ``jaxprop train --out DIR`` run, read back by :func:`load_run`.

    Attributes:
      path: the folder.
      config: its :class:`ExperimentConfig`.
      net: the trained network (``jp.MLP``).
      params: every run's final params, leaves with leading (n_lr, n_seeds) axes.
      opt_state: every run's final optimizer state, the same leading axes.
      curves: ``curves.npz`` as a dict of NumPy arrays (``steps``, ``losses``
        (n_lr, n_seeds, n_logged), ``eval_*``, and the final per-run metrics).
      metrics: ``metrics.json`` (summaries per learning rate, one record per run).
      rule_state: every run's final rule state (``()`` for backprop).
    """

    path: Path
    config: ExperimentConfig
    net: MLP
    params: Any
    opt_state: Any
    curves: dict[str, np.ndarray]
    metrics: dict[str, Any]
    rule_state: Any = ()

    def run(self, lr_index: int, seed: int):
        """The final params of one (learning rate, seed) run."""
        return jax.tree.map(lambda l: l[lr_index, seed], self.params)


def load_run(path) -> SavedRun:
    """Reads a finished ``jaxprop train --out DIR`` folder back.

    Needs no data and no optimizer from the user: the network and the
    optimizer's state structure are rebuilt from ``config.json``.

    Raises:
      ValueError: not a finished run's folder (says which file is missing).
    """
    path = Path(path)
    doc = _read_doc(path)
    config = read_config(path)
    for name in ("final.npz", "curves.npz", "metrics.json"):
        if not (path / name).is_file():
            raise ValueError(
                f"path: {str(path)!r} has no {name}: the run did not finish "
                f"(jaxprop train --resume {path} finishes it)."
            )
    sizes = (doc.get("resolved") or {}).get("sizes") or config.sizes
    net = _net(config, sizes)
    optimizer, rule = _optimizer(config), make_rule(config)

    def like():
        params = net.init(jax.random.key(0), dtype=config.dtype)
        tree = {"params": params, "opt_state": optimizer.init(params)}
        rule_state = rule.init(jax.random.key(0), net, params)
        if jax.tree.leaves(rule_state):
            tree["rule_state"] = rule_state
        lead = (len(config.lr), config.seeds)
        return jax.tree.map(lambda l: jnp.broadcast_to(l, lead + l.shape), tree)

    final = load(path / "final.npz", like=jax.eval_shape(like))
    with np.load(path / "curves.npz") as f:
        curves = {k: f[k] for k in f.files}
    metrics = json.loads((path / "metrics.json").read_text())
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
