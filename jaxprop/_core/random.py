"""JAX's Threefry random numbers, computed on CPU as one fused loop.

On CPU, JAX lowers its Threefry-2x32 hash (``threefry2x32_p``) as a rolled
loop of five iterations, each reading and writing the whole counter arrays:
it cannot fuse with what consumes the bits, and each call pays for a loop.
That made DP-SGD's noise (one normal per parameter, every step) cost most of
a plain step's time (docs/design.md, "DP-SGD's noise: one fused Threefry
loop"). (On GPU and TPU JAX already emits the hash unrolled.)

:data:`FUSED_THREEFRY` is a JAX PRNG implementation (``jax.extend.random``)
whose ``random_bits`` are those of JAX's default, partitionable Threefry,
with the same Threefry-2x32 function (Salmon et al. 2011, 20 rounds)
written out as elementwise operations, for draws of at least
``FUSE_MIN_SIZE`` numbers (its seed, split and fold_in are Threefry's own).
XLA fuses the hash with its consumers (``jax.random.normal``'s transform,
the add of the noise), which makes the noise draw a fraction of that.
``jax.random.bits``, ``uniform``, ``normal``, ``randint``, ``bernoulli``,
``permutation`` and ``choice`` give JAX's numbers bit for bit, for every
shape and dtype, under ``jit`` and ``vmap`` (``tests/test_random.py``);
gamma-based samplers may differ in the last bits and ``poisson`` refuses the
key, neither used here.

Use it through :func:`fused`: ``jax.random.normal(fused(key), shape)``. Fused
keys live only inside a step: state keeps Threefry keys (a saved fused key is
stored as the Threefry key it equals, ``jaxprop._io``).
"""

from __future__ import annotations

import functools
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


@functools.partial(jax.jit, inline=True)
def threefry2x32(key: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """Threefry-2x32, 20 rounds, of the counter pairs (x0, x1) under ``key``.

    Args:
      key: (2,) uint32, the key words (k0, k1).
      x0, x1: uint32 arrays of one shape, the counter words.

    Returns:
      (y0, y1), uint32 arrays of that shape: the same function as
      ``jax.extend.random.threefry2x32_p``, as elementwise operations (no
      loop), so XLA fuses it with its consumers. Jitted and inlined, as
      JAX's own: one compiled call when used eagerly.
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


#: Below this many numbers a draw uses JAX's own (rolled) hash: fusing gains
#: nothing there and costs compile time (docs/design.md, "DP-SGD's noise").
FUSE_MIN_SIZE = 1024


def _random_bits(key: Array, bit_width: int, shape: tuple[int, ...]) -> Array:
    """(shape) uint{bit_width} from key: (2,) uint32, equal to ``jax.random.bits``
    with JAX's (partitionable) Threefry: element i (row-major) hashes the
    counter pair (0, i) into (y0, y1); 32 bits are y0 ^ y1, 64 bits
    y0 · 2^32 + y1, 8 and 16 bits the low bits of y0 ^ y1. Fewer than
    ``FUSE_MIN_SIZE`` numbers: JAX's own function."""
    size = math.prod(shape)
    if size < FUSE_MIN_SIZE:
        return jrx.threefry_prng_impl.random_bits(key, bit_width, shape)
    if size > 2**32:  # the counters' high words would not be 0
        raise ValueError(f"shape {shape}: more than 2**32 numbers; draw it in parts.")
    i = jax.lax.iota(jnp.uint32, size).reshape(shape)
    y0, y1 = threefry2x32(key, jnp.zeros_like(i), i)
    if bit_width == 64:
        return (y0.astype(jnp.uint64) << 32) | y1.astype(jnp.uint64)
    return (y0 ^ y1).astype(jnp.dtype(f"uint{bit_width}"))


#: The implementation's name, as ``str(jax.random.key_impl(key))`` gives it.
FUSED_NAME = "jpfry"

#: Threefry's seed, split and fold_in; its random bits with the fused hash.
FUSED_THREEFRY = jrx.define_prng_impl(
    key_shape=(2,),
    seed=jrx.threefry_prng_impl.seed,
    split=jrx.threefry_prng_impl.split,
    random_bits=_random_bits,
    fold_in=jrx.threefry_prng_impl.fold_in,
    name="jaxprop_fused_threefry2x32",
    tag=FUSED_NAME,
)


def fused(key: Array) -> Array:
    """Threefry keys (any shape) as :data:`FUSED_THREEFRY` keys: the same key
    data, so the same ``split``/``fold_in`` and numbers; draws from them use
    the fused hash. Keys of another implementation (``rbg``, a user's), keys
    already fused, and every key when ``jax_threefry_partitionable`` is off
    (the fused hash computes the partitionable stream only) come back as
    they are."""
    if (
        str(jax.random.key_impl(key)) != "threefry2x32"
        or not jax.config.jax_threefry_partitionable
    ):
        return key
    return jax.random.wrap_key_data(jax.random.key_data(key), impl=FUSED_THREEFRY)
