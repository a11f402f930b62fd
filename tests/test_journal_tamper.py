"""The tamper corpus (issue 16, item 3): a real journal, every kind of damage generated from it,
and for every case `verify_journal` (what `keyrite verify` runs) refuses it and names the first
entry that does not hold.

The journal is written through `Journal` as a ceremony writes it: a genesis holding the roster,
steps, the coordinator's checkpoints, officers' cosignature records (`ceremony.records.
Cosignature`, C2SP cosignature/v1 by the seats' enrolled keys) after the checkpoints they cosign,
and a final checkpoint of the coordinator's alone over them:

    0 genesis, 1-5 steps, 6 checkpoint, 7-8 cosignatures of 6 (KSO1, KSO2), 9-12 steps,
    13 checkpoint, 14-19 steps, 20 checkpoint, 21-23 cosignatures of 20 (KGA1, SA1, KSO3),
    24-29 steps, 30 checkpoint, 31-34 cosignatures of 30 (KSO1, KSO2, DSO1, DSO2),
    35 checkpoint (final)

What cannot be told from the journal alone is checked the way docs/journal.md says it must be:
entries cut from the end against the final checkpoint kept apart (`checkpoint=`, as the
transcript prints it); a fork by whoever holds the coordinator's key by the officers'
cosignatures it cannot forge, and against a checkpoint kept apart. Each case that is not named
exactly says why in its test (a fork is bounded, never pinned).
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.records import Cosignature
from coordinator.journal import Journal, Report, verify_journal
from coordinator.journal import entry as entry_codec
from coordinator.journal.checkpoint import Checkpoint, cosign, cosigner_name
from coordinator.journal.merkle import tree_hash
from coordinator.journal.note import Signer, note_text, sign
from tests.machine_helpers import T0, private_key, roster

ORIGIN = "keyrite.test/tamper"
KEY = Ed25519PrivateKey.from_private_bytes(b"\x16" * 32)
SIGNER = Signer(ORIGIN, KEY)
VKEY = SIGNER.verifier().text()
CHECKPOINTS = (6, 13, 20, 30, 35)
COSIGNED = {6: ("KSO1", "KSO2"), 20: ("KGA1", "SA1", "KSO3"), 30: ("KSO1", "KSO2", "DSO1", "DSO2")}
FINAL = 35
N = FINAL + 1
KEYRITE = [sys.executable, "-m", "keyrite.cli"]


def cosignature(note: str, seat: str, at: float) -> dict[str, object]:
    """The record the coordinator journals for a seat's cosignature of `note`."""
    cp = Checkpoint.parse(note_text(note))
    line = cosign(note_text(note), cosigner_name(ORIGIN, seat), private_key(seat), int(at))
    return Cosignature(at=at, seat=seat, size=cp.size, root=base64.b64encode(cp.root).decode(),
                       signature=line).to_dict()


def build(path: Path) -> list[str]:
    """The journal above; returns the checkpoints' notes, by seq."""
    genesis = {"type": "genesis", "at": "2026-12-08T09:00:00Z", "ceremony": "KSK-TAMPER",
               "roster": roster().to_dict()}
    notes: dict[int, str] = {}
    with mock.patch.object(os, "fsync"), Journal.create(path, KEY, ORIGIN, ORIGIN,
                                                        genesis) as j:
        step = 0
        while j.size < N:
            at = T0 + j.size
            if j.size in CHECKPOINTS:
                seq = j.size
                notes[seq] = j.checkpoint(f"2026-12-08T09:{seq:02d}:00Z")
                for seat in COSIGNED.get(seq, ()):
                    j.append(cosignature(notes[seq], seat, at))
            else:
                step += 1
                j.append({"type": "step.done", "at": at, "step": step, "note": f"étape {step}"})
    assert sorted(notes) == list(CHECKPOINTS)
    return [notes.get(i, "") for i in range(N)]


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[str]]:
    path = tmp_path_factory.mktemp("tamper") / "journal.jsonl"
    notes = build(path)
    data = path.read_bytes()
    assert data.count(b"\n") == N
    report = verify_journal(path, [VKEY])
    assert report.ok, report.summary()
    assert (report.entries, report.checkpoints, report.unsigned) == (N, len(CHECKPOINTS), 0)
    return data, notes


def lines_of(data: bytes) -> list[bytes]:
    return data[:-1].split(b"\n")


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def relink(lines: list[bytes], start: int) -> list[bytes]:
    """Every seq renumbered and every prev recomputed from `start` on, as a forger would."""
    out = list(lines)
    for i in range(max(start, 1), len(out)):
        _, _, record = entry_codec.decode(out[i])
        out[i] = entry_codec.encode(i, entry_codec.line_hash(out[i - 1]), record)
    return out


def record_of(line: bytes) -> dict[str, object]:
    return entry_codec.decode(line)[2]


def with_record(lines: list[bytes], seq: int, record: dict[str, object]) -> list[bytes]:
    out = list(lines)
    _, prev, _ = entry_codec.decode(out[seq])
    out[seq] = entry_codec.encode(seq, prev, record)
    return out


def resign_from(lines: list[bytes], start: int, signer: Signer = SIGNER) -> list[bytes]:
    """Relink from `start`, and sign every checkpoint from there on again over the tree as it
    now is: what whoever holds the coordinator's key can do."""
    out = relink(lines, start)
    for i in range(max(start, 1), len(out)):
        record = record_of(out[i])
        if record.get("type") == "checkpoint":
            cp = Checkpoint(ORIGIN, i, tree_hash(out[:i]))
            out = relink(with_record(out, i, {**record, "note": sign(cp.body(), [signer])}), i)
    return out


class Verdicts:
    """Runs cases and collects every one that verify does not refuse, or names wrongly."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.wrong: list[str] = []
        self.count = 0

    def verify(self, data: bytes, **kw: object) -> Report:
        self.path.write_bytes(data)
        return verify_journal(self.path, [VKEY], **kw)  # type: ignore[arg-type]

    def named(self, case: str, data: bytes, seq: int, kind: str | None = None,
              **kw: object) -> Report:
        """The journal must not verify, and the first entry it names must be `seq`."""
        self.count += 1
        report = self.verify(data, **kw)
        p = report.problem
        if report.ok or p is None:
            self.wrong.append(f"{case}: NOT DETECTED ({report.summary()})")
        elif p.seq != seq or p.line != seq + 1 or (kind is not None and p.kind != kind):
            self.wrong.append(f"{case}: named entry {p.seq} ({p.kind}), not {seq}"
                              f"{'' if kind is None else f' ({kind})'}: {p.reason}")
        elif f"entry {seq} (line {seq + 1})" not in report.summary() and p.kind != "unsigned":
            self.wrong.append(f"{case}: the summary does not name entry {seq}: "
                              f"{report.summary()}")
        return report

    def check(self) -> None:
        assert self.count > 0
        assert not self.wrong, f"{len(self.wrong)} of {self.count} cases:\n" + "\n".join(
            self.wrong[:40])


@pytest.fixture
def verdicts(tmp_path: Path) -> Iterator[Verdicts]:
    v = Verdicts(tmp_path / "copy.jsonl")
    yield v
    v.check()


# -- single-byte flips, in every entry ---------------------------------------------------------


def _span(line: bytes, start: bytes, end: bytes) -> tuple[int, int]:
    i = line.index(start) + len(start)
    return i, line.index(end, i)


def flip_positions(seq: int, line: bytes) -> dict[str, int]:
    """Where to flip a byte of entry `seq`'s line: its first and last byte, its middle, three
    places in its `prev` value, and inside the values a forger would aim at: a checkpoint's root
    and signature in its note, a cosignature's root and signature, the genesis's key."""
    at = {"first": 0, "middle": len(line) // 2, "last": len(line) - 1,
          "prev[0]": 9, "prev[31]": 9 + 31, "prev[63]": 9 + 63}
    record = record_of(line)
    if record.get("type") == "checkpoint":
        lo, hi = _span(line, b'"note":"', b'","type"')
        note = line[lo:hi]
        sig = note.rindex("— ".encode())
        root = note.index(b"\\n", note.index(b"\\n") + 2) + 2  # after origin and size
        at |= {"note": lo + len(note) // 2, "note root": lo + root + 5,
               "note signature": lo + sig + len(note[sig:]) // 2}
        if seq == FINAL:  # the final line's middle is its note's (its `at` is vouched by nothing)
            at["middle"] = at["note"]
    elif record.get("type") == "cosignature":
        for field in ("root", "signature"):
            lo, hi = _span(line, f'"{field}":"'.encode(), b'"')
            at[f"cosignature {field}"] = (lo + hi) // 2
    elif seq == 0:
        lo, hi = _span(line, b'"vkey":"', b'"')
        at["genesis vkey"] = (lo + hi) // 2
    return at


def test_a_flipped_byte_anywhere_in_any_entry_names_that_entry(journal, verdicts) -> None:
    data, _ = journal
    lines = lines_of(data)
    start = 0
    for seq, line in enumerate(lines):
        for where, i in flip_positions(seq, line).items():
            for xor in (0x01, 0x20, 0x80):
                flipped = bytearray(data)
                flipped[start + i] ^= xor
                verdicts.named(f"entry {seq}, {where} byte ^ {xor:#04x}", bytes(flipped), seq)
        start += len(line) + 1
    assert verdicts.count > N * 6 * 3


def test_a_flip_in_the_last_entrys_prev_is_blamed_on_it_not_on_the_entry_before(
        journal, verdicts) -> None:
    """Nothing follows the final entry to say which side of a broken link changed, but it is a
    checkpoint: its signed root covers the entry before it as that entry is, so its own prev
    was altered."""
    data, _ = journal
    lines = lines_of(data)
    _, prev, record = entry_codec.decode(lines[FINAL])
    lines[FINAL] = entry_codec.encode(FINAL, ("1" if prev[0] != "1" else "2") + prev[1:], record)
    report = verdicts.named("final prev", joined(lines), FINAL, "link")
    assert report.problem is not None and "signs as it is" in report.problem.reason


# -- truncations -----------------------------------------------------------------------------


def test_a_truncated_journal_names_its_first_missing_entry(journal, verdicts) -> None:
    """Cut at every line end and at three places inside every line. A cut inside a line leaves a
    torn tail, named alone; a cut at a line end leaves a shorter journal that holds on its own
    (docs/journal.md, "What verify cannot tell alone"), and the final checkpoint kept apart
    names the first entry missing. The one cut neither shows is the final checkpoint's own line:
    the note kept apart is that line's content."""
    data, notes = journal
    final = notes[FINAL]
    offset = 0
    for seq, line in enumerate(lines_of(data)):
        for cut in (offset, offset + 1, offset + len(line) // 2, offset + len(line)):
            if cut == 0:
                verdicts.named("cut to nothing", b"", 0, "empty")
                continue
            kept = data[:cut]
            complete = kept.count(b"\n")
            if cut != offset:  # inside a line: a torn tail, named by where it starts
                verdicts.named(f"cut at byte {cut} (entry {seq})", kept, complete, "torn")
            if complete == FINAL:  # inside the final line: the kept note covers all before it
                continue
            report = verdicts.verify(kept, checkpoint=final)
            verdicts.count += 1
            against = report.against
            assert against is not None
            missing = "entry 34" if complete == 34 else f"entries {complete} to 34"
            if against.outcome != "short" or f"{missing} missing" not in against.reason:
                verdicts.wrong.append(f"cut at byte {cut}: {against.summary()}")
        offset += len(line) + 1
    report = verdicts.verify(joined(lines_of(data)[:FINAL]), checkpoint=final)
    assert report.ok  # the final checkpoint's own line, see above


def test_a_cut_before_the_first_checkpoint_is_unsigned_with_a_key(journal, verdicts) -> None:
    data, _ = journal
    for keep in range(1, 7):
        verdicts.named(f"kept {keep}", joined(lines_of(data)[:keep]), keep, "unsigned")


# -- deleted, duplicated, reordered ----------------------------------------------------------


def test_every_deleted_entry_is_named(journal, verdicts) -> None:
    """The final entry aside: removing it is the cut at a line end above."""
    data, _ = journal
    for seq in range(FINAL):
        lines = lines_of(data)
        del lines[seq]
        report = verdicts.named(f"entry {seq} deleted", joined(lines), seq, "seq")
        assert report.problem is not None
        assert seq == 0 or f"entry {seq} deleted" in report.problem.reason


def test_every_duplicated_entry_is_named_where_the_copy_is(journal, verdicts) -> None:
    data, _ = journal
    for seq in range(N):
        for where in (seq + 1, N):  # right after it, and at the end
            lines = lines_of(data)
            lines.insert(where, lines[seq])
            report = verdicts.named(f"entry {seq} copied to {where}", joined(lines), where, "seq")
            assert report.problem is not None and f"copy of seq {seq}" in report.problem.reason


def test_every_swapped_pair_is_named(journal, verdicts) -> None:
    data, _ = journal
    for seq in range(N - 1):
        for other in (seq + 1, min(seq + 5, N - 1)):
            if other == seq:
                continue
            lines = lines_of(data)
            lines[seq], lines[other] = lines[other], lines[seq]
            verdicts.named(f"entries {seq} and {other} swapped", joined(lines), seq, "seq")


def test_reordered_entries_name_the_first_out_of_place(journal, verdicts) -> None:
    data, _ = journal
    rng = random.Random(16)
    for case in range(60):
        lines = lines_of(data)
        lo = rng.randrange(N - 1)
        hi = rng.randrange(lo + 2, N + 1)
        block = lines[lo:hi]
        while block == lines[lo:hi]:
            rng.shuffle(block)
        lines[lo:hi] = block
        first = next(i for i in range(N) if lines[i] != lines_of(data)[i])
        verdicts.named(f"shuffle {case} of {lo}..{hi - 1}", joined(lines), first, "seq")
    for seq in range(N - 1):  # one entry moved to the end
        lines = lines_of(data)
        lines.append(lines.pop(seq))
        verdicts.named(f"entry {seq} moved to the end", joined(lines), seq, "seq")


# -- checkpoints ---------------------------------------------------------------------------------


def _resigned_note(size: int, root: bytes, signer: Signer = SIGNER) -> str:
    return sign(Checkpoint(ORIGIN, size, root).body(), [signer])


def test_a_fork_two_checkpoints_of_one_size(journal, verdicts) -> None:
    """The key signs another body of the same size: in place of the journal's checkpoint (its
    root is not the entries'), and next to it (a second checkpoint of size 20)."""
    data, _ = journal
    lines = lines_of(data)
    other = list(lines)
    other[15] = entry_codec.encode(15, entry_codec.decode(other[15])[1],
                                   {**record_of(other[15]), "note": "another history"})
    forked = _resigned_note(20, tree_hash(other[:20]))
    record = {**record_of(lines[20]), "note": forked}
    for relinked in (False, True):
        out = with_record(lines, 20, record)
        out = relink(out, 21) if relinked else out
        verdicts.named(f"checkpoint 20 forked (relinked: {relinked})", joined(out), 20, "root")
    out = relink(lines[:21] + [entry_codec.encode(21, "0" * 64, record)] + lines[21:], 21)
    report = verdicts.named("a second checkpoint of size 20", joined(out), 21, "checkpoint")
    assert report.problem is not None and "two histories of one size" in report.problem.reason


def test_a_shrinking_checkpoint(journal, verdicts) -> None:
    """A checkpoint smaller than one before it: the note of checkpoint 13 again at 24 (as it was
    signed), or signed afresh in place of the final one."""
    data, notes = journal
    lines = lines_of(data)
    old = {**record_of(lines[13])}
    out = relink(lines[:24] + [entry_codec.encode(24, "0" * 64, old)] + lines[24:], 24)
    report = verdicts.named("checkpoint 13 again at 24", joined(out), 24, "checkpoint")
    assert report.problem is not None and "shrank" in report.problem.reason
    smaller = _resigned_note(20, tree_hash(lines[:20]))
    out = with_record(lines, FINAL, {**record_of(lines[FINAL]), "note": smaller})
    report = verdicts.named("final checkpoint of size 20", joined(out), FINAL, "checkpoint")
    assert report.problem is not None and "shrank" in report.problem.reason
    out = with_record(lines, FINAL, {**record_of(lines[FINAL]), "note": notes[30]})
    verdicts.named("final checkpoint replaced by the one at 30", joined(out), FINAL)


def test_a_checkpoint_from_an_unknown_key(journal, verdicts) -> None:
    data, _ = journal
    lines = lines_of(data)
    stranger = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x17" * 32))  # same name
    for seq in CHECKPOINTS:
        note = _resigned_note(seq, tree_hash(lines[:seq]), stranger)
        out = with_record(lines, seq, {**record_of(lines[seq]), "note": note})
        for relinked in (False, True):
            case = relink(out, seq + 1) if relinked else out
            verdicts.named(f"checkpoint {seq} by another key ({relinked})", joined(case), seq,
                           "untrusted")
    # the whole journal signed again by the stranger: its genesis is not the given key's
    out = list(lines)
    record = record_of(out[0])
    record["journal"] = {**record["journal"], "vkey": stranger.verifier().text()}
    out[0] = entry_codec.encode(0, "0" * 64, record)
    verdicts.named("every checkpoint by another key", joined(resign_from(out, 1, stranger)), 0,
                   "genesis")


def test_a_cosignature_over_another_body(journal, verdicts) -> None:
    """A seat's real signature, but over another checkpoint's text, filed as a cosignature of
    checkpoint 20: relinked (checkpoint 30 then fails too, later), and with every later
    checkpoint signed again by the coordinator's key (only the cosignature shows it)."""
    data, notes = journal
    lines = lines_of(data)
    seq = 22  # SA1's cosignature of checkpoint 20
    honest = record_of(lines[seq])
    forked = _resigned_note(20, tree_hash(lines[1:20] + lines[:1]))
    bodies = {"checkpoint 13's body": notes[13], "a forked checkpoint 20's body": forked}
    for what, body in bodies.items():
        line = cosign(note_text(body), cosigner_name(ORIGIN, "SA1"), private_key("SA1"), int(T0))
        bad = {**honest, "signature": line}
        out = with_record(lines, seq, bad)
        verdicts.named(f"cosignature over {what}, relinked", joined(relink(out, seq + 1)), seq,
                       "cosignature")
        verdicts.named(f"cosignature over {what}, re-signed", joined(resign_from(out, seq + 1)),
                       seq, "cosignature")
    # the forked checkpoint's own size and root, truly cosigned: of another history
    record = {**cosignature(forked, "SA1", T0)}
    out = resign_from(with_record(lines, seq, record), seq + 1)
    report = verdicts.named("a true cosignature of the forked body", joined(out), seq,
                            "cosignature")
    assert report.problem is not None and "another history" in report.problem.reason
    # signed by another seat's key, by a seat that is not in the roster, and at the end
    wrong_key = cosign(note_text(notes[20]), cosigner_name(ORIGIN, "SA1"), private_key("KSO1"),
                       int(T0))
    for what, record in (("another seat's key", {**honest, "signature": wrong_key}),
                         ("no seat", {**honest, "seat": "SA9"}),
                         ("a size no checkpoint has", {**honest, "size": 19})):
        out = resign_from(with_record(lines, seq, record), seq + 1)
        verdicts.named(f"cosignature by {what}", joined(out), seq, "cosignature")
    appended = lines + [entry_codec.encode(N, entry_codec.line_hash(lines[-1]),
                                           {**honest, "signature": wrong_key})]
    verdicts.named("a bad cosignature after the final checkpoint", joined(appended), N,
                   "cosignature")


def test_a_fork_by_the_key_holder(journal, verdicts) -> None:
    """Entry 9 rewritten and everything after it relinked and signed again with the coordinator's
    key: every rule the key can satisfy holds. The officers' cosignatures of checkpoint 20 cannot
    be made again, and are the first entries that do not hold; against checkpoint 13 kept
    apart, the fork is bounded by the copy's own checkpoint at 6 (docs/journal.md: a fork is
    bounded, not pinned)."""
    data, notes = journal
    lines = lines_of(data)
    out = with_record(lines, 9, {**record_of(lines[9]), "step": 99})
    out = resign_from(out, 10)
    report = verdicts.named("fork at 9, re-signed", joined(out), 21, "cosignature")
    assert report.problem is not None and "another history" in report.problem.reason
    against = verdicts.verify(joined(out), checkpoint=notes[13]).against
    assert against is not None and against.outcome == "forked"
    assert against.departs == (6, 12) and against.same_size is not None
    # without the cosignatures (the forger removes them, and renumbers), the kept checkpoint
    # alone tells. The copy departs at its entry 7 (where the cosignatures were); the bound, by
    # its own checkpoint at 11 that the key signed again, is 11 to 12, stated on the condition
    # that the key never signed two histories (which this forger did: docs/journal.md)
    bare = resign_from([x for x in out if record_of(x).get("type") != "cosignature"], 1)
    assert verdicts.verify(joined(bare)).ok
    against = verdicts.verify(joined(bare), checkpoint=notes[13]).against
    assert against is not None and against.outcome == "forked"
    first = next(i for i, (a, b) in enumerate(zip(bare, lines, strict=False)) if a != b)
    assert first == 7 and against.departs == (11, 12)
    assert "if that key signed no other history" in against.reason


# -- the command line --------------------------------------------------------------------------


def _cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYRITE, "verify", str(path), *args], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parent.parent)


def test_keyrite_verify_names_the_entry_and_never_crashes(journal, tmp_path: Path) -> None:
    data, notes = journal
    lines = lines_of(data)
    path = tmp_path / "j.jsonl"
    flipped = bytearray(data)
    flipped[len(lines[0]) + 1 + 9] ^= 0x01  # entry 1's prev
    cases = {
        "flip": (bytes(flipped), 1),
        "deleted": (joined(lines[:12] + lines[13:]), 12),
        "torn": (data[:-20], FINAL),
        "cosignature": (joined(relink(with_record(lines, 22, {**record_of(lines[22]),
                                                              "seat": "SA9"}), 23)), 22),
        "binary": (data[:100] + b"\xff\x00\n" + data[100:], 0),
    }
    for name, (content, seq) in cases.items():
        path.write_bytes(content)
        for extra in ((), ("--json",)):
            p = _cli(path, "--key", VKEY, *extra)
            assert p.returncode == 1, (name, p.returncode, p.stderr)
            assert "Traceback" not in p.stderr + p.stdout, name
            if extra:
                problem = json.loads(p.stdout)["problem"]
                assert (problem["seq"], problem["line"]) == (seq, seq + 1), (name, problem)
            else:
                assert f"entry {seq} (line {seq + 1}) does not hold" in p.stderr, (name, p.stderr)
    path.write_bytes(joined(lines[:20]))
    kept = tmp_path / "final.checkpoint"
    kept.write_text(notes[FINAL])
    p = _cli(path, "--key", VKEY, "--checkpoint", str(kept))
    assert p.returncode == 1 and "SHORT" in p.stderr and "entries 20 to 34 missing" in p.stderr
    for args in (("--key", "nonsense"), ("--checkpoint", str(tmp_path / "absent"))):
        p = _cli(path, *args)
        assert p.returncode == 2 and "Traceback" not in p.stderr, (args, p.stderr)
    p = _cli(tmp_path / "absent.jsonl")
    assert p.returncode == 2 and "Traceback" not in p.stderr
