r"""The multilayer perceptron: checked, jitted methods over the δ pass.

For layers l = 1..L, with a^0 = x (row-vector convention, x: (batch, n_0)):

    z^l = a^{l-1} W^l + b^l,        a^l = σ_l(z^l),

where σ_l is the hidden activation for l < L and the output activation for l = L.
The loss is L = Σ_batch c(a^L, y) (``reduction="sum"``) or its mean over the batch.
An MLP is a composition of Dense layers (``net.layers``,
``jaxprop._core.layers.Dense``). The maths (forward pass, output δ, the δ
recursion, weight gradients) is in
``jaxprop._core.backprop``, as pure functions of arrays; this module is the
convenience class that checks its inputs and jits those functions, and the
runs-last batching rule for many runs of a tiny network (:func:`over_runs`).
Other modules check a net and its arguments with :func:`check_net`,
:func:`check_params`, :func:`check_x` and :func:`check_xy`.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._core.activations import (
    ACTIVATIONS,
    Activation,
    canonical_activation,
    default_scheme,
    describe,
)
from ._core.backprop import (
    Cache,
    Through,
    forward,
    per_example_output_delta,
    recursion,
    reduce,
    through_weights,
    weight_grads,
)
from ._core.costs import COSTS, REDUCTIONS, Cost, canonical_cost
from ._core.layers import Dense, dense_layers
from ._core.params import (
    DenseParams,
    Params,
    check_float_dtype,
    check_key,
    check_scheme,
    init_params,
)
from ._core.platforms import (
    DEFAULT_PLATFORM,
    LOWERING_PLATFORMS,
    PLATFORM_COSTS,
    platform_costs,
)
from ._inputs import check_inputs, check_targets
from ._validate import expected_one_of

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MLP:
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
        for field in ("activation", "output_activation"):
            spec = canonical_activation(getattr(self, field), field)
            object.__setattr__(self, field, spec)
        object.__setattr__(self, "cost", canonical_cost(self.cost))
        for field, spec, table in (
            ("sigma", self.activation, ACTIVATIONS),
            ("sigma_out", self.output_activation, ACTIVATIONS),
            ("cost_fn", self.cost, COSTS),
        ):
            object.__setattr__(
                self, field, table[spec] if isinstance(spec, str) else spec
            )
        if not isinstance(self.reduction, str) or self.reduction not in REDUCTIONS:
            raise ValueError(
                f"Unknown reduction {self.reduction!r}; "
                f"{expected_one_of(self.reduction, REDUCTIONS)}"
            )
        if not self.cost_fn.fits(self.output_activation):
            wanted = [str(f) for f in self.cost_fn.output_activations]
            raise ValueError(
                f"cost={describe(self.cost)} needs output_activation in "
                f"{wanted}, got {describe(self.output_activation)}"
                + (f"; {_cost_fit_hint()}" if isinstance(self.cost, str) else ".")
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
    def n_layers(self) -> int:
        """Number of weight layers L."""
        return len(self.sizes) - 1

    def __reduce__(self):
        """Pickled as its configuration; the derived fields are rebuilt."""
        fields = (self.sizes, self.activation, self.output_activation, self.cost)
        return type(self), (*fields, self.reduction)

    # ------------------------------------------------------------ public API
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
        flops = [layer.flops(batch) for layer in self.layers]
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
        return _init(check_scheme(scheme), check_float_dtype(dtype), self.layers, key)

    def forward(self, params: Params, x) -> Array:
        """The network's output ŷ = a^L.

        Args:
          params: as returned by ``init``.
          x: (batch, n_in) or (n_in,); integers and bools are cast to the params'
            dtype.

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
          x: (batch, n_in); a single (n_in,) example is treated as a batch of 1.

        Returns:
          ``(y_hat, cache)``: y_hat (batch, n_out) and the :class:`Cache`.
        """
        x, _ = check_x(self, params, x)
        return _forward_with_cache(self, params, x)

    def loss(self, params: Params, x, y) -> Array:
        """The scalar loss L = Σ (or mean) over the batch of c(ŷ, y).

        Args:
          params: as returned by ``init``.
          x: (batch, n_in) or (n_in,).
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
            _check_feedback(feedback, self.layers)
        return _backward(self, tuple(feedback), cache, y)


# --------------------------------------------------------------------- checks
def check_net(net) -> MLP:
    """``net`` if it is a :class:`jp.MLP`, else a TypeError naming ``net``."""
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a jp.MLP; got {type(net).__name__}.")
    return net


def check_params(net: MLP, params: Any) -> jnp.dtype:
    """Checks that ``params`` fits ``net``'s layers (``layer.shapes``); returns
    their dtype.

    Raises:
      TypeError: if ``params`` is not a sequence of ``jp.DenseParams(w, b)`` of
        floating arrays of one dtype.
      ValueError: if the number of layers or a shape does not match the net's.
    """
    sizes = net.sizes
    # Shapes only: the dtype is the params' own, checked leaf by leaf below.
    shapes = [layer.shapes(jnp.float32) for layer in net.layers]
    expected = ", ".join(f"DenseParams(w: {s.w.shape}, b: {s.b.shape})" for s in shapes)
    if not isinstance(params, (tuple, list)):
        raise TypeError(
            f"params must be a tuple of jp.DenseParams(w, b), one per layer "
            f"({expected}); got {type(params).__name__}."
        )
    if len(params) != len(shapes):
        raise ValueError(
            f"params has {len(params)} layers; sizes={sizes} needs "
            f"{len(shapes)}: {expected}."
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
                    f"params[{l}].{name} has shape {np.shape(leaf)}; "
                    f"sizes={sizes} needs {shape}."
                )
            dtypes.add(jnp.dtype(leaf_dtype))
    if len(dtypes) > 1:
        raise TypeError(
            f"params mix dtypes {sorted(map(str, dtypes))}; use one "
            f"floating dtype for every layer."
        )
    return dtypes.pop()


def check_x(net: MLP, params: Any, x: Any) -> tuple[Array, bool]:
    """(x: (batch, n_in) in the params' dtype, whether x was one example),
    ``params`` checked first."""
    return check_inputs(x, net.n_in, check_params(net, params))


def check_xy(net: MLP, params: Any, x: Any, y: Any) -> tuple[Array, Array]:
    """(x, y) checked for ``net`` and ``params``, batched, in the params' dtype."""
    dtype = check_params(net, params)
    x, unbatched = check_inputs(x, net.n_in, dtype)
    return x, check_targets(y, net.cost_fn, net.n_out, x.shape[0], unbatched, dtype)


def _cost_fit_hint() -> str:
    entries = [
        f"{name} with {list(c.output_activations) if c.output_activations else 'any'}"
        for name, c in COSTS.items()
    ]
    return "costs and the output activations they fit: " + "; ".join(entries) + "."


def _check_feedback(feedback, layers: tuple[Dense, ...]) -> None:
    """A ValueError unless ``feedback`` holds one B^l of W^l's shape for
    each layer l = 2..L."""
    shapes = [layer.shapes(jnp.float32).w.shape for layer in layers[1:]]
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
                f"feedback[{l}] must have shape {shape}; got "
                f"{getattr(b, 'shape', type(b).__name__)}."
            )


# ---------------------------------------------------------------- compiled core
# The functions below take already-checked, batched arrays. The net is a static
# argument: equal configurations share one compiled program.


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _init(scheme: str, dtype, layers: tuple[Dense, ...], key) -> Params:
    return init_params(key, layers, scheme, dtype)


@functools.partial(jax.jit, static_argnums=0)
def _forward_with_cache(net: MLP, params: Params, x: Array) -> tuple[Array, Cache]:
    return forward(net.layers, params, x, net.sigma, net.sigma_out)


@functools.partial(jax.jit, static_argnums=0)
def _forward(net: MLP, params: Params, x: Array) -> Array:
    return _forward_with_cache(net, params, x)[0]


def loss_and_output_delta(net: MLP, cache: Cache, y: Array) -> tuple[Array, Array]:
    """(L, δ^L = ∂L/∂z^L: (batch, n_out)) of ``net``'s cost and reduction."""
    c, delta = per_example_output_delta(cache, y, net.cost_fn, net.sigma_out)
    return reduce(c, delta, net.reduction)


def _loss_from_cache(net: MLP, cache: Cache, y: Array) -> Array:
    return loss_and_output_delta(net, cache, y)[0]  # XLA drops the unused δ^L


def _feedback_grads(
    net: MLP, feedback: tuple[Array, ...], cache: Cache, delta: Array
) -> Params:
    r"""Backpropagation's updates with B^l in place of W^l on the way down:
    δ^{l} = (δ^{l+1} (B^{l+1})ᵀ) ⊙ σ'(z^{l}), ∂W^l = (a^{l-1})ᵀ δ^l, ∂b^l =
    Σ_batch δ^l; feedback = (B^2, ..., B^L), B^l: (n_{l-1}, n_l)."""
    deltas = recursion(net.layers, cache, delta, net.sigma, Through(feedback))
    return weight_grads(net.layers, cache, deltas)


@functools.partial(jax.jit, static_argnums=0)
def _backward(net: MLP, feedback: tuple[Array, ...], cache: Cache, y: Array) -> Params:
    delta = loss_and_output_delta(net, cache, y)[1]
    return _feedback_grads(net, feedback, cache, delta)


@functools.partial(jax.jit, static_argnums=(0, 4))
def compiled_value_and_backprop(
    net: MLP, params: Params, x: Array, y: Array, with_grads: bool
):
    """(L, ∂L/∂params) from one forward pass; (L, None) without the gradient.

    For arguments already checked (:func:`check_xy`): x: (batch, n_in), y
    batched; jitted with the net and ``with_grads`` static."""
    _, cache = _forward_with_cache(net, params, x)
    value, delta = loss_and_output_delta(net, cache, y)
    if not with_grads:
        return value, None
    feedback = through_weights(params).weights
    return value, _feedback_grads(net, feedback, cache, delta)


#: :func:`over_runs` puts the runs last when every width is at
#: most this and the batch at most ``RUNS_LAST_MAX_BATCH`` (tiny products,
#: unrolled into elementwise terms); otherwise it keeps ``vmap``'s batched
#: matmuls. These are the CPU's figures; every platform's, with where they come
#: from, are in ``jaxprop._core.platforms.PLATFORM_COSTS``.
RUNS_LAST_MAX_WIDTH = PLATFORM_COSTS["cpu"].runs_last_max_width
RUNS_LAST_MAX_BATCH = PLATFORM_COSTS["cpu"].runs_last_max_batch


def runs_last_pays(net: MLP, batch: int, platform: str = "cpu") -> bool:
    """Whether many runs of ``net`` on batches of ``batch`` are computed runs-last.

    Args:
      net: the network.
      batch: examples per step.
      platform: a ``Device.platform`` (``"cpu"``, ``"gpu"``, ``"tpu"``); its
        entry of ``jaxprop._core.platforms.PLATFORM_COSTS`` decides.
    """
    costs = platform_costs(platform)
    return (
        costs.runs_last
        and max(layer.width for layer in net.layers) <= costs.runs_last_max_width
        and batch <= costs.runs_last_max_batch
    )


def for_platform(net: MLP, batch: int, last, plain, *args):
    """``last(*args)`` where ``runs_last_pays(net, batch, platform)`` for the
    platform compiled for, else ``plain(*args)``.

    Where platforms decide differently, both are traced and
    ``jax.lax.platform_dependent`` keeps the compiled platform's.
    """
    pays = {
        name: runs_last_pays(net, batch, platform)
        for name, platform in LOWERING_PLATFORMS.items()
    }
    default = runs_last_pays(net, batch, DEFAULT_PLATFORM)
    if set(pays.values()) == {default}:
        return (last if default else plain)(*args)
    return jax.lax.platform_dependent(
        *args,
        default=last if default else plain,
        **{name: last if p else plain for name, p in pays.items()},
    )


def over_runs(net: MLP, fn, last, batch_of):
    """``fn(*args)`` with the runs-last batching rule (the one rule: the
    trainer's steps, ``jaxprop._engine.steps._steps``, use it).

    Under ``vmap`` over ``n_runs`` runs with ``b = batch_of(in_batched, *args)``
    (``in_batched``: a pytree of bools like ``args``): if ``b`` is None, a
    plain ``vmap`` of ``fn``; else ``last(in_batched, *args)``, whose outputs
    carry the runs last (or a trailing 1 to broadcast), moved back to the front
    where ``runs_last_pays(net, b, platform)`` for the platform compiled for,
    a plain ``vmap`` where not (:func:`for_platform`).
    """

    @jax.custom_batching.custom_vmap
    def batched(*args):
        return fn(*args)

    @batched.def_vmap
    def _over_runs(n_runs, in_batched, *args):
        def vmapped(*args):
            in_axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
            return jax.vmap(fn, in_axes=in_axes)(*args)

        def moved_back(*args):
            return jax.tree.map(
                lambda a: jnp.moveaxis(
                    jnp.broadcast_to(a, a.shape[:-1] + (n_runs,)), -1, 0
                ),
                last(in_batched, *args),
            )

        batch = batch_of(in_batched, *args)
        if batch is None:
            out = vmapped(*args)
        else:
            out = for_platform(net, batch, moved_back, vmapped, *args)
        return out, jax.tree.map(lambda _: True, out)

    return batched
