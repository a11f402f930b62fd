"""keyrite: the ground every room shares.

The command (`keyrite.cli`), the exit codes, and the small pure formats that more than one room
reads or writes: ISO 8601 durations, officer approvals, operation digests, digest display.
"""

__version__ = "0.1.0"
