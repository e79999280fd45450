"""MNIST-1D's ConvBase under every credit-assignment rule, over many seeds.

ConvBase (greydanus/mnist1d): Conv 1→25 k5 s2 p1, 25→25 k3 s2 p1, 25→25 k3
s2 p1, ReLU after each, flatten, Dense 125→10; softmax cross-entropy, batch
100. Backprop trains with the published recipe (Adam 1e-2); feedback
alignment (fa), direct feedback alignment (dfa) and sign symmetry (sign) with
Adam at each learning rate of --adam-lrs (default ADAM_LRS), Kolen-Pollack
(kp) with its paired SGD (``jp.rules.kolen_pollack_sgd``, weight decay
KP_DECAY per step) at each of --sgd-lrs (default SGD_LRS). The best learning
rate of each rule has the highest mean accuracy on a validation split (the
last N_VAL of the 4000 training examples, held out of training for every
rule); the table reports test accuracy (1000 examples) at it: mean and 95% CI
over seeds. Each rule's seeds and learning rates are
one compiled program (one ``jp.train_seeds`` call); the same keys for every
rule (paired seeds).

Alignment: the angle between each rule's weight update and backprop's per
layer (``jp.Alignment.grad``), on 1024 training examples, every
--align-every steps.

Output in --out DIR: results.md (also printed), results.json and
conv-mnist1d.png (test accuracy vs step per rule; ∂W angle per conv layer vs
step; median and IQR across seeds).

    python scripts/conv_mnist1d.py [--steps 6000] [--bp-seeds 32] [--seeds 16]
        [--rules backprop fa dfa sign kp] [--adam-lrs ...] [--sgd-lrs ...]
        [--out DIR]
    python scripts/conv_mnist1d.py --steps 20 --bp-seeds 2 --seeds 2 --n-train 400
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _conv_study as cs  # first: sets XLA_FLAGS before jax is imported
import jax
import numpy as np

import jaxprop as jp

ADAM_LRS = (1e-3, 3e-3, 1e-2)
SGD_LRS = (0.03, 0.1, 0.3)
KP_DECAY = 1e-3
BP_LR = 1e-2  # greydanus/mnist1d's ConvBase recipe
N_VAL = 500
BATCH = 100
RULES = ("backprop", "fa", "dfa", "sign", "kp")
PUBLISHED = (
    "greydanus/mnist1d, ConvBase with backprop: 94% test accuracy (README); "
    "its notebook logs 92.3% at step 6000"
)


def conv_base() -> jp.Network:
    conv = jp.layers.Conv
    return jp.Network(
        input_shape=(40, 1),
        layers=(
            conv(25, kernel_size=5, stride=2, padding=1),
            conv(25, kernel_size=3, stride=2, padding=1),
            conv(25, kernel_size=3, stride=2, padding=1),
            jp.layers.Flatten(),
            jp.layers.Dense(10),
        ),
        activation="relu",
        output_activation="identity",
        cost="softmax_cross_entropy",
        reduction="mean",
    )


def rule_setup(name: str, adam_lrs=ADAM_LRS, sgd_lrs=SGD_LRS):
    """(rule, optimizer, learning rates, hparams grid) of one rule."""
    if name == "kp":
        lrs = np.asarray(sgd_lrs)
        return (
            jp.rules.kolen_pollack(lrs[0], KP_DECAY),
            jp.rules.kolen_pollack_sgd(lrs[0], KP_DECAY),
            lrs,
            {"optimizer.learning_rate": lrs, "rule.learning_rate": lrs},
        )
    lrs = np.asarray([BP_LR] if name == "backprop" else adam_lrs)
    return cs.RULES[name](), cs.adam(lrs[0]), lrs, {"learning_rate": lrs}


def table(results, lrs, steps) -> str:
    lines = [
        "| rule | seeds | lr (best on validation) | test accuracy (mean, 95% CI) "
        "| diverged | validation accuracy per lr | final ∂W angle per conv layer, ° |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in results.items():
        s = cs.summary(run)
        per_lr = " / ".join(
            f"{v:.3f}" for v in np.nanmean(np.nan_to_num(run["val"]), axis=1)
        )
        angles = "–"
        if "align" in run:
            q = cs.quartiles(run["align"][s["best"]][..., -1])[1][:3]
            angles = " / ".join(f"{a:.0f}" for a in q)
        lines.append(
            f"| {name} | {s['seeds']} | {lrs[name][s['best']]:g} | {cs.fmt_acc(s)} "
            f"| {s['diverged']}/{s['seeds']} | {per_lr} | {angles} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--bp-seeds", type=int, default=32, help="backprop's seeds")
    parser.add_argument("--seeds", type=int, default=16, help="each other rule's")
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    parser.add_argument(
        "--adam-lrs",
        type=float,
        nargs="+",
        default=list(ADAM_LRS),
        help="fa, dfa and sign's grid",
    )
    parser.add_argument(
        "--sgd-lrs", type=float, nargs="+", default=list(SGD_LRS), help="kp's grid"
    )
    parser.add_argument("--eval-every", type=int, default=None, help="default steps/20")
    parser.add_argument(
        "--align-every", type=int, default=None, help="default steps/10"
    )
    parser.add_argument(
        "--n-train", type=int, default=None, help="training examples (default all)"
    )
    parser.add_argument("--out", type=Path, default=Path("conv-mnist1d"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (
        min(args.steps, args.bp_seeds, args.seeds) < 1
        or min([*args.adam_lrs, *args.sgd_lrs]) <= 0
    ):
        parser.error("--steps, --seeds, --bp-seeds and the lrs must be positive")
    eval_every = args.eval_every or max(1, args.steps // 20)
    align_every = args.align_every or max(1, args.steps // 10)
    if args.steps % eval_every or args.steps % align_every or align_every % eval_every:
        parser.error(
            "--eval-every and --align-every must divide --steps, and --eval-every "
            "--align-every"
        )

    full = jp.data.mnist1d(channels_last=True)
    x, y = np.asarray(full.x), np.asarray(full.y)
    if args.n_train is not None:
        x, y = x[: args.n_train], y[: args.n_train]
    n_val = min(N_VAL, len(x) // 4)
    split = jp.data.split(x, y, n_val)  # the last n_val: MNIST-1D's are shuffled
    train, val = (split.x, split.y), (split.x_test, split.y_test)
    test = (np.asarray(full.x_test), np.asarray(full.y_test))
    net = conv_base()
    print(
        f"MNIST-1D ConvBase: {len(train[0])} train / {n_val} validation / "
        f"{len(test[0])} test; {args.steps} steps, batch {BATCH}; {cs.machine()}",
        flush=True,
    )
    results, lrs, seconds = {}, {}, {}
    total = time.perf_counter()
    for name in dict.fromkeys(args.rules):
        rule, optimizer, lrs[name], hparams = rule_setup(
            name, args.adam_lrs, args.sgd_lrs
        )
        n = args.bp_seeds if name == "backprop" else args.seeds
        keys = jax.random.split(jax.random.key(args.seed), n)
        start = time.perf_counter()
        results[name] = cs.train_rule(
            net,
            rule,
            optimizer,
            hparams,
            keys,
            train,
            val,
            test,
            args.steps,
            batch_size=BATCH,
            eval_every=eval_every,
            alignment_every=None if name == "backprop" else align_every,
        )
        seconds[name] = time.perf_counter() - start
        s = cs.summary(results[name])
        print(
            f"  {name:9s} {seconds[name]:7.1f} s  {n} seeds × {len(lrs[name])} lr; "
            f"best lr {lrs[name][s['best']]:g}: test {cs.fmt_acc(s)}",
            flush=True,
        )
    wall = time.perf_counter() - total
    command = " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join(
        [
            "# MNIST-1D ConvBase under each rule",
            "",
            f"Command: `python scripts/conv_mnist1d.py {command}`. {args.steps} "
            f"steps, batch {BATCH}, {len(train[0])} training / {n_val} validation "
            f"/ {len(test[0])} test examples. Adam lrs {args.adam_lrs} (backprop: "
            f"{BP_LR:g}); kp: SGD lrs {args.sgd_lrs}, weight decay {KP_DECAY:g} "
            f"per step. {cs.machine()}. Wall time {wall:.0f} s ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
            + ").",
            "",
            table(results, lrs, args.steps),
            "",
            f"Published: {PUBLISHED}.",
            "",
        ]
    )
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    cs.write_json(
        args.out / "results.json",
        {"steps": args.steps, "wall_s": wall, "rules": cs.to_json(results, lrs)},
    )
    cs.plot(
        results,
        lrs,
        args.out / "conv-mnist1d.png",
        f"MNIST-1D ConvBase, {args.steps} steps",
        n_hidden=3,
    )
    print(f"written to {args.out}/")
    return results


if __name__ == "__main__":
    main()
