"""The :class:`Dataset` every loader returns, ``split`` and ``check_dataset``.

Every loader returns arrays ready for ``net.loss``: inputs ``x: (n, n_in)``
(or, with ``channels_last=True`` on the image loaders, ``(n, *spatial, 1)``) and
either integer class labels ``y: (n,)`` (for ``softmax_cross_entropy``; use
``y[:, None]`` as float targets for a single sigmoid output) or float targets
``y: (n, n_out)``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from .._core.params import check_key
from .._validate import choice, integer

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
      x: (n, n_in) training inputs, or (n, *input_shape) ones such as images
        with a channel axis.
      y: (n,) labels or (n, n_out) targets.
      x_test: (n_test, n_in) (or (n_test, *input_shape)) held-out inputs, or None.
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
      x: (n, ...) inputs, e.g. (n, n_in) or (n, rows, cols, 1); a NumPy or JAX
        array (anything else becomes a NumPy array).
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
    """Validates a dataset: finite numeric inputs and targets of equal length.

    Args:
      x: (n, n_in) inputs, or (n, *input_shape) ones (e.g. (n, 40, 1) or
        (n, 28, 28, 1) with a channel axis).
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
    if x.ndim < 2:
        raise ValueError(
            f"{name}: x must be (n, n_in) or (n, *input_shape) inputs, at least "
            f"2-D; got shape {x.shape}."
        )
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


def _channels_last(value) -> bool:
    """``channels_last`` checked: True or False, before any data is read."""
    return choice(value, "channels_last", [False, True])


def _inputs(x, spatial: tuple[int, ...], channels_last: bool) -> np.ndarray:
    """x: (n, ...) as (n, *spatial, 1) with ``channels_last``, else flat (n, features).

    One channel, last, as ``lax.conv_general_dilated``'s NWC/NHWC layouts (and
    flax's) expect; the values and their order are the flat rows'.
    """
    if channels_last:
        return x.reshape(len(x), *spatial, 1)
    return x.reshape(len(x), -1)
