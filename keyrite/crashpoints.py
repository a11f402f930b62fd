"""Test-only crash points: `KEYRITE_TEST_CRASH` makes a process SIGKILL itself at one named point.

NEVER set this on a real ceremony: it exists so the crash matrix (tests/test_crash_matrix.py,
bench/crash_sweep.py, docs/reliability.md) can kill the coordinator or the shim at every journal
write and HSM-operation phase and prove the resume. Unset (the default), `hit` returns at once:
the variable is read once, when this module is first imported.

The value is `POINT` or `POINT:N` (N counts from 1, default 1): the process dies the Nth time it
reaches POINT. The points, each hit in one program only, so a rehearsal's shim (a child that
inherits the environment) and its coordinator never kill each other:

- `journal`: the coordinator's ceremony journal, just *after* an entry (an appended record or a
  checkpoint; not the genesis) is written and fsync'd: the entry is acknowledged, nothing that
  follows it has happened.
- `shim:journal`: the shim's request or operation journal, just after a line is fsync'd (the
  first is the shim's `boot`).
- `shim:<op>:before_device`: an operation (`purge`, `generate`, `backup`, ...) journaled as
  started, just before its work touches the token.
- `shim:<op>:after_device`: its work done on the token, just before `finished` is journaled.
- `shim:generate:enforcer_accepted` (OpenDNSSEC): `ods-enforcer key generate` accepted, just
  before `scheduled` is journaled.

The kill is SIGKILL to the process itself: no handler, no `finally`, no flush, as a power cut.
One line naming the point is written to stderr first (unbuffered), so a test can tell the kill
from any other death.
"""

from __future__ import annotations

import os
import signal

#: the environment variable (test-only)
ENV = "KEYRITE_TEST_CRASH"


def parse(text: str | None) -> tuple[str, int] | None:
    """`"journal:17"` -> `("journal", 17)`; `"shim:generate:after_device"` -> (that, 1)."""
    if not text or not text.strip():
        return None
    point, _, last = text.strip().rpartition(":")
    if point and last.isdigit() and int(last) > 0:
        return point, int(last)
    return text.strip(), 1


_TARGET = parse(os.environ.get(ENV))
#: Whether a crash point is set at all: a hot path (the journal's append) tests this one global
#: and skips its `hit` calls, so that crash points cost nothing when off.
ARMED = _TARGET is not None
_count = 0


def hit(point: str) -> None:
    """Count one arrival at `point`; SIGKILL this process if it is the one `KEYRITE_TEST_CRASH`
    names. Does nothing when the variable is unset."""
    if _TARGET is None or point != _TARGET[0]:
        return
    global _count
    _count += 1
    if _count == _TARGET[1]:
        os.write(2, f"\nkeyrite crashpoint {point}:{_count}: SIGKILL\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
