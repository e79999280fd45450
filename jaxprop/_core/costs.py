"""Costs c(ŷ, y) per example, with their output error δ^L written by hand.

A cost is evaluated from the output layer's pre-activation ``z`` (logits) and
activation ``a = ŷ``, which lets binary and softmax cross-entropy use their stable
forms: softplus and log-sum-exp for the value, and the fused output error
δ^L = ŷ − y instead of the product ∂c/∂a ⊙ σ'(z), which underflows to 0/0 when
the output saturates.

A :class:`Cost` also says what targets it accepts (``targets``, kinds from
``TARGET_KINDS``) and how a class is read off its outputs (``classify``), so that
target checks (``jaxprop._inputs.check_targets``), accuracy (``jaxprop._metrics``) and
the shaping of class labels into targets (:func:`targets_from_labels`) ask the
cost, never its name. A user's cost is a :class:`Cost` too, accepted wherever a
name is and checked by ``jp.check_cost``; ``hinge`` below is written as a user
writes one.

Targets reach a cost as float rows of shape ``(batch, n_out)``, or as integer
class labels ``(batch,)`` for costs that accept ``"labels"``. Every array may
carry trailing run axes, ``(batch, n_out, *runs)`` and ``(batch, *runs)``, where
many training runs are computed at once with the runs last (the trainer's
steps, ``jaxprop._engine.steps``, through ``jaxprop._network.over_runs``): the
features are always axis 1.
That is the one constraint on a user's ``value_and_delta``: reduce over
``axis=1`` (never ``-1``) and let trailing axes broadcast (``y`` shared by every
run arrives as ``(batch, n_out, 1)``).

Curvature (``jp.curvature``). The generalized Gauss-Newton G = Σ_i J_iᵀ H_i J_i
splits each example's cost where its Hessian H_i is positive semi-definite,
named by ``Cost.ggn_at``: at the logits u = z^L for the fused cross-entropies
(softmax cross-entropy; binary cross-entropy, fused with its sigmoid), at the
output u = ŷ = σ_L(z^L) for mse and the others, σ_L' then belonging to the
Jacobian J_i = ∂u_i/∂θ (mse with a sigmoid output has an indefinite Hessian in
z^L). ``Cost.hessian_sqrt`` gives a square root S_i of H_i = ∂²c_i/∂u_i²
(S_i S_iᵀ = H_i) and ``Cost.sample_targets`` draws targets from the model's
predictive distribution, for which E[∇_z c ∇_z cᵀ] = J_σᵀ H J_σ, the GGN's
middle factor in z (J_σ = diag σ_L'(z) for ``"output"``, I for ``"logits"``).

Scaling, once for everything in ``jp.curvature``: S_i, H_i and the sampler are
per example, the costs c_i before the batch reduction. The loss's GGN is
Σ_i J_iᵀ H_i J_i for ``reduction="sum"`` and (1/N) Σ_i J_iᵀ H_i J_i for
``"mean"`` (batch N), as the loss is Σ_i c_i or its mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import expected_one_of
from .activations import Activation, canonical_activation, get_activation

Array = jax.Array

#: The kinds of targets a cost may accept (``Cost.targets``): what ``y`` holds.
#: Rows are (batch, n_out), labels (batch,); values are checked when ``y`` is
#: concrete.
TARGET_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "real": "real-valued rows (batch, n_out)",
        "unit": "rows of values in [0, 1] (batch, n_out), e.g. 0/1 classes",
        "probabilities": "probability rows (batch, n_out): non-negative, summing to 1",
        "labels": "integer class ids (batch,) in [0, n_out)",
        "signs": "rows of −1 and +1 (batch, n_out): −1 is class 0, +1 class 1",
    }
)

#: How a cost reads a class off the outputs ŷ (``Cost.classify``).
CLASSIFY = ("threshold", "argmax")

#: Where a cost's GGN splits the net (``Cost.ggn_at``): at the logits z^L, or
#: at the output ŷ = σ_L(z^L).
GGN_AT = ("logits", "output")


class Cost(NamedTuple):
    """A per-example cost and its output error, with the targets it accepts.

    ``jp.MLP`` accepts a Cost wherever it accepts a name. Like an activation it
    is static configuration, hashed by its fields, so its functions by
    identity: create it once.

    Attributes:
      name: what reports and messages call it (the key in ``jp.COSTS`` for a
        built-in).
      value_and_delta: ``(z, a, y, σ) -> (c, δ)`` with z, a: (batch, n_out) the
        output layer's pre-activation and activation a = σ.fn(z), y: targets
        of a kind in ``targets`` ((batch, n_out) rows or (batch,) integer
        labels), σ: the net's output :class:`Activation`; c: (batch,)
        per-example costs and δ = ∂c/∂z: (batch, n_out), the output error δ^L
        of each example (before the batch reduction), e.g. ∂c/∂a ⊙
        σ.derivative(z, a). Written in ``jax.numpy`` and jit-able; evaluating
        only c lets XLA drop δ. Trailing run axes broadcast: z: (batch, n_out,
        *runs) gives c: (batch, *runs), so reduce over ``axis=1``.
      output_activations: the output activations (names, or Activations) this
        cost is defined for, or ``None`` for any.
      targets: the kinds of targets it accepts, a tuple of ``TARGET_KINDS``
        keys: ``("real",)`` (mse), ``("unit",)`` (binary cross-entropy),
        ``("labels", "probabilities")`` (softmax cross-entropy), ``("signs",)``
        (hinge).
      classify: ``"threshold"``: each output is a class on either side of a
        threshold (``jp.classification_threshold``), as its target is;
        ``"argmax"``: the class is the argmax of the outputs, and of the target
        row (or the integer label). Costs accepting ``"labels"`` use argmax.
      ggn_at: where the generalized Gauss-Newton splits the net (the module's
        "Curvature"): ``"logits"`` (u = z^L, for a cost fused with its output
        activation, whose Hessian in z is PSD), ``"output"`` (u = ŷ = a^L; c
        must then be computed from ``a``, z serving δ only), or None: no
        curvature (the ``jp.curvature`` functions refuse the cost).
      hessian_sqrt: ``(z, a, y, σ) -> S: (batch, n_out, k)`` with S_i S_iᵀ =
        ∂²c_i/∂u_i² per example, u at ``ggn_at``; any k (k = n_out for the
        built-ins); None without curvature. Checked against ``jax.hessian`` by
        ``jp.check_cost``. Called without run axes (z, a: (batch, n_out)).
      sample_targets: ``(key, z, a, y, σ) -> y_s``: targets drawn from the
        model's predictive distribution, one per example, of the kind and shape
        of ``y`` (integer labels stay labels); for them E[δ^L δ^Lᵀ] = J_σᵀ S Sᵀ
        J_σ with δ^L = ∂c/∂z from ``value_and_delta`` (J_σ = diag σ_L'(z) for
        ``"output"``, I for ``"logits"``), which makes the Monte Carlo GGN
        unbiased. None without one. Called without run axes.
    """

    name: str
    value_and_delta: Callable[[Array, Array, Array, Activation], tuple[Array, Array]]
    output_activations: tuple[str | Activation, ...] | None = None
    targets: tuple[str, ...] = ("real",)
    classify: str = "threshold"
    ggn_at: str | None = None
    hessian_sqrt: Callable[[Array, Array, Array, Activation], Array] | None = None
    sample_targets: Callable[[Array, Array, Array, Array, Activation], Array] | None = (
        None
    )

    def __str__(self) -> str:
        """The name, as a built-in's name reads in messages and logs."""
        return self.name

    def fits(self, output_activation: str | Activation) -> bool:
        """Whether this cost is defined for an output activation."""
        if self.output_activations is None:
            return True
        out = canonical_activation(output_activation, "output_activation")
        return any(
            out == canonical_activation(f, "cost.output_activations")
            for f in self.output_activations
        )

    def class_values(self, output_activation: str | Activation) -> tuple[float, float]:
        """The targets of "not this class" and "this class": (low, high).

        What a class label becomes in a target row of this cost: 0/1 for
        one-hot rows (``"unit"``, ``"probabilities"`` and every argmax cost),
        −1/+1 for ``"signs"``, and for ``"real"`` targets the output
        activation's ``bounds`` ((−1, 1) for tanh) or 0/1 when it is unbounded.
        Outputs are classified at the midpoint, :meth:`threshold`.
        """
        if self.classify == "argmax":
            return 0.0, 1.0
        kind = next(k for k in self.targets if k != "labels")
        if kind == "signs":
            return -1.0, 1.0
        if kind == "real":
            bounds = get_activation(output_activation, "output_activation").bounds
            if bounds is not None:
                return float(bounds[0]), float(bounds[1])
        return 0.0, 1.0

    def threshold(self, output_activation: str | Activation) -> float:
        """Where a threshold cost reads class 1 off an output: the midpoint of
        :meth:`class_values` (0.5 for 0/1 targets, 0 for ±1)."""
        low, high = self.class_values(output_activation)
        return (low + high) / 2

    def targets_from_labels(
        self, labels, n_out: int, output_activation: str | Activation
    ) -> np.ndarray:
        """Class labels (n,) as targets this cost accepts, on the host.

        Kept as they are when the cost accepts ``"labels"``; else one column
        (n_out = 1, two classes: class 1 is ``high``) or one-hot rows, with the
        values of :meth:`class_values`.

        Args:
          labels: (n,) integer class ids in [0, n_out) (in [0, 2) for one output).
          n_out: the net's output width.
          output_activation: the net's output activation.

        Returns:
          (n,) the labels, or (n, n_out) float64 rows (cast them to the params'
          dtype).
        """
        labels = np.asarray(labels)
        if "labels" in self.targets:
            return labels
        low, high = self.class_values(output_activation)
        onehot = (
            labels[:, None] == 1 if n_out == 1 else np.eye(n_out, dtype=bool)[labels]
        )
        return np.where(onehot, high, low)

    def correct(self, y_hat: Array, y: Array, threshold: float | None) -> Array:
        """Whether each example is classified as its target says: (batch,) bool.

        ``"argmax"``: argmax ŷ is the label (or the target row's argmax).
        ``"threshold"``: every output lies on the same side of ``threshold`` as
        its target.

        Args:
          y_hat: (batch, n_out) outputs.
          y: (batch,) integer labels or (batch, n_out) targets.
          threshold: where a threshold cost splits the classes (None for argmax).
        """
        if self.classify == "argmax":
            labels = y if jnp.issubdtype(y.dtype, jnp.integer) else jnp.argmax(y, -1)
            return jnp.argmax(y_hat, axis=-1) == labels
        return jnp.all((y_hat > threshold) == (y > threshold), axis=-1)


def _mse(z: Array, a: Array, y: Array, sigma: Activation) -> tuple[Array, Array]:
    # c = ½‖ŷ − y‖²; δ^L = ∂c/∂a ⊙ σ'(z^L) with ∂c/∂a = ŷ − y.
    r = a - y
    return 0.5 * jnp.sum(r * r, axis=1), r * sigma.derivative(z, a)


def _bce(z: Array, a: Array, y: Array, sigma: Activation) -> tuple[Array, Array]:
    # c = −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y z, finite for
    # every z; δ = ∂c/∂z = σ(z) − y = ŷ − y. Both come from one e = exp(−|z|):
    #   softplus(z) = max(z, 0) + log1p(e),   σ(z) = 1/(1 + e) if z ≥ 0 else e/(1 + e),
    # which lets XLA fuse δ with the value instead of keeping the forward's a^L.
    # max(z, 0) and −|z| are written as selects on the same branch (z ≥ 0), so
    # that jax.grad of the value is right at z = 0 too (max and abs alone give
    # wrong one-sided derivatives there: ∂c/∂z would be −y instead of ½ − y).
    del a, sigma
    nonnegative = z >= 0
    e = jnp.exp(jnp.where(nonnegative, -z, z))
    softplus = jnp.where(nonnegative, z, 0) + jnp.log1p(e)
    sigmoid = jnp.where(nonnegative, 1, e) / (1 + e)
    return jnp.sum(softplus - y * z, axis=1), sigmoid - y


def _softmax_ce(z: Array, a: Array, y: Array, sigma: Activation) -> tuple[Array, Array]:
    # With p = softmax(z) = exp(z − logsumexp(z)), computed once for both:
    #   labels k:  c = logsumexp(z) − z_k,                δ = p − onehot(k)
    #   rows y:    c = logsumexp(z) Σ_k y_k − Σ_k y_k z_k,  δ = p Σ_k y_k − y
    # One exp per logit: p = e / Σe with e = exp(z − max z), and logsumexp(z) =
    # max z + log Σe (exp(z − lse) would take a second exp of every logit).
    del a, sigma
    m = jnp.max(z, axis=1, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0))
    e = jnp.exp(z - m)
    total = jnp.sum(e, axis=1, keepdims=True)
    lse = (m + jnp.log(total))[:, 0]
    p = e / total
    if jnp.issubdtype(y.dtype, jnp.integer):
        # z_k and p − onehot(k) as selects on the label, not a float one-hot
        # (docs/design.md, "Softmax cross-entropy's δ is a select on the label").
        hit = jax.lax.broadcasted_iota(y.dtype, z.shape, 1) == y[:, None]
        z_label = jnp.sum(jnp.where(hit, z, 0), axis=1)
        return lse - z_label, jnp.where(hit, p - 1, p)
    mass = jnp.sum(y, axis=1)
    return lse * mass - jnp.sum(y * z, axis=1), p * mass[:, None] - y


def _eye_sqrt(z: Array, a: Array, y: Array, sigma: Activation) -> Array:
    # mse: c = ½‖ŷ − y‖², ∂²c/∂ŷ² = I = I Iᵀ.
    del a, y, sigma
    return jnp.broadcast_to(jnp.eye(z.shape[1], dtype=z.dtype), (*z.shape, z.shape[1]))


def _mse_targets(key, z: Array, a: Array, y: Array, sigma: Activation) -> Array:
    # ½‖ŷ − y‖² is the negative log-likelihood of y ~ N(ŷ, I) up to a constant.
    del z, y, sigma
    return a + jax.random.normal(key, a.shape, a.dtype)


def _bce_sqrt(z: Array, a: Array, y: Array, sigma: Activation) -> Array:
    # ∂²c/∂z² = diag(p(1 − p)), p = σ(z); √(p(1 − p)) = e^{−|z|/2} / (1 + e^{−|z|}),
    # without the cancellation of 1 − p when p ≈ 1.
    del a, y, sigma
    e = jnp.exp(-jnp.abs(z))
    root = jnp.exp(-0.5 * jnp.abs(z)) / (1 + e)
    return root[:, :, None] * jnp.eye(z.shape[1], dtype=z.dtype)


def _bce_targets(key, z: Array, a: Array, y: Array, sigma: Activation) -> Array:
    # y_k ~ Bernoulli(ŷ_k), each output its own class.
    del z, sigma
    return jax.random.bernoulli(key, a).astype(y.dtype)


def _softmax_ce_sqrt(z: Array, a: Array, y: Array, sigma: Activation) -> Array:
    # ∂²c/∂z² = m (diag p − p pᵀ), m = Σ_k y_k (1 for labels), p = softmax(z);
    # S = √m (diag √p − p √pᵀ): S Sᵀ = m (diag p − 2 p pᵀ + p (Σ_k p_k) pᵀ).
    del a, sigma
    p = jax.nn.softmax(z, axis=1)
    root = jnp.sqrt(p)
    s = root[:, :, None] * jnp.eye(z.shape[1], dtype=z.dtype) - (
        p[:, :, None] * root[:, None, :]
    )
    if jnp.issubdtype(y.dtype, jnp.integer):
        return s
    return jnp.sqrt(jnp.sum(y, axis=1))[:, None, None] * s


def _softmax_ce_targets(key, z: Array, a: Array, y: Array, sigma: Activation):
    # A class k ~ softmax(z): a label as y is labels, else a one-hot row (the
    # predictive distribution of probability rows, Σ_k y_k = 1).
    del a, sigma
    k = jax.random.categorical(key, z, axis=1)
    if jnp.issubdtype(y.dtype, jnp.integer):
        return k.astype(y.dtype)
    return jax.nn.one_hot(k, z.shape[1], dtype=y.dtype)


# Hinge is written as a user writes a cost in a script, public names only (the
# README shows this same code, and tests check that it does).
def hinge_value_and_delta(z, a, y, sigma):
    """c = Σ_k max(0, 1 − y_k z_k) for targets y = ±1, and δ = ∂c/∂z."""
    del a, sigma  # an identity output: ŷ = z
    margin = 1 - y * z
    violated = margin > 0  # one branch for c and δ: jax.grad agrees at margin 0
    c = jnp.sum(jnp.where(violated, margin, 0), axis=1)  # axis 1: the outputs
    return c, jnp.where(violated, -y, 0)


hinge = Cost("hinge", hinge_value_and_delta, ("identity",), targets=("signs",))


COSTS: Mapping[str, Cost] = MappingProxyType(
    {
        c.name: c
        for c in (
            Cost(
                "mse",
                _mse,
                None,
                ("real",),
                "threshold",
                "output",
                _eye_sqrt,
                _mse_targets,
            ),
            Cost(
                "binary_cross_entropy",
                _bce,
                ("sigmoid",),
                ("unit",),
                "threshold",
                "logits",
                _bce_sqrt,
                _bce_targets,
            ),
            Cost(
                "softmax_cross_entropy",
                _softmax_ce,
                ("identity",),
                ("labels", "probabilities"),
                "argmax",
                "logits",
                _softmax_ce_sqrt,
                _softmax_ce_targets,
            ),
            hinge,
        )
    }
)

#: How per-example costs are reduced over the batch.
REDUCTIONS = ("sum", "mean")


def get_cost(spec, argname: str = "cost") -> Cost:
    """The :class:`Cost` a name or a Cost stands for, checked.

    Raises:
      TypeError: if ``spec`` is neither, or a Cost's fields have the wrong
        types (a non-callable ``value_and_delta``, ``targets`` not a tuple).
      ValueError: if a name is unknown (the message lists the valid names), or
        a Cost's ``targets`` or ``classify`` is not one of the known values.
    """
    if isinstance(spec, Cost):
        _check_cost_fields(spec, argname)
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"{argname} must be a string, one of {sorted(COSTS)}, or a "
            f"jp.Cost(name, value_and_delta, output_activations, targets, "
            f"classify); got {type(spec).__name__}."
        )
    try:
        return COSTS[spec]
    except KeyError:
        raise ValueError(
            f"Unknown {argname} {spec!r}; {expected_one_of(spec, sorted(COSTS))}"
        ) from None


def canonical_cost(spec, argname: str = "cost") -> str | Cost:
    """What ``MLP`` keeps: a built-in's name, else the user's Cost (checked)."""
    cost = get_cost(spec, argname)
    return cost.name if COSTS.get(cost.name) == cost else cost


def _check_cost_fields(cost: Cost, argname: str) -> None:
    if not isinstance(cost.name, str) or not cost.name:
        raise TypeError(
            f"{argname}.name must be a non-empty string; got {cost.name!r}."
        )
    if not callable(cost.value_and_delta):
        raise TypeError(
            f"{argname}.value_and_delta of {cost.name!r} must be callable; got "
            f"{type(cost.value_and_delta).__name__}."
        )
    fits = cost.output_activations
    if fits is not None:
        if not isinstance(fits, tuple) or not fits:
            raise TypeError(
                f"{argname}.output_activations of {cost.name!r} must be None (any) "
                f"or a non-empty tuple of names or jp.Activations; got {fits!r}."
            )
        for f in fits:
            get_activation(f, f"{argname}.output_activations")
    kinds = cost.targets
    if not isinstance(kinds, tuple) or not kinds:
        raise TypeError(
            f"{argname}.targets of {cost.name!r} must be a non-empty tuple of "
            f"target kinds, e.g. ('signs',); got {kinds!r}."
        )
    for k in kinds:
        if k not in TARGET_KINDS:
            raise ValueError(
                f"{argname}.targets of {cost.name!r}: unknown target kind {k!r}; "
                f"expected kinds from {list(TARGET_KINDS)}."
            )
    if cost.classify not in CLASSIFY:
        raise ValueError(
            f"{argname}.classify of {cost.name!r} must be one of {list(CLASSIFY)}; "
            f"got {cost.classify!r}."
        )
    _check_curvature_fields(cost, argname)
    if "labels" in kinds and cost.classify != "argmax":
        raise ValueError(
            f"{argname} {cost.name!r} accepts integer labels, so it must classify "
            f'by "argmax"; got classify={cost.classify!r}.'
        )


def _check_curvature_fields(cost: Cost, argname: str) -> None:
    """``ggn_at`` one of ``GGN_AT`` or None, the two functions callable or None,
    and either only with a ``ggn_at`` (where their u is)."""
    if cost.ggn_at is not None and cost.ggn_at not in GGN_AT:
        raise ValueError(
            f"{argname}.ggn_at of {cost.name!r} must be None or one of "
            f"{list(GGN_AT)}; got {cost.ggn_at!r}."
        )
    for field in ("hessian_sqrt", "sample_targets"):
        fn = getattr(cost, field)
        if fn is not None and not callable(fn):
            raise TypeError(
                f"{argname}.{field} of {cost.name!r} must be None or callable; "
                f"got {type(fn).__name__}."
            )
    for field in ("hessian_sqrt", "sample_targets"):
        if getattr(cost, field) is not None and cost.ggn_at is None:
            raise ValueError(
                f"{argname}.{field} of {cost.name!r} needs ggn_at, where the GGN "
                f"splits the net (the u of the Hessian ∂²c/∂u²): one of "
                f"{list(GGN_AT)}."
            )
