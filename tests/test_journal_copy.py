"""The auditor's copy of the journal: only a verified prefix is ever kept, a line that does not
hold stops it for good with the entry named, and a copy left by an earlier run is verified again."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consoles.journal_copy import JournalCopy
from coordinator.journal import Journal
from coordinator.journal.keys import verifier_key

ORIGIN = "keyrite.test/copy"


def _journal(tmp_path: Path, n: int) -> tuple[list[str], str]:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "journal.jsonl"
    with Journal.create(path, key=key, name=ORIGIN, origin=ORIGIN,
                        genesis_record={"type": "genesis", "at": "2026-11-27T00:00:00Z"}) as j:
        for i in range(n):
            j.append({"type": "event", "i": i})
            if i % 3 == 2:
                j.checkpoint("2026-11-27T00:00:01Z")
    return path.read_text().splitlines(), verifier_key(ORIGIN, key)


def test_pages_are_verified_then_kept_and_a_page_fetched_twice_is_harmless(tmp_path: Path):
    lines, vkey = _journal(tmp_path, 7)
    copy = JournalCopy(tmp_path / "copy.jsonl", vkey)
    assert copy.add(0, lines[:4]) == 4
    assert copy.add(2, lines[2:6]) == 2  # the overlap is skipped
    assert copy.add(6, lines[6:]) == len(lines) - 6
    assert (tmp_path / "copy.jsonl").read_text().splitlines() == lines
    assert copy.problem is None and copy.chain.checkpoints == 2
    assert f"{len(lines)} entries verified, 2 checkpoints signed by {ORIGIN}" in copy.status()


def test_history_rewritten_after_it_was_copied_stops_the_copy(tmp_path: Path):
    lines, vkey = _journal(tmp_path, 4)
    copy = JournalCopy(tmp_path / "copy.jsonl", vkey)
    assert copy.add(0, lines[:4]) == 4
    rewritten = lines[3].replace('"i":2', '"i":9')
    assert rewritten != lines[3]
    assert copy.add(2, [lines[2], rewritten, *lines[4:]]) == 0
    assert "entry 3" in copy.status() and "STOPPED" in copy.status()
    assert copy.add(4, lines[4:]) == 0  # for good: the evidence stays as it was
    assert (tmp_path / "copy.jsonl").read_text().splitlines() == lines[:4]


def test_a_line_that_does_not_continue_the_copy_is_not_kept(tmp_path: Path):
    lines, vkey = _journal(tmp_path, 4)
    copy = JournalCopy(tmp_path / "copy.jsonl", vkey)
    copy.add(0, lines[:3])
    assert copy.add(3, lines[4:]) == 0  # entry 3 left out: the next line does not link
    assert copy.problem is not None and copy.size == 3


def test_a_checkpoint_by_another_key_is_not_accepted(tmp_path: Path):
    lines, _ = _journal(tmp_path, 4)
    other = verifier_key(ORIGIN, Ed25519PrivateKey.generate())
    copy = JournalCopy(tmp_path / "copy.jsonl", other)
    kept = copy.add(0, lines)
    assert kept < len(lines) and copy.problem is not None


def test_a_copy_from_an_earlier_run_is_verified_again(tmp_path: Path):
    lines, vkey = _journal(tmp_path, 5)
    path = tmp_path / "copy.jsonl"
    JournalCopy(path, vkey).add(0, lines[:5])
    again = JournalCopy(path, vkey)
    assert again.size == 5 and again.problem is None
    assert again.add(5, lines[5:]) == len(lines) - 5
    tampered = [*lines[:2], lines[2].replace('"i":1', '"i":7'), *lines[3:]]
    assert tampered != lines
    path.write_text("\n".join(tampered) + "\n")  # a changed line is caught by the next one
    assert "entry 3" in (JournalCopy(path, vkey).problem or "")
