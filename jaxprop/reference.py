"""The reference document's XOR example, reproduced: ``jaxprop xor``.

Sigmoid 2-2-1 network, initial values drawn with NumPy after seed 42 in the
reference's order (W_hidden, W_out, b_hidden, b_out), L = ½ Σ (y − ŷ)² summed over
the batch, plain gradient descent with η = 0.1 for 10000 epochs, the gradient from
the hand-written δ backward pass, the whole loop one jit-compiled ``lax.scan``.
Prints the last epoch's forward-pass outputs (the reference prints
[[0.06029012] [0.94447222] [0.944367] [0.05997169]]) and the gradient-check table.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from ._checks.grads import check_grads
from ._core.params import Layer, Params
from ._data import xor
from ._network import MLP

#: What the reference program prints after 10000 epochs with seed 42.
REFERENCE_OUTPUT = np.array([[0.06029012], [0.94447222], [0.944367], [0.05997169]])

NET = MLP(
    sizes=(2, 2, 1),
    activation="sigmoid",
    output_activation="sigmoid",
    cost="mse",
    reduction="sum",
)


def initial_weights(seed: int = 42):
    """The reference's initial values, drawn in its order with ``np.random.rand``.

    Returns:
      ``(w_hidden (2, 2), w_out (2, 1), b_hidden (1, 2), b_out (1, 1))``.
    """
    rng = np.random.RandomState(seed)  # the same stream as np.random.seed(seed)
    return rng.rand(2, 2), rng.rand(2, 1), rng.rand(1, 2), rng.rand(1, 1)


def reference_params(seed: int = 42, dtype=jnp.float64) -> Params:
    """The reference program's initial values as jaxprop params."""
    w_hidden, w_out, b_hidden, b_out = initial_weights(seed)
    return (
        Layer(jnp.asarray(w_hidden, dtype), jnp.asarray(b_hidden[0], dtype)),
        Layer(jnp.asarray(w_out, dtype), jnp.asarray(b_out[0], dtype)),
    )


@functools.partial(jax.jit, static_argnames=("epochs",))
def train(params: Params, x: jax.Array, y: jax.Array, eta: float, epochs: int):
    """Full-batch gradient descent on NET with manual gradients.

    Args:
      params: initial parameters.
      x: (4, 2) inputs; y: (4, 1) targets.
      eta: learning rate η.
      epochs: number of updates.

    Returns:
      ``(params, y_hat, losses)``: final params, the last epoch's forward-pass
      output (4, 1) (taken before that epoch's update, as the reference prints
      it) and the loss of every epoch (epochs,).
    """

    def epoch(params, _):
        y_hat, cache = NET.forward_with_cache(params, x)
        grads = NET.backward(params, cache, y)
        params = jax.tree.map(lambda p, g: p - eta * g, params, grads)
        loss = NET.loss_from_cache(cache, y)
        return params, (y_hat, loss)

    params, (y_hats, losses) = jax.lax.scan(epoch, params, length=epochs)
    return params, y_hats[-1], losses


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=10000, help="default 10000")
    parser.add_argument("--eta", type=float, default=0.1, help="learning rate η")
    parser.add_argument("--seed", type=int, default=42, help="NumPy seed (default 42)")
    parser.add_argument(
        "--float32",
        action="store_true",
        help="train in float32 (default float64, as NumPy)",
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Raises ValueError on a bad argument (before anything is compiled)."""
    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1; got {args.epochs}.")
    if not np.isfinite(args.eta) or args.eta <= 0:
        raise ValueError(f"--eta must be a positive number; got {args.eta}.")
    if args.seed < 0:
        raise ValueError(f"--seed must be ≥ 0; got {args.seed}.")


def run(args: argparse.Namespace) -> np.ndarray:
    """Trains, prints the reference comparison and the gradient checks.

    Returns:
      The last epoch's outputs (4, 1).
    """
    check_arguments(args)
    dtype = jnp.float32 if args.float32 else jnp.float64
    if dtype == jnp.float64:
        jax.config.update("jax_enable_x64", True)
    x, y = (jnp.asarray(a, dtype) for a in xor(np.float64))
    params0 = reference_params(args.seed, dtype)

    start = time.perf_counter()
    params, y_hat, losses = jax.block_until_ready(
        train(params0, x, y, args.eta, args.epochs)
    )
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(train(params0, x, y, args.eta, args.epochs))
    steady = time.perf_counter() - start

    y_hat = np.asarray(y_hat)
    print("Final Predicted Output:")
    print(y_hat)
    print(
        f"loss: first epoch {float(losses[0]):.6f}, last epoch {float(losses[-1]):.6f}"
    )
    if (args.epochs, args.eta, args.seed) == (10000, 0.1, 42):
        diff = float(np.max(np.abs(y_hat - REFERENCE_OUTPUT)))
        print(
            f"max |jaxprop - reference printout| = {diff:.2e} "
            f"({'matches' if diff <= 1e-3 else 'DOES NOT MATCH'} to 1e-3)"
        )
    print(
        f"{args.epochs} epochs in {steady * 1e3:.1f} ms "
        f"({args.epochs / steady:,.0f} epochs/s; first call with compilation "
        f"{first:.2f} s) on {jax.devices()[0].device_kind}, {dtype.__name__}"
    )
    print()
    print("Gradient check at the initial parameters:")
    print(check_grads(NET, params0, x, y))
    print("Gradient check at the trained parameters:")
    print(check_grads(NET, params, x, y))
    return y_hat


def main(argv=None) -> np.ndarray:
    """``python scripts/xor.py [--epochs N] [--eta ETA] [--seed S] [--float32]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
    except ValueError as e:
        parser.error(str(e))
    return run(args)
