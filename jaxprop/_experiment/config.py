"""The experiment's configuration: ``ExperimentConfig``, its validation from
strings/TOML/JSON (``make_config``), and the rule it names."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optax

from .._core.activations import ACTIVATIONS
from .._core.costs import COSTS, REDUCTIONS
from .._core.params import SCHEMES
from .._engine.layout import STRATEGIES
from .._engine.train import GRADS
from .._network import MLP
from .._validate import (
    choice,
    expected_one_of,
    in_unit_interval,
    integer,
    number,
    positive_number,
)
from ..rules import RULES, Rule, dp_sgd
from .dp import dp_settings
from .layer_spec import format_layers, parse_layers

#: Every name a rule is read by: the short ones of ``RULES`` and the library's
#: (``feedback_alignment`` ...), each to the short one config.json keeps.
RULE_NAMES = {name: name for name in RULES} | {f.__name__: n for n, f in RULES.items()}
DATASETS = ("xor", "moons", "spirals", "blobs", "mnist1d", "digits", "fashion_mnist")
#: Data sets read from the user's files, given as ``NAME:PATH`` (a folder of the
#: four IDX files or a Keras-style .npz; ``jp.data.load_mnist``); fashion_mnist
#: without a path reads Debian's package (``jp.data.fashion_mnist``).
FILE_DATASETS = ("mnist", "fashion_mnist")
DTYPES = ("float32", "float64")
#: The settings that belong to some rules only, and the rules that read them
#: (with another rule they are refused; a study of several rules gives each to
#: the rules that read it).
RULE_SETTINGS = {
    "feedback_scale": ("fa", "dfa", "kp"),
    "kp_lr": ("kp",),
    "kp_decay": ("kp",),
    "kp_paired": ("kp",),
    "alignment_every": ("fa", "dfa", "sign", "kp"),
}
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
      data: ``xor``, ``moons``, ``spirals``, ``blobs``, ``mnist1d``,
        ``digits``, ``fashion_mnist`` (the files of Debian's
        dataset-fashion-mnist package), ``mnist:PATH`` or
        ``fashion_mnist:PATH`` (a folder of the four IDX files or a
        Keras-style ``.npz``), or a path to a ``.npz`` (arrays ``x``, ``y``)
        or ``.csv`` (targets in the last column).
      eval_data: optional held-out ``.npz``/``.csv``, for file data only (moons,
        spirals, blobs, mnist1d, digits, mnist and fashion_mnist bring their own
        test split; XOR has only its 4 training points, so it has no held-out
        metrics).
      n_train, n_test: examples drawn for moons/spirals/blobs (default 200, 1000).
      classes: classes for spirals and blobs (default 2 and 3).
      data_seed: seed of moons/spirals/blobs (n_train + n_test points, split in two).
      sizes: layer widths (n_in, ..., n_out) of a ``jp.MLP``; default
        (n_in, 8, n_out).
      layers: instead of sizes, a ``jp.Network``'s layers in the short syntax
        of ``layer_spec`` (``conv25k5s2p1,flatten,dense10``), as
        ``format_layers`` writes it.
      input_shape: with layers, one example's shape, channels last ((40, 1));
        default: the data set's own with a conv or pool first (mnist1d
        (40, 1), digits (8, 8, 1), mnist and fashion_mnist (28, 28, 1), a
        .npz's x of shape (n, *shape)), else flat rows (n_in,).
      activation, output_activation, cost, reduction: as for ``jp.MLP``.
      init: initialization scheme (default: the activation's).
      optimizer: one of ``OPTIMIZERS``; lr: one or more learning rates (a grid:
        every seed is trained at each); momentum: momentum or β₁ in [0, 1), for
        the optimizers that have one (``MOMENTUM``).
      steps, batch_size (None: full batch), seeds, seed (the first key), grad,
      dtype, strategy, chunk_size: as for ``jp.train_seeds``.
      rule: a credit-assignment rule by name (``jp.rules.RULES``: backprop,
        autodiff, fa, dfa, sign, kp; ``make_config`` also reads the library's
        names, feedback_alignment ..., ``RULE_NAMES``); grad is the older alias
        of the first two.
      feedback_scale: the range of fa/dfa/kp's random feedback (default
        theirs); kp_lr, kp_decay: Kolen-Pollack's B update (default: each
        grid point's learning rate, and 0.001); kp_paired: train kp with
        ``jp.rules.kolen_pollack_sgd`` (SGD with the weight decay that makes
        W − B shrink as (1 − decay)^t; the default with optimizer sgd) or
        with the optimizer alone (false; runs saved before the pairing
        existed resume so).
      clip_norm, noise_multiplier: DP-SGD (``jp.rules.dp_sgd``) on the rule's
        updates: per-example clipping to C and Gaussian noise σC; delta: the δ
        at which metrics.json reports ε (``jp.dp_epsilon``; default 1e-5);
        sampling ``"poisson"`` with sampling_rate q: every step a Poisson
        sample of the whole data set (no batch_size), for which ε is a
        guarantee; target_epsilon: the ε that noise_multiplier was calibrated
        to (``jp.dp_noise_multiplier``, resolved by ``make_config`` over the
        steps, and recorded beside it).
      alignment_every: steps between measures of the rule's alignment with
        backprop, for a rule other than backprop/autodiff (default ~1/20).
      diagnostics_every, sharpness: as for ``jp.train`` (the gradient's
        diagnostics), sharpness "hessian" (the default), "ggn" or "none".
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
    layers: str | None = None
    input_shape: tuple[int, ...] | None = None
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
    kp_paired: bool | None = None  # None: not kp
    alignment_every: int | None = None
    diagnostics_every: int | None = None
    sharpness: str | None = None  # None: "hessian" with diagnostics_every
    clip_norm: float | None = None
    noise_multiplier: float | None = None
    delta: float | None = None
    sampling: str | None = None  # None: every example of the batch
    sampling_rate: float | None = None
    target_epsilon: float | None = None  # noise_multiplier is resolved from it
    dtype: str = "float32"
    strategy: str = "auto"
    chunk_size: int | None = None
    log_every: int | None = None
    eval_every: int | None = None
    checkpoint_every: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The settings by name, as config.json's ``"config"`` holds them
        (lists, not tuples); ``make_config(d)`` rebuilds the same one."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


FIELDS = {f.name: f for f in dataclasses.fields(ExperimentConfig)}


# --------------------------------------------------------------- validation
def data_source(data: str) -> tuple[str, str | None]:
    """``("mnist", PATH)`` for ``data`` ``mnist:PATH`` (a ``FILE_DATASETS``
    name), else ``(data, None)``."""
    name, colon, path = data.partition(":")
    if colon and name in FILE_DATASETS:
        return name, path
    return data, None


def as_list(value, name: str) -> list:
    """A list from a TOML/JSON array or a comma-separated string."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def make_config(
    values: Mapping[str, Any],
    source: str = "",
    names: Mapping[str, str] | None = None,
    *,
    saved: bool = False,
) -> ExperimentConfig:
    """A validated ``ExperimentConfig`` from user values (strings, TOML, JSON).

    Args:
      values: settings by ``ExperimentConfig``'s field names; numbers may be
        strings, lists comma-separated strings.
      source: where the values come from (a file), prefixed to every message.
      names: what messages call a setting where it is not its key: the option
        the user typed (``{"kp_decay": "--kp-decay"}`` for the command line).
      saved: the values are a run's config.json: settings that older versions
        accepted and this one refuses for new runs (alignment_every with
        backprop) are kept, so that the run loads and resumes as it trained.

    Raises:
      ValueError, TypeError: an unknown key or a value that does not fit, named
        (the vocabulary of ``jaxprop._validate``).
    """
    try:
        return _make_config(values, lambda key: (names or {}).get(key, key), saved)
    except (ValueError, TypeError) as e:
        if not source:
            raise
        raise type(e)(f"{source}: {e}") from None


def _make_config(values: Mapping[str, Any], n, saved: bool) -> ExperimentConfig:
    """``make_config``'s checks, step by step; ``n(key)``: the setting's name in
    messages."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"unknown setting {unknown[0]!r}; "
            f"{expected_one_of(unknown[0], sorted(FIELDS))}"
        )
    v = {k: x for k, x in values.items() if x is not None}
    out: dict[str, Any] = {}
    _data_settings(v, out, n)
    _numbers_and_choices(v, out, n)
    rule = _rule_settings(v, out, n, saved)
    _optimizer_and_strategy(v, out, n)
    config = ExperimentConfig(**out)
    make_rule(config)  # the rule's own checks (scale, decay, ...)
    if rule == "kp":
        _kp_checks(config, n)
    # Cost and output activation must fit each other: jp.MLP says why not.
    MLP(
        (1, 1),
        config.activation,
        config.output_activation,
        config.cost,
        config.reduction,
    )
    return config


def _data_settings(v: dict, out: dict, n) -> None:
    """``data`` and ``eval_data``, and the settings only some data sets read:
    refused elsewhere, never ignored."""
    for key in ("data", "eval_data"):
        if key in v:
            out[key] = str(v[key])
    data = out.get("data", "xor")
    source, path = data_source(data)
    if (source == "mnist" and not path) or path == "":  # mnist, or NAME: empty
        debian = " (or fashion_mnist alone: Debian's package)" * (
            source == "fashion_mnist"
        )
        raise ValueError(
            f"{n('data')}: {source} needs the path of its files: {source}:PATH, a "
            f"folder of the four IDX files (gzipped or not) or a Keras-style .npz"
            f"{debian}; nothing is downloaded."
        )
    builtin = data in DATASETS or source in FILE_DATASETS
    if not builtin and Path(data).suffix not in (".npz", ".csv"):
        raise ValueError(
            f"{n('data')}: unknown dataset {data!r}; "
            f"{expected_one_of(data, DATASETS).rstrip('.')}, mnist:PATH, "
            f"fashion_mnist:PATH, or a path to a .npz or .csv file."
        )
    if "eval_data" in out and Path(out["eval_data"]).suffix not in (".npz", ".csv"):
        raise ValueError(
            f"{n('eval_data')} must be a .npz or .csv file; got {out['eval_data']!r}."
        )
    synthetic = data in ("moons", "spirals", "blobs")
    for key, applies, which in (
        ("n_train", synthetic, "moons, spirals and blobs"),
        ("n_test", synthetic, "moons, spirals and blobs"),
        ("data_seed", synthetic, "moons, spirals and blobs"),
        ("classes", data in ("spirals", "blobs"), "spirals and blobs"),
        (
            "eval_data",
            not builtin,
            "file data (the built-in data sets, mnist and fashion_mnist "
            "bring their own test split, or have none: xor)",
        ),
    ):
        if key in v and not applies:
            raise ValueError(
                f"{n(key)} applies to {which} only; it would be ignored with "
                f"{n('data')} {data!r}."
            )


def _numbers_and_choices(v: dict, out: dict, n) -> None:
    """Integers, widths, names from their registries, the learning-rate grid."""
    for key in (
        "n_train",
        "n_test",
        "alignment_every",
        "diagnostics_every",
        "steps",
        "seeds",
        "batch_size",
        "chunk_size",
        "log_every",
        "eval_every",
        "checkpoint_every",
    ):
        if key in v:
            out[key] = integer(v[key], n(key), parse=True)
    if "classes" in v:
        out["classes"] = integer(v["classes"], n("classes"), low=2, parse=True)
    for key in ("data_seed", "seed"):
        if key in v:
            out[key] = integer(v[key], n(key), low=0, parse=True)
    if "sizes" in v:
        sizes = tuple(
            integer(s, n("sizes"), parse=True) for s in as_list(v["sizes"], "sizes")
        )
        if len(sizes) < 2:
            raise ValueError(
                f"{n('sizes')} needs at least an input and an output width; "
                f"got {sizes}."
            )
        out["sizes"] = sizes
    _layer_settings(v, out, n)
    for key, choices in (
        ("activation", ACTIVATIONS),
        ("output_activation", ACTIVATIONS),
        ("cost", COSTS),
        ("reduction", REDUCTIONS),
        ("init", SCHEMES),
        ("optimizer", OPTIMIZERS),
        ("grad", GRADS),
        ("rule", RULE_NAMES),
        ("dtype", DTYPES),
        ("strategy", STRATEGIES),
        ("sharpness", ("hessian", "ggn", "none")),
    ):
        if key in v:
            out[key] = choice(v[key], n(key), choices)
    if "sharpness" in out and "diagnostics_every" not in out:
        raise ValueError(f"{n('sharpness')} goes with {n('diagnostics_every')}.")
    if "rule" in out:
        out["rule"] = RULE_NAMES[out["rule"]]
    if "lr" in v:
        lr = tuple(number(x, n("lr"), parse=True) for x in as_list(v["lr"], "lr"))
        if not lr or min(lr) <= 0:
            raise ValueError(
                f"{n('lr')} must be one or more positive numbers; got {v['lr']!r}."
            )
        if len({f"{x:g}" for x in lr}) != len(lr):
            raise ValueError(
                f"{n('lr')}: the grid has the same learning rate twice (to 6 "
                f"digits); got {v['lr']!r}."
            )
        out["lr"] = lr


def _layer_settings(v: dict, out: dict, n) -> None:
    """``layers`` (a Network) instead of ``sizes`` (an MLP), and its input shape."""
    if "layers" in v:
        if "sizes" in v:
            raise ValueError(
                f"{n('sizes')} and {n('layers')}: give one ({n('sizes')} makes an "
                f"MLP of dense layers, {n('layers')} a network of any layers)."
            )
        out["layers"] = format_layers(parse_layers(v["layers"], n("layers")))
    if "input_shape" in v:
        if "layers" not in v:
            raise ValueError(
                f"{n('input_shape')} goes with {n('layers')}; an MLP "
                f"({n('sizes')}) takes flat rows of features."
            )
        shape = tuple(
            integer(s, n("input_shape"), parse=True)
            for s in as_list(v["input_shape"], "input_shape")
        )
        if not shape:
            raise ValueError(
                f"{n('input_shape')} must be one example's shape, channels last, "
                f"e.g. 40,1 or 28,28,1; got {v['input_shape']!r}."
            )
        out["input_shape"] = shape


def _rule_settings(v: dict, out: dict, n, saved: bool) -> str:
    """The rule's own settings (feedback scale, Kolen-Pollack, alignment, DP-SGD):
    each refused with another rule. Returns the rule as the user named it."""
    if "grad" in out and "rule" in out:
        raise ValueError(
            f"{n('grad')} and {n('rule')}: give one (grad manual is rule backprop, "
            f"autodiff is rule autodiff)."
        )
    # The rule as the user named it: --rule, --grad, or neither (backprop).
    said = "grad" if "grad" in out else "rule"
    rule = out.get("rule") or {"autodiff": "autodiff"}.get(out.get("grad"), "backprop")
    for key, check in (
        ("feedback_scale", positive_number),
        ("kp_lr", positive_number),
        ("kp_decay", in_unit_interval),
    ):
        if key in v:
            rules_ = RULE_SETTINGS[key]
            if rule not in rules_:
                raise ValueError(
                    f"{n(key)} applies to {n('rule')} {' or '.join(rules_)} only; "
                    f"it would be ignored with {n(said)} {rule!r}."
                )
            # The library's own checks (jp.rules), under the user's name.
            out[key] = check(v[key], n(key), parse=True)
    if rule == "kp":
        optimizer = out.get("optimizer", "sgd")
        paired = _boolean(v["kp_paired"], n("kp_paired")) if "kp_paired" in v else None
        if paired and optimizer != "sgd":
            raise ValueError(
                f"{n('kp_paired')} pairs Kolen-Pollack with SGD's weight decay; it "
                f"applies to {n('optimizer')} 'sgd' only, not {optimizer!r}."
            )
        out["kp_paired"] = optimizer == "sgd" if paired is None else paired
    elif "kp_paired" in v:
        raise ValueError(
            f"{n('kp_paired')} applies to {n('rule')} kp only; it would be ignored "
            f"with {n(said)} {rule!r}."
        )
    if "alignment_every" in out and rule in ("backprop", "autodiff") and not saved:
        raise ValueError(
            f"{n('alignment_every')} measures a rule's angles to backprop; "
            f"{n(said)} {rule} computes backprop's own gradient, so it would "
            f"measure nothing: use {n('rule')} fa, dfa, sign or kp, or drop "
            f"{n('alignment_every')}."
        )
    steps = out.get("steps", FIELDS["steps"].default)
    dp_settings(v, out, n, rule, said, steps, saved)
    return rule


def _optimizer_and_strategy(v: dict, out: dict, n) -> None:
    """Momentum where the optimizer has one; chunk size with the chunked strategy."""
    if "momentum" in v:
        momentum = in_unit_interval(v["momentum"], n("momentum"), parse=True)
        optimizer = out.get("optimizer", "sgd")
        if optimizer not in MOMENTUM:
            raise ValueError(
                f"{n('momentum')} does not apply to {n('optimizer')} {optimizer!r}; "
                f"it applies to {sorted(MOMENTUM)} (sgd with momentum is "
                f"'momentum')."
            )
        out["momentum"] = momentum
    if "chunk_size" in out and out.get("strategy", "auto") not in ("auto", "chunked"):
        raise ValueError(
            f"{n('chunk_size')} goes with {n('strategy')} 'chunked'; got "
            f"{n('strategy')} {out['strategy']!r}."
        )
    if out.get("strategy") == "chunked" and "chunk_size" not in out:
        raise ValueError(f"{n('strategy')} 'chunked' needs {n('chunk_size')}.")


def make_rule(config: ExperimentConfig) -> Rule:
    """The configuration's credit-assignment rule (``grad`` is an alias),
    wrapped in ``jp.rules.dp_sgd`` when ``clip_norm`` is set.

    Raises:
      ValueError, TypeError: a rule parameter out of range, named.
    """
    rule = _base_rule(config)
    if config.clip_norm is not None:
        rule = dp_sgd(
            config.clip_norm,
            config.noise_multiplier,
            base=rule,
            sampling=config.sampling,
            sampling_rate=config.sampling_rate,
        )
    return rule


#: Kolen-Pollack's default weight decay per step (``kp_decay``).
KP_DECAY = 0.001


def _base_rule(config: ExperimentConfig) -> Rule:
    name = config.rule or {"autodiff": "autodiff"}.get(config.grad, "backprop")
    if name in ("fa", "dfa"):
        return RULES[name](config.feedback_scale)
    if name == "kp":
        # Without kp_lr, B's rate is each grid point's learning rate (the
        # trainer's grid sets it): the first one here.
        lr = config.lr[0] if config.kp_lr is None else config.kp_lr
        return RULES[name](lr, kp_decay(config), config.feedback_scale)
    return RULES[name]()


def kp_decay(config: ExperimentConfig) -> float:
    """Kolen-Pollack's weight decay per step."""
    return KP_DECAY if config.kp_decay is None else config.kp_decay


def _kp_checks(config: ExperimentConfig, n) -> None:
    """Kolen-Pollack's settings that would leave W − B without its (1 − decay)^t
    shrinkage: refused where a number would silently be another, warned where
    it is a choice."""
    if config.clip_norm is not None and config.kp_lr is None and len(config.lr) > 1:
        raise ValueError(
            f"{n('kp_lr')}: under DP-SGD ({n('clip_norm')}) Kolen-Pollack's "
            f"feedback rate cannot follow a grid of {n('lr')}; give it."
        )
    if not config.kp_paired:
        warnings.warn(
            f"{n('rule')} kp with {n('optimizer')} {config.optimizer}"
            + (f" and {n('kp_paired')} false" if config.optimizer == "sgd" else "")
            + f": W does not take the feedback's step, so W − B no longer shrinks "
            f"as (1 − decay)^t and B need not converge to W; {n('optimizer')} sgd "
            f"pairs them (the default).",
            UserWarning,
            stacklevel=3,
        )
    elif config.kp_lr is not None and any(lr != config.kp_lr for lr in config.lr):
        warnings.warn(
            f"{n('kp_lr')} {config.kp_lr:g} with {n('lr')} "
            f"{','.join(f'{lr:g}' for lr in config.lr)}: B steps at another rate "
            f"than W, so W − B no longer shrinks as (1 − decay)^t; leave out "
            f"{n('kp_lr')} to pair them.",
            UserWarning,
            stacklevel=3,
        )


def _boolean(value, name: str) -> bool:
    """``value`` as a bool: True/False, or the strings true/false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{name} must be true or false; got {value!r}.")


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
        if isinstance(value, str):
            values[key] = _map_path(value, lambda p: path.parent / p)
    return values


def _map_path(data: str, f) -> str:
    """``data`` with its file path ``p`` (of ``mnist:p``, ``p.npz``, ``p.csv``)
    replaced by ``f(Path(p))``; names of built-in data sets unchanged."""
    source, path = data_source(data)
    if source in FILE_DATASETS and path:
        return f"{source}:{f(Path(path).expanduser())}"
    if Path(data).suffix in (".npz", ".csv"):
        return str(f(Path(data)))
    return data


def absolute_paths(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with its data files as absolute paths."""
    files = {
        k: _map_path(getattr(config, k), Path.resolve)
        for k in ("data", "eval_data")
        if getattr(config, k) is not None
    }
    return dataclasses.replace(config, **files)
