"""A run's steps, blocks of ``log_every`` of them with their losses reduced as
they come (traced): the minibatch of each step, the update, and the runs-last
layout of tiny networks under ``vmap``.

Minibatch i of epoch e is examples π_e(iB), ..., π_e(iB + B - 1) of a keyed
bijection π_e of [0, n) computed index by index (``shuffle.py``): no
permutation is sorted or carried.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._network import MLP, over_runs
from ..rules import Rule
from .shuffle import permute, round_keys

Array = jax.Array


class _Config(NamedTuple):
    """The static (hashable) part of a training run (see ``Options.config``)."""

    net: MLP
    optimizer: optax.GradientTransformation
    steps: int
    rule: Rule
    batch_size: int | None
    log_every: int
    eval_every: int | None
    alignment_every: int | None = None
    diagnostics_every: int | None = None
    sharpness: str | None = "hessian"
    sharpness_iters: int = 20


class _Batches(NamedTuple):
    """Minibatches of ``batch`` of the ``n`` examples, ``n_batches`` an epoch
    (the remainder dropped)."""

    n: int
    batch: int
    n_batches: int


def _epoch_keys(batches: _Batches, key, t) -> Array:
    """The round keys of step t's epoch: (ROUNDS,), or (runs, ROUNDS) when
    ``key`` holds the runs."""
    if key.ndim == 0:
        return round_keys(key, t // batches.n_batches)
    return jax.vmap(round_keys, in_axes=(0, None))(key, t // batches.n_batches)


def _indices(batches: _Batches, keys: Array, t) -> Array:
    """Batch i of epoch e: π_e(iB + [0, B)), each example once an epoch: (B,),
    or (runs, B) for (runs, ROUNDS) keys."""
    b = batches.batch
    positions = ((t % batches.n_batches) * b + jnp.arange(b)).astype(jnp.uint32)
    if keys.ndim == 1:
        return permute(positions, batches.n, keys)
    return jax.vmap(permute, in_axes=(None, None, 0))(positions, batches.n, keys)


def batch_at(config: _Config, key, t, x: Array, y: Array) -> tuple[Array, Array]:
    """(x, y) of the batch step t takes: the whole data for full-batch steps,
    else minibatch t of the run with data-order ``key`` (one run's: () key)."""
    if config.batch_size is None:
        return x, y
    n = x.shape[0]
    batches = _Batches(n, config.batch_size, n // config.batch_size)
    idx = _indices(batches, _epoch_keys(batches, key, t), t)
    return x[idx], y[idx]


def _update(config: _Config, last: bool, carry, xb, yb):
    """One step of ``carry = (params, opt_state, rule_state)`` on a batch:
    (carry, the loss before the update)."""
    update = config.optimizer.update
    if last:
        update = jax.vmap(update, in_axes=-1, out_axes=-1)
    params, opt_state, rule_state = carry
    loss, grads, rule_state = config.rule.value_and_grads(
        config.net, params, rule_state, xb, yb
    )
    updates, opt_state = update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, rule_state), loss


class _Blocks(NamedTuple):
    """``n_blocks`` (traced, ≤ ``G``) blocks of ``every`` steps from step
    ``t0``; ``like``: an array shaped as a run's loss (the runs' keys)."""

    t0: Array
    n_blocks: Array
    G: int
    every: int
    like: Array


def _block_means(step, carry, blocks: _Blocks, dtype):
    """The blocks of ``step(carry, t) -> (carry, loss)``: (carry, (means (G,),
    bad (G,))), each block's losses summed in step order as they come."""
    every, shape = blocks.every, blocks.like.shape

    def block(g, acc):
        carry, means, bads = acc
        tg = blocks.t0 + g * every  # the block's first step

        def one(i, acc):
            carry, total, bad = acc
            i = i.astype(jnp.int32)  # (an int64 counter under x64)
            carry, loss = step(carry, tg + i)
            total = total + loss
            bad = jnp.where((bad == every) & ~jnp.isfinite(loss), i, bad)
            return carry, total, bad

        zero = jnp.zeros(shape, dtype)  # a loss per run
        full = jnp.full(shape, every, jnp.int32)
        carry, total, bad = jax.lax.fori_loop(0, every, one, (carry, zero, full))
        put = jax.lax.dynamic_update_index_in_dim  # (as a scan stacks)
        return carry, put(means, total / every, g, 0), put(bads, bad, g, 0)

    means = jnp.full((blocks.G, *shape), jnp.nan, dtype)
    bads = jnp.full((blocks.G, *shape), every, jnp.int32)
    carry, means, bads = jax.lax.fori_loop(
        jnp.int32(0), blocks.n_blocks, block, (carry, means, bads)
    )
    return carry, (means, bads)


def _minibatch_step(config, batches, key, x, y, last, carry, t):
    """One minibatch step of ``carry = (run, epoch keys, batch indices)``.

    The carry holds this step's batch indices and its epoch's round keys, made
    by the step before: as a loop's state they are stored once. Computed in the
    step they were fused into the gathers and hashed again for every feature of
    every example, in scalar code (docs/design.md, "Shuffling without a sort").
    """
    run, keys, idx = carry
    if last:  # (runs, batch) indices; examples (batch, n_0, runs)
        xb, yb = jnp.moveaxis(x[idx], 0, -1), jnp.moveaxis(y[idx], 0, -1)
    else:
        xb, yb = x[idx], y[idx]
    run, loss = _update(config, last, run, xb, yb)
    keys = jax.lax.cond(  # a new epoch's keys: t is not batched
        (t + 1) % batches.n_batches == 0,
        lambda: _epoch_keys(batches, key, t + 1),
        lambda: keys,
    )
    return (run, keys, _indices(batches, keys, t + 1)), loss


def _scan(config, n, G, run, key, t0, n_blocks, x, y, last: bool = False):
    """What :func:`_steps` returns, for one run (or every run, runs last)."""
    batch, every = config.batch_size, config.log_every
    t0 = jnp.asarray(t0, jnp.int32)
    blocks = _Blocks(t0, jnp.asarray(n_blocks, jnp.int32), G, every, key)
    if batch is None:
        xb, yb = (x[..., None], y[..., None]) if last else (x, y)
        step = lambda run, t: _update(config, last, run, xb, yb)  # noqa: E731
        return _block_means(step, run, blocks, x.dtype)
    batches = _Batches(n, batch, n // batch)
    step = functools.partial(_minibatch_step, config, batches, key, x, y, last)
    keys = _epoch_keys(batches, key, t0)
    start = (run, keys, _indices(batches, keys, t0))
    (run, _, _), out = _block_means(step, start, blocks, x.dtype)
    return run, out


def _steps(config: _Config, n: int, G: int):
    """``(run, key, t0, n_blocks, x, y) -> (run, (means, bad))``: ``n_blocks``
    (≤ G, traced) blocks of ``every = log_every`` steps of one run from step t0.

    run = (params, opt_state, rule_state), key: the run's data-order key, t0:
    () int32, the global step of the first block's first step (minibatch i of
    epoch e at step t), x, y: the whole training set of n examples. Per block:
    means (G,), the mean of the losses before its steps; bad (G,) int32, the
    first of its steps (0..every-1) whose loss was not finite, ``every`` if none
    (blocks past ``n_blocks``: NaN and ``every``). Losses are summed in step
    order as they come, not stored: a long block's (every, runs) losses would
    be written to memory a step at a time (docs/design.md, "The default
    log_every").
    The number of blocks is traced so that one compiled copy of the steps
    serves every caller of a program (``_blocks``: a stretch unchecked, then a
    block at a time checked).

    Under ``vmap`` over runs, for a ``runs_last`` rule of a tiny network
    (``runs_last_pays``), the whole scan runs on the runs-last layout: the
    state's runs axis is moved last once before the first step and back once
    after the last, the rule's δ pass runs on it as it is, and the optimizer
    is mapped over that trailing axis (``vmap(..., in_axes=-1)``: any optax
    transformation stays per run; SGD's elementwise update needs no transpose,
    while a run's scalars, such as Adam's step count or a per-run learning
    rate, make JAX move the runs axis inside the optimizer). Otherwise a plain
    ``vmap``. The runs-last layout needs every argument but the runs' state
    and keys unbatched (t0 and n_blocks included), as in ``train_seeds``.
    """
    scan = functools.partial(_scan, config, n, G)
    if not config.rule.runs_last:
        return scan

    last = functools.partial(_scan_runs_last, scan)
    return over_runs(config.net, scan, last, functools.partial(_batch, config, n))


def _scan_runs_last(scan, in_batched, run, key, t0, n_blocks, x, y):
    """The scan on the runs-last layout: the runs' state moved last once."""
    del in_batched
    run = jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), run)
    return scan(run, key, t0, n_blocks, x, y, last=True)


def _batch(config, n, in_batched, run, key, t0, n_blocks, x, y):
    """The batch a runs-last step takes, or None (a plain ``vmap``) when the
    arguments are not the trainer's layout: every run's own state and key,
    the data and step shared."""
    del run, key, t0, n_blocks, x, y
    run_b, key_b, *shared_b = in_batched
    per_run = jax.tree.leaves((run_b, key_b))
    if all(per_run) and not any(jax.tree.leaves(shared_b)):
        return config.batch_size or n
    return None
