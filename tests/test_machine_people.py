"""People, not only roles: a quorum that names the seats that may approve it, and `distinct_from`
(on a person's step or a quorum) for "two different people" beyond what the role rules say.

The mini script's honest room has carol as KSO1 and DSO2, and alice as KGA1 and DSO1, as its
`[separation]` allows: so "the DSO who approves the device backup is not one of the KSOs who
approved the keystore backup" is a rule the role rules alone cannot say."""

from __future__ import annotations

import pytest

from ceremony.errors import BadInput
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import Machine
from ceremony.script.errors import ScriptErrors
from ceremony.script.load import load_script_text
from ceremony.view import Extras
from consoles.actions import actions_for
from tests.machine_helpers import (
    MINI,
    MINI_PREVIOUS,
    approval,
    drive,
    refused,
    replay,
    roster,
    seal,
    send,
    signoff,
    start,
)

DEVICE_QUORUM = '''id = "device-backup"
role = "DSO"
m = 1
authorizes = 16
expires = "PT5M"'''


def _mini(old: str, new: str):  # type: ignore[no-untyped-def]
    text = MINI.read_text()
    assert old in text
    return load_script_text(text.replace(old, new), "people.toml")


def _device_request(m: Machine, w) -> d.RequestApproval:  # type: ignore[no-untyped-def]
    """Drive to the device-backup quorum step (15) and return its request."""
    drive(m, w, until=15)
    [want] = [x for x in m.wants(now=w.now) if isinstance(x, d.RequestApproval)]
    assert want.quorum == "device-backup"
    return want


def _approve(m: Machine, w, seat: str, want: d.RequestApproval):  # type: ignore[no-untyped-def]
    at = w.at()
    return ev.Approve(at=at, seat=seat, approval=approval(
        w, seat, want.step, want.digest, want.expires_seconds, at=at))


def test_a_quorum_apart_from_another_quorum_refuses_its_approvers() -> None:
    script = _mini(DEVICE_QUORUM, DEVICE_QUORUM + "\ndistinct_from = [13, 14]")
    m, w = start(script, MINI_PREVIOUS)
    want = _device_request(m, w)
    assert m.people_of(14) >= {"carol", "dave"}  # the two KSOs approved the keystore backup
    # carol approved as KSO1: as DSO2 she may not approve again
    refused(m, _approve(m, w, "DSO2", want), "approval of quorum device-backup",
            "someone other than whoever did step 13", "DSO2's holder did")
    view = m.view(Extras(now=w.now))
    [q] = [q for q in view.quorums if q.quorum == "device-backup"]
    assert q.waiting_for == ("DSO1",)  # who may approve is on every screen
    assert not [a for a in actions_for(view, "DSO2", "DSO") if a.kind == "approve"]
    assert [a.kind for a in actions_for(view, "DSO1", "DSO")].count("approve") == 1
    send(m, w, _approve(m, w, "DSO1", want))
    drive(m, w)
    assert m.status == "completed"
    assert replay(script, w.accepted, w.previous)._state == m._state


def test_without_the_rule_the_same_person_approves_both_quorums() -> None:
    """The control: the role rules allow carol to approve as KSO1 and as DSO2."""
    m, w = start(None, MINI_PREVIOUS)
    want = _device_request(m, w)
    send(m, w, _approve(m, w, "DSO2", want))
    assert m.quorum_status("device-backup") == ["DSO2"]


def test_a_quorum_that_names_its_seats_refuses_any_other() -> None:
    script = _mini(DEVICE_QUORUM, DEVICE_QUORUM + '\nseats = ["DSO1"]')
    m, w = start(script, MINI_PREVIOUS)
    want = _device_request(m, w)
    refused(m, _approve(m, w, "DSO2", want), "quorum device-backup is approved by DSO1 only",
            "DSO2 may not approve it")
    view = m.view(Extras(now=w.now))
    [q] = [q for q in view.quorums if q.quorum == "device-backup"]
    assert q.waiting_for == ("DSO1",)
    send(m, w, _approve(m, w, "DSO1", want))
    assert m.quorum_status("device-backup") == ["DSO1"]


def test_a_quorum_seat_the_roster_lacks_stops_the_machine_from_starting() -> None:
    script = _mini(DEVICE_QUORUM, DEVICE_QUORUM + '\nseats = ["DSO1", "DSO7"]')
    with pytest.raises(BadInput, match="quorum device-backup names seat DSO7, which the roster "
                       "does not hold as DSO"):
        Machine(script, roster(), MINI_PREVIOUS)


SEAL = '''n = 25
actor = "DSO"'''


def test_a_person_step_apart_from_an_earlier_one_is_offered_to_the_others_only() -> None:
    # step 24: the KGA (alice) records the bag serial; 25: a DSO seals it, not alice (DSO1)
    script = _mini(SEAL, SEAL + "\ndistinct_from = [24]")
    m, w = start(script, MINI_PREVIOUS)
    drive(m, w, until=25)
    assert m.people_of(24) == {"alice"}
    [ask] = [x for x in m.wants(now=w.now) if isinstance(x, d.Ask)]
    assert ask.detail["not_seats"] == ["DSO1", "KGA1"]
    view = m.view(Extras(now=w.now))
    [asked] = [a for a in view.step.asked if a.kind == "seal"]  # type: ignore[union-attr]
    assert asked.text.endswith("(not whoever did step 24)")
    assert "record" not in [a.kind for a in actions_for(view, "DSO1", "DSO")]
    assert [a.kind for a in actions_for(view, "DSO2", "DSO")].count("record") == 1
    step = m.script.step(25)
    refused(m, seal(w, "DSO1", 25, "backup", step.contents, w.bag_serials["backup"]),
            "step 25 must be done by someone other than whoever did step 24", "DSO1's holder")
    drive(m, w)
    assert m.status == "completed" and m.custody["backup"]["custodian"] == "DSO2"


@pytest.mark.parametrize("old, new, words", [
    ('n = 17\nactor = "KGA"', 'n = 17\nactor = "KGA"\ndistinct_from = [16]',
     ["distinct_from names whose people may not do a person's step", "'verify' is not one"]),
    (SEAL, SEAL + "\ndistinct_from = [26]", ["step 26 does not come before this step"]),
    (SEAL, SEAL + "\ndistinct_from = [23]", ["step 23 (drive.eject) is the coordinator's work"]),
    (SEAL, SEAL + "\ndistinct_from = [99]", ["step 99 does not exist"]),
    (DEVICE_QUORUM, DEVICE_QUORUM + "\ndistinct_from = [15]",
     ["step 15 collects quorum 'device-backup' itself"]),
    (DEVICE_QUORUM, DEVICE_QUORUM + "\ndistinct_from = [17]",
     ["step 17 does not come before this step"]),
    ('id = "keystore-backup"\nrole = "KSO"\nm = 2',
     'id = "keystore-backup"\nrole = "KSO"\nm = 2\nseats = ["KSO1"]',
     ["quorum 'keystore-backup' needs 2 different people but lists 1 seat"]),
])
def test_the_loader_names_a_rule_that_could_never_hold(old: str, new: str,
                                                        words: list[str]) -> None:
    with pytest.raises(ScriptErrors) as err:
        _mini(old, new)
    text = str(err.value)
    assert all(x in text for x in words), text
    assert "people.toml:" in text  # file and line


SIGNOFF = '''action = "signoff"
text = "KGA signs the journal's checkpoint"'''


def test_a_sign_off_may_name_an_observer_role_whose_people_sign_the_record() -> None:
    """The auditor signs what they audited: an observer never acts in the ceremony, but a
    sign-off naming its role asks it to sign the same checkpoint, from its own console."""
    script = _mini(SIGNOFF, SIGNOFF.replace("action", 'cosigners = ["WI"]\naction'))
    m, w = start(script, MINI_PREVIOUS)
    drive(m, w, until=31)
    checkpoint = f"keyrite.test/{script.ceremony.id}\n40\n"
    send(m, w, signoff(w, "KGA1", checkpoint))
    assert m.current is not None and m.current.n == 31  # the witness has not signed yet
    assert m.signoff_owing(m.current) == {"WI": ["WI1"]}
    view = m.view(Extras(now=w.now, checkpoint=checkpoint))
    [act] = actions_for(view, "WI1", "WI")
    assert (act.kind, act.command["seat"], act.command["checkpoint"]) == (
        "signoff", "WI1", checkpoint)
    refused(m, signoff(w, "WI1", "another checkpoint\n"), "WI1 signed another checkpoint")
    send(m, w, signoff(w, "WI1", checkpoint))
    assert m.current is not None and m.current.n == 32
    assert actions_for(m.view(Extras(now=w.now)), "WI1", "WI") == []  # read-only again
    assert replay(script, w.accepted, w.previous)._state == m._state


def test_without_it_an_observer_is_offered_nothing_and_may_not_sign_off() -> None:
    m, w = start(None, MINI_PREVIOUS)
    drive(m, w, until=31)
    view = m.view(Extras(now=w.now, checkpoint="c\n"))
    assert actions_for(view, "WI1", "WI") == []
    refused(m, signoff(w, "WI1", "c\n"), "step 31 is signed off by the KGA", "WI1 (WI)")


def test_a_sign_off_may_not_name_an_undeclared_role() -> None:
    with pytest.raises(ScriptErrors, match="'AUD' is not a declared role"):
        _mini(SIGNOFF, SIGNOFF.replace("action", 'cosigners = ["AUD"]\naction'))



def test_a_step_for_one_seat_apart_from_a_step_for_the_same_seat_could_never_be_done() -> None:
    record = 'n = 24\nactor = "KGA"'
    script = MINI.read_text().replace(record, record + '\nseat = "KGA1"').replace(
        SEAL, SEAL.replace("DSO", "KGA") + '\nseat = "KGA1"\ndistinct_from = [24]')
    with pytest.raises(ScriptErrors, match="step 24 is for seat KGA1 too, and this step only "
                       "for KGA1: nobody can do it apart from step 24"):
        load_script_text(script, "people.toml")


def test_an_untrusted_role_that_acts_could_never_sign_in() -> None:
    witness = 'trusted = false\nobserver = true'
    assert witness in MINI.read_text()
    with pytest.raises(ScriptErrors, match="WI is untrusted but acts: an untrusted participant "
                       "is signed in by the administrator vouching for their ID document"):
        _mini(witness, "trusted = false")
