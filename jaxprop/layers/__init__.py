"""Layers for ``jp.Network``, channels last: ``Dense(features)``,
``Conv(features, kernel_size, stride=1, padding="VALID")``, ``AvgPool(window)``,
``MaxPool(window)`` and ``Flatten()``.

Each is frozen, hashable configuration, given unbound; the network binds it to
the shape that reaches it (``layer.bind(in_shape)``). A layer of one's own
follows the same protocol (docs/layers.md): parametrized layers have ``init``,
``apply``, the adjoint with a replaceable weight and ``grads``; parameter-free
maps have ``apply`` and ``adjoint``.
"""

from .._core.conv import Conv as Conv
from .._core.pool import AvgPool as AvgPool
from .._core.pool import Flatten as Flatten
from .._core.pool import MaxPool as MaxPool
from .._core.specs import Dense as Dense
