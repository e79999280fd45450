"""Datasets: synthetic generators with a key, MNIST-1D, scikit-learn's digits,
MNIST and Fashion-MNIST from the user's files, and user files, validated.

Every loader returns arrays ready for ``net.loss``: inputs ``x: (n, n_in)`` and
either integer class labels ``y: (n,)`` (for ``softmax_cross_entropy``; use
``y[:, None]`` as float targets for a single sigmoid output) or float targets
``y: (n, n_out)``. The synthetic generators take ``n_test=`` for a held-out part
from the same distribution, and ``split`` holds out part of any (x, y).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import math
import os
import random
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._core.params import check_key
from ._io import atomic_write, npz_array, open_npz
from ._validate import integer, non_negative_number, positive_number

Array = jax.Array


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x", "y", "x_test", "y_test"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no one truth value
class Dataset:
    """Training data and, when there is one, a held-out part.

    Unpacks as its parts: ``x, y = data`` without a held-out part (the
    generators without ``n_test``), ``x, y, x_test, y_test = data`` with one;
    ``data[i]`` and ``len(data)`` count the same parts. NumPy arrays
    from ``mnist1d`` and the files, JAX arrays from the synthetic generators;
    ``split`` keeps the type it is given. A pytree of its arrays.

    Attributes:
      x: (n, n_in) training inputs.
      y: (n,) labels or (n, n_out) targets.
      x_test: (n_test, n_in) held-out inputs, or None.
      y_test: (n_test,) labels or (n_test, n_out) targets, or None.
    """

    x: np.ndarray | Array
    y: np.ndarray | Array
    x_test: np.ndarray | Array | None = None
    y_test: np.ndarray | Array | None = None

    def _parts(self) -> tuple:
        if self.x_test is None and self.y_test is None:
            return self.x, self.y
        return self.x, self.y, self.x_test, self.y_test

    def __iter__(self):
        return iter(self._parts())

    def __len__(self) -> int:
        return len(self._parts())

    def __getitem__(self, i):
        return self._parts()[i]

    def _replace(self, **changes) -> Dataset:
        """A copy with ``changes`` (as a NamedTuple's ``_replace``)."""
        return dataclasses.replace(self, **changes)


def split(x, y, n_test: int, *, key=None) -> Dataset:
    """Holds out ``n_test`` examples of (x, y) as a test split.

    Without ``key`` the last ``n_test`` examples are held out, in order; with a
    ``key`` the examples are first shuffled by ``jax.random.permutation(key,
    n)``. The arrays keep their type (NumPy or JAX).

    Args:
      x: (n, ...) inputs, e.g. (n, n_in); a NumPy or JAX array (anything else
        becomes a NumPy array).
      y: (n,) labels or (n, ...) targets, likewise.
      n_test: held-out examples, an integer in [1, n − 1].
      key: optional ``jax.random.key`` for a random split.

    Returns:
      ``Dataset(x, y, x_test, y_test)`` with n − n_test training and n_test
      held-out examples.

    Raises:
      ValueError: x or y without a leading axis, different lengths, fewer than
        two examples, or ``n_test`` outside [1, n − 1].
      TypeError: ``key`` is not a PRNG key.
    """
    x, y = (
        a if isinstance(a, (np.ndarray, jax.Array)) else np.asarray(a) for a in (x, y)
    )
    for arr, what in ((x, "x"), (y, "y")):
        if arr.ndim < 1:
            raise ValueError(
                f"{what} must have a leading example axis; got shape {arr.shape}."
            )
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x and y must have the same length; got {n} and {len(y)}.")
    if n < 2:
        raise ValueError(
            f"n_test: x and y hold {n} example(s); splitting needs at least 2."
        )
    n_test = integer(n_test, "n_test", 1, n - 1)
    if key is not None:
        check_key(key)
        perm = np.asarray(jax.random.permutation(key, n))
        x, y = x[perm], y[perm]
    m = n - n_test
    return Dataset(x[:m], y[:m], x[m:], y[m:])


def _with_test(draw, n: int, n_test) -> Dataset:
    """``draw(n)``, or with n_test > 0 ``draw(n + n_test)`` split."""
    n_test = integer(n_test, "n_test", 0)
    if n_test == 0:
        return Dataset(*draw(n))
    x, y = draw(n + n_test)
    return Dataset(x[:n], y[:n], x[n:], y[n:])


def check_dataset(x, y, name: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Validates a dataset: 2-D finite numeric inputs and targets of equal length.

    Args:
      x: (n, n_in) inputs.
      y: (n,) labels or (n, n_out) targets.
      name: how the data is named in error messages.

    Returns:
      ``(x, y)`` as NumPy arrays.

    Raises:
      ValueError: wrong dimensions, mismatched lengths, NaN or inf values.
      TypeError: non-numeric values.
    """
    x, y = np.asarray(x), np.asarray(y)
    for arr, what in ((x, "x"), (y, "y")):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name}: {what} must be numeric; got dtype {arr.dtype}.")
    if x.ndim != 2:
        raise ValueError(f"{name}: x must be 2-D (n, n_in); got shape {x.shape}.")
    if y.ndim not in (1, 2):
        raise ValueError(
            f"{name}: y must be (n,) labels or (n, n_out) targets; got shape {y.shape}."
        )
    if len(x) != len(y):
        raise ValueError(
            f"{name}: x and y must have the same length; got {len(x)} and {len(y)}."
        )
    if len(x) == 0:
        raise ValueError(f"{name}: no examples.")
    for arr, what in ((x, "x"), (y, "y")):
        bad = ~np.isfinite(arr.astype(np.float64))
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise ValueError(
                f"{name}: {what} holds {int(bad.sum())} NaN or inf "
                f"values, in {len(rows)} rows (first: row {rows[0]})."
            )
    return x, y


# --------------------------------------------------------------- synthetic
def xor(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The four XOR examples: x (4, 2) and targets y (4, 1)."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype)
    return x, np.array([[0], [1], [1], [0]], dtype)


def _check_n(n, n_classes=1) -> int:
    return integer(n, "n", n_classes)


def _class_sizes(n: int, n_classes: int) -> np.ndarray:
    """Labels 0..n_classes-1, as even as possible: (n,)."""
    return np.arange(n) % n_classes


@functools.partial(jax.jit, static_argnums=(1,))
def _two_moons(key, n: int, noise):
    labels = jnp.asarray(_class_sizes(n, 2))
    key_t, key_noise = jax.random.split(key)
    t = jax.random.uniform(key_t, (n,)) * jnp.pi
    upper = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    lower = jnp.stack([1 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=1)
    x = jnp.where(labels[:, None] == 0, upper, lower)
    return x + noise * jax.random.normal(key_noise, x.shape), labels


def two_moons(key, n: int = 200, noise: float = 0.1, *, n_test: int = 0) -> Dataset:
    """Two interleaved half circles: x (n, 2) float32, labels y (n,) in {0, 1}.

    Classes alternate (0, 1, 0, ...), so each part is balanced to within one.

    With ``n_test`` > 0, n + n_test points are drawn in one call and the last
    n_test are held out. The split depends on ``n_test``: the training
    part is not promised to equal the ``n_test=0`` draw (it does under JAX's
    default partitionable Threefry).

    Args:
      key: a ``jax.random.key``.
      n: training points, ≥ 2.
      noise: standard deviation of the Gaussian noise added to each point.
      n_test: held-out points, ≥ 0.

    Returns:
      ``Dataset(x, y, x_test, y_test)``; x_test (n_test, 2) and y_test
      (n_test,), None when ``n_test`` is 0. It unpacks as ``x, y`` without a
      held-out part and as ``x, y, x_test, y_test`` with one.
    """
    check_key(key)
    n = _check_n(n, 2)
    noise = non_negative_number(noise, "noise")
    return _with_test(lambda m: _two_moons(key, m, noise), n, n_test)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _spirals(key, n: int, n_classes: int, noise, turns):
    labels = jnp.asarray(_class_sizes(n, n_classes))
    key_r, key_noise = jax.random.split(key)
    r = jax.random.uniform(key_r, (n,))
    angle = 2 * jnp.pi * (turns * r + labels / n_classes)
    x = r[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    return x + noise * jax.random.normal(key_noise, x.shape), labels


def spirals(
    key,
    n: int = 300,
    n_classes: int = 2,
    noise: float = 0.02,
    turns: float = 1.0,
    *,
    n_test: int = 0,
) -> Dataset:
    """Interleaved spiral arms: x (n, 2), labels y (n,) in [0, n_classes).

    With ``n_test`` > 0, n + n_test points are drawn in one call and the last
    n_test are held out. The split depends on ``n_test``: the training
    part is not promised to equal the ``n_test=0`` draw (it does under JAX's
    default partitionable Threefry).

    Args:
      key: a ``jax.random.key``.
      n: training points, ≥ n_classes.
      n_classes: spiral arms (classes), taken in turn so each part is balanced
        to within one.
      noise: standard deviation of the Gaussian noise added to each point.
      turns: turns of each arm.
      n_test: held-out points, ≥ 0.

    Returns:
      ``Dataset(x, y, x_test, y_test)``; x_test (n_test, 2) and y_test
      (n_test,), None when ``n_test`` is 0. It unpacks as ``x, y`` without a
      held-out part and as ``x, y, x_test, y_test`` with one.
    """
    check_key(key)
    n_classes = _check_n(n_classes, 1)
    n = _check_n(n, n_classes)
    noise = non_negative_number(noise, "noise")
    turns = positive_number(turns, "turns")
    return _with_test(lambda m: _spirals(key, m, n_classes, noise, turns), n, n_test)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _blobs(key, n: int, n_classes: int, n_features: int, std, spread):
    labels = jnp.asarray(_class_sizes(n, n_classes))
    key_c, key_x = jax.random.split(key)
    centers = jax.random.uniform(
        key_c, (n_classes, n_features), minval=-spread, maxval=spread
    )
    return centers[labels] + std * jax.random.normal(key_x, (n, n_features)), labels


def blobs(
    key,
    n: int = 300,
    n_classes: int = 3,
    n_features: int = 2,
    std: float = 1.0,
    spread: float = 5.0,
    *,
    n_test: int = 0,
) -> Dataset:
    """Gaussian blobs around centers drawn in [−spread, spread]^n_features.

    With ``n_test`` > 0, n + n_test points are drawn in one call and the last
    n_test are held out, around the same centers. The split depends on
    ``n_test``: the training part is not promised to equal the ``n_test=0``
    draw (it does under JAX's default partitionable Threefry).

    Args:
      key: a ``jax.random.key``; it fixes the centers and the points.
      n: training points, ≥ n_classes.
      n_classes: blobs (classes), taken in turn so each part is balanced to
        within one.
      n_features: input dimension.
      std: standard deviation of each blob.
      spread: the centers' range.
      n_test: held-out points, ≥ 0, around the same centers.

    Returns:
      ``Dataset(x, y, x_test, y_test)``: x (n, n_features) and labels y (n,)
      in [0, n_classes); x_test (n_test, n_features) and y_test (n_test,),
      None when ``n_test`` is 0. It unpacks as ``x, y`` without a held-out
      part and as ``x, y, x_test, y_test`` with one.
    """
    check_key(key)
    n_classes = _check_n(n_classes, 1)
    n_features = _check_n(n_features, 1)
    n = _check_n(n, n_classes)
    std = non_negative_number(std, "std")
    spread = non_negative_number(spread, "spread")
    return _with_test(
        lambda m: _blobs(key, m, n_classes, n_features, std, spread), n, n_test
    )


# ------------------------------------------------------------------- MNIST-1D
def _cache_dir(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("JAXPROP_CACHE"):
        return Path(os.environ["JAXPROP_CACHE"])
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "jaxprop"


def mnist1d(cache_dir: str | os.PathLike | None = None, **overrides) -> Dataset:
    """MNIST-1D (Greydanus & Kobak), generated locally by the ``mnist1d`` package.

    The dataset is made with the package's default arguments (4000 training and
    1000 test examples of 40 features, 10 classes, seed 42) or with
    ``overrides`` of them, and cached as ``.npz`` under ``cache_dir`` (default
    ``$JAXPROP_CACHE``, else ``~/.cache/jaxprop``). Nothing is downloaded.

    Returns:
      A :class:`Dataset`: x (4000, 40) float32, y (4000,) int32, and the test split.

    Raises:
      ImportError: if the optional ``mnist1d`` package is missing.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
        from mnist1d.utils import ObjectView
    except ImportError as e:
        raise ImportError(
            "jp.data.mnist1d needs the mnist1d package: pip install mnist1d."
        ) from e
    args = get_dataset_args(as_dict=True)
    unknown = set(overrides) - set(args)
    if unknown:
        raise ValueError(
            f"Unknown mnist1d arguments {sorted(unknown)}; expected "
            f"some of {sorted(args)}."
        )
    args.update(overrides)
    args.pop("url", None)  # never downloaded
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    path = _cache_dir(cache_dir) / f"mnist1d-{digest}.npz"
    if not path.exists():
        # make_dataset seeds NumPy's and Python's global generators: restore them.
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            data = make_dataset(ObjectView(args))
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "x": data["x"].astype(np.float32),
            "y": data["y"].astype(np.int32),
            "x_test": data["x_test"].astype(np.float32),
            "y_test": data["y_test"].astype(np.int32),
        }
        # Atomic: a concurrent reader never sees half a file.
        atomic_write(path, lambda f: np.savez(f, **arrays))
    with open_npz(path) as f:
        return Dataset(*(npz_array(f, k, path) for k in ("x", "y", "x_test", "y_test")))


# ------------------------------------------------------- scikit-learn's digits
#: Held-out images of ``digits()``: the last 360 of the 1797 (20%).
DIGITS_N_TEST = 360


def _float_dtype(dtype) -> np.dtype:
    """``dtype`` as a NumPy floating dtype (a TypeError otherwise)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a floating dtype; got {dtype!r}.") from None
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"dtype must be a floating dtype such as float32 or float64; got {dtype}."
        )
    return dtype


def digits(n_test: int = DIGITS_N_TEST, *, key=None, dtype=np.float32) -> Dataset:
    """The 8×8 handwritten digits that ship with scikit-learn, with a held-out split.

    1797 images of the digits 0–9 (about 180 each; the test part of UCI's
    "Optical Recognition of Handwritten Digits"), read from scikit-learn's own
    copy, so nothing is downloaded. Pixels, counts 0..16 in the file, are
    divided by 16 into [0, 1].

    The split is ``split(x, y, n_test, key=key)``: by default the last 360
    images in the file's order are held out, without a shuffle, so the split is
    the same under every JAX and NumPy version (a shuffled one would follow
    ``jax.random``'s stream). Each class has 33 to 37 of them. This split is
    harder than a shuffled one: scikit-learn's ``SVC()`` scores 94.2% on it and
    98.3% on the split of ``key=jax.random.key(0)``.

    Args:
      n_test: held-out images, an integer in [1, 1796].
      key: optional ``jax.random.key``: shuffle before holding out, as ``split``.
      dtype: floating dtype of the pixels (default float32).

    Returns:
      A :class:`Dataset` of NumPy arrays: x (1437, 64) in [0, 1], y (1437,)
      int32 labels, and x_test (360, 64), y_test (360,) (with the default
      ``n_test``).

    Raises:
      ImportError: scikit-learn is missing (``pip install scikit-learn``).
      ValueError, TypeError: ``n_test``, ``key`` or ``dtype`` does not fit.
    """
    dtype = _float_dtype(dtype)
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(
            "jp.data.digits needs scikit-learn: pip install scikit-learn, or "
            "pip install -e '.[digits]' in jaxprop's source."
        ) from e
    bunch = load_digits()
    x = (np.asarray(bunch.data) / 16).astype(dtype)
    y = np.asarray(bunch.target).astype(np.int32)
    return split(x, y, n_test, key=key)


# ------------------------------------------------- MNIST and Fashion-MNIST
#: IDX file stems of the four arrays, as LeCun's MNIST (and Zalando's
#: Fashion-MNIST) name them; also found with a dot (train-images.idx3-ubyte)
#: and gzipped (.gz).
IDX_FILES = {
    "x": "train-images-idx3-ubyte",
    "y": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
#: Classes of MNIST and Fashion-MNIST (labels 0..9).
MNIST_CLASSES = 10
#: Array names in a Keras-style ``mnist.npz``, by Dataset field.
NPZ_KEYS = {"x": "x_train", "y": "y_train", "x_test": "x_test", "y_test": "y_test"}
#: What a user can give instead of the IDX files (Keras's mnist.npz is one).
_NPZ_HINT = "a Keras-style .npz of x_train, y_train, x_test and y_test"
_GZIP_MAGIC = b"\x1f\x8b"


def _idx_candidates(folder: Path, stem: str) -> list[Path]:
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte
    return [folder / (s + gz) for s in (stem, dotted) for gz in ("", ".gz")]


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """One IDX file of unsigned bytes (gzipped or not) as a uint8 array.

    The format (LeCun's MNIST page): a magic number of two zero bytes, a type
    code (0x08: unsigned byte) and the number of dimensions; then each
    dimension as a big-endian uint32; then the data, row-major.

    Raises:
      ValueError: naming ``path``: a damaged gzip stream, a bad magic number,
        another type code or number of dimensions than expected, or a file
        shorter or longer than its header says.
    """
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: a damaged gzip file ({e}).") from None
    what = "images" if ndim == 3 else "labels"
    if len(raw) < 4:
        raise ValueError(
            f"{path}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte "
            f"magic number."
        )
    if raw[:2] != b"\0\0":
        raise ValueError(
            f"{path}: not an IDX file: its magic number is 0x{raw[:4].hex()}; an "
            f"IDX file starts with two zero bytes, a type code and the number of "
            f"dimensions (0x0000080{ndim} for MNIST's {what})."
        )
    code, n_dims = raw[2], raw[3]
    if code != 0x08:
        raise ValueError(
            f"{path}: IDX type code 0x{code:02x}; MNIST's files hold unsigned "
            f"bytes (0x08)."
        )
    if n_dims != ndim:
        other = {1: " (a label file?)", 3: " (an image file?)"}.get(n_dims, "")
        raise ValueError(
            f"{path}: {n_dims} dimension(s){other}; MNIST's {what} have {ndim} "
            f"(magic number 0x0000080{ndim})."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated: {len(raw)} bytes, shorter than the {header}-byte "
            f"header."
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    size = math.prod(shape)
    if len(raw) - header != size:
        problem = "truncated: " if len(raw) - header < size else ""
        raise ValueError(
            f"{path}: {problem}its header promises {what} of shape {shape}, "
            f"{size} bytes of data; the file holds {len(raw) - header}."
        )
    return np.frombuffer(raw, np.uint8, size, header).reshape(shape)


def _from_idx(folder: Path, name: str) -> dict[str, np.ndarray]:
    found, missing = {}, []
    for field, stem in IDX_FILES.items():
        candidates = _idx_candidates(folder, stem)
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            missing.append(" or ".join(p.name for p in candidates))
        else:
            found[field] = path
    if missing:
        raise ValueError(
            f"path: {str(folder)!r} lacks {len(missing)} of {name}'s four IDX "
            f"files: looked for {'; '.join(missing)}. Give the folder that holds "
            f"them (nothing is downloaded), or {_NPZ_HINT}."
        )
    arrays = {
        field: _read_idx(path, 3 if field.startswith("x") else 1)
        for field, path in found.items()
    }
    for x, y in (("x", "y"), ("x_test", "y_test")):
        if len(arrays[x]) != len(arrays[y]):
            raise ValueError(
                f"{found[y]}: {len(arrays[y])} labels for the {len(arrays[x])} "
                f"images of {found[x]}."
            )
    if arrays["x"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(
            f"{found['x_test']}: images of {arrays['x_test'].shape[1:]} pixels; the "
            f"training images of {found['x']} have {arrays['x'].shape[1:]}."
        )
    return arrays


def _from_npz(path: Path) -> dict[str, np.ndarray]:
    with open_npz(path) as f:
        missing = [k for k in NPZ_KEYS.values() if k not in f]
        if missing:
            raise ValueError(
                f"{path}: no arrays named {missing}; a Keras-style mnist.npz holds "
                f"{list(NPZ_KEYS.values())}, this one {sorted(f.files)}."
            )
        arrays = {field: npz_array(f, key, path) for field, key in NPZ_KEYS.items()}
    for field, key in NPZ_KEYS.items():
        a = arrays[field]
        images = field.startswith("x")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(
                f"{path}: {key} must hold integers (uint8 "
                f"{'pixels 0..255' if images else 'labels'}, as Keras's "
                f"mnist.npz); got dtype {a.dtype}."
            )
        if images and a.ndim < 2:
            raise ValueError(
                f"{path}: {key} must be (n, rows, cols) images; got shape {a.shape}."
            )
        if not images and a.ndim != 1:
            raise ValueError(f"{path}: {key} must be (n,) labels; got shape {a.shape}.")
        low, high = (0, 255) if images else (0, np.iinfo(np.int32).max)
        if a.size and (a.min() < low or a.max() > high):
            raise ValueError(
                f"{path}: {key} holds values in [{a.min()}, {a.max()}]; expected "
                f"{'pixels 0..255' if images else 'class ids ≥ 0'}."
            )
    for x, y in (("x", "y"), ("x_test", "y_test")):
        if len(arrays[x]) != len(arrays[y]):
            raise ValueError(
                f"{path}: {len(arrays[y])} labels in {NPZ_KEYS[y]} for the "
                f"{len(arrays[x])} images of {NPZ_KEYS[x]}."
            )
    if arrays["x"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(
            f"{path}: x_test holds images of {arrays['x_test'].shape[1:]} pixels, "
            f"x_train of {arrays['x'].shape[1:]}."
        )
    return arrays


def _load_idx_dataset(path, name: str, dtype) -> Dataset:
    """MNIST-format data from a folder of IDX files or a Keras-style ``.npz``."""
    dtype = _float_dtype(dtype)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"path must be a folder or a .npz file path; got {type(path).__name__}."
        )
    path = Path(path).expanduser()
    if path.is_dir():
        arrays = _from_idx(path, name)
    elif path.is_file() and path.suffix == ".npz":
        arrays = _from_npz(path)
    elif path.is_file():
        raise ValueError(
            f"path: {str(path)!r} is a file but not a .npz; give the folder that "
            f"holds {name}'s four IDX files, or {_NPZ_HINT}."
        )
    else:
        raise ValueError(
            f"path: no such folder or file {str(path)!r}; give the folder that "
            f"holds {name}'s four IDX files, or {_NPZ_HINT} (nothing is "
            f"downloaded)."
        )
    for x, what in (("x", "training"), ("x_test", "test")):
        if len(arrays[x]) == 0:
            raise ValueError(f"{path}: no {what} images.")
    for y, what in (("y", "training"), ("y_test", "test")):
        if arrays[y].size and arrays[y].max() >= MNIST_CLASSES:
            raise ValueError(
                f"{path}: {what} labels from {arrays[y].min()} to "
                f"{arrays[y].max()}; {name} has {MNIST_CLASSES} classes, "
                f"0..{MNIST_CLASSES - 1} (another data set's files?)."
            )
    # Pixels 0..255 → [0, 1], each image flattened (MNIST's 28×28: 784 features).
    scale = dtype.type(255)
    x, x_test = (
        arrays[k].reshape(len(arrays[k]), -1).astype(dtype) / scale
        for k in ("x", "x_test")
    )
    y, y_test = (arrays[k].astype(np.int32) for k in ("y", "y_test"))
    return Dataset(x, y, x_test, y_test)


def load_mnist(path: str | os.PathLike, *, dtype=np.float32) -> Dataset:
    """MNIST from files the user already has: the four IDX files or a ``.npz``.

    Nothing is downloaded. ``path`` is either

    - a folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
      ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (LeCun's names;
      each may be gzipped, ``.gz``, or spelled ``train-images.idx3-ubyte``), or
    - a Keras-style ``mnist.npz`` with uint8 arrays ``x_train`` (n, 28, 28),
      ``y_train`` (n,), ``x_test`` and ``y_test``.

    The train/test split is the files': 60000 and 10000 images for MNIST.
    Pixels 0..255 are divided by 255 into [0, 1] and each image is flattened
    row by row.

    Args:
      path: the folder or the ``.npz`` file (``~`` is expanded).
      dtype: floating dtype of the pixels (default float32).

    Returns:
      A :class:`Dataset` of NumPy arrays: x (n, rows·cols) (60000 × 784 for
      MNIST), y (n,) int32 labels, x_test, y_test.

    Raises:
      ValueError: naming the file: a missing file (with the names looked
        for), a bad IDX magic number or type code, a truncated or damaged file,
        labels that do not match the images in number, a ``.npz`` without the
        four arrays or with pixels outside 0..255.
      TypeError: ``path`` or ``dtype`` of the wrong type.
    """
    return _load_idx_dataset(path, "MNIST", dtype)


def load_fashion_mnist(path: str | os.PathLike, *, dtype=np.float32) -> Dataset:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from the user's files.

    Zalando's files have MNIST's names and format (60000 + 10000 28×28 images,
    10 classes), so this reads them exactly as :func:`load_mnist` does: a folder
    of the four IDX files (gzipped or not) or a ``.npz`` with ``x_train``,
    ``y_train``, ``x_test``, ``y_test``. Nothing is downloaded.

    Returns:
      A :class:`Dataset`, as :func:`load_mnist`.
    """
    return _load_idx_dataset(path, "Fashion-MNIST", dtype)


# ---------------------------------------------------------------------- files
def load_npz(path: str | os.PathLike, x: str = "x", y: str = "y"):
    """Loads (x, y) from a NumPy ``.npz`` file, validated by ``check_dataset``."""
    path = Path(path)
    with open_npz(path) as f:
        missing = [k for k in (x, y) if k not in f]
        if missing:
            raise ValueError(
                f"{path}: no arrays named {missing}; it holds {sorted(f.files)}."
            )
        arrays = npz_array(f, x, path), npz_array(f, y, path)
    return check_dataset(*arrays, name=str(path))


def load_csv(path: str | os.PathLike, target_columns: int = 1, delimiter: str = ","):
    """Loads a CSV of numbers: the last ``target_columns`` columns are targets.

    A first line that does not parse as numbers is taken as a header. A single
    target column whose values are all integers becomes integer labels (n,);
    otherwise targets are float rows (n, target_columns).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}.")
    try:
        with open(path) as f:
            first = f.readline()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text table of numbers ({e}).") from None
    try:
        [float(v) for v in first.strip().split(delimiter)]
        skip = 0
    except ValueError:
        skip = 1
    try:
        table = np.loadtxt(path, delimiter=delimiter, skiprows=skip, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: not a table of numbers ({e}).") from None
    if table.shape[1] <= target_columns:
        raise ValueError(
            f"{path}: {table.shape[1]} columns leave no inputs beside "
            f"{target_columns} target column(s)."
        )
    x, y = table[:, :-target_columns], table[:, -target_columns:]
    if target_columns == 1 and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y[:, 0].astype(np.int32)
    return check_dataset(x.astype(np.float32), y, name=str(path))
