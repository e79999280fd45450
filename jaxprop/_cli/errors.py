"""How the command reports a user's mistake: one line on stderr, exit status 2.

A ValueError/TypeError from jaxprop's checks becomes a :class:`UsageError`
(through :func:`user_errors`); argparse's own mistakes too (:class:`Parser`).
"""

from __future__ import annotations

import argparse
import contextlib

#: Exit statuses.
OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A mistake in the command line, reported in one line with status 2."""


@contextlib.contextmanager
def user_errors(command: str):
    """Turns the ValueError/TypeError of jaxprop's checks into a UsageError.

    Only around reading the command line, the settings and the data, and building
    the network and trainer: an error while training is a bug, with a traceback.
    """
    try:
        yield
    except (ValueError, TypeError) as e:
        raise UsageError(f"jaxprop {command}: {e}") from None


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (no usage dump) and no SystemExit."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")
