"""`keyrite rehearse tests/scripts/keygen-wrap.toml`: the backup KEK made in the HSM under a KSO
quorum and split 2-of-3, each share sealed to its holder's console key and written down at
their own step, the keys backed up wrapped under it, and the restore drill opened by two KSOs
bringing their shares: end to end through the shim over SSH on SoftHSM2. Then
`tests/scripts/restore-wrap.toml` restores that backup onto a fresh standby token, two KSOs
bringing the cards they wrote; with one card, the restore stops before the signer is asked.

The shares never enter the journal, the transcript or the coordinator's files in the clear:
checked by looking for every share's words in everything the rehearsal wrote but the officers'
paper (`officers/KSO*.share`, what the scripted holders wrote down)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from shamir_mnemonic.share import Share

from tests.rehearsal_helpers import KEYRITE, rehearse_json, token_private_key_ids

SCRIPT = Path(__file__).resolve().parent / "scripts" / "keygen-wrap.toml"
RESTORE = Path(__file__).resolve().parent / "scripts" / "restore-wrap.toml"


def records(journal: Path) -> list[dict[str, Any]]:
    return [json.loads(line)["record"] for line in journal.read_text().splitlines()]


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("wrap") / "r"
    code, summary, err = rehearse_json(workdir, str(SCRIPT), "--fixture", "small")
    assert code == 0, err
    return workdir, summary


def test_the_wrap_ceremony_completes_with_the_drill_opened_by_two_shares(
        rehearsed: tuple[Path, dict[str, Any]]) -> None:
    workdir, summary = rehearsed
    assert summary["status"] == "completed"
    assert summary["steps_completed"] == summary["steps_total"] == 14
    journal = records(workdir / "journal.jsonl")
    events = [(r["step"], r["event"]) for r in journal if r.get("type") == "event"]
    performed = {e["step"]: e["result"] for _, e in events if e["event"] == "Performed"}
    kek = performed[3]
    assert (kek["threshold"], kek["shares"], kek["holders"]) == (2, 3, ["KSO1", "KSO2", "KSO3"])
    assert "sealed" not in kek
    # each holder wrote their own share down, at their own step
    acks = {n: e["seat"] for n, e in events if e["event"] == "Acknowledge" and n in (4, 5, 6)}
    assert acks == {4: "KSO1", 5: "KSO2", 6: "KSO3"}
    # two KSOs brought theirs to the drill; the drill restored every key and matched
    brought = [(r["seat"], r["purpose"]) for r in journal if r.get("type") == "share"]
    assert len(brought) == 2 and all(p == "drill" for _, p in brought)
    assert {s for s, _ in brought} <= {"KSO1", "KSO2", "KSO3"}
    drill = performed[10]["drill"]
    assert drill["match"] is True and drill["method"] == "wrap"
    assert drill["restored"] == drill["live"] > 0
    verified = subprocess.run([*KEYRITE, "verify", summary["journal"], "--key",
                               summary["checkpoint_key"]], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_shares_are_three_of_one_kek_two_of_which_rebuild_it(
        rehearsed: tuple[Path, dict[str, Any]]) -> None:
    workdir, _ = rehearsed
    papers = sorted((workdir / "officers").glob("KSO*.share"))
    assert [p.name for p in papers] == ["KSO1.share", "KSO2.share", "KSO3.share"]
    shares = [Share.from_mnemonic(p.read_text()) for p in papers]
    assert len({s.identifier for s in shares}) == 1  # one KEK
    assert {s.member_threshold for s in shares} == {2}
    assert len({s.index for s in shares}) == 3
    # handed over: no sealed box is left waiting beside the journal
    left = workdir / "kek-shares.sealed.json"
    assert not left.exists() or json.loads(left.read_text()) == {}


def test_no_share_is_anywhere_but_on_the_officers_paper(
        rehearsed: tuple[Path, dict[str, Any]]) -> None:
    workdir, _ = rehearsed
    words = [p.read_text().strip() for p in (workdir / "officers").glob("KSO*.share")]
    assert words
    for path in workdir.rglob("*"):
        if not path.is_file() or path.parent.name == "officers":
            continue
        data = path.read_bytes()
        for share in words:
            # a run of five of its words would be enough to recognise it
            assert " ".join(share.split()[10:15]).encode() not in data, path


def test_the_transcript_says_who_wrote_and_who_brought_a_share(
        rehearsed: tuple[Path, dict[str, Any]]) -> None:
    workdir, summary = rehearsed
    text = Path(summary["transcript"]).read_text()
    assert "KSO1 wrote down their share of the backup KEK" in text
    assert "brought their KEK share for the drill at step 10" in text


def _restore(rehearsed: tuple[Path, dict[str, Any]], workdir: Path
             ) -> tuple[int, dict[str, Any], str]:
    before, summary = rehearsed
    return rehearse_json(workdir, str(RESTORE), "--previous", str(before / "journal.jsonl"),
                         "--previous-key", summary["checkpoint_key"])


def test_a_standby_restores_the_wrap_backup_when_two_ksos_bring_their_cards(
        rehearsed: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    code, summary, err = _restore(rehearsed, tmp_path / "restore")
    assert code == 0, err
    assert summary["status"] == "completed" and summary["steps_completed"] == 10
    primary, standby = rehearsed[1]["token"], summary["token"]
    assert primary["softhsm2_conf"] != standby["softhsm2_conf"]  # another token
    # the standby's keys, read with pkcs11-tool: every key of the primary, no other
    assert sorted(token_private_key_ids(summary)) == sorted(token_private_key_ids(rehearsed[1]))
    journal = records(tmp_path / "restore" / "journal.jsonl")
    brought = [(r["seat"], r["purpose"], r["step"]) for r in journal if r.get("type") == "share"]
    assert len(brought) == 2 and all(p == "restore" and n == 5 for _, p, n in brought)
    [restored] = [r["event"]["result"] for r in journal if r.get("type") == "event"
                  and r["event"]["event"] == "Performed" and r["step"] == 5]
    assert restored["restored"] == len(token_private_key_ids(rehearsed[1])) > 0


def test_with_one_card_the_restore_stops_before_the_signer_is_asked(
        rehearsed: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    before, summary = rehearsed
    copy = tmp_path / "before"
    shutil.copytree(before, copy, symlinks=True)
    for seat in ("KSO2", "KSO3"):  # their cards are lost
        (copy / "officers" / f"{seat}.share").unlink()
    code, out, err = rehearse_json(tmp_path / "restore", str(RESTORE), "--previous",
                                   str(copy / "journal.jsonl"), "--previous-key",
                                   summary["checkpoint_key"], "--token", str(before / "signer"))
    assert code == 1, err
    assert out["status"] == "stopped"
    assert "1 of the 2 KEK shares the restore needs came" in json.dumps(out)
    journal = records(tmp_path / "restore" / "journal.jsonl")
    assert not any(r.get("type") == "event" and r["event"]["event"] in
                   ("OperationStarted", "Performed") and r["step"] == 5 for r in journal)
    assert token_private_key_ids(out) == []
