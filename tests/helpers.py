"""Shared test helpers: network configurations and data for them."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import os
import struct
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxprop as jp


def xla_flags(devices: int) -> str:
    """This process's XLA_FLAGS (the suite's, see conftest) with ``devices``
    CPU devices instead of any device count in them: for a subprocess."""
    kept = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    return " ".join([*kept, f"--xla_force_host_platform_device_count={devices}"])


#: (cost, output_activation, target kind) combinations that fit together.
COST_CONFIGS = {
    "mse-identity": ("mse", "identity", "real"),
    "mse-sigmoid": ("mse", "sigmoid", "real"),
    "mse-tanh": ("mse", "tanh", "real"),
    "bce-sigmoid": ("binary_cross_entropy", "sigmoid", "unit"),
    "softmax-labels": ("softmax_cross_entropy", "identity", "labels"),
    "softmax-rows": ("softmax_cross_entropy", "identity", "rows"),
}


def make_case(
    seed, sizes, activation, cost_config, reduction="sum", batch=5, dtype=np.float64
):
    """A net, params, x and y for one configuration, drawn with NumPy from ``seed``.

    NumPy draws compile nothing, which keeps hundreds of configurations fast.
    Weights are N(0, 1/fan_in) and biases N(0, 0.3²): zero biases would hide
    bias-gradient bugs. ``cost_config`` is a key of ``COST_CONFIGS`` or a
    (cost, output_activation, target kind) tuple (names or user objects; kinds
    also "signs", ±1).
    """
    cost, out_act, targets = (
        COST_CONFIGS[cost_config] if isinstance(cost_config, str) else cost_config
    )
    net = jp.MLP(sizes, activation, out_act, cost, reduction)
    rng = np.random.default_rng(seed)
    params = tuple(
        jp.Layer(
            jnp.asarray(rng.normal(size=(i, o)) / np.sqrt(i), dtype),
            jnp.asarray(0.3 * rng.normal(size=o), dtype),
        )
        for i, o in itertools.pairwise(sizes)
    )
    x = jnp.asarray(rng.normal(size=(batch, sizes[0])), dtype)
    n_out = sizes[-1]
    if targets == "real":
        y = rng.normal(size=(batch, n_out))
    elif targets == "unit":
        y = rng.uniform(size=(batch, n_out))
    elif targets == "labels":
        y = rng.integers(0, n_out, size=batch)
    elif targets == "signs":
        y = rng.choice([-1.0, 1.0], size=(batch, n_out))
    else:
        e = np.exp(rng.normal(size=(batch, n_out)))
        y = e / e.sum(axis=1, keepdims=True)
    y = jnp.asarray(y) if targets == "labels" else jnp.asarray(y, dtype)
    return net, params, x, y


def manual_and_autodiff(net, params, x, y):
    """((value, manual grads), jax.grad grads), both from one jit-compiled program."""
    return jax.jit(
        lambda p, x, y: (net.value_and_backprop(p, x, y), jax.grad(net.loss)(p, x, y))
    )(params, x, y)


def assert_trees_close(actual, desired, rtol, atol_scale=None):
    """Elementwise |a − d| ≤ atol + rtol |d| over two pytrees.

    ``atol = atol_scale · max |d|`` over the whole tree (default ``rtol / 100``),
    a tiny floor for entries that are exactly zero in one and rounding noise in
    the other.
    """
    a_leaves, a_def = jax.tree.flatten(actual)
    d_leaves, d_def = jax.tree.flatten(desired)
    assert a_def == d_def, (a_def, d_def)
    scale = max((float(np.max(np.abs(d), initial=0.0)) for d in d_leaves), default=0.0)
    atol = (rtol / 100 if atol_scale is None else atol_scale) * scale
    for i, (a, d) in enumerate(zip(a_leaves, d_leaves, strict=False)):
        assert a.shape == d.shape and a.dtype == d.dtype, (i, a.shape, d.shape)
        assert np.all(np.isfinite(a)), f"leaf {i} is not finite"
        np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=f"leaf {i}")


def scale_layer(grads, layer, param, factor):
    """grads with one layer's w or b multiplied by ``factor`` (a planted bug)."""
    grads = list(grads)
    grads[layer] = grads[layer]._replace(
        **{param: getattr(grads[layer], param) * factor}
    )
    return tuple(grads)


def covering(axes: dict, rest_slow: str):
    """pytest.params of the cross product of ``axes`` where, for every
    combination of the other axes, one value of ``rest_slow`` (in turn) runs in
    the default suite and the others are marked slow (``.ci/run`` runs them):
    every value of every axis stays in the default suite, at half the compiles.
    """
    import pytest

    names = list(axes)
    k = names.index(rest_slow)
    out = []
    for idx in itertools.product(*(range(len(axes[n])) for n in names)):
        values = [axes[n][i] for n, i in zip(names, idx, strict=True)]
        others = sum(i for j, i in enumerate(idx) if j != k)
        fast = idx[k] == others % len(axes[rest_slow])
        out.append(pytest.param(*values, marks=() if fast else pytest.mark.slow))
    return out


def numpy_rule_state(rule, net, params, seed):
    """A state of ``rule``'s shapes with N(0, 1/fan) entries drawn by NumPy
    (no PRNG program to compile, as in ``make_case``); keys are wrapped."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda p: rule.init(jax.random.key(0), net, p), params)

    def fill(s):
        if jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(
                jnp.asarray(rng.integers(0, 2**32, size=(*s.shape, 2)), jnp.uint32)
            )
        scale = 1 / np.sqrt(s.shape[-1]) if s.shape else 0.1
        return jnp.asarray(rng.normal(size=s.shape) * scale, s.dtype)

    return jax.tree.map(fill, shapes)


# ------------------------------------------------------- MNIST-format files
#: MNIST's IDX file names, by Dataset field.
IDX_STEMS = {
    "x": "train-images-idx3-ubyte",
    "y": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def idx_bytes(a: np.ndarray) -> bytes:
    """``a`` (uint8) in LeCun's IDX format: 0, 0, 0x08, ndim, big-endian dims."""
    head = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return head + a.astype(np.uint8).tobytes()


def write_idx(folder, arrays, gz=False, dotted=False):
    """Writes ``arrays`` (x, y, x_test, y_test) as MNIST's four IDX files in
    ``folder``: gzipped, and/or named ``train-images.idx3-ubyte``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for field, stem in IDX_STEMS.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        data = idx_bytes(arrays[field])
        if gz:
            name, data = name + ".gz", gzip.compress(data)
        paths[field] = folder / name
        paths[field].write_bytes(data)
    return paths


#: The ways :func:`damage` damages a file.
DAMAGES = ("truncate", "zero", "flip")


def damage(path, how: str, seed: int, member: str | None = None) -> None:
    """Damages the file ``path`` in place, at places drawn from ``seed``.

    ``truncate``: cut at a point of its middle half. ``zero``: a 4 KiB block of
    its middle half zeroed (files over 8 KiB). ``flip``: 8 bytes inverted; in
    a zip archive (an .npz), bytes of one member's array data past its .npy
    header (``member``, default one drawn), where only the CRC-32 can tell.
    """
    rng = np.random.default_rng(seed)
    path = Path(path)
    data = bytearray(path.read_bytes())
    n = len(data)
    if how == "truncate":
        data = data[: rng.integers(n // 4, 3 * n // 4)]
    elif how == "zero":
        assert n > 8192, f"{path}: {n} bytes, too small to zero 4 KiB of its middle"
        start = rng.integers(n // 4, 3 * n // 4 - 4096)
        data[start : start + 4096] = bytes(4096)
    elif how == "flip":
        start, stop = n // 3, 2 * n // 3
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                infos = [i for i in z.infolist() if i.file_size > 128 + 8]
            if member is not None:
                infos = [i for i in infos if i.filename == f"{member}.npy"]
            info = infos[rng.integers(len(infos))]
            head = info.header_offset  # a local header: 30 bytes, name, extra
            name_len, extra_len = struct.unpack_from("<HH", data, head + 26)
            start = head + 30 + name_len + extra_len + 128
            stop = start + info.compress_size - 128
        at = rng.integers(start, stop - 8)
        data[at : at + 8] = bytes(b ^ 0xFF for b in data[at : at + 8])
    else:
        raise ValueError(f"how: one of {DAMAGES}; got {how!r}.")
    path.write_bytes(bytes(data))


class _CPU:
    """A stand-in CPU device: all the CPU cost model reads is its platform."""

    platform = "cpu"
    process_index = 0


def options_of(config, n_runs, n_examples, itemsize, devices, n_eval=0, **fields):
    """The checked ``Options`` these describe: ``config`` (a ``_Config``),
    ``n_runs`` runs of ``n_examples`` examples (and ``n_eval`` held-out ones,
    if any), parameters of ``itemsize`` bytes, over ``devices``; the data as
    shapes only."""
    from jaxprop._engine.loop import TrainData
    from jaxprop._engine.options import Options

    dtype = {4: "float32", 8: "float64"}[itemsize]
    x = jax.ShapeDtypeStruct((n_examples, config.net.n_in), dtype)
    x_eval = jax.ShapeDtypeStruct((n_eval, config.net.n_in), dtype) if n_eval else None
    return Options(
        config=config,
        data=TrainData(x, x, x_eval, x_eval),
        dtype=dtype,
        n_seeds=n_runs,
        devices=devices,
        **fields,
    )


def choose_strategy(
    config, n_runs, strategy, chunk_size, n_examples, itemsize, n_devices, devices=None
):
    """``_choose_strategy`` of the options these describe (:func:`options_of`),
    over ``devices`` (default: ``n_devices`` CPUs)."""
    from jaxprop._engine.layout import _choose_strategy
    from jaxprop._engine.options import _check_strategy

    strategy, chunk_size = _check_strategy(strategy, chunk_size)
    devices = [_CPU()] * n_devices if devices is None else devices
    options = options_of(
        config,
        n_runs,
        n_examples,
        itemsize,
        devices,
        strategy=strategy,
        chunk_size=chunk_size,
    )
    return _choose_strategy(options)


def with_runs_last(net, fn, x_index: int):
    """``fn(*args)`` under the trainer's runs-last batching rule
    (``jaxprop._network.over_runs``), for a function of any arguments: under
    ``vmap`` every argument's runs axis moved last (shared ones get a trailing
    1), the batch read from ``args[x_index]``'s second-to-last axis."""
    from jaxprop._network import over_runs

    def last(in_batched, *args):
        to_last = lambda b, a: jnp.moveaxis(a, 0, -1) if b else a[..., None]  # noqa: E731
        return fn(*jax.tree.map(to_last, tuple(in_batched), args))

    return over_runs(net, fn, last, lambda in_batched, *args: args[x_index].shape[-2])


def value_and_backprop_runs_last(net):
    """``(params, x, y) -> (L, ∂L/∂params)`` of ``net`` (unchecked) under the
    runs-last batching rule: what the trainer's manual step computes."""
    from jaxprop._network import compiled_value_and_backprop

    def plain(params, x, y):
        return compiled_value_and_backprop(net, params, x, y, with_grads=True)

    return with_runs_last(net, plain, x_index=1)


def assert_close_leaves(got, want, rtol=1e-12):
    """Leaf by leaf to ``rtol``, relative to each leaf's largest entry."""
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())


def apply_vjp(layer, theta, a, delta):
    """(∂/∂θ, ∂/∂a) of ⟨δ, layer.apply(θ, a)⟩ by jax.vjp: a layer's oracle."""
    _, vjp = jax.vjp(layer.apply, theta, a)
    return vjp(delta)


@dataclasses.dataclass(frozen=True)
class Depthwise1D:
    r"""A user's layer (docs/layers.md shows the same): a depthwise 1-D
    convolution, each channel filtered by its own kernel, VALID, stride 1.

    z_{n,t,c} = b_c + Σ_j a_{n,t+j,c} w_{j,c}; a: (batch, T, C), w: (k, C),
    b: (C,), z: (batch, T − k + 1, C). Written with the layer protocol only:
    the library is not told about it.
    """

    kernel_size: int
    activation: object = None
    in_shape: tuple | None = None

    n_keys = 2

    def bind(self, in_shape):
        if len(in_shape) != 2 or in_shape[0] < self.kernel_size:
            raise ValueError(f"Depthwise1D needs (T >= kernel_size, C); got {in_shape}")
        return dataclasses.replace(self, in_shape=tuple(in_shape))

    @property
    def out_shape(self):
        t, c = self.in_shape
        return (t - self.kernel_size + 1, c)

    def shapes(self, dtype):
        c = self.in_shape[1]
        return jp.DenseParams(
            jax.ShapeDtypeStruct((self.kernel_size, c), dtype),
            jax.ShapeDtypeStruct((c,), dtype),
        )

    def init(self, keys, scheme, dtype):
        w = jax.random.normal(keys[0], (self.kernel_size, self.in_shape[1]), dtype)
        return jp.DenseParams(
            w / self.kernel_size**0.5, jnp.zeros(self.in_shape[1], dtype)
        )

    def apply(self, theta, a):
        t = self.out_shape[0]
        return (
            sum(a[:, j : j + t] * theta.w[j] for j in range(self.kernel_size)) + theta.b
        )

    def adjoint(self, w, delta, a=None):
        k = self.kernel_size
        return sum(
            jnp.pad(delta * w[j], ((0, 0), (j, k - 1 - j), (0, 0))) for j in range(k)
        )

    def grads(self, a, delta, scale=None):
        if scale is not None:
            delta = scale[:, None, None] * delta
        t = self.out_shape[0]
        w = jnp.stack(
            [
                jnp.sum(a[:, j : j + t] * delta, axis=(0, 1))
                for j in range(self.kernel_size)
            ]
        )
        return jp.DenseParams(w, jnp.sum(delta, axis=(0, 1)))


def every_pair():
    """(activation, cost config, reduction): every activation with every cost
    config once, the reduction alternating so that each activation and each
    cost config meets both. Half of the full product, and every pair of the
    three factors still appears (an all-pairs covering)."""
    import jaxprop as jp

    return [
        (a, c, ("sum", "mean")[(i + j) % 2])
        for i, a in enumerate(sorted(jp.ACTIVATIONS))
        for j, c in enumerate(COST_CONFIGS)
    ]


def alternate_slow(cases, ids, every: int = 2):
    """pytest.params of ``cases`` with all but one in ``every`` marked slow
    (``.ci/run`` runs them): a grid's spread in the default suite at a
    fraction of its compiles."""
    import pytest

    return [
        pytest.param(c, id=ids(c), marks=pytest.mark.slow if i % every else ())
        for i, c in enumerate(cases)
    ]
