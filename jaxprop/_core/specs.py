"""The fully connected layer as ``jp.Network`` takes it: ``Dense(features)``,
its input width read from the layer before it when the network is built."""

from __future__ import annotations

import dataclasses

from .._validate import positive_int
from .layers import Dense as BoundDense


@dataclasses.dataclass(frozen=True)
class Dense:
    """A fully connected layer with ``features`` outputs, z = a W + b.

    ``jp.Network`` binds it to the width n of the flat input (n,) before it:
    ``bind((n,))`` is ``jp.Dense(n, features)``, the layer kind the δ pass runs
    (its equations, adjoint and gradients are there).

    Attributes:
      features: output width n_l.
      activation: None (the network's activation), or a name in
        ``jp.ACTIVATIONS`` or a ``jp.Activation`` for this layer only.
    """

    features: int
    activation: object = None

    def __post_init__(self):
        object.__setattr__(self, "features", positive_int(self.features, "features"))

    def bind(self, in_shape: tuple[int, ...]) -> BoundDense:
        """``jp.Dense(n, features)`` for a flat input (n,).

        Raises:
          ValueError: for an input with more axes (a conv's (..., C) output
            needs ``Flatten()`` first).
        """
        if len(in_shape) != 1:
            raise ValueError(
                f"Dense needs a flat input (n,); got shape {tuple(in_shape)}: "
                f"put jp.layers.Flatten() before it."
            )
        return BoundDense(in_shape[0], self.features)
