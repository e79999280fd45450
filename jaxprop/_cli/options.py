"""The settings options that ``jaxprop train`` and ``jaxprop check`` share: one
per field of the experiment's configuration, also read from ``--config FILE.toml``.
"""

from __future__ import annotations

from .._experiment import FIELDS

_HELP = {
    "data": "xor, moons, spirals, blobs, mnist1d, digits (scikit-learn's 8x8 "
    "digits), fashion_mnist (Debian's dataset-fashion-mnist package), mnist:PATH "
    "or fashion_mnist:PATH (a folder of the four IDX files, "
    "gzipped or not, or a Keras-style .npz; nothing is downloaded), or PATH.npz "
    "(arrays x, y) / PATH.csv (targets in the last column)",
    "eval_data": "held-out PATH.npz/.csv, for file data only (the built-in data "
    "sets, mnist and fashion_mnist bring their own test split; xor has none)",
    "n_train": "training examples of moons/spirals/blobs (default 200)",
    "n_test": "test examples of moons/spirals/blobs (default 1000)",
    "classes": "classes of spirals (default 2) and blobs (default 3)",
    "data_seed": "seed of moons/spirals/blobs (default 0)",
    "sizes": "layer widths of an MLP, e.g. 2,8,1 (default: n_in,8,n_out)",
    "layers": "instead of --sizes, any layers, comma-separated: conv25k5s2p1 "
    "(features 25, kernel k5 or k5x5, stride s2, padding p1, same or valid; "
    "default s1, valid), maxpool2 / avgpool2x2s1 (window, stride), flatten, "
    "dense10; a conv or dense token may end in :relu (its own activation)",
    "input_shape": "with --layers, one example's shape, channels last, e.g. 40,1 "
    "or 28,28,1 (default: the data set's own with a conv or pool first; file "
    "data of flat rows must give it)",
    "activation": "hidden activation (default tanh)",
    "output_activation": "output activation (default sigmoid)",
    "cost": "mse, binary_cross_entropy, softmax_cross_entropy or hinge (labels ±1, "
    "identity output) (default mse)",
    "reduction": "sum or mean over the batch (default mean)",
    "init": "initialization scheme (default: the activation's)",
    "optimizer": "sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad, lion "
    "(default sgd)",
    "lr": "learning rate, or a comma-separated grid: every seed is trained at each "
    "(default 0.1)",
    "momentum": "momentum in [0, 1), or β₁ for adam/adamw/lion (default 0.9, "
    "0 for rmsprop; momentum, nesterov, rmsprop, adam, adamw and lion only)",
    "steps": "training steps (default 1000); with --resume, a larger number "
    "extends the saved run",
    "batch_size": "minibatch size (default: the full batch)",
    "seeds": "networks trained side by side, one per seed (default 1)",
    "seed": "seed of the first network's key (default 0)",
    "grad": "manual (the δ backward pass) or autodiff (jax.grad) (default manual; "
    "the same as --rule backprop/autodiff)",
    "rule": "credit-assignment rule: backprop, autodiff, fa (or feedback_alignment), "
    "dfa (direct_feedback_alignment), sign (sign_symmetry), kp (kolen_pollack) "
    "(default backprop); several, comma-separated (backprop,fa,dfa), train a "
    "study: each rule in turn on the same seeds, into --out DIR/<rule>/, with a "
    "comparison table and figure",
    "feedback_scale": "fa/dfa/kp: random feedback drawn from U[-s, s] (default "
    "1/sqrt of the fed-back width)",
    "kp_lr": "kp: learning rate of the feedback update (default: --lr, one value)",
    "kp_decay": "kp: weight decay of the feedback update, in [0, 1) (default 0.001)",
    "kp_paired": "kp: true (the default with --optimizer sgd) trains with the SGD "
    "whose weight decay matches the feedback's, so W - B shrinks as "
    "(1 - decay)^t; false: the optimizer alone",
    "clip_norm": "DP-SGD: clip each example's update to this norm (with "
    "--noise-multiplier or --target-epsilon; any rule but autodiff)",
    "noise_multiplier": "DP-SGD: Gaussian noise of std noise_multiplier × clip_norm "
    "on the clipped sum",
    "delta": "DP-SGD: the δ at which metrics.json reports ε (default 1e-5)",
    "sampling": "DP-SGD: poisson draws every step's examples from the whole data "
    "set, each with probability --sampling-rate (instead of --batch-size), so "
    "that the reported ε is a guarantee",
    "sampling_rate": "DP-SGD with --sampling poisson: q in (0, 1], each example's "
    "probability of being in a step (q·n examples on average)",
    "target_epsilon": "DP-SGD: the ε (at --delta) to reach; the noise multiplier "
    "is the smallest that does over --steps (jp.dp_noise_multiplier), with "
    "--sampling poisson or full batches, instead of --noise-multiplier",
    "alignment_every": "steps between measures of the rule's alignment with "
    "backprop, for fa/dfa/sign/kp (default ~1/20 of the run)",
    "diagnostics_every": "steps between measures of the loss gradient's "
    "diagnostics (its norm, Byrd et al.'s norm test, the signal-to-noise ratio, "
    "the sharpness) on the next step's batch, into metrics.json and curves.npz "
    "(default: none)",
    "sharpness": "with --diagnostics-every: hessian (the default), ggn or none, "
    "the matrix whose top eigenvalue the diagnostics hold",
    "dtype": "float32 or float64 (default float32)",
    "strategy": "how seeds share the devices: auto, vmap, sequential, chunked",
    "chunk_size": "runs per vmapped chunk (with --strategy chunked)",
    "log_every": "steps per logged loss (default: about 1/200 of the run)",
    "eval_every": "steps between evaluations on the test split (default ~1/20)",
    "checkpoint_every": "steps between checkpoints in --out (default: every minute)",
}


def add_config_options(parser, fields) -> None:
    """One option per setting in ``fields`` (``--kp-lr`` for ``kp_lr``)."""
    for name in fields:
        flag = "--" + name.replace("_", "-")
        metavar = name.upper().replace("_", "-")
        parser.add_argument(
            flag, dest=name, default=None, metavar=metavar, help=_HELP[name]
        )


def config_values(args, fields) -> dict:
    """Settings from --config FILE.toml, overridden by the options given."""
    from .._experiment import read_toml

    values = read_toml(args.config) if getattr(args, "config", None) else {}
    values.update({k: getattr(args, k) for k in fields if getattr(args, k) is not None})
    return values


def option_names(args, fields) -> dict[str, str]:
    """``make_config``'s names of the settings: options (``--kp-lr``), but for
    those read from --config, which keep their key, as the file spells them."""
    from .._experiment import read_toml

    in_file = set(read_toml(args.config)) if getattr(args, "config", None) else set()
    return {
        k: "--" + k.replace("_", "-")
        for k in fields
        if getattr(args, k) is not None or k not in in_file
    }


#: The settings of ``jaxprop check``.
CHECK_FIELDS = (
    "data",
    "n_train",
    "classes",
    "data_seed",
    "sizes",
    "layers",
    "input_shape",
    "activation",
    "output_activation",
    "cost",
    "reduction",
    "init",
    "seed",
)

#: The settings of ``jaxprop train``: every field of ExperimentConfig.
TRAIN_FIELDS = tuple(FIELDS)
