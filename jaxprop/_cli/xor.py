"""The reference document's XOR example, reproduced: ``jaxprop xor``.

Trains :mod:`jaxprop.reference`'s network from the reference's initial values
(NumPy seed 42) with η = 0.1 for 10000 epochs, in float64 unless ``--float32``.
Prints the last epoch's forward-pass outputs (the reference prints
[[0.06029012] [0.94447222] [0.944367] [0.05997169]]) and the gradient-check table.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import reference
from .._checks.grads import check_grads
from ..data import xor
from .errors import OK, user_errors

DESCRIPTION = __doc__.split("\n\n")[0]


def command(args) -> int:
    """Checks the arguments (a mistake is one line), then trains and prints."""
    with user_errors("xor"):
        check_arguments(args)
    run(args)
    return OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--epochs``, ``--eta``, ``--seed`` and ``--float32``."""
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
    params0 = reference.reference_params(args.seed, dtype)

    start = time.perf_counter()
    params, y_hat, losses = jax.block_until_ready(
        reference.train(params0, x, y, args.eta, args.epochs)
    )
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(reference.train(params0, x, y, args.eta, args.epochs))
    steady = time.perf_counter() - start

    y_hat = np.asarray(y_hat)
    print("Final Predicted Output:")
    print(y_hat)
    print(
        f"loss: first epoch {float(losses[0]):.6f}, last epoch {float(losses[-1]):.6f}"
    )
    if (args.epochs, args.eta, args.seed) == (10000, 0.1, 42):
        diff = float(np.max(np.abs(y_hat - reference.REFERENCE_OUTPUT)))
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
    print(check_grads(reference.NET, params0, x, y))
    print("Gradient check at the trained parameters:")
    print(check_grads(reference.NET, params, x, y))
    return y_hat


def main(argv=None) -> np.ndarray:
    """``python scripts/xor.py [--epochs N] [--eta ETA] [--seed S] [--float32]``."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
    except ValueError as e:
        parser.error(str(e))
    return run(args)
