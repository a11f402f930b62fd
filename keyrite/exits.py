"""The one table of exit codes, and the errors that map onto them at the one boundary (cli.main)."""

from __future__ import annotations

from ceremony.errors import BadInput, Failure

__all__ = ["BAD_INPUT", "FAILED", "INTERNAL", "OK", "BadInput", "Failure"]

OK = 0  # done; the ceremony completed; the journal verifies
FAILED = 1  # the ceremony stopped or failed; verification found an entry that does not hold
BAD_INPUT = 2  # a bad script, config, argument or path
INTERNAL = 3  # a bug: the traceback is printed to stderr
