"""The runs-last batching rule for many runs of a tiny network.

Under ``vmap`` over runs, a network whose every product is tiny computes faster
with the run axis last (every run's small product at once, elementwise along
the runs) than as ``vmap``'s batched matmuls; :func:`over_runs` is the one rule
that decides, per platform (``jaxprop._core.platforms.PLATFORM_COSTS``). Only
layers with a ``width`` (Dense) take this path; a conv net never does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._core.platforms import (
    DEFAULT_PLATFORM,
    LOWERING_PLATFORMS,
    PLATFORM_COSTS,
    platform_costs,
)

#: :func:`over_runs` puts the runs last when every width is at
#: most this and the batch at most ``RUNS_LAST_MAX_BATCH`` (tiny products,
#: unrolled into elementwise terms); otherwise it keeps ``vmap``'s batched
#: matmuls. These are the CPU's figures; every platform's, with where they come
#: from, are in ``jaxprop._core.platforms.PLATFORM_COSTS``.
RUNS_LAST_MAX_WIDTH = PLATFORM_COSTS["cpu"].runs_last_max_width
RUNS_LAST_MAX_BATCH = PLATFORM_COSTS["cpu"].runs_last_max_batch


def runs_last_pays(net, batch: int, platform: str = "cpu") -> bool:
    """Whether many runs of ``net`` on batches of ``batch`` are computed runs-last.

    Args:
      net: the network.
      batch: examples per step.
      platform: a ``Device.platform`` (``"cpu"``, ``"gpu"``, ``"tpu"``); its
        entry of ``jaxprop._core.platforms.PLATFORM_COSTS`` decides.
    """
    costs = platform_costs(platform)
    return (
        costs.runs_last
        and all(hasattr(block, "width") for block in net.blocks)
        and max(block.width for block in net.blocks) <= costs.runs_last_max_width
        and batch <= costs.runs_last_max_batch
    )


def for_platform(net, batch: int, last, plain, *args):
    """``last(*args)`` where ``runs_last_pays(net, batch, platform)`` for the
    platform compiled for, else ``plain(*args)``.

    Where platforms decide differently, both are traced and
    ``jax.lax.platform_dependent`` keeps the compiled platform's.
    """
    pays = {
        name: runs_last_pays(net, batch, platform)
        for name, platform in LOWERING_PLATFORMS.items()
    }
    default = runs_last_pays(net, batch, DEFAULT_PLATFORM)
    if set(pays.values()) == {default}:
        return (last if default else plain)(*args)
    return jax.lax.platform_dependent(
        *args,
        default=last if default else plain,
        **{name: last if p else plain for name, p in pays.items()},
    )


def over_runs(net, fn, last, batch_of):
    """``fn(*args)`` with the runs-last batching rule (the one rule: the
    trainer's steps, ``jaxprop._engine.steps._steps``, use it).

    Under ``vmap`` over ``n_runs`` runs with ``b = batch_of(in_batched, *args)``
    (``in_batched``: a pytree of bools like ``args``): if ``b`` is None, a
    plain ``vmap`` of ``fn``; else ``last(in_batched, *args)``, whose outputs
    carry the runs last (or a trailing 1 to broadcast), moved back to the front
    where ``runs_last_pays(net, b, platform)`` for the platform compiled for,
    a plain ``vmap`` where not (:func:`for_platform`).
    """

    @jax.custom_batching.custom_vmap
    def batched(*args):
        return fn(*args)

    @batched.def_vmap
    def _over_runs(n_runs, in_batched, *args):
        def vmapped(*args):
            in_axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
            return jax.vmap(fn, in_axes=in_axes)(*args)

        def moved_back(*args):
            return jax.tree.map(
                lambda a: jnp.moveaxis(
                    jnp.broadcast_to(a, a.shape[:-1] + (n_runs,)), -1, 0
                ),
                last(in_batched, *args),
            )

        batch = batch_of(in_batched, *args)
        if batch is None:
            out = vmapped(*args)
        else:
            out = for_platform(net, batch, moved_back, vmapped, *args)
        return out, jax.tree.map(lambda _: True, out)

    return batched
