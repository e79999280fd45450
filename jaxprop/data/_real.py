"""Real data made or read locally: MNIST-1D (the ``mnist1d`` package) and
scikit-learn's 8×8 digits. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np

from .._io import atomic_write, npz_array, open_npz
from ._dataset import Dataset, _channels_last, _float_dtype, _inputs, split


def _cache_dir(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("JAXPROP_CACHE"):
        return Path(os.environ["JAXPROP_CACHE"])
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "jaxprop"


def mnist1d(
    cache_dir: str | os.PathLike | None = None,
    *,
    channels_last: bool = False,
    **overrides,
) -> Dataset:
    """MNIST-1D (Greydanus & Kobak), generated locally by the ``mnist1d`` package.

    The dataset is made with the package's default arguments (4000 training and
    1000 test examples of 40 features, 10 classes, seed 42) or with
    ``overrides`` of them, and cached as ``.npz`` under ``cache_dir`` (default
    ``$JAXPROP_CACHE``, else ``~/.cache/jaxprop``). Nothing is downloaded.

    Args:
      cache_dir: folder of the cached ``.npz``.
      channels_last: give each sequence a channel axis, x (n, 40, 1), the
        input of a 1-D convolution (NWC); else x is (n, 40).
      **overrides: arguments of ``mnist1d.data.make_dataset``.

    Returns:
      A :class:`Dataset`: x (4000, 40) float32 (or (4000, 40, 1)), y (4000,)
      int32, and the test split likewise.

    Raises:
      ImportError: if the optional ``mnist1d`` package is missing.
      ValueError: an unknown argument in ``overrides``.
      TypeError: ``channels_last`` is not True or False.
    """
    channels_last = _channels_last(channels_last)
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
        x, y, x_test, y_test = (
            npz_array(f, k, path) for k in ("x", "y", "x_test", "y_test")
        )
    spatial = x.shape[1:]
    return Dataset(
        _inputs(x, spatial, channels_last),
        y,
        _inputs(x_test, spatial, channels_last),
        y_test,
    )


# ------------------------------------------------------- scikit-learn's digits
#: Held-out images of ``digits()``: the last 360 of the 1797 (20%).
DIGITS_N_TEST = 360


def digits(
    n_test: int = DIGITS_N_TEST,
    *,
    key=None,
    dtype=np.float32,
    channels_last: bool = False,
) -> Dataset:
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
      channels_last: images with a channel axis, x (n, 8, 8, 1) (NHWC); else
        each image is flattened row by row, x (n, 64).

    Returns:
      A :class:`Dataset` of NumPy arrays: x (1437, 64) (or (1437, 8, 8, 1)) in
      [0, 1], y (1437,) int32 labels, and x_test (360, 64) (or
      (360, 8, 8, 1)), y_test (360,) (with the default ``n_test``).

    Raises:
      ImportError: scikit-learn is missing (``pip install scikit-learn``).
      ValueError, TypeError: ``n_test``, ``key``, ``dtype`` or
        ``channels_last`` does not fit.
    """
    dtype = _float_dtype(dtype)
    channels_last = _channels_last(channels_last)
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(
            "jp.data.digits needs scikit-learn: pip install scikit-learn, or "
            "pip install -e '.[digits]' in jaxprop's source."
        ) from e
    bunch = load_digits()
    x = (np.asarray(bunch.data) / 16).astype(dtype)
    x = _inputs(x, bunch.images.shape[1:], channels_last)
    y = np.asarray(bunch.target).astype(np.int32)
    return split(x, y, n_test, key=key)
