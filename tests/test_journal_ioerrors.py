"""The journal when the disk fails: ENOSPC and EIO on write and on fsync, once and persistently,
injected through `keyrite.diskio` (docs/journal.md, "I/O errors").

Every case: the append raises a clear error; the journal takes no other append; the failed
descriptor is never fsync'd again; the file holds nothing verify cannot explain (at most a torn
tail, which it reports); and once the fault clears, `recover()` (or a new Journal on the file)
goes on with every acknowledged entry."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from coordinator.journal import Journal, JournalBusy, JournalError, generate_key, verify_journal
from coordinator.journal.file import JournalWriteFailed
from keyrite import diskio

NAME = "keyrite.example/ksk-2026"
AT = "2026-03-01T10:00:00Z"
GENESIS = {"type": "ceremony.start", "at": AT, "ceremony": "KSK-2026-03"}

CASES = [
    pytest.param(op, code, times, partial, id=f"{op}-{errno.errorcode[code]}-"
                 f"{'once' if times else 'persistent'}{'-short' if partial else ''}")
    for op in ("write", "fsync")
    for code in (errno.ENOSPC, errno.EIO)
    for times in (1, None)
    for partial in ((False, True) if op == "write" else (False,))
]


def rec(i: int) -> dict[str, object]:
    return {"type": "step.done", "at": AT, "step": i, "value": "x" * 300}


@pytest.fixture
def key():  # noqa: ANN201
    return generate_key()


def started(path: Path, key, n: int = 5) -> tuple[Journal, list[dict[str, object]]]:  # noqa: ANN001
    j = Journal.create(path, key, NAME, NAME, GENESIS)
    records = [rec(i) for i in range(n)]
    for r in records:
        j.append(r)
    j.checkpoint(AT)
    return j, records


def explained(path: Path) -> None:
    """verify holds, or names only a torn last line (what a failed append may leave)."""
    report = verify_journal(path)
    assert report.ok or (report.problem is not None and report.problem.kind == "torn"), \
        report.summary()


def acknowledged(path: Path, key, records: list[dict[str, object]]) -> list[dict[str, object]]:  # noqa: ANN001
    with Journal.open(path, key) as j:
        got = [e.record for e in j.entries()]
    assert got[1:1 + len(records)] == records
    return got


@pytest.mark.parametrize("op, code, times, partial", CASES)
def test_a_failing_append_is_refused_and_recovered(tmp_path: Path, key, op: str, code: int,
                                                   times: int | None, partial: bool) -> None:
    path = tmp_path / "j.journal"
    j, records = started(path, key)
    size_before = j.size
    faults = diskio.Faults().fail(op, code, times=times, partial=partial)
    with diskio.injected(faults):
        with pytest.raises(JournalWriteFailed) as info:
            j.append(rec(99))
        e = info.value
        assert e.errno == code and e.op == op and isinstance(e, OSError)
        assert f"the journal's {op} failed" in str(e) and "was not recorded" in str(e)
        with pytest.raises(JournalError, match="earlier write failed"):
            j.append(rec(100))
        with pytest.raises(JournalError, match="earlier write failed"):
            j.checkpoint(AT)
        with pytest.raises(JournalBusy):  # the file stays locked through the failure
            Journal.open(path, key)
        explained(path)
        if times is None and op == "fsync":
            with pytest.raises(JournalWriteFailed):  # the disk still fails: try again later
                j.recover()
            explained(path)
        faults.clear()
        j.recover()
        assert faults.fsync_retried == []  # never again on the descriptor whose fsync failed
        assert j.size == size_before  # the failed entry is not in the journal
        j.append(rec(5))
        j.checkpoint(AT)
        j.close()
    assert verify_journal(path).ok
    got = acknowledged(path, key, records)
    assert got[-2] == rec(5) and rec(99) not in got


@pytest.mark.parametrize("op, code, times, partial", CASES)
def test_a_new_journal_resumes_after_the_fault_clears(tmp_path: Path, key, op: str, code: int,
                                                      times: int | None, partial: bool) -> None:
    """The coordinator restarted instead of recovering in place: the new Journal cuts a torn
    tail, keeps a line that landed whole (it is as if the process died just after its fsync:
    never acknowledged, and harmless), rewrites that last line in place and fsyncs it."""
    path = tmp_path / "j.journal"
    j, records = started(path, key)
    faults = diskio.Faults().fail(op, code, times=times, partial=partial)
    with diskio.injected(faults):
        with pytest.raises(JournalWriteFailed):
            j.append(rec(99))
        j.close()
        if times is None and op == "fsync":
            with pytest.raises(OSError):  # the disk still fails: the journal does not open
                Journal.open(path, key)
        faults.clear()
        with Journal.open(path, key) as again:
            again.append(rec(5))
    assert faults.fsync_retried == []
    assert verify_journal(path).ok
    got = acknowledged(path, key, records)
    assert got[-1] == rec(5)
    assert len(got) - 1 - len(records) - 1 in (1, 2)  # the checkpoint, and maybe rec(99)


def test_a_short_write_never_leaves_a_half_line_behind(tmp_path: Path, key) -> None:
    """ENOSPC after half the line: verify reports the torn tail (never a broken entry), and
    recovery cuts exactly that."""
    path = tmp_path / "j.journal"
    j, records = started(path, key)
    good = path.read_bytes()
    with (diskio.injected(diskio.Faults().fail("write", errno.ENOSPC, partial=True)),
          pytest.raises(JournalWriteFailed, match="No space left on device")):
        j.append(rec(99))
    assert path.read_bytes().startswith(good) and len(path.read_bytes()) > len(good)
    report = verify_journal(path)
    assert not report.ok and report.problem is not None and report.problem.kind == "torn"
    assert report.problem.seq == j.size  # the entry after the last acknowledged one
    j.recover()
    assert path.read_bytes() == good
    j.close()


def test_a_failing_checkpoint_is_not_signed_twice(tmp_path: Path, key) -> None:
    path = tmp_path / "j.journal"
    j, records = started(path, key)
    with (diskio.injected(diskio.Faults().fail("fsync", errno.EIO)),
          pytest.raises(JournalWriteFailed)):
        j.checkpoint(AT)
    j.recover()
    note = j.checkpoint(AT)
    assert f"\n{j.size - 1}\n" in note  # covers the same entries the failed one would have
    j.close()
    assert verify_journal(path).ok


def test_recover_refuses_a_journal_that_lost_acknowledged_entries(tmp_path: Path, key) -> None:
    path = tmp_path / "j.journal"
    j, records = started(path, key)
    with (diskio.injected(diskio.Faults().fail("fsync", errno.EIO)),
          pytest.raises(JournalWriteFailed)):
        j.append(rec(99))
    data = path.read_bytes()
    cut = data.rstrip(b"\n").rsplit(b"\n", 2)[0] + b"\n"  # the failed line and one before it
    path.write_bytes(cut)
    with pytest.raises(JournalError, match="lost acknowledged entries"):
        j.recover()
    j.close()


def test_recover_on_a_healthy_journal_changes_nothing(tmp_path: Path, key) -> None:
    path = tmp_path / "j.journal"
    j, _ = started(path, key)
    before = path.read_bytes()
    j.recover()
    j.append(rec(7))
    j.close()
    assert path.read_bytes().startswith(before)


# -- group commit and the line encoder ---------------------------------------------------------


@pytest.mark.parametrize("record", [
    {"type": "x", "at": AT},
    {"type": "x", "at": AT, "text": "é — \u2028 \"quoted\" \\ back\nslash\t", "n": [1, 2.5, None]},
    {"type": "x", "at": AT, "nested": {"b": {"z": 1, "a": [True, False]}, "a": ""}},
    {"type": "x", "at": AT, "big": 2**70, "neg": -3, "emoji": "\U0001f511"},
])
def test_the_line_is_canonical_json_of_the_entry(record: dict[str, object]) -> None:
    from ceremony.digests import canonical_json
    from coordinator.journal import entry as entry_codec

    for seq, prev in ((0, "0" * 64), (12345, "ab" * 32)):
        line = entry_codec.encode(seq, prev, record)
        assert line == canonical_json({"prev": prev, "record": record, "seq": seq})
        assert entry_codec.decode(line) == (seq, prev, record)


def test_group_commit_writes_once_and_fsyncs_once(tmp_path: Path, key) -> None:
    path = tmp_path / "j.journal"
    j, records = started(path, key)
    more = [rec(i) for i in range(10, 18)]
    faults = diskio.Faults()
    with diskio.injected(faults):
        entries = j.append_many(more)
    assert faults.calls == {"write": 1, "fsync": 1}
    assert [e.record for e in entries] == more and entries[-1].seq == j.size - 1
    j.checkpoint(AT)
    j.close()
    assert verify_journal(path).ok
    assert acknowledged(path, key, records)[-9:-1] == more


def test_group_commit_is_all_or_nothing(tmp_path: Path, key) -> None:
    path = tmp_path / "j.journal"
    j, records = started(path, key)
    size = j.size
    with pytest.raises(ValueError, match="cannot be journaled"):
        j.append_many([rec(1), {"type": "x", "at": AT, "bad": float("nan")}])
    assert j.size == size  # refused before anything was written; the journal goes on
    with (diskio.injected(diskio.Faults().fail("fsync", errno.ENOSPC)),
          pytest.raises(JournalWriteFailed)):
        j.append_many([rec(1), rec(2), rec(3)])
    assert j.size == size
    j.recover()
    assert j.size == size
    j.append_many([rec(4), rec(5)])
    j.close()
    assert verify_journal(path).ok
    assert acknowledged(path, key, records)[-2:] == [rec(4), rec(5)]


def test_short_writes_are_continued(tmp_path: Path, key) -> None:
    class Short(diskio.DiskIO):
        def write(self, fd: int, data: bytes | memoryview) -> int:
            return super().write(fd, data[:10])

    path = tmp_path / "j.journal"
    j, records = started(path, key)
    with diskio.injected(Short()):
        j.append(rec(7))
        j.append_many([rec(8), rec(9)])
    j.close()
    assert verify_journal(path).ok
    assert acknowledged(path, key, records)[-3:] == [rec(7), rec(8), rec(9)]
