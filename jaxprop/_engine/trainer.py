"""Many training runs of one network, advanced in chunks of steps: :class:`Trainer`
and its state, :class:`TrainState`."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Unpack

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._io import load, save, saved_meta
from .._network import MLP
from .._validate import positive_int
from .checkpoint import checkpoint_meta, differences, settings, write_once
from .layout import (
    _advance_runs,
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
)
from .loop import RunState, TrainData, TrainLog, TrainResult, stretch_blocks
from .options import Options, SweepOptions, sweep_options

Array = jax.Array


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
        **options: Unpack[SweepOptions],
    ):
        self._lay_out(sweep_options(net, keys, x, y, optimizer, steps, options))

    @classmethod
    def _of(cls, options: Options) -> Trainer:
        """The trainer of checked options (``train_seeds`` checks its own)."""
        trainer = cls.__new__(cls)
        trainer._lay_out(options)
        return trainer

    def _lay_out(self, options: Options) -> None:
        """The runs' layout over the devices, and the arrays put there."""
        self._options = options
        strategy, chunk_size = _choose_strategy(options)
        devices = options.devices
        mesh = None
        if strategy != "sequential" and len(devices) > 1:
            mesh = jax.sharding.Mesh(np.array(devices), ("runs",))
        self._plan = _Plan(
            options.config,
            options.scheme,
            options.dtype,
            strategy,
            chunk_size,
            mesh,
            options.n_seeds,
            options.n_hparams,
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
        self._init_args = _put(_on_run_axes(options), where)
        self._data = _put(tuple(options.data), where)
        # The options keep the arrays as placed, not a second copy of the data.
        self._options = dataclasses.replace(options, data=TrainData(*self._data))

    @functools.cached_property
    def _settings(self) -> dict[str, Any]:
        """What :meth:`save` records of these runs and :meth:`load` compares
        (see :func:`jaxprop._engine.checkpoint.settings`)."""
        return settings(self._options, self._data)

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
        steps = positive_int(steps, "steps")
        if not isinstance(state, TrainState):
            raise TypeError(
                f"state must be a jp.TrainState (from trainer.init()); got "
                f"{type(state).__name__}."
            )
        step = int(state.step)
        if steps % self.log_every:
            chosen = (
                ""
                if self._options.log_every_given
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
        meta = checkpoint_meta(self)
        return write_once(self, lambda: save(path, portable, meta=meta), path)

    def load(self, path) -> TrainState:
        """A state written by :meth:`save`, checked against this trainer.

        Raises:
          ValueError: the file is missing or damaged, or was saved by a trainer
            with other settings (another number of seeds or other keys, another
            hyperparameter grid, other data, steps, log_every, batch_size, net,
            optimizer or rule: each one that differs is named).
        """
        differ = differences(self, saved_meta(path))
        if differ:
            raise ValueError(
                f"{path}: saved by a Trainer with other settings: "
                + "; ".join(differ)
                + ". Build the Trainer with the arguments the checkpoint was "
                "saved with to resume it."
            )
        return self.restore(load(path, like=self.portable_shapes()))

    def last_losses(self, state: TrainState) -> Array:
        """The latest logged training loss of every run: ``self.shape``.

        NaN for diverged runs (and before the first block).
        """
        block = max(int(state.step) // self.log_every - 1, 0)
        return _to_host(_last_losses(self._plan, state.log.losses, np.int32(block)))


def _on_run_axes(options: Options) -> tuple:
    """(keys, params, hparams) with the runs' leading axes: (n_seeds,), or
    (n_hparams, n_seeds) with a grid (every seed at every grid point)."""
    keys, params, hparams, n = (
        options.keys,
        options.params,
        options.hparams,
        options.n_hparams,
    )
    if not n:
        return keys, params, hparams
    keys = jnp.broadcast_to(keys, (n, *keys.shape))
    if params is not None:
        params = jax.tree.map(lambda l: jnp.broadcast_to(l, (n, *l.shape)), params)
    hparams = {
        k: jnp.broadcast_to(v[:, None], (n, options.n_seeds))
        for k, v in hparams.items()
    }
    return keys, params, hparams
