"""The journal file: the thin I/O shell around `Chain`.

Durability, in the order things happen:

- `create` makes the file with O_EXCL (an existing journal is never overwritten), writes the
  genesis line, fsyncs the file, then fsyncs the directory so the name itself survives a crash.
- `append` writes the whole line and its newline, then fsyncs, and only then returns: whoever is
  told an event happened can rely on it being on disk.
- `open` cuts a torn last line (see `lines.py`), fsyncs the cut, and reports it in `torn`; any
  complete line that does not hold raises `JournalCorrupt` and nothing is changed.

One writer at a time: the file is held with an exclusive `flock` while open, so a second
coordinator on the same journal fails at once (`JournalBusy`) instead of interleaving lines.

A failed write or fsync (disk full, I/O error) raises `JournalWriteFailed` and leaves the file in
an unknown state: after a failed fsync the page cache may hold bytes that never reach the disk,
and fsync'ing the same descriptor again may report success for them (PostgreSQL's "fsyncgate").
So the descriptor is closed at once and never fsync'd again, and the journal refuses every later
append until `recover()` opens the file afresh, checks that every acknowledged entry is there,
cuts whatever the failed append left after them, and fsyncs that on the new descriptor. `open`
rewrites the last line in place and fsyncs it, so a line left in the page cache by a process
that died after a failed fsync is really on disk before anything is appended after it.
Every call goes through `keyrite.diskio`, where tests inject the failures.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.journal import entry as _entry
from coordinator.journal import lines as _lines
from coordinator.journal.chain import (
    FORMAT_VERSION,
    GENESIS_FIELD,
    Broken,
    Chain,
    SignedCheckpoint,
)
from coordinator.journal.checkpoint import Checkpoint
from coordinator.journal.entry import CHECKPOINT_TYPE, Entry
from coordinator.journal.lines import TornTail
from coordinator.journal.note import Signer, Verifier, sign, valid_name
from keyrite import crashpoints, diskio
from keyrite.files import fsync_dir


class JournalError(Exception):
    """The journal cannot be used as asked; the message says why."""


class JournalCorrupt(JournalError):
    """A complete line does not hold. `broken` names the entry, line and reason."""

    def __init__(self, path: Path, broken: Broken) -> None:
        super().__init__(f"{path}: {broken}")
        self.broken = broken


class JournalBusy(JournalError):
    """Another process holds the journal open for writing."""


class JournalWriteFailed(JournalError, OSError):
    """An append could not be written or fsync'd (disk full, I/O error): it was not
    acknowledged, and the journal takes no other append until `recover()` settles the file.
    `errno` is the system's; `op` says which call failed ("write" or "fsync")."""

    def __init__(self, path: Path, op: str, error: OSError) -> None:
        name = os.strerror(error.errno) if error.errno else str(error)
        then = ("the entry was not recorded [A15]" if op in ("write", "fsync")
                else "try again later")
        OSError.__init__(self, error.errno, f"{path}: the journal's {op} failed: {name}; {then}")
        self.op = op
        self.error = error

    def __str__(self) -> str:
        return str(self.strerror)


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        diskio.io().close(fd)
        raise JournalBusy(f"{path} is held open by another process") from None


_write_all = diskio.write_all


def _read(path: Path, fd: int) -> tuple[Chain, int, TornTail | None, bytes]:
    """Check every complete line of the file open on `fd`: the chain, the end of its last
    complete line, what is torn after it, and the bytes read. Clean cached pages are dropped
    first, so what is read is what the disk holds: after a failed writeback the kernel may keep
    pages it could not write, marked clean, showing bytes the disk does not have."""
    with contextlib.suppress(OSError):  # advice only: a file system may not take it
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    with open(path, "rb") as f:
        data = f.read()
    complete, torn = _lines.split(data)
    if not complete:
        why = "its genesis entry is torn" if torn else "it is empty"
        raise JournalError(
            f"{path} has no complete genesis entry ({why}): "
            "its creation was interrupted; nothing was cut"
        )
    chain = Chain()
    try:
        chain.feed_lines(complete)
    except Broken as e:
        raise JournalCorrupt(path, e) from None
    end = torn.offset if torn is not None else len(data)
    return chain, end, torn, data


def discard_unborn(path: Path) -> bool:
    """Remove a journal file whose genesis line never reached the disk whole (the process died
    while creating it: it holds nothing of the ceremony); say whether it did. Anything with a
    complete first line is left for `Journal.open` to check and keep."""
    if path.exists() and b"\n" not in path.read_bytes():
        path.unlink()
        return True
    return False


class Journal:
    """An open journal: append records, sign checkpoints, read entries back.

    Build one with `Journal.create` or `Journal.open`; close it (or use `with`) to release the
    lock. `key` is needed only to sign checkpoints.
    """

    def __init__(self, path: Path, fd: int, chain: Chain, signer: Signer | None) -> None:
        self.path = path
        self._fd = fd
        self._chain = chain
        self._signer = signer
        self._failed: OSError | None = None
        #: the end of the last acknowledged line, and how many entries are acknowledged
        self._end = 0
        self._spare = -1  # after a failure: a fresh descriptor holding the lock, for `recover`
        self._acked = (chain.size, chain.last_hash)
        #: What `open` cut from the end of the file, or None.
        self.torn: TornTail | None = None

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        key: Ed25519PrivateKey,
        name: str,
        origin: str,
        genesis_record: Mapping[str, Any],
    ) -> Journal:
        """Start a new journal whose genesis entry is `genesis_record` plus the journal's own
        parameters under `"journal"`: `{"origin", "vkey", "version"}`.

        `name` is the coordinator key's name in signatures and in its verifier key; `origin` is
        the first line of every checkpoint (C2SP advises the two be the same). Raises
        FileExistsError if `path` exists.
        """
        path = Path(path)
        signer = Signer(name, key)
        if not valid_name(origin):
            raise ValueError(f"origin {origin!r} is empty or has a space or '+'")
        if GENESIS_FIELD in genesis_record:
            raise ValueError(f"the genesis record's {GENESIS_FIELD!r} field is the journal's own")
        if genesis_record.get("type") == CHECKPOINT_TYPE:
            raise ValueError("the genesis record cannot be a checkpoint")
        record = dict(genesis_record)
        record[GENESIS_FIELD] = {
            "origin": origin,
            "version": FORMAT_VERSION,
            "vkey": signer.verifier().text(),
        }
        chain = Chain()
        line = _entry.encode(0, _entry.GENESIS_PREV, record)
        chain.feed(line)  # the same rules a verifier applies, before anything is written
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        io = diskio.io()
        fd = io.open(path, flags, 0o644)
        _lock(fd, path)
        try:
            _write_all(fd, line + b"\n")
            io.fsync(fd)
            fsync_dir(path.parent)
        except BaseException:
            io.close(fd)  # a creation cut short: `discard_unborn` removes what is left
            raise
        journal = cls(path, fd, chain, signer)
        journal._end = len(line) + 1
        return journal

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        key: Ed25519PrivateKey | None = None,
    ) -> Journal:
        """Open an existing journal for appending, checking every line on the way in.

        A torn last line is cut and reported in `torn`. A complete line that does not hold
        raises JournalCorrupt. If `key` is given it must be the key the genesis announces.
        """
        path = Path(path)
        io = diskio.io()
        fd = io.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        _lock(fd, path)
        try:
            chain, end, torn, data = _read(path, fd)
            signer = cls._signer_for(chain, key)
            if torn is not None:
                io.ftruncate(fd, torn.offset)  # made durable by the settling fsync
            # the last line written again in place and fsync'd (a process that died after a
            # failed fsync may have left it in the page cache only); that fsync also makes the
            # cut torn tail durable: fsync covers the file's size, whatever the descriptor
            diskio.rewrite_last_line(path, data, end)
        except BaseException:
            io.close(fd)
            raise
        journal = cls(path, fd, chain, signer)
        journal.torn = torn
        journal._end = end
        return journal

    def recover(self) -> None:
        """After a failed append: open the file afresh, check that every acknowledged entry is
        on it, cut whatever the failed append left after them, and fsync that on the new
        descriptor (the failed one was closed, never fsync'd again). Then appends go on.

        Raises `JournalWriteFailed` while the disk still fails (call again later), and
        `JournalError` if an acknowledged entry is missing or different: the disk lost what it
        said it held (that journal needs a person; nothing is changed)."""
        if self._failed is None:
            return
        io = diskio.io()
        fd, self._spare = self._spare, -1
        if fd < 0:
            try:
                fd = io.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            except OSError as e:
                raise JournalWriteFailed(self.path, "open", e) from None
            _lock(fd, self.path)
        try:
            chain, end, _torn, data = _read(self.path, fd)
            size, last = self._acked
            if chain.size < size or end < self._end:
                raise JournalError(f"{self.path}: holds {chain.size} entries, but {size} were "
                                   "acknowledged: the disk lost acknowledged entries")
            if chain.size > size:  # the failed append's line landed whole: not acknowledged
                chain = Chain()
                chain.feed_lines(_lines.split(data[: self._end])[0])
            if chain.size != size or chain.last_hash != last:
                raise JournalError(f"{self.path}: entry {size - 1} is not the one acknowledged")
        except BaseException:
            self._spare = fd  # still locked, never fsync'd: the next try starts from it
            raise
        try:
            if len(data) > self._end:
                io.ftruncate(fd, self._end)
            io.fsync(fd)
        except OSError as e:  # this descriptor failed too: the next try takes a fresh one
            self._fd = fd
            self._close_failed()
            raise JournalWriteFailed(self.path, "recovery", e) from None
        self._fd, self._chain, self._failed = fd, chain, None

    @staticmethod
    def _signer_for(chain: Chain, key: Ed25519PrivateKey | None) -> Signer | None:
        if key is None:
            return None
        assert chain.announced is not None
        signer = Signer(chain.announced.name, key)
        if signer.verifier() != chain.announced:
            raise JournalError("the key given is not the one the genesis entry announces")
        return signer

    # -- writing -----------------------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> Entry:
        """Write `record` as the next entry; return once it is on disk (written and fsync'd).

        Records are JSON objects the journal does not interpret, except that the type
        "checkpoint" is the journal's own (use `checkpoint`). They are stored as canonical
        JSON, so `entries()` gives back what JSON keeps (tuples come back as lists); NaN,
        infinities, strings that are not UTF-8 (a lone surrogate) and values JSON does not
        have are refused with ValueError("record cannot be journaled: ...").
        """
        if record.get("type") == CHECKPOINT_TYPE:
            raise ValueError("checkpoint records are written by Journal.checkpoint only")
        return self._append(dict(record))

    def append_many(self, records: list[Mapping[str, Any]]) -> list[Entry]:
        """Group commit: write `records` as the next entries, one write and one fsync for all,
        and return once they are all on disk; for events that arrive together (the rehearsal's
        officers cosigning a checkpoint). All or nothing for the caller: a record refused
        (ValueError, as `append`) refuses the batch before anything is written; a failed write
        or fsync acknowledges none of them (`JournalWriteFailed`, as `append`)."""
        self._check_open()
        pending: list[tuple[bytes, dict[str, Any]]] = []
        size, last = self._chain.size, self._chain.last_hash
        for record in records:  # every line built before the chain moves: all or nothing
            if record.get("type") == CHECKPOINT_TYPE:
                raise ValueError("checkpoint records are written by Journal.checkpoint only")
            r = dict(record)
            line = self._encode(size, last, r)
            pending.append((line, r))
            size, last = size + 1, _entry.line_hash(line)
        entries = [self._chain.extend(line, r) for line, r in pending]
        if entries:
            self._commit(b"".join(line + b"\n" for line, _ in pending), entries[-1])
        return entries

    def checkpoint(self, at: str) -> str:
        """Sign the tree of every entry so far and append it; return the signed note text."""
        if self._signer is None:
            raise JournalError("this journal was opened without the coordinator key")
        origin = self._chain.origin
        assert origin is not None
        cp = Checkpoint(origin, self._chain.size, self._chain.tree.root())
        note = sign(cp.body(), [self._signer])
        self._append({"type": CHECKPOINT_TYPE, "note": note, "at": at})
        return note

    def _check_open(self) -> None:
        if self._failed is not None:
            raise JournalError(f"{self.path}: an earlier write failed ({self._failed}); "
                               "recover() or reopen it")
        if self._fd < 0:
            raise JournalError(f"{self.path} is closed")

    def _append(self, record: dict[str, Any]) -> Entry:
        if self._failed is not None or self._fd < 0:
            self._check_open()
        chain = self._chain
        line = self._encode(chain.size, chain.last_hash, record)
        entry = chain.extend(line, record)
        self._commit(line + b"\n", entry)
        return entry

    @staticmethod
    def _encode(seq: int, prev: str, record: dict[str, Any]) -> bytes:
        """The entry's line, or ValueError for a record no journal line can hold (nothing is
        written, and the journal stays usable): NaN and infinities (which no JSON reader takes
        back), a string that is not UTF-8 (a lone surrogate), a value JSON does not have."""
        try:
            return _entry.append_line(seq, prev, record)
        except (ValueError, TypeError, RecursionError) as e:  # UnicodeEncodeError included
            why = str(e)
            if why.startswith("Out of range float"):
                why = "NaN and infinities are not JSON"
            raise ValueError(f"record cannot be journaled: {why[:200]!r}") from None

    def _commit(self, data: bytes, last: Entry) -> None:
        """Write `data` (whole lines) and fsync: the one place entries reach the disk, up to
        and including `last`; they are acknowledged once this returns. Nothing but the two
        calls happens between them and nothing costly after: the entry is encoded and hashed,
        and the chain moved, before (`_append`)."""
        fd = self._fd
        op = "write"
        try:
            _write_all(fd, data)
            op = "fsync"
            diskio.fsync(fd)
        except OSError as e:
            raise self._fail(op, e) from e
        self._end += len(data)
        before = self._acked[0]
        self._acked = (last.seq + 1, last.line_hash)
        if crashpoints.ARMED:  # test-only (KEYRITE_TEST_CRASH): each entry is a crash point
            for _ in range(last.seq + 1 - before):
                crashpoints.hit("journal")

    def _fail(self, op: str, error: OSError) -> JournalWriteFailed:
        """The entry may or may not be on disk, and the page cache may say it is when it is
        not: close the descriptor (never fsync it again) and refuse appends until `recover`."""
        self._failed = error
        self._close_failed()
        return JournalWriteFailed(self.path, op, error)

    def _close_failed(self) -> None:
        """Close the failed descriptor, keeping the file locked through a fresh one (opened
        first, locked the moment the old one's lock goes), which `recover` then writes on."""
        io = diskio.io()
        fd, self._fd = self._fd, -1
        try:
            spare = io.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except OSError:
            spare = -1  # `recover` opens one, and locks it, when the disk lets it
        with contextlib.suppress(OSError):  # close may report the write error again
            io.close(fd)  # releases the flock; the descriptor is gone either way
        if spare >= 0:
            try:
                fcntl.flock(spare, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process took it in between: recover will say so
                io.close(spare)
                spare = -1
        self._spare = spare

    # -- reading -----------------------------------------------------------------------------

    def entries(self) -> Iterator[Entry]:
        """Every entry, read back from the file (all of them were checked by open/append)."""
        size = self._chain.size
        with open(self.path, "rb") as f:
            for seq, raw in enumerate(f):
                if seq >= size:
                    break
                line = raw.rstrip(b"\n")
                s, prev, record = _entry.decode(line)
                yield Entry(s, prev, record, _entry.line_hash(line))

    @property
    def size(self) -> int:
        """Number of entries, the genesis and checkpoints included (acknowledged ones only)."""
        return self._acked[0] if self._failed is not None else self._chain.size

    @property
    def last_checkpoint(self) -> SignedCheckpoint | None:
        return self._chain.last_checkpoint

    @property
    def genesis(self) -> dict[str, Any]:
        assert self._chain.genesis is not None
        return self._chain.genesis

    @property
    def verifier(self) -> Verifier:
        """The coordinator's key as the genesis announces it (`verifier.text()` for the vkey)."""
        assert self._chain.announced is not None
        return self._chain.announced

    @property
    def origin(self) -> str:
        assert self._chain.origin is not None
        return self._chain.origin

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        for fd in (self._fd, self._spare):
            if fd >= 0:
                diskio.io().close(fd)  # releases the flock
        self._fd = self._spare = -1
        self._failed = None  # closed: nothing to recover

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, size={self.size})"
