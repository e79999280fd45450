"""LeNet-5 on Fashion-MNIST under backprop, FA, sign symmetry and DFA.

sign is ``jp.rules.sign_symmetry`` (δ through sign(W)); sign-usf is biotorch's
uSF, sign(W) scaled to W's initial size (``sign_usf``).

LeNet-5 on 28×28×1 images: Conv 6 k5 SAME, MaxPool 2, Conv 16 k5 VALID,
MaxPool 2, Flatten, Dense 120, Dense 84, Dense 10; ReLU after each
parametrized layer but the last, softmax cross-entropy. The optimizer is
biotorch's for this benchmark: SGD with momentum 0.9 and weight decay 1e-3
(``optax.add_decayed_weights`` before ``optax.sgd``), batch 64, at one
learning rate (--lr, not tuned). Each rule's seeds are one compiled program
(one ``jp.train_seeds`` call), with the same keys for every rule.

biotorch (Sanfiz & Akrout 2021) trains 100 epochs on 32×32 inputs, one seed
per rule; its top-1 test errors for LeNet on Fashion-MNIST are in PUBLISHED.
This script trains far fewer epochs (--epochs) on the 28×28 images.

The images are the files of Debian's ``dataset-fashion-mnist`` package
(``jp.data.fashion_mnist``), or any folder of the four IDX files (--path).

Output in --out DIR: results.md (also printed), results.json and
conv-fashion.png (test accuracy vs step per rule, median and IQR across seeds).

    python scripts/conv_fashion.py [--epochs 2] [--seeds 2] [--lr 0.01]
        [--rules backprop fa sign dfa sign-usf] [--out DIR] [--path DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _conv_study as cs  # first: sets XLA_FLAGS before jax is imported
import jax
import numpy as np
import optax

import jaxprop as jp

RULES = ("backprop", "fa", "sign", "dfa", "sign-usf")
BATCH = 64
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-3
#: biotorch's README, LeNet on Fashion-MNIST, top-1 test error in %.
PUBLISHED = {
    "backprop": 9.2,
    "fa": 13.06,
    "sign": 9.69,
    "dfa": 12.81,
    "sign-usf": 9.69,
}
PUBLISHED_NAMES = {"sign": "uSF", "sign-usf": "uSF"}


def sign_usf():
    r"""biotorch's uSF: sign(W^l) scaled by Glorot's √(2 / (fan_in + fan_out))
    (``jp.rules.sign_symmetry(scaled=True)``).

    ``jp.rules.sign_symmetry()`` sends δ back through sign(W^l), whose entries
    are ±1 where W^l's are about 1/√fan_in; biotorch scales sign(W^l) to W's
    initial size (fan_in = C_in · kernel size, fan_out = C_out · kernel size,
    as torch counts them).
    """
    return jp.rules.sign_symmetry(scaled=True)


def lenet5(activation: str) -> jp.Network:
    layers = jp.layers
    return jp.Network(
        input_shape=(28, 28, 1),
        layers=(
            layers.Conv(6, kernel_size=(5, 5), padding="SAME"),
            layers.MaxPool(2),
            layers.Conv(16, kernel_size=(5, 5)),
            layers.MaxPool(2),
            layers.Flatten(),
            layers.Dense(120),
            layers.Dense(84),
            layers.Dense(10),
        ),
        activation=activation,
        output_activation="identity",
        cost="softmax_cross_entropy",
        reduction="mean",
    )


def sgd(lr: float):
    """biotorch's optimizer: SGD, momentum 0.9, weight decay 1e-3 (L2 in the
    gradient, as torch.optim.SGD's weight_decay)."""
    return optax.chain(
        optax.add_decayed_weights(WEIGHT_DECAY),
        optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=MOMENTUM),
    )


def table(results, lrs) -> str:
    lines = [
        "| rule | seeds | test error, this run (mean; each seed) | diverged "
        "| biotorch, 100 epochs, 1 seed |",
        "|---|---|---|---|---|",
    ]
    for name, run in results.items():
        s = cs.summary(run)
        ref = PUBLISHED_NAMES.get(name, "")
        each = ", ".join(f"{100 * (1 - a):.2f}" for a in run["test"][0, :, -1])
        lines.append(
            f"| {name} | {s['seeds']} | {100 * (1 - s['mean']):.2f}% ({each}) "
            f"| {s['diverged']}/{s['seeds']} | {PUBLISHED[name]}%"
            + (f" ({ref})" if ref else "")
            + " |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--activation", choices=("relu", "tanh"), default="relu")
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    parser.add_argument("--evals", type=int, default=10, help="test evaluations")
    parser.add_argument(
        "--n-train", type=int, default=None, help="training images (default all)"
    )
    parser.add_argument(
        "--n-test", type=int, default=None, help="test images (default all)"
    )
    parser.add_argument("--path", type=Path, default=None, help="IDX files' folder")
    parser.add_argument("--out", type=Path, default=Path("conv-fashion"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.epochs, args.seeds, args.lr, args.evals) <= 0:
        parser.error("--epochs, --seeds, --lr and --evals must be positive")

    data = jp.data.fashion_mnist(channels_last=True, path=args.path)
    x, y = np.asarray(data.x)[: args.n_train], np.asarray(data.y)[: args.n_train]
    test = (
        np.asarray(data.x_test)[: args.n_test],
        np.asarray(data.y_test)[: args.n_test],
    )
    # Whole logging blocks: the step count is a multiple of the evaluations'.
    eval_every = max(1, round(args.epochs * (len(x) // BATCH) / args.evals))
    steps = eval_every * args.evals
    net = lenet5(args.activation)
    print(
        f"Fashion-MNIST LeNet-5 ({args.activation}): {len(x)} training / "
        f"{len(test[0])} test images; {steps} steps ({steps * BATCH / len(x):.2f} "
        f"epochs), batch {BATCH}, SGD lr {args.lr:g} momentum {MOMENTUM} weight "
        f"decay {WEIGHT_DECAY:g}; {cs.machine()}",
        flush=True,
    )
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    results, lrs, seconds = {}, {}, {}
    total = time.perf_counter()
    for name in dict.fromkeys(args.rules):
        lrs[name] = np.asarray([args.lr])
        start = time.perf_counter()
        results[name] = cs.train_rule(
            net,
            sign_usf() if name == "sign-usf" else cs.RULES[name](),
            sgd(args.lr),
            {"optimizer.learning_rate": lrs[name]},
            keys,
            (x, y),
            test,  # one learning rate: nothing is chosen on it
            test,
            steps,
            batch_size=BATCH,
            eval_every=eval_every,
        )
        seconds[name] = time.perf_counter() - start
        s = cs.summary(results[name])
        print(
            f"  {name:9s} {seconds[name]:7.1f} s  test error "
            f"{100 * (1 - s['mean']):.2f}%",
            flush=True,
        )
    wall = time.perf_counter() - total
    command = " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join(
        [
            "# Fashion-MNIST LeNet-5 under each rule",
            "",
            f"Command: `python scripts/conv_fashion.py {command}`. {steps} steps "
            f"({steps * BATCH / len(x):.2f} epochs) of batch {BATCH} on "
            f"{len(x)} 28×28 training images, {args.seeds} seed(s) per rule, "
            f"{args.activation}, SGD lr {args.lr:g} momentum {MOMENTUM} weight "
            f"decay {WEIGHT_DECAY:g}; test error on {len(test[0])} images. "
            f"{cs.machine()}. Wall time {wall:.0f} s ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
            + "). biotorch: 100 epochs, 32×32 inputs, one seed per rule.",
            "",
            table(results, lrs),
            "",
        ]
    )
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    cs.write_json(
        args.out / "results.json",
        {
            "steps": steps,
            "epochs": steps * BATCH / len(x),
            "wall_s": wall,
            "published_error_percent": PUBLISHED,
            "rules": cs.to_json(results, lrs),
        },
    )
    cs.plot(
        results,
        lrs,
        args.out / "conv-fashion.png",
        f"Fashion-MNIST LeNet-5, {steps * BATCH / len(x):.2f} epochs",
        n_hidden=0,
    )
    print(f"written to {args.out}/")
    return results


if __name__ == "__main__":
    main()
