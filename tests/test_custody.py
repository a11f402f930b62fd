"""`keyrite custody JOURNAL`: from a completed rehearsal's journal alone, every bag with its
serial, its contents (drives by the serial read when plugged in), its holder and its chain of
hands (the seal, then each hand-over from whom to whom), agreeing with the rehearsal's own
summary; and a journal that does not replay (a forged hand-over among others) is refused, not
half-read."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ceremony.previous import read_previous
from ceremony.script import bundled_script_path
from tests.rehearsal_helpers import KEYRITE, rehearse_json

#: The bundled ceremony and then one step more: the second KSO takes the Master Copy bag from the
#: first (who took it at step 110) for offsite storage. Not the seed's: a test of hand-overs.
HANDOVER_STEP = """
[[sections.steps]]
n = 133
actor = "KSO"
action = "handover"
bag = "master-copy"
text = "KSO2 takes the TEB containing the Master Backup Copy from KSO1 for offsite storage"
"""


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("custody") / "r"
    code, summary, err = rehearse_json(work, "--fixture", "small")
    assert code == 0, err
    return work, summary


@pytest.fixture(scope="module")
def handed_over(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("handover")
    script = root / "with-handover.toml"
    script.write_text(bundled_script_path().read_text() + HANDOVER_STEP)
    code, summary, err = rehearse_json(root / "r", str(script), "--fixture", "small")
    assert code == 0, err
    return root / "r", summary


def _custody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYRITE, "custody", *args], capture_output=True, text=True,
                          timeout=120)


def test_every_bag_its_serial_contents_and_custodian(rehearsal) -> None:
    work, summary = rehearsal
    out = _custody(str(work / "journal.jsonl"), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["status"] == "completed"
    drill = summary["restore_drill"]  # the drill ran before the master copy was sealed
    assert drill["match"]
    assert drill["restored"] == drill["live"] == summary["keys"]["after_generate"]
    bags = report["bags"]
    assert set(bags) == set(summary["custody"])
    drives = {d["label"]: d["serial"] for d in summary["drives"]}
    for label, c in summary["custody"].items():
        b = bags[label]
        assert b["sealed"] and b["serial"] == c["serial"] and b["custodian"] == c["custodian"]
        assert b["signature"] == c["signature"]  # the custodian signed for it
        drive_items = [x for x in c["contents"] if x.startswith("drive:")]
        for item in drive_items:
            name = item.removeprefix("drive:")
            assert f"flash drive {name} (serial {drives[name]})" in b["contents"]
    wellington = bags["wellington"]
    assert "a copy of the device-backup password" in wellington["contents"]
    text = _custody(str(work / "journal.jsonl"))
    assert text.returncode == 0
    assert f"bag wellington serial {wellington['serial']}: held by" in text.stdout
    assert "signed for" in text.stdout and "NOT signed" not in text.stdout
    for b in bags.values():  # sealed once, never handed over
        assert [(h["kind"], h["step"], h["from"], h["to"]) for h in b["chain"]] == [
            ("seal", b["step"], None, b["custodian"])]
        assert b["chain"][0]["signature"] == b["signature"] and b["chain"][0]["verified"]


def test_a_handover_moves_the_bag_and_extends_its_chain(handed_over) -> None:
    work, summary = handed_over
    assert summary["status"] == "completed" and summary["steps_total"] == 133
    out = _custody(str(work / "journal.jsonl"), "--json")
    assert out.returncode == 0, out.stderr
    bags = json.loads(out.stdout)["bags"]
    master = bags["master-copy"]
    assert (master["custodian"], master["name"], master["step"]) == ("KSO2", "Officer D", 133)
    assert master["serial"] == summary["custody"]["master-copy"]["serial"]
    assert summary["custody"]["master-copy"]["from"] == "KSO1"
    assert "a copy of the device-backup password" in master["contents"]
    seal, handover = master["chain"]
    assert (seal["kind"], seal["step"], seal["from"], seal["to"]) == ("seal", 110, None, "KSO1")
    assert (handover["kind"], handover["step"], handover["from"], handover["from_name"],
            handover["to"], handover["to_name"]) == (
        "handover", 133, "KSO1", "Officer C", "KSO2", "Officer D")
    assert handover["verified"] and handover["signature"] == master["signature"]
    assert handover["signature"] != seal["signature"]
    assert [h["step"] for h in bags["keygen-log"]["chain"]] == [131]  # still with KSO1
    text = _custody(str(work / "journal.jsonl")).stdout
    assert f"bag master-copy serial {master['serial']}: held by Officer D (KSO2," in text
    assert f"step 110 {seal['at']}: sealed, taken by Officer C (KSO1), signed for" in text
    assert (f"step 133 {handover['at']}: handed over from Officer C (KSO1) to Officer D "
            "(KSO2), signed for") in text


def test_a_forged_handover_does_not_replay(handed_over, tmp_path: Path) -> None:
    """The hand-over's signature turned around: the custody command refuses the journal at
    that line rather than print a chain it cannot stand behind."""
    work, _ = handed_over
    lines = (work / "journal.jsonl").read_bytes().splitlines()
    entries = [json.loads(ln) for ln in lines]
    last = max(i for i, e in enumerate(entries)
               if e["record"].get("event", {}).get("event") == "Record")
    event = entries[last]["record"]["event"]
    assert event["seat"] == "KSO2" and event["signature"], event  # the hand-over at step 133
    event["signature"] = event["signature"][::-1]
    lines[last] = json.dumps(entries[last], separators=(",", ":")).encode()
    bad = tmp_path / "journal.jsonl"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    out = _custody(str(bad))
    assert out.returncode == 2, out.stdout
    assert f"journal.jsonl:{last + 1}: the event does not replay" in out.stderr, out.stderr
    assert "KSO2 takes bag master-copy by signing for it" in out.stderr


#: The standby restore opens the master copy the key generation left and reseals it; the three
#: offsite bags and the key-gen log bag it never touches.
RESTORE = Path(__file__).resolve().parent.parent / "ceremony" / "scripts" / "standby-restore.toml"
UNTOUCHED = ("albany", "auckland", "keygen-log", "wellington")


@pytest.fixture(scope="module")
def continued(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A key generation, then the standby restore continuing from its journal: (the earlier
    journal, the continued one)."""
    root = tmp_path_factory.mktemp("continued")
    code, first, err = rehearse_json(root / "generate", "--fixture", "small")
    assert code == 0, err
    code, _, err = rehearse_json(root / "restore", str(RESTORE), "--fixture", "small",
                                 "--previous", str(root / "generate" / "journal.jsonl"),
                                 "--previous-key", first["checkpoint_key"])
    assert code == 0, err
    return root / "generate" / "journal.jsonl", root / "restore" / "journal.jsonl"


def test_bags_carried_on_from_the_previous_ceremony_are_listed(continued) -> None:
    earlier_journal, journal = continued
    out = _custody(str(journal), "--json")
    assert out.returncode == 0, out.stderr
    bags = json.loads(out.stdout)["bags"]
    before = json.loads(_custody(str(earlier_journal), "--json").stdout)["bags"]
    # what `keyrite record export` (and the next ceremony) reads from the same journal
    entries = [json.loads(x) for x in journal.read_text().splitlines()]
    exported = {h.bag: h for h in read_previous([(e["seq"], e["record"]) for e in entries]).custody}
    held = {label for label, b in bags.items() if b["sealed"]}
    assert held == set(exported) == {*UNTOUCHED, "master-copy", "restore-log"}
    for label in UNTOUCHED:
        b, was = bags[label], before[label]
        assert b["carried"] and b["sealed"] and b["chain"] == [], b
        assert (b["serial"], b["custodian"], b["name"], b["step"], b["contents"]) == (
            was["serial"], was["custodian"], was["name"], was["step"], was["contents"])
        assert b["previous"]["serial"] == was["serial"] and b["signature"] is None
        assert (exported[label].serial, exported[label].custodian, exported[label].step) == (
            b["serial"], b["custodian"], b["step"])
    text = _custody(str(journal)).stdout
    w = bags["wellington"]
    assert (f"bag wellington serial {w['serial']}: held by {w['name']} ({w['custodian']}) since "
            f"step {w['step']} of the previous ceremony, carried on from it (not opened in this "
            "one)") in text
    assert "flash drive keygen-log (serial " in text


def test_a_bag_opened_and_resealed_says_so(continued) -> None:
    earlier_journal, journal = continued
    bags = json.loads(_custody(str(journal), "--json").stdout)["bags"]
    before = json.loads(_custody(str(earlier_journal), "--json").stdout)["bags"]["master-copy"]
    master = bags["master-copy"]
    assert not master["carried"] and master["sealed"]
    unseal, seal = master["chain"]
    assert unseal["kind"] == "unseal" and unseal["previous"] and seal["kind"] == "seal"
    assert master["opened"]["step"] == unseal["step"]
    assert master["opened"]["serial"] == before["serial"] == master["previous"]["serial"]
    assert master["resealed"]["step"] == seal["step"] == master["step"]
    assert master["previous"]["step"] == before["step"]
    assert master["serial"] != before["serial"]  # a new bag
    restore_log = bags["restore-log"]  # sealed here only: nothing carried, nothing opened
    assert "opened" not in restore_log and "previous" not in restore_log
    text = _custody(str(journal)).stdout
    assert (f"      opened at step {unseal['step']} (serial {before['serial']}), resealed at "
            f"step {seal['step']}") in text
    assert (f"the previous ceremony left it held by {before['name']} ({before['custodian']}) "
            f"since its step {before['step']}, serial {before['serial']}") in text


def test_the_report_lists_the_bags_carried_on_too(continued, tmp_path: Path) -> None:
    """The auditor's report of the restore names every bag still held, the four it never
    touched included, each with its holder and since which step of the key generation."""
    _, journal = continued
    pdf = tmp_path / "report.pdf"
    p = subprocess.run([sys.executable, "-m", "keyrite.cli", "report", str(journal), "-o",
                        str(pdf)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    text = " ".join(subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                                   text=True, check=True).stdout.split())
    for bag, seat in (("wellington", "DSO3"), ("albany", "DSO2"), ("auckland", "DSO4"),
                      ("keygen-log", "KSO1")):
        assert re.search(rf"\({bag}\) Serial \d+ Contents .*? Held by [^(]+\({seat}, [^)]+\) "
                         r"since step \d+ of the previous ceremony \(carried on unopened\)",
                         text), bag
