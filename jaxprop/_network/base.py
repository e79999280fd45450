"""What every network has: the checked, jitted methods over the δ pass
(:class:`Net`, which ``jp.MLP`` and ``jp.Network`` extend), the checks of a
net's arguments, and the compiled core they call.

A network is a tuple of parametrized layers l = 1..L (``net.blocks``: Dense,
Conv, a user's layer, each with the parameter-free maps that precede it), its
activations σ_l and σ_L, its cost and its reduction. The maths (forward pass,
output δ, the δ recursion, weight gradients) is in ``jaxprop._core.backprop``,
as pure functions of arrays; this module checks inputs and jits those
functions.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.activations import (
    ACTIVATIONS,
    canonical_activation,
    default_scheme,
    describe,
)
from .._core.backprop import (
    Cache,
    Through,
    forward,
    per_example_output_delta,
    recursion,
    reduce,
    through_weights,
    weight_grads,
)
from .._core.costs import COSTS, REDUCTIONS, canonical_cost
from .._core.params import (
    DenseParams,
    Params,
    check_float_dtype,
    check_key,
    check_scheme,
    init_params,
)
from .._inputs import check_inputs, check_targets
from .._validate import expected_one_of

Array = jax.Array


class Net:
    """The methods every network has (``jp.MLP``, ``jp.Network``).

    A subclass is a frozen dataclass that sets, when built, ``blocks`` (the
    parametrized layers l = 1..L, the engine's units), ``sigma`` (the hidden
    activation, or a tuple of one per hidden layer), ``sigma_out``,
    ``cost_fn``, ``reduction``, ``activation``, ``input_shape`` (one example's)
    and ``n_out``.

    All methods are pure functions of ``params`` and data: they work under
    ``jax.jit`` (close over the net or pass it as a static argument),
    ``jax.vmap`` over stacked params, and ``jax.grad``, in float32 and float64.
    Arguments are checked before anything is compiled: a mistake raises a
    ``ValueError`` or ``TypeError`` that names the argument.
    """

    @property
    def n_layers(self) -> int:
        """Number of parametrized layers L."""
        return len(self.blocks)

    @property
    def needs(self) -> str:
        """How messages name what the net's configuration needs."""
        return "the network"

    def layer_name(self, l: int) -> str:
        """How messages name ``params[l]`` beyond its index ("" by default)."""
        return ""

    def flops(self, batch: int, backward: bool = True) -> int:
        """Matmul FLOPs of one pass over a batch (multiply and add count as two).

        The sum over ``layers`` of each layer's ``flops(batch)``: its forward
        map (Dense: 2·batch·n_{l-1} n_l); the backward adds its gradient
        ∂θ^l (Dense: (a^{l-1})ᵀ δ^l, as many) and its adjoint for l ≥ 2
        (δ^{l-1} from δ^l; δ^0 is never formed). Elementwise work
        (activations, biases, the cost) is not counted.

        Args:
          batch: examples per pass.
          backward: include the backward pass (a training step's gradient).
        """
        flops = [layer.flops(batch) for layer in self.blocks]
        total = sum(f.apply for f in flops)
        if backward:
            total += sum(f.grads for f in flops) + sum(f.adjoint for f in flops[1:])
        return total

    def init(self, key, scheme: str | None = None, dtype=None) -> Params:
        """Draws initial parameters.

        Args:
          key: a PRNG key (``jax.random.key(seed)``).
          scheme: ``"uniform01"`` (U[0, 1) weights and biases, as
            ``np.random.rand``), ``"glorot"``, ``"he"`` or ``"lecun"``; by default
            the one that suits ``activation`` (``jp.DEFAULT_SCHEME``, or a user
            Activation's ``scheme``, else ``"glorot"``).
          dtype: floating dtype of the parameters; JAX's default float if None.

        Returns:
          A tuple of ``jp.DenseParams(w, b)`` (alias ``jp.Layer``), w:
          (n_{l-1}, n_l), b: (n_l,).
        """
        check_key(key)
        scheme = default_scheme(self.activation) if scheme is None else scheme
        return _init(check_scheme(scheme), check_float_dtype(dtype), self.blocks, key)

    def forward(self, params: Params, x) -> Array:
        """The network's output ŷ = a^L.

        Args:
          params: as returned by ``init``.
          x: (batch, *input_shape) or one example; integers and bools are
            cast to the params' dtype.

        Returns:
          (batch, n_out), or (n_out,) for a single example.
        """
        x, unbatched = check_x(self, params, x)
        y_hat = _forward(self, params, x)
        return y_hat[0] if unbatched else y_hat

    def forward_with_cache(self, params: Params, x) -> tuple[Array, Cache]:
        """The forward pass, keeping every z^l and a^l for ``backward``.

        Args:
          params: as returned by ``init``.
          x: (batch, *input_shape); a single example is treated as a batch of 1.

        Returns:
          ``(y_hat, cache)``: y_hat (batch, n_out) and the :class:`Cache`.
        """
        x, _ = check_x(self, params, x)
        return _forward_with_cache(self, params, x)

    def loss(self, params: Params, x, y) -> Array:
        """The scalar loss L = Σ (or mean) over the batch of c(ŷ, y).

        Args:
          params: as returned by ``init``.
          x: (batch, *input_shape) or one example.
          y: (batch, n_out) targets of a kind the cost accepts
            (``cost.targets``: real-valued, in [0, 1], probability rows, ±1);
            integer class ids (batch,) where it accepts ``"labels"``
            (``softmax_cross_entropy``). Without the batch axis for a single
            example.
        """
        x, y = check_xy(self, params, x, y)
        return compiled_value_and_backprop(self, params, x, y, with_grads=False)[0]

    def loss_from_cache(self, cache: Cache, y) -> Array:
        """The loss of a forward pass already made, from its cache.

        Args:
          cache: from ``forward_with_cache`` (its batch: ``cache.a[0]``).
          y: targets for that batch (as in ``loss``, batched).
        """
        y = check_targets(
            y, self.cost_fn, self.n_out, cache.a[0].shape[0], False, cache.a[0].dtype
        )
        return _loss_from_cache(self, cache, y)

    def backprop(self, params: Params, x, y) -> Params:
        """∂L/∂params by the hand-written δ recursion (no autodiff).

        Same arguments as ``loss``; returns a pytree like ``params``.
        """
        return self.value_and_backprop(params, x, y)[1]

    def value_and_backprop(self, params: Params, x, y) -> tuple[Array, Params]:
        """The loss and its gradient from one forward and one backward pass.

        Same arguments as ``loss``; returns ``(value, grads)``.
        """
        x, y = check_xy(self, params, x, y)
        return compiled_value_and_backprop(self, params, x, y, with_grads=True)

    def backward(
        self, params: Params, cache: Cache, y, feedback: Sequence[Array] | None = None
    ) -> Params:
        r"""The δ backward pass from a forward cache, with a replaceable feedback path.

        With ``feedback=None`` this is backpropagation (B^l = W^l). Passing other
        matrices B^l implements learning rules that share the δ recursion, such
        as feedback alignment (fixed random B) or sign symmetry (sign(W)).

        Args:
          params: as given to ``forward_with_cache``.
          cache: from ``forward_with_cache`` (its batch: ``cache.a[0]``).
          y: targets for that batch (as in ``loss``, batched).
          feedback: None, or one matrix B^l: (n_{l-1}, n_l) for each l = 2..L
            (so ``len(feedback) == n_layers - 1``) used in place of W^l on the
            feedback path, δ^{l-1} = (δ^l B^lᵀ) ⊙ σ'(z^{l-1}).

        Returns:
          Updates in the shape of ``params`` (the gradient when feedback is None).
        """
        check_params(self, params)
        batch = cache.a[0].shape[0]
        y = check_targets(y, self.cost_fn, self.n_out, batch, False, cache.a[0].dtype)
        if feedback is None:
            feedback = through_weights(params).weights
        else:
            check_feedback(feedback, self)
        return _backward(self, tuple(feedback), cache, y)


# --------------------------------------------------------------------- checks
def check_net(net) -> Net:
    """``net`` if it is a :class:`jp.MLP` or a :class:`jp.Network`, else a
    TypeError naming ``net``."""
    if not isinstance(net, Net):
        raise TypeError(
            f"net must be a jp.MLP or a jp.Network; got {type(net).__name__}."
        )
    return net


def check_params(net: Net, params: Any) -> jnp.dtype:
    """Checks that ``params`` fits ``net``'s layers (``layer.shapes``); returns
    their dtype.

    Raises:
      TypeError: if ``params`` is not a sequence of ``jp.DenseParams(w, b)`` of
        floating arrays of one dtype.
      ValueError: if the number of layers or a shape does not match the net's.
    """
    needs = net.needs
    # Shapes only: the dtype is the params' own, checked leaf by leaf below.
    shapes = [layer.shapes(jnp.float32) for layer in net.blocks]
    expected = ", ".join(f"DenseParams(w: {s.w.shape}, b: {s.b.shape})" for s in shapes)
    if not isinstance(params, (tuple, list)):
        raise TypeError(
            f"params must be a tuple of jp.DenseParams(w, b), one per layer "
            f"({expected}); got {type(params).__name__}."
        )
    if len(params) != len(shapes):
        raise ValueError(
            f"params has {len(params)} layers; {needs} needs {len(shapes)}: {expected}."
        )
    dtypes = set()
    for l, (theta, want) in enumerate(zip(params, shapes, strict=True)):
        if not isinstance(theta, DenseParams):
            hint = (
                " (wrap (w, b) pairs: tuple(jp.DenseParams(w, b) for w, b in params))"
                if isinstance(theta, (tuple, list)) and len(theta) == 2
                else ""
            )
            raise TypeError(
                f"params[{l}] must be a jp.DenseParams(w, b); got "
                f"{type(theta).__name__}{hint}."
            )
        for name, leaf, shape in (
            ("w", theta.w, want.w.shape),
            ("b", theta.b, want.b.shape),
        ):
            leaf_dtype = getattr(leaf, "dtype", None)
            if leaf_dtype is None or not jnp.issubdtype(leaf_dtype, jnp.floating):
                raise TypeError(
                    f"params[{l}].{name} must be a floating array; got "
                    f"{type(leaf).__name__}"
                    + (f" of dtype {leaf_dtype}." if leaf_dtype else ".")
                )
            if tuple(np.shape(leaf)) != shape:
                raise ValueError(
                    f"params[{l}].{name}{net.layer_name(l)} has shape "
                    f"{np.shape(leaf)}; {needs} needs {shape}."
                )
            dtypes.add(jnp.dtype(leaf_dtype))
    if len(dtypes) > 1:
        raise TypeError(
            f"params mix dtypes {sorted(map(str, dtypes))}; use one "
            f"floating dtype for every layer."
        )
    return dtypes.pop()


def check_x(net: Net, params: Any, x: Any) -> tuple[Array, bool]:
    """(x: (batch, *input_shape) in the params' dtype, whether x was one example),
    ``params`` checked first."""
    return check_inputs(x, net.input_shape, check_params(net, params))


def check_xy(net: Net, params: Any, x: Any, y: Any) -> tuple[Array, Array]:
    """(x, y) checked for ``net`` and ``params``, batched, in the params' dtype."""
    dtype = check_params(net, params)
    x, unbatched = check_inputs(x, net.input_shape, dtype)
    return x, check_targets(y, net.cost_fn, net.n_out, x.shape[0], unbatched, dtype)


def check_feedback(feedback, net: Net) -> None:
    """A ValueError unless ``feedback`` holds one B^l of W^l's shape for
    each layer l = 2..L of ``net``."""
    shapes = [layer.shapes(jnp.float32).w.shape for layer in net.blocks[1:]]
    if not isinstance(feedback, (tuple, list)) or len(feedback) != len(shapes):
        raise ValueError(
            f"feedback must be a sequence of {len(shapes)} matrices "
            f"with shapes {shapes} (one per layer 2..L); got "
            f"{type(feedback).__name__}"
            + (f" of length {len(feedback)}." if hasattr(feedback, "__len__") else ".")
        )
    for l, (b, shape) in enumerate(zip(feedback, shapes, strict=False)):
        if tuple(getattr(b, "shape", ())) != shape:
            raise ValueError(
                f"feedback[{l}] must have shape {shape} (B^{l + 2}, in place of "
                f"W^{l + 2}{net.layer_name(l + 1)}); got "
                f"{getattr(b, 'shape', type(b).__name__)}."
            )


def _cost_fit_hint() -> str:
    entries = [
        f"{name} with {list(c.output_activations) if c.output_activations else 'any'}"
        for name, c in COSTS.items()
    ]
    return "costs and the output activations they fit: " + "; ".join(entries) + "."


def resolve(net, activations) -> None:
    """Sets ``net``'s resolved fields, shared by every kind of net: the
    activation and cost names made canonical, ``sigma_out`` and ``cost_fn``
    resolved from them, the reduction checked and the cost's fit with the
    output activation checked. ``activations``: the hidden fields to make
    canonical (``("activation",)``)."""
    for field in (*activations, "output_activation"):
        spec = canonical_activation(getattr(net, field), field)
        object.__setattr__(net, field, spec)
    object.__setattr__(net, "cost", canonical_cost(net.cost))
    for field, spec, table in (
        ("sigma_out", net.output_activation, ACTIVATIONS),
        ("cost_fn", net.cost, COSTS),
    ):
        object.__setattr__(net, field, table[spec] if isinstance(spec, str) else spec)
    if not isinstance(net.reduction, str) or net.reduction not in REDUCTIONS:
        raise ValueError(
            f"Unknown reduction {net.reduction!r}; "
            f"{expected_one_of(net.reduction, REDUCTIONS)}"
        )
    if not net.cost_fn.fits(net.output_activation):
        wanted = [str(f) for f in net.cost_fn.output_activations]
        raise ValueError(
            f"cost={describe(net.cost)} needs output_activation in "
            f"{wanted}, got {describe(net.output_activation)}"
            + (f"; {_cost_fit_hint()}" if isinstance(net.cost, str) else ".")
        )


# ---------------------------------------------------------------- compiled core
# The functions below take already-checked, batched arrays. The net is a static
# argument: equal configurations share one compiled program.


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _init(scheme: str, dtype, layers: tuple, key) -> Params:
    return init_params(key, layers, scheme, dtype)


@functools.partial(jax.jit, static_argnums=0)
def _forward_with_cache(net: Net, params: Params, x: Array) -> tuple[Array, Cache]:
    return forward(net.blocks, params, x, net.sigma, net.sigma_out)


@functools.partial(jax.jit, static_argnums=0)
def _forward(net: Net, params: Params, x: Array) -> Array:
    return _forward_with_cache(net, params, x)[0]


def loss_and_output_delta(net: Net, cache: Cache, y: Array) -> tuple[Array, Array]:
    """(L, δ^L = ∂L/∂z^L: (batch, n_out)) of ``net``'s cost and reduction."""
    c, delta = per_example_output_delta(cache, y, net.cost_fn, net.sigma_out)
    return reduce(c, delta, net.reduction)


def _loss_from_cache(net: Net, cache: Cache, y: Array) -> Array:
    return loss_and_output_delta(net, cache, y)[0]  # XLA drops the unused δ^L


def _feedback_grads(
    net: Net, feedback: tuple[Array, ...], cache: Cache, delta: Array
) -> Params:
    r"""Backpropagation's updates with B^l in place of W^l on the way down:
    δ^{l} = (δ^{l+1} (B^{l+1})ᵀ) ⊙ σ'(z^{l}), ∂W^l = (a^{l-1})ᵀ δ^l, ∂b^l =
    Σ_batch δ^l; feedback = (B^2, ..., B^L), B^l: (n_{l-1}, n_l)."""
    deltas = recursion(net.blocks, cache, delta, net.sigma, Through(feedback))
    return weight_grads(net.blocks, cache, deltas)


@functools.partial(jax.jit, static_argnums=0)
def _backward(net: Net, feedback: tuple[Array, ...], cache: Cache, y: Array) -> Params:
    delta = loss_and_output_delta(net, cache, y)[1]
    return _feedback_grads(net, feedback, cache, delta)


@functools.partial(jax.jit, static_argnums=(0, 4))
def compiled_value_and_backprop(
    net: Net, params: Params, x: Array, y: Array, with_grads: bool
):
    """(L, ∂L/∂params) from one forward pass; (L, None) without the gradient.

    For arguments already checked (:func:`check_xy`): x: (batch, *input_shape), y
    batched; jitted with the net and ``with_grads`` static."""
    _, cache = _forward_with_cache(net, params, x)
    value, delta = loss_and_output_delta(net, cache, y)
    if not with_grads:
        return value, None
    feedback = through_weights(params).weights
    return value, _feedback_grads(net, feedback, cache, delta)
