"""Continuity from the previous ceremony's journal (issue 13 item 6).

The previous ceremony's record (the facts a script checks as `previous.KEY`) is read from that
ceremony's journal: verified with its checkpoint key first, then folded into a machine built from
its own genesis (`ceremony.previous.read_previous`). `keyrite rehearse --previous JOURNAL
--previous-key VKEY` continues on the previous rehearsal's token, `keyrite record export` writes
the hand-typed TOML, and the live coordinator takes `previous_journal` and `previous_key`.

The journal of record (tests/data, a small rehearsal of 2026-12-07) is the previous journal where
nothing has to run; two full small rehearsals (the first, and a second continuing from it) and
one stopped at step 28 are the only ones run.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ceremony.previous import FACTS, read_previous
from ceremony.script import bundled_script_path
from coordinator.journal import Journal
from coordinator.live.config import CoordinatorConfig
from coordinator.live.serve import load_previous
from coordinator.record_command import load_previous_journal
from keyrite import cli
from keyrite.exits import BadInput
from keyrite.keyfiles import load_private_key
from tests.rehearsal_helpers import rehearse, rehearse_json

DATA = Path(__file__).resolve().parent / "data"
JOURNAL = DATA / "rehearsal-journal-2026-12-07.jsonl"
KEY = (DATA / "rehearsal-journal-2026-12-07.key").read_text().strip()


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def records_of(path: Path) -> list[tuple[int, dict[str, Any]]]:
    return [(e["seq"], e["record"]) for e in lines_of(path)]


def events_at(path: Path, step: int, kind: str) -> list[dict[str, Any]]:
    return [e["record"]["event"] for e in lines_of(path)
            if e["record"].get("type") == "event" and e["record"]["event"]["event"] == kind
            and e["record"]["event"].get("step", e["record"].get("step")) == step]


# --- reading the facts (pure) -------------------------------------------------------------------

def test_the_facts_of_the_journal_of_record() -> None:
    p = read_previous(records_of(JOURNAL))
    assert (p.ceremony, p.status, p.steps_completed, p.steps_total) == (
        "second-key-generation", "completed", 132, 132)
    assert list(p.record) == list(FACTS)
    # what the journal itself says, read independently of the fold
    fingerprint = events_at(JOURNAL, 27, "Performed")[-1]["result"]["fingerprint"]
    final_count = events_at(JOURNAL, 34, "Performed")[-1]["result"]["count"]
    host_key = events_at(JOURNAL, 25, "Observed")[-1]["value"]
    livecd = events_at(JOURNAL, 16, "Observed")[-1]["value"]
    backup = events_at(JOURNAL, 43, "Performed")[-1]["result"]
    transcript = events_at(JOURNAL, 115, "Performed")[-1]["result"]
    assert p.record == {"livecd_sha256": livecd, "signer_host_key": host_key,
                        "hsm_fingerprint": fingerprint, "key_count": str(final_count),
                        "backup_sha256": backup["sha256"],
                        "backup_file": backup["file"].rpartition("/")[2],
                        "transcript_sha256": transcript["sha256"],
                        "transcript_file": "transcript-20261207.txt"}
    assert p.record["key_count"] == "10"  # 6 found, 2 purged, 6 generated
    assert p.sources["hsm_fingerprint"] == "step 27 (hsm.fingerprint)"
    assert p.sources["key_count"] == "step 34 (hsm.list)"
    # the same HSM as its own previous record (the rehearsal made the token it checked)
    genesis = lines_of(JOURNAL)[0]["record"]
    assert p.record["hsm_fingerprint"] == genesis["previous"]["hsm_fingerprint"]
    # custody: every bag still held at the end, with the serials read off the drives inside
    held = {h.bag: h for h in p.custody}
    assert sorted(held) == ["albany", "auckland", "keygen-log", "master-copy", "wellington"]
    log = held["keygen-log"]
    assert (log.custodian, log.step, log.contents) == ("KSO1", 130,
                                                       ("drive:keygen-log", "transcript"))
    inserted = {e["step"]: e["result"]["serial"] for e in
                (r["record"]["event"] for r in lines_of(JOURNAL)
                 if r["record"].get("type") == "event"
                 and r["record"]["event"]["event"] == "Performed")
                if "serial" in e.get("result", {})}
    assert log.drives["keygen-log"] in inserted.values()
    assert "drive keygen-log (serial " in log.describe() and "held by Officer C (KSO1)" in \
        log.describe()


def test_a_fact_the_journal_never_observed_is_absent_not_guessed() -> None:
    records = records_of(JOURNAL)

    def upto(step: int) -> list[tuple[int, dict[str, Any]]]:
        """The records until `step` is the current one (its own events left out)."""
        out = []
        for seq, r in records:
            if r.get("type") == "event" and r.get("step") is not None and r["step"] >= step:
                break
            out.append((seq, r))
        return out

    before_hsm = read_previous(upto(27))
    assert before_hsm.status == "running"
    assert "hsm_fingerprint" not in before_hsm.record and "key_count" not in before_hsm.record
    assert before_hsm.lacks(["livecd_sha256", "hsm_fingerprint"]) == ["hsm_fingerprint"]
    # a purge after the count was verified: the count seen is no longer the HSM's
    after_purge = read_previous(upto(32))
    assert "key_count" not in after_purge.record
    after_list = read_previous(upto(33))
    assert after_list.record["key_count"] == "4"


def test_a_journal_not_beginning_with_a_genesis_is_refused() -> None:
    with pytest.raises(BadInput, match="not a ceremony genesis"):
        read_previous(records_of(JOURNAL)[1:])


# --- keyrite record export ----------------------------------------------------------------------

def test_export_writes_the_hand_typed_keys_and_the_custody_as_comments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "previous-record.toml"
    assert cli.main(["record", "export", str(JOURNAL), "--key", KEY, "-o", str(out)]) == 0
    text = out.read_text()
    record = tomllib.loads(text)
    assert record == read_previous(records_of(JOURNAL)).record
    assert list(record) == list(FACTS)
    assert "# verified with key keyrite.rehearsal/second-key-generation/" in text
    assert "#   bag master-copy serial " in text and "held by Officer C (KSO1)" in text
    # a paper record is never overwritten
    capsys.readouterr()
    assert cli.main(["record", "export", str(JOURNAL), "--key", KEY, "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    # without --key, to standard output, saying whose key it trusted
    assert cli.main(["record", "export", str(JOURNAL)]) == 0
    shown = capsys.readouterr().out
    assert tomllib.loads(shown) == record
    assert "(the key its genesis announces: not who wrote it)" in shown


def altered(tmp_path: Path) -> Path:
    """The journal of record with one byte changed: step 34's count 10 becomes 11."""
    data = JOURNAL.read_bytes()
    i = data.index(b'"count":10')
    changed = tmp_path / "altered.jsonl"
    changed.write_bytes(data[:i + 9] + b"1" + data[i + 10:])
    assert len(changed.read_bytes()) == len(data)
    return changed


def test_export_refuses_a_journal_altered_by_one_byte(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["record", "export", str(altered(tmp_path)), "--key", KEY]) == 2
    err = capsys.readouterr().err
    assert "the previous journal does not verify" in err and "does not hold" in err


def test_a_journal_that_did_not_complete_is_no_previous_record(tmp_path: Path) -> None:
    """Cut at an earlier checkpoint, the journal still verifies, but its ceremony never ended."""
    lines = JOURNAL.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:50]))  # line 50 is a checkpoint mid-ceremony
    assert json.loads(lines[49])["record"]["type"] == "checkpoint"
    with pytest.raises(BadInput, match="did not complete"):
        load_previous_journal(cut, KEY)


# --- keyrite rehearse --previous: refused before anything is made --------------------------------

@pytest.mark.parametrize("case", ["altered", "malformed key", "no key", "lacking"])
def test_rehearse_refuses_a_previous_journal_with_exit_2_and_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    journal, key, script = JOURNAL, KEY, []
    if case == "altered":
        journal = altered(tmp_path)
    if case == "malformed key":
        key = "not-a-key"
    if case == "lacking":  # a script that needs a fact no journal observes
        text = bundled_script_path().read_text().replace(
            'previous = ["livecd_sha256", "signer_host_key", "hsm_fingerprint", "key_count"]',
            'previous = ["livecd_sha256", "signer_host_key", "hsm_fingerprint", "key_count", '
            '"hsm_serial"]')
        assert "hsm_serial" in text
        (tmp_path / "needs-more.toml").write_text(text)
        script = [str(tmp_path / "needs-more.toml")]
    work = tmp_path / "r"
    args = ["rehearse", *script, "--workdir", str(work), "--fixture", "small",
            "--previous", str(journal)] + ([] if case == "no key" else ["--previous-key", key])
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert {
        "altered": "the previous journal does not verify: ",
        "malformed key": "--previous-key: verifier key 'not-a-key' is not",
        "no key": "--previous-key VKEY is missing",
        "lacking": "the previous journal lacks hsm_serial, which the script's [ceremony] "
                   "previous needs",
    }[case] in err
    assert not work.exists()  # refused before anything was made


@pytest.mark.parametrize("args, why", [
    (["--token", "somewhere"], "--token goes with --previous JOURNAL"),
    (["--previous-key", KEY], "--previous-key goes with --previous JOURNAL"),
])
def test_the_previous_options_go_together(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], why: str) -> None:
    assert cli.main(["rehearse", "--workdir", str(tmp_path / "r"), *args]) == 2
    assert why in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resume_continues_with_what_the_rehearsal_was_started_with(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "r"
    work.mkdir()
    (work / "rehearsal.toml").write_text(
        f'script = "{bundled_script_path()}"\nfixture = "small"\n')
    assert cli.main(["rehearse", "--workdir", str(work), "--resume", "--previous", str(JOURNAL),
                     "--previous-key", KEY]) == 2
    assert "was not started with these --previous" in capsys.readouterr().err


# --- the live coordinator's config ---------------------------------------------------------------

def coordinator_toml(tmp_path: Path, previous: str) -> Path:
    for f in ("ceremony.toml", "roster.toml", "coordinator.key", "coordinator.key_secret",
              "livecd.iso", "coordinator-ssh.key", "previous-record.toml"):
        (tmp_path / f).touch()
    (tmp_path / "drives").mkdir(exist_ok=True)
    path = tmp_path / "coordinator.toml"
    path.write_text(
        '[coordinator]\nscript = "ceremony.toml"\nroster = "roster.toml"\n' + previous
        + 'journal = "journal.jsonl"\nkey = "coordinator.key"\n'
        'curve = "coordinator.key_secret"\ncommands = "tcp://127.0.0.1:7101"\n'
        'broadcasts = "tcp://127.0.0.1:7102"\nlivecd = "livecd.iso"\ndrives = "drives"\n'
        '[signer]\nhost = "127.0.0.1"\nport = 7222\nclient_key = "coordinator-ssh.key"\n')
    return path


def test_the_coordinator_reads_its_previous_record_from_a_journal(tmp_path: Path) -> None:
    cfg = CoordinatorConfig.load(coordinator_toml(
        tmp_path, f'previous_journal = "{JOURNAL}"\nprevious_key = "{KEY}"\n'))
    assert (cfg.previous, cfg.previous_journal, cfg.previous_key) == (None, JOURNAL, KEY)
    needs = ("livecd_sha256", "signer_host_key", "hsm_fingerprint", "key_count")
    facts = read_previous(records_of(JOURNAL))
    record = load_previous(cfg, needs)
    # the facts, and the bags still held, which the next ceremony's unseal steps open
    assert record == {**facts.record, "custody": [h.to_dict() for h in facts.custody]}
    assert {h["bag"] for h in record["custody"]} >= {"wellington", "albany", "auckland"}
    with pytest.raises(BadInput, match="lacks hsm_serial"):
        load_previous(cfg, (*needs, "hsm_serial"))


@pytest.mark.parametrize("previous, why", [
    ('previous = "previous-record.toml"\nprevious_journal = "j.jsonl"\nprevious_key = "k"\n',
     "not both"),
    ('previous_journal = "previous-record.toml"\n', "previous_key is required"),
    ('previous = "previous-record.toml"\nprevious_key = "k"\n', "goes with previous_journal"),
    ("", "give the previous ceremony's record"),
    ('previous_journal = "nowhere.jsonl"\nprevious_key = "k"\n', "does not exist"),
])
def test_the_coordinator_takes_its_previous_record_from_one_place(
        tmp_path: Path, previous: str, why: str) -> None:
    with pytest.raises(BadInput, match=why):
        CoordinatorConfig.load(coordinator_toml(tmp_path, previous))


def test_a_bad_previous_key_in_the_config_is_bad_input(tmp_path: Path) -> None:
    cfg = CoordinatorConfig.load(coordinator_toml(
        tmp_path, f'previous_journal = "{JOURNAL}"\nprevious_key = "nope"\n'))
    with pytest.raises(BadInput, match="coordinator.previous_key: verifier key 'nope'"):
        load_previous(cfg, ())


# --- rehearsals continuing from a rehearsal -----------------------------------------------------

@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    work = tmp_path_factory.mktemp("first") / "r"
    code, summary, err = rehearse_json(work, "--fixture", "small")
    assert code == 0, err
    return work, summary


def test_a_second_rehearsal_continues_on_the_first_ones_token(
        first: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    old, before = first
    facts = read_previous(records_of(old / "journal.jsonl"))
    record = facts.record
    work = tmp_path / "r2"
    p = rehearse("--workdir", str(work), "--previous", str(old / "journal.jsonl"),
                 "--previous-key", before["checkpoint_key"])
    assert p.returncode == 0, p.stdout + p.stderr
    # the previous record is the first rehearsal's journal's, as export writes it
    assert tomllib.loads((work / "previous-record.toml").read_text()) == record
    journal = work / "journal.jsonl"
    # the genesis carries the facts and the bags the first left held (which unseal steps open)
    assert lines_of(journal)[0]["record"]["previous"] == facts.machine_record()
    assert {h["bag"] for h in facts.machine_record()["custody"]} == {
        "wellington", "albany", "auckland", "master-copy", "keygen-log"}
    # the same HSM: the fingerprint and the key count observed now are the first one's
    assert events_at(journal, 27, "Performed")[-1]["result"]["fingerprint"] \
        == record["hsm_fingerprint"]
    assert events_at(journal, 30, "Observed")[-1]["value"] == record["key_count"]
    assert events_at(journal, 25, "Observed")[-1]["value"] == record["signer_host_key"]
    # the first rehearsal's directory is only read: its token is copied
    assert (work / "signer" / "hsm" / "tokens").is_dir()
    assert str(work) in (work / "signer" / "signer.toml").read_text()
    assert str(old) not in (work / "signer" / "signer.toml").read_text()
    # the summary shows what it continued from and the bags the first one left in custody
    assert f"continued from {old / 'journal.jsonl'} (second-key-generation, completed" \
        in p.stdout
    for bag, c in before["custody"].items():
        assert f"previous bag {bag} serial {c['serial']}: held by " in p.stdout
    assert f"previous hsm_fingerprint = {record['hsm_fingerprint']}, from step 27" in p.stdout


def a_journal_with_another_hsm(old: Path, dest: Path, fingerprint: str) -> None:
    """The first rehearsal's journal as if its HSM had reported `fingerprint` at step 27,
    written again and signed with that rehearsal's own coordinator key: it verifies and replays
    (step 28 observed the real HSM, as its genesis's record said). The officers' cosignatures
    are left out: they were of the checkpoints of the real history, and `keyrite verify` refuses
    a cosignature of a checkpoint the journal does not hold."""
    records = [e["record"] for e in lines_of(old / "journal.jsonl")]
    genesis = dict(records[0])
    origin = genesis.pop("journal")["origin"]
    journal = Journal.create(dest, key=load_private_key(old / "coordinator.key"), name=origin,
                             origin=origin, genesis_record=genesis)
    changed = 0
    for r in records[1:]:
        if r["type"] in ("checkpoint", "cosignature"):
            continue
        e = r.get("event") or {}
        if r["type"] == "event" and e.get("event") == "Performed" and e.get("step") == 27:
            r = {**r, "event": {**e, "result": {"fingerprint": fingerprint}}}
            changed += 1
        journal.append(r)
    journal.checkpoint("2026-12-07T00:00:00Z")
    journal.close()
    assert changed == 1


def test_a_previous_journal_with_another_hsm_stops_at_the_verify_step_showing_both(
        first: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    old, before = first
    other = "ffff-eeee-dddd-cccc-bbbb-aaaa-9999-8888-7777-6666"
    forged = tmp_path / "other-hsm.jsonl"
    a_journal_with_another_hsm(old, forged, other)
    real = read_previous(records_of(old / "journal.jsonl")).record["hsm_fingerprint"]
    assert load_previous_journal(forged, before["checkpoint_key"]).facts.record[
        "hsm_fingerprint"] == other
    p = rehearse("--workdir", str(tmp_path / "r3"), "--previous", str(forged),
                 "--previous-key", before["checkpoint_key"], "--token", str(old / "signer"))
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"stopped at step 28: observed {real} but the previous ceremony's record says " \
        f"{other}" in p.stdout
    assert "Traceback" not in p.stderr
