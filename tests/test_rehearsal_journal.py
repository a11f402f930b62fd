"""`keyrite verify` on a real rehearsal's journal: accepted whole, and every kind of tampering
named at the first entry that does not hold."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.journal import verifier_key
from tests.rehearsal_helpers import KEYRITE, rehearse_json


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> dict:
    code, summary, err = rehearse_json(tmp_path_factory.mktemp("rehearsal") / "r",
                                       "--fixture", "small")
    assert code == 0, err
    return summary


def verify(path: Path, *extra: str) -> tuple[int, dict]:
    p = subprocess.run([*KEYRITE, "verify", str(path), "--json", *extra],
                       capture_output=True, text=True)
    return p.returncode, json.loads(p.stdout)


def lines_of(summary: dict) -> list[bytes]:
    return Path(summary["journal"]).read_bytes().splitlines(keepends=True)


def first_checkpoint(lines: list[bytes]) -> int:
    return next(i for i, line in enumerate(lines) if b'"type":"checkpoint"' in line)


def test_the_rehearsal_journal_verifies(rehearsal: dict) -> None:
    code, report = verify(Path(rehearsal["journal"]), "--key", rehearsal["checkpoint_key"])
    assert code == 0, report
    assert report["ok"] is True


def flip(lines: list[bytes], k: int) -> list[bytes]:
    line = bytearray(lines[k])
    i = line.index(b'"at":') + 6  # a digit of the time stamp: still valid JSON
    line[i] = ord("1") if line[i] != ord("1") else ord("2")
    return [*lines[:k], bytes(line), *lines[k + 1:]]


CORRUPTIONS: dict[str, tuple[Callable[[list[bytes], int], list[bytes]], int]] = {
    # name: (how, which entry the verifier must name, relative to the entry k tampered with)
    "flipped byte": (flip, 0),
    "deleted entry": (lambda ls, k: ls[:k] + ls[k + 1:], 0),
    "inserted entry": (lambda ls, k: ls[:k] + [ls[k - 1]] + ls[k:], 0),
    "reordered entries": (lambda ls, k: ls[:k] + [ls[k + 1], ls[k]] + ls[k + 2:], 0),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_tampering_is_named_at_the_first_bad_entry(rehearsal: dict, tmp_path: Path,
                                                   name: str) -> None:
    how, offset = CORRUPTIONS[name]
    lines = lines_of(rehearsal)
    k = 40
    bad = tmp_path / "journal.jsonl"
    bad.write_bytes(b"".join(how(lines, k)))
    code, report = verify(bad)
    assert code == 1, report
    assert report["problem"]["seq"] == k + offset, report["problem"]


def test_a_forged_checkpoint_signature_is_refused(rehearsal: dict, tmp_path: Path) -> None:
    lines = lines_of(rehearsal)
    k = first_checkpoint(lines)
    rec = json.loads(lines[k])
    note = rec["record"]["note"]
    head, sig = note.rsplit(" ", 1)
    forged = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    rec["record"]["note"] = f"{head} {forged}"
    # re-link the rest so only the signature is wrong
    bad = tmp_path / "journal.jsonl"
    bad.write_bytes(b"".join(lines[:k]) + relink([rec] + [json.loads(x) for x in lines[k + 1:]],
                                                  lines[k - 1]))
    code, report = verify(bad)
    assert code == 1
    assert report["problem"]["seq"] == k
    assert "signature" in report["problem"]["reason"]


def test_a_journal_under_an_unknown_key_is_refused(rehearsal: dict) -> None:
    stranger = verifier_key("keyrite.rehearsal/someone-else", Ed25519PrivateKey.generate())
    code, report = verify(Path(rehearsal["journal"]), "--key", stranger)
    assert code == 1
    assert (report["problem"]["seq"], report["problem"]["kind"]) == (0, "genesis")
    assert "announces" in report["problem"]["reason"]


def relink(entries: list[dict], previous_line: bytes) -> bytes:
    """Re-chain entries after an edit, as a forger who knows the format would."""
    import hashlib

    from ceremony.digests import canonical_json

    prev = hashlib.sha256(previous_line.rstrip(b"\n")).hexdigest()
    out = b""
    for e in entries:
        e["prev"] = prev
        line = canonical_json(e)
        out += line + b"\n"
        prev = hashlib.sha256(line).hexdigest()
    return out
