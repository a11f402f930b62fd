"""Officers cosign the record (issue 13 item 3): RFC 6962 consistency proofs, the C2SP
cosignature/v1 format, a console's check of each checkpoint (a fork or a shrunken one refused),
the coordinator journaling cosignatures and refusals and showing refusals on every screen, and
`keyrite verify --cosigned-by` on a rehearsal's journal.

The console end to end is in-process (not tmux): a real daemon (`Live`) over a real journal, the
console's own `RecordKeeper` (consoles.app) talking to it through `Live.handle`, and the real
prompt_toolkit screens drawn with `render_text`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from ceremony.view import from_dict
from consoles.actions import actions_for
from consoles.app import RecordKeeper
from consoles.cosign import (
    Accepted,
    Cosigner,
    Refusal,
    check,
    cosign_command,
    refusal_command,
)
from consoles.screen import ConsoleScreen
from consoles.signing import sign_command
from coordinator.bus import CommandRefused
from coordinator.journal import Journal
from coordinator.journal.checkpoint import (
    BadCosignature,
    Checkpoint,
    cosign,
    cosigned_message,
    cosigner_name,
    open_cosignature,
)
from coordinator.journal.merkle import (
    consistency_proof,
    leaf_hash,
    node_hash,
    tree_hash,
    verify_consistency,
)
from coordinator.journal.note import Signer, note_text, open_note, sign
from coordinator.live.daemon import Live
from tests.idle_world import NoWork, SetClock
from tests.machine_helpers import (
    T0,
    drive,
    kso_quorum,
    private_key,
    role_of,
    roster,
    seed_script,
    start,
)

KEYRITE = [sys.executable, "-m", "keyrite.cli"]
ORIGIN = "keyrite.test/cosign"


# --- RFC 6962 consistency proofs -----------------------------------------------------------------
def _reference_proof(leaves: list[bytes], m: int) -> list[bytes]:
    """PROOF(m, D[n]) as RFC 6962 section 2.1.2 writes it, over the raw leaves, with MTH computed
    afresh for every subtree (`tree_hash`, the RFC's recursive definition)."""

    def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [tree_hash(d)]
        k = 1 << ((n - 1).bit_length() - 1)  # the largest power of two smaller than n
        if m <= k:
            return subproof(m, d[:k], b) + [tree_hash(d[k:])]
        return subproof(m - k, d[k:], False) + [tree_hash(d[:k])]

    return subproof(m, leaves, True)


def _leaves(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def test_consistency_proofs_are_rfc_6962s_for_every_size_up_to_40() -> None:
    for n in range(1, 41):
        data = _leaves(n)
        hashes = [leaf_hash(x) for x in data]
        new_root = tree_hash(data)
        assert consistency_proof(hashes, 0, n) == []
        assert verify_consistency(0, n, b"", new_root, [])
        for m in range(1, n + 1):
            proof = consistency_proof(hashes, m, n)
            assert proof == _reference_proof(data, m), (m, n)
            assert verify_consistency(m, n, tree_hash(data[:m]), new_root, proof), (m, n)


def test_the_certificate_transparency_vectors() -> None:
    """The consistency proofs and roots of the Certificate Transparency test data (as kept in
    transparency-dev/merkle, proof/verify_test.go): an independent check of both sides."""
    leaves = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243",
                                         "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f")]
    roots = [bytes.fromhex(h) for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]
    proofs = {
        (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
        (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                 "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
        (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
        (6, 7): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                 "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    }
    assert [tree_hash(leaves[:i]) for i in range(1, 9)] == roots
    hashes = [leaf_hash(x) for x in leaves]
    for (m, n), want in proofs.items():
        proof = consistency_proof(hashes, m, n)
        assert proof == [bytes.fromhex(h) for h in want]
        assert verify_consistency(m, n, roots[m - 1], roots[n - 1], proof)


def test_a_wrong_proof_is_refused() -> None:
    some = hashlib.sha256(b"some hash").digest()
    for n in range(2, 41):
        data = _leaves(n)
        hashes = [leaf_hash(x) for x in data]
        new = tree_hash(data)
        for m in range(1, n):
            old = tree_hash(data[:m])
            proof = consistency_proof(hashes, m, n)
            # the sizes as transparency-dev/merkle's tests probe them (a second size off by
            # one may still fit the proof's shape: it is the signed checkpoint that binds a
            # size to its root, which `keyrite verify` checks against the lines)
            wrong: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
                (m - 1, n, old, new, proof), (m + 1, n, old, new, proof),
                (m ^ 2, n, old, new, proof), (m, n * 2, old, new, proof),
                (m, n // 2, old, new, proof), (n, m, old, new, proof),
                (m, n, new, old, proof), (m, n, some, new, proof), (m, n, old, some, proof),
                (m, n, old, new, []), (m, n, old, new, proof[:-1]),
                (m, n, old, new, proof + [old]), (m, n, old, new, proof + [b""]),
                (m, n, old, new, [old] + proof), (m, n, old, new, [proof[0]] + proof),
                (m, n, old, new, proof[1:]),
            ]
            for i in range(len(proof)):
                flipped = list(proof)
                flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
                wrong.append((m, n, old, new, flipped))
            for case in wrong:
                assert not verify_consistency(*case), (m, n, case[:2])


def test_sizes_that_are_always_consistent_and_never() -> None:
    root = tree_hash(_leaves(3))
    assert verify_consistency(3, 3, root, root, [])
    assert not verify_consistency(3, 3, root, tree_hash(_leaves(2)), [])
    assert not verify_consistency(3, 3, root, root, [root])  # equal trees need no proof
    assert not verify_consistency(4, 3, root, root, [])  # the past
    with pytest.raises(ValueError):
        consistency_proof([leaf_hash(x) for x in _leaves(3)], 4, 3)


# --- the cosignature format, built by hand from the spec ------------------------------------------
def _key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def test_the_signed_message_is_the_specs_example() -> None:
    """c2sp.org/tlog-cosignature, "Ed25519 signed message": its example, byte for byte."""
    text = ("example.com/behind-the-sofa\n20852163\n"
            "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
    assert cosigned_message(text, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")


def test_the_signature_line_is_the_specs_format() -> None:
    """Built by hand from the spec text: key id = SHA-256(name || "\\n" || 0x04 || 32-byte key)
    [:4]; the signature is a timestamped_signature (u64 big-endian timestamp, then the Ed25519
    signature over the signed message); the line is `— <name> base64(key id || signature)`."""
    key = _key("cosign test KSO1")
    name = cosigner_name("keyrite.ceremony/KSK-2026", "KSO1")
    assert name == "keyrite.ceremony/KSK-2026/KSO1"
    text = Checkpoint("keyrite.ceremony/KSK-2026", 57, hashlib.sha256(b"root").digest()).body()
    ts = 1_796_665_817
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x04" + raw).digest()[:4]
    message = b"cosignature/v1\n" + b"time " + str(ts).encode() + b"\n" + text.encode()
    signature = key.sign(message)  # Ed25519 is deterministic: the same bytes every time
    by_hand = "\u2014 " + name + " " + base64.b64encode(
        key_id + ts.to_bytes(8, "big") + signature).decode()
    line = cosign(text, name, key, ts)
    assert line == by_hand
    assert open_cosignature(line, text, name, key.public_key()) == ts


def test_a_cosigned_note_still_opens_with_the_coordinators_key() -> None:
    """Appended to the checkpoint note, the cosignature is a signature by a key the journal's
    verifier does not know: ignored, as signed-note requires (`keyrite verify --checkpoint`)."""
    log = Signer(ORIGIN, _key("coordinator"))
    text = Checkpoint(ORIGIN, 9, hashlib.sha256(b"r").digest()).body()
    note = sign(text, [log])
    name = cosigner_name(ORIGIN, "KSO1")
    cosigned = note + cosign(text, name, _key("KSO1"), 1_700_000_000) + "\n"
    opened = open_note(cosigned, [log.verifier()])
    assert opened.text == text and len(opened.unknown) == 1
    assert opened.unknown[0].startswith(name + "+")


def test_a_cosignature_that_does_not_hold_is_refused() -> None:
    key, other = _key("KSO1"), _key("KSO2")
    name = cosigner_name(ORIGIN, "KSO1")
    text = Checkpoint(ORIGIN, 9, hashlib.sha256(b"r").digest()).body()
    line = cosign(text, name, key, 1_700_000_000)
    later = Checkpoint(ORIGIN, 10, hashlib.sha256(b"r").digest()).body()
    raw = base64.b64decode(line.split(" ")[2])
    retimed = f"— {name} " + base64.b64encode(raw[:4] + (1).to_bytes(8, "big")
                                               + raw[12:]).decode()
    # an ordinary note signature (type 0x01) by the same key and name is not a cosignature
    plain = sign(text, [Signer(name, key)]).rsplit("\n", 2)[1]
    for bad_line, bad_text, bad_name, public, words in (
        (line, later, name, key.public_key(), "does not verify"),
        (line, text, name, other.public_key(), "key id"),
        (line, text, cosigner_name(ORIGIN, "KSO2"), key.public_key(), "not a signature line"),
        (retimed, text, name, key.public_key(), "does not verify"),
        (plain, text, name, key.public_key(), "key id"),
        (line[:-8], text, name, key.public_key(), "bytes, not 76"),
        (line + "!", text, name, key.public_key(), "not base64"),
    ):
        with pytest.raises(BadCosignature, match=words):
            open_cosignature(bad_line, bad_text, bad_name, public)


# --- journals to check ----------------------------------------------------------------------------
COORDINATOR = _key("coordinator key")


def _journal(path: Path, n: int, *, key: Ed25519PrivateKey = COORDINATOR,
             tag: str = "a") -> Journal:
    j = Journal.create(path, key=key, name=ORIGIN, origin=ORIGIN,
                       genesis_record={"type": "genesis", "at": "2026-11-27T00:00:00Z"})
    _grow(j, n, tag)
    return j


def _grow(j: Journal, n: int, tag: str = "a") -> None:
    for i in range(n):
        j.append({"type": "note", "at": T0 + i, "text": f"{tag}{j.size}"})


def _proof(path: Path, m: int, n: int) -> list[str]:
    hashes = [leaf_hash(x) for x in path.read_bytes().split(b"\n")[:n]]
    return [base64.b64encode(h).decode() for h in consistency_proof(hashes, m, n)]


def _fork(src: Path, dst: Path, keep: int, more: int) -> Journal:
    """A copy of `src`'s first `keep` lines, then other entries, re-signed with the same key."""
    lines = src.read_bytes().split(b"\n")[:keep]
    dst.write_bytes(b"".join(x + b"\n" for x in lines))
    j = Journal.open(dst, key=COORDINATOR)
    _grow(j, more, tag="forked")
    return j


def test_a_console_accepts_a_log_that_only_grew(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j", 4)
    c = Cosigner(j.verifier)
    first = c.offer(j.checkpoint("t"), [])  # the first one is taken on its signature
    assert first.checkpoint.size == 5 and c.accepted is first
    _grow(j, 7)
    note = j.checkpoint("t")
    size = Checkpoint.parse(note_text(note)).size
    assert c.offer(note, _proof(j.path, 5, size)).checkpoint.size == size == 13
    assert c.offer(note, []) is c.accepted  # the same one again: nothing to prove


def test_a_console_refuses_a_fork(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j", 6)
    j.checkpoint("t")  # covers 7
    _grow(j, 3)
    c = Cosigner(j.verifier)
    accepted = c.offer(j.checkpoint("t"), [])  # covers 11
    # entries 5 onwards rewritten, every link recomputed and checkpoints signed with the key
    f = _fork(j.path, tmp_path / "f", 5, 10)
    note = f.checkpoint("t")
    with pytest.raises(Refusal, match="FORKED") as r:
        c.offer(note, _proof(f.path, 11, 15))
    assert r.value.kind == "fork" and r.value.size == 15
    assert c.accepted is accepted and c.refusal is r.value
    assert c.first_refusal(r.value) and not c.first_refusal(r.value)  # told once
    # no proof at all, or a proof of the honest history, does not help either
    with pytest.raises(Refusal, match=r"\(no consistency proof\)"):
        check(accepted, note, None, j.verifier)
    # the same size with another root
    g = _fork(j.path, tmp_path / "g", 5, 6)
    with pytest.raises(Refusal, match="same 11 entries .* another root: the journal FORKED"):
        c.offer(g.checkpoint("t"), [])


def test_a_console_refuses_a_shrunken_checkpoint(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j", 3)
    earlier = j.checkpoint("t")  # covers 4
    _grow(j, 5)
    c = Cosigner(j.verifier)
    c.offer(j.checkpoint("t"), [])  # covers 10
    with pytest.raises(Refusal, match="fewer than the 10 .* the journal SHRANK") as r:
        c.offer(earlier, None)
    assert r.value.kind == "shrunk" and r.value.size == 4


def test_a_console_refuses_what_the_coordinators_key_did_not_sign(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j", 3)
    other = _journal(tmp_path / "o", 3, key=_key("someone else"))
    c = Cosigner(j.verifier)
    with pytest.raises(Refusal, match="not a checkpoint signed by the coordinator's key") as r:
        c.offer(other.checkpoint("t"), [], announced=4)
    assert r.value.kind == "signature" and r.value.size == 4 and c.accepted is None
    with pytest.raises(Refusal, match="not a checkpoint signed"):
        c.offer("not a note", [], announced=4)


# --- the coordinator journals them ---------------------------------------------------------------
def _live(path: Path, m: Any = None, journal: Journal | None = None,
          clock: SetClock | None = None) -> tuple[Live, Journal, SetClock, Any]:
    if m is None:
        m, w = start()
        drive(m, w, before=kso_quorum(0))  # KGA1, SA1, KSO1, KSO2, WI1... signed in
    if journal is None:
        journal = Journal.create(path, key=COORDINATOR, name=ORIGIN, origin=ORIGIN,
                                 genesis_record={"type": "genesis", "at": "2026-11-27T00:00:00Z",
                                                 "roster": roster().to_dict()})
    clock = clock or SetClock(T0 + 50_000)
    return Live(m, journal, NoWork(), clock=clock), journal, clock, m  # type: ignore[arg-type]


def _handle(live: Live, officer: str, body: dict[str, Any]) -> Any:
    return trio.run(live.handle, officer, body)


def _records(journal: Journal, kind: str) -> list[dict[str, Any]]:
    return [e.record for e in journal.entries() if e.record.get("type") == kind]


def test_the_daemon_journals_a_good_cosignature_and_refuses_a_bad_one(tmp_path: Path) -> None:
    live, journal, clock, _ = _live(tmp_path / "j")
    assert from_dict(live.view()).cosigning.checkpoint is None
    live.journal.checkpoint("2026-11-27T00:01:00Z")
    size = journal.size - 1
    assert from_dict(live.view()).cosigning.checkpoint == size

    # KSO1's console: fetch, check, cosign
    reply = _handle(live, "KSO1", {"type": "checkpoint", "from": 0})
    assert reply["size"] == size and reply["proof"] == []
    c = Cosigner(journal.verifier)
    accepted = c.offer(reply["note"], reply["proof"])
    command = cosign_command(accepted, "KSO1", private_key("KSO1"), clock.now)
    assert _handle(live, "KSO1", command) == {"accepted": True}
    [rec] = _records(journal, "cosignature")
    assert sorted(rec) == ["at", "root", "seat", "signature", "size", "type"]  # one shape
    assert (rec["seat"], rec["size"], rec["root"]) == ("KSO1", size, accepted.root)
    assert open_cosignature(rec["signature"], accepted.text, f"{ORIGIN}/KSO1",
                            private_key("KSO1").public_key()) == int(clock.now)
    assert _handle(live, "KSO1", command) == {"accepted": True, "already": True}  # once
    assert any(x.text == f"KSO1 cosigned checkpoint {size}" for x in live.lines)

    # a cosignature by another key, for the wrong root, or from a seat not signed in
    forged = cosign_command(accepted, "KSO2", private_key("KSO1"), clock.now)
    with pytest.raises(CommandRefused, match="key id is not that of .*/KSO2's enrolled key"):
        _handle(live, "KSO2", forged)
    with pytest.raises(CommandRefused, match="has another root"):
        _handle(live, "KSO2", {**cosign_command(accepted, "KSO2", private_key("KSO2"),
                                                clock.now), "root": "AAAA"})
    with pytest.raises(CommandRefused, match="no checkpoint of size 3"):
        _handle(live, "KSO2", {**forged, "size": 3})
    with pytest.raises(CommandRefused, match="dated .* in the future"):
        _handle(live, "KSO2", cosign_command(accepted, "KSO2", private_key("KSO2"),
                                             clock.now + 3600))
    with pytest.raises(CommandRefused, match="KSO3 is not signed in"):
        _handle(live, "KSO3", cosign_command(accepted, "KSO3", private_key("KSO3"), clock.now))
    assert len(_records(journal, "cosignature")) == 1
    refused = [r for r in _records(journal, "refused") if r["command"] == "cosign"]
    assert len(refused) == 5 and all("that was refused" in r["reason"] for r in refused)
    view = from_dict(live.view())
    assert [x.seq for x in view.cosigning.refusals] == \
        [e.seq for e in journal.entries() if e.record.get("command") == "cosign"]
    assert view.cosigning.refusals[0].text.startswith(
        f"KSO2 sent a cosignature of checkpoint {size} that was refused: its key id")
    # malformed: neither or both, a size that is not one
    for body, words in (({"size": size}, "either 'cosignature' or 'refusal'"),
                        ({"size": size, "refusal": "x", "cosignature": "y"}, "either"),
                        ({"size": "1", "refusal": "x"}, "'size' must be an integer"),
                        ({"size": -1, "refusal": "x"}, "tree size")):
        with pytest.raises(CommandRefused, match=words):
            _handle(live, "SA1", {"type": "cosign", **body})

    # the log grows: the console asks from what it accepted and gets a proof
    for i in range(5):
        live.journal.append({"type": "coordinator", "at": clock.now, "step": None,
                             "what": f"n{i}"})
    live.journal.checkpoint("2026-11-27T00:02:00Z")
    reply = _handle(live, "KSO1", {"type": "checkpoint", "from": size})
    assert reply["size"] == journal.size - 1 and len(reply["proof"]) > 0
    later = c.offer(reply["note"], reply["proof"])
    assert _handle(live, "KSO1", cosign_command(later, "KSO1", private_key("KSO1"),
                                                clock.now)) == {"accepted": True}
    # asked from beyond the latest (a console that saw more): no proof to give
    assert _handle(live, "KSO1", {"type": "checkpoint", "from": 10_000})["proof"] is None


def test_a_consoles_refusal_is_journaled_and_shown_on_every_screen_once(tmp_path: Path) -> None:
    live, journal, clock, m = _live(tmp_path / "j")
    live.journal.checkpoint("t")
    size = journal.size - 1
    r = Refusal("fork", "no valid consistency proof ...: the journal FORKED", size, "Zm9v")
    assert _handle(live, "WI1", refusal_command("WI1", r)) == {"journaled": True}
    assert _handle(live, "WI1", refusal_command("WI1", r)) == {"journaled": True,
                                                                "already": True}
    with pytest.raises(CommandRefused, match="no checkpoint of size 999 to refuse"):
        _handle(live, "WI1", refusal_command("WI1", Refusal("fork", "x", 999)))
    [rec] = [x for x in _records(journal, "refused") if x["command"] == "cosign"]
    assert (rec["console"], rec["reason"]) == (
        "WI1", f"REFUSES TO COSIGN checkpoint {size}: no valid consistency proof ...: the "
        "journal FORKED")
    [line] = from_dict(live.view()).cosigning.refusals
    assert line.text == f"WI1 REFUSES TO COSIGN checkpoint {size}: no valid consistency proof" \
        " ...: the journal FORKED"
    # a coordinator started again over the journal shows it again
    journal.close()
    again, _, _, _ = _live(tmp_path / "j", m, Journal.open(tmp_path / "j", COORDINATOR), clock)
    assert from_dict(again.view()).cosigning.refusals == (line,)


# --- a console fed a fork, end to end in-process --------------------------------------------------
def _screen_text(view: Any, seat: str, status: Any = None) -> str:
    with create_pipe_input() as pipe:
        screen = ConsoleScreen(view, seat, role_of(seat), lambda cmd: None,
                               status=status, clock=lambda: view.now, input=pipe,
                               output=DummyOutput())
        return screen.render_text(width=110, height=50)


def _keeper(live: Live, seat: str, enrolment: Path, clock: SetClock) -> RecordKeeper:
    def request(body: dict[str, Any]) -> Any:
        return _handle(live, seat, body)

    def send(body: dict[str, Any]) -> None:
        with contextlib.suppress(CommandRefused):  # the coordinator's journal says it
            _handle(live, seat, body)

    return RecordKeeper(live.journal.journal.verifier.text(), enrolment, seat, request, send,
                        clock=clock)


def test_a_console_fed_a_forked_checkpoint_refuses_and_every_screen_shows_it(
        tmp_path: Path) -> None:
    live, journal, clock, m = _live(tmp_path / "j")
    for i in range(6):
        live.journal.append({"type": "coordinator", "at": clock.now, "step": None,
                             "what": f"n{i}"})
    live.journal.checkpoint("t")
    accepted_size = journal.size - 1
    enrolment = tmp_path / "KSO1"
    enrolment.mkdir()
    keeper = _keeper(live, "KSO1", enrolment, clock)
    keeper.seen(from_dict(live.view()))
    keeper.look()
    assert keeper.cosigner.accepted is not None
    assert keeper.cosigner.accepted.checkpoint.size == accepted_size
    [stored] = (enrolment / "checkpoints").iterdir()  # remembered beside the enrolment
    assert stored.read_text() == keeper.cosigner.accepted.note
    assert keeper.status() == ""
    journal.close()

    # the coordinator is started again on a journal rewritten from entry 4 on, with its links
    # recomputed and a checkpoint signed with its key: it verifies on its own
    forked = tmp_path / "forked"
    lines = (tmp_path / "j").read_bytes().split(b"\n")[:4]
    forked.write_bytes(b"".join(x + b"\n" for x in lines))
    fj = Journal.open(forked, COORDINATOR)
    _grow(fj, 9, tag="rewritten")
    fj.close()
    live2, journal2, _, _ = _live(forked, m, Journal.open(forked, COORDINATOR), clock)
    live2.journal.checkpoint("t")
    fork_size = journal2.size - 1
    assert fork_size > accepted_size

    # KSO1's console, started again too, remembers what it accepted
    console = _keeper(live2, "KSO1", enrolment, clock)
    assert console.cosigner.accepted is not None
    assert console.cosigner.accepted.checkpoint.size == accepted_size
    console.seen(from_dict(live2.view()))
    console.look()
    assert console.cosigner.accepted.checkpoint.size == accepted_size  # kept, not replaced
    assert console.cosigner.refusal is not None and console.cosigner.refusal.kind == "fork"
    console.look()  # looking again at the same announcement asks and tells nothing more
    [rec] = [x for x in _records(journal2, "refused") if x["command"] == "cosign"]
    assert rec["console"] == "KSO1"
    assert rec["reason"] == (f"REFUSES TO COSIGN checkpoint {fork_size}: it does not extend "
                             f"checkpoint {accepted_size} accepted before (no valid consistency "
                             "proof): the journal FORKED [A13]")
    assert _records(journal2, "cosignature") == []

    view = from_dict(live2.view())
    for seat in ("KGA1", "SA1", "KSO1", "KSO2", "WI1", "DSO2"):
        text = " ".join(_screen_text(view, seat).split())
        assert f"RECORD DISPUTED: KSO1 REFUSES TO COSIGN checkpoint {fork_size}" in text, seat
    own = " ".join(_screen_text(view, "KSO1", console.status).split())
    assert f"YOU REFUSED TO COSIGN checkpoint {fork_size}" in own
    assert "the journal FORKED" in own
    with create_pipe_input() as pipe:  # 80x24 keeps it too (alerts are always drawn)
        narrow = ConsoleScreen(view, "WI1", "WI", lambda cmd: None, clock=lambda: view.now,
                               input=pipe, output=DummyOutput()).render_text(80, 24)
    assert "RECORD DISPUTED" in narrow


def test_the_key_unlocked_at_the_sign_off_cosigns_until_the_final_checkpoint(
        tmp_path: Path) -> None:
    live, journal, clock, _ = _live(tmp_path / "j")
    live.journal.checkpoint("t")
    first = journal.size - 1
    enrolment = tmp_path / "KGA1"
    enrolment.mkdir()
    keeper = _keeper(live, "KGA1", enrolment, clock)
    keeper.seen(from_dict(live.view()))
    keeper.look()  # checked, but no key: nothing cosigned
    assert _records(journal, "cosignature") == []
    keeper.hold("KGA1", private_key("KGA1"), clock.now)  # the sign-off's passphrase
    keeper.look()
    assert [(r["seat"], r["size"]) for r in _records(journal, "cosignature")] == \
        [("KGA1", first)]
    # the ceremony ends; its final checkpoint is cosigned, then the key is dropped
    live.journal.append({"type": "coordinator", "at": clock.now, "step": None, "what": "x"})
    live.journal.checkpoint("t")
    final = journal.size - 1
    keeper.seen(dataclasses.replace(from_dict(live.view()), status="completed"))
    keeper.look()
    assert [r["size"] for r in _records(journal, "cosignature")] == [first, final]
    assert keeper.held is None
    live.journal.checkpoint("t")
    keeper.seen(dataclasses.replace(from_dict(live.view()), status="completed"))
    keeper.look()
    assert len(_records(journal, "cosignature")) == 2  # no key any more
    # a key held past its time cosigns nothing
    keeper.hold("KGA1", private_key("KGA1"), clock.now - 3600)
    live.journal.checkpoint("t")
    keeper.seen(from_dict(live.view()))
    keeper.look()
    assert len(_records(journal, "cosignature")) == 2 and keeper.held is None


def test_every_officer_signs_off_one_checkpoint_each_with_its_cosignature(
        tmp_path: Path) -> None:
    """Seed step 111 live: each officer the machine asks signs the same checkpoint from their
    own console, and the cosignature their console sends with it is journaled right after the
    sign-off, so the journal copied at 112 holds the sign-offs and every cosignature."""
    m, w = start(seed_script())
    drive(m, w, until=111)
    live, journal, clock, _ = _live(tmp_path / "j", m)
    live._ensure_checkpoint(111, clock.now)
    size = journal.size - 1
    order = ["KSO2", "KGA1", "DSO2", "SA1"]  # carol signs at her DSO seat (KSO1 is hers too)
    for n, seat in enumerate(order):
        view = from_dict(live.view())
        assert view.checkpoint == live.journal.notes[size]  # the same one, every time
        enrolment = tmp_path / seat
        enrolment.mkdir()
        keeper = _keeper(live, seat, enrolment, clock)
        keeper.seen(view)
        keeper.look()  # checked: consistent with nothing accepted before
        if seat == "DSO2":  # offered to the seat the machine asks: KSO1 for carol, not DSO2
            assert not [a for a in actions_for(view, seat, "DSO") if a.kind == "signoff"]
            [act] = [a for a in actions_for(view, "KSO1", "KSO") if a.kind == "signoff"]
            act = dataclasses.replace(act, command={**act.command, "seat": "DSO2"})
        else:
            [act] = [a for a in actions_for(view, seat, role_of(seat)) if a.kind == "signoff"]
        body = sign_command(view, dict(act.command), private_key(seat), clock.now)
        cosign = keeper.signoff_cosignature(seat, private_key(seat), act.command["checkpoint"],
                                            clock.now)
        assert cosign is not None and cosign["size"] == size
        assert keeper.signoff_cosignature(seat, private_key(seat), act.command["checkpoint"],
                                          clock.now) is None  # sent once
        assert _handle(live, seat, {**body, "cosign": cosign}) == {"accepted": True}
        tail = [e.record for e in journal.entries()][-2:]
        assert (tail[0]["type"], tail[0]["event"]["seat"]) == ("event", seat), tail[0]
        assert (tail[1]["type"], tail[1]["seat"], tail[1]["size"]) == ("cosignature", seat, size)
        assert (m.current.n if m.current else None) == (111 if n < len(order) - 1 else 112)
    assert [r["seat"] for r in _records(journal, "cosignature")] == order
    # a cosignature sent with a sign-off that does not verify is journaled as refused
    m2, w2 = start(seed_script())
    drive(m2, w2, until=111)
    live2, journal2, clock2, _ = _live(tmp_path / "j2", m2)
    live2._ensure_checkpoint(111, clock2.now)
    view = from_dict(live2.view())
    [act] = [a for a in actions_for(view, "SA1", "SA") if a.kind == "signoff"]
    body = sign_command(view, dict(act.command), private_key("SA1"), clock2.now)
    forged = {"size": journal2.size - 1, "root": "AAAA", "cosignature": "— x y"}
    assert _handle(live2, "SA1", {**body, "cosign": forged}) == {"accepted": True}
    assert _records(journal2, "cosignature") == []
    [refused] = [r for r in _records(journal2, "refused") if r["command"] == "cosign"]
    assert refused["console"] == "SA1" and "that was refused" in refused["reason"]


def test_a_stored_checkpoint_by_another_key_is_not_trusted(tmp_path: Path) -> None:
    j = _journal(tmp_path / "j", 2)
    enrolment = tmp_path / "KSO1"
    keeper = RecordKeeper(j.verifier.text(), enrolment, "KSO1", lambda b: None, lambda b: None)
    keeper.path.parent.mkdir(parents=True)
    other = _journal(tmp_path / "o", 2, key=_key("someone else"))
    keeper.path.write_text(other.checkpoint("t"))
    again = RecordKeeper(j.verifier.text(), enrolment, "KSO1", lambda b: None, lambda b: None)
    assert again.cosigner.accepted is None
    keeper.path.write_text(j.checkpoint("t"))
    again = RecordKeeper(j.verifier.text(), enrolment, "KSO1", lambda b: None, lambda b: None)
    assert isinstance(again.cosigner.accepted, Accepted)


# --- keyrite verify --cosigned-by -----------------------------------------------------------------
@pytest.fixture(scope="module")
def rehearsal_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("cosign") / "r"
    p = subprocess.run([*KEYRITE, "rehearse", "--workdir", str(work), "--fixture", "small",
                        "--json"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return work / "journal.jsonl"


def _verify(journal: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYRITE, "verify", str(journal), *args], capture_output=True,
                          text=True, timeout=120)


def test_a_rehearsals_final_checkpoint_is_cosigned_by_the_sign_off_officers(
        rehearsal_journal: Path) -> None:
    records = [json.loads(line)["record"] for line in rehearsal_journal.read_text().splitlines()]
    # the final checkpoint is cosigned; one more, the coordinator's, seals its cosignatures
    assert records[-1]["type"] == "checkpoint"
    last = max(i for i, r in enumerate(records[:-1]) if r["type"] == "checkpoint")
    signers = ["KGA", "SA", "KSO1", "KSO2", "DSO2", "DSO3", "DSO4"]  # the sign-off's roles
    assert [r["type"] for r in records[last + 1:-1]] == ["cosignature"] * len(signers)
    assert [r["seat"] for r in records[last + 1:-1]] == signers
    assert not [r for r in records if r["type"] == "refused"]  # every officer accepted every one
    for arg in ("7", "KGA,SA,KSO,DSO"):
        p = _verify(rehearsal_journal, "--cosigned-by", arg)
        assert p.returncode == 0, p.stderr
        assert "cosigned-by" in p.stdout and "holds: the last cosigned checkpoint" in p.stdout
        assert "is cosigned by DSO2, DSO3, DSO4, KGA, KSO1, KSO2, SA (the 8 entries after it " \
            "are covered by the coordinator's checkpoint alone)" in p.stdout


@pytest.mark.parametrize("arg, words", [
    ("8", "cosigned-by 8 officers does not hold: .* cosigned by DSO2, DSO3, DSO4, KGA, KSO1, "
     "KSO2, SA .*: 7 officers"),
    ("KGA,WI", "cosigned-by KGA,WI does not hold: .* no WI among them"),
    ("SAU", "no SAU among them"),
])
def test_verify_cosigned_by_fails_when_it_should(rehearsal_journal: Path, arg: str,
                                                 words: str) -> None:
    p = _verify(rehearsal_journal, "--cosigned-by", arg)
    assert p.returncode == 1
    assert p.stdout.startswith(f"{rehearsal_journal}: ok:")  # the journal itself holds
    assert re.search(words, p.stderr), p.stderr


def test_verify_cosigned_by_json_and_bad_input(rehearsal_journal: Path) -> None:
    p = _verify(rehearsal_journal, "--cosigned-by", "KGA,KSO", "--json")
    out = json.loads(p.stdout)
    assert p.returncode == 0 and out["ok"]
    assert out["cosigned"]["ok"] and out["cosigned"]["cosigned_by"] == [
        "DSO2", "DSO3", "DSO4", "KGA", "KSO1", "KSO2", "SA"]
    assert out["cosigned"]["required"] == ["KGA", "KSO"] and out["cosigned"]["bad"] == []
    for bad in ("0", "KSO SA", "K+"):
        p = _verify(rehearsal_journal, "--cosigned-by", bad)
        assert p.returncode == 2, (bad, p.stderr)


def test_verify_cosigned_by_counts_people_and_a_bad_cosignature_fails_the_journal(
        tmp_path: Path) -> None:
    """One person's two seats count once. A record claiming a cosignature that does not verify
    against the genesis roster's key is not a record the coordinator writes (it journals a
    `refused` instead): the journal itself does not hold, at that entry."""
    j = Journal.create(tmp_path / "j", key=COORDINATOR, name=ORIGIN, origin=ORIGIN,
                       genesis_record={"type": "genesis", "at": "2026-11-27T00:00:00Z",
                                       "roster": roster().to_dict()})
    _grow(j, 3)
    note = j.checkpoint("t")
    accepted = check(None, note, [], j.verifier)

    def cosign_as(seat: str, key: str) -> None:
        cmd = cosign_command(accepted, seat, private_key(key), T0)
        j.append({"type": "cosignature", "at": T0, "seat": seat, "size": cmd["size"],
                  "root": cmd["root"], "signature": cmd["cosignature"]})

    for seat in ("KSO1", "DSO2"):  # carol twice
        cosign_as(seat, seat)
    p = _verify(tmp_path / "j", "--cosigned-by", "1")
    assert p.returncode == 0
    assert "cosigned by DSO2, KSO1: 1 officer (one person's seats count once)" in p.stdout
    p = _verify(tmp_path / "j", "--cosigned-by", "2")
    assert p.returncode == 1
    p = _verify(tmp_path / "j", "--cosigned-by", "KSO,DSO")
    assert p.returncode == 0
    cosign_as("KSO2", "SA1")  # signed with another seat's key
    j.close()
    p = _verify(tmp_path / "j", "--cosigned-by", "1")
    assert p.returncode == 1
    assert "entry 7 (line 8) does not hold: the cosignature by KSO2 of the checkpoint at entry 4 " \
        "does not verify: its key id" in p.stderr


def test_node_hash_is_rfc_6962s() -> None:  # the domain separation the proofs rely on
    left, right = b"l" * 32, b"r" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


def test_no_stray_files(tmp_path: Path) -> None:
    """The console's record directory is only made when a checkpoint is accepted."""
    keeper = RecordKeeper(Signer(ORIGIN, COORDINATOR).verifier().text(), tmp_path, "KSO1",
                          lambda b: None, lambda b: None)
    keeper.look()
    assert not (tmp_path / "checkpoints").exists()


def test_an_auditor_a_sign_off_names_signs_the_record_from_their_own_console(
        tmp_path: Path) -> None:
    """An observer never acts, but a sign-off naming its role asks it to sign: the witness's
    console is offered the sign-off, signs with the seat's own key and sends its cosignature;
    the daemon journals both, as an officer's, and the step completes."""
    from ceremony.script.load import load_script_text
    from tests.machine_helpers import MINI, MINI_PREVIOUS

    text = MINI.read_text().replace('action = "signoff"', 'cosigners = ["WI"]\naction = "signoff"')
    m, w = start(load_script_text(text, "mini-witness.toml"), MINI_PREVIOUS)
    drive(m, w, until=31)
    live, journal, clock, _ = _live(tmp_path / "j", m)
    live._ensure_checkpoint(31, clock.now)
    size = journal.size - 1
    for seat, role in (("KGA1", "KGA"), ("WI1", "WI")):
        view = from_dict(live.view())
        enrolment = tmp_path / seat
        enrolment.mkdir()
        keeper = _keeper(live, seat, enrolment, clock)
        keeper.seen(view)
        keeper.look()
        [act] = [a for a in actions_for(view, seat, role) if a.kind == "signoff"]
        body = sign_command(view, dict(act.command), private_key(seat), clock.now)
        cosign = keeper.signoff_cosignature(seat, private_key(seat), act.command["checkpoint"],
                                            clock.now)
        assert _handle(live, seat, {**body, "cosign": cosign}) == {"accepted": True}
    assert [r["seat"] for r in _records(journal, "cosignature")] == ["KGA1", "WI1"]
    assert all(r["size"] == size for r in _records(journal, "cosignature"))
    assert m.current is not None and m.current.n == 32
