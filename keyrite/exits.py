"""The one table of exit codes, and the errors that map onto them at the one boundary (cli.main)."""

from __future__ import annotations

OK = 0  # done; the ceremony completed; the journal verifies
FAILED = 1  # the ceremony stopped or failed; verification found an entry that does not hold
BAD_INPUT = 2  # a bad script, config, argument or path
INTERNAL = 3  # a bug: the traceback is printed to stderr


class BadInput(Exception):
    """Input the operator can fix: the message names file, line or key and what was expected."""


class Failure(Exception):
    """The work was attempted and did not hold (exit 1)."""
