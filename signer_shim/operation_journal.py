"""The signer's operation journal: what it was asked to do and how far it got, on disk before
anything happens on the token.

One JSON object per line, appended and fsync'd: `received` (the operation and its approvals),
`started` (the key locators on the token just before the first device call), `finished` (the
result) or `failed` (the error). Folding the lines for one operation digest says whether to do
the work, to reconcile a half-done attempt against the token, or to hand back the recorded
result. Secrets (PINs, the backup password) are never written here.

A crash can tear the last line; reading skips a last line that does not parse, and the next
append cuts it off first, so a line that does not parse anywhere else is real damage and raises.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signer_shim.interface import SignerError


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
        result = run(status)
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


def append_json_line(path: Path, entry: Mapping[str, Any]) -> None:
    """Append one entry and fsync it, cutting a torn last line off first."""
    line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.ftruncate(fd, _end_of_last_line(fd, size))  # drop a torn, never-done append
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


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
