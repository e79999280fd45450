"""The experiment's data: loaded, checked against the network, targets shaped
for the cost."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from .. import data as datasets
from .._core.costs import Cost, get_cost
from .._network import MLP, Net, Network
from ..layers import Dense
from .config import ExperimentConfig, data_source
from .layer_spec import format_layers, parse_layers

#: One example's shape, channels last, of the data sets that have one: the
#: input shape of ``layers`` that start with a conv or a pool.
INPUT_SHAPES = {
    "mnist1d": (40, 1),
    "digits": (8, 8, 1),
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
}


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
        x, y = datasets.xor()
        return x, y, None, None
    # One draw of n + n_test points, the last n_test held out (the blobs' test
    # points share the training centers).
    if name == "moons":
        d = datasets.two_moons(key, n, n_test=n_test)
    elif name == "spirals":
        d = datasets.spirals(key, n, config.classes or 2, n_test=n_test)
    elif name == "blobs":
        d = datasets.blobs(key, n, config.classes or 3, n_test=n_test)
    if name in ("moons", "spirals", "blobs"):
        return d.x, d.y, d.x_test, d.y_test
    if name == "mnist1d":
        try:
            d = datasets.mnist1d()
        except ImportError:
            raise ValueError(
                "data: mnist1d needs the mnist1d package: pip install mnist1d."
            ) from None
        return d.x, d.y, d.x_test, d.y_test
    if name == "digits":
        try:
            d = datasets.digits()
        except ImportError:
            raise ValueError(
                "data: digits needs scikit-learn: pip install scikit-learn, or "
                "pip install -e '.[digits]' in jaxprop's source."
            ) from None
        return d.x, d.y, d.x_test, d.y_test
    if name == "fashion_mnist":  # Debian's package
        try:
            d = datasets.fashion_mnist()
        except FileNotFoundError:
            raise ValueError(
                "data: fashion_mnist reads the files of Debian's "
                "dataset-fashion-mnist package (/usr/share/datasets/"
                "fashion-mnist), which is not installed: apt-get install "
                "dataset-fashion-mnist, or give fashion_mnist:PATH (a folder "
                "of the four IDX files or a Keras-style .npz)."
            ) from None
        except (ValueError, TypeError) as e:
            raise ValueError(f"data: {e}") from None
        return d.x, d.y, d.x_test, d.y_test
    source, path = data_source(name)
    if path is not None:  # mnist:PATH, fashion_mnist:PATH: the files' split
        loader = {
            "mnist": datasets.load_mnist,
            "fashion_mnist": datasets.load_fashion_mnist,
        }
        try:
            d = loader[source](path)
        except (ValueError, TypeError) as e:
            raise ValueError(f"data: {str(e).removeprefix('path: ')}") from None
        return d.x, d.y, d.x_test, d.y_test
    shaped = config.layers is not None
    x, y = _load_file(name, "data", shaped)
    x_eval = y_eval = None
    if config.eval_data is not None:
        x_eval, y_eval = _load_file(config.eval_data, "eval_data", shaped)
    return x, y, x_eval, y_eval


def _load_file(path: str, name: str, shaped: bool = False):
    """x, y of a .npz or .csv file; x of shape (n, *shape) only for a network
    of ``layers`` (``shaped``)."""
    loader = datasets.load_npz if Path(path).suffix == ".npz" else datasets.load_csv
    try:
        x, y = loader(path)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: {str(e).removeprefix('path: ')}") from None
    if x.ndim != 2 and not shaped:
        raise ValueError(
            f"{name}: {path}: x of shape {x.shape}; an MLP (sizes) trains on "
            f"(n, n_in) inputs, one row of features per example; layers (a conv "
            f"net) takes (n, *input_shape)."
        )
    return x, y


def _shape_targets(y, n_out: int, net: MLP, dtype) -> np.ndarray:
    """Labels (n,) as the cost takes them (``jp.Cost.targets``): kept (softmax),
    one column (one output) or one-hot rows, with the cost's class values (0/1;
    ±1 for hinge and for a tanh output; ``Cost.class_values``)."""
    y = np.asarray(y)
    if y.ndim == 2:
        return y.astype(dtype)
    t = net.cost_fn.targets_from_labels(y, n_out, net.output_activation)
    return t if t.ndim == 1 else t.astype(dtype)


def _check_outputs(
    n_classes: int, n_out: int, cost: Cost, output_activation, layers: bool
) -> None:
    """The output width must fit the classes: one output (2 classes, for a cost
    that classifies by a threshold) or one each; ``layers``: the net is a
    Network, its last layer's width said so."""
    argmax = cost.classify == "argmax"
    fits = n_out == n_classes or (n_out == 1 and n_classes <= 2 and not argmax)
    if not fits:
        low, high = cost.class_values(output_activation)
        hint = (
            f"{n_classes}"
            if argmax or n_classes > 2
            else f"1 (one {low:g}/{high:g} output) or {n_classes} (one-hot)"
        )
        raise ValueError(_width_message(layers, f"{n_classes} classes", hint, n_out))


def _width_message(layers: bool, what: str, width, n_out: int) -> str:
    if layers:
        return (
            f"layers: the data have {what}, so the last layer must have {width} "
            f"outputs; got {n_out}."
        )
    return f"sizes: the data have {what}, so sizes must end with {width}; got {n_out}."


def make_net(config: ExperimentConfig, dims) -> Net:
    """The experiment's network: a ``jp.MLP`` of widths ``dims``, or with
    ``config.layers`` a ``jp.Network`` of input shape ``dims``.

    Raises:
      ValueError: layers that do not fit the input shape (the Network's message).
    """
    settings = (config.activation, config.output_activation, config.cost)
    if config.layers is None:
        return MLP(tuple(dims), *settings, config.reduction)
    try:
        return Network(
            tuple(dims), parse_layers(config.layers), *settings, config.reduction
        )
    except (ValueError, TypeError) as e:
        raise type(e)(f"layers {config.layers}: {e}") from None


def _input_shape(config: ExperimentConfig, x: np.ndarray) -> tuple[int, ...]:
    """One example's shape for ``config.layers``: ``input_shape``, else flat
    rows before a dense layer, else the data set's own shape."""
    if config.input_shape is not None:
        shape = config.input_shape
    elif isinstance(parse_layers(config.layers)[0], Dense):
        shape = (math.prod(x.shape[1:]),)
    elif data_source(config.data)[0] in INPUT_SHAPES:
        shape = INPUT_SHAPES[data_source(config.data)[0]]
    elif x.ndim > 2:
        shape = x.shape[1:]
    else:
        first = format_layers(parse_layers(config.layers)[:1])
        raise ValueError(
            f"input_shape: data {config.data!r} are rows of {x.shape[1]} features "
            f"and layers start with {first}, which needs one example's shape, "
            f"channels last: give input_shape (e.g. {x.shape[1]},1)."
        )
    if math.prod(shape) != math.prod(x.shape[1:]):
        raise ValueError(
            f"input_shape {tuple(shape)} holds {math.prod(shape)} entries per "
            f"example; the data have {math.prod(x.shape[1:])} (x of shape "
            f"{x.shape})."
        )
    return tuple(shape)


def load_data(config: ExperimentConfig) -> tuple[Data, Net]:
    """The experiment's data and its network (checked against the data): a
    ``jp.MLP`` of ``config.sizes``, or a ``jp.Network`` of ``config.layers``
    with x reshaped to (n, *input_shape)."""
    x, y, x_eval, y_eval = (
        None if a is None else np.asarray(a) for a in _raw_data(config)
    )
    cost = get_cost(config.cost)
    if y.ndim == 1:
        ids = _as_labels(y, "data")
        ids_eval = None if y_eval is None else _as_labels(y_eval, "eval_data")
        if ids is None or (y_eval is not None and ids_eval is None):
            # Real-valued 1-D targets: one output column, not classes.
            if "real" not in cost.targets:
                raise ValueError(
                    f"data: {config.cost} needs class ids 0..k-1 (or ±1) as "
                    f"targets; these are real numbers."
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
    if x_eval is not None and x_eval.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"eval_data has examples of shape {x_eval.shape[1:]}; the data have "
            f"{x.shape[1:]}."
        )
    if config.layers is not None:
        shape = _input_shape(config, x)
        x = x.reshape(-1, *shape)
        x_eval = None if x_eval is None else x_eval.reshape(-1, *shape)
        net = make_net(config, shape)
        n_out = net.n_out
    else:
        net = _mlp(config, x, y, labels, n_classes, cost)
        n_out = net.sizes[-1]
    layers = config.layers is not None
    if not labels and y.shape[1] != n_out:
        raise ValueError(
            _width_message(layers, f"{y.shape[1]} target column(s)", y.shape[1], n_out)
        )
    if labels:
        _check_outputs(n_classes, n_out, cost, config.output_activation, layers)
    # Target rows that are class values (0/1, or the cost's: ±1 for hinge).
    low, high = cost.class_values(config.output_activation)
    classification = labels or bool(
        np.all((y == 0) | (y == 1)) or np.all((y == low) | (y == high))
    )
    dtype = np.dtype(config.dtype)
    y = _shape_targets(y, n_out, net, dtype)
    if y_eval is not None:
        y_eval = _shape_targets(y_eval, n_out, net, dtype)
    return Data(
        x.astype(dtype),
        y,
        None if x_eval is None else x_eval.astype(dtype),
        y_eval,
        classification,
    ), net


def _mlp(config: ExperimentConfig, x, y, labels: bool, n_classes, cost) -> MLP:
    """The MLP of ``config.sizes`` (default n_in, 8, n_out), checked against x."""
    if config.sizes is None:
        if labels:
            n_out = 1 if n_classes <= 2 and cost.classify == "threshold" else n_classes
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
    return make_net(config, sizes)


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
