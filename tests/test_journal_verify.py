"""`verify_journal` names the first entry that does not hold, for every kind of damage.

The journal under test (from `make_journal`): genesis 0, steps 1-4, checkpoint 5 (covers 0-4),
steps 6-8, checkpoint 9 (covers 0-8), steps 10-11.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.journal import entry as entry_codec
from coordinator.journal import generate_key, verifier_key, verify_journal
from coordinator.journal.checkpoint import Checkpoint
from coordinator.journal.merkle import tree_hash
from coordinator.journal.note import Signer, sign
from tests.test_journal import NAME, make_journal, read_lines, relink, write_lines

CHECKPOINTS = (5, 9)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture
def path(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    p = tmp_path / "ceremony.journal"
    make_journal(p, key, n=12, checkpoints=CHECKPOINTS)
    return p


def first_problem(path: Path, trusted: list[str] | None = None) -> tuple[int, int, str, str]:
    report = verify_journal(path, trusted)
    assert not report.ok
    p = report.problem
    assert p is not None
    assert p.line == p.seq + 1
    assert report.entries == p.seq or p.kind in ("link",)  # all before the named entry held
    return p.seq, p.line, p.kind, p.reason


def replace_record(lines: list[bytes], seq: int, **changes: object) -> None:
    s, prev, record = entry_codec.decode(lines[seq])
    lines[seq] = entry_codec.encode(s, prev, {**record, **changes})


def test_an_intact_journal_verifies(path: Path, key) -> None:
    report = verify_journal(path)
    assert report.ok and report.problem is None and report.torn is None
    assert (report.entries, report.checkpoints, report.last_checkpoint_size) == (12, 2, 9)
    assert report.trust == "genesis"
    assert report.unsigned == 2  # steps 10, 11 (the checkpoint at 9 is its own signature)
    assert "announced by the genesis" in report.summary()
    assert "2 entries covered by no checkpoint" in report.summary()
    given = verify_journal(path, [verifier_key(NAME, key)])
    assert given.ok and given.trust == "given"
    assert "announced" not in given.summary()


# -- flipped bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 1, 3, 4, 5, 8, 9, 10])
def test_a_changed_value_names_that_entry(path: Path, seq: int) -> None:
    lines = read_lines(path)
    i = lines[seq].index(b'"at":"2026') + len(b'"at":"2026')
    lines[seq] = lines[seq][:i] + b"X" + lines[seq][i + 1 :]  # still valid JSON
    write_lines(path, lines)
    assert first_problem(path)[:3] == (seq, seq + 1, "link")


@pytest.mark.parametrize("seq", [1, 6, 11])
def test_a_changed_prev_names_that_entry(path: Path, seq: int) -> None:
    lines = read_lines(path)
    _, prev, record = entry_codec.decode(lines[seq])
    flipped = ("1" if prev[0] != "1" else "2") + prev[1:]
    lines[seq] = entry_codec.encode(seq, flipped, record)
    write_lines(path, lines)
    got = first_problem(path)
    if seq == 11:  # the last entry: nothing after it says which side changed
        assert got[:3] == (10, 11, "link") and "or entry 11's prev" in got[3]
    else:
        assert got[:3] == (seq, seq + 1, "link")


@pytest.mark.parametrize("seq", [2, 7])
def test_broken_json_names_that_entry(path: Path, seq: int) -> None:
    lines = read_lines(path)
    lines[seq] = lines[seq].replace(b'"record":{', b'"record":[', 1)
    write_lines(path, lines)
    assert first_problem(path)[:3] == (seq, seq + 1, "json")


def test_an_entry_that_is_not_an_entry_is_a_format_error(path: Path) -> None:
    lines = read_lines(path)
    lines[3] = lines[3].replace(b'"seq":3', b'"seq":"3"')
    write_lines(path, lines)
    assert first_problem(path)[:3] == (3, 4, "format")


# -- deleted, inserted, reordered ----------------------------------------------------------------


@pytest.mark.parametrize("seq", [1, 4, 5, 10])
def test_a_deleted_entry(path: Path, seq: int) -> None:
    lines = read_lines(path)
    del lines[seq]
    write_lines(path, lines)
    got = first_problem(path)
    assert got[:3] == (seq, seq + 1, "seq")
    assert f"entry {seq} deleted" in got[3]


def test_deleted_entries(path: Path) -> None:
    lines = read_lines(path)
    del lines[2:4]
    write_lines(path, lines)
    assert "entries 2 to 3 deleted" in first_problem(path)[3]


@pytest.mark.parametrize("copied, after", [(2, 6), (6, 6), (5, 10)])
def test_an_inserted_copy(path: Path, copied: int, after: int) -> None:
    lines = read_lines(path)
    lines.insert(after + 1, lines[copied])
    write_lines(path, lines)
    got = first_problem(path)
    assert got[:3] == (after + 1, after + 2, "seq")
    assert f"copy of seq {copied}" in got[3]


@pytest.mark.parametrize("seq", [1, 4, 8])
def test_two_swapped_entries(path: Path, seq: int) -> None:
    lines = read_lines(path)
    lines[seq], lines[seq + 1] = lines[seq + 1], lines[seq]
    write_lines(path, lines)
    got = first_problem(path)
    assert got[:3] == (seq, seq + 1, "seq")
    assert "swapped" in got[3]


def test_swapped_and_relinked_is_still_caught(path: Path) -> None:
    lines = read_lines(path)
    lines[2], lines[3] = lines[3], lines[2]
    for i, seq in ((2, 2), (3, 3)):  # renumber too: a careful forger
        _, prev, record = entry_codec.decode(lines[i])
        lines[i] = entry_codec.encode(seq, prev, record)
    write_lines(path, relink(lines, 2))
    assert first_problem(path)[:3] == (5, 6, "root")  # only the signed root can tell


# -- checkpoints ---------------------------------------------------------------------------------


def _b64_flip(sig: str) -> str:
    i = 10  # well inside the signature, clear of padding
    return sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1 :]


@pytest.mark.parametrize("relinked", [False, True])
def test_a_bad_signature(path: Path, relinked: bool) -> None:
    lines = read_lines(path)
    note = json.loads(lines[5])["record"]["note"]
    body, sigline = note[: note.rindex("\n\n") + 2], note[note.rindex("\n\n") + 2 :]
    name, sig = sigline[2:-1].split(" ")
    replace_record(lines, 5, note=f"{body}— {name} {_b64_flip(sig)}\n")
    write_lines(path, relink(lines, 6) if relinked else lines)
    seq, line, kind, reason = first_problem(path)
    assert (seq, line, kind) == (5, 6, "signature")
    assert "does not verify" in reason


def test_a_changed_checkpoint_text_breaks_its_signature(path: Path) -> None:
    lines = read_lines(path)
    note = json.loads(lines[9])["record"]["note"]
    replace_record(lines, 9, note=note.replace("\n9\n", "\n8\n", 1))
    write_lines(path, relink(lines, 10))
    assert first_problem(path)[:3] == (9, 10, "signature")


def _resign(lines: list[bytes], seq: int, signer: Signer, cp: Checkpoint) -> None:
    replace_record(lines, seq, note=sign(cp.body(), [signer]))


def _true_checkpoint(lines: list[bytes], seq: int) -> Checkpoint:
    return Checkpoint(NAME, seq, tree_hash(lines[:seq]))


def test_a_checkpoint_signed_only_by_an_unknown_key(path: Path) -> None:
    lines = read_lines(path)
    _resign(lines, 5, Signer(NAME, generate_key()), _true_checkpoint(lines, 5))  # same name
    write_lines(path, relink(lines, 6))
    seq, line, kind, reason = first_problem(path)
    assert (seq, line, kind) == (5, 6, "untrusted")
    assert "not signed by a trusted key" in reason


def test_an_extra_signature_by_an_unknown_key_is_ignored(path: Path, key) -> None:
    lines = read_lines(path)
    cp = _true_checkpoint(lines, 5)
    note = sign(cp.body(), [Signer("witness.example/w1", generate_key()), Signer(NAME, key)])
    replace_record(lines, 5, note=note)
    lines = relink(lines, 6)
    _resign(lines, 9, Signer(NAME, key), _true_checkpoint(lines, 9))  # 9 covers the new line 5
    write_lines(path, relink(lines, 10))
    report = verify_journal(path, [verifier_key(NAME, key)])
    assert report.ok, report.summary()


def test_checkpoints_by_a_key_the_verifier_was_not_given(path: Path) -> None:
    other = verifier_key(NAME, generate_key())
    assert first_problem(path, [other])[:3] == (0, 1, "genesis")  # it announces another key
    lines = read_lines(path)  # a genesis announcing `other`, checkpoints still by the old key
    _, _, record = entry_codec.decode(lines[0])
    record["journal"] = {**record["journal"], "vkey": other}
    lines[0] = entry_codec.encode(0, "0" * 64, record)
    write_lines(path, relink(lines, 1))
    assert first_problem(path, [other])[:3] == (5, 6, "untrusted")


def test_a_checkpoint_root_that_does_not_match(path: Path, key) -> None:
    lines = read_lines(path)
    wrong = Checkpoint(NAME, 5, tree_hash(lines[1:5] + [lines[0]]))  # right key, wrong root
    _resign(lines, 5, Signer(NAME, key), wrong)
    write_lines(path, relink(lines, 6))
    seq, line, kind, reason = first_problem(path, [verifier_key(NAME, key)])
    assert (seq, line, kind) == (5, 6, "root")
    assert "entries 0 to 4" in reason


def test_a_rewritten_history_with_every_link_recomputed(path: Path) -> None:
    lines = read_lines(path)
    replace_record(lines, 7, step=70)
    write_lines(path, relink(lines, 8))
    assert first_problem(path)[:3] == (9, 10, "root")


@pytest.mark.parametrize(
    "cp, kind",
    [
        (Checkpoint(NAME, 4, b"\0" * 32), "checkpoint"),  # covers fewer entries than precede it
        (Checkpoint("other.example/log", 5, b"\0" * 32), "checkpoint"),
    ],
)
def test_a_checkpoint_for_another_size_or_origin(path: Path, key, cp: Checkpoint, kind) -> None:
    lines = read_lines(path)
    if cp.size == 4:
        cp = Checkpoint(NAME, 4, tree_hash(lines[:4]))
    _resign(lines, 5, Signer(NAME, key), cp)
    write_lines(path, relink(lines, 6))
    assert first_problem(path)[:3] == (5, 6, kind)


def test_a_malformed_note(path: Path) -> None:
    lines = read_lines(path)
    replace_record(lines, 5, note="just text\n")
    write_lines(path, relink(lines, 6))
    assert first_problem(path)[:3] == (5, 6, "note")


# -- genesis, tail, empty ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "journal_field",
    [None, {"origin": NAME, "version": 1}, {"origin": NAME, "version": 2, "vkey": "x"}],
)
def test_a_genesis_without_a_usable_key(path: Path, journal_field) -> None:
    lines = read_lines(path)
    _, _, record = entry_codec.decode(lines[0])
    record = {k: v for k, v in record.items() if k != "journal"}
    if journal_field is not None:
        record["journal"] = journal_field
    lines[0] = entry_codec.encode(0, "0" * 64, record)
    write_lines(path, relink(lines, 1))
    assert first_problem(path)[:3] == (0, 1, "genesis")


def test_a_genesis_with_another_key_does_not_fool_a_given_key(path: Path, key) -> None:
    """Swap the announced key for the forger's, re-sign every checkpoint: --key still catches it."""
    forger = Signer(NAME, generate_key())
    lines = read_lines(path)
    _, _, record = entry_codec.decode(lines[0])
    record["journal"] = {**record["journal"], "vkey": forger.verifier().text()}
    lines[0] = entry_codec.encode(0, "0" * 64, record)
    lines = relink(lines, 1)
    for seq in CHECKPOINTS:
        _resign(lines, seq, forger, _true_checkpoint(lines, seq))
        lines = relink(lines, seq + 1)
    write_lines(path, lines)
    assert verify_journal(path).ok  # consistent, but by whom?
    seq, line, kind, reason = first_problem(path, [verifier_key(NAME, key)])
    assert (seq, line, kind) == (0, 1, "genesis")  # named where it starts: the genesis
    assert forger.verifier().label() in reason and "not a given key" in reason


# -- a journal the given key never signed ------------------------------------------------------


def strip_checkpoints(lines: list[bytes]) -> list[bytes]:
    """Every checkpoint removed, the rest renumbered and relinked: a careful forger's journal,
    whose every line and link holds; only the missing signature can give it away."""
    out: list[bytes] = []
    for line in lines:
        _, _, record = entry_codec.decode(line)
        if record.get("type") == "checkpoint":
            continue
        prev = entry_codec.line_hash(out[-1]) if out else "0" * 64
        out.append(entry_codec.encode(len(out), prev, record))
    return out


def test_a_journal_stripped_of_its_checkpoints_fails_with_a_given_key(path: Path, key) -> None:
    write_lines(path, strip_checkpoints(read_lines(path)))
    vkey = verifier_key(NAME, key)
    alone = verify_journal(path)  # no key: consistent, and the summary says nothing is signed
    assert alone.ok and alone.checkpoints == 0 and alone.unsigned == 10
    assert "10 entries covered by no checkpoint" in alone.summary()
    report = verify_journal(path, [vkey])
    assert not report.ok and report.entries == 10 and report.unsigned == 10
    assert report.problem is not None and report.problem.kind == "unsigned"
    assert "no checkpoint" in report.summary() and "--allow-unsigned" in report.summary()
    allowed = verify_journal(path, [vkey], allow_unsigned=True)
    assert allowed.ok and allowed.unsigned == 10
    assert "UNSIGNED" in allowed.summary() and "--allow-unsigned" in allowed.summary()
    assert allowed.to_dict()["allow_unsigned"] is True
    assert allowed.to_dict()["unsigned_entries"] == 10


def test_allow_unsigned_does_not_excuse_a_genesis_with_another_key(path: Path, key) -> None:
    lines = strip_checkpoints(read_lines(path))
    _, _, record = entry_codec.decode(lines[0])
    record["journal"] = {**record["journal"],
                         "vkey": verifier_key(NAME, generate_key())}
    lines[0] = entry_codec.encode(0, "0" * 64, record)
    write_lines(path, relink(lines, 1))
    assert verify_journal(path).ok  # self-consistent
    for allow in (False, True):
        report = verify_journal(path, [verifier_key(NAME, key)], allow_unsigned=allow)
        assert not report.ok and report.problem is not None
        assert (report.problem.seq, report.problem.kind) == (0, "genesis")


def test_entries_after_the_last_checkpoint_are_counted_in_the_summary(path: Path, key) -> None:
    lines = read_lines(path)
    del lines[9]  # the second checkpoint: the first still covers 0 to 4
    lines = [entry_codec.encode(i, "0" * 64, entry_codec.decode(x)[2])
             for i, x in enumerate(lines)]
    write_lines(path, relink(lines, 1))
    report = verify_journal(path, [verifier_key(NAME, key)])
    assert report.ok and report.last_checkpoint_size == 5 and report.unsigned == 5
    assert "5 entries covered by no checkpoint" in report.summary()


def test_a_torn_tail_fails_verification_and_is_not_cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data + b'{"prev":"12')
    report = verify_journal(path)
    assert not report.ok
    assert report.entries == 12
    assert report.torn is not None and report.torn.cut_bytes == 11
    assert report.problem is not None
    assert (report.problem.seq, report.problem.line, report.problem.kind) == (12, 13, "torn")
    assert path.read_bytes() == data + b'{"prev":"12'  # verify only reads


def test_an_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty"
    p.write_bytes(b"")
    assert first_problem(p)[:3] == (0, 1, "empty")


def test_a_malformed_trusted_key_is_an_error(path: Path) -> None:
    with pytest.raises(ValueError):
        verify_journal(path, ["not-a-key"])
    vkey = verifier_key(NAME, generate_key())
    name, kid, b64 = vkey.split("+", 2)
    with pytest.raises(ValueError, match="key id"):
        verify_journal(path, [f"{name}+{int(kid, 16) ^ 1:08x}+{b64}"])
    not_ed25519 = base64.b64encode(b"\x02" + base64.b64decode(b64)[1:]).decode()
    with pytest.raises(ValueError, match="Ed25519"):
        verify_journal(path, [f"{name}+{kid}+{not_ed25519}"])
