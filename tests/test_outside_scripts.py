"""Ceremonies written apart from keyrite's code: a standby restore (49 steps) and an annual audit
(59 steps) that a registry's administrator wrote from the documentation, `--help` and the seed
transcript alone (tests/data/outside/; each file's header lists what was edited afterwards, and
why). They check, and they rehearse for real against the key generation they continue, with no
step bent into an acknowledgement where keyrite offers a check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = Path(__file__).parent / "data" / "outside"
KEYRITE = [sys.executable, "-m", "keyrite.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYRITE, *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)


def _events(work: Path, kind: str) -> list[dict]:
    lines = [json.loads(x)["record"] for x in (work / "journal.jsonl").read_text().splitlines()]
    return [x for x in lines if x["type"] == "event" and x["event"].get("event") == kind]


@pytest.fixture(scope="module")
def generation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("outside") / "generate"
    p = _run("rehearse", "--workdir", str(work), "--fixture", "small", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    return work, json.loads(p.stdout)


def _continue(script: str, generation: tuple[Path, dict], work: Path) -> dict:
    earlier, summary = generation
    p = _run("rehearse", str(OUTSIDE / script), "--workdir", str(work), "--fixture", "small",
             "--json", "--previous", str(earlier / "journal.jsonl"),
             "--previous-key", summary["checkpoint_key"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("script", ["standby-restore.toml", "annual-audit.toml"])
def test_each_checks_at_the_desk(script: str) -> None:
    p = _run("script", "check", str(OUTSIDE / script))
    assert p.returncode == 0, p.stderr
    assert "acknowledge" in p.stdout  # and the summary counts its steps' actions


def test_the_outside_restore_rehearses_with_three_different_approvers(
        generation: tuple[Path, dict], tmp_path: Path) -> None:
    summary = _continue("standby-restore.toml", generation, tmp_path / "restore")
    assert summary["status"] == "completed"
    approvals = [(x["step"], x["event"]["seat"]) for x in _events(tmp_path / "restore",
                                                                    "Approve")]
    assert [s for _, s in approvals][:2] == ["KSO1", "KSO2"]
    # the DSO is not KSO1's holder (DSO1 in the seed's cast): distinct_from held
    assert approvals[2][1].startswith("DSO") and approvals[2][1] != "DSO1"
    observed = {x["event"]["step"]: x["event"]["value"] for x in _events(
        tmp_path / "restore", "Observed")}
    record = summary["previous"]["record"]
    assert observed[24].replace(":", "") == record["backup_sha256"].replace(":", "")
    assert "SAU1" in summary["cosigners"]


def test_the_outside_audit_rehearses_checking_every_bag_against_the_record(
        generation: tuple[Path, dict], tmp_path: Path) -> None:
    summary = _continue("annual-audit.toml", generation, tmp_path / "audit")
    assert summary["status"] == "completed"
    record = summary["previous"]["record"]
    digests = [x["event"]["value"].replace(":", "") for x in _events(tmp_path / "audit",
                                                                      "Observed")]
    assert digests.count(record["backup_sha256"].replace(":", "")) == 4  # four backup drives
    assert record["transcript_sha256"].replace(":", "") in digests  # the key-gen log's
    held = {bag: c["custodian"] for bag, c in summary["custody"].items()}
    assert (held["wellington"], held["albany"], held["auckland"]) == ("DSO3", "DSO2", "DSO4")
    assert "SAU1" in summary["cosigners"]
