"""The journal file: round trip, durability (fsync), torn tails, locking, keys.

Helpers at the top are shared with the other test_journal_* modules.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from coordinator.journal import (
    GENESIS_FIELD,
    Journal,
    JournalBusy,
    JournalCorrupt,
    JournalError,
    KeyFileError,
    generate_key,
    load_private_key,
    save_private_key,
    verifier_key,
    verify_journal,
)
from coordinator.journal import entry as entry_codec

NAME = "keyrite.example/ksk-2026"
AT = "2026-03-01T10:00:00Z"
GENESIS = {"type": "ceremony.start", "at": AT, "ceremony": "KSK-2026-03"}


def make_journal(
    path: Path, key: Ed25519PrivateKey, n: int = 12, checkpoints: tuple[int, ...] = (5, 9)
) -> list[dict[str, Any]]:
    """A journal of `n` entries with checkpoints at the given seqs; returns the records."""
    records: list[dict[str, Any]] = []
    with Journal.create(path, key, NAME, NAME, GENESIS) as j:
        records.append(j.genesis)
        for seq in range(1, n):
            if seq in checkpoints:
                j.checkpoint(AT)
                records.append(list(j.entries())[-1].record)
            else:
                record = {"type": "step.done", "at": AT, "step": seq, "note": f"étape {seq}"}
                j.append(record)
                records.append(record)
    return records


def read_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def relink(lines: list[bytes], start: int) -> list[bytes]:
    """Recompute every prev from line `start` on: what someone rewriting the file would do."""
    out = list(lines)
    for i in range(max(start, 1), len(out)):
        seq, _, record = entry_codec.decode(out[i])
        out[i] = entry_codec.encode(seq, entry_codec.line_hash(out[i - 1]), record)
    return out


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "ceremony.journal"


class FsyncCounter:
    """Counts os.fsync calls on files and on directories, and the file size seen at each."""

    def __init__(self) -> None:
        self.files: list[int] = []  # size of the file at each fsync
        self.dirs = 0
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            self.dirs += 1
        else:
            self.files.append(st.st_size)
        self._real(fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> FsyncCounter:
    counter = FsyncCounter()
    monkeypatch.setattr(os, "fsync", counter)
    return counter


# -- round trip --------------------------------------------------------------------------------


def test_round_trip(journal_path: Path, key: Ed25519PrivateKey) -> None:
    records = make_journal(journal_path, key)
    with Journal.open(journal_path, key) as j:
        entries = list(j.entries())
        assert [e.seq for e in entries] == list(range(12))
        assert [e.record for e in entries] == records
        assert entries[0].prev == "0" * 64
        for before, after in zip(entries, entries[1:], strict=False):
            assert after.prev == before.line_hash
        assert j.size == 12
        assert j.torn is None
        assert j.last_checkpoint is not None and j.last_checkpoint.seq == 9
        assert j.last_checkpoint.checkpoint.size == 9
        assert j.genesis[GENESIS_FIELD]["vkey"] == verifier_key(NAME, key)
        entry = j.append({"type": "after.reopen", "at": AT})
        assert entry.seq == 12 and entry.prev == entries[-1].line_hash
    report = verify_journal(journal_path)
    assert report.ok, report.summary()
    assert (report.entries, report.checkpoints, report.last_checkpoint_size) == (13, 2, 9)
    assert report.ceremony == "KSK-2026-03"


def test_lines_are_canonical_json_with_seq_prev_record(journal_path: Path, key) -> None:
    make_journal(journal_path, key, n=3, checkpoints=())
    first, second, _ = read_lines(journal_path)
    assert first.startswith(b'{"prev":"' + b"0" * 64 + b'","record":{"at":')
    assert first.endswith(b',"seq":0}')
    assert b" " not in first.replace(b"ceremony.start", b"")  # compact separators
    assert second.startswith(b'{"prev":"' + entry_codec.line_hash(first).encode())
    assert "étape 1".encode() in second  # UTF-8, not \u escapes


def test_the_genesis_announces_the_key_and_origin(journal_path: Path, key) -> None:
    with Journal.create(journal_path, key, NAME, "keyrite.example/log", GENESIS) as j:
        params = j.genesis[GENESIS_FIELD]
        assert params == {"origin": "keyrite.example/log", "version": 1, "vkey": j.verifier.text()}
        note = j.checkpoint(AT)
    assert note.startswith("keyrite.example/log\n1\n")


def test_create_never_overwrites(journal_path: Path, key) -> None:
    journal_path.write_bytes(b"precious\n")
    with pytest.raises(FileExistsError):
        Journal.create(journal_path, key, NAME, NAME, GENESIS)
    assert journal_path.read_bytes() == b"precious\n"


@pytest.mark.parametrize(
    "genesis, message",
    [
        ({**GENESIS, "journal": {}}, "journal"),
        ({**GENESIS, "type": "checkpoint"}, "checkpoint"),
    ],
)
def test_create_refuses_a_genesis_that_claims_the_journals_fields(
    journal_path: Path, key, genesis: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Journal.create(journal_path, key, NAME, NAME, genesis)
    assert not journal_path.exists()


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "tab\there"])
def test_create_refuses_bad_key_names_and_origins(journal_path: Path, key, name: str) -> None:
    with pytest.raises(ValueError):
        Journal.create(journal_path, key, name, NAME, GENESIS)
    with pytest.raises(ValueError):
        Journal.create(journal_path, key, NAME, name, GENESIS)
    assert not journal_path.exists()


def test_append_refuses_checkpoint_records_and_non_json(journal_path: Path, key) -> None:
    with Journal.create(journal_path, key, NAME, NAME, GENESIS) as j:
        with pytest.raises(ValueError, match="checkpoint"):
            j.append({"type": "checkpoint", "note": "forged\n\n— x AAAA\n", "at": AT})
        with pytest.raises(ValueError, match="NaN"):
            j.append({"type": "reading", "at": AT, "value": float("nan")})
        assert j.size == 1
        j.append({"type": "ok", "at": AT})  # a refused record does not break the journal
    assert verify_journal(journal_path).ok


def test_checkpoint_needs_the_key(journal_path: Path, key) -> None:
    make_journal(journal_path, key, n=2, checkpoints=())
    with Journal.open(journal_path) as j, pytest.raises(JournalError, match="without"):
        j.checkpoint(AT)


def test_open_refuses_another_key(journal_path: Path, key) -> None:
    make_journal(journal_path, key, n=2, checkpoints=())
    with pytest.raises(JournalError, match="not the one the genesis"):
        Journal.open(journal_path, generate_key())


def test_a_second_writer_is_refused(journal_path: Path, key) -> None:
    make_journal(journal_path, key, n=2, checkpoints=())
    with Journal.open(journal_path, key), pytest.raises(JournalBusy):
        Journal.open(journal_path, key)
    Journal.open(journal_path, key).close()  # released on close


def test_closed_journal_refuses_appends(journal_path: Path, key) -> None:
    j = Journal.create(journal_path, key, NAME, NAME, GENESIS)
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.append({"type": "late", "at": AT})


# -- durability --------------------------------------------------------------------------------


def test_create_fsyncs_the_file_then_the_directory(journal_path: Path, key, fsyncs) -> None:
    Journal.create(journal_path, key, NAME, NAME, GENESIS).close()
    size = journal_path.stat().st_size
    assert fsyncs.files == [size]  # after the genesis line was written in full
    assert fsyncs.dirs == 1


def test_every_append_is_written_then_fsynced_before_it_returns(
    journal_path: Path, key, fsyncs
) -> None:
    with Journal.create(journal_path, key, NAME, NAME, GENESIS) as j:
        for i in range(3):
            j.append({"type": "step", "at": AT, "i": i})
            assert fsyncs.files[-1] == journal_path.stat().st_size
        j.checkpoint(AT)
        assert fsyncs.files[-1] == journal_path.stat().st_size
    assert len(fsyncs.files) == 1 + 3 + 1
    assert fsyncs.dirs == 1  # only when the file was created


def test_a_failed_fsync_fails_the_append_and_every_later_one(
    journal_path: Path, key, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = Journal.create(journal_path, key, NAME, NAME, GENESIS)

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        j.append({"type": "step", "at": AT})
    monkeypatch.undo()
    with pytest.raises(JournalError, match="earlier write failed"):
        j.append({"type": "step", "at": AT})
    j.close()
    with Journal.open(journal_path, key) as again:  # the line did reach the file: it counts
        assert again.size == 2 and again.torn is None


# -- torn tails --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail, reason",
    [
        (b'{"prev":"ab12', "no trailing newline"),
        ('{"prev":"0","record":{"note":"é'.encode(), "no trailing newline"),
        (b"\x00" * 40 + b"\n", "not JSON"),  # size extended, data never landed
        (b"\x00" * 40, "no trailing newline"),
    ],
)
def test_open_cuts_a_torn_last_line_and_reports_it(
    journal_path: Path, key, fsyncs, tail: bytes, reason: str
) -> None:
    make_journal(journal_path, key, n=4, checkpoints=(3,))
    good = journal_path.read_bytes()
    journal_path.write_bytes(good + tail)
    fsyncs.files.clear()
    with Journal.open(journal_path, key) as j:
        torn = j.torn
        assert torn is not None
        assert torn.reason == reason
        assert (torn.line, torn.offset, torn.cut_bytes) == (5, len(good), len(tail))
        assert torn.partial_chars == len(tail.rstrip(b"\n").decode("utf-8", "replace"))
        assert journal_path.read_bytes() == good
        assert fsyncs.files == [len(good)]  # the cut itself was fsync'd
        assert j.size == 4
        j.append({"type": "resumed", "at": AT})
    assert verify_journal(journal_path).ok


def test_a_clean_file_reports_no_tear(journal_path: Path, key, fsyncs) -> None:
    make_journal(journal_path, key, n=3, checkpoints=())
    fsyncs.files.clear()
    with Journal.open(journal_path, key) as j:
        assert j.torn is None
    # opening a clean journal writes its last line again, in place, and fsyncs it (a line that
    # a failed fsync left in the page cache only is then really on disk); nothing changes
    assert fsyncs.files == [journal_path.stat().st_size]


def test_a_complete_last_line_that_does_not_hold_is_never_cut(journal_path: Path, key) -> None:
    make_journal(journal_path, key, n=4, checkpoints=())
    lines = read_lines(journal_path)
    seq, _, record = entry_codec.decode(lines[-1])
    lines[-1] = entry_codec.encode(seq, "f" * 64, record)  # complete, parses, wrong link
    write_lines(journal_path, lines)
    before = journal_path.read_bytes()
    with pytest.raises(JournalCorrupt) as info:
        Journal.open(journal_path, key)
    assert info.value.broken.kind == "link"
    assert journal_path.read_bytes() == before


def test_an_unreadable_line_in_the_middle_is_corruption_not_a_tear(journal_path: Path, key) -> None:
    make_journal(journal_path, key, n=5, checkpoints=())
    lines = read_lines(journal_path)
    lines[2] = b"\x00" * len(lines[2])
    write_lines(journal_path, lines)
    before = journal_path.read_bytes()
    with pytest.raises(JournalCorrupt, match=r"entry 2 \(line 3\)"):
        Journal.open(journal_path, key)
    assert journal_path.read_bytes() == before


@pytest.mark.parametrize("content", [b"", b'{"prev":"00'])
def test_a_journal_without_a_complete_genesis_is_refused_and_left_alone(
    journal_path: Path, key, content: bytes
) -> None:
    journal_path.write_bytes(content)
    with pytest.raises(JournalError, match="no complete genesis"):
        Journal.open(journal_path, key)
    assert journal_path.read_bytes() == content


# -- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("passphrase", [None, b"correct horse battery staple"])
def test_key_file_round_trip(tmp_path: Path, key, passphrase: bytes | None) -> None:
    path = tmp_path / "coordinator.pem"
    save_private_key(path, key, passphrase)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----" if passphrase else b"-----BEGIN PRIVATE KEY-----"
    )
    loaded = load_private_key(path, passphrase)
    assert verifier_key(NAME, loaded) == verifier_key(NAME, key)


def test_key_file_is_never_overwritten(tmp_path: Path, key) -> None:
    path = tmp_path / "coordinator.pem"
    save_private_key(path, key)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        save_private_key(path, generate_key())
    assert path.read_bytes() == before


def test_key_file_errors(tmp_path: Path, key) -> None:
    enc = tmp_path / "enc.pem"
    save_private_key(enc, key, b"right")
    with pytest.raises(KeyFileError):
        load_private_key(enc, b"wrong")
    with pytest.raises(KeyFileError):
        load_private_key(enc)
    ec = tmp_path / "ec.pem"
    ec.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    with pytest.raises(KeyFileError, match="Ed25519"):
        load_private_key(ec)
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a key")
    with pytest.raises(KeyFileError):
        load_private_key(junk)
