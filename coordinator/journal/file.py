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
A failed write (disk full, I/O error) leaves the file in an unknown state, so the journal refuses
every later append; reopening it cuts whatever partial line was left.
"""

from __future__ import annotations

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


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalBusy(f"{path} is held open by another process") from None



def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


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
        fd = os.open(path, flags, 0o644)
        _lock(fd, path)
        try:
            _write_all(fd, line + b"\n")
            os.fsync(fd)
            fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, chain, signer)

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
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        _lock(fd, path)
        try:
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
            signer = cls._signer_for(chain, key)
            if torn is not None:
                os.ftruncate(fd, torn.offset)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        journal = cls(path, fd, chain, signer)
        journal.torn = torn
        return journal

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

    def _append(self, record: dict[str, Any]) -> Entry:
        if self._fd < 0:
            raise JournalError(f"{self.path} is closed")
        if self._failed is not None:
            raise JournalError(f"{self.path}: an earlier write failed ({self._failed}); reopen it")
        try:
            line = _entry.encode(self._chain.size, self._chain.last_hash, record)
        except (ValueError, TypeError, RecursionError) as e:  # UnicodeEncodeError included
            # e.g. a lone surrogate, which no UTF-8 line can hold: refused before anything is
            # written, and the journal stays usable
            raise ValueError(f"record cannot be journaled: {str(e)[:200]!r}") from None
        # NaN and infinities are the only values canonical_json writes that no JSON reader
        # takes back; refuse them before anything is written (the substring test keeps the
        # full check off the common path).
        if b"NaN" in line or b"Infinity" in line:
            try:
                _entry.decode(line)
            except _entry.BadLine as e:
                raise ValueError(f"record cannot be journaled: {e.reason}") from None
        entry = self._chain.extend(line, record)
        try:
            _write_all(self._fd, line + b"\n")
            os.fsync(self._fd)
        except OSError as e:
            self._failed = e  # the entry may or may not be on disk: reopening will tell
            raise
        return entry

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
        """Number of entries, the genesis and checkpoints included."""
        return self._chain.size

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
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, size={self.size})"
