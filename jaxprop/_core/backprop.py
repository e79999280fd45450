r"""The maths of the δ pass: pure functions of arrays, no validation, no jit.

For layers l = 1..L, with a^0 = x (rows are examples, x: (batch, n_0)):

    z^l = a^{l-1} W^l + b^l,        a^l = σ_l(z^l),

σ_l the hidden activation σ for l < L and the output activation σ_L for l = L.
Per example i the cost is c(a^L_i, y_i) and its output error δ^L_i = ∂c_i/∂z^L_i
(the :class:`jp.Cost` computes both, in stable fused forms); the loss L is their
sum or mean over the batch. The δ recursion, with a replaceable projection,

    δ^l = project(l, δ^{l+1}, δ^L) ⊙ σ'(z^l),     l = L-1, ..., 1,

is backpropagation when project(l, d, _) = d (W^{l+1})ᵀ; credit-assignment rules
(``jp.rules``) change only the projection. Weight updates are
∂W^l = (a^{l-1})ᵀ δ^l and ∂b^l = Σ_batch δ^l.

Each layer is a value of a layer kind (``jaxprop._core.layers``; Dense is
z^l = a^{l-1} W^l + b^l above): the forward pass is a loop of ``layer.apply``,
δ^{l+1} (W^{l+1})ᵀ is ``layers[l].adjoint(W^{l+1}, δ^{l+1})`` with the weight
replaceable, and the updates and per-example norms are ``layer.grads`` and
``layer.sq_norms``. ``layers[l - 1]`` is layer l, as ``params[l - 1]`` holds θ^l.

Everything here takes arrays, the layers and the activation/cost objects it
needs (never a whole network), and works on the runs-last arrays of the
tiny-network fast path (``jaxprop._engine.steps`` through
``jaxprop._network.over_runs``): products go through :func:`contract`, the rest
is elementwise with the features on axis 1, so trailing run axes broadcast. The
convenience class ``jp.MLP`` (``_network.py``) checks inputs and jits; the
rules, the custom VJPs and the per-example quantities are compositions of these.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .activations import Activation
from .costs import Cost
from .layers import contract as contract
from .layers import sq_norms_and_sums
from .layers import sum_batch as sum_batch
from .params import Params

Array = jax.Array

#: ``(l, δ^{l+1}, δ^L) -> (batch, n_l)``: what reaches layer l before σ'(z^l).
Project = Callable[[int, Array, Array], Array]


class Cache(NamedTuple):
    """What the forward pass keeps for the backward pass.

    Attributes:
      a: (a^0, ..., a^L); a^0 = x: (batch, n_0), a^l: (batch, n_l).
      z: (z^1, ..., z^L); z^l: (batch, n_l). Note ``z[l - 1]`` is z^l.
    """

    a: tuple[Array, ...]
    z: tuple[Array, ...]


#: (layers, cache) of the δ recursion being traced: the built-in projections
#: below are functions of (l, δ^{l+1}, δ^L) only, as a user's rule calls them
#: (wrapping a built-in rule's ``project``), and read the layers from here.
_RECURSION: contextvars.ContextVar = contextvars.ContextVar("recursion", default=None)


class Through(NamedTuple):
    """The projection that hands each layer's adjoint a weight in place of its
    own: δ^{l+1} ↦ ``layers[l].adjoint(weights[l - 1], δ^{l+1}, a^l)``.

    Attributes:
      weights: (B^2, ..., B^L), B^l of W^l's shape: W^l itself for backprop, a
        fixed or learned B^l for feedback alignment and Kolen-Pollack, sign(W^l)
        for sign symmetry.
    """

    weights: tuple[Array, ...]

    def __call__(self, l: int, delta_next: Array, delta_out: Array) -> Array:
        """Layer l + 1's adjoint with B^{l+1}: what reaches layer l. Called
        outside a recursion (no layers known), a Dense layer's, δ^{l+1}
        (B^{l+1})ᵀ."""
        del delta_out
        context = _RECURSION.get()
        if context is None:
            return contract(delta_next, self.weights[l - 1], 1, 1)
        layers, cache = context
        return layers[l].adjoint(self.weights[l - 1], delta_next, cache.a[l])


class Spread(NamedTuple):
    r"""The projection that carries δ^L itself back through each next layer's
    adjoint: δ^L copied to every output position of layer l + 1, then
    ``layers[l].adjoint(weights[l - 1], ·)``, a kernel-shaped direct feedback
    (biotorch's DFA for convolutions; for a Dense layer l + 1 it is δ^L
    (B^{l+1})ᵀ, Nøkland's DFA with B transposed).

    Attributes:
      weights: (B^2, ..., B^L), B^l of W^l's shape with n_L in place of its
        output channels: (*kernel, C_in, n_L) for a conv layer, (n_{l-1}, n_L)
        for a Dense one.
    """

    weights: tuple[Array, ...]

    def __call__(self, l: int, delta_next: Array, delta_out: Array) -> Array:
        """Layer l + 1's adjoint with B^{l+1} of δ^L at each of its positions."""
        del delta_next
        context = _RECURSION.get()
        if context is None:
            raise ValueError(
                "Spread projects through the layers of a δ recursion; call it "
                "from a rule's project inside jp.rules.delta_recursion."
            )
        layers, cache = context
        spatial = tuple(layers[l].out_shape[:-1])
        d = jnp.expand_dims(delta_out, tuple(range(1, 1 + len(spatial))))
        d = jnp.broadcast_to(d, (d.shape[0], *spatial, *d.shape[1 + len(spatial) :]))
        return layers[l].adjoint(self.weights[l - 1], d, cache.a[l])


def hidden(sigma: Activation | Sequence[Activation], l: int) -> Activation:
    """σ_l of hidden layer l: ``sigma`` itself, or ``sigma[l - 1]`` when a
    network gives each hidden layer its own (a tuple of L − 1)."""
    return sigma if isinstance(sigma, Activation) else sigma[l - 1]


def forward(
    layers,
    params: Params,
    x: Array,
    sigma: Activation | Sequence[Activation],
    sigma_out: Activation,
) -> tuple[Array, Cache]:
    """ŷ = a^L: (batch, n_L) and the :class:`Cache` of every z^l and a^l.

    ``sigma``: the hidden activation, or one per hidden layer (a tuple of
    L − 1, :func:`hidden`)."""
    a, zs, as_ = x, [], [x]
    for l, (layer, theta) in enumerate(zip(layers, params, strict=True), start=1):
        act = sigma_out if l == len(params) else hidden(sigma, l)
        z = layer.apply(theta, a)  # a^{l-1} W^l + b^l for Dense
        a = act.fn(z)
        zs.append(z)
        as_.append(a)
    return a, Cache(a=tuple(as_), z=tuple(zs))


def per_example_output_delta(
    cache: Cache, y: Array, cost: Cost, sigma_out: Activation
) -> tuple[Array, Array]:
    """Per example, before the batch reduction: (c: (batch,), δ^L_i = ∂c_i/∂z^L_i:
    (batch, n_L))."""
    return cost.value_and_delta(cache.z[-1], cache.a[-1], y, sigma_out)


def reduce(c: Array, delta: Array, reduction: str) -> tuple[Array, Array]:
    """(L, ∂L/∂z^L) from the per-example (c, δ^L): Σ over the batch, or the mean
    (δ^L / batch: the 1/N of ``reduction="mean"`` is folded into δ^L once)."""
    total = sum_batch(c, 1)
    if reduction == "sum":
        return total, delta
    return total / c.shape[0], delta / c.shape[0]


def recursion(
    layers,
    cache: Cache,
    delta: Array,
    sigma: Activation,
    project: Project | Through | Spread,
    name: str = "the projection",
) -> tuple[Array, ...]:
    r"""The δ recursion with a replaceable projection: (δ^1, ..., δ^L).

    .. math::
        δ^{l} = \mathrm{project}(l, δ^{l+1}, δ^L) ⊙ σ'(z^{l}),  l = L-1, ..., 1

    Backpropagation projects with the forward weights (``Through`` W);
    feedback alignment with fixed random B^{l+1} in place of W^{l+1}; direct
    feedback alignment sends δ^L straight down, δ^L B^l.

    Args:
      layers: the network's layers (``layers[l]`` is layer l + 1).
      cache: the forward pass's a^0..a^L and z^1..z^L.
      delta: δ^L: (batch, n_L), the output layer's error (true for every rule),
        per example or already reduced.
      sigma: the hidden activation (its σ'(z, a)).
      project: a :class:`Through` (each layer's adjoint with another weight),
        a :class:`Spread` (δ^L through each layer's adjoint),
        or ``(l, δ^{l+1}, δ^L) -> (batch, n_l)``, layer l's signal itself.
      name: who made the projection (a rule's name), for the message below.

    Returns:
      (δ^1, ..., δ^L), δ^l: (batch, n_l).

    Raises:
      ValueError: when traced, if a projection's shape is not z^l's (but for
        trailing run axes that broadcast): the product with σ'(z^l) would
        otherwise broadcast it into a δ^l of the wrong numbers.
    """
    out = [delta]
    token = _RECURSION.set((layers, cache))
    try:
        for l in range(len(cache.z) - 1, 0, -1):
            z, a = cache.z[l - 1], cache.a[l]  # z^l, a^l
            runs_last = z.ndim > 1 + len(layers[l - 1].out_shape)
            signal = _projected(project, l, out[-1], delta, z, name, runs_last)
            out.append(signal * hidden(sigma, l).derivative(z, a))
    finally:
        _RECURSION.reset(token)
    return tuple(reversed(out))


def _projected(project, l: int, delta_next, delta, z, name, runs_last) -> Array:
    """project(l, δ^{l+1}, δ^L), its shape checked against z^l: (batch,
    *shape of z^l); a flat (batch, size of z^l) signal (a dense projection
    such as DFA's, into a conv layer) is reshaped to z^l's shape."""
    try:
        signal = project(l, delta_next, delta)
    except (TypeError, ValueError) as e:
        if not runs_last:
            raise
        raise ValueError(
            f"{name}: the projection failed ({type(e).__name__}: {e}); {_RUNS_LAST}."
        ) from e
    shape = jnp.shape(signal)
    if not runs_last and z.ndim > 2 and shape == (z.shape[0], math.prod(z.shape[1:])):
        signal, shape = jnp.reshape(signal, z.shape), z.shape
    if shape[:2] != z.shape[:2] or not _broadcasts_to(shape, z.shape):
        raise ValueError(
            f"{name}: the projection gave shape {shape} for layer {l}, whose "
            f"z^{l} has shape {z.shape}; project(l, δ^(l+1), δ^L) must give "
            f"δ^l's shape"
            + (f"; {_RUNS_LAST}." if runs_last else f" (batch, n_l) = {z.shape}.")
        )
    return signal


_RUNS_LAST = (
    "on the runs-last arrays of the tiny-network fast path every array has a "
    "trailing runs axis (δ: (batch, n, runs), W: (n_in, n_out, runs)): write the "
    "projection's products with jp.rules.contract and the rest elementwise, or "
    "make the rule with runs_last=False"
)


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without growing it."""
    try:
        return jnp.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def through_weights(params: Params) -> Through:
    """Backpropagation's projection: every layer's adjoint with its own W."""
    return Through(tuple(theta.w for theta in params[1:]))


def weight_grads(
    layers, cache: Cache, deltas: Sequence[Array], scale: Array | None = None
) -> Params:
    r"""∂W^l = (a^{l-1})ᵀ δ^l and ∂b^l = Σ_batch δ^l for every layer
    (``layer.grads``).

    With ``scale`` s: (batch,), each example's δ^l_i is weighted first:
    ∂W^l = (a^{l-1})ᵀ (s ⊙ δ^l) = Σ_i s_i (a^{l-1}_i)ᵀ δ^l_i, one contraction
    per layer however the examples are weighted (per-example clipping, a
    Poisson sample's mask). Trailing run axes broadcast: s: (batch, *runs).
    """
    return tuple(
        layer.grads(a, d, scale)
        for layer, a, d in zip(layers, cache.a, deltas, strict=False)
    )


def per_example_weight_grads(layers, cache: Cache, deltas: Sequence[Array]) -> Params:
    r"""Every example's own gradient, unreduced (``layer.per_example_grads``):
    DenseParams(w: (batch, n_{l-1}, n_l), b: (batch, n_l)) with w_i =
    (a^{l-1}_i)ᵀ δ^l_i and b_i = δ^l_i.

    An outer product per example: batch·n_{l-1}·n_l numbers per layer. For norms
    or clipping use :func:`per_example_sq_norms` and :func:`weight_grads`'s
    scale, which never form them.
    """
    return tuple(
        layer.per_example_grads(a, d)
        for layer, a, d in zip(layers, cache.a, deltas, strict=False)
    )


def per_example_sq_norms(layers, cache: Cache, deltas: Sequence[Array]) -> Array:
    r"""‖g_i‖² of every example's gradient g_i, without forming g_i: (batch,).

    .. math::
        ‖g_i‖² = Σ_l ‖(a^{l-1}_i)ᵀ δ^l_i‖_F² + ‖δ^l_i‖²
               = Σ_l ‖δ^l_i‖² (‖a^{l-1}_i‖² + 1),

    since the Frobenius norm of an outer product u vᵀ is ‖u‖ ‖v‖ (Goodfellow
    2015, "Efficient per-example gradient computations"): O(batch · Σ_l n_l)
    work and memory (``layer.sq_norms``). Trailing run axes broadcast:
    (batch, *runs).
    """
    return sum(
        layer.sq_norms(a, d)
        for layer, a, d in zip(layers, cache.a, deltas, strict=False)
    )


def per_example_sq_norms_and_sums(layers, cache: Cache, deltas: Sequence[Array]):
    r"""(Σ_l ‖g^l_i‖²: (batch,), s ↦ (Σ_i s_i g^l_i for every layer l)):
    :func:`per_example_sq_norms` and, from what the norms formed, the weighted
    sums clipping takes (``jaxprop._core.layers.sq_norms_and_sums``; for Dense
    layers :func:`weight_grads` with the scale, the same operations)."""
    parts = [
        sq_norms_and_sums(layer, a, d)
        for layer, a, d in zip(layers, cache.a, deltas, strict=False)
    ]
    return sum(sq for sq, _ in parts), lambda s: tuple(f(s) for _, f in parts)


def clip_factors(sq_norms: Array, clip_norm: Array) -> Array:
    """min(1, C/‖g_i‖) from ‖g_i‖²: (batch, *runs); 1 where g_i = 0 and for C = ∞."""
    norms = jnp.sqrt(sq_norms)
    over = norms > clip_norm
    return jnp.where(over, clip_norm / jnp.where(over, norms, 1), 1).astype(norms.dtype)
