"""The signer's operation journal: what it was asked to do and how far it got, on disk before
anything happens on the token.

One JSON object per line, appended and fsync'd: `received` (the operation and its approvals),
`started` (the key locators on the token just before the first device call), `finished` (the
result) or `failed` (the error). Folding the lines for one operation digest says whether to do
the work, to reconcile a half-done attempt against the token, or to hand back the recorded
result. Secrets (PINs, the backup password) are never written here.

A crash can tear the last line; reading skips a last line that does not parse, and the next
append cuts it off first, so a line that does not parse anywhere else is real damage and raises.

A write or fsync that fails (disk full, I/O error) raises `JournalWriteError`, a SignerError the
caller's request is answered with: nothing was recorded. Its descriptor is closed, never
fsync'd again (after a failed fsync the page cache may show bytes the disk does not hold), and
the next append to that file cuts it back to what was acknowledged before writing, so the failed
line, whole or half, never stays behind (docs/journal.md, "I/O errors"). The calls go through
`keyrite.diskio`, where tests inject the failures.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyrite import crashpoints, diskio
from signer_shim.interface import SignerError


class JournalWriteError(SignerError):
    """A line could not be written or fsync'd: nothing was recorded; the message says why."""

    def __init__(self, path: Path, op: str, error: OSError) -> None:
        code = f" ({errno.errorcode[error.errno]})" if error.errno in errno.errorcode else ""
        why = os.strerror(error.errno) if error.errno else str(error)
        super().__init__(f"the signer's journal {Path(path).name} cannot be written: {op} "
                         f"failed: {why}{code}; nothing was recorded")
        self.errno = error.errno


@dataclass(frozen=True)
class OperationStatus:
    received: bool
    before: tuple[str, ...] | None  # from the first `started`: the token before any change
    result: dict[str, Any] | None  # from `finished`
    error: str | None  # from the last `failed` after the last `started`

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def started(self) -> bool:
        return self.before is not None


def operation_status(entries: Iterable[Mapping[str, Any]], digest: str) -> OperationStatus:
    """Fold the journal's entries for one operation (pure)."""
    received, before, result, error = False, None, None, None
    for e in entries:
        if e.get("digest") != digest:
            continue
        event = e.get("event")
        if event == "received":
            received = True
        elif event == "started":
            if before is None:
                before = tuple(e["before"])
            error = None
        elif event == "finished":
            result = e["result"]
        elif event == "failed":
            error = e["error"]
    return OperationStatus(received, before, result, error)


class OperationJournal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        return read_json_lines(self.path)

    def status(self, digest: str) -> OperationStatus:
        return operation_status(self.entries(), digest)

    def append(self, digest: str, event: str, **fields: Any) -> None:
        append_json_line(self.path, {"at": utc_now(), "digest": digest, "event": event, **fields})


def execute_once(
    journal: OperationJournal,
    op: dict[str, Any],
    digest: str,
    approvals: list[dict[str, Any]],
    *,
    start: Callable[[], Iterable[str]],
    run: Callable[[OperationStatus], dict[str, Any]],
) -> dict[str, Any]:
    """The journaled life of one operation, the same for every backend: a finished operation
    returns its recorded result; otherwise `received` is journaled, and unless an earlier
    attempt started, `start()` makes the last refusals and returns the token's locators, which
    are journaled as `started` (the *before* every later diff is against); then `run(status)`
    does the work (reconciling if it started before) and its result is journaled `finished`.
    Any failure is journaled `failed` and reaches the caller as a SignerError."""
    status = journal.status(digest)
    if status.finished:
        assert status.result is not None
        return status.result
    journal.append(digest, "received", operation=op, approvals=approvals)
    try:
        if not status.started:
            journal.append(digest, "started", before=sorted(start()))
            status = journal.status(digest)
        crashpoints.hit(f"shim:{op['op']}:before_device")  # test-only, as below
        result = run(status)
        crashpoints.hit(f"shim:{op['op']}:after_device")  # test-only (KEYRITE_TEST_CRASH)
    except Exception as e:
        journal.append(digest, "failed", error=str(e))
        if isinstance(e, SignerError):
            raise
        raise SignerError(f"{op['op']} failed: {e}") from e
    journal.append(digest, "finished", result=result)
    return result


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every entry of a JSON-lines journal; a torn last line (an append that never completed)
    is skipped, a bad line anywhere else raises."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:
                break
            raise
    return out


#: file -> its size before an append that failed: all that was acknowledged, which the next
#: append cuts it back to (the failed line may sit in the page cache only, whole or half)
_unsettled: dict[str, int] = {}
_unsettled_lock = threading.Lock()


def append_json_line(path: Path, entry: Mapping[str, Any]) -> None:
    """Append one entry and fsync it, cutting a torn last line, or whatever a failed append
    left, off first. A failure raises JournalWriteError."""
    line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    name = os.path.abspath(path)
    io = diskio.io()
    try:
        fd = io.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise JournalWriteError(path, "open", e) from None
    with _unsettled_lock:
        acked = _unsettled.get(name)
    op = "write"
    try:
        size = os.fstat(fd).st_size
        if acked is not None:
            if size > acked:
                io.ftruncate(fd, acked)  # what the failed append left: never acknowledged
        elif size and os.pread(fd, 1, size - 1) != b"\n":
            acked = _end_of_last_line(fd, size)
            io.ftruncate(fd, acked)  # drop a torn, never-done append
        else:
            acked = size
        diskio.write_all(fd, line)
        op = "fsync"
        io.fsync(fd)
    except OSError as e:
        if acked is not None:
            with _unsettled_lock:
                _unsettled[name] = acked
        raise JournalWriteError(path, op, e) from None
    finally:
        with contextlib.suppress(OSError):  # close may report the write error again
            io.close(fd)  # a failed fsync's descriptor is never fsync'd again
    with _unsettled_lock:
        _unsettled.pop(name, None)
    crashpoints.hit("shim:journal")  # test-only (KEYRITE_TEST_CRASH); nothing when unset


def settle_last_line(path: Path) -> None:
    """Write the last complete line again, in place, and fsync it: a process that died after a
    failed fsync may have left it in the page cache only (the coordinator's journal does the
    same when it opens; docs/journal.md, "I/O errors")."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end == 0:
        return
    diskio.rewrite_last_line(path, data, end)


def _end_of_last_line(fd: int, size: int) -> int:
    """The offset just past the last newline (0 if there is none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        i = os.pread(fd, pos - start, start).rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0
