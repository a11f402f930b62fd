"""A journal written by keyrite before the closed core (a rehearsal of the bundled ceremony on
the small fixture, 2026-12-07, kept in tests/data) must go on verifying and resuming as the
code moves (issue 12): its checkpoints verify with the key it was signed with, and its events
replay into a machine built from its own genesis to the same end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ceremony.machine import Machine
from ceremony.machine.replay import replay
from ceremony.roster import Roster
from ceremony.script.load import load_script_text
from coordinator.journal.verify import verify_journal

DATA = Path(__file__).resolve().parent / "data"
JOURNAL = DATA / "rehearsal-journal-2026-12-07.jsonl"
KEY = (DATA / "rehearsal-journal-2026-12-07.key").read_text().strip()


def test_it_still_verifies_with_its_key() -> None:
    report = verify_journal(JOURNAL, [KEY])
    assert report.ok, report.summary()
    assert report.entries == 165 and report.last_checkpoint_size is not None
    out = subprocess.run([sys.executable, "-m", "keyrite.cli", "verify", str(JOURNAL),
                          "--key", KEY], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_it_still_replays_to_the_end_it_recorded() -> None:
    records = [json.loads(line)["record"] for line in JOURNAL.read_text().splitlines()]
    genesis = records[0]
    script = load_script_text(genesis["script"]["text"])
    assert script.sha256 == genesis["script"]["sha256"]
    machine = Machine(script, Roster.from_dict(genesis["roster"]), genesis["previous"])
    replay(enumerate(records), machine, script.sha256)
    assert machine.status == "completed"
    assert machine.current is None


def test_a_changed_entry_does_not_verify(tmp_path: Path) -> None:
    lines = JOURNAL.read_text().splitlines()
    changed = lines[40].replace('"at":', '"at": ', 1)
    assert changed != lines[40]
    lines[40] = changed
    bad = tmp_path / "j.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    report = verify_journal(bad, [KEY])
    assert not report.ok and report.problem is not None and report.problem.seq == 40
