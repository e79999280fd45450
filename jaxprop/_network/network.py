"""A network of any layers: convolutions, pooling, flatten, dense, a user's own.

``jp.Network(input_shape, layers=(...))`` binds each layer to the shape of what
reaches it, one example's, channels last: ``layer.bind(shape)`` gives the bound
layer and its output shape the next one's input. Parametrized layers (those
with ``init``: Dense, Conv, a user's layer) are numbered l = 1..L; each is
followed by its activation σ_l (the net's ``activation`` unless the layer sets
its own), the last by ``output_activation``. Parameter-free maps (pooling,
flatten: no ``init``) act on the activations between them and join the next
parametrized layer in a :class:`jaxprop._core.layers.Block`: the blocks are the
δ pass's units (``net.blocks``), so every rule, per-example quantity and the
trainer run on a Network as on an MLP.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence

from .._core.activations import ACTIVATIONS, Activation, canonical_activation
from .._core.costs import Cost
from .._core.layers import Block
from .._validate import positive_int
from .base import Net, resolve

#: What a parametrized layer needs to run in the δ pass without a Block
#: around it (a Block adds the maps before it, and these when they are missing).
_FULL_PROTOCOL = ("flops", "per_example_grads", "sq_norms")


@dataclasses.dataclass(frozen=True)
class Network(Net):
    """A network of layers, channels last: immutable, hashable configuration.

    Example:
      >>> net = jp.Network(
      ...     input_shape=(40, 1),
      ...     layers=(
      ...         jp.layers.Conv(25, kernel_size=5, stride=2, padding=1),
      ...         jp.layers.Flatten(),
      ...         jp.layers.Dense(10),
      ...     ),
      ...     cost="softmax_cross_entropy",
      ... )
      >>> params = net.init(jax.random.key(0))  # one DenseParams(w, b) per Conv/Dense
      >>> loss, grads = net.value_and_backprop(params, x, y)  # x: (batch, 40, 1)

    Every method of ``jp.MLP`` is here, and everything that takes a net takes
    a Network (the trainer, the rules, per-example gradients, ``check_grads``).

    Attributes:
      input_shape: one example's input, (*spatial, channels) for a conv net
        ((40, 1) for MNIST-1D, (28, 28, 1) for MNIST), (n,) for flat inputs.
      layers: the layers in order: ``jp.layers.Dense``, ``Conv``, ``AvgPool``,
        ``MaxPool``, ``Flatten``, or a user's layer (see docs/layers.md), as
        given (unbound); the last must be parametrized.
      activation: the hidden activation σ (a layer's ``activation=``
        overrides it for that layer).
      output_activation, cost, reduction: as for ``jp.MLP``.
      blocks: (derived) the bound parametrized layers l = 1..L, each with the
        maps before it, the units of the δ pass.
      positions: (derived) each parametrized layer's index in ``layers``.
      sigma, sigma_out, cost_fn: (derived) as for ``jp.MLP``; ``sigma`` is a
        tuple of one activation per hidden layer when a layer overrides it.
    """

    input_shape: tuple[int, ...]
    # Equal configurations compare (and hash) equal by what they bind to: the
    # blocks and the hidden activations, so Conv(4, 3) and Conv(4, (3,)) share
    # compiled programs and checkpoints.
    layers: tuple = dataclasses.field(compare=False)
    activation: str | Activation = "relu"
    output_activation: str | Activation = "identity"
    cost: str | Cost = "mse"
    reduction: str = "mean"
    blocks: tuple = dataclasses.field(init=False, repr=False)
    positions: tuple[int, ...] = dataclasses.field(
        init=False, repr=False, compare=False
    )
    sigma: object = dataclasses.field(init=False, repr=False)
    sigma_out: Activation = dataclasses.field(init=False, repr=False, compare=False)
    cost_fn: Cost = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", _shape(self.input_shape))
        layers = self.layers
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError(
                f"layers must be a sequence of layers such as (jp.layers.Conv(8, "
                f"3), jp.layers.Flatten(), jp.layers.Dense(10)); got "
                f"{type(layers).__name__}."
            )
        object.__setattr__(self, "layers", tuple(layers))
        resolve(self, ("activation",))
        blocks, positions = _bind(self.input_shape, self.layers)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "sigma", self._hidden_activations())

    def _hidden_activations(self):
        """σ for every hidden layer: one Activation when they share the net's,
        else a tuple of L − 1 (a layer's ``activation=`` overriding it)."""
        last = self.layers[self.positions[-1]]
        if getattr(last, "activation", None) is not None:
            raise ValueError(
                f"layers[{self.positions[-1]}] is the output layer: its "
                f"activation is the net's output_activation; got activation="
                f"{last.activation!r} on the layer."
            )
        own = []
        for l, i in enumerate(self.positions[:-1], start=1):
            spec = getattr(self.layers[i], "activation", None)
            spec = self.activation if spec is None else spec
            spec = canonical_activation(spec, f"layers[{i}].activation (layer {l})")
            own.append(ACTIVATIONS[spec] if isinstance(spec, str) else spec)
        net_sigma = self.activation
        net_sigma = ACTIVATIONS[net_sigma] if isinstance(net_sigma, str) else net_sigma
        if all(s is net_sigma for s in own):
            return net_sigma
        return tuple(own)

    # ---------------------------------------------------------------- config
    @property
    def n_in(self) -> int:
        """Entries of one example's input."""
        return math.prod(self.input_shape)

    @property
    def n_out(self) -> int:
        """Entries of one example's output ŷ (the last layer's z)."""
        return math.prod(self.blocks[-1].out_shape)

    @property
    def architecture(self) -> str:
        """The input shape, the bound layers and, where layers override the
        net's, the hidden activations: as checkpoints name the network."""
        out = [str(self.input_shape), *map(repr, self.blocks)]
        if not isinstance(self.sigma, Activation):
            out.append(f"activations {[s.name for s in self.sigma]}")
        return " ".join(out)

    @property
    def needs(self) -> str:
        """How messages name what the net's configuration needs."""
        return "the network"

    def layer_name(self, l: int) -> str:
        """`` (layer l + 1: layers[i] = Conv(...))`` for ``params[l]``."""
        i = self.positions[l]
        return f" (layer {l + 1}: layers[{i}] = {self.layers[i]!r})"

    def __reduce__(self):
        """Pickled as its configuration; the derived fields are rebuilt."""
        fields = (self.input_shape, self.layers, self.activation)
        return type(self), (*fields, self.output_activation, self.cost, self.reduction)


def _shape(shape) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or not shape:
        raise TypeError(
            f"input_shape must be one example's shape, a tuple of positive "
            f"integers such as (40, 1) or (28, 28, 1); got {shape!r}."
        )
    return tuple(
        positive_int(operator.index(n) if hasattr(n, "__index__") else n, "input_shape")
        for n in shape
    )


def _is_parametrized(layer) -> bool:
    return hasattr(layer, "init")


def _native(layer, maps) -> bool:
    """Whether a bound parametrized layer is a unit of the δ pass by itself
    (Dense, Conv: no maps before it, the whole protocol)."""
    return not maps and all(hasattr(layer, name) for name in _FULL_PROTOCOL)


def _bind(input_shape: tuple[int, ...], layers: tuple) -> tuple[tuple, tuple]:
    """(blocks, positions): every layer bound to its input shape, the maps
    joined to the parametrized layer after them.

    Raises:
      ValueError: a layer that does not fit what reaches it (the layer's own
        message, prefixed with its position and the shape), no parametrized
        layer, or maps after the last one.
      TypeError: an entry that is not a layer (no ``bind``).
    """
    shape, maps, blocks, positions = input_shape, [], [], []
    for i, spec in enumerate(layers):
        if isinstance(spec, type) or not hasattr(spec, "bind"):
            what = f"the class {spec.__name__}" if isinstance(spec, type) else None
            raise TypeError(
                f"layers[{i}] must be a layer such as jp.layers.Dense(10) (an "
                f"object with bind(in_shape)); got "
                f"{what or type(spec).__name__}."
            )
        try:
            bound = spec.bind(shape)
        except (TypeError, ValueError) as e:
            where = f"layers[{i}] = {spec!r} (input shape {shape})"
            raise type(e)(f"{where}: {e}") from None
        _check_protocol(bound, i, spec)
        if _is_parametrized(bound):
            blocks.append(bound if _native(bound, maps) else Block(tuple(maps), bound))
            positions.append(i)
            maps = []
        else:
            maps.append(bound)
        shape = tuple(bound.out_shape)
    if not blocks:
        raise ValueError(
            "layers must hold at least one parametrized layer (Dense, Conv or "
            "a layer of your own with init); got none."
        )
    if maps:
        raise ValueError(
            f"layers must end with a parametrized layer (the output layer, "
            f"followed by output_activation); got {layers[-1]!r} last."
        )
    if len(shape) != 1:
        raise ValueError(
            f"layers[{positions[-1]}] = {layers[positions[-1]]!r} is the output "
            f"layer and gives z^L of shape {shape}; the cost takes one flat row "
            f"per example (n_out,): end with jp.layers.Flatten() and "
            f"jp.layers.Dense(n_out)."
        )
    return tuple(blocks), tuple(positions)


#: What a bound layer must have, parametrized (with ``init``) or a map.
_PROTOCOL = {
    True: ("in_shape", "out_shape", "n_keys", "shapes", "apply", "adjoint", "grads"),
    False: ("in_shape", "out_shape", "apply", "adjoint"),
}


def _check_protocol(bound, i: int, spec) -> None:
    """A TypeError naming what a bound layer lacks of the layer protocol."""
    kind = _is_parametrized(bound)
    missing = [name for name in _PROTOCOL[kind] if not hasattr(bound, name)]
    if missing:
        what = "a parametrized layer (it has init)" if kind else "a parameter-free map"
        raise TypeError(
            f"layers[{i}] = {spec!r} is {what} but its bound form lacks "
            f"{', '.join(missing)} (the layer protocol: docs/layers.md)."
        )
