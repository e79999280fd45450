"""Hyperparameter grids: where each name of ``hparams`` goes, and its checks.

A grid ``{name: (n_hparams,) values}`` sets numbers that live in a run's state,
one value per grid point: the optimizer's (``optax.inject_hyperparams`` keeps
them in its state) or the rule's (the fields of its state that
``Rule.hyperparams`` declares, e.g. Kolen-Pollack's ``learning_rate`` and
``decay``, DP-SGD's ``clip_norm``). The names:

- ``"optimizer.NAME"`` is the optimizer's injected hyperparameter NAME, and
  ``"rule.NAME"`` the rule's hyperparameter NAME;
- a bare ``"NAME"`` is whichever of the two holds it, except where it could
  mean either: when the rule holds it and the optimizer holds it too, or it is
  a name every optax optimizer takes (``OPTIMIZER_NAMES``: ``learning_rate``,
  which a plain ``optax.sgd(0.1)`` takes without keeping it in its state). Such
  a name is refused with the two ways to say which; give both keys, with the
  same values, to sweep both together.

Every value is checked before anything compiles, by the same definition of
its constraint as the constructor argument (the rule's ``hyperparams`` checks;
``kolen_pollack_sgd``'s own; for optax's a finite number, and a learning
rate > 0), and a name that would have no effect is refused, naming the grid
key and the offending value.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._validate import number, positive_number
from ..rules import is_kolen_pollack_sgd
from ..rules.pairing import KOLEN_POLLACK_HYPERPARAMS

#: Hyperparameter names that every optax optimizer takes: a rule's number of
#: such a name must be written ``"rule.NAME"`` in a grid (and the optimizer's
#: ``"optimizer.NAME"``).
OPTIMIZER_NAMES = ("learning_rate",)

_OPTIMIZER, _RULE = "optimizer", "rule"


def _is_injected(node) -> bool:
    """An ``optax.inject_hyperparams`` state (stateful or not)."""
    return isinstance(getattr(node, "hyperparams", None), dict) and hasattr(
        node, "inner_state"
    )


def injected(opt_state) -> dict:
    """The hyperparameters an optimizer's state holds by name (every
    ``inject_hyperparams`` state in it), as {name: leaf}."""
    out = {}
    for node in jax.tree.leaves(opt_state, is_leaf=_is_injected):
        if _is_injected(node):
            out.update(node.hyperparams)
    return out


def rule_hyperparams(rule, rule_state) -> dict:
    """The rule's hyperparameters a grid may set, {name: check}: its declared
    ``Rule.hyperparams``, or for a rule that declares none (None) every scalar
    floating field of a NamedTuple state, checked finite."""
    if rule.hyperparams is not None:
        return dict(rule.hyperparams)
    return {
        name: number
        for name in getattr(rule_state, "_fields", ())
        if _is_float_scalar(getattr(rule_state, name))
    }


def _is_float_scalar(leaf) -> bool:
    shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
    return shape == () and dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def _where(key: str, opt_names, rule_names: dict, rule, rule_state) -> str:
    """The qualified name ``"optimizer.NAME"`` or ``"rule.NAME"`` of grid key
    ``key``, or a ValueError saying why it has none or could mean either."""
    where, _, name = key.rpartition(".")
    label = f"hparams[{key!r}]"
    if where == _OPTIMIZER:
        if name not in opt_names:
            raise ValueError(f"{label}: {_not_in_optimizer(name, opt_names)}")
        return key
    if where == _RULE:
        if name not in rule_names:
            raise ValueError(
                f"{label}: {_not_in_rule(name, rule_names, rule, rule_state)}"
            )
        return key
    if where:
        raise ValueError(
            f"{label}: a qualified name is 'optimizer.NAME' or 'rule.NAME'; "
            f"got {where!r} before the dot."
        )
    in_opt, in_rule = name in opt_names, name in rule_names
    if in_rule and (in_opt or name in OPTIMIZER_NAMES):
        raise ValueError(
            f"{label} could mean the optimizer's {name} or the rule's "
            f"({rule.name}'s): write 'optimizer.{name}' or 'rule.{name}', or "
            f"both keys with the same values to sweep both together."
            + ("" if in_opt else f" For the optimizer's, {_INJECT_HINT}.")
        )
    if in_opt:
        return f"{_OPTIMIZER}.{name}"
    if in_rule:
        return f"{_RULE}.{name}"
    in_state = name in getattr(rule_state, "_fields", ())
    raise ValueError(
        f"{label}: neither the optimizer nor the rule has such a hyperparameter "
        f"(the optimizer's: {sorted(opt_names)}; the rule {rule.name}'s: "
        f"{sorted(rule_names)})."
        + ("" if in_state else _did_you_mean(name, [*opt_names, *rule_names]))
        + ("" if opt_names else f" To sweep an optimizer's number, {_INJECT_HINT}.")
        + _inactive(name, rule_names, rule_state)
    )


_INJECT_HINT = (
    "build the optimizer with optax.inject_hyperparams, e.g. "
    "optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)"
)


def _not_in_optimizer(name, opt_names) -> str:
    if not opt_names:
        return f"the optimizer holds no hyperparameters in its state; {_INJECT_HINT}."
    return (
        f"the optimizer has no hyperparameter {name!r} in its state (it has "
        f"{sorted(opt_names)})." + _did_you_mean(name, opt_names)
    )


def _not_in_rule(name, rule_names, rule, rule_state) -> str:
    in_state = name in getattr(rule_state, "_fields", ())
    return (
        f"the rule {rule.name} has no hyperparameter {name!r} a grid may set "
        f"(it has {sorted(rule_names)})."
        + ("" if in_state else _did_you_mean(name, rule_names))
        + _inactive(name, rule_names, rule_state)
    )


def _inactive(name, rule_names, rule_state) -> str:
    """For a field of the rule's state that is not a hyperparameter of it."""
    if name in rule_names or name not in getattr(rule_state, "_fields", ()):
        return ""
    return (
        f" {name!r} is part of the rule's state (drawn or learnt by the rule), "
        f"not a number a grid may set."
    )


def _did_you_mean(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def optimizer_checks(optimizer, opt_names) -> dict:
    """The checks of an optimizer's injected hyperparameters, {name: check}:
    its constructor's where jaxprop made it (``jp.rules.kolen_pollack_sgd``),
    else a finite number (optax checks none), and a learning rate > 0."""
    checks = dict.fromkeys(opt_names, number)
    if "learning_rate" in checks:  # ≤ 0 would ascend the loss or stand still
        checks["learning_rate"] = positive_number
    if is_kolen_pollack_sgd(optimizer):
        checks.update(KOLEN_POLLACK_HYPERPARAMS)
    return checks


def count_runs(n_seeds: int, n_hparams: int) -> int:
    """Runs of a sweep: every seed at every grid point (``n_hparams`` 0: no grid)."""
    return n_seeds * max(n_hparams, 1)


def check_hparams(
    hparams, rule, optimizer, opt_state, rule_state
) -> tuple[dict[str, jax.Array], int]:
    """The grid checked: ({qualified name: (n_hparams,) values}, n_hparams).

    Args:
      hparams: the user's grid, ``{name: (n_hparams,) values}``, or None.
      rule, optimizer: the run's rule and optimizer.
      opt_state, rule_state: one run's optimizer and rule states (shapes
        suffice: ``jax.eval_shape``).

    Raises:
      TypeError, ValueError: a malformed grid, a name with no place or two, a
        value out of its range; the grid key and the value are named.
    """
    if hparams is None:
        return {}, 0
    if not isinstance(hparams, Mapping) or not hparams:
        raise TypeError(
            "hparams must be a non-empty dict of 1-D arrays, e.g. "
            "{'learning_rate': jnp.array([1e-3, 1e-2])}."
        )
    opt_names, rule_names = injected(opt_state), rule_hyperparams(rule, rule_state)
    out = {}
    for key, values in hparams.items():
        if not isinstance(key, str):
            raise TypeError(f"hparams keys must be names (str); got {key!r}.")
        qualified = _where(key, opt_names, rule_names, rule, rule_state)
        if qualified in out:
            raise ValueError(
                f"hparams[{key!r}]: {qualified} is given twice (bare and "
                f"qualified); give it once."
            )
        if np.asarray(values).dtype.kind not in "biuf":
            raise TypeError(
                f"hparams[{key!r}] must hold numbers; got {np.asarray(values)!r}."
            )
        values = jnp.asarray(values)
        if values.ndim != 1 or values.shape[0] == 0:
            raise ValueError(
                f"hparams[{key!r}] must be a non-empty 1-D array (one value per "
                f"grid point); got shape {values.shape}."
            )
        where, _, name = qualified.partition(".")
        if where == _OPTIMIZER:
            check = optimizer_checks(optimizer, opt_names)[name]
        else:
            check = rule_names[name]
        for value in np.asarray(values).tolist():
            check(value, f"hparams[{key!r}]")
        out[qualified] = values
    lengths = {k: v.shape[0] for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"hparams arrays must all have the same length (one entry per grid "
            f"point); got lengths {lengths}."
        )
    return out, next(iter(lengths.values()))


def legacy_names(saved: Mapping, opt_state, rule_state) -> dict:
    """A grid's names as older versions recorded them (bare: set wherever the
    optimizer or the rule state held the name) in qualified form."""
    out = {}
    for key, values in saved.items():
        if "." in key:
            out[key] = values
            continue
        if key in injected(opt_state):
            out[f"{_OPTIMIZER}.{key}"] = values
        if key in getattr(rule_state, "_fields", ()):
            out[f"{_RULE}.{key}"] = values
    return out


def set_hparams(hp: Mapping[str, jax.Array], opt_state, rule_state):
    """(opt_state, rule_state) with one grid point's values set: ``hp`` is
    {qualified name: () value} (from :func:`check_hparams`)."""
    to_opt, to_rule = {}, {}
    for key, value in hp.items():
        where, _, name = key.partition(".")
        (to_opt if where == _OPTIMIZER else to_rule)[name] = value
    if to_opt:
        opt_state = optax.tree_utils.tree_set(opt_state, **to_opt)
    if to_rule:
        rule_state = rule_state._replace(
            **{k: v.astype(getattr(rule_state, k).dtype) for k, v in to_rule.items()}
        )
    return opt_state, rule_state
