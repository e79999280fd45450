r"""Per-epoch permutations of [0, n) computed index by index (a keyed Feistel network).

Epoch e of a run with data-order key k visits the examples in the order
:math:`\pi_e(0), \pi_e(1), \dots, \pi_e(n-1)`, where :math:`\pi_e` is a bijection of
[0, n) keyed by ``fold_in(k, e)``. Batch i of epoch e is
:math:`\pi_e(iB), \dots, \pi_e(iB + B - 1)`: O(B) work per step and nothing
carried between steps, where ``jax.random.permutation`` sorts n keys per epoch.

Construction. Let :math:`2h` be the bit length of n - 1 rounded up to even
(h ≥ 1), so the domain :math:`D = 2^{2h}` satisfies n ≤ D < 4n. Write
:math:`x \in [0, D)` as halves :math:`(L, R)` of h bits each. One Feistel round
with round key :math:`k_r` is

.. math:: (L, R) \mapsto (R,\ L \oplus (F(R \oplus k_r) \bmod 2^h)),

a bijection of [0, D) whatever F is (its inverse is
:math:`(L, R) \mapsto (R \oplus (F(L \oplus k_r) \bmod 2^h), L)`). Four rounds
with independent keys give a pseudorandom permutation of [0, D) when F is
pseudorandom and h is large (Luby & Rackoff, 1988); halves of a few bits need
more (Patarin's bounds degrade as 2^-h shrinks): with four rounds the position
test of ``tests/test_shuffle.py`` rejected n = 10 and n = 50 (h = 2, 3), with
twelve it passes, so ROUNDS = 12. F is the ``lowbias32`` multiply-xorshift
integer hash (C. Wellons), and the 32-bit round keys are
``jax.random.bits(fold_in(k, e), (ROUNDS,), uint32)``.

Cycle walking (Black & Rogaway, 2002) restricts it to [0, n): :math:`\pi(i)` is
the first of :math:`P(i), P(P(i)), \dots` that is below n. It exists because i
lies on a cycle of P that returns to i < n, and the result is a bijection of
[0, n). Each walk step lands in [0, n) with probability about n/D > 1/4, so the
expected number of steps is below 4. The walk is a ``lax.while_loop`` over the
batch's indices that stops when every index has arrived; indices that arrived
keep their value, so the bits do not depend on what else is in the batch (a run
alone or vmapped with others gives the same order).

All arithmetic is uint32 (wrapping multiplication); indices come back int32,
so n ≤ 2^31.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

#: Feistel rounds: four suffice for wide halves (Luby-Rackoff); small domains
#: (n = 10: 2-bit halves) failed the uniformity test with 4, passed with 12.
ROUNDS = 12


def half_bits(n: int) -> int:
    """h, half the bits of the domain 2^(2h): the smallest with n ≤ 2^(2h), h ≥ 1."""
    if not 1 <= n <= 2**31:
        raise ValueError(f"n must be in [1, 2**31]; got {n}.")
    return max(1, ((n - 1).bit_length() + 1) // 2)


def round_keys(key, epoch) -> Array:
    """(ROUNDS,) uint32 round keys of epoch ``epoch``'s permutation under ``key``."""
    return jax.random.bits(jax.random.fold_in(key, epoch), (ROUNDS,), jnp.uint32)


def _mix(x: Array) -> Array:
    """lowbias32: a multiply-xorshift hash of uint32 (C. Wellons, "hash-prospector")."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _feistel(x: Array, keys: Array, h: int) -> Array:
    """P(x): the ROUNDS-round Feistel bijection of [0, 2^(2h)), elementwise."""
    mask = jnp.uint32((1 << h) - 1)
    left, right = x >> h, x & mask
    for r in range(ROUNDS):
        left, right = right, left ^ (_mix(right ^ keys[r]) & mask)
    return (left << h) | right


def permute(i: Array, n: int, keys: Array) -> Array:
    r"""π(i): the keyed bijection of [0, n) at indices ``i`` (see the module).

    Args:
      i: (...,) integer indices in [0, n).
      n: the number of elements (static).
      keys: (ROUNDS,) uint32 round keys, from :func:`round_keys`.

    Returns:
      (...,) int32 π(i), in [0, n); distinct for distinct i.
    """
    h = half_bits(n)
    x = _feistel(i.astype(jnp.uint32), keys, h)
    if n < 2 ** (2 * h):  # cycle walking; n = 2^(2h) needs none
        bound = jnp.uint32(n - 1)  # n itself may not fit in uint32
        x = jax.lax.while_loop(
            lambda x: jnp.any(x > bound),
            lambda x: jnp.where(x > bound, _feistel(x, keys, h), x),
            x,
        )
    return x.astype(jnp.int32)


def permutation(key, epoch, n: int) -> Array:
    """(n,) int32: the whole of epoch ``epoch``'s permutation (for tests and
    references; training computes only each batch's slice)."""
    return permute(jnp.arange(n, dtype=jnp.uint32), n, round_keys(key, epoch))
