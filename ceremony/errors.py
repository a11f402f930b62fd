"""The two errors the core raises at its callers: input someone can fix, and work that did not
hold. `keyrite.exits` maps them onto exit codes 2 and 1 at the command line's one boundary."""

from __future__ import annotations


class BadInput(Exception):
    """Input the operator can fix: the message names file, line or key and what was expected."""


class Failure(Exception):
    """The work was attempted and did not hold (exit 1)."""
