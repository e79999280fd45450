"""The MNIST-1D paper's MLP recipe over many seeds: wall time and test accuracy.

40-100-100-10 ReLU, softmax cross-entropy, Adam 1e-2, batch 100, 6000 steps, float32
(Greydanus & Kobak), trained over 32 seeds at once with manual and with
automatic gradients; the issue's target is ≤ 20 s on 2 CPU cores.
"""

from __future__ import annotations

import jax
import numpy as np
import optax

import jaxprop as jp
from benchmarks._common import median, timed

#: (seeds, steps) per size.
SIZES = {"full": (32, 6000), "quick": (4, 300), "smoke": (2, 20)}


def bench_mnist1d(size: str, repeats: int) -> dict:
    """The MNIST-1D paper's MLP recipe over 32 seeds, wall time."""
    n_seeds, steps = SIZES[size]
    data = jp.data.mnist1d()
    net = jp.MLP(
        (40, 100, 100, 10), "relu", "identity", "softmax_cross_entropy", "mean"
    )
    keys = jax.random.split(jax.random.key(0), n_seeds)
    adam = optax.adam(1e-2)

    last = {}  # each contender's latest result, for the accuracies

    def contender(grad):
        def run():
            last[grad] = jp.train_seeds(
                net,
                keys,
                data.x,
                data.y,
                adam,
                steps,
                batch_size=100,
                grad=grad,
                dtype="float32",
                log_every=steps // 10 if steps % 10 == 0 else 1,
                eval_data=(data.x_test, data.y_test),
            )
            return last[grad]

        return run

    rows = []
    for grad, (first, times) in timed(
        {g: contender(g) for g in ("manual", "autodiff")}, repeats
    ).items():
        accuracy = jp.summarize(np.asarray(last[grad].eval_accuracy[:, -1]))
        seconds = median(times)
        rows.append(
            {
                "grad": grad,
                "first_call_s": first,
                "median_s": seconds,
                "times_s": times,
                "test_accuracy": accuracy._asdict(),
            }
        )
        print(
            f"  {grad:>8}: {seconds:.1f} s steady ({first:.1f} s first call); "
            f"test accuracy {accuracy}"
        )
    return {"n_seeds": n_seeds, "steps": steps, "batch_size": 100, "rows": rows}
