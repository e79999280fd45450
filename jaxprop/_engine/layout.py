"""How many runs share the devices: the strategy, the layout and its programs.

Between calls a :class:`Trainer`'s runs stay in a working layout (chunks of runs
split across the devices' mesh, or one run after another), so that nothing moves
from one chunk of steps to the next; these functions choose it, move trees in and
out of it, and map one run's init and loop over it.

The mesh may span several processes (``jax.distributed``): each process then
computes the runs of its own devices, and what leaves the layout (results, logs,
checkpoints) is gathered so that every process holds all of it (``_put`` on the
way in, ``_to_host`` on the way out).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from .._core.conv import Conv
from .._core.layers import in_size, out_sizes
from .._core.platforms import PLATFORM_COSTS, PlatformCosts, platform_costs
from .._network import runs_last_pays
from .grid import count_runs, set_hparams
from .loop import (
    _RULE_KEY,
    RunState,
    Span,
    TrainData,
    TrainLog,
    TrainResult,
    _blocks,
    _Config,
    _empty_log,
    _result,
    _start_state,
    log_rows,
)

if TYPE_CHECKING:
    from .options import Options

Array = jax.Array

#: The vmap axis of the runs of a chunk (the mesh axis is "runs").
RUNS = "chunk"

STRATEGIES = ("auto", "vmap", "sequential", "chunked")

# The CPU's figures under their old names; every platform's, with where they
# come from, are in ``jaxprop._core.platforms.PLATFORM_COSTS``.
#: Per-run, per-step FLOPs from which ``auto`` runs seeds one after another.
AUTO_SEQUENTIAL_FLOPS = PLATFORM_COSTS["cpu"].sequential_flops
#: Below that, ``auto`` vmaps chunks whose working set is about this many bytes
#: per device, so that a step's arrays stay in cache.
AUTO_CACHE_BYTES = PLATFORM_COSTS["cpu"].cache_bytes
#: ... or, for a network computed with the runs last, than this.
AUTO_RUNS_LAST_CHUNK = PLATFORM_COSTS["cpu"].runs_last_chunk


def _choose_strategy(options: Options) -> tuple[str, int | None]:
    """(strategy, chunk_size) for ``options.n_runs`` runs over
    ``options.devices``; see ``train_seeds``.

    A chunk is a multiple of the number of devices so that every device gets a
    share; with several devices, ``sequential`` means one run per device at a
    time. ``auto`` follows the cost model of the devices' platform
    (``jaxprop._core.platforms``): on a CPU cache-sized chunks, on a GPU or TPU
    one vmap over as many runs as fit in memory (:func:`_memory_plan`).
    """
    config, n_runs, devices = options.config, options.n_runs, options.devices
    strategy, chunk_size = options.strategy, options.chunk_size
    n_devices = len(devices)
    if strategy == "auto":
        platform = devices[0].platform
        costs = platform_costs(platform)
        batch = config.batch_size or options.n_examples
        if costs.model == "memory":
            per_device = _memory_plan(options, costs).per_device
            fits = per_device * n_devices >= n_runs
            strategy = "sequential" if per_device == 1 and not fits else "chunked"
        elif config.net.flops(batch) >= _sequential_flops(config.net, costs):
            strategy = "sequential"
        else:
            # Working set of one run's step: params, gradients, optimizer
            # moments and updates, and the activations of both passes.
            layers = config.net.blocks
            n_params = sum(layer.n_params for layer in layers)
            units = in_size(layers) + sum(out_sizes(layers))
            per_run = options.itemsize * (8 * n_params + 4 * batch * units)
            per_device = max(costs.min_chunk, costs.cache_bytes // per_run)
            if config.rule.runs_last and runs_last_pays(config.net, batch, platform):
                per_device = max(per_device, costs.runs_last_chunk)
            strategy = "chunked"
        if strategy == "chunked":
            # As many chunks as that size needs, balanced so that padding the
            # runs to whole chunks adds less than one run per device and chunk.
            n_chunks = -(-n_runs // (per_device * n_devices))
            chunk_size = -(-n_runs // n_chunks)
    if strategy == "sequential":
        if n_devices == 1:
            return "sequential", None
        strategy, chunk_size = "chunked", n_devices
    if strategy == "vmap":
        chunk_size = n_runs
    chunk_size = min(chunk_size, n_runs)
    chunk_size = -(-chunk_size // n_devices) * n_devices
    return ("vmap" if chunk_size >= n_runs else "chunked"), chunk_size


def _sequential_flops(net, costs: PlatformCosts) -> float:
    """Per-run, per-step FLOPs from which ``auto`` runs one run at a time on a
    cache-model platform: ``costs.conv_sequential_flops`` for a network with a
    convolution, where the platform has that figure, else
    ``costs.sequential_flops``."""
    has_conv = any(isinstance(getattr(b, "layer", b), Conv) for b in net.blocks)
    if has_conv and costs.conv_sequential_flops is not None:
        return costs.conv_sequential_flops
    return costs.sequential_flops


class _MemoryPlan(NamedTuple):
    """Bytes per device of the memory model, and the runs per chunk it allows.

    Attributes:
      budget: what ``auto`` may fill on each device.
      shared: the data, copied to every device.
      kept: what one run keeps between calls (see :func:`_run_bytes`).
      step: one run's temporaries while its chunk takes a step.
      per_device: runs per device in a chunk (at least 1).
    """

    budget: int
    shared: int
    kept: int
    step: int
    per_device: int

    def used(self, n_runs: int, n_devices: int, chunk_size: int) -> int:
        """Bytes used per device by ``n_runs`` runs in chunks of ``chunk_size``."""
        runs = -(-n_runs // n_devices)
        chunk = -(-min(chunk_size, n_runs) // n_devices)
        return self.shared + runs * self.kept + chunk * self.step


def _memory_plan(options: Options, costs: PlatformCosts) -> _MemoryPlan:
    """How many runs per device a chunk of ``options``' runs may hold on an
    accelerator, with the cost model ``costs`` of its devices' platform.

    Every run's state and log stay on the devices whatever the chunks, so
    chunking only bounds the step's temporaries: a chunk holds as many runs as
    fit in what the budget leaves after the data and every run's state, all
    runs (one vmap) when they fit, one run per device when none would.
    """
    devices, itemsize = options.devices, options.itemsize
    # Only this process's devices report their memory (another's raise); the
    # processes then agree on the smallest budget, so they build one program.
    here = [d for d in devices if d.process_index == jax.process_index()]
    budget = min(_memory_budget(d, costs) for d in here)
    if len({d.process_index for d in devices}) > 1:
        # Agreed on in MiB: the collective carries int32, and budgets pass 2 GiB.
        budget = -_agree_max(-(budget >> 20), True) << 20
    layers = options.config.net.blocks
    per_example = in_size(layers) + out_sizes(layers)[-1]  # x and y
    shared = itemsize * (options.n_examples + options.n_eval) * per_example
    kept, step = _run_bytes(options)
    runs = -(-options.n_runs // len(devices))
    per_device = (budget - shared - runs * kept) // step
    return _MemoryPlan(budget, shared, kept, step, int(max(1, min(per_device, runs))))


def _memory_budget(device, costs: PlatformCosts) -> int:
    """Bytes ``auto`` may fill on ``device``: a fraction of its free memory.

    Free memory is ``bytes_limit - bytes_in_use`` of ``device.memory_stats()``
    (XLA's allocator: on a GPU its limit is the memory it preallocated), or
    ``costs.fallback_bytes`` where the device reports none.
    """
    stats = device.memory_stats()
    limit = (stats or {}).get("bytes_limit")
    if not isinstance(limit, int) or limit <= 0:
        free = costs.fallback_bytes
    else:
        in_use = stats.get("bytes_in_use", 0)
        free = max(0, limit - (in_use if isinstance(in_use, int) else 0))
    return int(costs.memory_fraction * free)


def _run_bytes(options: Options) -> tuple[int, int]:
    """(kept, step): the bytes one of ``options``' runs keeps between calls,
    and its step's temporaries.

    kept: the params, optimizer state, rule state and log (``_empty_log``),
    twice, as a call's inputs and its outputs are both live (nothing is
    donated). step: the gradients, updates and new optimizer state, and the
    activations of both passes (z, a and δ of every layer, and the batch's
    inputs), or the evaluation's forward pass (z and a over ``n_eval``
    examples) if that is larger. Counted in elements of ``itemsize`` bytes.
    """
    config, n_eval = options.config, options.n_eval
    batch = config.batch_size or options.n_examples
    net = config.net
    params = tuple(layer.shapes(jnp.float32) for layer in net.blocks)
    size = lambda tree: sum(int(np.prod(l.shape)) for l in jax.tree.leaves(tree))  # noqa: E731
    n_params = size(params)
    n_opt = size(jax.eval_shape(config.optimizer.init, params))
    n_rule = size(
        jax.eval_shape(lambda k: config.rule.init(k, net, params), jax.random.key(0))
    )
    n_blocks = config.steps // config.log_every
    n_logged = n_blocks * log_rows(config, config.eval_every is not None)
    kept = 2 * (n_params + n_opt + n_rule + n_logged)
    units = in_size(net.blocks) + sum(out_sizes(net.blocks))
    step = 2 * n_params + n_opt + max(4 * batch * units, 2 * n_eval * units)
    return options.itemsize * kept, options.itemsize * step


class _Plan(NamedTuple):
    """How a Trainer lays out its runs (static).

    Between calls the runs are kept in their working layout, so that nothing
    moves between devices from one chunk of steps to the next: leaves of shape
    (n_chunks, chunk_size, ...) with the chunk axis split across the mesh's
    devices (``vmap`` is one chunk), or (n_runs, ...) for ``sequential``. Each
    device holds a contiguous slab of the runs (``to_working``), padded to
    whole chunks by repeating run 0.
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
        return count_runs(self.n_seeds, self.n_hparams)

    @property
    def lead(self) -> tuple[int, ...]:
        """The leading run axes users see."""
        return (self.n_hparams, self.n_seeds) if self.n_hparams else (self.n_seeds,)

    @property
    def spans_processes(self) -> bool:
        """Whether the mesh holds devices of several processes."""
        return self.mesh is not None and spans_processes(self.mesh.devices.flat)

    def gathered(self, tree):
        """Across processes: every leaf replicated on every device, so that each
        process holds all of it (traced; one process: ``tree`` as it is)."""
        if not self.spans_processes:
            return tree
        sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        return jax.lax.with_sharding_constraint(tree, sharding)

    def _constrain(self, tree):
        if self.mesh is None or self.strategy == "sequential":
            return tree
        sharding = jax.sharding.NamedSharding(
            self.mesh, jax.sharding.PartitionSpec(None, "runs")
        )
        return jax.lax.with_sharding_constraint(tree, sharding)

    @property
    def _per_device(self) -> tuple[int, int, int]:
        """(D, m, R): devices, runs per device (the last may hold fewer) and
        runs per device in a chunk."""
        D = 1 if self.mesh is None else self.mesh.shape["runs"]
        return D, -(-self.n_runs // D), self.chunk_size // D

    def to_working(self, tree):
        """Leading run axes -> the working layout (traced).

        Device d holds runs d*m .. d*m + m - 1 (m = ceil(n_runs / D)), its
        chunk c the R of them from c*R: each device's runs are contiguous in
        the leading order, so that ``to_lead`` moves nothing between devices
        where D divides the runs (and a grid's n_hparams); otherwise its last
        slice or reshape gathers. A device's slots past its runs repeat run 0.
        """
        k = len(self.lead)
        tree = jax.tree.map(lambda l: l.reshape((self.n_runs,) + l.shape[k:]), tree)
        if self.strategy == "sequential":
            return tree
        D, m, R = self._per_device
        C = -(-m // R)
        d, c, r = np.ix_(np.arange(D), np.arange(C), np.arange(R))
        run = d * m + c * R + r  # (D, C, R)
        run = np.where((c * R + r < m) & (run < self.n_runs), run, 0)
        index = run.transpose(1, 0, 2).reshape(C, D * R)
        return self._constrain(jax.tree.map(lambda l: l[index], tree))

    def to_lead(self, tree):
        """The working layout -> leading run axes, padding dropped (traced):
        each device's slab of the leading order is its own runs (see
        ``to_working``)."""
        if self.strategy == "sequential":
            return jax.tree.map(lambda l: l.reshape(self.lead + l.shape[1:]), tree)
        D, m, R = self._per_device

        def lead(l):
            C, tail = l.shape[0], l.shape[2:]
            l = jnp.moveaxis(l.reshape((C, D, R) + tail), 1, 0)
            l = l.reshape((D, C * R) + tail)[:, :m].reshape((D * m,) + tail)
            return l[: self.n_runs].reshape(self.lead + tail)

        return jax.tree.map(lead, tree)

    def map(self, fn, tree, *shared):
        """``fn(run, *shared)`` of one run over every run of a working-layout
        tree (traced); ``shared``: arguments every run reads (data, step).

        ``vmap``/``chunked``: one chunk after another (``lax.map``), the runs of
        a chunk batched (``vmap``) and split across the devices; ``sequential``:
        one run after another.
        """
        if self.strategy == "sequential":
            return jax.lax.map(lambda run: fn(run, *shared), tree)

        def chunks(tree, *shared):
            return jax.lax.map(
                jax.vmap(lambda run: fn(run, *shared), axis_name=RUNS), tree
            )

        if self.mesh is not None:
            # Each device maps its own runs (shard_map): a loop whose condition
            # is batched over runs (vmap of while_loop, as the shuffle's cycle
            # walk; the stretch check's psum) then stops on this device's runs
            # alone, where under the mesh's partitioner it waits for every
            # device's at each iteration: a collective, which across processes
            # goes through the network (docs/design.md, "Runs laid out device
            # by device").
            runs = jax.sharding.PartitionSpec(None, "runs")
            every = jax.sharding.PartitionSpec()
            chunks = jax.shard_map(
                chunks,
                mesh=self.mesh,
                in_specs=(runs, *(every for _ in shared)),
                out_specs=runs,
                # One run's loop is written for vmap, not for shard_map's
                # varying-axis types (a cond's constant branch is not "varying");
                # nothing here is differentiated, so the check buys nothing.
                check_vma=False,
            )
        return self._constrain(chunks(tree, *shared))

    @property
    def working_axes(self) -> int:
        """Leading run axes of the working layout: (n_runs,) or (n_chunks, chunk)."""
        return 1 if self.strategy == "sequential" else 2

    @property
    def axis_name(self) -> str | None:
        """The ``vmap`` axis of a chunk's runs inside :meth:`map` (None: one run)."""
        return None if self.strategy == "sequential" else RUNS


#: XLA's compile options for the init program, by platform. On a CPU it is
#: compiled at LLVM -O1 (XLA's default is -O3), which draws the same bits
#: (tested) and compiles JAX's unrolled Threefry rounds much faster, for a
#: program that runs once (docs/design.md, "Compiler optimization levels").
INIT_COMPILER_OPTIONS = {"cpu": {"xla_backend_optimization_level": 1}}


def _init_runs(plan: _Plan, platform: str, n_examples: int, has_eval: bool, *args):
    """:func:`_init_runs_traced` compiled for ``platform`` (``Device.platform``)."""
    return _init_program(platform)(plan, n_examples, has_eval, *args)


@functools.cache
def _init_program(platform: str):
    return jax.jit(
        _init_runs_traced,
        static_argnums=(0, 1, 2),
        compiler_options=INIT_COMPILER_OPTIONS.get(platform),
    )


def _init_runs_traced(
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
        rule_key = jax.random.fold_in(key, _RULE_KEY)
        rule_state = plan.config.rule.init(rule_key, net, params)
        opt_state, rule_state = set_hparams(hp, opt_state, rule_state)
        return _start_state(params, opt_state, key_data, rule_state)

    runs = plan.map(one, plan.to_working((keys, params, hparams)))
    # The NaN log filled once in place, not stacked up chunk by chunk.
    lead = jax.tree.leaves(runs)[0].shape[: plan.working_axes]
    log = jax.tree.map(
        lambda l: jnp.broadcast_to(l, lead + l.shape),
        _empty_log(plan.config, has_eval, plan.dtype),
    )
    return runs, plan._constrain(log)


@functools.partial(jax.jit, static_argnums=0)
def _advance_runs(
    plan: _Plan, runs: RunState, log: TrainLog, start, n_blocks, x, y, x_eval, y_eval
) -> tuple[RunState, TrainLog]:
    """``n_blocks`` (traced) blocks of every run from step ``start``.

    ``runs`` and ``log`` are in the working layout.
    """

    def one(carry, start, n_blocks, *data):
        span = Span(start, n_blocks, TrainData(*data), plan.axis_name)
        return _blocks(plan.config, carry, span)

    return plan.map(one, (runs, log), start, n_blocks, x, y, x_eval, y_eval)


@functools.partial(jax.jit, static_argnums=0)
def _to_lead(plan: _Plan, tree):
    return plan.gathered(plan.to_lead(tree))


@functools.partial(jax.jit, static_argnums=0)
def _to_working(plan: _Plan, tree):
    return plan.to_working(tree)


@functools.partial(jax.jit, static_argnums=0)
def _last_losses(plan: _Plan, losses: Array, block) -> Array:
    return plan.gathered(plan.to_lead(losses[..., block]))


@functools.partial(jax.jit, static_argnums=0)
def _finish(plan: _Plan, runs: RunState, log: TrainLog) -> TrainResult:
    return plan.gathered(_result(plan.config, *plan.to_lead((runs, log))))


# ------------------------------------------------------- across processes
def spans_processes(devices) -> bool:
    """Whether ``devices`` belong to more than one process."""
    return len({d.process_index for d in devices}) > 1


def _is_key(leaf) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _put(tree, where):
    """``jax.device_put(tree, where)``; where ``where`` spans processes, every
    process's copy of ``tree`` (the same on each) as global arrays replicated
    over its mesh.

    A global array is made from host data (``jax.make_array_from_process_local_data``):
    ``device_put`` cannot move an array committed to one device, nor a PRNG key
    array, onto devices of other processes.
    """
    devices = getattr(where, "device_set", ())
    if not spans_processes(devices):
        return jax.device_put(tree, where)

    def one(leaf):
        if _is_key(leaf):
            data = _put(np.asarray(jax.random.key_data(leaf)), where)
            return _wrap_keys(data, str(jax.random.key_impl(leaf)))
        return jax.make_array_from_process_local_data(where, np.asarray(leaf))

    return jax.tree.map(one, tree)


@functools.partial(jax.jit, static_argnums=1)
def _wrap_keys(data, impl: str):
    """PRNG keys of ``data`` (laid out as ``data`` is), compiled once per layout."""
    return jax.random.wrap_key_data(data, impl=impl)


def _to_host(tree):
    """Leaves that span processes (replicated by ``_Plan.gathered``) as this
    process's own copy, an array on one of its devices (dispatched, not waited
    for); other leaves as they are.

    This is ``multihost_utils.process_allgather(..., tiled=True)`` with the
    gather compiled into the program that made the tree (one program, not one
    per leaf) and PRNG key arrays kept as keys.
    """

    def one(leaf):
        if (
            isinstance(leaf, jax.Array)
            and not isinstance(leaf, jax.core.Tracer)
            and not leaf.is_fully_addressable
        ):
            if leaf.is_fully_replicated:
                return leaf.addressable_data(0)
            return multihost_utils.process_allgather(leaf, tiled=True)
        return leaf

    return jax.tree.map(one, tree)


def _agree_max(value: int, spans: bool) -> int:
    """The largest of every process's ``value`` (a collective: every process
    must call it) where ``spans``; else ``value``."""
    if not spans:
        return value
    values = multihost_utils.process_allgather(np.int32(value))
    return int(np.max(values))
