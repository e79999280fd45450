r"""The command's short syntax for a network's layers (``--layers``, the config
file's ``layers``): ``parse_layers`` reads it, ``format_layers`` writes it.

Comma-separated tokens, one per layer, no spaces needed (no quoting in a shell)::

    conv25k5s2p1,conv25k3s2p1,maxpool2,flatten,dense10

==================  ========================================================
token               layer
==================  ========================================================
``conv25k5``        ``Conv(25, kernel_size=5)``: features, then options:
                    ``k5`` or ``k5x3`` the kernel (required), ``s2`` or
                    ``s2x1`` the stride (default 1), ``p1`` the zeros on both
                    sides of every axis, ``p1x2`` per axis, ``p0+1`` before
                    and after, ``same`` or ``valid`` (the default)
``maxpool2``        ``MaxPool(2)``: the window (``2x2`` per axis), then ``s1``
                    its stride (default: the window)
``avgpool2x2s1``    ``AvgPool((2, 2), stride=1)``
``flatten``         ``Flatten()``
``dense10``         ``Dense(10)``
``...:relu``        after a conv or dense token: that layer's own activation
==================  ========================================================

A mistake is a ``ValueError`` that quotes the spec and puts a caret under the
bad part::

    --layers: unknown layer 'conx25' at token 2 (expected conv, ...):
      conv8k3,conx25,flatten
              ^^^^^^
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .._core.activations import ACTIVATIONS
from .._validate import expected_one_of
from ..layers import AvgPool, Conv, Dense, Flatten, MaxPool

#: Layer names of the syntax.
KINDS = ("conv", "maxpool", "avgpool", "flatten", "dense")
_POOLS = {"maxpool": MaxPool, "avgpool": AvgPool}
#: What each option of a token is, in messages.
_OPTION_NAMES = {"k": "kernel size", "s": "stride", "p": "padding"}
#: The options each kind takes, as messages list them.
_TAKES = {
    "conv": "k (kernel), s (stride), p (padding), same, valid and :activation",
    "maxpool": "s (its stride) and no activation",
    "avgpool": "s (its stride) and no activation",
    "dense": "only :activation",
    "flatten": "nothing",
}
_DIMS = re.compile(r"\d+(?:x\d+)*")
_PADS = re.compile(r"\d+(?:\+\d+)?(?:x\d+(?:\+\d+)?)*")
_WORD = re.compile(r"[a-z]+|[^a-z]")  # an option's letters, or one odd character


class _Token:
    """One comma-separated token and where it sits in the spec, for messages."""

    def __init__(self, spec: str, name: str, index: int, start: int, text: str):
        self.spec, self.name, self.index = spec, name, index
        self.start, self.text = start, text

    def error(self, what: str, at: int = 0, length: int | None = None, hint=""):
        """A ValueError quoting the spec with a caret under ``text[at:at+length]``
        (the whole token by default)."""
        length = len(self.text) - at if length is None else length
        hint = f" ({hint})" if hint else ""
        caret = " " * (self.start + at) + "^" * max(1, length)
        return ValueError(
            f"{self.name}: {what} at token {self.index}{hint}:\n"
            f"  {self.spec}\n  {caret}"
        )


def parse_layers(spec: str | Sequence[str], name: str = "layers") -> tuple:
    """The layers of a spec such as ``conv25k5s2p1,maxpool2,flatten,dense10``.

    Args:
      spec: the comma-separated tokens (the module's table), or a list of
        tokens (a config file's array).
      name: what messages call the spec (``--layers`` on the command line).

    Returns:
      A tuple of unbound ``jp.layers`` objects (``Conv``, ``MaxPool``,
      ``AvgPool``, ``Flatten``, ``Dense``), for ``jp.Network(layers=...)``.

    Raises:
      ValueError: an unknown layer, option or activation, a missing or bad
        number, an option given twice: the spec with a caret under it.
      TypeError: a spec that is neither a string nor a list of strings.
    """
    if not isinstance(spec, str):
        if not isinstance(spec, Sequence) or not all(isinstance(t, str) for t in spec):
            raise TypeError(
                f"{name} must be a string of comma-separated layers such as "
                f"'conv8k3,flatten,dense10' (or a list of such tokens); got "
                f"{type(spec).__name__} {spec!r}."
            )
        spec = ",".join(spec)
    if not spec.strip():
        raise ValueError(
            f"{name} must name at least one layer, e.g. conv8k3,flatten,dense10; "
            f"got {spec!r}."
        )
    layers, start = [], 0
    for index, raw in enumerate(spec.split(","), start=1):
        lead = len(raw) - len(raw.lstrip())
        token = _Token(spec, name, index, start + lead, raw.strip())
        start += len(raw) + 1
        layers.append(_parse_token(token))
    return tuple(layers)


def _parse_token(token: _Token):
    """The layer of one token."""
    text = token.text.lower()
    if not text:
        raise token.error(
            "an empty token", hint="two commas in a row, or one at an end"
        )
    kind = re.match(r"[a-z_]*", text).group()
    if kind not in KINDS:
        hint = _lower(expected_one_of(kind or text, KINDS))
        raise token.error(f"unknown layer {token.text!r}", hint=hint)
    body, colon, activation = text.partition(":")
    pos = len(kind)
    number = None
    if kind != "flatten":
        m = (_DIMS if kind in _POOLS else re.compile(r"\d+")).match(body, pos)
        if m is None:
            what = "its window" if kind in _POOLS else "its number of features"
            example = {"conv": "conv8k3", "dense": "dense10"}.get(kind, f"{kind}2")
            raise token.error(
                f"{kind} needs {what}",
                pos,
                hint=f"right after the name, e.g. {example}",
            )
        what = "window" if kind in _POOLS else "features"
        number = _dims(token, m.group(), pos, what, pos)
        pos = m.end()
    options = _options(token, kind, body, pos)
    if colon:
        activation = _activation(token, kind, activation, len(body) + 1)
    return _build(token, kind, number, options, activation if colon else None)


def _lower(message: str) -> str:
    """``expected_one_of``'s sentence as a hint in parentheses."""
    return message.replace("Expected", "expected").rstrip(".")


def _options(token: _Token, kind: str, body: str, pos: int) -> dict:
    """The options after a token's name and number: ``{"k": (value, at)}``."""
    options: dict = {}
    while pos < len(body):
        word = _WORD.match(body, pos).group()
        letter = word if word in ("same", "valid") else word[:1]
        # "kx3": an option whose number is bad, not an unknown option.
        option = letter in "ksp" and word == letter + "x" * (len(word) - 1)
        if not (word in ("same", "valid") or option):
            m = re.compile(r"[a-z]*[\d+x]*").match(body, pos)
            bad = m.group() or body[pos]
            raise token.error(
                f"unknown option {bad!r}",
                pos,
                len(bad),
                hint=f"{kind} takes {_TAKES[kind]}",
            )
        allowed = "ksp" if kind == "conv" else "s" if kind in _POOLS else ""
        if letter in ("same", "valid"):
            key, value, end = "p", letter.upper(), pos + len(letter)
        else:
            key = letter
            m = (_PADS if key == "p" else _DIMS).match(body, pos + 1)
            end = m.end() if m else pos + 1
            # The number runs on to the next option's letter: all of it is bad.
            bad_end = re.compile(r"[\d+x]*").match(body, pos + 1).end()
            if m is None or bad_end != end:
                example = "p1, p1x2 or p0+1" if key == "p" else f"{key}3 or {key}3x3"
                raise token.error(
                    f"bad {_OPTION_NAMES[key]} {body[pos:bad_end]!r}",
                    pos,
                    bad_end - pos,
                    hint=f"expected e.g. {example}",
                )
            value = m.group()
        if key not in allowed:
            raise token.error(
                f"{kind} takes no {_OPTION_NAMES[key]} {body[pos:end]!r}",
                pos,
                end - pos,
                hint=f"{kind} takes {_TAKES[kind]}",
            )
        if key in options:
            raise token.error(f"{_OPTION_NAMES[key]} given twice", pos, end - pos)
        if key == "p" and value not in ("SAME", "VALID"):
            value = _pads(token, value, pos + 1)
        elif key != "p":
            value = _dims(token, value, pos, _OPTION_NAMES[key], pos + 1)
        options[key] = value
        pos = end
    return options


def _dims(token: _Token, text: str, at: int, what: str, start: int):
    """``3`` → 3, ``3x2`` → (3, 2), each at least 1; ``text`` starts at
    ``start`` in the token, its option's letter at ``at``."""
    values = [int(v) for v in text.split("x")]
    if min(values) < 1:
        source = token.text[at : start + len(text)]
        raise token.error(
            f"{what} {source!r}",
            at,
            len(source),
            hint="must be at least 1" if len(values) == 1 else "each must be ≥ 1",
        )
    return values[0] if len(values) == 1 else tuple(values)


def _pads(token: _Token, text: str, at: int):
    """``1`` → 1, ``1x2`` → ((1, 1), (2, 2)), ``0+1`` → ((0, 1),)."""
    if "x" not in text and "+" not in text:
        return int(text)
    pairs = []
    for axis in text.split("x"):
        low, _, high = axis.partition("+")
        pairs.append((int(low), int(high or low)))
    return tuple(pairs)


def _activation(token: _Token, kind: str, name: str, at: int) -> str:
    """A conv or dense token's ``:activation``."""
    if kind not in ("conv", "dense"):
        raise token.error(
            f"{kind} has no activation {':' + name!r}",
            at - 1,
            len(name) + 1,
            hint="it acts on the activations of the layer before it",
        )
    if name not in ACTIVATIONS:
        raise token.error(
            f"unknown activation {name!r}",
            at,
            len(name),
            hint=_lower(expected_one_of(name, ACTIVATIONS)),
        )
    return name


def _build(token: _Token, kind: str, number, options: dict, activation):
    """The layer object; its own checks, should one fail, under the token."""
    values = {k: v for k, v in options.items()}
    if kind == "conv" and "k" not in values:
        raise token.error("conv needs a kernel size", hint=f"e.g. {token.text}k3")
    try:
        if kind == "conv":
            return Conv(
                number,
                kernel_size=values["k"],
                stride=values.get("s", 1),
                padding=values.get("p", "VALID"),
                activation=activation,
            )
        if kind in _POOLS:
            return _POOLS[kind](number, stride=values.get("s"))
        if kind == "dense":
            return Dense(number, activation=activation)
        return Flatten()
    except (TypeError, ValueError) as e:
        raise token.error(str(e).rstrip(".")) from None


# ------------------------------------------------------------------- writing
def format_layers(layers: Sequence) -> str:
    """The spec of ``layers`` (``jp.layers`` objects), which ``parse_layers``
    reads back to equal layers.

    Raises:
      ValueError: a layer the syntax cannot write (a user's own layer, an
        activation given as an object rather than by name).
    """
    return ",".join(_format_layer(i, layer) for i, layer in enumerate(layers))


def _format_layer(i: int, layer) -> str:
    kind = type(layer)
    if kind is Conv:
        text = f"conv{layer.features}k{_format_dims(layer.kernel_size)}"
        if layer.stride != 1:
            text += f"s{_format_dims(layer.stride)}"
        padding = layer.padding
        if padding == "SAME":
            text += "same"
        elif isinstance(padding, int):
            text += f"p{padding}"
        elif padding != "VALID":
            text += "p" + "x".join(
                f"{lo}" if lo == hi else f"{lo}+{hi}" for lo, hi in padding
            )
        return text + _format_activation(i, layer.activation)
    if kind in (MaxPool, AvgPool):
        text = f"{kind.__name__.lower()}{_format_dims(layer.window)}"
        return text + ("" if layer.stride is None else f"s{_format_dims(layer.stride)}")
    if kind is Flatten:
        return "flatten"
    if kind is Dense:
        return f"dense{layer.features}" + _format_activation(i, layer.activation)
    raise ValueError(
        f"layers[{i}]: {kind.__name__} has no --layers spec (the syntax writes "
        f"jp.layers.Conv, MaxPool, AvgPool, Flatten and Dense)."
    )


def _format_dims(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _format_activation(i: int, activation) -> str:
    if activation is None:
        return ""
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return f":{activation}"
    raise ValueError(
        f"layers[{i}]: activation {activation!r} has no --layers spec (the syntax "
        f"names one of {list(ACTIVATIONS)})."
    )


def describe_net(net) -> str:
    """The command's one-word view of a network: an MLP's widths (``2-8-1``), a
    Network's spec and input shape (``conv8k3,flatten,dense10 on 40x1``)."""
    if hasattr(net, "sizes"):
        return "-".join(map(str, net.sizes))
    return f"{format_layers(net.layers)} on {'x'.join(map(str, net.input_shape))}"
