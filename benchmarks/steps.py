"""Manual vs automatic gradients in one training step: time, compilation, memory.

The network is ``(32, w, ..., w, 10)`` with ``depth`` hidden ReLU layers of width
w, softmax cross-entropy on integer labels, mean over the batch; a step is the
loss and gradient at a batch followed by plain SGD. The two contenders differ
only in where the gradient comes from:

- ``manual``: ``net.value_and_backprop`` (the hand-written δ recursion);
- ``autodiff``: ``jax.value_and_grad(net.loss)``.

Studies:

- ``step-time``: the jitted step, steady state: k steps inside one compiled
  ``lax.fori_loop`` (k calibrated so that a call takes ~20 ms, which keeps the
  per-call dispatch out), time per step = median call time / k over interleaved
  repeats; compilation timed apart. Also the un-jitted (eager) step under
  ``jax.disable_jit()``, one step per call.
- ``memory``: ``jit(step).lower(...).compile().memory_analysis()`` of one step:
  temporary, argument and output bytes.
"""

from __future__ import annotations

import itertools
import time

import jax
import numpy as np

import jaxprop as jp
from benchmarks._common import calibrate, median, timed

GRADS = ("manual", "autodiff")
LEARNING_RATE = 1e-3
N_IN, N_OUT = 32, 10

#: Grids per size: a width × batch grid at depth 2 (the heatmap), a depth sweep
#: at width 256, batch 128, the eager points, and the largest step (FLOPs) run.
SIZES = {
    "full": {
        "widths": (4, 16, 64, 256, 1024, 4096),
        "batches": (1, 16, 128, 1024, 4096),
        "depths": (1, 2, 4, 8),
        "eager_widths": (4, 64, 1024),
        "max_flops": 4e10,
        "target_s": 0.02,
    },
    "quick": {
        "widths": (4, 64, 512),
        "batches": (1, 128),
        "depths": (1, 4),
        "eager_widths": (4, 512),
        "max_flops": 1e9,
        "target_s": 0.005,
    },
    "smoke": {
        "widths": (4, 64),
        "batches": (8,),
        "depths": (1,),
        "eager_widths": (4,),
        "max_flops": 1e8,
        "target_s": 0.001,
    },
}


def make_net(width: int, depth: int) -> jp.MLP:
    """(32, width × depth, 10) ReLU network with softmax cross-entropy, mean."""
    sizes = (N_IN, *(width,) * depth, N_OUT)
    return jp.MLP(sizes, "relu", "identity", "softmax_cross_entropy", "mean")


def make_problem(width: int, depth: int, batch: int, dtype: str = "float32"):
    """(net, params, x (batch, 32), y (batch,) labels), drawn from fixed keys."""
    net = make_net(width, depth)
    k_params, k_x, k_y = jax.random.split(jax.random.key(0), 3)
    params = net.init(k_params, dtype=dtype)
    x = jax.random.normal(k_x, (batch, N_IN), dtype)
    y = jax.random.randint(k_y, (batch,), 0, N_OUT)
    return net, params, x, y


def make_step(net: jp.MLP, grad: str):
    """``step(params, x, y) -> (loss, params)``: gradient, then SGD."""
    if grad == "manual":
        value_and_grad = net.value_and_backprop
    else:
        value_and_grad = jax.value_and_grad(net.loss)

    def step(params, x, y):
        loss, grads = value_and_grad(params, x, y)
        return loss, jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads)

    return step


def make_loop(net: jp.MLP, grad: str):
    """``loop(params, x, y, k) -> params`` after k steps, one jitted program."""
    step = make_step(net, grad)

    @jax.jit
    def loop(params, x, y, k):
        return jax.lax.fori_loop(0, k, lambda _, p: step(p, x, y)[1], params)

    return loop


def grid(size: str) -> list[tuple[int, int, int]]:
    """(depth, width, batch) points: the depth-2 grid, then the depth sweep."""
    s = SIZES[size]
    points = [(2, w, b) for w, b in itertools.product(s["widths"], s["batches"])]
    mid_width = s["widths"][len(s["widths"]) // 2]
    mid_batch = s["batches"][len(s["batches"]) // 2]
    points += [(d, mid_width, mid_batch) for d in s["depths"] if d != 2]
    return [p for p in points if make_net(p[1], p[0]).flops(p[2]) <= s["max_flops"]]


def skipped(size: str) -> list[tuple[int, int, int]]:
    """Grid points left out because a step exceeds the size's FLOP budget."""
    s = SIZES[size]
    return [
        (2, w, b)
        for w, b in itertools.product(s["widths"], s["batches"])
        if make_net(w, 2).flops(b) > s["max_flops"]
    ]


def _compile(loop, args) -> tuple[object, float]:
    start = time.perf_counter()
    compiled = loop.lower(*args).compile()
    return compiled, time.perf_counter() - start


def bench_step_time(size: str, repeats: int) -> dict:
    """Jitted steady-state and eager step time of manual vs autodiff gradients."""
    s = SIZES[size]
    rows = []
    for depth, width, batch in grid(size):
        net, params, x, y = make_problem(width, depth, batch)
        compiled, compile_s = {}, {}
        for g in GRADS:
            compiled[g], compile_s[g] = _compile(make_loop(net, g), (params, x, y, 1))
        k = calibrate(lambda k: compiled["manual"](params, x, y, k), s["target_s"])
        results = timed(
            {g: (lambda g=g: compiled[g](params, x, y, k)) for g in GRADS}, repeats
        )
        flops = net.flops(batch)
        row = {"depth": depth, "width": width, "batch": batch, "steps_per_call": k}
        row["flops_per_step"] = flops
        for g in GRADS:
            per_step = median(results[g][1]) / k
            row[g] = {
                "step_s": per_step,
                "times_s": [t / k for t in results[g][1]],
                "compile_s": compile_s[g],
                "gflops": flops / per_step / 1e9,
            }
        row["ratio"] = row["manual"]["step_s"] / row["autodiff"]["step_s"]
        rows.append(row)
        print(
            f"  depth {depth} width {width:>4} batch {batch:>4}: manual "
            f"{row['manual']['step_s'] * 1e6:9.1f} µs, autodiff "
            f"{row['autodiff']['step_s'] * 1e6:9.1f} µs, ratio {row['ratio']:.3f}; "
            f"compile {compile_s['manual']:.2f} / {compile_s['autodiff']:.2f} s"
        )
    eager = []
    mid_batch = s["batches"][len(s["batches"]) // 2]
    for width in s["eager_widths"]:
        net, params, x, y = make_problem(width, 2, mid_batch)
        steps = {g: make_step(net, g) for g in GRADS}

        def eagerly(step):
            with jax.disable_jit():
                return step(params, x, y)

        results = timed({g: (lambda g=g: eagerly(steps[g])) for g in GRADS}, repeats)
        row = {"depth": 2, "width": width, "batch": mid_batch}
        for g in GRADS:
            row[g] = {"step_s": median(results[g][1]), "times_s": results[g][1]}
        row["ratio"] = row["manual"]["step_s"] / row["autodiff"]["step_s"]
        eager.append(row)
        print(
            f"  eager, width {width:>4} batch {mid_batch}: manual "
            f"{row['manual']['step_s'] * 1e3:.2f} ms, autodiff "
            f"{row['autodiff']['step_s'] * 1e3:.2f} ms, ratio {row['ratio']:.3f}"
        )
    ratios = np.array([r["ratio"] for r in rows])
    wide = np.array([r["ratio"] for r in rows if r["width"] >= 64])
    summary = {
        "median_ratio": float(np.median(ratios)),
        "max_ratio": float(ratios.max()),
        "max_ratio_width_ge_64": float(wide.max()) if wide.size else None,
        "eager_median_ratio": float(np.median([r["ratio"] for r in eager])),
    }
    print(
        f"  manual/autodiff: median {summary['median_ratio']:.3f}, max "
        f"{summary['max_ratio']:.3f}, max at width >= 64 "
        f"{summary['max_ratio_width_ge_64']}"
    )
    return {
        "network": "(32, width x depth, 10) ReLU, softmax cross-entropy, float32",
        "repeats": repeats,
        "skipped": skipped(size),
        "rows": rows,
        "eager": eager,
        "summary": summary,
    }


def _memory(compiled) -> dict:
    m = compiled.memory_analysis()
    return {
        "temp_bytes": int(m.temp_size_in_bytes),
        "argument_bytes": int(m.argument_size_in_bytes),
        "output_bytes": int(m.output_size_in_bytes),
        "alias_bytes": int(m.alias_size_in_bytes),
    }


def bench_memory(size: str, repeats: int) -> dict:
    """Compiled memory of one jitted step, manual vs autodiff."""
    del repeats  # compiled sizes are deterministic
    rows = []
    for depth, width, batch in grid(size):
        net, params, x, y = make_problem(width, depth, batch)
        row = {"depth": depth, "width": width, "batch": batch}
        for g in GRADS:
            row[g] = _memory(jax.jit(make_step(net, g)).lower(params, x, y).compile())
        row["temp_ratio"] = row["manual"]["temp_bytes"] / max(
            row["autodiff"]["temp_bytes"], 1
        )
        rows.append(row)
        print(
            f"  depth {depth} width {width:>4} batch {batch:>4}: temp manual "
            f"{row['manual']['temp_bytes']:>11,} B, autodiff "
            f"{row['autodiff']['temp_bytes']:>11,} B"
        )
    worse = [r for r in rows if r["manual"]["temp_bytes"] > r["autodiff"]["temp_bytes"]]
    print(f"  manual temp > autodiff temp at {len(worse)} of {len(rows)} points")
    return {"rows": rows, "manual_temp_worse": len(worse), "points": len(rows)}
