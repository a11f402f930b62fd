"""Remarks and deviations (issue 13, item 5): any signed-in seat raises one at any time, witnesses
included; the administrator accepts or rejects a deviation once, with a reason; neither stops the
ceremony. The machine's rules and refusals, the journal's fold, the view and its wire form, what a
console offers and draws (80x24 and large), the coordinator's translation, its panel's words, and
a round trip through the live daemon.

Step numbers are those of tests/scripts/mini.toml (the administrator is the KGA: alice, KGA1,
also DSO1), or of the bundled seed script where said.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from ceremony import records
from ceremony.machine import events as ev
from ceremony.machine.machine import NOTE_LIMIT, Machine
from ceremony.machine.replay import replay as replay_journal
from ceremony.view import Extras, from_dict, to_dict
from consoles.actions import actions_for, remark_for
from coordinator.bus import CommandRefused
from coordinator.live.tail import describe
from coordinator.live.translate import TEXT_LIMIT, Invalid, translate
from tests.machine_helpers import (
    SEED_PREVIOUS,
    World,
    drive,
    kso_quorum,
    refused,
    replay,
    role_of,
    roster,
    seed_script,
    send,
    start,
)
from tests.test_console_screen import console_of
from tests.test_live_daemon import _handle, _live, _records

KGA = (("DSO1", "DSO"),)  # alice: the KGA, also a DSO


def signed_in() -> tuple[Machine, World]:
    """Everyone of the honest room signed in (mini: step 3, the SA's first acknowledgement)."""
    m, w = start()
    drive(m, w, until=3)
    return m, w


def remark(w: World, seat: str, text: str, kind: str = "remark") -> ev.Remark:
    return ev.Remark(at=w.at(), seat=seat, kind=kind, text=text)


def decide(w: World, n: int, decision: str = "accept", reason: str = "checked",
           seat: str = "KGA1") -> ev.DecideDeviation:
    return ev.DecideDeviation(at=w.at(), seat=seat, deviation=n, decision=decision,
                              reason=reason)


# --- the machine's rules --------------------------------------------------------------------------
def test_any_signed_in_seat_raises_one_witnesses_included_and_nothing_stops():
    m, w = signed_in()
    wants = m.wants()
    a = remark(w, "WI1", "the room's clock is two minutes fast")
    b = remark(w, "DSO2", "  DSO2 replaced by DSO4  ", kind="deviation")
    assert send(m, w, a) == wants  # no notice, the same wants: the ceremony goes on
    assert send(m, w, b) == wants
    assert m.status == "running" and m.current.n == 3  # type: ignore[union-attr]
    assert m.deviations == (
        {"n": 1, "kind": "remark", "seat": "WI1", "person": "erin",
         "text": "the room's clock is two minutes fast", "at": a.at, "step": 3,
         "decision": None, "reason": None, "decided_by": None, "decided_at": None},
        {"n": 2, "kind": "deviation", "seat": "DSO2", "person": "carol",
         "text": "DSO2 replaced by DSO4", "at": b.at, "step": 3,
         "decision": None, "reason": None, "decided_by": None, "decided_at": None},
    )
    assert m.snapshot()["deviations"] == list(m.deviations)
    m.deviations[0]["text"] = "changed"  # a copy: the accessor is read-only
    assert m.deviations[0]["text"] == "the room's clock is two minutes fast"
    drive(m, w)
    assert m.status == "completed"


def test_the_administrator_decides_a_deviation_once_with_a_reason():
    m, w = signed_in()
    send(m, w, remark(w, "SA1", "bag 3's seal damaged, replaced by bag TEB-9", "deviation"))
    d = decide(w, 1, "reject", "  use the spare bag from stock  ")
    send(m, w, d)
    [x] = m.deviations
    assert (x["decision"], x["reason"], x["decided_by"], x["decided_at"]) == (
        "reject", "use the spare bag from stock", "KGA1", d.at)
    refused(m, decide(w, 1, "accept"), "deviation 1 was already decided", "rejected by KGA1")


@pytest.mark.parametrize("event, words", [
    (lambda w: remark(w, "KSO3", "x"), ("KSO3 must sign in",)),  # enrolled, never signed in
    (lambda w: remark(w, "NOBODY", "x"), ("not an enrolled seat",)),
    (lambda w: remark(w, "SA1", "x", kind="note"), ("remark or a deviation", "'note'")),
    (lambda w: remark(w, "SA1", "   "), ("text is empty",)),
    (lambda w: remark(w, "SA1", "", kind="deviation"), ("deviation says what happened",)),
    (lambda w: remark(w, "SA1", "x" * (NOTE_LIMIT + 1)), ("longer than 1000 characters",)),
    (lambda w: remark(w, "SA1", "two\nlines"), ("one line of text",)),
    (lambda w: remark(w, "SA1", "bell\x07"), ("control characters",)),
    (lambda w: ev.Remark(at=w.at(), seat="SA1", kind="remark", text=7),  # a journal's bad type
     ("text is empty",)),
])
def test_a_remark_is_refused_when(event, words):
    m, w = signed_in()
    refused(m, event(w), *words)


@pytest.mark.parametrize("event, words", [
    (lambda w: decide(w, 2, seat="DSO1"), ("only the KGA decides on deviations",)),  # alice as DSO
    (lambda w: decide(w, 2, seat="KSO1"), ("only the KGA",)),
    (lambda w: decide(w, 3), ("there is no deviation 3",)),
    (lambda w: decide(w, 0), ("there is no deviation 0",)),
    (lambda w: decide(w, True), ("there is no deviation True",)),  # type: ignore[arg-type]
    (lambda w: decide(w, "2"), ("there is no deviation '2'",)),  # type: ignore[arg-type]
    (lambda w: decide(w, 1), ("#1 is a remark", "needs no decision")),
    (lambda w: decide(w, 2, "retry"), ("accepted or rejected, not 'retry'",)),
    (lambda w: decide(w, 2, "accept", " "), ("to accept deviation 2, the KGA writes a reason",)),
    (lambda w: decide(w, 2, "reject", "a\rb"), ("one line of text",)),
])
def test_a_decision_is_refused_when(event, words):
    m, w = signed_in()
    send(m, w, remark(w, "WI1", "noted"))
    send(m, w, remark(w, "SA1", "a spare drive was used", "deviation"))
    refused(m, event(w), *words)


def test_raised_and_decided_while_paused_and_while_stopped_on_an_exception():
    m, w = signed_in()
    send(m, w, ev.Pause(at=w.at(), seat="KGA1"))
    refused(m, ev.Acknowledge(at=w.at(), seat="SA1"), "paused")
    send(m, w, remark(w, "SA1", "the projector failed; paused to fix it", "deviation"))
    send(m, w, decide(w, 1, reason="fixed in five minutes"))
    assert m.paused
    send(m, w, ev.Resume(at=w.at(), seat="KGA1"))
    drive(m, w, until=7)
    send(m, w, ev.Observed(at=w.at(), step=7, value="5"))  # the key count does not match
    assert m.status == "exception"
    send(m, w, remark(w, "WI1", "the count was read off the screen twice", "deviation"))
    send(m, w, decide(w, 2, "reject", "not a deviation: the exception records it"))
    assert m.status == "exception"  # deviations neither stop nor resume anything
    assert [x["decision"] for x in m.deviations] == ["accept", "reject"]


def test_nothing_is_raised_once_the_ceremony_has_ended():
    m, w = start()
    drive(m, w)
    refused(m, remark(w, "KGA1", "late"), "the ceremony is completed")


def test_the_journal_keeps_them_and_its_fold_replays_them():
    m, w = signed_in()
    send(m, w, remark(w, "WI1", "the witness arrived at 09:12"))
    send(m, w, remark(w, "DSO2", "DSO2 replaced by DSO4", "deviation"))
    drive(m, w, until=6)
    send(m, w, decide(w, 2, reason="DSO4's ID was checked"))
    drive(m, w)
    # through the event's journal form (tests/machine_helpers.replay)...
    again = replay(m.script, w.accepted, dict(w.previous))
    assert again.snapshot() == m.snapshot() and again.deviations == m.deviations
    # ...and as the journal writes them: ordinary `event` records, read back and folded
    lines = []
    fresh = Machine(m.script, roster(), dict(w.previous))
    for e in w.accepted:
        step = fresh.current.n if fresh.current else None
        fresh.handle(e)
        record = records.of_event(e, step)
        if isinstance(e, (ev.Remark, ev.DecideDeviation)):
            assert isinstance(record, records.Event) and record.to_dict()["type"] == "event"
        lines.append(json.loads(json.dumps(record.to_dict())))
    for rec in lines:
        assert records.record_from_dict(rec).machine_event() is not None
    folded = Machine(m.script, roster(), dict(w.previous))
    replay_journal(enumerate(lines, start=1), folded, m.script.sha256)
    assert folded.snapshot() == m.snapshot()
    assert [(x["kind"], x["step"], x["decision"]) for x in folded.deviations] == [
        ("remark", 3, None), ("deviation", 3, "accept")]


def test_a_refused_remark_is_a_refused_record_that_the_fold_ignores():
    e = ev.Remark(at=5, seat="KSO3", kind="remark", text="x")
    rec = records.Refused.of_event(e, 3, "KSO3 must sign in before acting")
    assert (rec.console, rec.command) == ("KSO3", "Remark")
    assert records.record_from_dict(rec.to_dict()).machine_event() is None


# --- the view -------------------------------------------------------------------------------------
def test_every_console_is_shown_them_and_the_wire_form_is_strict():
    m, w = signed_in()
    send(m, w, remark(w, "WI1", "noted"))
    send(m, w, remark(w, "DSO2", "DSO2 replaced by DSO4", "deviation"))
    send(m, w, remark(w, "SA1", "a spare drive was used", "deviation"))
    send(m, w, decide(w, 2, "reject", "DSO2 is here"))
    v = m.view(Extras(now=w.now))
    assert v.version >= 4  # deviations came with version 4
    assert [(x.n, x.kind, x.seat, x.name, x.decision, x.decided_by, x.open)
            for x in v.deviations] == [
        (1, "remark", "WI1", "Erin Witness", None, None, False),
        (2, "deviation", "DSO2", "Carol Keystore", "reject", "KGA1", False),
        (3, "deviation", "SA1", "Bob Sysadmin", None, None, True)]
    assert v.deviations[1].reason == "DSO2 is here" and v.deviations[1].step == 3
    wire = json.loads(json.dumps(to_dict(v)))
    assert from_dict(wire) == v
    assert wire["deviations"][2] == {
        "n": 3, "kind": "deviation", "seat": "SA1", "name": "Bob Sysadmin",
        "text": "a spare drive was used", "at": v.deviations[2].at, "step": 3,
        "decision": None, "reason": None, "decided_by": None}
    for mutate, words in (
        (lambda x: x.pop("deviations"), "missing field"),
        (lambda x: x["deviations"][0].pop("decided_by"), r"view\.deviations\[0\]"),
        (lambda x: x["deviations"][0].update(n="1"), r"view\.deviations\[0\]\.n"),
        (lambda x: x["deviations"][0].update(extra=1), "unknown field"),
        (lambda x: x.update(version=3), r"version 3, this console reads \d+"),
    ):
        bad = json.loads(json.dumps(wire))
        mutate(bad)
        with pytest.raises(ValueError, match=words):
            from_dict(bad)


# --- what a console offers ------------------------------------------------------------------------
def kinds(m: Machine, w: World, seat: str) -> list[str]:
    return [a.kind for a in actions_for(m.view(Extras(now=w.now)), seat, role_of(seat))]


def test_the_kga_is_offered_the_oldest_open_deviation_running_paused_or_stopped():
    m, w = signed_in()
    assert "deviation" not in kinds(m, w, "KGA1")
    send(m, w, remark(w, "WI1", "a remark is never decided"))
    assert "deviation" not in kinds(m, w, "KGA1")
    send(m, w, remark(w, "DSO2", "DSO2 replaced by DSO4", "deviation"))
    send(m, w, remark(w, "SA1", "a spare drive was used", "deviation"))
    [a] = [a for a in actions_for(m.view(Extras(now=w.now)), "KGA1", "KGA")
           if a.kind == "deviation"]
    assert (a.key, a.label, a.command, a.needs) == (
        "d", "Decide deviation 2", {"type": "deviation", "seat": "KGA1", "deviation": 2},
        ("decision", "reason"))
    assert a.detail["choices"] == ["accept", "reject"] and a.detail["seat"] == "DSO2"
    for seat in ("SA1", "KSO1", "DSO1", "WI1"):  # alice's DSO seat is not the administrator
        assert "deviation" not in kinds(m, w, seat), seat
    send(m, w, decide(w, 2))
    [a] = [a for a in actions_for(m.view(Extras(now=w.now)), "KGA1", "KGA")
           if a.kind == "deviation"]
    assert a.command["deviation"] == 3
    send(m, w, ev.Pause(at=w.at(), seat="KGA1"))
    assert kinds(m, w, "KGA1") == ["resume", "deviation"]
    send(m, w, ev.Resume(at=w.at(), seat="KGA1"))
    drive(m, w, until=7)
    send(m, w, ev.Observed(at=w.at(), step=7, value="5"))
    assert kinds(m, w, "KGA1") == ["decide", "deviation"]
    send(m, w, decide(w, 3))
    assert kinds(m, w, "KGA1") == ["decide"]


def test_raising_one_is_offered_to_every_signed_in_seat_until_the_end():
    m, w = start()
    drive(m, w, until=2)  # alice (KGA1, DSO1) is in; the others are not yet
    v = m.view(Extras(now=w.now))
    a = remark_for(v, "KGA1", "KGA")
    assert a is not None and (a.kind, a.key, a.command, a.needs) == (
        "remark", "n", {"type": "remark", "seat": "KGA1"}, ("kind", "text"))
    assert a.detail["choices"] == ["remark", "deviation"]
    assert remark_for(v, "SA1", "SA") is None  # not signed in
    assert remark_for(v, "NOBODY", "SA") is None
    assert remark_for(v, "KGA1", "SA") is None  # a seat claimed for another role
    drive(m, w, until=3)
    v = m.view(Extras(now=w.now))
    for seat in ("SA1", "KSO1", "DSO2", "WI1"):  # the witness too: an observer's only act
        assert remark_for(v, seat, role_of(seat)) is not None, seat
    assert actions_for(v, "WI1", "WI") == []  # otherwise still read-only
    drive(m, w)
    assert remark_for(m.view(Extras(now=w.now)), "KGA1", "KGA") is None


# --- the coordinator's translation and its panel -------------------------------------------------
def test_translate_turns_the_two_commands_into_events():
    r = roster()
    assert translate(r, "KGA", "WI1", {"type": "remark", "kind": "remark", "text": "t"}, 5.0) \
        == ev.Remark(at=5.0, seat="WI1", kind="remark", text="t")
    assert translate(r, "KGA", "KGA1", {"type": "deviation", "seat": "KGA1", "deviation": 2,
                                        "decision": "accept", "reason": "ok"}, 6.0) \
        == ev.DecideDeviation(at=6.0, seat="KGA1", deviation=2, decision="accept", reason="ok")
    # the machine judges who may decide: translate only attributes the seat
    assert isinstance(translate(r, "KGA", "SA1", {"type": "deviation", "deviation": 1,
                                                  "decision": "accept", "reason": "x"}, 6.0),
                      ev.DecideDeviation)


@pytest.mark.parametrize("body, reason", [
    ({"type": "remark", "text": "t"}, "remark: 'kind' must be a non-empty string"),
    ({"type": "remark", "kind": "remark"}, "remark: 'text' must be a non-empty string"),
    ({"type": "remark", "kind": "remark", "text": ""}, "'text' must be a non-empty string"),
    ({"type": "remark", "kind": "remark", "text": ["t"]}, "'text' must be a non-empty string"),
    ({"type": "remark", "kind": "k" * 257, "text": "t"}, "'kind' is longer than 256"),
    ({"type": "remark", "kind": "remark", "text": "t" * (TEXT_LIMIT + 1)},
     "'text' is longer than 4096"),
    ({"type": "remark", "kind": "remark", "text": "\ud800"}, "'text' is not UTF-8 text"),
    ({"type": "remark", "seat": "KSO1", "kind": "remark", "text": "t"}, "may not act as KSO1"),
    ({"type": "deviation", "deviation": "2", "decision": "accept", "reason": "r"},
     "'deviation' must be an integer"),
    ({"type": "deviation", "deviation": True, "decision": "accept", "reason": "r"},
     "'deviation' must be an integer"),
    ({"type": "deviation", "deviation": 2 ** 60, "decision": "accept", "reason": "r"},
     "'deviation' must be an integer"),
    ({"type": "deviation", "deviation": 2, "reason": "r"}, "'decision' must be a non-empty"),
    ({"type": "deviation", "deviation": 2, "decision": "accept"}, "'reason' must be a non-empty"),
])
def test_translate_bounds_every_field(body, reason):
    with pytest.raises(Invalid, match=reason):
        translate(roster(), "KGA", "SA1", body, 5.0)


def test_the_panel_describes_them():
    raised = ev.event_to_dict(ev.Remark(at=5, seat="DSO2", kind="deviation", text="DSO2 late"))
    assert describe({"type": "event", "at": 5, "step": 3, "event": raised}) == \
        "step 3: DSO2 raises a DEVIATION: DSO2 late"
    note = ev.event_to_dict(ev.Remark(at=5, seat="WI1", kind="remark", text="noted"))
    assert describe({"type": "event", "at": 5, "step": 3, "event": note}) == \
        "step 3: WI1 raises a remark: noted"
    decided = ev.event_to_dict(ev.DecideDeviation(at=6, seat="KGA1", deviation=2,
                                                  decision="reject", reason="not needed"))
    assert describe({"type": "event", "at": 6, "step": 4, "event": decided}) == \
        "step 4: KGA1 rejects deviation 2: not needed"


# --- the live daemon ------------------------------------------------------------------------------
def test_a_round_trip_through_the_daemon_journaled_shown_and_replayed(tmp_path: Path):
    live, journal, w, _ = _live(tmp_path, kso_quorum(0))
    wants = live.m.wants()
    assert _handle(live, "WI1", {"type": "remark", "kind": "deviation",
                                 "text": "bag 3's seal damaged, replaced by bag TEB-9"}) == \
        {"accepted": True}
    assert live.m.wants() == wants  # the ceremony goes on
    with pytest.raises(CommandRefused, match="only the KGA decides on deviations"):
        _handle(live, "SA1", {"type": "deviation", "deviation": 1, "decision": "accept",
                              "reason": "fine"})
    [rec] = _records(journal, "refused")
    assert (rec["console"], rec["command"]) == ("SA1", "DecideDeviation")
    with pytest.raises(CommandRefused, match="'text' must be a non-empty string"):
        _handle(live, "SA1", {"type": "remark", "kind": "remark", "text": ""})
    assert _handle(live, "KGA1", {"type": "deviation", "deviation": 1, "decision": "accept",
                                  "reason": "the spare bag's serial is recorded"}) == \
        {"accepted": True}
    events = [r["event"] for r in _records(journal, "event")
              if r["event"]["event"] in ("Remark", "DecideDeviation")]
    assert [e["event"] for e in events] == ["Remark", "DecideDeviation"]
    assert events[0]["seat"] == "WI1" and events[1]["deviation"] == 1
    [x] = from_dict(live.view()).deviations
    assert (x.kind, x.seat, x.decision, x.decided_by) == ("deviation", "WI1", "accept", "KGA1")
    texts = [line.text for line in live.lines]
    assert any("WI1 raises a DEVIATION: bag 3's seal damaged" in t for t in texts)
    assert any("KGA1 accepts deviation 1: the spare bag's serial is recorded" in t
               for t in texts)
    # the journal gives them back: the honest room's events from before the daemon's journal,
    # then the journal's own records (its test genesis is not a ceremony's: left out)
    fresh = replay(live.m.script, w.accepted, dict(w.previous))
    replay_journal(((e.seq, e.record) for e in journal.entries() if e.seq > 0), fresh,
                   live.m.script.sha256)
    assert fresh.deviations == live.m.deviations and fresh.snapshot() == live.m.snapshot()


# --- the screen -----------------------------------------------------------------------------------
def _seed_at_42_with_notes() -> tuple[Machine, World, Any]:
    """The seed's step 42 (the projector's busiest screen: a DSO quorum asked, the KSOs'
    approvals held) with two open deviations, a decided one and a remark."""
    m, w = start(seed_script(), dict(SEED_PREVIOUS))
    drive(m, w, until=42)
    send(m, w, remark(w, "WI1", "the witness left the room for two minutes at step 30"))
    send(m, w, remark(w, "DSO2", "bag auckland's seal was damaged, replaced by bag "
                                 "TEB-3000999 from stock, serial read twice", "deviation"))
    send(m, w, decide(w, 2, reason="the replacement's serial is in the journal"))
    send(m, w, remark(w, "SA1", "the KSO2 console was restarted", "deviation"))
    send(m, w, remark(w, "KSO1", "DSO3 replaced by DSO4 for the sealing of wellington "
                                 "because DSO3 had to leave early", "deviation"))
    v = m.view(Extras(now=w.now, connected=frozenset(m.signed_in) - {"KSO2"}))
    return m, w, v


def test_at_80x24_open_deviations_are_one_row_each_and_the_essentials_stay():
    m, w, v = _seed_at_42_with_notes()
    with console_of(v, "KGA1", w.now + 5, also=KGA) as c:
        screen = c.screen.render_text(80, 24)
        rows = screen.splitlines()
        assert len(rows) <= 24 and all(len(r) <= 80 for r in rows)
        opened = [r for r in rows if r.startswith("OPEN DEVIATION")]
        assert [r.split(" — ")[0] for r in opened] == ["OPEN DEVIATION 3", "OPEN DEVIATION 4"]
        assert opened[0] == "OPEN DEVIATION 3 — SA1 at step 42: the KSO2 console was restarted"
        assert opened[1].endswith("…")  # cut short: one row each
        # the essentials of test_console_layout's projector are all still there
        assert "Step 42  [DSO]  quorum" in screen
        assert "YOU: [d] Decide deviation 3; [p] Approve step 43's backup" in screen
        assert "waiting for DSO1 or DSO2: 1 more DSO approval(s) of step 43's backup" in screen
        assert "KSO2  Dave Keystore: signed in, DISCONNECTED" in screen
        assert "[d] deviation" in screen and "[n] remark" in screen and "[ctrl-c] close" \
            in screen


def test_large_screens_show_the_outcome_of_decided_ones_and_remarks():
    m, w, v = _seed_at_42_with_notes()
    with console_of(v, "SA1", w.now + 5) as c:
        screen = c.screen.render_text(200, 50)
        assert "| Remarks and deviations |" in screen
        assert ("#1 remark — WI1 at step 42: the witness left the room for two minutes at "
                "step 30") in screen
        assert ("#2 deviation ACCEPTED by KGA1: the replacement's serial is in the journal — "
                "raised by DSO2 at step 42: bag auckland's seal was damaged") in screen
        assert ("OPEN DEVIATION 4 — KSO1 at step 42: DSO3 replaced by DSO4 for the sealing of "
                "wellington because DSO3 had to leave early") in screen
        assert "[d]" not in screen  # only the administrator decides
        at80 = c.screen.render_text(80, 24)
        assert len(at80.splitlines()) <= 24


def test_more_open_deviations_than_fit_are_counted_on_one_row():
    m, w = signed_in()
    for i in range(5):
        send(m, w, remark(w, "SA1", f"deviation number {i + 1}", "deviation"))
    with console_of(m.view(Extras(now=w.now)), "WI1", w.now) as c:
        rows = c.screen.render_text(80, 24).splitlines()
        opened = [r for r in rows if "OPEN DEVIATION" in r or "more open deviations" in r]
        assert opened == ["OPEN DEVIATION 1 — SA1 at step 3: deviation number 1",
                          "OPEN DEVIATION 2 — SA1 at step 3: deviation number 2",
                          "… and 3 more open deviations, decided oldest first"]


def test_a_witness_raises_a_deviation_from_a_read_only_console():
    m, w = signed_in()
    with console_of(m.view(Extras(now=w.now)), "WI1", w.now) as c:
        text = c.text()
        assert "You observe: this console is read-only. [n] raises a remark or a deviation." \
            in text
        assert "no actions  [n] remark  [ctrl-c] close" in text
        assert c.press("a", "p") == []  # still nothing else
        assert c.press("n") == []
        assert "[d] a deviation from the script" in c.text()
        sent = c.press("d", "the witness saw bag 3's seal torn\r")
    assert sent == [{"type": "remark", "seat": "WI1", "kind": "deviation",
                     "text": "the witness saw bag 3's seal torn"}]


def test_a_remark_longer_than_the_limit_is_not_sent():
    m, w = signed_in()
    with console_of(m.view(Extras(now=w.now)), "SA1", w.now) as c:
        assert c.press("n", "r", "x" * (NOTE_LIMIT + 1) + "\r") == []
        assert "at most 1000 characters" in c.screen.message


def test_the_kga_decides_the_oldest_open_deviation_with_one_key_and_a_reason():
    m, w = signed_in()
    send(m, w, remark(w, "DSO2", "DSO2 replaced by DSO4", "deviation"))
    with console_of(m.view(Extras(now=w.now)), "KGA1", w.now, also=KGA) as c:
        c.press("d")
        text = c.text()
        assert "Deviation 1, raised by DSO2 (Carol Keystore) at step 3:" in text
        assert "DSO2 replaced by DSO4" in text and "[r] reject it, with a reason" in text
        sent = c.press("r", "DSO4 is not enrolled for this\r")
    assert sent == [{"type": "deviation", "seat": "KGA1", "deviation": 1, "decision": "reject",
                     "reason": "DSO4 is not enrolled for this"}]
    # and once decided, it is offered no more: the view moved on under the console
    send(m, w, decide(w, 1, "reject", "DSO4 is not enrolled for this"))
    v = m.view(Extras(now=w.now, connected=frozenset(m.signed_in)))
    with console_of(v, "KGA1", w.now, also=KGA) as c:
        assert c.press("d") == [] and "not possible now" in c.screen.message
        screen = c.screen.render_text(80, 24)  # a quiet screen has room for the outcome
        assert "#1 deviation REJECTED by KGA1: DSO4 is not enrolled for this — raised by" \
            in screen
        assert "OPEN DEVIATION" not in screen


def test_the_view_classes_stay_plain_data():
    """DeviationView's `open` is a property, not a field: the wire form is its fields only."""
    m, w = signed_in()
    send(m, w, remark(w, "SA1", "x", "deviation"))
    [x] = m.view(Extras(now=w.now)).deviations
    assert "open" not in {f.name for f in dataclasses.fields(x)} and x.open
