"""One training run: its state, its log and its loop of blocks of steps (traced).

A run is a ``lax.fori_loop`` over blocks of ``log_every`` steps; each block is
its steps, then the divergence check and rollback, the log entry, and an
evaluation or an alignment measure when one is due. When no evaluation or
alignment is asked for, blocks run in stretches of about ``CHECK_STEPS`` steps
checked once, and only a stretch in which a run diverged is taken again block
by block, for the runs that diverged (same result, a fraction of the checks;
one compiled copy of the steps either way). Minibatch i
of epoch e is examples π_e(iB), ..., π_e(iB + B - 1) of a keyed bijection π_e of
[0, n) computed index by index (``_shuffle.py``): no permutation is sorted or
carried. The step counter is not batched, so the ``lax.cond`` that evaluate or
measure alignment, whose predicates are the step alone, stay real branches
under ``vmap``. Everything here
is traced: ``_train.py`` and ``_layout.py`` jit and map it.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._core.params import Params
from .._metrics import accuracy_from_output
from .._network import MLP, over_runs
from ..rules._alignment import Alignment, alignment
from ..rules._rules import Rule
from .shuffle import permute, round_keys

Array = jax.Array


class TrainResult(NamedTuple):
    """What a training run returns; ``train_seeds`` adds leading axes to every leaf.

    Attributes:
      params: final parameters (frozen at the last finite values if diverged).
      opt_state: final optimizer state.
      losses: (steps // log_every,) training loss, the mean over each block of
        ``log_every`` steps of the loss before that step's update; NaN from the
        block in which the run diverged.
      diverged: () bool, whether a loss or the parameters became NaN or inf. A
        diverged run is frozen at its state from the start of that block of
        ``log_every`` steps (with ``log_every=1``, its last finite state). The
        engine checks runs less often when nothing else is due per block (see
        ``CHECK_STEPS``), with the same outcome.
      diverged_at: () int32, the first step whose loss was not finite (or the
        block's last step if only the parameters were not), or -1.
      eval_steps: (n_evals,) steps after which held-out data was evaluated
        (None without ``eval_data``).
      eval_loss: (n_evals,) held-out loss (None without ``eval_data``).
      eval_accuracy: (n_evals,) held-out accuracy (see ``jp.accuracy``).
      rule_state: the rule's final state (``()`` for backprop).
      alignment_steps: (n_align,) steps after which alignment was measured
        (None without ``alignment_every``).
      alignment: a ``jp.Alignment`` of (L, n_align) angles in degrees between
        the rule and backprop on the training data (its first
        ``ALIGNMENT_EXAMPLES``), or None.
    """

    params: Params
    opt_state: Any
    losses: Array
    diverged: Array
    diverged_at: Array
    eval_steps: Array | None = None
    eval_loss: Array | None = None
    eval_accuracy: Array | None = None
    rule_state: Any = ()
    alignment_steps: Array | None = None
    alignment: Alignment | None = None


class _Config(NamedTuple):
    """The static (hashable) part of a training run."""

    net: MLP
    optimizer: optax.GradientTransformation
    steps: int
    rule: Rule
    batch_size: int | None
    log_every: int
    eval_every: int | None
    alignment_every: int | None = None


class RunState(NamedTuple):
    """One run's state between blocks of steps (leading run axes in a ``Trainer``).

    Attributes:
      params: current parameters.
      opt_state: current optimizer state.
      key: the data-order PRNG key (the same for the whole run); epoch e's
        order of the examples is a bijection keyed by ``fold_in(key, e)``.
      diverged: () bool; diverged_at: () int32 (see :class:`TrainResult`).
      rule_state: the rule's state (``()`` for backprop: no leaves).
    """

    params: Params
    opt_state: Any
    key: Any
    diverged: Array
    diverged_at: Array
    rule_state: Any = ()


class TrainLog(NamedTuple):
    """What a run records per block of ``log_every`` steps (trailing axis: blocks).

    Attributes:
      losses: (..., n_blocks) mean training loss of each block; NaN once diverged.
      eval_loss, eval_accuracy: (..., n_blocks) held-out loss and accuracy after
        the blocks at which an evaluation was due, NaN elsewhere (None without
        ``eval_data``).
      alignment: a ``jp.Alignment`` of (..., L, n_blocks) angles after the
        blocks at which one was due, NaN elsewhere (None without
        ``alignment_every``).
    """

    losses: Array
    eval_loss: Array | None = None
    eval_accuracy: Array | None = None
    alignment: Alignment | None = None


def _all_finite(tree) -> Array:
    return jnp.all(
        jnp.asarray([jnp.all(jnp.isfinite(l)) for l in jax.tree.leaves(tree)])
    )


def _eval_steps(config: _Config) -> np.ndarray:
    """Steps after which held-out data is evaluated: every eval_every, and the last."""
    steps = set(range(config.eval_every, config.steps + 1, config.eval_every))
    return np.array(sorted(steps | {config.steps}), np.int32)


#: Alignment is measured on at most this many training examples.
ALIGNMENT_EXAMPLES = 1024
#: Folded into a run's key for its rule state: the init and data keys (the two
#: halves of ``jax.random.split(key)``) stay what they were before rules.
_RULE_KEY = 0x52554C45


def _start_state(params: Params, opt_state, key, rule_state=()) -> RunState:
    return RunState(
        params,
        opt_state,
        key,
        jnp.array(False),
        jnp.array(-1, jnp.int32),
        rule_state,
    )


def _due(steps: np.ndarray, end) -> Array:
    """Whether a block ending at step ``end`` is in ``steps`` (a real branch:
    the step counter is not batched)."""
    return jnp.any(end == steps)


def _alignment_steps(config: _Config) -> np.ndarray:
    """Steps after which alignment is measured: every alignment_every, and the last."""
    every = config.alignment_every
    return np.array(
        sorted(set(range(every, config.steps + 1, every)) | {config.steps}), np.int32
    )


def _blocks(
    config: _Config,
    state: RunState,
    log: TrainLog,
    start: Array,
    n_blocks: Array | int,
    x: Array,
    y: Array,
    x_eval: Array | None,
    y_eval: Array | None,
    axis_name: str | None = None,
) -> tuple[RunState, TrainLog]:
    """``n_blocks`` blocks of ``log_every`` steps of one run from step ``start``.

    Each block's entry is written into ``log`` (the whole run's, NaN-filled at
    first) at the block's own row. ``n_blocks`` may be traced: the loop is one
    compiled block body whatever its trip count, so a run split into calls of
    any lengths takes bit for bit the same steps as one call over all of them
    (everything depends on the global step only: the minibatch, the
    evaluations due). Without an evaluation or alignment measure, the blocks
    run in stretches checked once (``stretch_blocks``), with the same result.
    ``axis_name``: the ``vmap`` axis of the runs, if mapped, so that a stretch
    is taken again for all of them only when one diverged. Traced; callers jit
    and map it.
    """
    net, rule = config.net, config.rule
    key = state.key
    has_eval = x_eval is not None
    G, L = stretch_blocks(config, has_eval), config.log_every
    steps = _steps(config, x.shape[0], G)

    if has_eval:
        eval_at = _eval_steps(config)
    if config.alignment_every is not None:
        align_at = _alignment_steps(config)
        x_align, y_align = x[:ALIGNMENT_EXAMPLES], y[:ALIGNMENT_EXAMPLES]

    def evaluate(params):
        y_hat, cache = net.forward_with_cache(params, x_eval)
        acc = accuracy_from_output(net, y_hat, y_eval).astype(x.dtype)
        return net.loss_from_cache(cache, y_eval), acc

    def learnt(state):
        return state.params, state.opt_state, state.rule_state

    def checked(state, run, mean, bad, start, hold=None):
        """The state and log entry after the block of L steps from ``start``
        that took ``state`` to ``run`` (mean, bad: its loss and first
        non-finite step): a divergence check; an evaluation and an alignment
        measure if due (NaN angles for a diverged run).
        A run to ``hold`` keeps its state, ``diverged`` and ``diverged_at``
        as they are (its steps are taken and dropped)."""
        # Checked once a block, not every step: the check and the rollback cost
        # as much as a small network's step. A diverged run is rolled back to the
        # block's start and stays frozen there; other runs never see it.
        finite = bad == L
        fails = ~(finite & _all_finite(run[0]))
        if hold is not None:
            fails = fails & ~hold
        first_bad = start + jnp.where(finite, L - 1, bad)
        diverged = state.diverged | fails
        diverged_at = jnp.where(
            state.diverged | ~fails, state.diverged_at, first_bad.astype(jnp.int32)
        )
        keep = diverged if hold is None else diverged | hold
        params, opt_state, rule_state = jax.tree.map(
            lambda old, new: jnp.where(keep, old, new), learnt(state), run
        )
        logged = jnp.where(diverged, jnp.nan, mean)
        state = RunState(params, opt_state, key, diverged, diverged_at, rule_state)
        end = start + L
        entry = TrainLog(logged)
        if has_eval:
            nan = jnp.full((), jnp.nan, x.dtype)
            ev = jax.lax.cond(
                _due(eval_at, end), lambda: evaluate(params), lambda: (nan, nan)
            )
            entry = entry._replace(eval_loss=ev[0], eval_accuracy=ev[1])
        if config.alignment_every is not None:
            nan = jnp.full((net.n_layers,), jnp.nan, x.dtype)
            # The predicate is the step alone: a run's ``diverged`` in it would
            # batch it under the runs' vmap, turning the cond into a select that
            # measures every run at every block. Diverged runs are masked after.
            angles = jax.lax.cond(
                _due(align_at, end),
                lambda: alignment(net, rule, params, rule_state, x_align, y_align),
                lambda: Alignment(nan, nan, nan),
            )
            angles = jax.tree.map(lambda a: jnp.where(diverged, nan, a), angles)
            entry = entry._replace(alignment=angles)
        return state, entry

    first = start // L

    def write(buf, value, row):  # the blocks are the last axis of every log array
        return jax.lax.dynamic_update_slice_in_dim(buf, value, row, axis=-1)

    if G == 1:

        def body(i, carry):
            state, log = carry
            t = start + i * L
            run, (means, bad) = steps(learnt(state), key, t, 1, x, y)
            state, entry = checked(state, run, means[0], bad[0], t)
            log = jax.tree.map(
                lambda b, e: write(b, e[..., None], first + i), log, entry
            )
            return state, log

        return jax.lax.fori_loop(0, n_blocks, body, (state, log))

    total = config.steps // L

    def stretch(s, carry):
        """Up to G blocks, checked once; when a run is found diverged, the
        blocks are taken again from the stretch's start, checked after each,
        and the runs found diverged keep that pass's outcome."""
        state, log = carry
        b0, t0 = first + s * G, start + s * G * L  # its first block and step
        m = jnp.minimum(G, n_blocks - s * G).astype(jnp.int32)  # G but for the last

        # One loop around the only call of the steps, so that the program holds
        # one copy of them. Pass 0 takes the m blocks unchecked: a run that
        # diverged in them keeps its state from the stretch's start, every other
        # run its outcome. Only if a run diverged, passes k = 1..m take block
        # k - 1 again, checked, for those runs alone (the others hold).
        def one_pass(carry):
            k, st, buf, means, redo = carry
            after, (now, bad) = steps(
                learnt(st),
                key,
                t0 + jnp.maximum(k - 1, 0) * L,
                jnp.where(k == 0, m, 1),
                x,
                y,
            )

            def unchecked():
                redo = ~st.diverged & ~(jnp.all(bad == L) & _all_finite(after[0]))
                params, opt_state, rule_state = jax.tree.map(
                    lambda before, new: jnp.where(st.diverged | redo, before, new),
                    learnt(st),
                    after,
                )
                k = jnp.where(_any_run(redo, axis_name), 1, m + 1).astype(jnp.int32)
                st_next = st._replace(
                    params=params, opt_state=opt_state, rule_state=rule_state
                )
                return k, st_next, buf, jnp.where(st.diverged, jnp.nan, now), redo

            def block():
                t = t0 + (k - 1) * L
                st_next, entry = checked(st, after, now[0], bad[0], t, hold=~redo)
                return (
                    k + 1,
                    st_next,
                    write(buf, entry.losses[None], k - 1),
                    means,
                    redo,
                )

            return jax.lax.cond(k == 0, unchecked, block)

        nan = jnp.full((G,), jnp.nan, x.dtype)
        start_pass = (jnp.int32(0), state, nan, nan, jnp.zeros((), bool))
        _, state, buf, means, redo = jax.lax.while_loop(
            lambda carry: carry[0] <= m, one_pass, start_pass
        )
        entries = jnp.where(redo, buf, means)
        # Rows b0 .. b0 + m - 1 of the log, written as one slab of G rows that
        # stays inside the log (the run has at least G blocks).
        s0 = jnp.minimum(b0, total - G)
        old = jax.lax.dynamic_slice_in_dim(log.losses, s0, G, axis=-1)
        at = s0 + jnp.arange(G) - b0
        mine = (at >= 0) & (at < m)
        rows = jnp.where(mine, entries[jnp.clip(at, 0, G - 1)], old)
        return state, log._replace(losses=write(log.losses, rows, s0))

    return jax.lax.fori_loop(0, -(-n_blocks // G), stretch, (state, log))


def _steps(config: _Config, n: int, G: int):
    """``(run, key, t0, n_blocks, x, y) -> (run, (means, bad))``: ``n_blocks``
    (≤ G, traced) blocks of L = ``log_every`` steps of one run from step t0.

    run = (params, opt_state, rule_state), key: the run's data-order key, t0:
    () int32, the global step of the first block's first step (minibatch i of
    epoch e at step t), x, y: the whole training set of n examples. Per block:
    means (G,), the mean of the losses before its steps; bad (G,) int32, the
    first of its steps (0..L-1) whose loss was not finite, L if none (blocks
    past ``n_blocks``: NaN and L). Losses are summed in step order as they
    come, not stored: a long block's (L, runs) losses were written to memory a
    step at a time (65536 XOR runs: blocks of 2000 steps ran 15% slower than
    blocks of 200; Kahan's compensated sum cost 8% more). The number of blocks
    is traced so that one compiled copy of the steps serves every caller of a
    program (``_blocks``: a stretch unchecked, then a block at a time checked).

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
    net, optimizer, rule = config.net, config.optimizer, config.rule
    batch, L = config.batch_size, config.log_every
    n_batches = n // batch if batch else 1  # per epoch; the remainder is dropped

    def epoch_keys(key, t):
        """The round keys of step t's epoch: (ROUNDS,), or (runs, ROUNDS) when
        ``key`` holds the runs."""
        if key.ndim == 0:
            return round_keys(key, t // n_batches)
        return jax.vmap(round_keys, in_axes=(0, None))(key, t // n_batches)

    def indices(keys, t):
        """Batch i of epoch e: π_e(iB + [0, B)), each example once an epoch:
        (B,), or (runs, B) for (runs, ROUNDS) keys."""
        positions = ((t % n_batches) * batch + jnp.arange(batch)).astype(jnp.uint32)
        if keys.ndim == 1:
            return permute(positions, n, keys)
        return jax.vmap(permute, in_axes=(None, None, 0))(positions, n, keys)

    def scan(run, key, t0, n_blocks, x, y, last: bool = False):
        update = optimizer.update
        if last:
            update = jax.vmap(update, in_axes=-1, out_axes=-1)

        def train(carry, xb, yb):
            params, opt_state, rule_state = carry
            loss, grads, rule_state = rule.value_and_grads(
                net, params, rule_state, xb, yb
            )
            updates, opt_state = update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, rule_state), loss

        def blocks(step, carry):
            """The blocks of ``step(carry, t) -> (carry, loss)``, their losses
            reduced as they come."""

            def block(g, acc):
                carry, means, bads = acc
                tg = t0 + g * L  # the block's first step

                def one(i, acc):
                    carry, total, bad = acc
                    i = i.astype(jnp.int32)  # (an int64 counter under x64)
                    carry, loss = step(carry, tg + i)
                    total = total + loss
                    bad = jnp.where((bad == L) & ~jnp.isfinite(loss), i, bad)
                    return carry, total, bad

                zero = jnp.zeros(key.shape, x.dtype)  # a loss per run
                full = jnp.full(key.shape, L, jnp.int32)
                carry, total, bad = jax.lax.fori_loop(0, L, one, (carry, zero, full))
                put = jax.lax.dynamic_update_index_in_dim  # (as a scan stacks)
                return carry, put(means, total / L, g, 0), put(bads, bad, g, 0)

            means = jnp.full((G, *key.shape), jnp.nan, x.dtype)
            bads = jnp.full((G, *key.shape), L, jnp.int32)
            carry, means, bads = jax.lax.fori_loop(
                jnp.int32(0), n_blocks, block, (carry, means, bads)
            )
            return carry, (means, bads)

        t0 = jnp.asarray(t0, jnp.int32)
        n_blocks = jnp.asarray(n_blocks, jnp.int32)
        if batch is None:
            xb, yb = (x[..., None], y[..., None]) if last else (x, y)
            return blocks(lambda run, t: train(run, xb, yb), run)

        def step(carry, t):
            # The carry holds this step's batch indices and its epoch's round
            # keys, made by the step before: as a loop's state they are stored
            # once. Computed in the step they were fused into the gathers and
            # hashed again for every feature of every example, in scalar
            # code (2-4-1 nets, batch 16: 17x the time of a plain step).
            run, keys, idx = carry
            if last:  # (runs, batch) indices; examples (batch, n_0, runs)
                xb, yb = jnp.moveaxis(x[idx], 0, -1), jnp.moveaxis(y[idx], 0, -1)
            else:
                xb, yb = x[idx], y[idx]
            run, loss = train(run, xb, yb)
            keys = jax.lax.cond(  # a new epoch's keys: t is not batched
                (t + 1) % n_batches == 0,
                lambda: epoch_keys(key, t + 1),
                lambda: keys,
            )
            return (run, keys, indices(keys, t + 1)), loss

        keys = epoch_keys(key, t0)
        (run, _, _), out = blocks(step, (run, keys, indices(keys, t0)))
        return run, out

    if not rule.runs_last:
        return scan

    def last(in_batched, run, key, t0, n_blocks, x, y):
        run = jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), run)
        return scan(run, key, t0, n_blocks, x, y, last=True)

    def batch_of(in_batched, run, key, t0, n_blocks, x, y):
        run_b, key_b, *shared_b = in_batched
        per_run = jax.tree.leaves((run_b, key_b))
        if all(per_run) and not any(jax.tree.leaves(shared_b)):
            return batch or n
        return None  # not the trainer's layout (every run's own state, shared data)

    steps = over_runs(net, scan, last, batch_of)
    return steps


def _any_run(flag: Array, axis_name) -> Array:
    """Whether ``flag`` holds for any run mapped over ``axis_name`` (unbatched,
    so that a ``lax.cond`` on it stays a real branch), or for this run."""
    if axis_name is None:
        return flag
    return jax.lax.psum(flag.astype(jnp.int32), axis_name) > 0


#: About this many steps between divergence checks when a block records only
#: its training loss (no evaluation or alignment due). The check, the rollback
#: and the log write of every block cost as much as a tiny network's step (XOR
#: 2-2-1 over 16384 seeds ran at 0.88x the speed of log_every=100 with the
#: check after every step): the steps of a stretch of blocks run unchecked, one
#: check follows, and a run found diverged takes the stretch again from its
#: start with the check after every block, so that what it records and where
#: it is frozen are exactly those of a check after every block.
CHECK_STEPS = 100


def stretch_blocks(config: _Config, has_eval: bool) -> int:
    """Blocks per divergence check (1: after every block)."""
    if has_eval or config.alignment_every is not None:
        return 1
    total = config.steps // config.log_every
    return max(1, min(CHECK_STEPS // config.log_every, total))


def _empty_log(config: _Config, has_eval: bool, dtype) -> TrainLog:
    """One run's log before its first step: NaN in every block."""
    n = config.steps // config.log_every
    nan = lambda *lead: jnp.full((*lead, n), jnp.nan, dtype)  # noqa: E731
    log = TrainLog(nan())
    if has_eval:
        log = log._replace(eval_loss=nan(), eval_accuracy=nan())
    if config.alignment_every is not None:
        L = config.net.n_layers
        log = log._replace(alignment=Alignment(nan(L), nan(L), nan(L)))
    return log


def _result(config: _Config, state: RunState, log: TrainLog) -> TrainResult:
    """The TrainResult of finished runs (any leading run axes) from the full log."""
    result = TrainResult(
        state.params,
        state.opt_state,
        log.losses,
        state.diverged,
        state.diverged_at,
        rule_state=state.rule_state,
    )
    lead = log.losses.shape[:-1]

    def at(steps):  # (the steps with the run axes, the log's blocks at those steps)
        return (
            jnp.broadcast_to(jnp.asarray(steps), (*lead, steps.size)),
            (steps // config.log_every) - 1,
        )

    if log.eval_loss is not None:
        steps, rows = at(_eval_steps(config))
        result = result._replace(
            eval_steps=steps,
            eval_loss=log.eval_loss[..., rows],
            eval_accuracy=log.eval_accuracy[..., rows],
        )
    if log.alignment is not None:
        steps, rows = at(_alignment_steps(config))
        result = result._replace(
            alignment_steps=steps,
            alignment=jax.tree.map(lambda a: a[..., rows], log.alignment),
        )
    return result


def _run(
    config: _Config,
    params: Params,
    opt_state,
    x: Array,
    y: Array,
    key,
    x_eval: Array | None,
    y_eval: Array | None,
    rule_state=(),
) -> TrainResult:
    """One whole training run (traced)."""
    state = _start_state(params, opt_state, key, rule_state)
    log = _empty_log(config, x_eval is not None, x.dtype)
    n_blocks = config.steps // config.log_every
    state, log = _blocks(
        config, state, log, jnp.int32(0), n_blocks, x, y, x_eval, y_eval
    )
    return _result(config, state, log)


@functools.partial(jax.jit, static_argnums=0)
def _train(
    config, params, opt_state, x, y, key, x_eval, y_eval, rule_state
) -> TrainResult:
    return _run(config, params, opt_state, x, y, key, x_eval, y_eval, rule_state)
