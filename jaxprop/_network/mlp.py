"""The multilayer perceptron, a composition of Dense layers.

For layers l = 1..L, with a^0 = x (row-vector convention, x: (batch, n_0)):

    z^l = a^{l-1} W^l + b^l,        a^l = σ_l(z^l),

where σ_l is the hidden activation for l < L and the output activation for l = L.
The loss is L = Σ_batch c(a^L, y) (``reduction="sum"``) or its mean over the batch.
An MLP is a composition of Dense layers (``net.blocks``,
``jaxprop._core.layers.Dense``); its methods are :class:`jaxprop._network.base.Net`'s.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence

from .._core.activations import ACTIVATIONS, Activation
from .._core.costs import Cost
from .._core.layers import Dense, dense_layers
from .base import Net, resolve


@dataclasses.dataclass(frozen=True)
class MLP(Net):
    """A fully connected network, a composition of Dense layers: immutable,
    hashable configuration.

    All methods are pure functions of ``params`` and data: they work under
    ``jax.jit`` (close over the net or pass it as a static argument), ``jax.vmap``
    over stacked params, and ``jax.grad``, in float32 and float64. Arguments are
    checked before anything is compiled: a mistake raises a ``ValueError`` or
    ``TypeError`` that names the argument.

    Attributes:
      sizes: (n_0, n_1, ..., n_L) layer widths, input first; at least two.
      activation: the hidden activation σ: a name in ``jp.ACTIVATIONS`` or a
        ``jp.Activation(name, fn, derivative)`` of your own.
      output_activation: the output activation σ_L, likewise.
      cost: a name in ``jp.COSTS`` or a ``jp.Cost`` of your own: ``"mse"``
        (½‖ŷ − y‖² per example, real-valued targets), ``"binary_cross_entropy"``
        (needs a sigmoid output; targets in [0, 1]), ``"softmax_cross_entropy"``
        (needs an identity output, which gives logits; integer labels or
        probability rows) or ``"hinge"`` (Σ_k max(0, 1 − y_k ŷ_k), needs an
        identity output; targets ±1).
      reduction: ``"sum"`` or ``"mean"`` of the per-example costs over the batch.
      layers: (derived from ``sizes``) ``Dense(n_{l-1}, n_l)`` for l = 1..L,
        what the δ pass, the cost models and ``init`` work through.
      sigma, sigma_out, cost_fn: (derived) the hidden and output activations
        as :class:`jp.Activation` and the cost as a :class:`jp.Cost`, resolved
        from their names once, when the net is built.

    A built-in passed as its object (``jp.ACTIVATIONS["tanh"]``) is kept as its
    name; a user's Activation or Cost is kept as given, so ``net.activation``
    is a name or a user's object. Either way the net is hashable and equal
    configurations share compiled programs; a user's functions count by
    identity, so create each Activation or Cost once, not per call.

    Example:
      >>> net = jp.MLP(sizes=(2, 2, 1), activation="sigmoid",
      ...              output_activation="sigmoid", cost="mse", reduction="sum")
      >>> params = net.init(jax.random.key(0), scheme="uniform01")
      >>> value, grads = net.value_and_backprop(params, x, y)
    """

    sizes: tuple[int, ...]
    activation: str | Activation = "relu"
    output_activation: str | Activation = "identity"
    cost: str | Cost = "mse"
    reduction: str = "mean"
    # Derived from the fields above when the net is built (the names resolved
    # once), so left out of ==, hash and repr.
    layers: tuple[Dense, ...] = dataclasses.field(init=False, repr=False, compare=False)
    sigma: Activation = dataclasses.field(init=False, repr=False, compare=False)
    sigma_out: Activation = dataclasses.field(init=False, repr=False, compare=False)
    cost_fn: Cost = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        sizes = self.sizes
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
            raise TypeError(
                f"sizes must be a sequence of layer widths such as "
                f"(2, 8, 1); got {type(sizes).__name__}."
            )
        for n in sizes:
            if isinstance(n, bool) or (
                not isinstance(n, int) and not hasattr(n, "__index__")
            ):
                raise TypeError(f"sizes must hold integers; got {n!r} in {sizes!r}.")
        sizes = tuple(operator.index(n) for n in sizes)
        if len(sizes) < 2:
            raise ValueError(
                f"sizes needs at least two entries (inputs, outputs); got {sizes}."
            )
        if min(sizes) < 1:
            raise ValueError(f"sizes must be positive; got {sizes}.")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "layers", dense_layers(sizes))
        resolve(self, ("activation",))
        act = self.activation
        object.__setattr__(
            self, "sigma", ACTIVATIONS[act] if isinstance(act, str) else act
        )

    # ---------------------------------------------------------------- config
    @property
    def n_in(self) -> int:
        """Input width n_0."""
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        """Output width n_L."""
        return self.sizes[-1]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's input shape, (n_0,)."""
        return (self.sizes[0],)

    @property
    def blocks(self) -> tuple[Dense, ...]:
        """The parametrized layers the δ pass runs through: ``layers``."""
        return self.layers

    @property
    def architecture(self) -> str:
        """The widths, as messages and checkpoints name them: ``"2-8-1"``."""
        return "-".join(map(str, self.sizes))

    @property
    def needs(self) -> str:
        """How messages name what the net's configuration needs."""
        return f"sizes={self.sizes}"

    def __reduce__(self):
        """Pickled as its configuration; the derived fields are rebuilt."""
        fields = (self.sizes, self.activation, self.output_activation, self.cost)
        return type(self), (*fields, self.reduction)
