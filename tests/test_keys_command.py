"""`keyrite keys` end to end on a small rehearsal: as many PEMs as keys generated, each the
token's own public key (read with OpenSC's pkcs11-tool, not keyrite's code), the same file on
the Key Gen Log drive, listed in the report."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.rehearsal_helpers import KEYRITE, MODULE, rehearse_json


def keys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYRITE, "keys", *args], capture_output=True, text=True, timeout=120)


def token_public_key(summary: dict[str, Any], locator: str, tmp: Path) -> bytes:
    """The public key object with this CKA_ID, as pkcs11-tool reads it (SPKI DER)."""
    t = summary["token"]
    out = tmp / f"{locator}.der"
    subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", t["label"],
                    "--read-object", "--type", "pubkey", "--id", locator, "-o", str(out)],
                   capture_output=True, env={**os.environ, "SOFTHSM2_CONF": t["softhsm2_conf"]},
                   timeout=60, check=True)
    return out.read_bytes()


def spki(pem: bytes) -> bytes:
    return serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    work = tmp_path_factory.mktemp("keys") / "r"
    code, summary, err = rehearse_json(work, "--fixture", "small")
    assert code == 0, err
    return work, summary


def test_keys_prints_a_pem_of_each_generated_key_as_the_token_holds_it(
        rehearsal: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    work, summary = rehearsal
    p = keys(str(work / "journal.jsonl"))
    assert p.returncode == 0, p.stderr
    blocks = re.findall(r"^# ([0-9a-f]{32})\n(-----BEGIN PUBLIC KEY-----\n.*?"
                        r"-----END PUBLIC KEY-----\n)", p.stdout, re.M | re.S)
    assert len(blocks) == summary["keys"]["generated"] == 6
    for locator, pem in blocks:
        token = serialization.load_der_public_key(token_public_key(summary, locator, tmp_path))
        assert spki(pem.encode()) == token.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # the same file went on the Key Gen Log drive (and on its copy) beside the journal
    drive = work / "drives" / "keygen-log" / "files"
    assert (drive / "public-keys.pem").read_text() == p.stdout
    assert (drive / "journal.jsonl").exists()
    assert not (drive / "dnskey.txt").exists()  # a pool without roles: PEMs only
    # and one of them is listed in the report with its SPKI's SHA-256
    text = subprocess.run(["pdftotext", "-layout", str(work / "report.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "Public keys published (6)" in text
    locator, pem = blocks[0]
    assert hashlib.sha256(spki(pem.encode())).hexdigest() in text


def test_keys_without_roles_prints_no_rrs(rehearsal: tuple[Path, dict[str, Any]]) -> None:
    work, _ = rehearsal
    for fmt in ("dnskey", "ds"):
        p = keys(str(work / "journal.jsonl"), "--format", fmt)
        assert p.returncode == 0 and p.stdout == ""
        assert "no key has a role and zone" in p.stderr


def test_keys_selects_by_locator_and_refuses_bad_input(
        rehearsal: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    work, _ = rehearsal
    journal = str(work / "journal.jsonl")
    first = keys(journal).stdout.split("\n", 1)[0].removeprefix("# ")
    one = keys(journal, "--locator", first)
    assert one.returncode == 0 and one.stdout.count("BEGIN PUBLIC KEY") == 1
    assert keys(journal, "--locator", "00" * 16).returncode == 2
    assert keys(str(tmp_path / "missing.jsonl")).returncode == 2
    assert keys(journal, "--format", "json").returncode == 2
    # a journal changed after it was written does not verify: nothing printed
    bad = tmp_path / "changed.jsonl"
    lines = Path(journal).read_text().splitlines(keepends=True)
    bad.write_text("".join(lines[:5] + [lines[5].replace('"at"', '"at" ', 1)] + lines[6:]))
    changed = keys(str(bad))
    assert changed.returncode == 1 and changed.stdout == ""
    h = keys("--help")
    assert h.returncode == 0 and "ldns-key2ds" in h.stdout and "--format" in h.stdout
