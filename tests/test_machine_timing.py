"""Approvals that arrive early, time stamps that go backwards, and strict event decoding."""

from __future__ import annotations

import pytest

from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.script import load_script_text
from tests.machine_helpers import MINI, approval, drive, refused, replay, send, start


def at_backup_quorum(script_text: str | None = None):
    """The mini ceremony at its first keystore-backup quorum step (13), the backup planned."""
    m, w = start(load_script_text(script_text) if script_text else None)
    drive(m, w, before=lambda want: isinstance(want, d.RequestApproval)
          and want.quorum == "keystore-backup")
    assert m.current is not None and m.current.n == 13
    [want] = m.wants()
    assert isinstance(want, d.RequestApproval)
    return m, w, want


def test_approvals_given_early_complete_the_later_quorum_step_at_once() -> None:
    text = MINI.read_text()
    one = 'quorum = "keystore-backup"\ncount = 1'
    assert text.count(one) == 1
    # step 13 now collects both KSO approvals, so step 14 (count 2) finds its count already met
    m, w, want = at_backup_quorum(text.replace(one, 'quorum = "keystore-backup"\ncount = 2'))
    for seat in ("KSO1", "KSO2"):
        a = approval(w, seat, want.step, want.digest, 300)
        send(m, w, ev.Approve(at=w.at(), seat=seat, approval=a))
    # step 14 (count 2) has nothing left to ask: it completed as soon as it was reached
    assert m._state.completed[-2:] == [13, 14]
    assert m.current is not None and m.current.n == 15
    assert m.wants(), "the machine must want something at step 15"
    again = replay(m.script, w.accepted, w.previous)
    assert again.snapshot() == m.snapshot()


def test_an_event_stamped_earlier_is_judged_at_the_latest_time_seen() -> None:
    m, w, want = at_backup_quorum()
    first = approval(w, "KSO1", want.step, want.digest, 300)
    late = w.at() + 100
    send(m, w, ev.Approve(at=late, seat="KSO1", approval=first))
    assert m._state.now == late
    # KSO2's approval expires before `late`, and comes stamped as if it were on time
    stale = approval(w, "KSO2", want.step, want.digest, 50)
    refused(m, ev.Approve(at=late - 90, seat="KSO2", approval=stale), "expired")
    assert m._state.now == late


def test_journal_events_are_decoded_strictly() -> None:
    e = ev.Acknowledge(at=1.0, seat="KGA1")
    d_ = ev.event_to_dict(e)
    assert ev.event_from_dict(d_) == e
    with pytest.raises(ValueError, match="unknown field"):
        ev.event_from_dict({**d_, "seat_override": "SA1"})
    with pytest.raises(ValueError, match="lacks field"):
        ev.event_from_dict({"event": "Acknowledge", "at": 1.0})
