"""The rehearsal's scripted officers act as consoles act (issue 12, item 5): they take the
keystroke `actions_for` offers them from the view every console is shown, sign it with
`consoles.signing` and have it translated as the coordinator translates a console's command.
So what a console would not be offered, a scripted officer does not do either."""

from __future__ import annotations

from typing import Any

from ceremony.approval import check_approval
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from coordinator.rehearsal import officers
from coordinator.rehearsal.officers import Person, ScriptedRoom
from tests.machine_helpers import PEOPLE, at_kso_quorum, private_key, roster


def _room(m: Any, w: Any) -> ScriptedRoom:
    people = [Person(p, name, org, seats) for p, (name, org, seats) in PEOPLE.items()]
    keys = {seat: private_key(seat) for seat in roster().officers}
    return ScriptedRoom(m, people, keys, w.at, lambda label: w.drive_serials[label],
                        lambda bag: w.bag_serials[bag], {})


def test_a_scripted_kso_approves_exactly_what_the_view_shows() -> None:
    m, w = at_kso_quorum(0)
    [want] = [x for x in m.wants(now=w.now) if isinstance(x, d.RequestApproval)]
    [event] = _room(m, w).answer(want, {})
    assert isinstance(event, ev.Approve) and m.roster.officers[event.seat].role == "KSO"
    check_approval(event.approval, ceremony=m.script.ceremony.id, step=want.step,
                   script_sha256=m.script.sha256, operation=want.digest, now=w.now,
                   max_lifetime=want.expires_seconds + 60)
    m.handle(event)  # and the machine takes it


def test_what_a_console_is_not_offered_a_scripted_officer_does_not_do(monkeypatch) -> None:
    m, w = at_kso_quorum(0)
    [want] = [x for x in m.wants(now=w.now) if isinstance(x, d.RequestApproval)]
    monkeypatch.setattr(officers, "actions_for", lambda view, seat, role: [])
    assert _room(m, w).answer(want, {}) == []


def test_the_second_approval_comes_from_another_person() -> None:
    m, w = at_kso_quorum(1)
    [want] = [x for x in m.wants(now=w.now) if isinstance(x, d.RequestApproval)]
    [event] = _room(m, w).answer(want, {})
    assert isinstance(event, ev.Approve)
    first = {m.roster.officers[s].person for s in want.approved_by}
    assert m.roster.officers[event.seat].person not in first
