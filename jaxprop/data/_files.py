"""The user's files: MNIST and Fashion-MNIST (IDX files, gzipped or not, or a
Keras-style .npz; Fashion-MNIST also from Debian's package), and (x, y) from
any .npz or .csv, validated.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from .._io import npz_array, open_npz
from ._dataset import Dataset, _channels_last, _float_dtype, _inputs, check_dataset

#: IDX file stems of the four arrays, as LeCun's MNIST (and Zalando's
#: Fashion-MNIST) name them; also found with a dot (train-images.idx3-ubyte)
#: and gzipped (.gz).
IDX_FILES = {
    "x": "train-images-idx3-ubyte",
    "y": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
#: Where Debian's (and Ubuntu's) ``dataset-fashion-mnist`` package installs
#: Zalando's four gzipped IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
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


def _load_idx_dataset(path, name: str, dtype, channels_last) -> Dataset:
    """MNIST-format data from a folder of IDX files or a Keras-style ``.npz``."""
    dtype = _float_dtype(dtype)
    channels_last = _channels_last(channels_last)
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
    # Pixels 0..255 → [0, 1], each image flattened (MNIST's 28×28: 784 features)
    # or given a channel axis (28, 28, 1).
    scale = dtype.type(255)
    x, x_test = (
        _inputs(arrays[k], arrays[k].shape[1:], channels_last).astype(dtype) / scale
        for k in ("x", "x_test")
    )
    y, y_test = (arrays[k].astype(np.int32) for k in ("y", "y_test"))
    return Dataset(x, y, x_test, y_test)


def load_mnist(
    path: str | os.PathLike, *, dtype=np.float32, channels_last: bool = False
) -> Dataset:
    """MNIST from files the user already has: the four IDX files or a ``.npz``.

    Nothing is downloaded. ``path`` is either

    - a folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
      ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (LeCun's names;
      each may be gzipped, ``.gz``, or spelled ``train-images.idx3-ubyte``), or
    - a Keras-style ``mnist.npz`` with uint8 arrays ``x_train`` (n, 28, 28),
      ``y_train`` (n,), ``x_test`` and ``y_test``.

    The train/test split is the files': 60000 and 10000 images for MNIST.
    Pixels 0..255 are divided by 255 into [0, 1] and each image is flattened
    row by row, or, with ``channels_last=True``, kept as an image with one
    channel.

    Args:
      path: the folder or the ``.npz`` file (``~`` is expanded).
      dtype: floating dtype of the pixels (default float32).
      channels_last: images of shape (rows, cols, 1) (NHWC, the input of a 2-D
        convolution); else flat rows of rows·cols features.

    Returns:
      A :class:`Dataset` of NumPy arrays: x (n, rows·cols) (60000 × 784 for
      MNIST) or (n, rows, cols, 1) (60000 × 28 × 28 × 1), y (n,) int32 labels,
      x_test, y_test.

    Raises:
      ValueError: naming the file: a missing file (with the names looked
        for), a bad IDX magic number or type code, a truncated or damaged file,
        labels that do not match the images in number, a ``.npz`` without the
        four arrays or with pixels outside 0..255.
      TypeError: ``path``, ``dtype`` or ``channels_last`` of the wrong type.
    """
    return _load_idx_dataset(path, "MNIST", dtype, channels_last)


def load_fashion_mnist(
    path: str | os.PathLike, *, dtype=np.float32, channels_last: bool = False
) -> Dataset:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from the user's files.

    Zalando's files have MNIST's names and format (60000 + 10000 28×28 images,
    10 classes), so this reads them exactly as :func:`load_mnist` does: a folder
    of the four IDX files (gzipped or not) or a ``.npz`` with ``x_train``,
    ``y_train``, ``x_test``, ``y_test``. Nothing is downloaded. Arguments,
    errors and the returned arrays are :func:`load_mnist`'s; :func:`fashion_mnist`
    finds the files that Debian's package installs.

    Returns:
      A :class:`Dataset`, as :func:`load_mnist`.
    """
    return _load_idx_dataset(path, "Fashion-MNIST", dtype, channels_last)


def fashion_mnist(
    channels_last: bool = False,
    *,
    path: str | os.PathLike | None = None,
    dtype=np.float32,
) -> Dataset:
    """Fashion-MNIST from the files of Debian's ``dataset-fashion-mnist`` package.

    Debian and Ubuntu package Zalando's four gzipped IDX files (60000 training
    and 10000 test images of 28×28 pixels, 10 classes of clothing):
    ``apt-get install dataset-fashion-mnist`` puts them in
    ``/usr/share/datasets/fashion-mnist``. They are read as
    :func:`load_fashion_mnist` reads any folder: pixels scaled to [0, 1], the
    files' split. Nothing is downloaded.

    Args:
      channels_last: images of shape (28, 28, 1) (NHWC); else flat rows of
        784 features.
      path: another folder of the four IDX files (or a Keras-style ``.npz``),
        instead of the package's.
      dtype: floating dtype of the pixels (default float32).

    Returns:
      A :class:`Dataset` of NumPy arrays: x (60000, 784) or
      (60000, 28, 28, 1), y (60000,) int32 labels 0..9, x_test (10000, ...),
      y_test (10000,).

    Raises:
      FileNotFoundError: no ``path`` and the package's folder is absent (the
        message says how to install it).
      ValueError: a missing or damaged file, as :func:`load_mnist`.
      TypeError: ``channels_last``, ``path`` or ``dtype`` of the wrong type.
    """
    channels_last = _channels_last(channels_last)
    if path is None:
        if not FASHION_MNIST_DIR.is_dir():
            raise FileNotFoundError(
                f"jp.data.fashion_mnist: no folder {str(FASHION_MNIST_DIR)!r}, where "
                f"Debian's dataset-fashion-mnist package puts Fashion-MNIST's files. "
                f"Install it (Debian, Ubuntu: apt-get install dataset-fashion-mnist), "
                f"or pass path= a folder of the four IDX files "
                f"({', '.join(IDX_FILES.values())}, each gzipped or not) or "
                f"{_NPZ_HINT}."
            )
        path = FASHION_MNIST_DIR
    return load_fashion_mnist(path, dtype=dtype, channels_last=channels_last)


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
