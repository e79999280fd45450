"""Utilization: a large MLP's training step against the measured matmul ceiling.

The step is that of ``784-1024-1024-1024-10`` (ReLU, softmax cross-entropy,
batch 512, float32, SGD), k steps in one compiled loop, with manual and with
automatic gradients. Its achieved GFLOP/s counts the matmul FLOPs of the forward
and backward passes (``MLP.flops``). The ceiling is measured in the same run: the
best GFLOP/s of a jitted matmul over the shapes the step itself multiplies and a
large square one, float32, default precision, on the same device.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from benchmarks import steps
from benchmarks._common import calibrate, median, timed

SIZES = {
    "full": {"sizes": (784, 1024, 1024, 1024, 10), "batch": 512, "target_s": 0.2},
    "quick": {"sizes": (784, 1024, 1024, 1024, 10), "batch": 512, "target_s": 0.05},
    "smoke": {"sizes": (64, 128, 10), "batch": 64, "target_s": 0.001},
}


def _matmul_shapes(sizes, batch) -> list[tuple[int, int, int]]:
    """(m, k, n) of the step's products and of one large square product."""
    shapes = {(2048, 2048, 2048)} if batch >= 512 else set()
    for n_in, n_out in itertools.pairwise(sizes):
        shapes.add((batch, n_in, n_out))  # z = a W
        shapes.add((n_in, batch, n_out))  # ∂W = aᵀ δ
        shapes.add((batch, n_out, n_in))  # δ Wᵀ
    return sorted(shapes)


def matmul_ceiling(sizes, batch, repeats: int, target_s: float) -> dict:
    """Best GFLOP/s of a jitted float32 matmul, per shape and overall."""

    @jax.jit
    def products(a, b, k):
        # 2k products of a's and b's shape: each iteration scales a by a value
        # the compiler cannot know (so nothing is hoisted out of the loop) and
        # makes two independent products, which XLA may run concurrently, as it
        # may the independent products of a training step.
        def body(i, acc):
            s = 1.0 + acc * 1e-30 + i.astype(jnp.float32) * 1e-7
            c1 = (a * s) @ b
            c2 = (a * (2 * s)) @ b
            return acc + c1[0, 0] + c2[0, 0]

        return jax.lax.fori_loop(0, k, body, jnp.float32(0))

    rows = []
    for m, k_dim, n in _matmul_shapes(sizes, batch):
        a = jax.random.normal(jax.random.key(0), (m, k_dim), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (k_dim, n), jnp.float32)
        k = calibrate(lambda k, a=a, b=b: products(a, b, k), target_s)
        (_, times) = timed(
            {"matmul": lambda a=a, b=b, k=k: products(a, b, k)}, repeats
        )["matmul"]
        gflops = 2 * (2 * m * k_dim * n) * k / median(times) / 1e9
        rows.append({"m": m, "k": k_dim, "n": n, "gflops": gflops})
        print(f"  matmul ({m}x{k_dim}) @ ({k_dim}x{n}): {gflops:.1f} GFLOP/s")
    return {"rows": rows, "gflops": max(r["gflops"] for r in rows)}


def bench_utilization(size: str, repeats: int) -> dict:
    """The large MLP's training step, GFLOP/s and fraction of the ceiling."""
    s = SIZES[size]
    sizes, batch = s["sizes"], s["batch"]
    ceiling = matmul_ceiling(sizes, batch, repeats, s["target_s"])
    net = steps.jp.MLP(sizes, "relu", "identity", "softmax_cross_entropy", "mean")
    k_params, k_x, k_y = jax.random.split(jax.random.key(0), 3)
    params = net.init(k_params, dtype="float32")
    x = jax.random.normal(k_x, (batch, sizes[0]), jnp.float32)
    y = jax.random.randint(k_y, (batch,), 0, sizes[-1])
    loops = {g: steps.make_loop(net, g) for g in steps.GRADS}
    k = calibrate(lambda k: loops["manual"](params, x, y, k), s["target_s"])
    results = timed(
        {g: (lambda g=g: loops[g](params, x, y, k)) for g in steps.GRADS}, repeats
    )
    flops = net.flops(batch)
    out = {
        "network": list(sizes),
        "batch": batch,
        "flops_per_step": flops,
        "steps_per_call": k,
        "ceiling": ceiling,
    }
    for g in steps.GRADS:
        step_s = median(results[g][1]) / k
        gflops = flops / step_s / 1e9
        out[g] = {
            "step_s": step_s,
            "times_s": [t / k for t in results[g][1]],
            "gflops": gflops,
            "fraction_of_ceiling": gflops / ceiling["gflops"],
        }
        print(
            f"  step, {g:>8}: {step_s * 1e3:.2f} ms, {gflops:.1f} GFLOP/s = "
            f"{100 * gflops / ceiling['gflops']:.0f}% of the "
            f"{ceiling['gflops']:.1f} GFLOP/s ceiling"
        )
    return out
