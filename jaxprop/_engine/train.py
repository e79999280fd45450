"""Training, compiled once: ``train`` (one run), ``Trainer`` and ``train_seeds``
(many runs, across seeds and hyperparameters), and the checks of their inputs.

One run's loop is ``_loop.py``; how many runs share the devices (strategy,
working layout, the mapped init and advance) is ``_layout.py``; the rules that
give each step's gradient are ``_rules.py``.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._core.activations import default_scheme, describe
from .._core.params import (
    DenseParams,
    Params,
    check_float_dtype,
    check_key,
    check_scheme,
    typed_keys,
)
from .._data import Dataset, check_dataset
from .._inputs import check_x, check_y
from .._io import digest, load, save, saved_meta
from .._network import MLP, check_params
from .._validate import choice
from .._validate import positive_int as _check_positive_int
from ..rules import _rules as rules
from ..rules._rules import Rule, check_rule, check_rule_state
from .grid import check_hparams, legacy_names
from .layout import (
    _advance_runs,
    _agree_max,
    _choose_strategy,
    _finish,
    _init_runs,
    _init_runs_traced,
    _last_losses,
    _Plan,
    _put,
    _to_host,
    _to_lead,
    _to_working,
    spans_processes,
)
from .loop import (
    _RULE_KEY,
    RunState,
    TrainLog,
    TrainResult,
    _Config,
    _train,
    stretch_blocks,
)
from .progress import Progress

Array = jax.Array

GRADS = ("manual", "autodiff")


# ------------------------------------------------------------------- checks
def _check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation such as "
            f"optax.sgd(0.1); got {type(optimizer).__name__}."
        )


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
    choice(grad, "grad", GRADS)
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
    log_every = 1 if log_every is None else _check_positive_int(log_every, "log_every")
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


#: With ``log_every=None`` (the default) every step is recorded unless the
#: whole record, every run's rows per block (the loss, held-out loss and
#: accuracy, alignment angles), would pass this many bytes; then the smallest
#: divisor of the steps (and of eval_every, alignment_every) that fits. Each
#: pass over the record costs as much as many steps of a small network: XOR
#: 2-2-1 over 16384 seeds × 2000 steps records 131 MB a step at a time, and on
#: 2 CPU cores filling, carrying and returning it took 70-100 ms a pass of a
#: 0.7 s run (16 MB: 250 blocks of 8 steps).
LOG_BYTES = 16 * 2**20

#: With ``log_every=None``, a sweep's blocks (``train_seeds``, ``Trainer``; not
#: ``train``'s one run) also hold at least this many FLOPs of steps per run
#: (``MLP.flops`` of a step's batch): each block ends in a log write and
#: bookkeeping that cost about as much as a tiny network's whole step.
#: Measured on 1 CPU core, 1024 seeds × 2000 steps, in-process: 2-8-1 on XOR
#: (448 FLOPs a step) at 0.88 of the best log_every with blocks of 1 step and
#: 0.96 with 4; 2-4-4-4-1 (992) at 0.93 with 1 and 1.00 with 2; a 2-16-1
#: minibatch of 32 (7168) was fastest with 1. XOR 2-2-1 (112 FLOPs: blocks
#: of 10 steps) over 256 and 2048 seeds: 0.86-0.91 of the best, against
#: 0.62-0.72 with blocks of 1 step (the default before; this VM's noise is
#: ~5% on these 10-100 ms calls).
MIN_BLOCK_FLOPS = 1024


def _default_log_every(
    config: _Config, n_runs: int, itemsize: int, has_eval, n_examples: int
) -> int:
    """The smallest admissible log_every whose record fits in LOG_BYTES and,
    for a sweep (``n_runs > 1``), whose blocks hold MIN_BLOCK_FLOPS a run."""
    rows = 1 + 2 * bool(has_eval)
    if config.alignment_every is not None:
        rows += 3 * config.net.n_layers
    g = math.gcd(config.steps, config.eval_every or 0, config.alignment_every or 0)
    fits = [
        d
        for d in range(1, g + 1)
        if g % d == 0 and n_runs * (config.steps // d) * rows * itemsize <= LOG_BYTES
    ] or [g]
    if n_runs == 1:
        return fits[0]
    want = -(-MIN_BLOCK_FLOPS // config.net.flops(config.batch_size or n_examples))
    enough = [d for d in fits if d >= want]
    # Not at any price: with no divisor near the FLOPs' (1009 steps: 1 or all
    # of them), the record's size alone decides.
    return enough[0] if enough and enough[0] <= 4 * max(want, fits[0]) else fits[0]


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
    x, _ = check_x(x, net.n_in, params_dtype, f"x{name}")
    return x, check_y(
        y, net.cost, net.n_out, x.shape[0], False, params_dtype, f"y{name}"
    )


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
    log_every: int | None = None,
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
      eval_every: evaluate every this many steps and after the last (as for
        ``alignment_every``: ``result.eval_steps`` lists them); default: after
        the last step only. A multiple of ``log_every``.
      alignment_every: measure ``jp.alignment`` of the rule with backprop on
        the training data every this many steps and after the last (when it
        does not divide ``steps``, the last two measures are closer than
        ``alignment_every``: ``result.alignment_steps`` lists them); a
        multiple of ``log_every``. None: never.
      log_every: record the mean training loss of each block of this many steps
        (it must divide ``steps``); 1 records every step. Default: every step
        unless the record of every run would pass ``LOG_BYTES`` (16 MiB), then
        the smallest divisor of ``steps`` (and of ``eval_every`` and
        ``alignment_every``) that fits (``Trainer.log_every`` tells which). It
        is only what is recorded: divergence is checked as if after every
        block whatever it is (see :class:`TrainResult`). Under a ``jax.vmap``
        of ``train`` itself, whether a stretch is taken again is decided per
        run, so the step loop's counters are batched: each run gets its own
        outcome, but tiny networks lose the runs-last layout and a run's new
        epoch order is computed every step (a select, not a branch);
        ``train_seeds`` maps runs without that cost.

    Returns:
      A :class:`TrainResult`.
    """
    dtype = check_params(net, params)
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
    rules.warn_unpaired(config.rule, optimizer)
    if log_every is None:
        config = config._replace(
            log_every=_default_log_every(
                config, 1, jnp.dtype(dtype).itemsize, x_eval is not None, x.shape[0]
            )
        )
    if batch_size is not None:
        if key is None:
            raise ValueError(
                "key is required with batch_size: it draws the data order."
            )
        check_key(key)
        key = typed_keys(key)
    elif key is None:
        key = jax.random.key(0)  # unused by the data order
    else:
        check_key(key)
        key = typed_keys(key)
    if opt_state is None:
        opt_state = config.optimizer.init(params)
    rule_key = jax.random.fold_in(key, _RULE_KEY)
    rule_state = check_rule_state(
        config.rule, net, params, rule_state, rule_key, "rule_state"
    )
    return _train(config, params, opt_state, x, y, key, x_eval, y_eval, rule_state)


def _eval_arrays(net, dtype, eval_data):
    if eval_data is None:
        return None, None
    if isinstance(eval_data, Dataset):
        if eval_data.x_test is not None:
            raise TypeError(
                "eval_data is a jp.data.Dataset with a held-out part: give "
                "(data.x_test, data.y_test), or (data.x, data.y) for its training "
                "part."
            )
        eval_data = tuple(eval_data)
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
        log_every: int | None = None,
        dtype=None,
        devices=None,
    ):
        n_seeds = _check_keys(keys)
        keys = typed_keys(keys)
        if not isinstance(net, MLP):
            raise TypeError(f"net must be a jp.MLP; got {type(net).__name__}.")
        _check_optimizer(optimizer)
        scheme = check_scheme(
            default_scheme(net.activation) if scheme is None else scheme
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
            dtype = check_params(net, probe)
        else:
            dtype = check_float_dtype(dtype)
            # Shapes and dtypes only: nothing is drawn or compiled for them.
            probe = jax.eval_shape(
                lambda k: net.init(k, scheme=scheme, dtype=dtype), jax.random.key(0)
            )
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
        probe_rule = jax.eval_shape(
            lambda k, p: config.rule.init(k, net, p), jax.random.key(0), probe
        )
        hparams, n_hparams = check_hparams(
            hparams,
            config.rule,
            optimizer,
            jax.eval_shape(optimizer.init, probe),
            probe_rule,
        )
        rules.warn_unpaired(config.rule, optimizer, hparams)
        # What a checkpoint records and load() compares (see _settings).
        self._given = (keys, params, hparams, probe, probe_rule)
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
        devices = _check_devices(devices)
        n_runs = n_seeds * max(n_hparams, 1)
        self._log_every_given = log_every is not None
        if log_every is None:
            config = config._replace(
                log_every=_default_log_every(
                    config,
                    n_runs,
                    jnp.dtype(dtype).itemsize,
                    x_eval is not None,
                    x.shape[0],
                )
            )
        if not spans_processes(devices):
            # Fewer runs than devices: no device idles on padding (one seed runs
            # as one program on one device, not a padded program split across
            # two). Across processes every process keeps its devices: each runs
            # the same program.
            devices = devices[:n_runs]
        strategy, chunk_size = _choose_strategy(
            config,
            n_runs,
            strategy,
            chunk_size,
            x.shape[0],
            jnp.dtype(dtype).itemsize,
            len(devices),
            devices=devices,
            n_eval=0 if x_eval is None else x_eval.shape[0],
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
        self._platform = devices[0].platform
        self._spans = self._plan.spans_processes
        self._init_args = _put((keys, params, hparams), where)
        self._data = _put((x, y, x_eval, y_eval), where)

    @functools.cached_property
    def _settings(self) -> dict[str, Any]:
        """What :meth:`save` records of these runs and :meth:`load` compares:
        each argument that shapes the runs, by name (JSON values; arrays as
        SHA-256 digests of their bits; the optimizer's and rule's states by
        their tree structure)."""
        keys, params, hparams, probe, probe_rule = self._given
        # The data as the runs use them (cast, on the devices, replicated):
        # equal runs digest equally whatever array types the user passed.
        x, y, x_eval, y_eval = (
            None if a is None else a.addressable_data(0) for a in self._data
        )
        config = self._plan.config
        net = config.net
        opt_state = jax.eval_shape(config.optimizer.init, probe)
        return {
            "net": " ".join(
                [
                    "-".join(map(str, net.sizes)),
                    *(describe(f) for f in (net.activation, net.output_activation)),
                    describe(net.cost),
                    net.reduction,
                ]
            ),
            "n_seeds": self._plan.n_seeds,
            "keys": _digest(jax.random.key_data(keys)),
            # Each value as its dtype prints it (shortest round trip): exact.
            "hparams": {k: [str(e) for e in np.asarray(v)] for k, v in hparams.items()},
            "params": "drawn" if params is None else _digest(*jax.tree.leaves(params)),
            "scheme": self._plan.scheme,
            "dtype": self._plan.dtype,
            "steps": config.steps,
            "log_every": config.log_every,
            "batch_size": config.batch_size,
            "eval_every": config.eval_every,
            "alignment_every": config.alignment_every,
            "data": _digest(x, y),
            "eval_data": None if x_eval is None else _digest(x_eval, y_eval),
            "optimizer state": _structure(opt_state),
            "rule state": _structure(probe_rule),
        }

    @property
    def steps(self) -> int:
        """Steps of a whole run."""
        return self._plan.config.steps

    @property
    def log_every(self) -> int:
        return self._plan.config.log_every

    @property
    def check_every(self) -> int:
        """Steps between the engine's divergence checks (a multiple of
        ``log_every``; see ``jaxprop._engine.loop.CHECK_STEPS``): calls to
        :meth:`advance` over whole multiples of it skip the most checks."""
        has_eval = self._data[2] is not None
        return stretch_blocks(self._plan.config, has_eval) * self.log_every

    @property
    def shape(self) -> tuple[int, ...]:
        """The leading run axes: (n_seeds,) or (n_hparams, n_seeds)."""
        return self._plan.lead

    @property
    def strategy(self) -> tuple[str, int | None]:
        """The strategy chosen and its runs per chunk (see ``train_seeds``)."""
        return self._plan.strategy, self._plan.chunk_size

    def init(self) -> TrainState:
        """Every run's state before its first step (call it outside ``jax.jit``:
        on a CPU its program has its own compile options)."""
        runs, log = _init_runs(self._plan, self._platform, *self._init_call)
        return TrainState(0, runs, log)

    @property
    def _init_call(self) -> tuple:
        """The init's arguments after the plan: (n_examples, has_eval, keys,
        params, hparams)."""
        return (self._data[0].shape[0], self._data[2] is not None, *self._init_args)

    def portable_shapes(self) -> TrainState:
        """The shapes and dtypes of :meth:`portable` states
        (``jax.ShapeDtypeStruct`` leaves; ``step`` 0): a template for
        ``jp.load``. Nothing is computed or compiled."""

        def portable_init():
            runs, log = _init_runs_traced(self._plan, *self._init_call)
            return self.portable(TrainState(0, runs, log))

        return jax.eval_shape(portable_init)._replace(step=0)

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
            chosen = (
                ""
                if self._log_every_given
                else " (chosen by default: see LOG_BYTES and MIN_BLOCK_FLOPS)"
            )
            raise ValueError(
                f"steps ({steps}) must be a multiple of log_every "
                f"({self.log_every}{chosen})."
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
        return _to_host(_finish(self._plan, state.runs, state.log))

    def runs(self, state: TrainState) -> RunState:
        """Every run's :class:`RunState`, with leading axes ``self.shape``."""
        return _to_host(_to_lead(self._plan, state.runs))

    def log(self, state: TrainState) -> TrainLog:
        """The whole log, (*self.shape, steps // log_every), NaN ahead of ``step``."""
        return _to_host(_to_lead(self._plan, state.log))

    def portable(self, state: TrainState) -> TrainState:
        """``state`` with leading run axes (``self.shape``) instead of the
        working layout: what to save, loadable whatever the device count (and
        process count)."""
        runs, log = _to_host(_to_lead(self._plan, (state.runs, state.log)))
        return TrainState(state.step, runs, log)

    def restore(self, portable: TrainState) -> TrainState:
        """The working-layout state of a :meth:`portable` one (e.g. as loaded),
        on this trainer's devices, however many devices or processes saved it."""
        runs_log = _put((portable.runs, portable.log), self._where)
        return TrainState(int(portable.step), *_to_working(self._plan, runs_log))

    def save(self, path, state: TrainState):
        """Writes ``state`` to ``path`` atomically, in the portable layout, with
        this trainer's settings (the keys, grid, data, schedule, ... that
        :meth:`load` compares).

        Where the runs span processes, every process calls it; process 0 writes
        the file and the others wait until it is written.
        """
        portable = self.portable(state)
        meta = self._meta()
        return write_once(self, lambda: save(path, portable, meta=meta), path)

    def load(self, path) -> TrainState:
        """A state written by :meth:`save`, checked against this trainer.

        Raises:
          ValueError: the file is missing or damaged, or was saved by a trainer
            with other settings (another number of seeds or other keys, another
            hyperparameter grid, other data, steps, log_every, batch_size, net,
            optimizer or rule: each one that differs is named).
        """
        differ = self._differences(saved_meta(path))
        if differ:
            raise ValueError(
                f"{path}: saved by a Trainer with other settings: "
                + "; ".join(differ)
                + ". Build the Trainer with the arguments the checkpoint was "
                "saved with to resume it."
            )
        return self.restore(load(path, like=self.portable_shapes()))

    def _meta(self) -> dict:
        """What :meth:`save` stores beside a state (:meth:`_differences` reads it)."""
        return {"trainer": self._settings}

    def _differences(self, meta: dict | None, skip=()) -> list[str]:
        """The settings (not in ``skip``) in which a file's ``meta`` (see
        :meth:`_meta`) differs from this trainer's, each said for a message."""
        saved = (meta or {}).get("trainer")
        if not isinstance(saved, dict):  # files of older versions carry none
            return []
        saved = _renamed(saved)
        mine = json.loads(json.dumps(self._settings))  # as read back
        if isinstance(saved.get("hparams"), dict):  # bare names of older files
            *_, probe, probe_rule = self._given
            opt_state = jax.eval_shape(self._plan.config.optimizer.init, probe)
            saved = saved | {
                "hparams": legacy_names(saved["hparams"], opt_state, probe_rule)
            }
        return [
            _difference(k, saved.get(k), mine[k])
            for k in mine
            if k not in skip and saved.get(k) != mine[k]
        ]

    def last_losses(self, state: TrainState) -> Array:
        """The latest logged training loss of every run: ``self.shape``.

        NaN for diverged runs (and before the first block).
        """
        block = max(int(state.step) // self.log_every - 1, 0)
        return _to_host(_last_losses(self._plan, state.log.losses, np.int32(block)))


def _digest(*arrays) -> str:
    """16 hex digits of :func:`jaxprop._io.digest`, integers by value (labels
    train alike as int32 or int64)."""
    return digest(arrays, integers_by_value=True)[:16]


def _renamed(saved: dict) -> dict:
    """A file's settings with the params' class under its present name: the
    optimizer state of files written before it was ``DenseParams`` names
    ``Layer`` (the same class, so such files still resume)."""
    old = saved.get("optimizer state")
    if not isinstance(old, str):
        return saved
    new = old.replace("namedtuple[Layer]", f"namedtuple[{DenseParams.__name__}]")
    return saved | {"optimizer state": new}


def _structure(tree) -> str:
    """A tree's structure with its leaves' shapes and dtypes, as text."""
    leaves = [f"{l.dtype}{list(l.shape)}" for l in jax.tree.leaves(tree)]
    return f"{jax.tree.structure(tree)} {' '.join(leaves)}"


def _difference(name: str, saved, here) -> str:
    """One setting that differs between a checkpoint and a trainer, for a message."""
    if name in ("keys", "params", "data", "eval_data"):
        return f"{name} (other arrays)"
    if name in ("optimizer state", "rule state"):
        return f"{name} (another structure: another {name.split()[0]} or its options)"
    return f"{name} (saved {saved!r}, this trainer {here!r})"


def _check_devices(devices) -> list:
    """The devices to lay the runs over: every device of every process by
    default (one process: its own devices)."""
    if devices is None:
        return jax.devices() if jax.process_count() > 1 else jax.local_devices()
    devices = list(devices)
    if not devices:
        raise ValueError("devices must name at least one device.")
    if not all(isinstance(d, jax.Device) for d in devices):
        raise TypeError(
            "devices must be a sequence of jax.Device, e.g. jax.devices()[:2]; "
            f"got {[type(d).__name__ for d in devices][:3]}."
        )
    if len(set(devices)) != len(devices):
        twice = next(d for i, d in enumerate(devices) if d in devices[:i])
        raise ValueError(f"devices must not name a device twice; {twice} is.")
    here = {d.process_index for d in devices}
    if len(here) == 1 and jax.process_index() not in here:
        raise ValueError(
            f"devices belong to process {here.pop()}, not to this one "
            f"({jax.process_index()}): give this process's devices, or devices "
            f"of every process."
        )
    missing = sorted(set(range(jax.process_count())) - here)
    if len(here) > 1 and missing:
        raise ValueError(
            f"devices span several processes but none of processes {missing}: "
            f"runs laid over several processes need devices of every process "
            f"(each runs the same program), e.g. jax.devices()."
        )
    return devices


def agree_max(trainer: Trainer, value: int) -> int:
    """The largest of every process's ``value`` where ``trainer``'s runs span
    processes (a collective: every process calls it at the same point); else
    ``value``. What decides a collective step (a chunk's length, whether to
    checkpoint now) must be the same on every process."""
    return _agree_max(value, trainer._spans)


def write_once(trainer: Trainer, write, path):
    """``write()``, which writes the file ``path`` from a tree that every process
    holds whole (gathered); returns ``Path(path)``.

    Where ``trainer``'s runs span processes, every process calls it: process 0
    writes and the others wait for it (a collective); if the write fails, each
    process raises (process 0 its own error, the others an ``OSError`` naming it).
    """
    if not trainer._spans:
        write()
        return Path(path)
    error = None
    if jax.process_index() == 0:
        try:
            write()
        except Exception as e:  # every process must reach the agreement below
            error = e
    if agree_max(trainer, error is not None):
        if error is not None:
            raise error
        raise OSError(f"process 0 could not write {path}.")
    return Path(path)


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
    **options,
) -> TrainResult:
    """Trains one network per key, all in one compiled program.

    Each key is split into an initialization key and a data-order key, so seed i
    of a batch gives the same result as ``keys[i:i+1]`` alone with the same
    ``log_every`` (the default depends on the number of runs). With ``hparams``
    every seed is trained at every grid point (the same keys at each point).
    :class:`Trainer` runs the same training in chunks of steps.

    Args:
      net, x, y, optimizer, steps, grad, rule, batch_size, eval_data,
        eval_every, alignment_every, log_every: as for :func:`train`, but by
        default a block also holds at least ``MIN_BLOCK_FLOPS`` (1024) of
        matmul FLOPs a run (``MLP.flops``): XOR 2-2-1's 112 FLOPs a step make
        blocks of 10 steps, which ran 1.2-1.5× faster than blocks of 1 step.
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
        runs this loop on one core; to use them all, start Python with
        ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` (set before
        importing jax), which makes each core a device. Across processes, every
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
    unknown = sorted(set(options) - set(_TRAINER_OPTIONS))
    if unknown:
        raise TypeError(
            f"train_seeds() got an unexpected keyword argument {unknown[0]!r}; "
            f"its options are {list(_TRAINER_OPTIONS)} and progress."
        )
    trainer = Trainer(net, keys, x, y, optimizer, steps, **options)
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


# train_seeds takes Trainer's options, written once (in Trainer.__init__), and
# shows them in help() and signatures.
_TRAINER_OPTIONS = {
    name: p
    for name, p in inspect.signature(Trainer.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}
_train_seeds_signature = inspect.signature(train_seeds)
train_seeds.__signature__ = _train_seeds_signature.replace(
    parameters=[
        p
        for p in _train_seeds_signature.parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    + list(_TRAINER_OPTIONS.values())
)
