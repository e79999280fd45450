"""The MNIST-1D paper's MLP over many seeds: test accuracy with a confidence interval.

40-100-100-10 ReLU network, softmax cross-entropy, Adam (lr 1e-2), batch 100,
6000 steps, manual gradients, one compiled program for all seeds. Greydanus &
Kobak report 68% test accuracy for this MLP.

    python scripts/mnist1d.py [--seeds 32] [--steps 6000]
"""

from __future__ import annotations

import argparse
import time

import _setup  # noqa: F401  (jp.use_all_cores(), before jax starts)
import jax
import numpy as np
import optax

import jaxprop as jp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grad", choices=jp._engine.train.GRADS, default="manual")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.steps < 1:
        parser.error("--seeds and --steps must be positive")

    data = jp.data.mnist1d()
    net = jp.MLP(
        (40, 100, 100, 10), "relu", "identity", "softmax_cross_entropy", "mean"
    )
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    log_every = 100 if args.steps % 100 == 0 else 1
    start = time.perf_counter()
    result = jp.train_seeds(
        net,
        keys,
        data.x,
        data.y,
        optax.adam(1e-2),
        args.steps,
        batch_size=100,
        grad=args.grad,
        log_every=log_every,
        eval_data=(data.x_test, data.y_test),
        dtype="float32",
    )
    accuracy = np.asarray(jax.block_until_ready(result.eval_accuracy)[:, -1])
    seconds = time.perf_counter() - start
    print(
        f"MNIST-1D MLP 40-100-100-10 ReLU, Adam 1e-2, batch 100, {args.steps} steps, "
        f"{args.seeds} seeds, {args.grad} gradients: {seconds:.1f} s with "
        f"compilation on {len(jax.devices())} {jax.devices()[0].platform} device(s)"
    )
    print(f"test accuracy: {jp.summarize(accuracy)}")
    print(f"diverged: {int(np.sum(result.diverged))} of {args.seeds}; published: 68%")
    return accuracy


if __name__ == "__main__":
    main()
