"""A forked record, as the people in the room see it: a real shim, a real coordinator and the
consoles of the KGA (also DSO5; a large screen, the projector's), the SA, KSO1 (also DSO1), KSO2
and a witness (a laptop's 80x24), each in its own tmux window, driven with send-keys and read with
capture-pane.

The officers sign in and finish the first section, whose end the coordinator checkpoints; every
console checks that checkpoint and keeps it beside its enrolment. The coordinator is stopped and
its journal rewritten from the entry that ended the section on (the KGA's acknowledgement of step
8 backdated, another entry after it), every link recomputed and a checkpoint signed with the
coordinator's own key, as a coordinator that meant to rewrite its history would: the forked
journal verifies on its own and the coordinator starts on it. Only the consoles' memory of the
checkpoint they accepted catches it: each refuses to cosign, the coordinator journals each
refusal, and every screen says RECORD DISPUTED (the in-process twin is
tests/test_cosign.py::test_a_console_fed_a_forked_checkpoint_refuses_and_every_screen_shows_it).
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from ceremony import records
from coordinator.journal import Journal, load_private_key, verify_journal
from tests.live_helpers import (
    HEIGHT,
    WIDTH,
    Autopilot,
    Room,
    env_ok,
    resize,
    stop_coordinator,
    window_size,
)

pytestmark = pytest.mark.skipif(not env_ok(), reason="tmux is not installed (dev/setup.sh "
                                "installs it)")

OFFICERS = ("KGA", "SA", "KSO1", "KSO2")
SEATS = (*OFFICERS, "WI1")
#: the first section (steps 1 to 8) ends with the KGA's acknowledgement of step 8: a checkpoint
SECTION_END = 8


def _accepted(room: Room, seat: str) -> int | None:
    """The size of the checkpoint `seat`'s console keeps as the last it accepted (the note in
    its enrolment's `checkpoints/`), None before it accepted one."""
    notes = list((room.staged.live / "officers" / seat / "checkpoints").glob("*.note"))
    if not notes:
        return None
    [note] = notes
    return int(note.read_text().splitlines()[1])  # origin, size, root


def _records(room: Room) -> list[dict]:
    lines = (room.staged.live / "journal.jsonl").read_text().splitlines()
    return [json.loads(line)["record"] for line in lines]


def _until(ok: Callable[[], bool], what: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what()}"
        time.sleep(0.2)


def _flat(screen: str) -> str:
    """The screen's words in one line (an 80-column screen wraps a long alert)."""
    return " ".join(screen.replace("│", " ").split())


def _fork(room: Room, accepted: int) -> int:
    """Rewrite the stopped coordinator's journal from entry `accepted - 1` on (the KGA's
    acknowledgement of step 8, which the checkpoint the consoles accepted covers last) with the
    coordinator's own key; return the size of the forked checkpoint."""
    journal = room.staged.live / "journal.jsonl"
    lines = journal.read_bytes().split(b"\n")
    assert json.loads(lines[accepted])["record"]["type"] == "checkpoint"
    ack = json.loads(lines[accepted - 1])["record"]
    assert (ack["type"], ack["step"], ack["event"]["event"]) == \
        ("event", SECTION_END, "Acknowledge"), ack
    journal.rename(journal.with_name("journal.honest.jsonl"))  # kept, for a failure's reader
    journal.write_bytes(b"".join(x + b"\n" for x in lines[:accepted - 1]))
    cfg = tomllib.loads(room.staged.coordinator.read_text())["coordinator"]
    key = load_private_key(room.staged.coordinator.parent / cfg["key"])
    with Journal.open(journal, key=key) as j:
        at = ack["at"] - 600  # the same acknowledgement, ten minutes earlier
        backdated = {**ack, "at": at, "event": {**ack["event"], "at": at}}
        j.append(backdated)
        j.append(records.Coordinator(at=time.time(), step=SECTION_END + 1,
                                     what=f"resumed at step {SECTION_END + 1}").to_dict())
        j.checkpoint(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        size = j.size - 1  # a checkpoint at seq n covers n entries
    report = verify_journal(journal, [room.staged.journal_key])
    assert report.ok, report.summary()  # the fork verifies on its own
    return size


@pytest.fixture
def room(tmp_path: Path):
    r = Room(tmp_path, SEATS)
    yield r
    r.close()


def test_every_screen_shows_a_console_refusing_a_forked_checkpoint(room: Room) -> None:
    resize(room, "WI1", 80, 24)  # a laptop; the KGA's is the projector's (130x62)
    ap = Autopilot(room, OFFICERS)
    ap.run(SECTION_END + 1)
    journal = room.staged.live / "journal.jsonl"
    checkpoints = [json.loads(line)["seq"] for line in journal.read_text().splitlines()
                   if json.loads(line)["record"]["type"] == "checkpoint"]
    assert len(checkpoints) == 1, checkpoints  # the first section's end
    accepted = checkpoints[0]  # a checkpoint at seq n covers n entries
    # every console, the witness's too, checked it and keeps it beside its enrolment
    _until(lambda: {_accepted(room, s) for s in SEATS} == {accepted},
           lambda: {s: _accepted(room, s) for s in SEATS})
    for seat in SEATS:
        assert "RECORD DISPUTED" not in room.screen(seat)

    stop_coordinator(room)
    fork = _fork(room, accepted)
    assert fork > accepted
    room.start_coordinator()

    # each console refuses once; the coordinator journals each refusal
    reason = (f"REFUSES TO COSIGN checkpoint {fork}: it does not extend checkpoint {accepted} "
              "accepted before (no valid consistency proof): the journal FORKED [A13]")

    def refusals() -> list[dict]:
        return [r for r in _records(room) if r["type"] == "refused" and r["command"] == "cosign"]

    _until(lambda: len(refusals()) >= len(SEATS), refusals)
    time.sleep(1.0)  # and no console tells it twice
    got = refusals()
    assert sorted(r["console"] for r in got) == sorted(SEATS)
    assert {r["reason"] for r in got} == {reason}
    assert not [r for r in _records(room) if r["type"] == "cosignature"]
    assert {_accepted(room, s) for s in SEATS} == {accepted}  # each keeps what it accepted

    # every screen: the latest refusal, and how many came before it; each console its own word
    last = got[-1]["console"]
    disputed = f"RECORD DISPUTED: {last} {reason} ({len(SEATS) - 1} more before: see the journal)"
    own = (f"YOU REFUSED TO COSIGN checkpoint {fork}: it does not extend checkpoint {accepted} "
           "accepted before (no valid consistency proof): the journal FORKED [A13]")
    assert window_size(room, "KGA") == (WIDTH, HEIGHT) and window_size(room, "WI1") == (80, 24)
    for seat in SEATS:
        screen = room.wait(seat, lambda s: disputed in _flat(s) and own in _flat(s))
        assert "Step 9 " in screen  # the fork's coordinator resumed where the room was
    # the projector's journal panel has every console's refusal
    kga = _flat(room.screen("KGA"))
    for seat in SEATS:
        assert f"{seat} {reason}" in kga, seat

    # the checkpoint a console kept shows where: the fork's entry, against the honest journal
    [kept] = (room.staged.live / "officers" / "KSO1" / "checkpoints").glob("*.note")
    key = [room.staged.journal_key]
    assert verify_journal(journal.with_name("journal.honest.jsonl"), key,
                          checkpoint=kept.read_text()).ok
    against = verify_journal(journal, key, checkpoint=kept.read_text()).against
    assert against is not None and against.outcome == "forked", against
    assert against.departs is not None and against.departs[1] == accepted - 1, against
