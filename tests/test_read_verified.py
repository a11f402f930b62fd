"""`read_verified`: the one way the report and `keyrite record export` read a journal, so that
what they read is what was verified."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest

from coordinator.journal import verify as v

DATA = Path(__file__).resolve().parent / "data"
JOURNAL = DATA / "rehearsal-journal-2026-12-07.jsonl"
KEY = (DATA / "rehearsal-journal-2026-12-07.key").read_text().strip()


def test_a_journal_that_verifies_is_read_from_the_bytes_verified() -> None:
    read = v.read_verified(JOURNAL, [KEY])
    assert read.report.ok
    lines = JOURNAL.read_text().splitlines()
    assert [seq for seq, _ in read.records] == list(range(len(lines)))
    assert read.records[5][1] == json.loads(lines[5])["record"]


def test_a_journal_that_does_not_verify_gives_no_records(tmp_path: Path) -> None:
    lines = JOURNAL.read_text().splitlines()
    lines[40] = lines[40].replace('"at":', '"at": ', 1)
    bad = tmp_path / "j.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    read = v.read_verified(bad, [KEY])
    assert not read.report.ok and read.records == []


def test_a_journal_written_to_while_it_is_verified_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "j.jsonl"
    copy.write_bytes(JOURNAL.read_bytes())
    real = v.verify_journal

    def verify_then_append(path, keys):  # someone appends while verification runs
        report = real(path, keys)
        with open(path, "ab") as f:
            f.write(b"{}\n")
        return report

    with mock.patch.object(v, "verify_journal", verify_then_append), \
            pytest.raises(v.JournalChanged, match="changed while it was being verified"):
        v.read_verified(copy, [KEY])
