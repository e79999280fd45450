"""Parameters: the :class:`DenseParams` pytree, initialization schemes, checks
of keys, schemes and dtypes (a net's params: ``jaxprop._network.check_params``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._validate import choice

Array = jax.Array


class DenseParams(NamedTuple):
    """Parameters θ of one Dense layer (``jaxprop._core.layers``), z = a_prev @ w + b.

    Attributes:
      w: (fan_in, fan_out) weights W^l (row-vector convention).
      b: (fan_out,) biases b^l.
    """

    w: Array
    b: Array


#: The name of :class:`DenseParams` before layer kinds had names of their own
#: (``jp.Layer``); one class, so params made with either are the same pytree.
Layer = DenseParams

#: A network's parameters: one DenseParams per layer, input side first.
Params = tuple[DenseParams, ...]

#: The ``jax.nn.initializers`` behind the schemes other than ``uniform01``.
INITIALIZERS = {
    "glorot": jax.nn.initializers.glorot_uniform(),
    "he": jax.nn.initializers.he_normal(),
    "lecun": jax.nn.initializers.lecun_normal(),
}

#: Initialization schemes accepted by ``MLP.init``.
SCHEMES = ("uniform01", *INITIALIZERS)

#: The default scheme for each hidden activation: He for the relu family,
#: Glorot for saturating ones, LeCun for the identity.
DEFAULT_SCHEME: Mapping[str, str] = MappingProxyType(
    {
        "identity": "lecun",
        "sigmoid": "glorot",
        "tanh": "glorot",
        "relu": "he",
        "leaky_relu": "he",
        "elu": "he",
        "softplus": "he",
        "silu": "he",
        "gelu": "he",
    }
)


def check_scheme(scheme: str) -> str:
    """Returns ``scheme`` if it names an initialization scheme, else raises."""
    return choice(scheme, "scheme", SCHEMES)


def typed_keys(keys):
    """``keys`` as typed PRNG keys: raw ``uint32[..., 2]`` data (from
    ``jax.random.PRNGKey``) wrapped with JAX's default implementation, so that
    ``PRNGKey(s)`` draws the numbers ``jax.random.key(s)`` draws; typed keys as
    they are. Check them first (:func:`check_key`)."""
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        return keys
    return jax.random.wrap_key_data(keys)


def check_key(key) -> None:
    """Raises a TypeError unless ``key`` is a single PRNG key.

    Both new-style typed keys (``jax.random.key``) and legacy raw ``uint32[2]``
    keys (``jax.random.PRNGKey``) are accepted (:func:`typed_keys` wraps them).
    """
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise TypeError(
                f"key must be a single PRNG key; got a key array of "
                f"shape {shape} (use jax.vmap or jp.train_seeds for "
                f"many keys)."
            )
        return
    if dtype == jnp.uint32 and shape == (2,):
        return
    raise TypeError(
        "key must be a PRNG key from jax.random.key(seed) (or a raw "
        f"uint32[2] key); got {type(key).__name__}"
        + (f" of dtype {dtype} and shape {shape}." if dtype else ".")
    )


def check_float_dtype(dtype) -> jnp.dtype:
    """Returns the canonical floating dtype for ``dtype`` (None: JAX's default)."""
    if dtype is None:
        return jnp.result_type(float)
    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a floating dtype; got {dtype!r}.") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"dtype must be a floating dtype such as float32 or float64; got {dtype}."
        )
    canonical = jax.dtypes.canonicalize_dtype(dtype)
    if canonical != dtype:
        raise ValueError(
            f"dtype {dtype} needs 64-bit mode: call jax.config.update("
            f"'jax_enable_x64', True) at the start of your program (or "
            f"ask for {canonical})."
        )
    return canonical


def init_params(key, layers, scheme: str, dtype) -> Params:
    """Draws every layer's θ (``layer.init``) with ``key`` split once, a
    layer's ``n_keys`` keys in order; ``key`` and ``scheme`` are checked."""
    keys = jax.random.split(key, sum(layer.n_keys for layer in layers))
    params, start = [], 0
    for layer in layers:
        params.append(layer.init(keys[start : start + layer.n_keys], scheme, dtype))
        start += layer.n_keys
    return tuple(params)
