"""Synthetic data sets drawn with a key: xor, two moons, spirals, Gaussian blobs.

The generators take ``n_test=`` for a held-out part from the same distribution.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._core.params import check_key
from .._validate import integer, non_negative_number, positive_number
from ._dataset import Dataset, _with_test


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
