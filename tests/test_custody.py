"""`keyrite custody JOURNAL`: from a completed rehearsal's journal alone, every bag with its
serial, its contents (drives by the serial read when plugged in), its holder and its chain of
hands (the seal, then each hand-over from whom to whom), agreeing with the rehearsal's own
summary; and a journal that does not replay (a forged hand-over among others) is refused, not
half-read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

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
