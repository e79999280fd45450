"""JAX's Threefry random numbers, computed as one fused loop on every platform.

On CPU, JAX lowers its Threefry-2x32 hash (``threefry2x32_p``) as a rolled
loop of five iterations, each reading and writing the whole counter arrays:
it cannot fuse with what consumes the bits, and each call pays for a loop.
That made DP-SGD's noise (one normal per parameter, every step) cost 0.87 of
a plain step at 784-1024-1024-10, batch 256, float32 on a 2-core CPU
(``python -m benchmarks per-example``), and every step of a shuffled run
pays two such loops for its epoch's round keys.

:data:`FUSED_THREEFRY` is a JAX PRNG implementation (``jax.extend.random``)
whose ``split``, ``fold_in`` and ``random_bits`` are JAX's partitionable
Threefry (the default) with the same Threefry-2x32 function (Salmon et al.
2011, 20 rounds) written out as elementwise operations. XLA fuses them with
their consumers (``jax.random.normal``'s transform, the add of the noise):
the noise draw falls to 0.33 of a step. The numbers are JAX's, bit for bit,
for every shape, dtype and bit width, under ``jit`` and ``vmap`` (pinned by
``tests/test_random.py``): only the program that computes them changes.

Use it through :func:`fused`: ``jax.random.normal(fused(key), shape)``.
"""

from __future__ import annotations

import math

import jax
import jax.extend.random as jrx
import jax.numpy as jnp
import numpy as np
from jax import Array

#: Threefry-2x32's rotation distances, alternating every four rounds.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
#: The key-schedule parity constant of Threefry (Skein's C240).
_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32(key: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """Threefry-2x32, 20 rounds, of the counter pairs (x0, x1) under ``key``.

    Args:
      key: (2,) uint32, the key words (k0, k1).
      x0, x1: uint32 arrays of one shape, the counter words.

    Returns:
      (y0, y1), uint32 arrays of that shape: the same function as
      ``jax.extend.random.threefry2x32_p``, as elementwise operations (no
      loop), so XLA fuses it with its consumers.
    """
    ks = (key[0], key[1], key[0] ^ key[1] ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << r) | (x1 >> (32 - r)))
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _counters(shape: tuple[int, ...]) -> Array:
    """(shape) uint32 row-major indices: the low words of JAX's counters (the
    high words are 0 below 2**32 numbers, the only case allowed here)."""
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"shape {shape}: 2**32 numbers or more; draw it in parts.")
    return jax.lax.iota(jnp.uint32, size).reshape(shape)


def _random_bits(key: Array, bit_width: int, shape: tuple[int, ...]) -> Array:
    """(shape) uint{bit_width} from key: (2,) uint32, equal to ``jax.random.bits``
    with JAX's (partitionable) Threefry: element i (row-major) hashes the
    counter pair (0, i); 32 bits are y0 ^ y1, 64 bits y0 · 2^32 + y1, 8 and
    16 bits the low bits of y0 ^ y1."""
    i = _counters(shape)
    y0, y1 = threefry2x32(key, jnp.zeros_like(i), i)
    if bit_width == 64:
        return (y0.astype(jnp.uint64) << 32) | y1.astype(jnp.uint64)
    return (y0 ^ y1).astype(jnp.dtype(f"uint{bit_width}"))


def _split(key: Array, shape: tuple[int, ...]) -> Array:
    """(*shape, 2) key data, equal to Threefry's split: key i is the hash of
    the counter pair (0, i)."""
    i = _counters(shape)
    return jnp.stack(threefry2x32(key, jnp.zeros_like(i), i), axis=-1)


def _fold_in(key: Array, data: Array) -> Array:
    """(2,) key data, equal to Threefry's fold_in: the hash of (0, data)."""
    d = jnp.asarray(data).astype(jnp.uint32)
    return jnp.stack(threefry2x32(key, jnp.zeros_like(d), d))


_THREEFRY = jrx.threefry_prng_impl

#: Threefry's keys, split, fold_in and bits, each a fused Threefry-2x32 hash.
FUSED_THREEFRY = jrx.define_prng_impl(
    key_shape=(2,),
    seed=_THREEFRY.seed,
    split=_split,
    random_bits=_random_bits,
    fold_in=_fold_in,
    name="jaxprop_fused_threefry2x32",
    tag="jpfry",
)


def fused(key: Array) -> Array:
    """Threefry keys (any shape) as :data:`FUSED_THREEFRY` keys: the same key
    data, so the same ``split``/``fold_in`` and numbers; draws from them use
    the fused hash. Keys of another implementation (``rbg``, a user's) and
    keys already fused come back as they are."""
    if str(jax.random.key_impl(key)) != "threefry2x32":
        return key
    return jax.random.wrap_key_data(jax.random.key_data(key), impl=FUSED_THREEFRY)
