"""The room's events as the machine judges them: the administrator's pause, passwords typed for
the backup and the restore drill, approvals lapsing, consoles coming and going, and when a section
began. These were the daemon's own decisions once; now a replayed journal rebuilds them too."""

from __future__ import annotations

from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from tests.machine_helpers import (
    approval,
    at_kso_quorum,
    drive,
    kso_quorum,
    person_of,
    refused,
    replay,
    seed_script,
    send,
    start,
)


def _backup_execute(x: d.Decision) -> bool:
    return isinstance(x, d.Execute) and x.operation.get("op") == "backup"


def _drill(x: d.Decision) -> bool:
    return isinstance(x, d.Perform) and bool(x.params.get("secrets"))


def test_only_the_administrator_pauses_and_a_paused_room_takes_no_ones_act() -> None:
    m, w = at_kso_quorum(0)
    refused(m, ev.Pause(at=w.at(), seat="KSO1"), "only the KGA may pause")
    send(m, w, ev.Pause(at=w.at(), seat="KGA1"))
    assert m.paused
    refused(m, ev.Pause(at=w.at(), seat="KGA1"), "already paused")
    [want] = [x for x in m.wants() if isinstance(x, d.RequestApproval) and x.role == "KSO"]
    a = approval(w, "KSO1", want.step, want.digest, 300)
    refused(m, ev.Approve(at=w.at(), seat="KSO1", approval=a), "paused by the administrator")
    send(m, w, ev.Resume(at=w.at(), seat="KGA1"))
    assert not m.paused
    send(m, w, ev.Approve(at=w.at(), seat="KSO1", approval=a))
    assert m.quorum_status(want.quorum) == ["KSO1"]


def test_work_already_under_way_is_still_recorded_while_paused() -> None:
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.Observe))
    [want] = m.wants()
    assert isinstance(want, d.Observe)
    send(m, w, ev.Pause(at=w.at(), seat="KGA1"))
    refused(m, ev.Acknowledge(at=w.at(), seat="KGA1"), "paused")
    # the observation the coordinator had already started comes back: it is taken
    from tests.machine_helpers import observation

    send(m, w, ev.Observed(at=w.at(), step=want.step, value=observation(w, want)))
    assert want.step in m.completed


def test_the_backup_password_is_taken_from_the_steps_actor_and_only_when_asked() -> None:
    m, w = start()
    refused(m, ev.PasswordEntered(at=w.at(), seat="SA1", step=1, name="device-backup",
                                  purpose="backup"), "no device-backup password is asked")
    drive(m, w, before=_backup_execute)
    ask = m.password_asked()
    assert ask is not None and (ask.names, ask.purpose, ask.actor) == (
        ("device-backup",), "backup", "SA")
    step = ask.step
    refused(m, ev.PasswordEntered(at=w.at(), seat="KSO1", step=step, name="device-backup",
                                  purpose="backup"), "the SA enters")
    refused(m, ev.PasswordEntered(at=w.at(), seat="SA1", step=step, name="device-backup",
                                  purpose="backup", verified=False), "not the pre-generated")
    refused(m, ev.PasswordEntered(at=w.at(), seat="SA1", step=step, name="device-backup",
                                  purpose="drill"), "asked for the backup")
    send(m, w, ev.PasswordEntered(at=w.at(), seat="SA1", step=step, name="device-backup",
                                  purpose="backup"))


def test_the_drill_password_comes_from_a_second_officer_even_after_a_replay() -> None:
    m, w = start(seed_script())  # the seed's backup is checked by a restore drill
    drive(m, w, before=_backup_execute)
    step = m.password_asked().step  # type: ignore[union-attr]
    send(m, w, ev.PasswordEntered(at=w.at(), seat="SA1", step=step, name="device-backup",
                                  purpose="backup"))
    drive(m, w, before=_drill)
    ask = m.password_asked()
    assert ask is not None and ask.purpose == "drill" and ask.not_person == person_of("SA1")
    again = replay(w.script, w.accepted, w.previous)
    assert again.password_asked() == ask  # who typed it at the backup is in the journal
    refused(again, ev.PasswordEntered(at=w.at(), seat="SA1", step=ask.step,
                                      name="device-backup", purpose="drill"), "second officer")
    refused(again, ev.PasswordEntered(at=w.at(), seat="WI1", step=ask.step,
                                      name="device-backup", purpose="drill"), "trusted role")
    send(again, w, ev.PasswordEntered(at=w.at(), seat="KSO1", step=ask.step,
                                      name="device-backup", purpose="drill"))


def test_lapsed_approvals_are_reported_once_each_even_when_an_event_came_between() -> None:
    m, w = at_kso_quorum(0)
    [want] = [x for x in m.wants() if isinstance(x, d.RequestApproval) and x.role == "KSO"]
    for seat in ("KSO1", "KSO2"):
        send(m, w, ev.Approve(at=w.at(), seat=seat,
                              approval=approval(w, seat, want.step, want.digest, 30)))
    later = w.now + 60
    assert m.lapses(w.now) == ()
    # an event arrives after both lapsed, before the coordinator looked: nothing is lost
    send(m, w, ev.Presence(at=later, person="carol", seats=("DSO2", "KSO1", "SA2"),
                           connected=True))
    w.now = later
    lapses = m.lapses(later)
    assert sorted(x.seat for x in lapses) == ["KSO1", "KSO2"]
    assert m.quorum_status(want.quorum) == []
    for x in lapses:
        send(m, w, x)
    assert m.lapses(w.at()) == ()
    refused(m, lapses[0], "has not lapsed unreported")
    assert replay(w.script, w.accepted, w.previous).lapses(w.now) == ()


def test_presence_changes_are_the_signed_in_peoples_and_each_is_reported_once() -> None:
    m, w = start()
    assert m.presence_changes({"carol"}, w.now) == ()  # nobody is signed in yet
    drive(m, w, before=kso_quorum(0))
    [change] = m.presence_changes({"carol", "nobody"}, w.now)
    # every seat of hers, signed in or not
    assert (change.person, change.connected, change.seats) == ("carol", True,
                                                               ("DSO2", "KSO1", "SA2"))
    send(m, w, change)
    assert m.present("carol") and m.presence_changes({"carol"}, w.now) == ()
    [gone] = m.presence_changes(set(), w.now)
    assert not gone.connected


def test_a_section_begins_with_the_event_that_moved_the_ceremony_into_it() -> None:
    m, w = start()
    assert m.section_since is None
    first = m.current.section  # type: ignore[union-attr]
    drive(m, w, before=lambda x: m.current is not None and m.current.section != first)
    moved = w.accepted[-1]
    assert m.current.section != first  # type: ignore[union-attr]
    assert m.section_since == moved.at
    assert replay(w.script, w.accepted, w.previous).section_since == moved.at
