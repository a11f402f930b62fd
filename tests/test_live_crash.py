"""The live coordinator killed mid-ceremony, as a power cut would: `KEYRITE_TEST_CRASH=journal:N`
(test-only, keyrite/crashpoints.py) makes it SIGKILL itself just after its Nth journal entry
since it started. Its operator starts it again; the consoles, which outlived it, reconnect, and
the officers carry on from where the journal says the ceremony is, through the key generation,
the backup and its restore drill (steps 1 to 52).

What the crash must not change (as the rehearsal's crash matrix, tests/crash_helpers.py): every
entry on disk when it died is still there, unchanged; no HSM operation ran twice (each step's
OperationStarted journaled once, each operation started and finished once in the signer's own
journal); the journal verifies with the coordinator's key.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.live_helpers import KEYRITE, Autopilot, Room, env_ok, sign_in_observer, stop_coordinator

pytestmark = pytest.mark.skipif(not env_ok(), reason="tmux is not installed (dev/setup.sh "
                                "installs it)")

SEATS = ("KGA", "SA", "KSO1", "KSO2", "WI1", "SAU1")
OFFICERS = ("KGA", "SA", "KSO1", "KSO2")
#: the restarted coordinator dies just after its 12th entry: its `resumed` line, the consoles'
#: presence and the officers' work from step 30 on (approvals of the generation at step 33)
CRASH = "journal:12"


@pytest.fixture
def room(tmp_path: Path):
    r = Room(tmp_path, SEATS)
    yield r
    r.close()


def test_the_live_coordinator_killed_mid_ceremony_resumes_with_nothing_lost(room: Room) -> None:
    ap = Autopilot(room, OFFICERS)
    ap.act("KGA", "s", None)
    room.wait("KGA", lambda s: "KGA   Administrator A: signed in" in s)
    sign_in_observer(room, "WI1")
    sign_in_observer(room, "SAU1", doc="d", digits="08X2")
    ap.run(30)

    # the operator restarts it with the crash point armed; it dies somewhere after
    stop_coordinator(room)
    room.start_coordinator({"KEYRITE_TEST_CRASH": CRASH})
    journal = room.staged.live / "journal.jsonl"
    left: bytes | None = None
    deadline = time.monotonic() + 900
    while True:
        assert time.monotonic() < deadline, "the ceremony did not reach step 53"
        if left is None and "EXITED" in room.screen("coordinator"):
            screen = room.screen("coordinator")
            assert "EXITED 137" in screen, screen  # SIGKILL: no handler, no flush
            log = (room.logs / "coordinator.log").read_text()
            assert f"keyrite crashpoint {CRASH}: SIGKILL" in log
            left = journal.read_bytes()
            room.tmux.close("coordinator")
            room.start_coordinator()
        try:
            ap.run(53, timeout=20)
            break
        except AssertionError as e:
            if "did not reach" not in str(e):
                raise
    assert left is not None, "the coordinator never reached its crash point"

    final = journal.read_bytes()
    assert left.endswith(b"\n") and final.startswith(left), \
        "an entry on disk when the coordinator died was lost or changed"
    records = [json.loads(line)["record"] for line in final.splitlines()]
    whats = [r.get("what", "") for r in records if r.get("type") == "coordinator"]
    assert [w.split(" at ")[0] for w in whats] == ["started", "resumed", "resumed"], whats
    started = Counter(r["step"] for r in records if r.get("type") == "event"
                      and r["event"]["event"] == "OperationStarted")
    assert started and set(started.values()) == {1}, started
    [ops] = list(room.staged.root.rglob("operations.jsonl"))
    events = [json.loads(line) for line in ops.read_text().splitlines()]
    for kind in ("started", "finished"):
        counts = Counter(e["digest"] for e in events if e["event"] == kind)
        assert counts and set(counts.values()) == {1}, (kind, counts)
    drills = [r["event"]["result"]["drill"] for r in records
              if r.get("type") == "event" and r["event"]["event"] == "Performed"
              and "drill" in r["event"].get("result", {})]
    assert [(d["match"], d["missing"], d["extra"]) for d in drills] == [(True, [], [])]
    verify = subprocess.run([*KEYRITE, "verify", str(journal), "--key", room.staged.journal_key],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert re.search(r"\bok\b|verified", verify.stdout + verify.stderr, re.I)
