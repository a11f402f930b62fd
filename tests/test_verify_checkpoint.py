"""`keyrite verify JOURNAL --checkpoint FILE`: a journal copy against a checkpoint kept apart.

The original journal (from `make_journal`): genesis 0, checkpoints at 5, 9 and 14 (each covering
the entries before it), 16 entries. Its checkpoint notes, written to files as printed, are what
an auditor would hold. The copies under test are that journal cut short, or forked: an entry
rewritten, every link after it recomputed and (for the careful forger who has the key) every
later checkpoint signed again, so that the copy verifies on its own and only the kept checkpoint
gives it away.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from coordinator.journal import entry as entry_codec
from coordinator.journal import generate_key, verifier_key, verify_journal
from coordinator.journal.checkpoint import Checkpoint
from coordinator.journal.merkle import tree_hash
from coordinator.journal.note import Signer, sign
from coordinator.journal.verify import BadCheckpointFile, read_checkpoint_file
from keyrite import cli, exits
from tests.test_journal import NAME, make_journal, read_lines, relink, write_lines

ROOT = Path(__file__).resolve().parent.parent
KEYRITE = [sys.executable, "-m", "keyrite.cli"]
CHECKPOINTS = (5, 9, 14)
N = 16


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture
def original(tmp_path: Path, key: Ed25519PrivateKey) -> list[bytes]:
    p = tmp_path / "original.journal"
    make_journal(p, key, n=N, checkpoints=CHECKPOINTS)
    return read_lines(p)


def note_at(lines: list[bytes], seq: int) -> str:
    record = json.loads(lines[seq])["record"]
    assert record["type"] == "checkpoint"
    return record["note"]


def kept(tmp_path: Path, note: str, name: str = "kept.checkpoint") -> Path:
    """A checkpoint note written to a file as printed."""
    p = tmp_path / name
    p.write_bytes(note.encode())
    return p


def copy_of(tmp_path: Path, lines: list[bytes], name: str = "copy.journal") -> Path:
    p = tmp_path / name
    write_lines(p, lines)
    return p


def rewrite(lines: list[bytes], seq: int, **changes: object) -> list[bytes]:
    out = list(lines)
    s, prev, record = entry_codec.decode(out[seq])
    out[seq] = entry_codec.encode(s, prev, {**record, **changes})
    return out


def fork(lines: list[bytes], at: int, signer: Signer | None) -> list[bytes]:
    """Entry `at` rewritten, every link after it recomputed and, with a signer, every
    checkpoint after it signed again over the new entries (one with the key can do this)."""
    out = relink(rewrite(lines, at, step=1000 + at), at + 1)
    if signer is None:
        return out
    for seq in range(at + 1, len(out)):
        _, _, record = entry_codec.decode(out[seq])
        if record.get("type") == "checkpoint":
            cp = Checkpoint(NAME, seq, tree_hash(out[:seq]))
            out = relink(rewrite(out, seq, note=sign(cp.body(), [signer])), seq + 1)
    return out


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- it holds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", CHECKPOINTS)
def test_the_journal_it_came_from_holds(tmp_path: Path, original, key, size: int,
                                        capsys) -> None:
    path, cp = copy_of(tmp_path, original), kept(tmp_path, note_at(original, size))
    for keys in ([], ["--key", verifier_key(NAME, key)]):
        code, out, err = run([str(path), "--checkpoint", str(cp), *keys], capsys)
        assert code == exits.OK, err
        lines = out.splitlines()
        assert len(lines) == 2 and err == ""
        assert f"{cp}: checkpoint ({size} entries) holds" in lines[1]
        assert f"entries 0 to {size - 1} are the {size} entries it signs" in lines[1]
        assert f"entries {size} to {N - 1} ({N - size} entries) not covered by it" in lines[1]
    report = verify_journal(path, checkpoint=note_at(original, size))
    assert report.ok and report.against is not None and report.against.holds
    assert report.against.not_covered == N - size


def test_a_copy_that_ends_where_the_checkpoint_does(tmp_path: Path, original, key,
                                                    capsys) -> None:
    """Cut right before the checkpoint entry: every entry is covered, and with --key the kept
    checkpoint is the signature the copy has none of its own of."""
    path, cp = copy_of(tmp_path, original[:5]), kept(tmp_path, note_at(original, 5))
    vkey = verifier_key(NAME, key)
    assert cli.main(["verify", str(path), "--key", vkey]) == exits.FAILED  # unsigned alone
    capsys.readouterr()
    code, out, err = run([str(path), "--key", vkey, "--checkpoint", str(cp)], capsys)
    assert code == exits.OK, err
    assert "every entry of the copy is covered by it" in out
    assert "no checkpoint of its own (the checkpoint given covers 5)" in out
    assert "0 entries covered by no checkpoint" in out


def test_printed_forms_of_the_note_are_read(tmp_path: Path, original, capsys) -> None:
    """CRLF line ends, no final newline, extra final newlines: outside the signed text."""
    path, note = copy_of(tmp_path, original), note_at(original, 9)
    for i, text in enumerate([note.replace("\n", "\r\n"), note.rstrip("\n"), note + "\n\n",
                              "\ufeff" + note]):
        cp = kept(tmp_path, text, f"cp{i}")
        assert cli.main(["verify", str(path), "--checkpoint", str(cp)]) == exits.OK
        assert read_checkpoint_file(cp) == note
    capsys.readouterr()


# -- cosignatures and other keys' signatures are ignored -----------------------------------------


def cosignature(name: str, witness: Ed25519PrivateKey, body: str, at: int) -> str:
    """A C2SP tlog-cosignature/v1 line (Ed25519, signature type 0x04)."""
    raw = witness.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = hashlib.sha256(name.encode() + b"\n\x04" + raw).digest()[:4]
    signed = f"cosignature/v1\ntime {at}\n".encode() + body.encode()
    sig = kid + at.to_bytes(8, "big") + witness.sign(signed)
    return f"— {name} {base64.b64encode(sig).decode()}\n"


def test_cosignatures_by_keys_not_known_are_ignored(tmp_path: Path, original, key,
                                                    capsys) -> None:
    note = note_at(original, 9)
    body = note[: note.index("\n\n") + 1]
    cosigned = (note + cosignature("witness.example/w1", generate_key(), body, 1679315147)
                + cosignature(NAME, generate_key(), body, 1679315148)  # same name, type 0x04
                + sign(body, [Signer("other.example/log", generate_key())]).split("\n\n")[1])
    path, cp = copy_of(tmp_path, original), kept(tmp_path, cosigned)
    code, out, err = run([str(path), "--checkpoint", str(cp), "--key",
                          verifier_key(NAME, key), "--json"], capsys)
    assert code == exits.OK, out
    against = json.loads(out)["checkpoint"]
    assert against["outcome"] == "holds" and len(against["ignored_signatures"]) == 3
    assert against["signed_by"] == [Signer(NAME, key).verifier().label()]
    code, out, _ = run([str(path), "--checkpoint", str(cp)], capsys)
    assert code == exits.OK and "ignored: signatures by keys not trusted" in out


# -- short ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("entries, size, missing", [
    (7, 9, "entries 7 to 8 missing"),
    (8, 9, "entry 8 missing"),
    (7, 14, "entries 7 to 13 missing"),
    (14, 14, None),  # exactly as long: holds
])
def test_a_copy_cut_short(tmp_path: Path, original, key, entries: int, size: int,
                          missing: str | None, capsys) -> None:
    path = copy_of(tmp_path, original[:entries])
    cp = kept(tmp_path, note_at(original, size))
    code, out, err = run([str(path), "--checkpoint", str(cp), "--key",
                          verifier_key(NAME, key)], capsys)
    if missing is None:
        assert code == exits.OK, err
        return
    assert code == exits.FAILED
    assert "ok:" in out  # the copy alone is a good journal: only the checkpoint shows the cut
    assert err.count("\n") == 1
    assert f"the copy is SHORT: it stops at entry {entries - 1}; the checkpoint covers " \
        f"{size} entries (0 to {size - 1}): {missing}" in err
    report = verify_journal(path, checkpoint=note_at(original, size))
    assert report.journal_ok and not report.ok
    assert report.against is not None and report.against.outcome == "short"


def test_an_empty_copy_and_a_torn_one_are_short(tmp_path: Path, original, key,
                                                capsys) -> None:
    cp = kept(tmp_path, note_at(original, 9))
    vkey = verifier_key(NAME, key)
    empty = tmp_path / "empty.journal"
    empty.write_bytes(b"")
    code, _, err = run([str(empty), "--checkpoint", str(cp), "--key", vkey], capsys)
    assert code == exits.FAILED and "it has no entries" in err
    torn = copy_of(tmp_path, original[:9], "torn.journal")
    torn.write_bytes(torn.read_bytes()[:-20])  # the last line (entry 8) torn
    code, _, err = run([str(torn), "--checkpoint", str(cp), "--key", vkey], capsys)
    assert code == exits.FAILED
    assert "torn" in err and "it stops at entry 7" in err and "entry 8 missing" in err


# -- forked ----------------------------------------------------------------------------------------


def test_a_fork_signed_again_with_the_key(tmp_path: Path, original, key, capsys) -> None:
    """Entry 7 rewritten, links recomputed, checkpoints 9 and 14 signed again: the copy verifies
    on its own, even with --key; the kept checkpoint of size 9 does not hold."""
    copy = fork(original, 7, Signer(NAME, key))
    path = copy_of(tmp_path, copy)
    vkey = verifier_key(NAME, key)
    assert verify_journal(path, [vkey]).ok  # the forger's copy is self-consistent
    cp = kept(tmp_path, note_at(original, 9))
    code, out, err = run([str(path), "--checkpoint", str(cp), "--key", vkey], capsys)
    assert code == exits.FAILED
    assert "ok:" in out
    assert "the copy has FORKED: the root of its entries 0 to 8 is not the checkpoint's" in err
    assert "its own checkpoint at entry 9 covers the same 9 entries with another root" in err
    assert "the key signed two histories" in err
    assert "its own checkpoint at entry 5" in err and "one of entries 5 to 8" in err
    report = verify_journal(path, [vkey], checkpoint=note_at(original, 9))
    against = report.against
    assert against is not None and against.outcome == "forked"
    assert against.departs == (5, 8)
    assert against.same_size is not None and against.same_size.seq == 9
    assert against.same_size.checkpoint.root != Checkpoint.parse(
        note_at(original, 9).split("\n\n")[0] + "\n").root


def test_the_bound_is_only_as_good_as_the_key(tmp_path: Path, original, key) -> None:
    """The same fork against the kept checkpoint of size 14: its own checkpoint at 9 was signed
    again too, so the bound it gives (9 to 13) misses entry 7, and says on what it depends."""
    path = copy_of(tmp_path, fork(original, 7, Signer(NAME, key)))
    against = verify_journal(path, checkpoint=note_at(original, 14)).against
    assert against is not None and against.outcome == "forked"
    assert against.departs == (9, 13)
    assert "if that key signed no other history of those" in against.reason
    assert against.same_size is not None and against.same_size.seq == 14


def test_a_fork_before_every_checkpoint_of_its_own(tmp_path: Path, original, key) -> None:
    path = copy_of(tmp_path, fork(original, 2, Signer(NAME, key)))
    against = verify_journal(path, checkpoint=note_at(original, 5)).against
    assert against is not None and against.departs == (0, 4)
    assert "no checkpoint of its own before entry 5 narrows down where it departs: one of " \
        "entries 0 to 4" in against.reason


def test_a_fork_whose_own_checkpoints_all_cover_more(tmp_path: Path, original, key) -> None:
    """A kept checkpoint of a size the journal has no checkpoint entry for (7): the copy's
    checkpoint at 9, signed again, commits to the other history."""
    signer = Signer(NAME, key)
    note = sign(Checkpoint(NAME, 7, tree_hash(original[:7])).body(), [signer])
    path = copy_of(tmp_path, fork(original, 6, signer))
    against = verify_journal(path, checkpoint=note).against
    assert against is not None and against.outcome == "forked"
    assert against.same_size is None and against.later is not None and against.later.seq == 9
    assert "its own checkpoint at entry 9 (covering 9 entries)" in against.reason
    assert against.departs == (5, 6)


def test_a_fork_without_the_key(tmp_path: Path, original, key, capsys) -> None:
    """Links recomputed, checkpoints left as they were: the copy's own checkpoint at 9 fails,
    and the kept one bounds the fork by the checkpoint at 5, the last that held."""
    path = copy_of(tmp_path, fork(original, 7, None))
    cp = kept(tmp_path, note_at(original, 14))
    code, out, err = run([str(path), "--checkpoint", str(cp)], capsys)
    assert code == exits.FAILED and out == ""
    first, second = err.splitlines()
    assert "entry 9 (line 10) does not hold" in first
    assert "FORKED" in second and "one of entries 5 to 13" in second
    assert "same" not in second


def test_a_fork_departing_at_the_entry_right_after_a_checkpoint(tmp_path: Path, original,
                                                                key) -> None:
    """Checkpoints at 5 and at 6 (a checkpoint entry is itself an entry): the kept checkpoint
    of size 6 names entry 5 alone."""
    signer = Signer(NAME, key)
    lines = list(original[:6])
    cp6 = sign(Checkpoint(NAME, 6, tree_hash(lines)).body(), [signer])
    forged = rewrite(lines, 5, at="2026-03-01T10:00:01Z")  # the checkpoint entry's own time
    path = copy_of(tmp_path, forged)
    against = verify_journal(path, checkpoint=cp6).against
    assert against is not None and against.departs == (5, 5)
    assert "it departs at entry 5" in against.reason


# -- checkpoints that do not hold for other reasons ---------------------------------------------


def test_a_checkpoint_by_another_key(tmp_path: Path, original, key, capsys) -> None:
    path = copy_of(tmp_path, original)
    forger = Signer(NAME, generate_key())  # the same name, another key
    note = sign(Checkpoint(NAME, 9, tree_hash(original[:9])).body(), [forger])
    cp = kept(tmp_path, note)
    for keys in ([], ["--key", verifier_key(NAME, key)]):
        code, _, err = run([str(path), "--checkpoint", str(cp), *keys], capsys)
        assert code == exits.FAILED
        assert "not signed by a trusted key" in err


def test_a_checkpoint_whose_signature_was_altered(tmp_path: Path, original, capsys) -> None:
    note = note_at(original, 9)
    body, sigline = note.split("\n\n")
    name, sig = sigline[2:].rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 1
    cp = kept(tmp_path, f"{body}\n\n— {name} {base64.b64encode(bytes(raw)).decode()}\n")
    code, _, err = run([str(copy_of(tmp_path, original)), "--checkpoint", str(cp)], capsys)
    assert code == exits.FAILED and "does not verify" in err


def test_a_checkpoint_of_another_log(tmp_path: Path, original, key, capsys) -> None:
    note = sign(Checkpoint("other.example/log", 9, tree_hash(original[:9])).body(),
                [Signer(NAME, key)])
    code, _, err = run([str(copy_of(tmp_path, original)), "--checkpoint",
                        str(kept(tmp_path, note))], capsys)
    assert code == exits.FAILED and "a checkpoint of 'other.example/log'" in err


def test_no_key_to_trust(tmp_path: Path, original, capsys) -> None:
    """The genesis does not hold and no --key: nothing to check the signature with."""
    lines = list(original)
    lines[0] = lines[0].replace(b'"journal":{', b'"journal_":{')
    code, _, err = run([str(copy_of(tmp_path, lines)), "--checkpoint",
                        str(kept(tmp_path, note_at(original, 9)))], capsys)
    assert code == exits.FAILED
    assert "entry 0 (line 1)" in err and "no key to check its signature with" in err


# -- malformed checkpoint files: exit 2 -----------------------------------------------------------


BAD_FILES = {
    "empty": b"",
    "no blank line": b"keyrite.example/ksk-2026\n9\nAAAA\n",
    "not UTF-8": b"\xff\xfe\n\n\xe2\x80\x94 x AAAA\n",
    "not a checkpoint": "some text\n\n— keyrite.example/ksk-2026 AAAAAAAAAA==\n".encode(),
    "a bad size": f"o\n09\n{'A' * 43}=\n\n— o AAAAAAAAAA==\n".encode(),
    "a short root": "o\n9\nAAAA\n\n— o AAAAAAAAAA==\n".encode(),
    "no em dash": f"o\n9\n{'A' * 43}=\n\n- o AAAAAAAAAA==\n".encode(),
    "a signature not base64": "o\n9\nAAAA\n\n— o !!!\n".encode(),
    "a control character": "o\x01\n9\nAAAA\n\n— o AAAAAAAAAA==\n".encode(),
    "a journal line": b'{"prev":"00","record":{"note":"x"},"seq":9}\n',
    "too large": b"o\n" * 40000,
}


@pytest.mark.parametrize("what", sorted(BAD_FILES))
def test_a_malformed_checkpoint_file_exits_2(tmp_path: Path, original, what: str,
                                             capsys) -> None:
    cp = tmp_path / "bad.checkpoint"
    cp.write_bytes(BAD_FILES[what])
    path = copy_of(tmp_path, original)
    code, out, err = run([str(path), "--checkpoint", str(cp)], capsys)
    assert code == exits.BAD_INPUT, err
    assert out == "" and "keyrite verify: " in err and str(cp) in err
    assert "Traceback" not in err
    code, out, _ = run([str(path), "--checkpoint", str(cp), "--json"], capsys)
    assert code == exits.BAD_INPUT
    report = json.loads(out)
    assert report["ok"] is False and str(cp) in report["error"]


@pytest.mark.parametrize("which", ["missing", "directory"])
def test_an_unreadable_checkpoint_file_exits_2(tmp_path: Path, original, which: str,
                                               capsys) -> None:
    cp = tmp_path / "nope" if which == "missing" else tmp_path
    code, _, err = run([str(copy_of(tmp_path, original)), "--checkpoint", str(cp)], capsys)
    assert code == exits.BAD_INPUT
    assert f"cannot read checkpoint file {cp}" in err
    with pytest.raises(BadCheckpointFile):
        read_checkpoint_file(cp)


def test_no_damage_to_the_checkpoint_file_is_a_traceback(tmp_path: Path, original,
                                                         capsys) -> None:
    """Every byte of the note flipped, every length cut: exit 0, 1 or 2, never 3."""
    path = copy_of(tmp_path, original)
    data = note_at(original, 9).encode()
    cp = tmp_path / "damaged.checkpoint"
    codes: set[int] = set()
    for i in range(len(data)):
        for damaged in (data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:], data[:i]):
            cp.write_bytes(damaged)
            codes.add(cli.main(["verify", str(path), "--checkpoint", str(cp)]))
            assert "Traceback" not in capsys.readouterr().err
    assert codes <= {exits.OK, exits.FAILED, exits.BAD_INPUT}
    assert {exits.FAILED, exits.BAD_INPUT} <= codes


# -- --json and the real command line -----------------------------------------------------------


def test_json_includes_the_outcome(tmp_path: Path, original, key, capsys) -> None:
    path = copy_of(tmp_path, fork(original, 7, Signer(NAME, key)))
    cp = kept(tmp_path, note_at(original, 9))
    code, out, _ = run([str(path), "--checkpoint", str(cp), "--json"], capsys)
    assert code == exits.FAILED
    report = json.loads(out)
    assert report["ok"] is False and report["problem"] is None
    against = report["checkpoint"]
    assert against["ok"] is False and against["outcome"] == "forked"
    assert (against["size"], against["entries"], against["origin"]) == (9, N, NAME)
    assert against["departs"] == {"from": 5, "to": 8}
    assert against["bounded_by"]["seq"] == 5
    assert against["same_size_checkpoint"]["seq"] == 9
    assert against["same_size_checkpoint"]["root"] != against["root"]
    assert against["not_covered"] is None
    code, out, _ = run([str(copy_of(tmp_path, original, "orig.journal")), "--checkpoint",
                        str(cp), "--json"], capsys)
    assert code == exits.OK
    against = json.loads(out)["checkpoint"]
    assert against["outcome"] == "holds" and against["not_covered"] == N - 9
    assert against["departs"] is None
    code, out, _ = run([str(copy_of(tmp_path, original, "plain.journal")), "--json"], capsys)
    assert "checkpoint" not in json.loads(out)  # unchanged without --checkpoint


def test_the_command_line_in_a_subprocess(tmp_path: Path, original, key) -> None:
    cp = kept(tmp_path, note_at(original, 9))
    short = copy_of(tmp_path, original[:7], "short.journal")
    forked = copy_of(tmp_path, fork(original, 7, Signer(NAME, key)), "forked.journal")
    whole = copy_of(tmp_path, original, "whole.journal")
    vkey = verifier_key(NAME, key)

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*KEYRITE, "verify", str(path), "--key", vkey, "--checkpoint",
                               str(cp)], cwd=ROOT, capture_output=True, text=True, timeout=60)

    p = verify(whole)
    assert p.returncode == exits.OK, p.stderr
    assert "holds" in p.stdout
    p = verify(short)
    assert p.returncode == exits.FAILED and "Traceback" not in p.stderr
    assert "the copy is SHORT: it stops at entry 6" in p.stderr
    p = verify(forked)
    assert p.returncode == exits.FAILED and "Traceback" not in p.stderr
    assert "the copy has FORKED" in p.stderr and "two histories" in p.stderr


def test_a_file_name_that_is_not_utf8_is_printed_not_a_traceback(tmp_path: Path,
                                                                 original) -> None:
    name = os.fsdecode(b"copy-\xff.journal")
    path = copy_of(tmp_path, original, name)
    cp = kept(tmp_path, note_at(original, 9), os.fsdecode(b"cp-\xfe"))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    for extra in ([], ["--json"]):
        p = subprocess.run([*KEYRITE, "verify", str(path), "--checkpoint", str(cp), *extra],
                           cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == exits.OK, p.stderr
        assert "Traceback" not in p.stderr
        if extra:
            assert json.loads(p.stdout)["checkpoint"]["outcome"] == "holds"
        else:
            assert "copy-\\xff.journal: ok" in p.stdout


def test_the_documented_lines_are_what_it_prints(tmp_path: Path) -> None:
    """docs/journal.md's holds, short and forked lines, rebuilt with the docs' example key."""
    doc = (ROOT / "docs" / "journal.md").read_text()
    documented = [line for line in doc.splitlines() if line.startswith("at-9.checkpoint: ")]
    assert len(documented) == 3
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"keyrite docs example").digest())
    make_journal(tmp_path / "original.journal", key, n=N, checkpoints=CHECKPOINTS)
    original = read_lines(tmp_path / "original.journal")
    note = note_at(original, 9)
    printed = []
    for lines in (original, original[:7], fork(original, 7, Signer(NAME, key))):
        against = verify_journal(copy_of(tmp_path, lines), checkpoint=note,
                                 checkpoint_name="at-9.checkpoint").against
        assert against is not None
        printed.append(against.summary())
    assert printed == documented
