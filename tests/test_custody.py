"""`keyrite custody JOURNAL`: from a completed rehearsal's journal alone, every bag with its
serial, its contents (drives by the serial read when plugged in) and its custodian, agreeing with
the rehearsal's own summary; and a journal that does not replay is refused, not half-read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.rehearsal_helpers import KEYRITE, rehearse_json


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("custody") / "r"
    code, summary, err = rehearse_json(work, "--fixture", "small")
    assert code == 0, err
    return work, summary


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


def test_a_journal_that_does_not_replay_is_refused(rehearsal, tmp_path: Path) -> None:
    work, _ = rehearsal
    lines = (work / "journal.jsonl").read_bytes().splitlines()
    cut = [ln for ln in lines if b'"event":"SignIn"' not in ln]  # nobody signed in
    bad = tmp_path / "journal.jsonl"
    bad.write_bytes(b"\n".join(cut) + b"\n")
    out = _custody(str(bad))
    assert out.returncode == 2 and "does not replay" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    missing = _custody(str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2 and "none.jsonl" in missing.stderr
