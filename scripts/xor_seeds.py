"""How often does a sigmoid 2-h-1 network solve XOR? Many seeds, one program each.

For each hidden width h: uniform01 initialization (as the reference program's
np.random.rand), η = 0.1 gradient descent on the summed ½‖ŷ − y‖², 10000 epochs,
manual gradients; "solved" = every output on the correct side of 0.5 after
training. Prints the fraction solved with a 95% Wilson interval.

    python scripts/xor_seeds.py [--seeds 1024] [--hidden 2 3 4 8] [--epochs 10000]
"""

from __future__ import annotations

import argparse
import time

import _setup  # noqa: F401  (jp.use_all_cores(), before jax starts)
import jax
import jax.numpy as jnp
import optax

import jaxprop as jp


def run(hidden: int, n_seeds: int, epochs: int, seed: int, dtype: str):
    """Trains n_seeds networks 2-hidden-1; returns (result, solved flags, seconds)."""
    net = jp.MLP((2, hidden, 1), "sigmoid", "sigmoid", "mse", "sum")
    x, y = jp.data.xor()
    keys = jax.random.split(jax.random.key(seed), n_seeds)
    start = time.perf_counter()
    result = jp.train_seeds(
        net,
        keys,
        x,
        y,
        optax.sgd(0.1),
        epochs,
        scheme="uniform01",
        log_every=epochs // 10 if epochs % 10 == 0 else 1,
        dtype=dtype,
    )
    solved = jax.vmap(lambda p: jp.solved(net, p, x, y))(result.params)
    solved = jax.block_until_ready(solved)
    return result, solved, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1024)
    parser.add_argument("--hidden", type=int, nargs="+", default=[2, 3, 4, 8])
    parser.add_argument("--epochs", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--float32",
        action="store_true",
        help="train in float32 (default float64, as NumPy)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.epochs < 1 or min(args.hidden) < 1:
        parser.error("--seeds, --epochs and --hidden must be positive")
    dtype = "float32" if args.float32 else "float64"
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    print(
        f"XOR, sigmoid 2-h-1, uniform01 init, SGD η=0.1, {args.epochs} epochs, "
        f"{args.seeds} seeds, {dtype}, {len(jax.devices())} "
        f"{jax.devices()[0].platform} device(s)"
    )
    print(
        f"{'h':>3} | {'solved (95% Wilson CI)':<44} | {'diverged':>8} | "
        f"{'median final loss':>17} | time"
    )
    rows = {}
    for h in args.hidden:
        result, solved, seconds = run(h, args.seeds, args.epochs, args.seed, dtype)
        frac = jp.proportion(solved)
        loss = jp.summarize(result.losses[:, -1])
        print(
            f"{h:>3} | {frac!s:<44} | {int(jnp.sum(result.diverged)):>8} | "
            f"{loss.median:>17.4g} | {seconds:.1f} s"
        )
        rows[h] = frac
    return rows


if __name__ == "__main__":
    main()
