"""The pure parts: RFC 6962 tree hashes, C2SP checkpoints and signed notes.

Known answers come from outside this code base: Certificate Transparency's reference Merkle
vectors, and the example key, note and signatures in the documentation of Go's
golang.org/x/mod/sumdb/note package (whose format C2SP signed-note specifies).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coordinator.journal import Journal, generate_key
from coordinator.journal.checkpoint import BadCheckpoint, Checkpoint
from coordinator.journal.merkle import EMPTY_ROOT, CompactRange, tree_hash
from coordinator.journal.note import (
    BadSignature,
    MalformedNote,
    NoTrustedSignature,
    Signer,
    Verifier,
    open_note,
    sign,
)
from tests.test_journal import AT, GENESIS

# -- RFC 6962 --------------------------------------------------------------------------------

CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("size", range(1, 9))
def test_merkle_roots_match_certificate_transparency_vectors(size: int) -> None:
    tree = CompactRange()
    for leaf in CT_LEAVES[:size]:
        tree.append(leaf)
    assert tree.root().hex() == CT_ROOTS[size - 1]
    assert tree_hash(CT_LEAVES[:size]).hex() == CT_ROOTS[size - 1]


def test_the_empty_tree() -> None:
    assert CompactRange().root() == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert tree_hash([]) == EMPTY_ROOT


def test_the_compact_range_agrees_with_the_recursive_definition_at_every_size() -> None:
    leaves = [i.to_bytes(2, "big") * (i % 5) for i in range(70)]
    tree = CompactRange()
    for n, leaf in enumerate(leaves, start=1):
        tree.append(leaf)
        assert tree.size == n
        assert tree.root() == tree_hash(leaves[:n]), n
        assert len(tree._hashes) == bin(n).count("1")  # O(log n) state


def test_a_copy_is_independent() -> None:
    tree = CompactRange()
    tree.append(b"a")
    copy = tree.copy()
    tree.append(b"b")
    assert copy.root() == tree_hash([b"a"]) and copy.size == 1


# -- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_body_round_trip() -> None:
    cp = Checkpoint("example.com/log", 20852163, bytes(range(32)))
    body = cp.body()
    assert body == (
        "example.com/log\n20852163\n" + base64.b64encode(bytes(range(32))).decode() + "\n"
    )
    assert Checkpoint.parse(body) == cp
    assert Checkpoint.parse(body + "extension line\n") == cp  # extensions are allowed, ignored


@pytest.mark.parametrize(
    "text",
    [
        "o\n1\n" + base64.b64encode(b"\0" * 32).decode(),  # no final newline
        "o\n1\n",  # no root
        "o\n01\n" + base64.b64encode(b"\0" * 32).decode() + "\n",  # leading zero
        "o\n-1\n" + base64.b64encode(b"\0" * 32).decode() + "\n",
        "o\n1\n" + base64.b64encode(b"\0" * 31).decode() + "\n",  # short root
        "o\n1\nnot base64!\n",
        "o\n1\n" + base64.b64encode(b"\0" * 32).decode() + "\n\nx\n",  # empty extension line
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(BadCheckpoint):
        Checkpoint.parse(text)


# -- the Go note package's documented example ----------------------------------------------------

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6"
    "KE6RyyBwJnAM=\n"
)
GO_SIG_ENOCH = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33W"
    "Wd1RvMc+QQ=\n"
)


def _go_signer() -> Signer:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])  # PRIVATE+KEY+name+id+key
    assert seed[0] == 1  # Ed25519
    return Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed[1:]))


def test_the_verifier_key_matches_go() -> None:
    assert _go_signer().verifier().text() == GO_VKEY
    assert Verifier.parse(GO_VKEY).key_id == 0xC74F20A3


def test_signing_matches_go_byte_for_byte() -> None:
    assert sign(GO_TEXT, [_go_signer()]) == GO_TEXT + "\n" + GO_SIG


def test_opening_gos_doubly_signed_note_ignores_the_unknown_key() -> None:
    opened = open_note(GO_TEXT + "\n" + GO_SIG + GO_SIG_ENOCH, [Verifier.parse(GO_VKEY)])
    assert opened.text == GO_TEXT
    assert opened.signed_by == ("PeterNeumann+c74f20a3",)
    assert len(opened.unknown) == 1 and opened.unknown[0].startswith("EnochRoot+")


def test_a_note_signed_only_by_unknown_keys_is_rejected() -> None:
    with pytest.raises(NoTrustedSignature, match="EnochRoot"):
        open_note(GO_TEXT + "\n" + GO_SIG_ENOCH, [Verifier.parse(GO_VKEY)])
    with pytest.raises(NoTrustedSignature):
        open_note(GO_TEXT + "\n" + GO_SIG, [])


def test_a_known_keys_bad_signature_rejects_the_note_even_beside_a_good_one() -> None:
    other = Signer("PeterNeumann", generate_key())
    forged = sign(GO_TEXT.replace("you", "we"), [_go_signer()]).split("\n\n")[1]
    with pytest.raises(BadSignature):
        open_note(GO_TEXT + "\n" + forged, [Verifier.parse(GO_VKEY)])
    # same name, another key id: unknown, ignored; the good signature still counts
    extra = sign(GO_TEXT, [other]).split("\n\n")[1]
    assert open_note(GO_TEXT + "\n" + GO_SIG + extra, [Verifier.parse(GO_VKEY)]).signed_by


@pytest.mark.parametrize(
    "msg",
    [
        GO_TEXT + GO_SIG,  # no blank line
        GO_TEXT + "\n" + GO_SIG.rstrip("\n"),  # signature block without final newline
        GO_TEXT + "\n",  # no signatures
        GO_TEXT + "\n" + GO_SIG.replace("— ", "-- "),
        GO_TEXT + "\n" + GO_SIG.replace("PeterNeumann", "Peter Neumann"),
        GO_TEXT + "\n" + GO_SIG.replace("PeterNeumann", "Peter+Neumann"),
        GO_TEXT + "\n" + GO_SIG.replace("x08go", "x08g!"),
        GO_TEXT + "\n" + "— PeterNeumann AAAA\n",  # 3 bytes: shorter than a key id + 1
        "bell\x07\n\n" + GO_SIG,
        GO_TEXT + "\n" + GO_SIG * 101,
    ],
)
def test_malformed_notes(msg: str) -> None:
    with pytest.raises(MalformedNote):
        open_note(msg, [Verifier.parse(GO_VKEY)])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # 7 hex digits
        "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # not base64
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann",
    ],
)
def test_malformed_verifier_keys(vkey: str) -> None:
    with pytest.raises(ValueError):
        Verifier.parse(vkey)


def test_signer_repr_hides_the_key() -> None:
    assert "hidden" in repr(_go_signer()) and "AYEK" not in repr(_go_signer())


# -- our checkpoints, checked without our code ---------------------------------------------------


def test_a_journal_checkpoint_checked_with_raw_cryptography(tmp_path: Path) -> None:
    key = generate_key()
    name = "keyrite.example/ksk"
    with Journal.create(tmp_path / "j", key, name, name, GENESIS) as j:
        j.append({"type": "step", "at": AT})
        note = j.checkpoint(AT)
    lines = (tmp_path / "j").read_bytes().split(b"\n")[:-1]
    assert json.loads(lines[-1])["record"] == {"type": "checkpoint", "note": note, "at": AT}

    body, _, sigs = note.partition("\n\n")
    origin, size, root64 = body.split("\n")
    assert (origin, size) == (name, "2")
    leaf = [hashlib.sha256(b"\x00" + line).digest() for line in lines[:2]]
    assert base64.b64decode(root64) == hashlib.sha256(b"\x01" + leaf[0] + leaf[1]).digest()

    assert sigs.endswith("\n") and sigs.count("\n") == 1
    dash, signer_name, sig64 = sigs[:-1].split(" ")
    assert dash == "\u2014" and signer_name == name
    blob = base64.b64decode(sig64, validate=True)
    assert len(blob) == 4 + 64
    raw_pub = key.public_key().public_bytes_raw()
    assert blob[:4] == hashlib.sha256(name.encode() + b"\n\x01" + raw_pub).digest()[:4]
    Ed25519PublicKey.from_public_bytes(raw_pub).verify(blob[4:], (body + "\n").encode())

    vkey_name, vkey_id, vkey64 = json.loads(lines[0])["record"]["journal"]["vkey"].split("+", 2)
    assert (vkey_name, bytes.fromhex(vkey_id)) == (name, blob[:4])
    assert base64.b64decode(vkey64) == b"\x01" + raw_pub
