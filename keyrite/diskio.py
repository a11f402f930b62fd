"""The few system calls the journals and drive copies write through, so a test can make them fail.

Production code calls `diskio.io().open/write/fsync/...`; by default that is `os` itself. A test
switches on failures with `diskio.injected(Faults(...))` (a context manager): no monkeypatching of
internals, and the code under test runs its real error paths (docs/journal.md, "I/O errors").

`Faults` fails chosen calls with a chosen errno (ENOSPC, EIO, ...), once or persistently, only on
files whose path contains a given text if asked; a failed write can first write part of its bytes
(what a full disk does: a short write, then ENOSPC). It also records every fsync on a file
descriptor whose fsync already failed: after a failed fsync the page cache state is unknown
(PostgreSQL's "fsyncgate"), so that descriptor must be closed, never fsync'd again.
"""

from __future__ import annotations

import errno as _errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field


class DiskIO:
    """The real calls (`os`)."""

    def open(self, path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def close(self, fd: int) -> None:
        os.close(fd)


_REAL = DiskIO()
_current: DiskIO = _REAL


def io() -> DiskIO:
    """The calls in force: the real ones unless a test injected faults."""
    return _current


@contextmanager
def injected(faulty: DiskIO) -> Iterator[DiskIO]:
    """Route every journal and drive write through `faulty` for the block's duration."""
    global _current
    before, _current = _current, faulty
    try:
        yield faulty
    finally:
        _current = before


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` (a short write is continued; a failure raises OSError). With no
    faults injected this calls `os.write` itself, not through `DiskIO.write`'s frame (the
    journal's append path)."""
    w = os.write if _current is _REAL else _current.write
    n = w(fd, data)
    if n == len(data):  # the common case: one call, no view
        return
    view = memoryview(data)[n:]
    while view:
        n = w(fd, view)
        view = view[n:]


def fsync(fd: int) -> None:
    """`io().fsync(fd)`, calling `os.fsync` itself when no faults are injected."""
    if _current is _REAL:
        os.fsync(fd)
    else:
        _current.fsync(fd)


PROBE_BYTES = 64 * 1024


def disk_takes_a_write(probe: str | os.PathLike[str]) -> bool:
    """Does the disk take a write and an fsync now? `probe` (a file of its own beside the one
    that failed) is created, written with `PROBE_BYTES`, fsync'd, closed and removed; any
    OSError means not yet. How a halted coordinator tells that a full or failing disk has
    cleared before it resumes on it."""
    fd = -1
    try:
        fd = io().open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        write_all(fd, bytes(PROBE_BYTES))
        io().fsync(fd)
        return True
    except OSError:
        return False
    finally:
        if fd >= 0:
            with suppress(OSError):
                io().close(fd)
        with suppress(OSError):
            os.unlink(probe)


def rewrite_last_line(path: str | os.PathLike[str], data: bytes, end: int) -> None:
    """Write the complete line that ends at `end` of `data` (the file's bytes) again, in place,
    and fsync it: after a failed fsync the page cache may show that line while the disk does not
    hold it, and an fsync of untouched pages would not write it. The same bytes, so a crash
    midway changes nothing; a separate descriptor without O_APPEND, so the write lands where the
    line is (the coordinator's journal and the shim's both settle their last line this way)."""
    start = data.rfind(b"\n", 0, end - 1) + 1
    fd = io().open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        io().pwrite(fd, data[start:end], start)
        io().fsync(fd)
    finally:
        io().close(fd)


@dataclass
class Rule:
    op: str  # "write", "fsync", "open", "ftruncate", "pwrite"
    errno: int
    times: int | None  # None: every call from now on (persistent)
    path: str | None  # only files whose path contains this
    partial: bool  # a failing write first writes half of its bytes
    after: int = 0  # matching calls let through before the first failure


@dataclass
class Faults(DiskIO):
    """Fail chosen calls (test support; see the module's docstring)."""

    rules: list[Rule] = field(default_factory=list)
    #: fsyncs made on a descriptor whose fsync had failed, before it was closed (must stay empty)
    fsync_retried: list[str] = field(default_factory=list)
    #: every failure raised: (op, path, errno name)
    raised: list[tuple[str, str, str]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._paths: dict[int, str] = {}
        self._fsync_failed: set[int] = set()
        self._lock = threading.Lock()

    def fail(self, op: str, errno: int = _errno.EIO, *, times: int | None = 1,
             path: str | None = None, partial: bool = False, after: int = 0) -> Faults:
        self.rules.append(Rule(op, errno, times, path, partial, after))
        return self

    def clear(self) -> None:
        """The fault clears (the disk was replaced, space was freed)."""
        self.rules.clear()

    def _path(self, fd: int) -> str:
        p = self._paths.get(fd)
        if p is None:  # opened before the faults were injected
            try:
                p = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                p = ""
        return p

    def _check(self, op: str, path: str) -> Rule | None:
        with self._lock:
            self.calls[op] = self.calls.get(op, 0) + 1
            for rule in self.rules:
                if rule.op == op and (rule.path is None or rule.path in path):
                    if rule.after > 0:
                        rule.after -= 1
                        continue
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            self.rules.remove(rule)
                    self.raised.append((op, path, _errno.errorcode.get(rule.errno, "?")))
                    return rule
            return None

    @staticmethod
    def _error(rule: Rule, path: str) -> OSError:
        return OSError(rule.errno, f"{os.strerror(rule.errno)} (injected)", path)

    def open(self, path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        p = os.fspath(path)
        rule = self._check("open", p)
        if rule is not None:
            raise self._error(rule, p)
        fd = os.open(p, flags, mode)
        self._paths[fd] = p
        return fd

    def write(self, fd: int, data: bytes | memoryview) -> int:
        p = self._path(fd)
        rule = self._check("write", p)
        if rule is not None:
            if rule.partial and len(data) > 1:
                os.write(fd, data[: len(data) // 2])
            raise self._error(rule, p)
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        p = self._path(fd)
        rule = self._check("pwrite", p)
        if rule is not None:
            raise self._error(rule, p)
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        p = self._path(fd)
        if fd in self._fsync_failed:
            self.fsync_retried.append(p)
        rule = self._check("fsync", p)
        if rule is not None:
            self._fsync_failed.add(fd)
            raise self._error(rule, p)
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        p = self._path(fd)
        rule = self._check("ftruncate", p)
        if rule is not None:
            raise self._error(rule, p)
        os.ftruncate(fd, length)

    def close(self, fd: int) -> None:
        self._paths.pop(fd, None)
        self._fsync_failed.discard(fd)
        os.close(fd)
