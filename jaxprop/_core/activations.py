"""Activation functions σ with hand-written derivatives σ'.

Each activation is an :class:`Activation`: the forward map ``fn(z)`` and its
derivative ``derivative(z, a)``, which receives both the pre-activation ``z`` and
the saved activation ``a = fn(z)`` so that it can use the cheap forms
σ' = σ(1 − σ) for the sigmoid and σ' = 1 − tanh² for tanh without recomputing
anything, and optionally its second derivative ``second_derivative(z, a)``,
σ'', which Hessian-vector products by the R-operator need
(``jp.curvature.hessian_vector_product``). The backward pass
(``jaxprop._core.backprop``) only ever calls ``derivative``; no derivative here
comes from autodiff.

At a kink (relu and leaky_relu at 0) the derivative takes the same one-sided value
as ``jax.grad`` of the ``jax.nn`` function, so manual and automatic gradients agree
everywhere, not just almost everywhere.

A user's activation is an :class:`Activation` too, accepted wherever a name is
(``jp.MLP(sizes, activation=jp.Activation("swish", fn, derivative))``) and checked
by ``jp.check_activation``. The one constraint beyond being elementwise and
written in ``jax.numpy``: ``fn`` and ``derivative`` must accept arrays of any
rank, because tiny networks train with many runs at once on arrays shaped
``(batch, n, runs)`` (``jaxprop._network.runs_last``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._validate import expected_one_of
from .params import DEFAULT_SCHEME, SCHEMES

Array = jax.Array

#: Slope of leaky_relu for z < 0 (``jax.nn.leaky_relu``'s default).
LEAKY_RELU_SLOPE = 0.01


class Activation(NamedTuple):
    """An elementwise activation σ and its derivative σ', built in or a user's.

    ``jp.MLP`` accepts an Activation wherever it accepts a name. Like an optax
    optimizer, it is static configuration, compared and hashed by its fields,
    so its functions by identity: create it once (not a new lambda per call),
    or every new one compiles a new program.

    Attributes:
      name: what reports and messages call it (the key in ``jp.ACTIVATIONS``
        for a built-in).
      fn: ``z -> a = σ(z)``, elementwise, any shape: z may be (batch, n), or
        (batch, n, runs) on the runs-last path of tiny networks.
      derivative: ``(z, a) -> σ'(z)``, same shape as ``z``; ``a`` is ``fn(z)``,
        passed so that σ' can reuse it (σ(1 − σ), 1 − tanh²). At a kink, return
        the value ``jax.grad(fn)`` gives, so that ``jp.check_grads`` and
        ``jp.check_activation`` agree everywhere.
      scheme: the init scheme ``MLP.init`` uses by default for this hidden
        activation (``jp.SCHEMES``); None: ``"glorot"``.
      bounds: ``(low, high)``, the range of σ when it is bounded (sigmoid: (0,
        1), tanh: (−1, 1)); None when unbounded. As an output activation with
        real-valued targets, classes are read off at its midpoint
        (``jp.classification_threshold``).
      second_derivative: ``(z, a) -> σ''(z)``, same shape as ``z``, or None
        (the default). Only the R-operator of
        ``jp.curvature.hessian_vector_product`` (and what is built on it) needs
        it; it refuses an activation without one. At a kink, return the value
        ``jax.grad(jax.grad(fn))`` gives (0 for relu at 0), as
        ``jp.check_activation`` checks.
    """

    name: str
    fn: Callable[[Array], Array]
    derivative: Callable[[Array, Array], Array]
    scheme: str | None = None
    bounds: tuple[float, float] | None = None
    second_derivative: Callable[[Array, Array], Array] | None = None

    def __str__(self) -> str:
        """The name, as a built-in's name reads in messages and logs."""
        return self.name


def _identity(z: Array) -> Array:
    return z


def _gelu(z: Array) -> Array:
    # The exact GELU, z Φ(z); jax.nn.gelu defaults to the tanh approximation.
    return jax.nn.gelu(z, approximate=False)


def _gelu_derivative(z: Array, a: Array) -> Array:
    # σ'(z) = Φ(z) + z φ(z). Φ(z) = a / z from the saved a = z Φ(z): no second
    # erf (the forward's), only its exp. Where |z| is within a few of the
    # smallest normal number (z = 0 included) a = z/2 loses precision, and
    # Φ(z) = 1/2 to rounding there. Far left, where a underflows, a / z goes to
    # 0 as Φ does, and z φ(z), which dominates Φ there, is computed directly.
    # Against jax.grad(gelu) in float64 this is within 1e-12 relative for
    # z > −30, closer than Φ from a second erf (1e-2 near σ''s zero).
    exact = jnp.abs(z) >= 4 * jnp.finfo(z.dtype).tiny
    big_phi = jnp.where(exact, a / jnp.where(exact, z, 1), 0.5)  # normal cdf
    phi = jnp.exp(-0.5 * z * z) * (1 / math.sqrt(2.0 * math.pi))  # normal pdf
    return big_phi + z * phi


def _gelu_second_derivative(z: Array, a: Array) -> Array:
    # σ'' = 2φ(z) + z φ'(z) = φ(z) (2 − z²), with φ' = −z φ.
    del a
    return jnp.exp(-0.5 * z * z) * (1 / math.sqrt(2.0 * math.pi)) * (2.0 - z * z)


def _silu_derivative(z: Array, a: Array) -> Array:
    del a
    s = jax.nn.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _silu_second_derivative(z: Array, a: Array) -> Array:
    # σ' = s (1 + z (1 − s)) with s' = s (1 − s): σ'' = s (1 − s) (2 + z (1 − 2s)).
    del a
    s = jax.nn.sigmoid(z)
    return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))


def _zeros(z: Array, a: Array) -> Array:
    # σ'' of a piecewise-linear σ: 0, at the kinks too (jax.grad's value there).
    del a
    return jnp.zeros_like(z)


def _builtin(name, fn, derivative, second, bounds=None) -> Activation:
    return Activation(name, fn, derivative, DEFAULT_SCHEME[name], bounds, second)


#: The built-in activations by name; each one's ``scheme`` is its entry in
#: ``jp.DEFAULT_SCHEME``.
ACTIVATIONS: Mapping[str, Activation] = MappingProxyType(
    {
        a.name: a
        for a in (
            _builtin("identity", _identity, lambda z, a: jnp.ones_like(z), _zeros),
            # jax.nn.sigmoid is lax.logistic: finite for every finite z.
            # σ' = σ(1 − σ), σ'' = σ'(1 − 2σ).
            _builtin(
                "sigmoid",
                jax.nn.sigmoid,
                lambda z, a: a * (1.0 - a),
                lambda z, a: a * (1.0 - a) * (1.0 - 2.0 * a),
                (0.0, 1.0),
            ),
            # σ' = 1 − tanh², σ'' = −2 tanh (1 − tanh²).
            _builtin(
                "tanh",
                jnp.tanh,
                lambda z, a: 1.0 - a * a,
                lambda z, a: -2.0 * a * (1.0 - a * a),
                (-1.0, 1.0),
            ),
            _builtin("relu", jax.nn.relu, lambda z, a: (z > 0).astype(z.dtype), _zeros),
            _builtin(
                "leaky_relu",
                jax.nn.leaky_relu,
                lambda z, a: jnp.where(z >= 0, 1.0, LEAKY_RELU_SLOPE).astype(z.dtype),
                _zeros,
            ),
            # elu(z) = expm1(z) for z ≤ 0, so σ'(z) = σ''(z) = exp(z) = a + 1 there.
            _builtin(
                "elu",
                jax.nn.elu,
                lambda z, a: jnp.where(z > 0, 1.0, a + 1.0),
                lambda z, a: jnp.where(z > 0, 0.0, a + 1.0),
            ),
            # softplus(z) = log(1 + e^z), computed as logaddexp(z, 0); σ' =
            # sigmoid(z), σ'' = sigmoid(z) (1 − sigmoid(z)).
            _builtin(
                "softplus",
                jax.nn.softplus,
                lambda z, a: jax.nn.sigmoid(z),
                lambda z, a: jax.nn.sigmoid(z) * jax.nn.sigmoid(-z),
            ),
            _builtin("silu", jax.nn.silu, _silu_derivative, _silu_second_derivative),
            _builtin("gelu", _gelu, _gelu_derivative, _gelu_second_derivative),
        )
    }
)

#: The init scheme of a hidden activation that does not name one.
FALLBACK_SCHEME = "glorot"


def get_activation(spec, argname: str = "activation") -> Activation:
    """The :class:`Activation` a name or an Activation stands for, checked.

    Args:
      spec: a name in ``ACTIVATIONS`` or an :class:`Activation`.
      argname: the argument's name in messages.

    Raises:
      TypeError: if ``spec`` is neither, or an Activation's fields have the
        wrong types (a non-callable ``fn``, ...).
      ValueError: if a name is unknown (the message lists the valid names), or
        an Activation's ``scheme`` or ``bounds`` is invalid.
    """
    if isinstance(spec, Activation):
        _check_activation_fields(spec, argname)
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"{argname} must be a string, one of {sorted(ACTIVATIONS)}, or a "
            f"jp.Activation(name, fn, derivative); got {type(spec).__name__}."
        )
    try:
        return ACTIVATIONS[spec]
    except KeyError:
        raise ValueError(
            f"Unknown {argname} {spec!r}; {expected_one_of(spec, sorted(ACTIVATIONS))}"
        ) from None


def canonical_activation(spec, argname: str = "activation") -> str | Activation:
    """What ``MLP`` keeps: a built-in's name, else the user's Activation (checked).

    A built-in passed as its object (``jp.ACTIVATIONS["tanh"]``) becomes its name,
    so that it configures the same net, hashing equal, as the name does.
    """
    act = get_activation(spec, argname)
    return act.name if ACTIVATIONS.get(act.name) == act else act


def default_scheme(spec) -> str:
    """The init scheme that suits a hidden activation (a name or an Activation)."""
    return get_activation(spec).scheme or FALLBACK_SCHEME


def describe(spec) -> str:
    """A name or a user's object as messages show it: ``'tanh'``, ``'swish' (user)``."""
    return repr(spec) if isinstance(spec, str) else f"{spec.name!r} (user)"


def _check_activation_fields(act: Activation, argname: str) -> None:
    if not isinstance(act.name, str) or not act.name:
        raise TypeError(f"{argname}.name must be a non-empty string; got {act.name!r}.")
    if act.second_derivative is not None and not callable(act.second_derivative):
        raise TypeError(
            f"{argname}.second_derivative of {act.name!r} must be None or "
            f"callable; got {type(act.second_derivative).__name__}."
        )
    for field in ("fn", "derivative"):
        if not callable(getattr(act, field)):
            raise TypeError(
                f"{argname}.{field} of {act.name!r} must be callable; got "
                f"{type(getattr(act, field)).__name__}."
            )
    if act.scheme is not None and act.scheme not in SCHEMES:
        raise ValueError(
            f"{argname}.scheme of {act.name!r} must be None or one of "
            f"{list(SCHEMES)}; got {act.scheme!r}."
        )
    if act.bounds is not None:
        ok = (
            isinstance(act.bounds, tuple)
            and len(act.bounds) == 2
            and all(
                isinstance(v, (int, float)) and not isinstance(v, bool)
                for v in act.bounds
            )
            and math.isfinite(act.bounds[0])
            and math.isfinite(act.bounds[1])
            and act.bounds[0] < act.bounds[1]
        )
        if not ok:
            raise ValueError(
                f"{argname}.bounds of {act.name!r} must be None or a tuple "
                f"(low, high) of finite numbers with low < high; got "
                f"{act.bounds!r}."
            )
