"""Random numbers for DP-SGD's noise: JAX's Threefry-2x32, both words of every
hash, in one fused loop.

DP-SGD draws one normal per parameter at every step. With ``jax.random``
that draw cost 0.7 of a plain step at 784-1024-1024-10, batch 256, float32
on a 2-core CPU (``python -m benchmarks per-example``), for two reasons:

- JAX's (partitionable) Threefry hashes once per 32-bit number: it XORs the
  two words of each Threefry-2x32 hash into one;
- on CPU JAX lowers the hash as a rolled loop of five iterations, each
  reading and writing the whole counter arrays.

:data:`FUSED_THREEFRY` is a JAX PRNG implementation (``jax.extend.random``)
that keeps Threefry's keys, ``split`` and ``fold_in``, and replaces only
``random_bits``: the same Threefry-2x32 function (Salmon et al. 2011, 20
rounds; equal to ``jax.extend.random.threefry2x32_p`` bit for bit, pinned by
a test), written out as elementwise operations that XLA fuses with what
consumes the bits (``jax.random.normal``'s transform, the add of the noise),
and both words of every hash used. Half the hashes and no round trips through
memory: the draw falls to 0.4 of a step. Its numbers are Threefry's, so of
the same statistical quality as ``jax.random``'s; they are a different
stream from ``jax.random.normal(key)`` for the same key.

Use it through :func:`fused`: ``jax.random.normal(fused(key), shape)``.
Under ``jax.vmap`` over keys each key's numbers are those it draws alone.
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


def _random_bits(key: Array, bit_width: int, shape: tuple[int, ...]) -> Array:
    """(shape) uint{bit_width} from key: (2,) uint32, equal to ``jax.random.bits``
    with JAX's (partitionable) Threefry: element i (row-major) hashes the
    counter pair (0, i); 32 bits are y0 ^ y1, 64 bits y0 · 2^32 + y1, 8 and
    16 bits the low bits of y0 ^ y1."""
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"shape {shape}: 2**32 numbers or more; draw it in parts.")
    i = jax.lax.iota(jnp.uint32, size).reshape(shape)
    y0, y1 = threefry2x32(key, jnp.zeros_like(i), i)
    if bit_width == 64:
        return (y0.astype(jnp.uint64) << 32) | y1.astype(jnp.uint64)
    return (y0 ^ y1).astype(jnp.dtype(f"uint{bit_width}"))


_THREEFRY = jrx.threefry_prng_impl

#: Threefry's keys, split and fold_in; fused Threefry-2x32 bits, two words a hash.
FUSED_THREEFRY = jrx.define_prng_impl(
    key_shape=(2,),
    seed=_THREEFRY.seed,
    split=_THREEFRY.split,
    random_bits=_random_bits,
    fold_in=_THREEFRY.fold_in,
    name="jaxprop_fused_threefry2x32",
    tag="jpfry",
)


def fused(key: Array) -> Array:
    """The Threefry key (or keys) ``key`` as :data:`FUSED_THREEFRY` keys: the
    same key data, so the same ``split``/``fold_in``; draws from it use the
    fused bits."""
    return jax.random.wrap_key_data(jax.random.key_data(key), impl=FUSED_THREEFRY)
