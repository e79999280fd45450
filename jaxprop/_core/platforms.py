"""The cost model's figures per platform, in one table keyed by ``Device.platform``.

``strategy="auto"`` (``jaxprop._engine.layout._choose_strategy``) and the runs-last step
(``jaxprop._network.runs_last_pays``) read their constants here and nowhere else.
Each entry says where its figures come from, and which nobody has measured.

Two models lay out the runs:

- ``"cache"`` (CPU): runs one after another from ``sequential_flops`` per run and
  step, else vmapped chunks whose step fits ``cache_bytes`` per device.
- ``"memory"`` (GPU, TPU): one vmap over as many runs as fit a memory budget,
  ``memory_fraction`` of what ``Device.memory_stats()`` reports free; chunks only
  when they do not fit. Wide vector units and thousands of threads want the
  largest batch there is; chunking only bounds memory.
"""

from __future__ import annotations

from typing import NamedTuple


class PlatformCosts(NamedTuple):
    """How ``strategy="auto"`` lays out runs on one platform, and when runs go last.

    Attributes:
      model: ``"cache"`` or ``"memory"`` (see the module docstring).
      runs_last: whether tiny networks may be computed with the runs as the last
        axis (``jaxprop._network.runs_last``) on this platform at all.
      runs_last_max_width, runs_last_max_batch: what "tiny" means: every width
        and the batch at most these.
      sequential_flops: (cache) per-run, per-step FLOPs from which runs go one
        after another (one per device).
      conv_sequential_flops: (cache) the same threshold for a network with a
        convolution (``jp.layers.Conv``): vmapped over runs, a convolution
        becomes one grouped convolution, which XLA:CPU runs slower than the
        runs' convolutions one after another well below ``sequential_flops``.
        None: conv nets use ``sequential_flops``.
      cache_bytes: (cache) a chunk's working set per device.
      min_chunk: (cache) fewest runs per device in a chunk.
      runs_last_chunk: (cache) fewest runs per device when the runs go last.
      memory_fraction: (memory) share of a device's free memory ``auto`` fills.
      fallback_bytes: (memory) device memory assumed when ``memory_stats()`` is
        None or has no ``bytes_limit``.
    """

    model: str
    runs_last: bool
    runs_last_max_width: int
    runs_last_max_batch: int
    sequential_flops: float | None = None
    conv_sequential_flops: float | None = None
    cache_bytes: int | None = None
    min_chunk: int | None = None
    runs_last_chunk: int | None = None
    memory_fraction: float | None = None
    fallback_bytes: int | None = None


PLATFORM_COSTS = {
    # Measured on a CPU; the measurements behind each figure are in
    # docs/design.md, "The platform cost model".
    "cpu": PlatformCosts(
        model="cache",
        runs_last=True,
        runs_last_max_width=8,
        runs_last_max_batch=32,
        sequential_flops=1e7,
        # train_seeds of conv nets, µs per seed-step, vmap / chunked /
        # sequential (2-core Xeon, 2 devices; docs/performance.md, "Conv nets"):
        # 12 kFLOP steps 3.3 / 3.5 / 4.4, 164 kFLOP 20.8 / 18.5 / 18.2, 1.2
        # MFLOP 145 / 134 / 121; ConvBase and LeNet-5 (1.5e6-1.9e7) likewise.
        conv_sequential_flops=1e5,
        cache_bytes=256 * 2**10,
        min_chunk=4,
        runs_last_chunk=1536,
    ),
    # Not measured: the CPU's thresholds and a guessed memory budget (see
    # docs/design.md, "The platform cost model").
    "gpu": PlatformCosts(
        model="memory",
        runs_last=True,
        runs_last_max_width=8,
        runs_last_max_batch=32,
        memory_fraction=0.5,
        fallback_bytes=8 * 2**30,
    ),
    # Not measured either (docs/design.md, "The platform cost model").
    "tpu": PlatformCosts(
        model="memory",
        runs_last=True,
        runs_last_max_width=8,
        runs_last_max_batch=32,
        memory_fraction=0.5,
        fallback_bytes=8 * 2**30,
    ),
}

#: Where a platform has no entry (a plugin's, say), today's CPU figures.
DEFAULT_PLATFORM = "cpu"

#: ``Device.platform`` of each platform name ``jax.lax.platform_dependent`` takes.
LOWERING_PLATFORMS = {"cpu": "cpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}


def platform_costs(platform: str) -> PlatformCosts:
    """The table's entry for ``platform`` (a ``Device.platform``), else the CPU's."""
    return PLATFORM_COSTS.get(platform, PLATFORM_COSTS[DEFAULT_PLATFORM])
