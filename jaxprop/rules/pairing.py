"""Kolen-Pollack's paired optimizer, and the warning when a run is not paired.

Kolen-Pollack's feedback B learns by the step W takes under SGD with weight
decay (``delta_rules.kolen_pollack``); :func:`kolen_pollack_sgd` is that optimizer,
and :func:`warn_unpaired` warns where a run pairs the rule with another one or
with other numbers. Both factories record their numbers in :data:`NUMBERS`.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from typing import TYPE_CHECKING

import numpy as np
import optax

from .._validate import in_unit_interval, positive_number

if TYPE_CHECKING:
    from .delta_rules import Rule

#: Kolen-Pollack's numbers and their constraints: the constructor's arguments
#: and a grid's ``rule.learning_rate``/``decay``.
KOLEN_POLLACK_HYPERPARAMS = (
    ("learning_rate", positive_number),
    ("decay", in_unit_interval),
)


def _decayed_sgd(learning_rate, decay):
    # W ← W − η (∂W + (decay/η) W) = (1 − decay) W − η ∂W: B's update.
    return optax.chain(
        optax.add_decayed_weights(decay / learning_rate), optax.sgd(learning_rate)
    )


#: The (learning_rate, decay) of each Kolen-Pollack rule and each optimizer of
#: :func:`kolen_pollack_sgd`, by id (their factories' caches keep them alive).
NUMBERS: dict[int, dict[str, float]] = {}
_PAIRED: set[int] = set()


@functools.cache
def _kolen_pollack_sgd(learning_rate: float, decay: float):
    optimizer = optax.inject_hyperparams(_decayed_sgd)(
        learning_rate=learning_rate, decay=decay
    )
    _PAIRED.add(id(optimizer))
    NUMBERS[id(optimizer)] = {"learning_rate": learning_rate, "decay": decay}
    return optimizer


def kolen_pollack_sgd(learning_rate: float, decay: float):
    r"""The optimizer :func:`kolen_pollack` pairs with: SGD whose weight decay
    matches the rule's, W ← (1 − decay) W − learning_rate ∂W.

    With the rule's numbers, W and its feedback B take the same step, so
    W − B = (1 − decay)^t (W_0 − B_0) (Akrout et al. 2019). Its two numbers
    are injected hyperparameters (``optax.inject_hyperparams``): a grid
    sweeps them as ``optimizer.learning_rate`` and ``optimizer.decay``. Equal
    arguments give the same optimizer (one compiled program).

    Args:
      learning_rate: η > 0.
      decay: weight decay per step, in [0, 1).

    Returns:
      An ``optax.GradientTransformation``.
    """
    check = dict(KOLEN_POLLACK_HYPERPARAMS)
    return _kolen_pollack_sgd(
        check["learning_rate"](learning_rate, "learning_rate"),
        check["decay"](decay, "decay"),
    )


def is_kolen_pollack_sgd(optimizer) -> bool:
    """Whether ``optimizer`` was made by :func:`kolen_pollack_sgd`."""
    return id(optimizer) in _PAIRED


def warn_unpaired(rule: Rule, optimizer, grid=None) -> None:
    """A warning when Kolen-Pollack (alone or under DP-SGD) trains with an
    optimizer other than :func:`kolen_pollack_sgd`, or with other numbers than
    the rule's at some grid point (``grid``: {qualified name: (n,) values}):
    W − B then does not shrink as (1 − decay)^t."""
    if rule.name not in ("kolen_pollack", "dp_sgd(kolen_pollack)"):
        return
    if not is_kolen_pollack_sgd(optimizer):
        why = "with an optimizer other than jp.rules.kolen_pollack_sgd(η, decay)"
    else:
        why = _numbers_differ(NUMBERS.get(id(rule)), NUMBERS[id(optimizer)], grid or {})
        if why is None:
            return
    warnings.warn(
        f"Kolen-Pollack {why}: W does not take the step B takes, so W − B no "
        f"longer shrinks as (1 − decay)^t and B need not converge to W. Pair "
        f"them with optimizer=jp.rules.kolen_pollack_sgd(η, decay) of the rule's "
        f"numbers (and in a grid, the same values for optimizer.NAME and "
        f"rule.NAME).",
        UserWarning,
        stacklevel=_caller_level(),
    )


def _numbers_differ(mine, paired, grid) -> str | None:
    """Where the rule's numbers and its paired optimizer's differ, said for
    the warning; None where they agree at every grid point (or are unknown)."""
    if mine is None:  # under DP-SGD: the base rule's numbers are not kept
        return None
    for name in ("learning_rate", "decay"):
        rule_values = np.asarray(grid.get(f"rule.{name}", mine[name]), np.float64)
        opt_values = np.asarray(grid.get(f"optimizer.{name}", paired[name]), np.float64)
        if not np.allclose(rule_values, opt_values, rtol=1e-6, atol=0):
            said = lambda v: "[" + ", ".join(f"{e:g}" for e in np.ravel(v)) + "]"  # noqa: E731
            return (
                f"with {name} {said(rule_values)} for B but {said(opt_values)} in "
                f"its optimizer"
            )
    return None


def _caller_level() -> int:
    """``warnings.warn``'s stacklevel of the first caller outside jaxprop."""
    here = os.path.dirname(__file__)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame, level = frame.f_back, level + 1
    return level
