"""The shim's request journal: every state-changing request it accepted or refused, by
idempotency key, on disk before the HSM is touched.

One JSON line per event, appended and fsync'd (signer_shim.operation_journal's writer):

    received   key, method, request (SHA-256 of the request without secrets), op, digest, step,
               nonces, approvers          the quorum verified; the nonces are spent from here on
    started    key                        the single HSM queue reached it
    finished   key, result                what the caller gets back, now and on every retry
    failed     key, error                 a retry under the same key carries on from here
    refused    key, reason, digest        nothing touched the HSM (kept for the auditors); key
                                          "*" (digest null): how many executes one session had
                                          refused unread, past its budget (signer_shim.server)
    boot       (no key)                   the shim started; whatever ran before it is over

Why a second journal beside the signer's operation journal: that one is keyed by operation and
knows how far the token got; this one is keyed by request and holds what the *shim* promised —
which nonces are spent (so a replay is refused after a restart too), which answer a repeated
key gets, and the order operations ran in (one `started` is always followed by its own
`finished` or `failed` before the next `started`: the proof that nothing interleaved).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyrite.files import fsync_dir
from signer_shim.operation_journal import (
    append_json_line,
    read_json_lines,
    settle_last_line,
    utc_now,
)

log = logging.getLogger("signer_shim.request_journal")


class Busy(OSError):
    """Another shim serves this signer's state."""


@dataclass
class RequestState:
    key: str
    request: str  # SHA-256 of the request, secrets left out
    digest: str  # the operation's digest
    result: dict[str, Any] | None = None
    error: str | None = None
    started: bool = False

    @property
    def finished(self) -> bool:
        return self.result is not None


class RequestJournal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.requests: dict[str, RequestState] = {}
        self.nonces: dict[str, str] = {}  # nonce -> key of the request that spent it
        self._lock = threading.Lock()  # the event loop and the HSM thread both append
        for e in read_json_lines(self.path):
            self._fold(e)

    def entries(self) -> list[dict[str, Any]]:
        return read_json_lines(self.path)

    def claim(self, wait: float = 300.0) -> None:
        """Hold this signer's state for this process (an flock, released when it exits), and
        re-read the journal. Two shims on one token would interleave HSM work behind each
        other's queues; one still finishing an operation (after SIGTERM) is waited for."""
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise Busy(f"another shim holds {self.path}.lock (waited {wait:.0f} s)"
                               ) from None
                if not said:
                    log.warning("another shim is still serving this signer; waiting for it")
                    said = True
                time.sleep(0.1)
        self._claim_fd = fd
        settle_last_line(self.path)  # a line a failed fsync left in the page cache only
        self.requests.clear()
        self.nonces.clear()
        for e in read_json_lines(self.path):
            self._fold(e)

    def received(self, key: str, *, method: str, request: str, op: str, digest: str, step: int,
                 nonces: tuple[str, ...], approvers: tuple[str, ...]) -> RequestState:
        self._append({"event": "received", "key": key, "method": method, "request": request,
                      "op": op, "digest": digest, "step": step, "nonces": list(nonces),
                      "approvers": list(approvers)})
        return self.requests[key]

    def started(self, key: str) -> None:
        self._append({"event": "started", "key": key})

    def finished(self, key: str, result: Mapping[str, Any]) -> None:
        self._append({"event": "finished", "key": key, "result": dict(result)})

    def failed(self, key: str, error: str) -> None:
        self._append({"event": "failed", "key": key, "error": error})

    def booted(self) -> None:
        self._append({"event": "boot"})

    def refused(self, key: str, reason: str, digest: str | None) -> None:
        self._append({"event": "refused", "key": key, "reason": reason, "digest": digest})

    def _append(self, entry: dict[str, Any]) -> None:
        """Append and fsync `entry`, then fold it; JournalWriteError (nothing recorded, nothing
        folded: no nonce spent) if the disk fails."""
        entry = {"at": utc_now(), **entry}
        with self._lock:
            new = not self.path.exists()
            append_json_line(self.path, entry)
            if new:
                fsync_dir(self.path.parent)
            self._fold(entry)

    def _fold(self, e: Mapping[str, Any]) -> None:
        event, key = e.get("event"), e.get("key")
        if event == "received":
            self.requests[key] = RequestState(key, e["request"], e["digest"])
            for n in e["nonces"]:
                self.nonces.setdefault(n, key)
            return
        state = self.requests.get(key)
        if state is None:
            return  # `refused` entries name keys that never became requests
        if event == "started":
            state.started, state.error = True, None
        elif event == "finished":
            state.result = e["result"]
        elif event == "failed":
            state.error = e["error"]


def check_serial(entries: list[Mapping[str, Any]]) -> list[str]:
    """Problems with the order operations ran in: each `started` must be closed by its own
    `finished` or `failed` before any other `started` (empty list: nothing interleaved). A
    `started` left open by a crash is closed by the next `boot`."""
    problems = []
    running: str | None = None
    for i, e in enumerate(entries):
        event, key = e.get("event"), e.get("key")
        if event == "boot":
            running = None
        elif event == "started":
            if running is not None and running != key:
                problems.append(f"entry {i}: {key} started while {running} was running")
            running = key
        elif event in ("finished", "failed"):
            if running != key:
                problems.append(f"entry {i}: {key} {event} but {running} was running")
            running = None
    return problems
