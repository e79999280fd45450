"""Gradient agreement: manual vs autodiff vs finite differences, per layer.

For every network of the grid (depth × width × activation × cost) and in
float32 and float64, the manual gradient ``net.backprop`` is compared with
``jax.grad(net.loss)`` and with central differences ``jp.numerical_grad``. The
error of a parameter array is normalized by that array's scale,

    err = max |g_manual − g_ref| / max |g_ref|,

which, unlike an elementwise relative error, does not blow up on entries that
are zero up to rounding (dead ReLUs, saturated sigmoids). The verdict is
``jp.check_grads``'s against autodiff, at its dtype tolerance (finite
differences are reported, not judged: in float32 their own error, ~1e-2 across a
ReLU kink, exceeds any useful tolerance).
"""

from __future__ import annotations

import itertools

import jax
import numpy as np

import jaxprop as jp

#: (cost, output activation, target kind) of each cost in the grid.
COSTS = {
    "mse": ("identity", "rows"),
    "binary_cross_entropy": ("sigmoid", "bits"),
    "softmax_cross_entropy": ("identity", "labels"),
}
N_IN, N_OUT, BATCH = 5, 3, 8

SIZES = {
    "full": {
        "depths": (1, 3, 8),
        "widths": (1, 32),
        "activations": ("sigmoid", "tanh", "relu"),
        "costs": tuple(COSTS),
    },
    "quick": {
        "depths": (2,),
        "widths": (8,),
        "activations": ("tanh", "relu"),
        "costs": ("mse", "softmax_cross_entropy"),
    },
    "smoke": {
        "depths": (2,),
        "widths": (4,),
        "activations": ("tanh",),
        "costs": ("mse", "softmax_cross_entropy"),
    },
}


def make_case(depth, width, activation, cost, dtype, seed=0):
    """(net, params, x (8, 5), y) with targets of the kind the cost takes."""
    output_activation, kind = COSTS[cost]
    sizes = (N_IN, *(width,) * depth, N_OUT)
    net = jp.MLP(sizes, activation, output_activation, cost, "mean")
    k_params, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = net.init(k_params, scheme="glorot", dtype=dtype)
    x = jax.random.normal(k_x, (BATCH, N_IN), dtype)
    if kind == "labels":
        y = jax.random.randint(k_y, (BATCH,), 0, N_OUT)
    elif kind == "bits":
        y = jax.random.bernoulli(k_y, 0.5, (BATCH, N_OUT)).astype(dtype)
    else:
        y = jax.random.normal(k_y, (BATCH, N_OUT), dtype)
    return net, params, x, y


def scaled_errors(manual, reference) -> list[float]:
    """max |m − r| / max |r| of each array, in the order of ``jax.tree.leaves``."""
    errors = []
    for m, r in zip(jax.tree.leaves(manual), jax.tree.leaves(reference), strict=True):
        m, r = np.asarray(m, np.float64), np.asarray(r, np.float64)
        scale = np.abs(r).max(initial=0.0)
        errors.append(float(np.abs(m - r).max(initial=0.0) / scale) if scale else 0.0)
    return errors


def bench_agreement(size: str, repeats: int) -> dict:
    """Worst per-layer errors of the manual gradient against both references."""
    del repeats  # deterministic
    s = SIZES[size]
    rows = []
    for dtype in ("float32", "float64"):
        for depth, width, activation, cost in itertools.product(
            s["depths"], s["widths"], s["activations"], s["costs"]
        ):
            net, params, x, y = make_case(depth, width, activation, cost, dtype)
            manual = net.backprop(params, x, y)
            autodiff = jax.grad(net.loss)(params, x, y)
            numeric = jp.numerical_grad(net, params, x, y)
            vs_autodiff = scaled_errors(manual, autodiff)
            vs_numeric = scaled_errors(manual, numeric)
            report = jp.check_grads(net, params, x, y, numeric=False)
            jax.clear_caches()  # one program per network: do not keep them all
            rows.append(
                {
                    "dtype": dtype,
                    "depth": depth,
                    "width": width,
                    "activation": activation,
                    "cost": cost,
                    # leaves alternate w, b per layer: layer l is leaves 2l, 2l+1
                    "per_layer_autodiff": [
                        max(vs_autodiff[2 * l : 2 * l + 2]) for l in range(net.n_layers)
                    ],
                    "per_layer_numeric": [
                        max(vs_numeric[2 * l : 2 * l + 2]) for l in range(net.n_layers)
                    ],
                    "passed": report.passed,
                }
            )
    table = []
    for dtype in ("float32", "float64"):
        for cost in s["costs"]:
            these = [r for r in rows if r["dtype"] == dtype and r["cost"] == cost]
            worst_ad = max(these, key=lambda r: max(r["per_layer_autodiff"]))
            worst_nu = max(these, key=lambda r: max(r["per_layer_numeric"]))
            entry = {
                "dtype": dtype,
                "cost": cost,
                "networks": len(these),
                "worst_autodiff": max(worst_ad["per_layer_autodiff"]),
                "worst_autodiff_at": _label(worst_ad),
                "worst_numeric": max(worst_nu["per_layer_numeric"]),
                "worst_numeric_at": _label(worst_nu),
                "passed": sum(r["passed"] for r in these),
            }
            table.append(entry)
            print(
                f"  {dtype} {cost:>21}: worst vs autodiff "
                f"{entry['worst_autodiff']:.1e} ({entry['worst_autodiff_at']}), vs "
                f"finite differences {entry['worst_numeric']:.1e} "
                f"({entry['worst_numeric_at']}); {entry['passed']}/{len(these)} pass"
            )
    return {"batch": BATCH, "n_in": N_IN, "n_out": N_OUT, "rows": rows, "worst": table}


def _label(row: dict) -> str:
    return f"{row['activation']}, depth {row['depth']}, width {row['width']}"
