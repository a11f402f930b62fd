"""docs/journal.md's example journal verifies as printed, and its key is the one it says."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.journal import verifier_key, verify_journal

DOC = Path(__file__).resolve().parent.parent / "docs" / "journal.md"
NAME = "keyrite.example/ksk-2026"


def _blocks() -> list[str]:
    text = DOC.read_text()
    after = text.split("<!-- journal-example -->", 1)[1]
    return re.findall(r"```\n(.*?)```", after, flags=re.S)


def test_the_documented_journal_verifies(tmp_path: Path) -> None:
    journal, note, session = _blocks()[:3]
    path = tmp_path / "ksk-2026.journal"
    path.write_text(journal)
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"keyrite docs example").digest())
    vkey = verifier_key(NAME, key)
    assert vkey in session  # the --key shown is the example key's
    report = verify_journal(path, [vkey])
    assert report.ok, report.summary()
    assert report.summary().replace(str(path), "ksk-2026.journal") in session
    last = json.loads(journal.splitlines()[-1])["record"]
    assert last["note"] == note  # the note shown is the checkpoint entry's
