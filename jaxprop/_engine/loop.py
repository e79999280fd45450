"""One training run: its state, its log and its loop of blocks of steps (traced).

A run is a ``lax.fori_loop`` over blocks of ``log_every`` steps; each block is
its steps (``steps.py``), then the divergence check and rollback
(:func:`check_block`), the log entry, and an evaluation, an alignment measure or
the gradient's diagnostics when due. When none of them is asked for, blocks run in
stretches of about ``CHECK_STEPS`` steps checked once, and only a stretch in
which a run diverged is taken again block by block, for the runs that diverged
(:func:`run_stretch`: same result, a fraction of the checks; one compiled copy
of the steps either way). The step counter is not batched, so the ``lax.cond``
that evaluate or measure, whose predicates are the step alone, stay real
branches under ``vmap``. Everything here is traced: ``train.py`` and
``layout.py`` jit and map it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._core.params import Params
from .._metrics import accuracy_from_output
from .._network import MLP
from ..curvature.diagnostics import GradDiagnostics, traced_diagnostics
from ..rules import Alignment, alignment
from .steps import _Config, _steps, batch_at

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
      diagnostics_steps: (n_diag,) steps after which the gradient's
        diagnostics were measured (None without ``diagnostics_every``).
      diagnostics: a ``jp.curvature.GradDiagnostics`` of (n_diag,) values
        measured at those steps on the batch the next step takes (see
        ``train``), NaN for a diverged run; ``sharpness`` None without it.
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
    diagnostics_steps: Array | None = None
    diagnostics: GradDiagnostics | None = None


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
      diagnostics: a ``jp.curvature.GradDiagnostics`` of (..., n_blocks)
        values after the blocks at which one was due, NaN elsewhere (None
        without ``diagnostics_every``).
    """

    losses: Array
    eval_loss: Array | None = None
    eval_accuracy: Array | None = None
    alignment: Alignment | None = None
    diagnostics: GradDiagnostics | None = None


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
#: Folded into a run's data-order key, then the step, for the sharpness's
#: power-iteration start: a fresh start per measure, the same in every split.
_SHARPNESS_KEY = 0x53484152


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


def _every_and_last(every: int, steps: int) -> np.ndarray:
    """Steps every ``every`` steps, and the last."""
    return np.array(sorted(set(range(every, steps + 1, every)) | {steps}), np.int32)


def _alignment_steps(config: _Config) -> np.ndarray:
    """Steps after which alignment is measured: every alignment_every, and the last."""
    return _every_and_last(config.alignment_every, config.steps)


def _diagnostics_steps(config: _Config) -> np.ndarray:
    """Steps after which the diagnostics are measured: every diagnostics_every,
    and the last."""
    return _every_and_last(config.diagnostics_every, config.steps)


class TrainData(NamedTuple):
    """The arrays a run reads: training x (n, n_0) and y, held-out x_eval and
    y_eval (None without ``eval_data``)."""

    x: Array
    y: Array
    x_eval: Array | None = None
    y_eval: Array | None = None


class Span(NamedTuple):
    """What one call of :func:`_blocks` takes: ``n_blocks`` (may be traced)
    blocks from step ``start`` over ``data``; ``axis_name``: the ``vmap`` axis
    of the runs, if mapped (None: one run)."""

    start: Array
    n_blocks: Array | int
    data: TrainData
    axis_name: str | None = None


class Block(NamedTuple):
    """A block of ``every`` steps from step ``start`` taken from a run's state:
    the learnt state after it (``run``: params, opt_state, rule_state), the
    mean of its losses, and the first of its steps (0..every-1) whose loss was
    not finite (``every`` if none)."""

    start: Array
    run: tuple
    mean: Array
    bad: Array


def _learnt(state: RunState) -> tuple:
    """What the steps change of a run: (params, opt_state, rule_state)."""
    return state.params, state.opt_state, state.rule_state


def check_block(
    state: RunState, block: Block, every: int, hold=None
) -> tuple[RunState, Array]:
    """The state after ``block`` was taken from ``state``, and what the log
    records of it: the divergence check and rollback.

    Checked once a block, not every step: the check and the rollback cost as
    much as a small network's step. A run whose block diverged (a loss or a
    parameter not finite) is rolled back to the block's start and stays frozen
    there; ``diverged_at`` is its first non-finite loss's step, or the block's
    last step if only the parameters were not finite; it records NaN from
    there on. A run to ``hold`` (a () bool) keeps its state, ``diverged`` and
    ``diverged_at`` as they are (its steps are taken and dropped).
    """
    finite = block.bad == every
    fails = ~(finite & _all_finite(block.run[0]))
    if hold is not None:
        fails = fails & ~hold
    first_bad = block.start + jnp.where(finite, every - 1, block.bad)
    diverged = state.diverged | fails
    diverged_at = jnp.where(
        state.diverged | ~fails, state.diverged_at, first_bad.astype(jnp.int32)
    )
    keep = diverged if hold is None else diverged | hold
    params, opt_state, rule_state = jax.tree.map(
        lambda old, new: jnp.where(keep, old, new), _learnt(state), block.run
    )
    logged = jnp.where(diverged, jnp.nan, block.mean)
    state = RunState(params, opt_state, state.key, diverged, diverged_at, rule_state)
    return state, logged


def _evaluate(net: MLP, params: Params, data: TrainData) -> tuple[Array, Array]:
    """(loss, accuracy) of ``params`` on the held-out data."""
    y_hat, cache = net.forward_with_cache(params, data.x_eval)
    acc = accuracy_from_output(net, y_hat, data.y_eval).astype(data.x.dtype)
    return net.loss_from_cache(cache, data.y_eval), acc


def _entry(config: _Config, data: TrainData, state: RunState, end, logged) -> TrainLog:
    """The log entry of the block ending at step ``end`` (after its check):
    its loss ``logged``, and an evaluation and an alignment measure if due
    (NaN angles for a diverged run)."""
    net, dtype = config.net, data.x.dtype
    entry = TrainLog(logged)
    if data.x_eval is not None:
        nan = jnp.full((), jnp.nan, dtype)
        ev = jax.lax.cond(
            _due(_eval_steps(config), end),
            lambda: _evaluate(net, state.params, data),
            lambda: (nan, nan),
        )
        entry = entry._replace(eval_loss=ev[0], eval_accuracy=ev[1])
    if config.alignment_every is not None:
        x_align, y_align = data.x[:ALIGNMENT_EXAMPLES], data.y[:ALIGNMENT_EXAMPLES]
        nan = jnp.full((net.n_layers,), jnp.nan, dtype)
        # The predicate is the step alone: a run's ``diverged`` in it would
        # batch it under the runs' vmap, turning the cond into a select that
        # measures every run at every block. Diverged runs are masked after.
        angles = jax.lax.cond(
            _due(_alignment_steps(config), end),
            lambda: alignment(
                net, config.rule, state.params, state.rule_state, x_align, y_align
            ),
            lambda: Alignment(nan, nan, nan),
        )
        angles = jax.tree.map(lambda a: jnp.where(state.diverged, nan, a), angles)
        entry = entry._replace(alignment=angles)
    if config.diagnostics_every is not None:
        entry = entry._replace(diagnostics=_diagnose(config, data, state, end))
    return entry


def _diagnose(config: _Config, data: TrainData, state: RunState, end):
    """The diagnostics after step ``end`` if due (NaN if not, or diverged), on
    the batch step ``end`` takes, at the params it starts from."""
    nan = jnp.full((), jnp.nan, data.x.dtype)
    nans = GradDiagnostics(nan, nan, nan, None if config.sharpness is None else nan)

    def measure():
        x, y = batch_at(config, state.key, end, data.x, data.y)
        key = jax.random.fold_in(jax.random.fold_in(state.key, _SHARPNESS_KEY), end)
        sharpness, iters = config.sharpness, config.sharpness_iters
        return traced_diagnostics(config.net, sharpness, iters, state.params, x, y, key)

    # As for alignment: the predicate is the step alone, a real branch under
    # the runs' vmap; diverged runs are masked after.
    out = jax.lax.cond(_due(_diagnostics_steps(config), end), measure, lambda: nans)
    return jax.tree.map(lambda a: jnp.where(state.diverged, nan, a), out)


def _write(buf: Array, value: Array, row) -> Array:
    """``value``'s rows written into ``buf`` from ``row`` of its last axis (the
    blocks are the last axis of every log array)."""
    return jax.lax.dynamic_update_slice_in_dim(buf, value, row, axis=-1)


def _one_block(config: _Config, span: Span, steps, i, carry):
    """Block i of ``span``, checked, its entry written: the loop's body when
    every block is checked (``stretch_blocks`` is 1)."""
    state, log = carry
    every, data = config.log_every, span.data
    t = span.start + i * every
    run, (means, bad) = steps(_learnt(state), state.key, t, 1, data.x, data.y)
    state, logged = check_block(state, Block(t, run, means[0], bad[0]), every)
    entry = _entry(config, data, state, t + every, logged)
    row = span.start // every + i
    log = jax.tree.map(lambda b, e: _write(b, e[..., None], row), log, entry)
    return state, log


class Stretcher(NamedTuple):
    """How a run takes a stretch of up to ``G`` blocks of ``every`` steps:
    ``steps(run, t0, n) -> (run, (means, bad))`` takes n (≤ G, traced) blocks
    of ``run = (params, opt_state, rule_state)`` from step t0 (means, bad:
    (G,), NaN and ``every`` past n); ``dtype``: the losses'; runs mapped over
    ``axis_name`` (None: one run)."""

    steps: Callable
    G: int
    every: int
    dtype: Any
    axis_name: str | None = None


class Stretch(NamedTuple):
    """A stretch: ``m`` (≤ G) blocks from step ``t0`` (() int32 each)."""

    t0: Array
    m: Array


class Pass(NamedTuple):
    """The state between the passes of :func:`run_stretch`.

    Attributes:
      k: 0 before the unchecked pass over the stretch; k ≥ 1 before the checked
        pass over its block k - 1; m + 1 when done.
      state: the run's state.
      checked: (G,) what the checked passes recorded, block by block.
      means: (G,) the unchecked pass's block means (NaN for a run diverged
        before the stretch).
      redo: () bool, whether this run diverged in the unchecked pass (its
        blocks are then taken again, checked).
    """

    k: Array
    state: RunState
    checked: Array
    means: Array
    redo: Array


def _unchecked(st: Stretcher, at: Stretch, p: Pass, after, means, bad) -> Pass:
    """After the unchecked pass (``after``, ``means``, ``bad``: what the m
    blocks gave): a run that diverged in them keeps its state from the
    stretch's start, every other run its outcome; the checked passes follow
    only if a run diverged."""
    state = p.state
    redo = ~state.diverged & ~(jnp.all(bad == st.every) & _all_finite(after[0]))
    params, opt_state, rule_state = jax.tree.map(
        lambda before, new: jnp.where(state.diverged | redo, before, new),
        _learnt(state),
        after,
    )
    k = jnp.where(_any_run(redo, st.axis_name), 1, at.m + 1).astype(jnp.int32)
    state = state._replace(params=params, opt_state=opt_state, rule_state=rule_state)
    return Pass(k, state, p.checked, jnp.where(p.state.diverged, jnp.nan, means), redo)


def _checked(st: Stretcher, at: Stretch, p: Pass, after, means, bad) -> Pass:
    """After the checked pass over block k - 1 (``after``, ``means``, ``bad``:
    what it gave): the check, for the runs to redo alone (the others hold)."""
    t = at.t0 + (p.k - 1) * st.every
    block = Block(t, after, means[0], bad[0])
    state, logged = check_block(p.state, block, st.every, hold=~p.redo)
    checked = _write(p.checked, logged[None], p.k - 1)
    return Pass(p.k + 1, state, checked, p.means, p.redo)


def _pass(st: Stretcher, at: Stretch, p: Pass) -> Pass:
    """One pass of :func:`run_stretch`: the stretch's m blocks unchecked
    (k = 0), or its block k - 1 again, checked."""
    # One call of the steps in the loop, so that the program holds one copy.
    after, (means, bad) = st.steps(
        _learnt(p.state),
        at.t0 + jnp.maximum(p.k - 1, 0) * st.every,
        jnp.where(p.k == 0, at.m, 1),
    )
    return jax.lax.cond(
        p.k == 0,
        lambda: _unchecked(st, at, p, after, means, bad),
        lambda: _checked(st, at, p, after, means, bad),
    )


def run_stretch(st: Stretcher, state: RunState, at: Stretch) -> tuple[RunState, Array]:
    """A stretch of ``at.m`` blocks, checked once: (the state after it, (G,)
    what the log records of its blocks in its first ``at.m`` rows).

    Pass 0 takes the m blocks unchecked. Only if a run diverged in them (any
    run mapped over ``st.axis_name``), passes k = 1..m take block k - 1 again
    from the stretch's start, checked after each, for the runs that diverged
    alone: those runs record and keep what a check after every block gives
    (:func:`check_block`), the others their unchecked outcome.
    """
    nan = jnp.full((st.G,), jnp.nan, st.dtype)
    start = Pass(jnp.int32(0), state, nan, nan, jnp.zeros((), bool))
    p = jax.lax.while_loop(
        lambda p: p.k <= at.m, functools.partial(_pass, st, at), start
    )
    return p.state, jnp.where(p.redo, p.checked, p.means)


def _stretch_body(config: _Config, span: Span, steps, G: int, s, carry):
    """Stretch s of ``span`` (up to G blocks, checked once), its losses
    written into the log."""
    state, log = carry
    every, data = config.log_every, span.data
    b0 = span.start // every + s * G  # its first block
    t0 = span.start + s * G * every  # and step
    m = jnp.minimum(G, span.n_blocks - s * G).astype(jnp.int32)  # G but the last
    st = Stretcher(
        lambda run, t, n: steps(run, state.key, t, n, data.x, data.y),
        G,
        every,
        data.x.dtype,
        span.axis_name,
    )
    state, entries = run_stretch(st, state, Stretch(t0, m))
    # Rows b0 .. b0 + m - 1 of the log, written as one slab of G rows that
    # stays inside the log (the run has at least G blocks).
    total = config.steps // every
    s0 = jnp.minimum(b0, total - G)
    old = jax.lax.dynamic_slice_in_dim(log.losses, s0, G, axis=-1)
    at = s0 + jnp.arange(G) - b0
    mine = (at >= 0) & (at < m)
    rows = jnp.where(mine, entries[jnp.clip(at, 0, G - 1)], old)
    return state, log._replace(losses=_write(log.losses, rows, s0))


def _blocks(
    config: _Config, carry: tuple[RunState, TrainLog], span: Span
) -> tuple[RunState, TrainLog]:
    """``span.n_blocks`` blocks of ``log_every`` steps of one run from step
    ``span.start``: ``carry`` (the run's state and log) after them.

    Each block's entry is written into the log (the whole run's, NaN-filled at
    first) at the block's own row. ``n_blocks`` may be traced: the loop is one
    compiled block body whatever its trip count, so a run split into calls of
    any lengths takes bit for bit the same steps as one call over all of them
    (everything depends on the global step only: the minibatch, the
    evaluations due). Without an evaluation or alignment measure, the blocks
    run in stretches checked once (:func:`run_stretch`), with the same result.
    With ``span.axis_name`` a stretch is taken again for all runs only when one
    diverged. Traced; callers jit and map it.
    """
    has_eval = span.data.x_eval is not None
    G = stretch_blocks(config, has_eval)
    steps = _steps(config, span.data.x.shape[0], G)
    if G == 1:
        body = functools.partial(_one_block, config, span, steps)
        return jax.lax.fori_loop(0, span.n_blocks, body, carry)
    body = functools.partial(_stretch_body, config, span, steps, G)
    return jax.lax.fori_loop(0, -(-span.n_blocks // G), body, carry)


def _any_run(flag: Array, axis_name) -> Array:
    """Whether ``flag`` holds for any run mapped over ``axis_name`` (unbatched,
    so that a ``lax.cond`` on it stays a real branch), or for this run."""
    if axis_name is None:
        return flag
    return jax.lax.psum(flag.astype(jnp.int32), axis_name) > 0


#: About this many steps between divergence checks when a block records only
#: its training loss (no evaluation or alignment due). The check, the rollback
#: and the log write of every block cost as much as a tiny network's step
#: (docs/design.md, "The default `log_every`"): the steps of a stretch of
#: blocks run unchecked, one check follows, and a run found diverged takes the
#: stretch again from its start with the check after every block, so that what
#: it records and where it is frozen are exactly those of a check after every
#: block.
CHECK_STEPS = 100


def stretch_blocks(config: _Config, has_eval: bool) -> int:
    """Blocks per divergence check (1: after every block)."""
    if has_eval or config.alignment_every is not None:
        return 1
    if config.diagnostics_every is not None:
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
    if config.diagnostics_every is not None:
        sharpness = None if config.sharpness is None else nan()
        log = log._replace(diagnostics=GradDiagnostics(nan(), nan(), nan(), sharpness))
    return log


def log_rows(config: _Config, has_eval: bool) -> int:
    """Entries a run's log holds per block (:func:`_empty_log`'s, of one block)."""
    one = config._replace(steps=1, log_every=1)
    log = jax.eval_shape(lambda: _empty_log(one, has_eval, jnp.float32))
    return sum(leaf.size for leaf in jax.tree.leaves(log))


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
    if log.diagnostics is not None:
        steps, rows = at(_diagnostics_steps(config))
        result = result._replace(
            diagnostics_steps=steps,
            diagnostics=jax.tree.map(lambda a: a[..., rows], log.diagnostics),
        )
    return result


def _run(config: _Config, state: RunState, data: TrainData) -> TrainResult:
    """One whole training run from ``state`` (:func:`_start_state`) (traced)."""
    log = _empty_log(config, data.x_eval is not None, data.x.dtype)
    n_blocks = config.steps // config.log_every
    state, log = _blocks(config, (state, log), Span(jnp.int32(0), n_blocks, data))
    return _result(config, state, log)


_train = jax.jit(_run, static_argnums=0)
