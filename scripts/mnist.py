"""MNIST with backprop and feedback alignment: Lillicrap et al.'s 784-1000-10 net.

The network of Lillicrap, Cownden, Tweed & Akerman (2016), "Random synaptic
feedback weights support error backpropagation for deep learning" (Nature
Communications 7:13276): 784-1000-10 with sigmoid hidden and output units and
the squared error ½‖ŷ − y‖² against one-hot targets, trained by each rule
(backprop; feedback alignment, fa: δ sent back through a fixed random matrix B
instead of Wᵀ; optionally dfa and sign) from the same seeds, so that the rules
can be compared seed by seed. The optimizer is this recipe's, not the paper's:
Adam (learning rate 1e-3), batch 100, 20 epochs. A digit is the output's
argmax; the test error is on the files' 10000 test images.

Nothing is downloaded: point --path at a folder holding MNIST's four IDX files
(train-images-idx3-ubyte, ..., gzipped or not) or at a Keras-style mnist.npz.
Fashion-MNIST's files have the same names (--dataset fashion_mnist);
``--dataset digits`` runs the same recipe on scikit-learn's 8×8 digits
(64-1000-10, 150 epochs; no files needed).

    python scripts/mnist.py --path ~/data/mnist [--rules backprop fa]
        [--seeds 4] [--epochs 20] [--lr 1e-3] [--batch-size 100]
    python scripts/mnist.py --dataset digits
"""

from __future__ import annotations

import argparse
import functools
import time

import _setup  # noqa: F401  (jp.use_all_cores(), before jax starts)
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxprop as jp

RULES = {
    "backprop": jp.rules.backprop,
    "fa": jp.rules.feedback_alignment,
    "dfa": jp.rules.direct_feedback_alignment,
    "sign": jp.rules.sign_symmetry,
}
N_CLASSES = 10
EPOCHS = {"mnist": 20, "fashion_mnist": 20, "digits": 150}
NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "digits": "digits"}
#: What the paper reports for this net on MNIST (the figures checked so far).
PUBLISHED = (
    "Lillicrap et al. (2016), MNIST, 784-1000-10 sigmoid: feedback alignment "
    "2.1% mean test error"
)


def load(dataset: str, path: str | None) -> jp.data.Dataset:
    if dataset == "digits":
        return jp.data.digits()
    loader = jp.data.load_mnist if dataset == "mnist" else jp.data.load_fashion_mnist
    return loader(path)


@functools.partial(jax.jit, static_argnums=0)
def test_error(net, params, x, y):
    """(n_seeds,) fraction of (x, y) misclassified (argmax of the outputs)."""
    predict = lambda p: jnp.argmax(net.forward(p, x), axis=-1)  # noqa: E731
    return jnp.mean(jax.vmap(predict)(params) != y, axis=-1)


def percent(s) -> str:
    """A jp.summarize of fractions as 'mean% (low–high%)'."""
    if s.n < 2:
        return f"{100 * s.mean:.2f}%"
    low, high = max(s.ci_low, 0.0), min(s.ci_high, 1.0)  # a fraction's bounds
    return f"{100 * s.mean:.2f}% ({100 * low:.2f}–{100 * high:.2f}%)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(EPOCHS), default="mnist")
    parser.add_argument(
        "--path", help="folder of the four IDX files, or a Keras-style mnist.npz"
    )
    parser.add_argument(
        "--rules", nargs="+", choices=list(RULES), default=["backprop", "fa"]
    )
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, help="default 20 (digits: 150)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.path is None) != (args.dataset == "digits"):
        parser.error(
            "--path is needed for mnist and fashion_mnist (a folder of the IDX "
            "files or an mnist.npz), and not taken by digits"
        )
    epochs = args.epochs or EPOCHS[args.dataset]
    for flag, value in [
        ("--seeds", args.seeds),
        ("--epochs", epochs),
        ("--batch-size", args.batch_size),
        ("--lr", args.lr),
    ]:
        if not value > 0:
            parser.error(f"{flag} must be positive; got {value}")
    try:
        data = load(args.dataset, args.path)
    except (ValueError, ImportError) as e:
        parser.error(str(e))
    if args.batch_size > len(data.x):
        parser.error(f"--batch-size exceeds the {len(data.x)} training images")

    n_in = data.x.shape[1]
    net = jp.MLP((n_in, 1000, N_CLASSES), "sigmoid", "sigmoid", "mse", "mean")
    targets = np.eye(N_CLASSES, dtype=np.float32)[data.y]  # one-hot, 0/1
    per_epoch = len(data.x) // args.batch_size
    steps = epochs * per_epoch
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    optimizer = optax.adam(args.lr)
    errors, diverged, seconds = {}, {}, {}
    for name in args.rules:
        start = time.perf_counter()
        result = jp.train_seeds(
            net,
            keys,
            data.x,
            targets,
            optimizer,
            steps,
            rule=RULES[name](),
            batch_size=args.batch_size,
            log_every=per_epoch,
            dtype="float32",
            progress=True,
        )
        error = np.asarray(test_error(net, result.params, data.x_test, data.y_test))
        diverged[name] = np.asarray(result.diverged)
        errors[name] = np.where(diverged[name], np.nan, error)
        seconds[name] = time.perf_counter() - start

    where = "" if args.path is None else f" ({args.path})"
    print(
        f"{NAMES[args.dataset]}{where}: {'-'.join(map(str, net.sizes))} "
        f"sigmoid/sigmoid, squared error, Adam {args.lr:g}, batch {args.batch_size}, "
        f"{epochs} epochs ({steps} steps), {args.seeds} seeds, float32 on "
        f"{len(jax.devices())} {jax.devices()[0].platform} device(s); "
        f"{len(data.x)} training and {len(data.x_test)} test images"
    )
    print()
    print(
        "| rule | test error (mean, 95% CI) | Δ vs backprop (paired) | diverged | s |"
    )
    print("|---|---|---|---|---|")
    for name in args.rules:
        delta = "–"
        if name != "backprop" and "backprop" in errors:
            d = jp.summarize(errors[name] - errors["backprop"])
            delta = f"{100 * d.mean:+.2f} pt" if d.n else "–"
            if d.n > 1:
                delta += f" ({100 * d.ci_low:+.2f} to {100 * d.ci_high:+.2f})"
        print(
            f"| {name} | {percent(jp.summarize(errors[name]))} | {delta} | "
            f"{int(diverged[name].sum())}/{args.seeds} | {seconds[name]:.0f} |"
        )
    if args.dataset == "mnist":
        print(f"\npublished: {PUBLISHED}")
    return errors


if __name__ == "__main__":
    main()
