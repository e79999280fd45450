"""Checks of user input shared by the library's entry points, one vocabulary."""

from __future__ import annotations

import numpy as np


def positive_int(value, name: str) -> int:
    """``value`` as an int ≥ 1, else a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer; got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value}.")
    return int(value)
