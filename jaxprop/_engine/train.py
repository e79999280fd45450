"""Training, compiled once: ``train`` (one run) and ``train_seeds`` (many
runs, across seeds and hyperparameters, through a :class:`Trainer`).

Their options are checked once into an :class:`~jaxprop._engine.options.Options`
(``options.py``); one run's loop is ``loop.py``; how many runs share the
devices is ``layout.py``; the rules that give each step's gradient are
``jaxprop.rules``.
"""

from __future__ import annotations

import time
from typing import Unpack

import jax
import numpy as np
import optax

from .._core.params import Params, check_key, typed_keys
from .._network import MLP
from ..rules.delta_rules import check_rule_state
from .checkpoint import agree_max as agree_max
from .checkpoint import checkpoint_meta as checkpoint_meta
from .checkpoint import differences as differences
from .checkpoint import write_once as write_once
from .loop import _RULE_KEY, TrainResult, _start_state, _train
from .options import GRADS as GRADS
from .options import LOG_BYTES as LOG_BYTES
from .options import MIN_BLOCK_FLOPS as MIN_BLOCK_FLOPS
from .options import RunOptions, SweepOptions, run_options, sweep_options
from .progress import Progress
from .trainer import Trainer as Trainer
from .trainer import TrainState as TrainState


def train(
    net: MLP,
    params: Params,
    x,
    y,
    optimizer: optax.GradientTransformation,
    steps: int,
    *,
    key=None,
    opt_state=None,
    rule_state=None,
    **options: Unpack[RunOptions],
) -> TrainResult:
    """Trains one network; the whole loop is one jit-compiled program (a
    ``lax.fori_loop`` over blocks of ``log_every`` steps, each a ``lax.scan``).

    Args:
      net: the network.
      params: initial parameters (``net.init``).
      x: (n, n_in) training inputs; y: their targets (as for ``net.loss``).
      optimizer: any ``optax.GradientTransformation``. Create it once and reuse
        it: it is part of the compiled program's static configuration.
      steps: number of updates.
      grad: ``"manual"``, the hand-written δ recursion (the program of
        ``net.value_and_backprop``, or for tiny networks under ``vmap`` its
        runs-last layout, ``jaxprop._network.over_runs``, equal to rounding),
        or ``"autodiff"`` (``jax.value_and_grad(net.loss)``): aliases of
        ``rule=jp.rules.backprop()`` and ``jp.rules.autodiff()`` (the default
        is backprop). Give ``grad`` or ``rule``, not both.
      rule: a credit-assignment rule (``jp.rules``).
      batch_size: None for full-batch steps; otherwise minibatches of this size
        from a fresh permutation of the data each epoch (drawn from ``key``;
        the last incomplete batch of an epoch is dropped).
      key: PRNG key for the data order; required with ``batch_size``. The
        rule's state is drawn from ``fold_in(key, ...)`` (key 0 if None).
      opt_state: initial optimizer state; ``optimizer.init(params)`` if None.
      rule_state: initial rule state; drawn by ``rule.init`` if None.
      eval_data: optional held-out ``(x_eval, y_eval)``.
      eval_every: evaluate every this many steps and after the last (as for
        ``alignment_every``: ``result.eval_steps`` lists them); default: after
        the last step only. A multiple of ``log_every``.
      alignment_every: measure ``jp.alignment`` of the rule with backprop on
        the training data every this many steps and after the last (when it
        does not divide ``steps``, the last two measures are closer than
        ``alignment_every``: ``result.alignment_steps`` lists them); a
        multiple of ``log_every``. None: never.
      diagnostics_every: measure the loss gradient's diagnostics
        (``jp.curvature.grad_diagnostics``: ‖∇L‖, Byrd et al. 2012's norm
        test, the gradient signal-to-noise ratio, the sharpness) every this
        many steps and after the last (``result.diagnostics_steps``), each at
        the params after step t on the batch step t + 1 takes (all of x for
        full-batch steps; with ``batch_size``, the next minibatch of the
        data order). They are of the loss's gradient (backprop's δ pass)
        whatever the rule. A multiple of ``log_every``. None: never.
      sharpness: which top eigenvalue the diagnostics hold: ``"hessian"``
        (the default; Cohen et al. 2021's sharpness, which full-batch gradient
        descent drives to 2/η), ``"ggn"`` (the generalized Gauss-Newton's), or
        None (no sharpness: the other diagnostics cost one δ pass, the
        sharpness ``sharpness_iters`` matrix-vector products more). Only with
        ``diagnostics_every``.
      sharpness_iters: power-iteration steps of the sharpness (default 20; see
        ``jp.curvature.top_eigenvalue``), from a start drawn from the run's
        data-order key and the step. Only with ``diagnostics_every``.
      log_every: record the mean training loss of each block of this many steps
        (it must divide ``steps``); 1 records every step. Default: every step
        unless the record of every run would pass ``LOG_BYTES`` (16 MiB), then
        the smallest divisor of ``steps`` (and of ``eval_every``,
        ``alignment_every`` and ``diagnostics_every``) that fits
        (``Trainer.log_every`` tells which). It is only what is recorded:
        divergence is checked as if after every block whatever it is (see
        :class:`TrainResult`). Under a ``jax.vmap`` of ``train`` itself, whether
        a stretch is taken again is decided per run, so the step loop's counters
        are batched: each run gets its own outcome, but tiny networks lose the
        runs-last layout and a run's new epoch order is computed every step (a
        select, not a branch); ``train_seeds`` maps runs without that cost.

    Returns:
      A :class:`TrainResult`.
    """
    options = run_options(net, params, x, y, optimizer, steps, options)
    config = options.config
    key = _data_key(key, config.batch_size)
    if opt_state is None:
        opt_state = optimizer.init(params)
    rule_key = jax.random.fold_in(key, _RULE_KEY)
    rule_state = check_rule_state(
        config.rule, net, params, rule_state, rule_key, "rule_state"
    )
    state = _start_state(params, opt_state, key, rule_state)
    return _train(config, state, options.data)


def _data_key(key, batch_size):
    """``train``'s data-order key, typed: required with ``batch_size``."""
    if batch_size is not None and key is None:
        raise ValueError("key is required with batch_size: it draws the data order.")
    if key is None:
        return jax.random.key(0)  # unused by the data order
    check_key(key)
    return typed_keys(key)


#: Seconds each chunk of :func:`advance_in_chunks` aims at: the per-call cost
#: (under a millisecond) stays under 1% and a progress display stays live.
CHUNK_SECONDS = 0.5


def advance_in_chunks(
    trainer: Trainer,
    state: TrainState,
    *,
    on_chunk=None,
    stop_every: int | None = None,
    chunk_seconds: float | None = None,
) -> TrainState:
    """Advances ``state`` to the runs' last step in chunks of about
    ``chunk_seconds`` (default ``CHUNK_SECONDS``), calling
    ``on_chunk(state, last_losses)`` after each.

    The first chunk is one log block; each next one is sized from the measured
    time per block, at most 8× the last, and ends at the next multiple of
    ``stop_every`` steps if given (where a caller checkpoints). Chunks are
    queued one ahead: while chunk k runs, the host reads chunk k-1's last logged
    losses (``trainer.last_losses``, NaN for diverged runs) and hands them and
    its state to ``on_chunk``. Any split gives the same bits as one ``advance``
    over every step (see :class:`Trainer`).
    """
    chunk_seconds = CHUNK_SECONDS if chunk_seconds is None else chunk_seconds
    every, steps, stretch = trainer.log_every, trainer.steps, trainer.check_every
    blocks = 1  # per chunk
    pending = None  # (state, its last logged losses), queued
    last_read = None  # (time, step) when the previous chunk was read

    def finish(state, losses):
        nonlocal blocks, last_read
        losses = np.asarray(losses)  # waits for this chunk only
        now = time.perf_counter()
        if last_read is not None:  # the pipeline is full: time per block
            per_block = (now - last_read[0]) / max(
                1, (state.step - last_read[1]) // every
            )
            target = max(1, round(chunk_seconds / max(per_block, 1e-9)))
            # Across processes every one takes the same chunks (their gathers
            # are collectives): the longest any process chose.
            blocks = agree_max(trainer, min(target, 8 * blocks))
        last_read = (now, state.step)
        if on_chunk is not None:
            on_chunk(state, losses)

    while state.step < steps:
        k = min(blocks * every, steps - state.step)
        if k > stretch:
            k -= k % stretch  # whole stretches of checks (the last call: the rest)
        if stop_every is not None:
            k = min(k, stop_every - state.step % stop_every)
        state = trainer.advance(state, k)  # queued, not waited for
        losses = trainer.last_losses(state)  # queued behind it
        if pending is not None:
            finish(*pending)
        pending = (state, losses)
    if pending is not None:
        finish(*pending)
    return state


def train_seeds(
    net: MLP,
    keys,
    x,
    y,
    optimizer: optax.GradientTransformation,
    steps: int,
    *,
    progress: bool | Progress = False,
    **options: Unpack[SweepOptions],
) -> TrainResult:
    """Trains one network per key, all in one compiled program.

    Each key is split into an initialization key and a data-order key, so seed i
    of a batch gives the same result as ``keys[i:i+1]`` alone with the same
    ``log_every`` (the default depends on the number of runs). With ``hparams``
    every seed is trained at every grid point (the same keys at each point).
    :class:`Trainer` runs the same training in chunks of steps.

    Args:
      net, x, y, optimizer, steps, grad, rule, batch_size, eval_data,
        eval_every, alignment_every, diagnostics_every, sharpness,
        sharpness_iters, log_every: as for :func:`train`, but by
        default a block also holds at least ``MIN_BLOCK_FLOPS`` (1024) of
        matmul FLOPs a run (``MLP.flops``): XOR 2-2-1's 112 FLOPs a step make
        blocks of 10 steps (docs/design.md, "The default log_every").
        The rule's state is drawn per run from ``fold_in(key, ...)``, which
        leaves each key's init and data-order halves as they are.
      keys: (n_seeds,) PRNG keys, e.g. ``jax.random.split(jax.random.key(0), n)``.
      scheme: initialization scheme (default: the activation's).
      params: pre-stacked initial params, every leaf with a leading (n_seeds,)
        axis, instead of drawing them from the keys.
      hparams: optional grid of hyperparameters, ``{name: (n_hparams,)
        values}``, held by the optimizer's state (``optax.inject_hyperparams``)
        or the rule's (``Rule.hyperparams``: Kolen-Pollack's ``learning_rate``
        and ``decay``, DP-SGD's ``clip_norm``, ``noise_multiplier`` and, with
        Poisson sampling, ``sampling_rate``). ``"optimizer.NAME"`` and
        ``"rule.NAME"`` say which; a bare name that could mean either (the
        rule's ``learning_rate``) is refused. Every value is checked as the
        constructor checks it (see ``jaxprop._engine.grid``).
      strategy: how the runs share the device. ``"vmap"``: all at once;
        ``"sequential"``: one after another (``lax.map``); ``"chunked"``: vmapped
        chunks of ``chunk_size`` one after another, which bounds memory;
        ``"auto"``: by the devices' platform (``jaxprop._core.platforms``). On a
        CPU, sequential for networks whose step alone fills the machine
        (≥ AUTO_SEQUENTIAL_FLOPS per step), else vmapped chunks sized so that a
        step's working set stays in cache (AUTO_CACHE_BYTES per device); on a
        GPU or TPU, one vmap over every run when they fit in half the free
        device memory (``Device.memory_stats()``), else chunks sized to fit.
      chunk_size: runs per chunk (implies ``"chunked"``).
      dtype: parameter dtype when drawn from keys (JAX's default float if None).
      devices: devices to split the runs across (default: every device,
        ``jax.devices()``, of every process when JAX runs as several processes
        with ``jax.distributed``; else ``jax.local_devices()``). On a CPU, XLA
        runs this loop on one core; to use them all, call
        :func:`jaxprop.use_all_cores` first thing (before JAX starts), which
        makes each core a device. Across processes, every
        process makes the same call (the same keys, data and options) and
        computes the runs of its own devices; the result (and a
        :class:`Trainer`'s ``runs``, ``log``, ``portable``, ``last_losses``)
        is gathered whole on every process, and ``Trainer.save`` is written by
        process 0.
      progress: True for a progress bar (``tqdm.auto``: on a terminal or in
        Jupyter; plain lines every 10 s elsewhere), or a :class:`Progress` to
        choose its mode and stream. The steps then run in chunks of about half
        a second (:class:`Trainer`), with the same result bit for bit.

    Returns:
      A :class:`TrainResult` whose leaves have a leading (n_seeds,) axis, or
      (n_hparams, n_seeds) with ``hparams``.
    """
    if not isinstance(progress, bool | Progress):
        raise TypeError(
            f"progress must be True, False or a jp.Progress; got "
            f"{type(progress).__name__}."
        )
    given = (net, keys, x, y, optimizer, steps, options, "train_seeds")
    trainer = Trainer._of(sweep_options(*given))
    if progress is False:
        return trainer.result(trainer.advance(trainer.init(), steps))
    if progress is True:
        progress = Progress(trainer.steps, int(np.prod(trainer.shape)))
    elif progress.total != trainer.steps:
        raise ValueError(
            f"progress counts {progress.total} steps; the runs take {trainer.steps}."
        )
    with progress:
        state = advance_in_chunks(
            trainer,
            trainer.init(),
            on_chunk=lambda state, losses: progress.update_losses(state.step, losses),
        )
        return trainer.result(state)
