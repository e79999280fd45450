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
    cache_bytes: int | None = None
    min_chunk: int | None = None
    runs_last_chunk: int | None = None
    memory_fraction: float | None = None
    fallback_bytes: int | None = None


PLATFORM_COSTS = {
    # Measured on a 2-core AMD EPYC CPU (benchmarks/README.md, "strategies" and
    # "seed-scaling" studies; benchmarks/results/cpu-2core-2026-11-24.*):
    # - sequential_flops: vmap wins at 2e6 FLOPs per run-step (32-32-32-10,
    #   batch 128), one run at a time wins at 1.7e7 (width 128).
    # - cache_bytes: for XOR 2-2-1, chunks of a few hundred runs per device beat
    #   one vmap over 131072 runs by 1.8x (a step's arrays stay in cache).
    # - min_chunk: keeps the matmuls batched.
    # - runs_last_chunk: XOR ran at 7.1e7 seed-steps/s with 480 runs per device
    #   and 9.5e7-1.07e8 with 512 to 896 (float32); float64 gained 12% from
    #   432 to 768. Since the whole scan of steps runs on the runs-last layout
    #   (2026-12-02), 65536 XOR runs x 2000 epochs, 9 interleaved rounds:
    #   1.12e8 seed-epochs/s with 1536 runs per device, 9.7e7 with 763,
    #   1.0e8 with 1024, 1.02e8 with 3072.
    # - runs_last_max_width/batch: runs-last step rate over vmap's, float32,
    #   1024 runs: XOR 2-2-1 batch 4: 1.6-2x; 2-4-4-1 and 2-8-8-1 batch 16:
    #   1.5x; 2-4-1 batch 32: 1.1x; 2-16-16-1 batch 8: 1.0x; 2-32-1 batch 8:
    #   0.96x; 2-16-16-1 batch 16: 0.57x; batch 64 or more: 0.2-0.6x.
    "cpu": PlatformCosts(
        model="cache",
        runs_last=True,
        runs_last_max_width=8,
        runs_last_max_batch=32,
        sequential_flops=1e7,
        cache_bytes=256 * 2**10,
        min_chunk=4,
        runs_last_chunk=1536,
    ),
    # Not measured: no GPU has been lent to this project yet (run
    # `python -m benchmarks gpu` on one). memory_fraction leaves half of the
    # free memory to XLA's own temporaries, fragmentation and other programs;
    # fallback_bytes is a guess at the smallest current accelerator (8 GiB).
    # runs_last stays on with the CPU's thresholds: on GPUs a tiny batched dot
    # becomes a cuBLAS call per step, slower than the fused elementwise
    # products of the runs-last step (jax-ml/jax#33004), so it may well pay
    # there too. To be measured when a GPU is lent.
    "gpu": PlatformCosts(
        model="memory",
        runs_last=True,
        runs_last_max_width=8,
        runs_last_max_batch=32,
        memory_fraction=0.5,
        fallback_bytes=8 * 2**30,
    ),
    # Not measured either. A TPU pads a tiny matmul to its 128-wide systolic
    # array, so elementwise products on the vector unit should pay as on GPUs.
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
