"""``python -m jaxprop``: the same as the ``jaxprop`` command."""

from ._cli import console

console()
