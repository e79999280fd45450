"""Credit-assignment rules against backprop: step time, and many seeds.

Two measurements, both relative to ``jp.rules.backprop()`` in the same run:

- **Step time**: one training step, ``rule.value_and_grads`` followed by an
  ``optax.sgd`` update (the rule state carried from step to step, as Kolen-Pollack
  learns its feedback), on the step-time study's network ``(32, w × depth, 10)``
  (ReLU, softmax cross-entropy, mean, float32; ``steps.make_problem``) over a
  width × depth × batch grid. Timed as ``steps`` times: k steps inside one
  compiled ``lax.fori_loop`` (k calibrated on backprop), the contenders' repeats
  interleaved, time per step = median call time / k; the ratio at a point is the
  rule's median over backprop's. ``jp.rules.autodiff()`` (``jax.grad``) is timed
  alongside as a reference: its ratio is the noise floor of two programs that
  do the same arithmetic.
- **Many seeds**: XOR (2-2-1 sigmoid, summed mse, SGD 0.1, U[0, 1) initial
  values, float32) trained from many seeds by ``jp.train_seeds(..., rule=...)``
  with the default strategy (one XLA device per core under ``python -m
  benchmarks``), seed-epochs/s per rule; the ratio is backprop's rate over the
  rule's (time relative to backprop).

Targets (from the issue): feedback alignment, sign symmetry and Kolen-Pollack
step ≤ 1.05× backprop's; direct feedback alignment ≤ 1.0× at depth ≥ 3; feedback
alignment over 65536 XOR seeds within 1.1× of backprop's time.
"""

from __future__ import annotations

import itertools
import time

import jax
import numpy as np
import optax

import jaxprop as jp
from benchmarks import steps
from benchmarks._common import calibrate, median, timed

LEARNING_RATE = steps.LEARNING_RATE
KP_DECAY = 1e-3
XOR_LEARNING_RATE = 0.1

#: name: the rule (backprop first: every ratio is over it).
RULES = {
    "backprop": jp.rules.backprop(),
    "autodiff": jp.rules.autodiff(),
    "fa": jp.rules.feedback_alignment(),
    "dfa": jp.rules.direct_feedback_alignment(),
    "sign": jp.rules.sign_symmetry(),
    "kp": jp.rules.kolen_pollack(LEARNING_RATE, KP_DECAY),
}
#: The same rules for XOR (Kolen-Pollack's B learns at XOR's learning rate).
XOR_RULES = {
    **RULES,
    "kp": jp.rules.kolen_pollack(XOR_LEARNING_RATE, KP_DECAY),
}
#: The rules that have a target (name: (target ratio, which points)).
STEP_TARGETS = {
    "fa": (1.05, "all"),
    "sign": (1.05, "all"),
    "kp": (1.05, "all"),
    "dfa": (1.0, "depth>=3"),
}
SEEDS_TARGET = ("fa", 1.1)

SIZES = {
    "full": {
        "widths": (64, 256, 1024),
        "depths": (1, 3),
        "batches": (1, 16, 128, 1024),
        "target_s": 0.02,
        "seeds": 65536,
        "epochs": 2000,
        "xor_rules": tuple(XOR_RULES),
    },
    "quick": {
        "widths": (64, 512),
        "depths": (1, 3),
        "batches": (1, 128),
        "target_s": 0.005,
        "seeds": 4096,
        "epochs": 200,
        "xor_rules": tuple(XOR_RULES),
    },
    "smoke": {
        "widths": (8,),
        "depths": (3,),
        "batches": (4,),
        "target_s": 0.001,
        "seeds": 16,
        "epochs": 10,
        # each train_seeds program takes seconds to compile: the targeted pair
        "xor_rules": ("backprop", "fa"),
    },
}

_SGD = optax.sgd(LEARNING_RATE)  # one object: a new one would be a new program
_XOR_SGD = optax.sgd(XOR_LEARNING_RATE)


def grid(size: str) -> list[tuple[int, int, int]]:
    """(depth, width, batch) points of the step-time grid."""
    s = SIZES[size]
    return list(itertools.product(s["depths"], s["widths"], s["batches"]))


def make_step(net: jp.MLP, rule: jp.rules.Rule):
    """``step(carry, x, y) -> (loss, carry)``, carry = (params, opt_state,
    rule_state): the rule's loss and update direction, then SGD."""

    def step(carry, x, y):
        params, opt_state, rule_state = carry
        loss, grads, rule_state = rule.value_and_grads(net, params, rule_state, x, y)
        updates, opt_state = _SGD.update(grads, opt_state, params)
        return loss, (optax.apply_updates(params, updates), opt_state, rule_state)

    return step


def make_loop(net: jp.MLP, rule: jp.rules.Rule):
    """``loop(carry, x, y, k) -> carry`` after k steps, one jitted program."""
    step = make_step(net, rule)

    @jax.jit
    def loop(carry, x, y, k):
        return jax.lax.fori_loop(0, k, lambda _, c: step(c, x, y)[1], carry)

    return loop


def initial_carry(net: jp.MLP, rule: jp.rules.Rule, params):
    """(params, opt_state, rule_state) at the start, the rule state from a fixed key."""
    return params, _SGD.init(params), rule.init(jax.random.key(1), net, params)


def _summary(rows: list[dict], name: str, depth_min: int = 1) -> dict:
    ratios = np.array([r["ratio"][name] for r in rows if r["depth"] >= depth_min])
    if not ratios.size:
        return {"median_ratio": None, "max_ratio": None, "points": 0}
    return {
        "median_ratio": float(np.median(ratios)),
        "max_ratio": float(ratios.max()),
        "points": int(ratios.size),
    }


def bench_rule_steps(size: str, repeats: int) -> dict:
    """Jitted steady-state step time of every rule, over backprop's, on a grid."""
    s = SIZES[size]
    rows = []
    for depth, width, batch in grid(size):
        net, params, x, y = steps.make_problem(width, depth, batch)
        compiled, compile_s, carry = {}, {}, {}
        for name, rule in RULES.items():
            carry[name] = initial_carry(net, rule, params)
            start = time.perf_counter()
            compiled[name] = make_loop(net, rule).lower(carry[name], x, y, 1).compile()
            compile_s[name] = time.perf_counter() - start
        k = calibrate(
            lambda k: compiled["backprop"](carry["backprop"], x, y, k), s["target_s"]
        )
        results = timed(
            {
                name: (lambda name=name: compiled[name](carry[name], x, y, k))
                for name in RULES
            },
            repeats,
        )
        row = {"depth": depth, "width": width, "batch": batch, "steps_per_call": k}
        row["step_s"] = {n: median(results[n][1]) / k for n in RULES}
        row["times_s"] = {n: [t / k for t in results[n][1]] for n in RULES}
        row["compile_s"] = compile_s
        base = row["step_s"]["backprop"]
        row["ratio"] = {n: row["step_s"][n] / base for n in RULES if n != "backprop"}
        rows.append(row)
        print(
            f"  depth {depth} width {width:>4} batch {batch:>4}: backprop "
            f"{base * 1e6:9.1f} µs; /backprop "
            + ", ".join(f"{n} {v:.3f}" for n, v in row["ratio"].items())
        )
    summary = {}
    for name in RULES:
        if name == "backprop":
            continue
        summary[name] = {
            "all": _summary(rows, name),
            "depth>=3": _summary(rows, name, depth_min=3),
        }
        target = STEP_TARGETS.get(name)
        if target:
            bound, where = target
            s_ = summary[name][where]
            over = [
                r
                for r in rows
                if (where == "all" or r["depth"] >= 3) and r["ratio"][name] > bound
            ]
            summary[name]["target"] = {
                "ratio": bound,
                "points": where,
                "median_met": s_["median_ratio"] <= bound,
                "points_over": len(over),
            }
        a, d = summary[name]["all"], summary[name]["depth>=3"]
        t = summary[name].get("target")
        print(
            f"  {name}/backprop: median {a['median_ratio']:.3f}, max "
            f"{a['max_ratio']:.3f}; depth >= 3: median {d['median_ratio']:.3f}, max "
            f"{d['max_ratio']:.3f}"
            + (
                f"; target <= {t['ratio']} ({t['points']}): median "
                f"{'met' if t['median_met'] else 'MISSED'}, "
                f"{t['points_over']} point(s) over"
                if t
                else ""
            )
        )
    return {
        "network": "(32, width x depth, 10) ReLU, softmax cross-entropy (mean), "
        f"float32; optax.sgd({LEARNING_RATE}); kolen_pollack({LEARNING_RATE}, "
        f"{KP_DECAY})",
        "rules": list(RULES),
        "repeats": repeats,
        "rows": rows,
        "summary": summary,
    }


def make_xor(name: str, n_seeds: int, epochs: int):
    """``run() -> TrainResult``: ``jp.train_seeds`` of XOR with the named rule."""
    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
    x, y = jp.data.xor()
    keys = jax.random.split(jax.random.key(0), n_seeds)
    rule = XOR_RULES[name]
    return lambda: jp.train_seeds(
        net,
        keys,
        x,
        y,
        _XOR_SGD,
        epochs,
        scheme="uniform01",
        rule=rule,
        dtype="float32",
        log_every=epochs,
    )


def bench_rule_seeds(size: str, repeats: int) -> dict:
    """Seed-epochs/s of ``jp.train_seeds`` over many XOR seeds, per rule."""
    s = SIZES[size]
    n_seeds, epochs = s["seeds"], s["epochs"]
    results = timed(
        {name: make_xor(name, n_seeds, epochs) for name in s["xor_rules"]}, repeats
    )
    base = median(results["backprop"][1])
    rows = []
    for name, (first, times) in results.items():
        rows.append(
            {
                "rule": name,
                "first_call_s": first,
                "median_s": median(times),
                "times_s": times,
                "seed_epochs_per_s": n_seeds * epochs / median(times),
                "ratio": median(times) / base,
            }
        )
        print(
            f"  {n_seeds} XOR seeds x {epochs} epochs, {name:>8}: "
            f"{rows[-1]['seed_epochs_per_s']:.3g} seed-epochs/s, "
            f"time/backprop {rows[-1]['ratio']:.3f}"
        )
    name, bound = SEEDS_TARGET
    ratio = next(r["ratio"] for r in rows if r["rule"] == name)
    return {
        "network": "XOR 2-2-1 sigmoid, mse (sum), full batch of 4, SGD 0.1, "
        f"U[0, 1) init, float32; kolen_pollack({XOR_LEARNING_RATE}, {KP_DECAY})",
        "n_seeds": n_seeds,
        "epochs": epochs,
        "devices": len(jax.devices()),
        "rows": rows,
        "target": {"rule": name, "ratio": bound, "met": ratio <= bound},
    }


def bench_rules(size: str, repeats: int) -> dict:
    """The ``rules`` study: step time over a grid, then many XOR seeds."""
    print(" step time, rule / backprop:")
    step_time = bench_rule_steps(size, repeats)
    jax.clear_caches()  # the grid's programs are done with
    print(" many seeds:")
    return {"step_time": step_time, "seeds": bench_rule_seeds(size, repeats)}
