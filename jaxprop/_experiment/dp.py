"""DP-SGD's settings of an experiment (``clip_norm``, ``noise_multiplier`` or
``target_epsilon``, ``delta``, ``sampling``, ``sampling_rate``): their checks,
the noise multiplier a target ε resolves to, and the rule's one-line name."""

from __future__ import annotations

from .._per_example import dp_noise_multiplier
from .._validate import (
    choice,
    fraction,
    in_unit_interval,
    non_negative_number,
    positive_number,
)

#: The δ of the reported ε when none is given.
DEFAULT_DELTA = 1e-5
#: The settings that only DP-SGD reads.
DP_KEYS = (
    "clip_norm",
    "noise_multiplier",
    "target_epsilon",
    "delta",
    "sampling",
    "sampling_rate",
)


def dp_settings(
    v: dict, out: dict, n, rule: str, said: str, steps: int, saved: bool
) -> None:
    """Checks DP-SGD's settings of ``v`` into ``out``; with ``target_epsilon``
    (and no recorded ``noise_multiplier``), resolves σ for ``steps`` steps.

    Args:
      v, out: the given settings and the checked ones (``make_config``'s).
      n: the setting's name in messages (the option the user typed).
      rule, said: the rule and the setting that named it (``rule`` or ``grad``).
      steps: the run's steps (σ is calibrated to them).
      saved: the values are a run's config.json: its ``noise_multiplier`` is
        the σ it trained with, kept beside the ``target_epsilon`` it came from.
    """
    if not any(key in v for key in DP_KEYS):
        return
    sigma, target = "noise_multiplier" in v, "target_epsilon" in v
    if "clip_norm" not in v or not (sigma or target):
        raise ValueError(
            f"{n('clip_norm')} and {n('noise_multiplier')}: DP-SGD needs both, or "
            f"{n('clip_norm')} and {n('target_epsilon')} (which computes "
            f"{n('noise_multiplier')}); {n('delta')}, {n('sampling')} and "
            f"{n('sampling_rate')} apply only with them."
        )
    if sigma and target and not saved:
        raise ValueError(
            f"{n('noise_multiplier')} and {n('target_epsilon')}: give one "
            f"({n('target_epsilon')} computes the noise multiplier that reaches it)."
        )
    if rule == "autodiff":  # jp.rules.dp_sgd refuses it: no δ's to clip
        raise ValueError(
            f"{n('clip_norm')} (DP-SGD) needs a δ rule; {n(said)} autodiff has "
            f"none (DP-SGD clips each example's update through its δ's): use "
            f"backprop, fa, dfa, sign or kp."
        )
    out["clip_norm"] = positive_number(v["clip_norm"], n("clip_norm"), parse=True)
    if sigma:
        out["noise_multiplier"] = non_negative_number(
            v["noise_multiplier"], n("noise_multiplier"), parse=True
        )
    if "delta" in v:
        out["delta"] = in_unit_interval(
            v["delta"], n("delta"), low_open=True, parse=True
        )
    _sampling(v, out, n)
    if target:
        out["target_epsilon"] = positive_number(
            v["target_epsilon"], n("target_epsilon"), parse=True
        )
        if "batch_size" in out:
            raise ValueError(
                f"{n('target_epsilon')} calibrates the noise for a guarantee, which "
                f"shuffled minibatches ({n('batch_size')}) do not have: use "
                f"{n('sampling')} poisson with {n('sampling_rate')} q instead of "
                f"{n('batch_size')}, full batches, or {n('noise_multiplier')}."
            )
        if not sigma:
            out["noise_multiplier"] = _calibrated_sigma(out, n, steps)


def _sampling(v: dict, out: dict, n) -> None:
    """``sampling`` poisson and its ``sampling_rate``: each needs the other, and
    Poisson samples of the whole data set replace ``batch_size``."""
    if "sampling" in v:
        out["sampling"] = choice(v["sampling"], n("sampling"), ["poisson"])
        if "sampling_rate" not in v:
            raise ValueError(
                f"{n('sampling')} poisson needs {n('sampling_rate')} q in (0, 1]: "
                f"each example's probability of being in a step's sample."
            )
        if "batch_size" in out:
            raise ValueError(
                f"{n('sampling')} poisson and {n('batch_size')}: give one. Poisson "
                f"sampling draws each example of the whole data set with "
                f"probability q every step, so the batch size is random, q·n on "
                f"average ({n('sampling_rate')} sets it); {n('batch_size')} draws "
                f"shuffled minibatches of a fixed size instead."
            )
    elif "sampling_rate" in v:
        raise ValueError(
            f"{n('sampling_rate')} is each example's probability of being in a "
            f"step's Poisson sample: it goes with {n('sampling')} poisson."
        )
    if "sampling_rate" in v:
        out["sampling_rate"] = fraction(
            v["sampling_rate"], n("sampling_rate"), parse=True
        )


def _calibrated_sigma(out: dict, n, steps: int) -> float:
    """``jp.dp_noise_multiplier`` of the checked settings, its errors in the
    settings' words."""
    q = out.get("sampling_rate", 1.0)  # full batches without sampling
    delta = out.get("delta", DEFAULT_DELTA)
    try:
        return dp_noise_multiplier(out["target_epsilon"], q, steps, delta)
    except ImportError:
        raise ValueError(
            f"{n('target_epsilon')} needs the dp-accounting package to compute "
            f"the noise multiplier: pip install dp-accounting."
        ) from None
    except ValueError as e:  # a target no noise reaches
        raise ValueError(
            n("target_epsilon") + str(e).removeprefix("target_epsilon")
        ) from None


def sampling_rate(config, n_examples: int) -> float:
    """q of each step as the accountant takes it: the Poisson rate, else
    batch_size / n (shuffled minibatches), else 1 (full batches)."""
    if config.sampling == "poisson":
        return config.sampling_rate
    return 1.0 if config.batch_size is None else config.batch_size / n_examples


def describe_rule(config) -> str:
    """The rule in the header and summary of ``jaxprop train``: ``backprop``,
    or ``dp_sgd(fa, C 1, σ 1.1 for ε 2, Poisson q 0.01)``."""
    base = config.rule or {"autodiff": "autodiff"}.get(config.grad, "backprop")
    if config.clip_norm is None:
        return base
    parts: list[str] = [base, f"C {config.clip_norm:g}"]
    sigma = f"σ {config.noise_multiplier:.4g}"
    if config.target_epsilon is not None:
        delta = DEFAULT_DELTA if config.delta is None else config.delta
        sigma += f" for ε {config.target_epsilon:g} at δ {delta:g}"
    parts.append(sigma)
    if config.sampling == "poisson":
        parts.append(f"Poisson q {config.sampling_rate:g}")
    return f"dp_sgd({', '.join(parts)})"
