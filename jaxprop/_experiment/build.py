"""A configuration made concrete: data, network, optimizer, trainer and the
schedule (``build``)."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._engine.train import Trainer
from .._network import Net
from ..rules import RULES, kolen_pollack_sgd
from .config import MOMENTUM, OPTIMIZERS, ExperimentConfig, kp_decay, make_rule
from .data import Data, load_data


def _divisor_near(n: int, target: float) -> int:
    """The divisor of n nearest to target (on a log scale); 1 for a prime n."""
    target = max(1.0, target)
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return min(small + [n // d for d in small], key=lambda d: abs(math.log(d / target)))


class Experiment(NamedTuple):
    """A configuration made concrete: data, network, optimizer, trainer, schedule."""

    config: ExperimentConfig
    data: Data
    net: Net  # jp.MLP, or jp.Network with config.layers
    trainer: Trainer
    checkpoint_every: int | None  # a multiple of log_every; None: by time
    eval_every: int | None  # None: no held-out data
    alignment_every: int | None  # None: alignment not measured


def make_optimizer(config: ExperimentConfig) -> optax.GradientTransformation:
    """The optimizer, its learning rate an injected hyperparameter (the grid's);
    for Kolen-Pollack paired (``kp_paired``), ``jp.rules.kolen_pollack_sgd``."""
    if config.kp_paired:
        return kolen_pollack_sgd(config.lr[0], kp_decay(config))
    momentum = (
        config.momentum
        if config.momentum is not None
        else MOMENTUM.get(config.optimizer, 0.0)
    )
    make = OPTIMIZERS[config.optimizer]
    return optax.inject_hyperparams(
        lambda learning_rate: make(learning_rate, momentum)
    )(learning_rate=config.lr[0])


def make_grid(config: ExperimentConfig) -> dict:
    """The trainer's grid: the learning rates, and for Kolen-Pollack without
    kp_lr B's rate too, the same at each grid point as W's."""
    lrs = jnp.asarray(config.lr, config.dtype)
    grid = {"optimizer.learning_rate": lrs}
    rule_holds = "learning_rate" in dict(make_rule(config).hyperparams or ())
    if rule_holds and config.kp_lr is None:  # not under DP-SGD: B's rate is fixed
        grid["rule.learning_rate"] = lrs
    return grid


def build(config: ExperimentConfig) -> Experiment:
    """Loads the data and builds the network and trainer; every check runs here.

    Raises:
      ValueError, TypeError: a setting that does not fit the data or the others.
    """
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype: float64 needs jax.config.update('jax_enable_x64', True) "
            "before any array is made (the jaxprop command does it)."
        )
    data, net = load_data(config)
    steps = config.steps
    log_every = config.log_every or _divisor_near(steps, steps / 200)
    if steps % log_every:
        raise ValueError(f"log_every ({log_every}) must divide steps ({steps}).")
    n_blocks = steps // log_every
    checkpoint_every = None
    if config.checkpoint_every is not None:  # whole blocks
        checkpoint_every = -(-config.checkpoint_every // log_every) * log_every
    eval_every = None
    if data.x_eval is not None:
        eval_every = config.eval_every or log_every * max(1, n_blocks // 20)
        if eval_every % log_every:
            raise ValueError(
                f"eval_every ({eval_every}) must be a multiple of log_every "
                f"({log_every})."
            )
    elif config.eval_every is not None:
        raise ValueError(
            f"eval_every needs held-out data, which data {config.data!r} does not "
            f"have (moons, spirals, blobs, mnist1d, digits, mnist and "
            f"fashion_mnist do; eval_data adds it to file data)."
        )
    alignment_every = config.alignment_every
    # Not by default under DP-SGD: angles measured on the training data are
    # not private.
    measured = make_rule(config) not in (RULES["backprop"](), RULES["autodiff"]())
    if alignment_every is None and config.clip_norm is None and measured:
        alignment_every = log_every * max(1, n_blocks // 20)
    if alignment_every is not None and alignment_every % log_every:
        raise ValueError(
            f"alignment_every ({alignment_every}) must be a multiple of log_every "
            f"({log_every})."
        )
    keys = jax.random.split(jax.random.key(config.seed), config.seeds)
    with warnings.catch_warnings():
        # make_config said it in the settings' words (or, on --resume, the run
        # already trained so).
        warnings.filterwarnings("ignore", "Kolen-Pollack with")
        trainer = _trainer(config, data, net, keys, log_every, eval_every,
                           alignment_every)  # fmt: skip
    return Experiment(
        config, data, net, trainer, checkpoint_every, eval_every, alignment_every
    )


def _trainer(config, data, net, keys, log_every, eval_every, alignment_every):
    return Trainer(
        net,
        keys,
        data.x,
        data.y,
        make_optimizer(config),
        config.steps,
        scheme=config.init,
        rule=make_rule(config),
        batch_size=config.batch_size,
        hparams=make_grid(config),
        strategy=config.strategy,
        chunk_size=config.chunk_size,
        eval_data=None if data.x_eval is None else (data.x_eval, data.y_eval),
        eval_every=eval_every,
        alignment_every=alignment_every,
        **_diagnostics(config),
        log_every=log_every,
        dtype=config.dtype,
    )


def _diagnostics(config) -> dict:
    """The trainer's diagnostics options of ``config`` (none without
    diagnostics_every; sharpness "none" is None)."""
    if config.diagnostics_every is None:
        return {}
    sharpness = config.sharpness or "hessian"
    return {
        "diagnostics_every": config.diagnostics_every,
        "sharpness": None if sharpness == "none" else sharpness,
    }
