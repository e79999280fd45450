"""``jaxprop xor``: the reference XOR example, reproduced (:mod:`jaxprop.reference`)."""

from __future__ import annotations

from .. import reference
from .errors import OK, user_errors

DESCRIPTION = reference.__doc__.split("\n\n")[0]
add_arguments = reference.add_arguments


def command(args) -> int:
    """Checks the arguments (a mistake is one line), then trains and prints."""
    with user_errors("xor"):
        reference.check_arguments(args)
    reference.run(args)
    return OK
