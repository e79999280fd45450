"""Checks of user input shared by every entry point: one vocabulary of messages.

Every check names the argument and says what was expected, and runs before
anything is compiled. A value of the wrong type is a ``TypeError``; a value of
the right type out of range is a ``ValueError``. ``parse=True`` also accepts the
strings of a command line or a TOML/JSON file ("12", "0.1"); a string that does
not parse is a ``ValueError``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

import numpy as np


def integer(value, name: str, low: int = 1, high: int | None = None, *, parse=False):
    """``value`` as an int in [low, high] (no upper bound when ``high`` is None).

    Messages: "n must be a positive integer" (low 1, no high), "n must be an
    integer ≥ 0", "n must be an integer in [1, 4]".
    """
    if low == 1 and high is None:
        expected = "a positive integer"
    elif high is None:
        expected = f"an integer ≥ {low}"
    else:
        expected = f"an integer in [{low}, {high}]"
    if parse and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be {expected}; got {value!r}.") from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {expected}; got {value!r}.")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {expected}; got {value}.")
    return int(value)


def positive_int(value, name: str) -> int:
    """``value`` as an int ≥ 1."""
    return integer(value, name, 1)


def number(value, name: str, *, parse: bool = False) -> float:
    """``value`` as a finite float (bools refused)."""
    if parse and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a number; got {value!r}.") from None
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a number; got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}.")
    return value


def positive_number(value, name: str, *, parse: bool = False) -> float:
    """``value`` as a finite float > 0."""
    value = number(value, name, parse=parse)
    if value <= 0:
        raise ValueError(f"{name} must be a positive number; got {value}.")
    return value


def non_negative_number(value, name: str, *, parse: bool = False) -> float:
    """``value`` as a finite float ≥ 0."""
    value = number(value, name, parse=parse)
    if value < 0:
        raise ValueError(f"{name} must be ≥ 0; got {value}.")
    return value


def in_unit_interval(
    value, name: str, *, low_open: bool = False, parse: bool = False
) -> float:
    """``value`` as a float in [0, 1) (or (0, 1) with ``low_open``)."""
    value = number(value, name, parse=parse)
    if not ((0 < value if low_open else 0 <= value) and value < 1):
        span = "(0, 1)" if low_open else "[0, 1)"
        raise ValueError(f"{name} must be in {span}; got {value}.")
    return value


def fraction(value, name: str, *, parse: bool = False) -> float:
    """``value`` as a float in (0, 1] (a probability that may not be 0)."""
    value = number(value, name, parse=parse)
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1]; got {value}.")
    return value


def expected_one_of(value, choices: Iterable) -> str:
    """The end of an "Unknown ..." message: "did you mean 'adam'? Expected one of
    [...]." when a choice is close to ``value`` (``difflib``), else "expected one
    of [...]." """
    choices = list(choices)
    names = [c for c in choices if isinstance(c, str)]
    close = (
        difflib.get_close_matches(value, names, n=1) if isinstance(value, str) else []
    )
    if close:
        return f"did you mean {close[0]!r}? Expected one of {choices}."
    return f"expected one of {choices}."


def choice(value, name: str, choices: Iterable):
    """``value`` if it is one of ``choices``: "Unknown optimizer 'adamm'; did
    you mean 'adam'? Expected one of ['adam', ...]." (a TypeError for a value of
    another type than the choices')."""
    choices = list(choices)
    kinds = {type(c) for c in choices}
    if len(kinds) == 1 and not isinstance(value, next(iter(kinds))):
        raise TypeError(
            f"{name} must be one of {choices}; got {type(value).__name__} {value!r}."
        )
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; {expected_one_of(value, choices)}")
    return value
