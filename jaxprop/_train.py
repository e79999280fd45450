"""Training loops compiled once: one network, or many across seeds and hyperparameters.

A training run is one jit-compiled ``lax.fori_loop`` over blocks of ``log_every``
steps, each block a ``lax.scan`` over its steps followed by the divergence check
and the log entry (and an evaluation when one is due); many runs are the
same function mapped over a leading axis of keys (and hyperparameters) with
``jax.vmap``, ``lax.map`` or chunks of both. The step counter is not batched, so
the ``lax.cond`` that reshuffles minibatches at each epoch and the one that
evaluates on held-out data stay real branches under ``vmap`` instead of turning
into selects that run both sides at every step.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _rules as rules
from ._data import check_dataset
from ._inputs import check_x, check_y
from ._io import load, save
from ._metrics import accuracy_from_output
from ._mlp import MLP, runs_last_pays
from ._params import DEFAULT_SCHEME, Params, check_float_dtype, check_key, check_scheme
from ._progress import Progress
from ._rules import Alignment, Rule, alignment, check_rule, over_runs

Array = jax.Array

GRADS = ("manual", "autodiff")
STRATEGIES = ("auto", "vmap", "sequential", "chunked")

#: Per-run, per-step FLOPs from which ``auto`` runs seeds one after another (one
#: per device): a network this big keeps a core busy alone, and batching runs
#: only adds memory traffic. Measured crossover on a 2-core CPU: vmap wins at
#: 2e6 FLOPs (32-32-32-10, batch 128), one at a time wins at 1.7e7 (width 128).
AUTO_SEQUENTIAL_FLOPS = 1e7
#: Below that, ``auto`` vmaps chunks whose working set is about this many bytes
#: per device, so that a step's arrays stay in cache: for XOR 2-2-1 chunks of a
#: few hundred runs per device beat one vmap over 131072 runs by 1.8x.
AUTO_CACHE_BYTES = 256 * 2**10
#: ... and never fewer runs than this per device, to keep the matmuls batched.
AUTO_MIN_CHUNK = 4
#: ... or, for a network small enough to be computed with the runs last
#: (``jaxprop._mlp.runs_last_pays``), than this: XOR on a 2-core CPU ran at
#: 7.1e7 seed-steps/s with 480 runs per device and 9.5e7-1.07e8 with 512 to
#: 896 (float32); float64 gained 12% from 432 to 768.
AUTO_RUNS_LAST_CHUNK = 768


class TrainResult(NamedTuple):
    """What a training run returns; ``train_seeds`` adds leading axes to every leaf.

    Attributes:
      params: final parameters (frozen at the last finite values if diverged).
      opt_state: final optimizer state.
      losses: (steps // log_every,) training loss, the mean over each block of
        ``log_every`` steps of the loss before that step's update; NaN from the
        block in which the run diverged.
      diverged: () bool, whether a loss or the parameters became NaN or inf. A
        diverged run is frozen at its state from the start of that block
        (divergence is checked every ``log_every`` steps).
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


# ------------------------------------------------------------------- checks
def _check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation such as "
            f"optax.sgd(0.1); got {type(optimizer).__name__}."
        )


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer; got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value}.")
    return int(value)


def _resolve_rule(grad, rule) -> Rule:
    """The rule of ``grad`` (an alias) or ``rule``; backprop by default."""
    if rule is not None:
        if grad is not None:
            raise ValueError(
                "give grad or rule, not both (grad='manual' is "
                "rule=jp.rules.backprop(), grad='autodiff' is jp.rules.autodiff())."
            )
        return check_rule(rule)
    if grad is None:
        return rules.backprop()
    if grad not in GRADS:
        raise ValueError(f"Unknown grad {grad!r}; expected one of {list(GRADS)}.")
    return rules.backprop() if grad == "manual" else rules.autodiff()


def _check_config(
    net,
    optimizer,
    steps,
    grad,
    batch_size,
    n_examples,
    log_every,
    eval_every,
    has_eval,
    rule=None,
    alignment_every=None,
) -> _Config:
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a jp.MLP; got {type(net).__name__}.")
    _check_optimizer(optimizer)
    steps = _check_positive_int(steps, "steps")
    rule = _resolve_rule(grad, rule)
    if batch_size is not None:
        batch_size = _check_positive_int(batch_size, "batch_size")
        if batch_size > n_examples:
            raise ValueError(
                f"batch_size ({batch_size}) must not exceed the number "
                f"of training examples ({n_examples})."
            )
    log_every = _check_positive_int(log_every, "log_every")
    if steps % log_every:
        raise ValueError(f"log_every ({log_every}) must divide steps ({steps}).")
    if has_eval:
        eval_every = (
            steps
            if eval_every is None
            else _check_positive_int(eval_every, "eval_every")
        )
        if eval_every % log_every:
            raise ValueError(
                f"eval_every ({eval_every}) must be a multiple of "
                f"log_every ({log_every})."
            )
    elif eval_every is not None:
        raise ValueError("eval_every needs eval_data=(x_eval, y_eval).")
    if alignment_every is not None:
        alignment_every = _check_positive_int(alignment_every, "alignment_every")
        if alignment_every % log_every:
            raise ValueError(
                f"alignment_every ({alignment_every}) must be a multiple of "
                f"log_every ({log_every})."
            )
    return _Config(
        net, optimizer, steps, rule, batch_size, log_every, eval_every, alignment_every
    )


def _check_data(net: MLP, params_dtype, x, y, name: str = "") -> tuple[Array, Array]:
    """x, y checked by the net (shapes, dtypes, labels), of equal length, finite."""
    n_x, n_y = np.shape(x)[:1], np.shape(y)[:1]
    if np.ndim(x) != 2:
        raise ValueError(
            f"x{name} must be a batch of shape (n, {net.n_in}); got "
            f"shape {np.shape(x)}."
        )
    if n_x != n_y:
        raise ValueError(
            f"x{name} and y{name} must have the same length; got "
            f"{n_x[0]} and {n_y[0] if n_y else 'a scalar'}."
        )
    if not isinstance(x, jax.core.Tracer) and not isinstance(y, jax.core.Tracer):
        # Once per call, outside the compiled loop: a NaN in the data would
        # otherwise show up only as every run "diverging".
        check_dataset(x, y, name=f"x{name}, y{name}")
    x, _ = check_x(x, net.n_in, params_dtype)
    return x, check_y(y, net.cost, net.n_out, x.shape[0], False, params_dtype)


def _check_run(
    net,
    dtype,
    x,
    y,
    eval_data,
    optimizer,
    steps,
    grad,
    batch_size,
    log_every,
    eval_every,
    rule=None,
    alignment_every=None,
):
    """The checks shared by ``train`` and ``train_seeds``: (config, data arrays)."""
    x, y = _check_data(net, dtype, x, y)
    x_eval, y_eval = _eval_arrays(net, dtype, eval_data)
    config = _check_config(
        net,
        optimizer,
        steps,
        grad,
        batch_size,
        x.shape[0],
        log_every,
        eval_every,
        eval_data is not None,
        rule,
        alignment_every,
    )
    return config, (x, y, x_eval, y_eval)


# ----------------------------------------------------------------- the loop
class RunState(NamedTuple):
    """One run's state between blocks of steps (leading run axes in a ``Trainer``).

    Attributes:
      params: current parameters.
      opt_state: current optimizer state.
      key: the data-order PRNG key (the same for the whole run).
      perm: (n,) int32, the current epoch's permutation of the examples.
      diverged: () bool; diverged_at: () int32 (see :class:`TrainResult`).
      rule_state: the rule's state (``()`` for backprop: no leaves).
    """

    params: Params
    opt_state: Any
    key: Any
    perm: Array
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


def _start_state(params: Params, opt_state, key, n: int, rule_state=()) -> RunState:
    return RunState(
        params,
        opt_state,
        key,
        jnp.arange(n),
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
) -> tuple[RunState, TrainLog]:
    """``n_blocks`` blocks of ``log_every`` steps of one run from step ``start``.

    Each block's entry is written into ``log`` (the whole run's, NaN-filled at
    first) at the block's own row. ``n_blocks`` may be traced: the loop is one
    compiled block body whatever its trip count, so a run split into calls of
    any lengths takes bit for bit the same steps as one call over all of them
    (everything depends on the global step only: the epoch's permutation, the
    evaluations due). Traced; callers jit and map it.
    """
    net, optimizer, rule = config.net, config.optimizer, config.rule
    value_and_grads = over_runs(net, rule)
    n = x.shape[0]
    batch = config.batch_size
    n_batches = n // batch if batch else 1  # per epoch; the remainder is dropped
    key = state.key

    def step(carry, t):
        params, opt_state, perm, rule_state = carry
        if batch is None:
            xb, yb = x, y
        else:
            i = t % n_batches
            perm = jax.lax.cond(
                i == 0,
                lambda: jax.random.permutation(
                    jax.random.fold_in(key, t // n_batches), n
                ),
                lambda: perm,
            )
            idx = jax.lax.dynamic_slice_in_dim(perm, i * batch, batch)
            xb, yb = x[idx], y[idx]
        loss, grads, rule_state = value_and_grads(params, rule_state, xb, yb)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, perm, rule_state), loss

    has_eval = x_eval is not None
    if has_eval:
        eval_at = _eval_steps(config)
    if config.alignment_every is not None:
        align_at = _alignment_steps(config)
        x_align, y_align = x[:ALIGNMENT_EXAMPLES], y[:ALIGNMENT_EXAMPLES]

    def evaluate(params):
        y_hat, cache = net.forward_with_cache(params, x_eval)
        acc = accuracy_from_output(net, y_hat, y_eval).astype(x.dtype)
        return net.loss_from_cache(cache, y_eval), acc

    def block(state, start):
        """log_every steps; a divergence check; an evaluation if one is due."""
        (params, opt_state, perm, rule_state), losses = jax.lax.scan(
            step,
            (state.params, state.opt_state, state.perm, state.rule_state),
            start + jnp.arange(config.log_every),
        )
        # Checked once a block, not every step: the check and the rollback cost
        # as much as a small network's step. A diverged run is rolled back to the
        # block's start and stays frozen there; other runs never see it.
        finite = jnp.isfinite(losses)
        ok = jnp.all(finite) & _all_finite(params)
        first_bad = start + jnp.where(
            jnp.all(finite), config.log_every - 1, jnp.argmin(finite)
        )
        diverged = state.diverged | ~ok
        diverged_at = jnp.where(
            state.diverged | ok, state.diverged_at, first_bad.astype(jnp.int32)
        )
        params, opt_state, rule_state = jax.tree.map(
            lambda old, new: jnp.where(diverged, old, new),
            (state.params, state.opt_state, state.rule_state),
            (params, opt_state, rule_state),
        )
        logged = jnp.where(diverged, jnp.nan, jnp.mean(losses))
        state = RunState(
            params, opt_state, key, perm, diverged, diverged_at, rule_state
        )
        end = start + config.log_every
        entry = TrainLog(logged)
        if has_eval:
            nan = jnp.full((), jnp.nan, x.dtype)
            ev = jax.lax.cond(
                _due(eval_at, end), lambda: evaluate(params), lambda: (nan, nan)
            )
            entry = entry._replace(eval_loss=ev[0], eval_accuracy=ev[1])
        if config.alignment_every is not None:
            nan = jnp.full((net.n_layers,), jnp.nan, x.dtype)
            angles = jax.lax.cond(
                _due(align_at, end) & ~diverged,
                lambda: alignment(net, rule, params, rule_state, x_align, y_align),
                lambda: Alignment(nan, nan, nan),
            )
            entry = entry._replace(alignment=angles)
        return state, entry

    first = start // config.log_every

    def body(i, carry):
        state, log = carry
        state, entry = block(state, start + i * config.log_every)
        log = jax.tree.map(  # the blocks are the last axis of every log array
            lambda buf, e: jax.lax.dynamic_update_slice_in_dim(
                buf, e[..., None], first + i, axis=-1
            ),
            log,
            entry,
        )
        return state, log

    return jax.lax.fori_loop(0, n_blocks, body, (state, log))


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
    state = _start_state(params, opt_state, key, x.shape[0], rule_state)
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


# --------------------------------------------------------------- public API
def train(
    net: MLP,
    params: Params,
    x,
    y,
    optimizer: optax.GradientTransformation,
    steps: int,
    *,
    grad: str | None = None,
    rule: Rule | None = None,
    batch_size: int | None = None,
    key=None,
    opt_state=None,
    rule_state=None,
    eval_data: tuple | None = None,
    eval_every: int | None = None,
    alignment_every: int | None = None,
    log_every: int = 1,
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
        runs-last batching rule ``value_and_backprop_over_runs``, equal to
        rounding), or ``"autodiff"`` (``jax.value_and_grad(net.loss)``): aliases
        of ``rule=jp.rules.backprop()`` and ``jp.rules.autodiff()`` (the
        default is backprop). Give ``grad`` or ``rule``, not both.
      rule: a credit-assignment rule (``jp.rules``).
      batch_size: None for full-batch steps; otherwise minibatches of this size
        from a fresh permutation of the data each epoch (drawn from ``key``;
        the last incomplete batch of an epoch is dropped).
      key: PRNG key for the data order; required with ``batch_size``. The
        rule's state is drawn from ``fold_in(key, ...)`` (key 0 if None).
      opt_state: initial optimizer state; ``optimizer.init(params)`` if None.
      rule_state: initial rule state; drawn by ``rule.init`` if None.
      eval_data: optional held-out ``(x_eval, y_eval)``.
      eval_every: evaluate every this many steps (and after the last); default:
        after the last step only. A multiple of ``log_every``.
      alignment_every: measure ``jp.alignment`` of the rule with backprop on
        the training data every this many steps (and after the last); a
        multiple of ``log_every``. None: never.
      log_every: record the mean training loss of each block of this many steps
        (it must divide ``steps``); 1 records every step.

    Returns:
      A :class:`TrainResult`.
    """
    dtype = net._check_params(params)
    config, (x, y, x_eval, y_eval) = _check_run(
        net,
        dtype,
        x,
        y,
        eval_data,
        optimizer,
        steps,
        grad,
        batch_size,
        log_every,
        eval_every,
        rule,
        alignment_every,
    )
    if batch_size is not None:
        if key is None:
            raise ValueError(
                "key is required with batch_size: it draws the data order."
            )
        check_key(key)
    elif key is None:
        key = jax.random.key(0)  # unused by the data order
    else:
        check_key(key)
    if opt_state is None:
        opt_state = config.optimizer.init(params)
    rule_key = jax.random.fold_in(key, _RULE_KEY)
    if rule_state is None:
        rule_state = config.rule.init(rule_key, net, params)
    else:
        expected = jax.eval_shape(lambda k: config.rule.init(k, net, params), rule_key)
        shapes = lambda t: jax.tree.map(lambda l: (l.shape, l.dtype), t)  # noqa: E731
        try:
            fits = shapes(expected) == shapes(rule_state)
        except (AttributeError, TypeError, ValueError):
            fits = False
        if not fits:
            raise ValueError(
                f"rule_state does not fit the rule: expected the shapes and dtypes "
                f"{shapes(expected)}; got {jax.tree.map(np.shape, rule_state)}."
            )
    return _train(config, params, opt_state, x, y, key, x_eval, y_eval, rule_state)


def _eval_arrays(net, dtype, eval_data):
    if eval_data is None:
        return None, None
    if not (isinstance(eval_data, (tuple, list)) and len(eval_data) == 2):
        raise TypeError("eval_data must be a pair (x_eval, y_eval).")
    return _check_data(net, dtype, *eval_data, name="_eval")


def _check_keys(keys) -> int:
    dtype = getattr(keys, "dtype", None)
    shape = getattr(keys, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if len(shape) != 1:
            raise TypeError(
                f"keys must be a 1-D array of PRNG keys, e.g. "
                f"jax.random.split(jax.random.key(0), n); got shape {shape}."
            )
        return shape[0]
    if dtype == jnp.uint32 and shape is not None and len(shape) == 2 and shape[1] == 2:
        return shape[0]
    raise TypeError(
        "keys must be an array of PRNG keys, e.g. "
        "jax.random.split(jax.random.key(0), n); got "
        f"{type(keys).__name__}"
        + (f" of dtype {dtype} and shape {shape}." if dtype else ".")
    )


def _check_hparams(hparams, optimizer, probe_state) -> tuple[dict[str, Array], int]:
    if hparams is None:
        return {}, 0
    if not isinstance(hparams, Mapping) or not hparams:
        raise TypeError(
            "hparams must be a non-empty dict of 1-D arrays, e.g. "
            "{'learning_rate': jnp.array([1e-3, 1e-2])}."
        )
    sizes = set()
    out = {}
    for name, values in hparams.items():
        if optax.tree_utils.tree_get(probe_state, name, default=None) is None:
            raise ValueError(
                f"hparams[{name!r}]: the optimizer has no such "
                f"hyperparameter in its state; build it with "
                f"optax.inject_hyperparams, e.g. "
                f"optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)."
            )
        values = jnp.asarray(values)
        if values.ndim != 1 or values.shape[0] == 0:
            raise ValueError(
                f"hparams[{name!r}] must be a non-empty 1-D array (one "
                f"value per grid point); got shape {values.shape}."
            )
        sizes.add(values.shape[0])
        out[name] = values
    if len(sizes) > 1:
        raise ValueError(
            f"hparams arrays must all have the same length (one entry "
            f"per grid point); got lengths "
            f"{ {k: v.shape[0] for k, v in out.items()} }."
        )
    return out, sizes.pop()


def _choose_strategy(
    config: _Config,
    n_runs: int,
    strategy: str,
    chunk_size: int | None,
    n_examples: int,
    itemsize: int,
    n_devices: int,
) -> tuple[str, int | None]:
    """(strategy, chunk_size) for ``n_runs`` runs; see ``train_seeds``.

    A chunk is a multiple of ``n_devices`` so that every device gets a share;
    with several devices, ``sequential`` means one run per device at a time.
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy {strategy!r}; expected one of {list(STRATEGIES)}."
        )
    if chunk_size is not None:
        chunk_size = _check_positive_int(chunk_size, "chunk_size")
        if strategy not in ("chunked", "auto"):
            raise ValueError(
                f"chunk_size goes with strategy='chunked' (or 'auto'); "
                f"got strategy={strategy!r}."
            )
        strategy = "chunked"
    elif strategy == "chunked":
        raise ValueError("strategy='chunked' needs chunk_size.")
    elif strategy == "auto":
        sizes = config.net.sizes
        batch = config.batch_size or n_examples
        n_params = sum((i + 1) * o for i, o in itertools.pairwise(sizes))
        if config.net.flops(batch) >= AUTO_SEQUENTIAL_FLOPS:
            strategy = "sequential"
        else:
            # Working set of one run's step: params, gradients, optimizer
            # moments and updates, and the activations of both passes.
            per_run = itemsize * (8 * n_params + 4 * batch * sum(sizes))
            per_device = max(AUTO_MIN_CHUNK, AUTO_CACHE_BYTES // per_run)
            if config.rule.runs_last and runs_last_pays(config.net, batch):
                per_device = max(per_device, AUTO_RUNS_LAST_CHUNK)
            # As many chunks as that size needs, balanced so that padding the
            # runs to whole chunks adds less than one run per device and chunk.
            n_chunks = -(-n_runs // (per_device * n_devices))
            strategy, chunk_size = "chunked", -(-n_runs // n_chunks)
    if strategy == "sequential":
        if n_devices == 1:
            return "sequential", None
        strategy, chunk_size = "chunked", n_devices
    if strategy == "vmap":
        chunk_size = n_runs
    chunk_size = min(chunk_size, n_runs)
    chunk_size = -(-chunk_size // n_devices) * n_devices
    return ("vmap" if chunk_size >= n_runs else "chunked"), chunk_size


class TrainState(NamedTuple):
    """The state of a :class:`Trainer`'s runs after ``step`` steps (a pytree).

    ``runs`` and ``log`` are kept in the trainer's working layout (runs in
    device-split chunks, padded), so that nothing moves between calls; read
    them with ``trainer.runs(state)`` and ``trainer.log(state)``, which give
    leading (n_seeds,) or (n_hparams, n_seeds) axes. ``trainer.save`` /
    ``trainer.load`` store a state with those axes (``trainer.portable``), so a
    checkpoint resumes on any number of devices.

    Attributes:
      step: steps taken, a Python int (kept on the host: no device round trip).
      runs: every run's :class:`RunState`.
      log: every run's :class:`TrainLog` over the whole run (steps // log_every
        blocks), NaN in the blocks not yet taken.
    """

    step: int
    runs: RunState
    log: TrainLog


class _Plan(NamedTuple):
    """How a Trainer lays out its runs (static).

    Between calls the runs are kept in their working layout, so that nothing
    moves between devices from one chunk of steps to the next: leaves of shape
    (n_chunks, chunk_size, ...) with the chunk axis split across the mesh's
    devices (``vmap`` is one chunk), or (n_runs, ...) for ``sequential``. The
    runs are padded to whole chunks by repeating run 0.
    """

    config: _Config
    scheme: str
    dtype: str
    strategy: str
    chunk_size: int | None
    mesh: jax.sharding.Mesh | None
    n_seeds: int
    n_hparams: int  # 0 without hparams

    @property
    def n_runs(self) -> int:
        return self.n_seeds * max(self.n_hparams, 1)

    @property
    def lead(self) -> tuple[int, ...]:
        """The leading run axes users see."""
        return (self.n_hparams, self.n_seeds) if self.n_hparams else (self.n_seeds,)

    def _constrain(self, tree):
        if self.mesh is None or self.strategy == "sequential":
            return tree
        sharding = jax.sharding.NamedSharding(
            self.mesh, jax.sharding.PartitionSpec(None, "runs")
        )
        return jax.lax.with_sharding_constraint(tree, sharding)

    def to_working(self, tree):
        """Leading run axes -> the working layout (traced)."""
        k = len(self.lead)
        tree = jax.tree.map(lambda l: l.reshape((self.n_runs,) + l.shape[k:]), tree)
        if self.strategy == "sequential":
            return tree
        n_padded = -(-self.n_runs // self.chunk_size) * self.chunk_size
        if n_padded != self.n_runs:
            index = np.concatenate(
                [np.arange(self.n_runs), np.zeros(n_padded - self.n_runs, int)]
            )
            tree = jax.tree.map(lambda l: l[index], tree)
        tree = jax.tree.map(
            lambda l: l.reshape((-1, self.chunk_size) + l.shape[1:]), tree
        )
        return self._constrain(tree)

    def to_lead(self, tree):
        """The working layout -> leading run axes, padding dropped (traced)."""
        k = 1 if self.strategy == "sequential" else 2
        return jax.tree.map(
            lambda l: l.reshape((-1,) + l.shape[k:])[: self.n_runs].reshape(
                self.lead + l.shape[k:]
            ),
            tree,
        )

    def map(self, fn, tree):
        """``fn`` of one run over every run of a working-layout tree (traced).

        ``vmap``/``chunked``: one chunk after another (``lax.map``), the runs of
        a chunk batched (``vmap``) and split across the devices; ``sequential``:
        one run after another.
        """
        if self.strategy == "sequential":
            return jax.lax.map(fn, tree)
        return self._constrain(jax.lax.map(jax.vmap(fn), tree))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _init_runs(
    plan: _Plan, n_examples: int, has_eval: bool, keys, params, hparams
) -> tuple[RunState, TrainLog]:
    """Every run's initial state and empty log, in the working layout.

    keys, params and hparams have the runs' leading axes.
    """
    net, optimizer = plan.config.net, plan.config.optimizer

    def one(args):
        key, params, hp = args
        key_init, key_data = jax.random.split(key)
        if params is None:
            params = net.init(key_init, scheme=plan.scheme, dtype=plan.dtype)
        opt_state = optimizer.init(params)
        if hp:
            opt_state = optax.tree_utils.tree_set(opt_state, **hp)
        rule_key = jax.random.fold_in(key, _RULE_KEY)
        rule_state = plan.config.rule.init(rule_key, net, params)
        state = _start_state(params, opt_state, key_data, n_examples, rule_state)
        return state, _empty_log(plan.config, has_eval, plan.dtype)

    return plan.map(one, plan.to_working((keys, params, hparams)))


@functools.partial(jax.jit, static_argnums=0)
def _advance_runs(
    plan: _Plan, runs: RunState, log: TrainLog, start, n_blocks, x, y, x_eval, y_eval
) -> tuple[RunState, TrainLog]:
    """``n_blocks`` (traced) blocks of every run from step ``start``.

    ``runs`` and ``log`` are in the working layout.
    """

    def one(args):
        state, log = args
        return _blocks(plan.config, state, log, start, n_blocks, x, y, x_eval, y_eval)

    return plan.map(one, (runs, log))


@functools.partial(jax.jit, static_argnums=0)
def _to_lead(plan: _Plan, tree):
    return plan.to_lead(tree)


@functools.partial(jax.jit, static_argnums=0)
def _to_working(plan: _Plan, tree):
    return plan.to_working(tree)


@functools.partial(jax.jit, static_argnums=0)
def _last_losses(plan: _Plan, losses: Array, block) -> Array:
    return plan.to_lead(losses[..., block])


@functools.partial(jax.jit, static_argnums=0)
def _finish(plan: _Plan, runs: RunState, log: TrainLog) -> TrainResult:
    return _result(plan.config, *plan.to_lead((runs, log)))


class Trainer:
    """Many training runs of one network, advanced in chunks of steps.

    ``train_seeds`` is ``init``, one ``advance`` over all steps and ``result``.
    Splitting the steps over several ``advance`` calls of any lengths gives the
    same result bit for bit and compiles once (the chunk length is a loop bound,
    not a shape); between calls the caller can watch progress, save checkpoints
    (``trainer.save(path, state)``) and resume from them
    (``trainer.load(path)``). Calls are dispatched asynchronously: the next
    chunk can be queued before the previous one's log is read.

    Args: as for :func:`train_seeds`.

    Example::

        trainer = jp.Trainer(net, keys, x, y, optax.adam(1e-2), 10_000, log_every=10)
        state = trainer.init()
        while state.step < trainer.steps:
            state = trainer.advance(state, 1_000)
            print(state.step, np.nanmedian(trainer.last_losses(state)))
        result = trainer.result(state)
    """

    def __init__(
        self,
        net: MLP,
        keys,
        x,
        y,
        optimizer: optax.GradientTransformation,
        steps: int,
        *,
        scheme: str | None = None,
        grad: str | None = None,
        rule: Rule | None = None,
        batch_size: int | None = None,
        params: Params | None = None,
        hparams: Mapping[str, Any] | None = None,
        strategy: str = "auto",
        chunk_size: int | None = None,
        eval_data: tuple | None = None,
        eval_every: int | None = None,
        alignment_every: int | None = None,
        log_every: int = 1,
        dtype=None,
        devices=None,
    ):
        n_seeds = _check_keys(keys)
        if not isinstance(net, MLP):
            raise TypeError(f"net must be a jp.MLP; got {type(net).__name__}.")
        _check_optimizer(optimizer)
        scheme = check_scheme(
            DEFAULT_SCHEME[net.activation] if scheme is None else scheme
        )
        if params is not None:
            leading = {np.shape(l)[:1] for l in jax.tree.leaves(params)}
            if leading != {(n_seeds,)}:
                raise ValueError(
                    f"params must be stacked with a leading axis of "
                    f"n_seeds={n_seeds} on every leaf; got leading shapes "
                    f"{sorted(leading)}."
                )
            probe = jax.tree.map(lambda l: l[0], params)
            dtype = net._check_params(probe)
        else:
            dtype = check_float_dtype(dtype)
            probe = net.init(jax.random.key(0), scheme=scheme, dtype=dtype)
        config, (x, y, x_eval, y_eval) = _check_run(
            net,
            dtype,
            x,
            y,
            eval_data,
            optimizer,
            steps,
            grad,
            batch_size,
            log_every,
            eval_every,
            rule,
            alignment_every,
        )
        hparams, n_hparams = _check_hparams(hparams, optimizer, optimizer.init(probe))
        if n_hparams:
            # Every seed at every grid point: runs on (n_hparams, n_seeds) axes.
            keys = jnp.broadcast_to(keys, (n_hparams, *keys.shape))
            if params is not None:
                params = jax.tree.map(
                    lambda l: jnp.broadcast_to(l, (n_hparams, *l.shape)), params
                )
            hparams = {
                k: jnp.broadcast_to(v[:, None], (n_hparams, n_seeds))
                for k, v in hparams.items()
            }
        devices = jax.local_devices() if devices is None else list(devices)
        if not devices:
            raise ValueError("devices must name at least one device.")
        n_runs = n_seeds * max(n_hparams, 1)
        # Fewer runs than devices: no device idles on padding (one seed runs as
        # one program on one device, not a padded program split across two).
        devices = devices[:n_runs]
        strategy, chunk_size = _choose_strategy(
            config,
            n_runs,
            strategy,
            chunk_size,
            x.shape[0],
            jnp.dtype(dtype).itemsize,
            len(devices),
        )
        mesh = None
        if strategy != "sequential" and len(devices) > 1:
            mesh = jax.sharding.Mesh(np.array(devices), ("runs",))
        self._plan = _Plan(
            config,
            scheme,
            jnp.dtype(dtype).name,
            strategy,
            chunk_size,
            mesh,
            n_seeds,
            n_hparams,
        )
        # Everything goes to the devices once, not at every call; committed
        # there, so that init's outputs and advance's have the same placement
        # (and advance compiles once).
        where = (
            devices[0]
            if mesh is None
            else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        )
        self._where = where
        self._init_args = jax.device_put((keys, params, hparams), where)
        self._data = jax.device_put((x, y, x_eval, y_eval), where)

    @property
    def steps(self) -> int:
        """Steps of a whole run."""
        return self._plan.config.steps

    @property
    def log_every(self) -> int:
        return self._plan.config.log_every

    @property
    def shape(self) -> tuple[int, ...]:
        """The leading run axes: (n_seeds,) or (n_hparams, n_seeds)."""
        return self._plan.lead

    @property
    def strategy(self) -> tuple[str, int | None]:
        """The strategy chosen and its runs per chunk (see ``train_seeds``)."""
        return self._plan.strategy, self._plan.chunk_size

    def init(self) -> TrainState:
        """Every run's state before its first step."""
        has_eval = self._data[2] is not None
        runs, log = _init_runs(
            self._plan, self._data[0].shape[0], has_eval, *self._init_args
        )
        return TrainState(0, runs, log)

    def advance(self, state: TrainState, steps: int) -> TrainState:
        """Takes ``steps`` more steps (a multiple of ``log_every``) of every run."""
        steps = _check_positive_int(steps, "steps")
        if not isinstance(state, TrainState):
            raise TypeError(
                f"state must be a jp.TrainState (from trainer.init()); got "
                f"{type(state).__name__}."
            )
        step = int(state.step)
        if steps % self.log_every:
            raise ValueError(
                f"steps ({steps}) must be a multiple of log_every ({self.log_every})."
            )
        if step + steps > self.steps:
            raise ValueError(
                f"steps ({steps}) would take the runs past their {self.steps} "
                f"steps (state.step is {step})."
            )
        runs, log = _advance_runs(
            self._plan,
            state.runs,
            state.log,
            np.int32(step),
            np.int32(steps // self.log_every),
            *self._data,
        )
        return TrainState(step + steps, runs, log)

    def result(self, state: TrainState) -> TrainResult:
        """The :class:`TrainResult` of finished runs."""
        if int(state.step) != self.steps:
            raise ValueError(
                f"state.step is {int(state.step)}; the runs are not finished "
                f"({self.steps} steps)."
            )
        return _finish(self._plan, state.runs, state.log)

    def runs(self, state: TrainState) -> RunState:
        """Every run's :class:`RunState`, with leading axes ``self.shape``."""
        return _to_lead(self._plan, state.runs)

    def log(self, state: TrainState) -> TrainLog:
        """The whole log, (*self.shape, steps // log_every), NaN ahead of ``step``."""
        return _to_lead(self._plan, state.log)

    def portable(self, state: TrainState) -> TrainState:
        """``state`` with leading run axes (``self.shape``) instead of the
        working layout: what to save, loadable whatever the device count."""
        return TrainState(state.step, *_to_lead(self._plan, (state.runs, state.log)))

    def restore(self, portable: TrainState) -> TrainState:
        """The working-layout state of a :meth:`portable` one (e.g. as loaded)."""
        runs_log = jax.device_put((portable.runs, portable.log), self._where)
        return TrainState(int(portable.step), *_to_working(self._plan, runs_log))

    def save(self, path, state: TrainState):
        """Writes ``state`` to ``path`` atomically, in the portable layout."""
        return save(path, self.portable(state))

    def load(self, path) -> TrainState:
        """A state written by :meth:`save` (checked against this trainer's runs)."""
        like = jax.eval_shape(lambda: self.portable(self.init()))
        return self.restore(load(path, like=like._replace(step=0)))

    def last_losses(self, state: TrainState) -> Array:
        """The latest logged training loss of every run: ``self.shape``.

        NaN for diverged runs (and before the first block).
        """
        block = max(int(state.step) // self.log_every - 1, 0)
        return _last_losses(self._plan, state.log.losses, np.int32(block))


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
    every, steps = trainer.log_every, trainer.steps
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
            blocks = min(target, 8 * blocks)
        last_read = (now, state.step)
        if on_chunk is not None:
            on_chunk(state, losses)

    while state.step < steps:
        k = min(blocks * every, steps - state.step)
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
    scheme: str | None = None,
    grad: str | None = None,
    rule: Rule | None = None,
    batch_size: int | None = None,
    params: Params | None = None,
    hparams: Mapping[str, Any] | None = None,
    strategy: str = "auto",
    chunk_size: int | None = None,
    eval_data: tuple | None = None,
    eval_every: int | None = None,
    alignment_every: int | None = None,
    log_every: int = 1,
    dtype=None,
    devices=None,
    progress: bool | Progress = False,
) -> TrainResult:
    """Trains one network per key, all in one compiled program.

    Each key is split into an initialization key and a data-order key, so seed i
    of a batch gives the same result as ``keys[i:i+1]`` alone. With ``hparams``
    every seed is trained at every grid point (the same keys at each point).
    :class:`Trainer` runs the same training in chunks of steps.

    Args:
      net, x, y, optimizer, steps, grad, rule, batch_size, eval_data,
        eval_every, alignment_every, log_every: as for :func:`train`. The rule's
        state is drawn per run from ``fold_in(key, ...)``, which leaves each
        key's init and data-order halves as they are.
      keys: (n_seeds,) PRNG keys, e.g. ``jax.random.split(jax.random.key(0), n)``.
      scheme: initialization scheme (default: the activation's).
      params: pre-stacked initial params, every leaf with a leading (n_seeds,)
        axis, instead of drawing them from the keys.
      hparams: optional grid of optimizer hyperparameters, ``{name: (n_hparams,)
        values}``; the optimizer must hold them in its state
        (``optax.inject_hyperparams``).
      strategy: how the runs share the device. ``"vmap"``: all at once;
        ``"sequential"``: one after another (``lax.map``); ``"chunked"``: vmapped
        chunks of ``chunk_size`` one after another, which bounds memory;
        ``"auto"``: sequential for networks whose step alone fills the machine
        (≥ AUTO_SEQUENTIAL_FLOPS per step), else vmapped chunks sized so that a
        step's working set stays in cache (AUTO_CACHE_BYTES per device).
      chunk_size: runs per chunk (implies ``"chunked"``).
      dtype: parameter dtype when drawn from keys (JAX's default float if None).
      devices: devices to split the runs across (default ``jax.local_devices()``).
        On a CPU, XLA runs this loop on one core; to use them all, start Python
        with ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` (set
        before importing jax), which makes each core a device.
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
    trainer = Trainer(
        net,
        keys,
        x,
        y,
        optimizer,
        steps,
        scheme=scheme,
        grad=grad,
        rule=rule,
        batch_size=batch_size,
        params=params,
        hparams=hparams,
        strategy=strategy,
        chunk_size=chunk_size,
        eval_data=eval_data,
        eval_every=eval_every,
        alignment_every=alignment_every,
        log_every=log_every,
        dtype=dtype,
        devices=devices,
    )
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
