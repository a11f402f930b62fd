"""The ceremony view and each officer's actions, built from a real machine driven by the honest
room of tests/machine_helpers.py and stopped at the moments a console must get right: sign-in,
a verify and its mismatch, a quorum with one of two KSO approvals, HSM progress, the end.

Step numbers are those of tests/scripts/mini.toml.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from ceremony.digests import colon_hex, pgp_words
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import Machine
from ceremony.view import (
    NAME_MAX,
    CeremonyView,
    Extras,
    JournalLine,
    LooseDrive,
    Progress,
    from_dict,
    to_dict,
)
from consoles.actions import actions_for
from tests.machine_helpers import (
    World,
    at_kso_quorum,
    drive,
    honest_event,
    role_of,
    seed_script,
    send,
    start,
)

SEATS = ("KGA1", "SA1", "KSO1", "KSO2", "DSO1", "DSO2", "WI1")


def view(m: Machine, w: World, **extras: Any) -> CeremonyView:
    v = m.view(Extras(now=w.now, **extras))
    # every view survives the wire unchanged
    assert from_dict(json.loads(json.dumps(to_dict(v)))) == v
    return v


def kinds(v: CeremonyView, seat: str) -> list[str]:
    return [a.kind for a in actions_for(v, seat, role_of(seat))]


def test_before_anyone_signs_in_every_officer_may_only_sign_in_and_witnesses_nothing():
    m, w = start()
    v = view(m, w)
    assert v.status == "running" and v.step is not None and v.step.n == 1
    assert (v.step.position, v.step.total) == (1, 32)
    assert v.section is not None and v.section_estimate > 0
    assert all(not p.signed_in for p in v.participants)
    for seat in SEATS:
        expected = [] if seat == "WI1" else ["signin"]
        assert kinds(v, seat) == expected, seat
    (signin,) = actions_for(v, "KSO1", "KSO")
    assert signin.key == "s"
    assert signin.command == {"type": "signin", "seat": "KSO1", "seats": ["KSO1"]}


def test_signin_step_is_confirmed_by_the_kga_only_once_every_role_is_in():
    m, w = start()
    drive(m, w, until=2)  # the KGA (alice, also DSO1) signed in before step 1
    assert set(m.signed_in) == {"KGA1", "DSO1"}
    v = view(m, w)
    (asked,) = v.step.asked  # type: ignore[union-attr]
    assert asked.kind == "signin" and asked.detail["missing"] == {"KSO": 2, "SA": 1}
    assert "2 more KSO" in asked.text
    assert "acknowledge" not in kinds(v, "KGA1")
    drive(m, w, before=lambda x: isinstance(x, d.Ask) and x.kind == "signin"
          and not x.detail["missing"])
    v = view(m, w)
    assert kinds(v, "KGA1") == ["acknowledge", "admit", "pause"]
    assert kinds(v, "SA1") == [] and kinds(v, "WI1") == []


def test_kga_may_complete_a_step_marked_so():
    m, w = start()
    drive(m, w, until=3)  # SA acknowledges; the KGA may complete it
    v = view(m, w)
    assert kinds(v, "SA1") == ["acknowledge"]
    assert kinds(v, "KGA1") == ["acknowledge", "admit", "pause"]
    assert kinds(v, "KSO1") == []
    ack = actions_for(v, "SA1", "SA")[0]
    assert ack.command == {"type": "acknowledge", "seat": "SA1", "step": 3}


def test_a_verify_shows_the_record_then_a_mismatch_gives_the_kga_the_decision():
    m, w = start()
    drive(m, w, until=6)
    v = view(m, w)
    assert v.step is not None and v.step.action == "verify"
    assert v.step.expected == w.previous["hsm_fingerprint"] and v.step.observed is None
    assert [a.kind for a in v.step.asked] == ["observe"] and v.step.asked[0].role == ""
    send(m, w, ev.Observed(at=w.at(), step=6, value="ffff-0000"))
    v = view(m, w)
    assert v.status == "exception"
    assert v.exception is not None and v.exception.acceptable
    assert (v.step.observed, v.step.expected) == ("ffff-0000", w.previous["hsm_fingerprint"])
    (decide,) = actions_for(v, "KGA1", "KGA")
    assert decide.key == "x" and decide.needs == ("decision", "reason")
    assert decide.detail["choices"] == ["retry", "accept", "abort"]
    assert decide.command == {"type": "decide", "seat": "KGA1", "step": 6}
    for seat in ("SA1", "KSO1", "KSO2", "WI1"):
        assert kinds(v, seat) == [], seat


def test_a_failed_operation_may_not_be_accepted():
    m, w = start()
    drive(m, w, until=5)
    send(m, w, ev.PerformFailed(at=w.at(), step=5, error="token not found"))
    v = view(m, w)
    assert v.exception is not None and v.exception.kind == "failure"
    assert actions_for(v, "KGA1", "KGA")[0].detail["choices"] == ["retry", "abort"]


def test_the_sa_approves_the_purge_alone_and_no_kso_is_offered_it():
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.RequestApproval))
    v = view(m, w)
    (q,) = v.quorums
    assert (q.role, q.step, q.have, q.need, q.operation["op"]) == ("SA", 8, 0, 1, "purge")
    assert q.expires_at is None and q.waiting_for == ("SA1",)
    assert kinds(v, "SA1") == ["approve", "refuse"]
    for seat in ("KSO1", "KSO2", "DSO1", "WI1"):
        assert kinds(v, seat) == [], seat
    assert kinds(v, "KGA1") == ["admit", "pause"]


def test_both_ksos_may_approve_first_and_any_order_is_fine():
    m, w = at_kso_quorum(have=0)
    v = view(m, w)
    assert kinds(v, "KSO1") == ["approve", "refuse"]
    assert kinds(v, "KSO2") == ["approve", "refuse"]


def test_one_of_two_kso_approvals():
    m, w = at_kso_quorum(have=1)
    v = view(m, w)
    (q,) = v.quorums
    assert (q.quorum, q.have, q.need, q.approved_by, q.waiting_for) == (
        "keystore-backup", 1, 2, ("KSO1",), ("KSO2",))
    approval = m._state.approvals["keystore-backup"][0].approval
    assert q.expires_at == approval.expires and q.expires_seconds == 300
    # KSO1 has approved: refuse only; KSO2 approves; nobody else of another role
    assert kinds(v, "KSO1") == ["refuse"]
    assert kinds(v, "KSO2") == ["approve", "refuse"]
    for seat in ("SA1", "DSO1", "DSO2", "WI1"):
        assert kinds(v, seat) == [], seat
    approve = actions_for(v, "KSO2", "KSO")[0]
    assert approve.key == "p" and approve.needs == ("passphrase",)
    assert approve.command == {"type": "approve", "seat": "KSO2", "step": 16,
                               "quorum": "keystore-backup", "digest": q.digest}
    assert approve.detail["operation"]["op"] == "backup"
    # carol holds KSO1 and DSO2: as KSO she approved, and her DSO seat is not asked (yet)
    assert kinds(v, "DSO2") == []


def test_an_approval_that_lapsed_is_gone_from_the_view():
    m, w = at_kso_quorum(have=1)
    later = m.view(Extras(now=w.now + 301))
    (q,) = later.quorums
    assert q.have == 0 and q.expires_at is None and set(q.waiting_for) == {"KSO1", "KSO2"}


def test_a_quorum_holding_approvals_is_in_every_view_until_used_or_lapsed():
    """Between the seed's quorum steps (38, 40-42) nobody is asked to approve, yet the KSOs'
    approvals are counting down: every view carries that quorum, with who approved and when each
    approval lapses, until its operation starts or the approvals lapse."""
    m, w = start(seed_script())
    drive(m, w, until=38)
    v = view(m, w)
    (q,) = v.quorums
    assert (q.quorum, q.asked, q.have, q.need, q.approved_by, q.waiting_for) == (
        "keystore-backup", False, 1, 2, ("KSO1",), ("KSO2",))
    approval = m._state.approvals["keystore-backup"][0].approval
    assert q.lapses == (approval.expires,) and q.expires_at == approval.expires
    assert q.step == 43 and q.operation["op"] == "backup" and q.digest
    for seat in SEATS:  # held, not asked: nobody is offered approve (or refuse) at step 38
        assert not {"approve", "refuse"} & set(kinds(v, seat)), seat
    drive(m, w, until=42)
    v = view(m, w)
    assert [(x.quorum, x.asked, x.have) for x in v.quorums] == [
        ("device-backup", True, 0), ("keystore-backup", False, 2)]
    held = v.quorums[1]
    assert held.waiting_for == () and len(held.lapses) == 2
    assert held.expires_at == min(held.lapses)
    assert kinds(v, "KSO1") == [] and kinds(v, "DSO1") == ["approve", "refuse"]
    lapsed = m.view(Extras(now=held.expires_at + 1))
    assert [x.quorum for x in lapsed.quorums] == ["device-backup", "keystore-backup"]
    assert lapsed.quorums[1].asked is False and lapsed.quorums[1].have == 1  # one lapsed
    gone = m.view(Extras(now=max(held.lapses) + 1))
    assert [x.quorum for x in gone.quorums] == ["device-backup"]
    drive(m, w, before=lambda x: isinstance(x, d.Execute))  # 43: both quorums in hand
    assert [(x.quorum, x.asked) for x in view(m, w).quorums] == [
        ("keystore-backup", False), ("device-backup", False)]
    send(m, w, ev.OperationStarted(at=w.at(), step=43, digest=held.digest))
    assert view(m, w).quorums == ()  # used


def test_record_and_seal_ask_their_actor_for_a_value():
    m, w = start()
    drive(m, w, until=18)
    v = view(m, w)
    (rec,) = [a for a in actions_for(v, "KGA1", "KGA") if a.kind == "record"]
    assert rec.key == "v" and rec.needs == ("value",) and rec.detail == {"format": "usb-serial"}
    assert rec.command == {"type": "record", "seat": "KGA1", "step": 18}
    drive(m, w, until=25)
    v = view(m, w)
    assert kinds(v, "DSO1") == ["record"] and kinds(v, "DSO2") == ["record"]
    seal = actions_for(v, "DSO1", "DSO")[0]
    assert seal.detail == {"format": "bag-serial", "bag": "backup",
                           "contents": ["drive:backup", "password:device-backup"]}
    assert seal.needs == ("value", "passphrase")  # the custodian signs for the bag


def test_custody_and_drives_after_the_seal():
    m, w = start()
    drive(m, w, until=26)
    v = view(m, w, drives_seen=frozenset({"backup"}))
    (bag,) = v.bags
    assert bag.serial == "TEB000BACKUP" and bag.custodian == "DSO1"
    assert bag.custodian_name == "Alice Admin"
    backup = next(x for x in v.drives if x.label == "backup")
    assert backup.serial == "AA11BB22" and backup.seen
    assert not next(x for x in v.drives if x.label == "log").seen
    assert v.loose_drives == ()
    spare = LooseDrive("0000WRONG0001", "Generic", "Flash_Disk")
    v = view(m, w, loose_drives=(spare,))
    assert v.loose_drives == (spare,) and from_dict(to_dict(v)).loose_drives == (spare,)


# --- the printed transcript ---------------------------------------------------------------------
def transcript_steps(m: Machine) -> tuple[int, int]:
    """The script's transcript step and the record step that confirms its digest (found by action
    and by `equals`, never by number)."""
    n = next(x.n for x in m.steps if x.action == "transcript")
    confirm = next(x.n for x in m.steps if x.action == "record" and x.equals == n)
    return n, confirm


def test_the_transcript_is_in_every_view_from_the_step_that_writes_it():
    m, w = start()
    n, confirm = transcript_steps(m)
    drive(m, w, until=n)
    v = view(m, w)
    assert v.transcript is None and to_dict(v)["transcript"] is None  # not written yet
    send(m, w, honest_event(m, w))  # the coordinator writes it
    v = view(m, w)
    doc = v.transcript
    assert doc is not None
    assert doc.step == n and doc.file == "transcript.txt"
    assert doc.sha256 == colon_hex(w.transcript_sha256) and len(doc.sha256) == 95
    assert doc.words == pgp_words(w.transcript_sha256) and len(doc.words.split()) == 32
    assert (doc.pdf, doc.pdf_sha256) == (None, None)  # this world writes no PDF
    assert doc.confirm_step == confirm and not doc.confirmed
    assert from_dict(json.loads(json.dumps(to_dict(v)))).transcript == doc
    assert to_dict(v)["transcript"]["words"] == doc.words
    drive(m, w, until=confirm)
    assert view(m, w).transcript == doc  # the same document at the KGA's record step
    send(m, w, honest_event(m, w))  # the KGA types the digest read aloud
    assert view(m, w).transcript == dataclasses.replace(doc, confirmed=True)
    drive(m, w)
    v = view(m, w)
    assert v.status == "completed" and v.transcript == dataclasses.replace(doc, confirmed=True)


def test_the_transcript_as_the_coordinator_writes_it_colon_hex_and_pdf():
    m, w = start()
    n, _ = transcript_steps(m)
    drive(m, w, until=n)
    text, pdf = hashlib.sha256(b"text").hexdigest(), hashlib.sha256(b"pdf").hexdigest()
    w.transcript_sha256 = text
    send(m, w, ev.Performed(at=w.at(), step=n, result={
        "file": "transcript-20261207.txt", "drive": "log", "sha256": colon_hex(text).upper(),
        "pdf": "transcript-20261207.pdf", "pdf_sha256": colon_hex(pdf)}))
    doc = view(m, w).transcript
    assert doc is not None
    assert (doc.file, doc.sha256, doc.words) == ("transcript-20261207.txt", colon_hex(text),
                                                 pgp_words(text))
    assert (doc.pdf, doc.pdf_sha256) == ("transcript-20261207.pdf", colon_hex(pdf))


@pytest.mark.parametrize("result, file", [
    ({"file": "x" * 5000, "sha256": "ab" * 32}, "x" * (NAME_MAX - 1) + "…"),
    ({"file": "a\nb\x1b[2J.txt", "sha256": "ab" * 32}, "a?b?[2J.txt"),
    ({"file": "t.txt", "sha256": "not a digest"}, None),
    ({"file": "t.txt", "sha256": "ab" * 5000}, None),
])
def test_the_transcript_in_the_view_is_bounded(result, file):
    """A file name is cut and made printable; a digest that is not a SHA-256 gives no document."""
    m, w = start()
    n, _ = transcript_steps(m)
    drive(m, w, until=n)
    send(m, w, ev.Performed(at=w.at(), step=n, result=result))
    doc = view(m, w).transcript
    assert (doc.file if doc else None) == file
    assert len(json.dumps(to_dict(view(m, w)).get("transcript"))) < 1000


@pytest.fixture
def wire_with_transcript() -> dict[str, Any]:
    m, w = start()
    drive(m, w, until=transcript_steps(m)[1])
    return json.loads(json.dumps(to_dict(view(m, w))))


@pytest.mark.parametrize("mutate, words", [
    (lambda x: x["transcript"].pop("words"), "view.transcript"),
    (lambda x: x["transcript"].update(words=None), "view.transcript.words"),
    (lambda x: x["transcript"].update(confirmed="yes"), "view.transcript.confirmed"),
    (lambda x: x["transcript"].update(step="115"), "view.transcript.step"),
    (lambda x: x["transcript"].update(extra=1), "unknown field"),
    (lambda x: x.pop("transcript"), "missing field"),
])
def test_the_wire_refuses_a_mistyped_transcript(wire_with_transcript, mutate, words):
    assert to_dict(from_dict(wire_with_transcript)) == wire_with_transcript
    mutate(wire_with_transcript)
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        from_dict(wire_with_transcript)


def test_signoff_needs_the_checkpoint_text():
    m, w = start()
    drive(m, w, until=31)
    assert "signoff" not in kinds(view(m, w), "KGA1")
    v = view(m, w, checkpoint="keyrite.test/mini\n42\n")
    (so,) = [a for a in actions_for(v, "KGA1", "KGA") if a.kind == "signoff"]
    assert so.command["checkpoint"] == "keyrite.test/mini\n42\n"
    assert so.needs == ("passphrase",)


def test_extras_are_carried_progress_journal_connections_pause():
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.Execute) and x.operation["op"] == "generate")
    extras = dict(seq=17, connected=frozenset({"SA1", "KGA1"}),
                  progress=Progress(51, 85, "generating keys"),
                  journal=(JournalLine(40, w.now - 2, "OperationStarted 11"),))
    v = view(m, w, **extras)
    assert v.seq == 17 and v.progress == Progress(51, 85, "generating keys")
    assert v.journal[0].text == "OperationStarted 11"
    assert {p.seat for p in v.participants if p.connected} == {"SA1", "KGA1"}
    assert v.step is not None and v.step.asked[0].kind == "execute"
    assert v.section_started == m.section_since
    send(m, w, ev.Pause(at=w.now, seat="KGA1"))
    paused = view(m, w)
    assert paused.status == "paused"
    assert kinds(paused, "KGA1") == ["resume"]
    assert kinds(paused, "SA1") == []


def test_nothing_to_do_once_completed():
    m, w = start()
    drive(m, w)
    v = view(m, w)
    assert v.status == "completed" and v.step is None and v.quorums == ()
    for seat in SEATS:
        assert kinds(v, seat) == [], seat


def test_a_seat_claimed_for_another_role_gets_nothing():
    m, w = at_kso_quorum(have=1)
    v = view(m, w)
    assert actions_for(v, "KSO2", "SA") == []
    assert actions_for(v, "NOBODY", "KSO") == []


# --- the wire form is strict ----------------------------------------------------------------------
@pytest.fixture
def wire() -> dict[str, Any]:
    m, w = at_kso_quorum(have=1)
    return json.loads(json.dumps(to_dict(view(m, w, progress=Progress(1, 2, "x")))))


def test_wire_round_trip(wire):
    assert to_dict(from_dict(wire)) == wire


@pytest.mark.parametrize("mutate, words", [
    (lambda x: x.update(extra=1), "unknown field"),
    (lambda x: x.pop("status"), "missing field"),
    (lambda x: x.update(version=2), "version"),
    (lambda x: x["quorums"][0].pop("asked"), "view.quorums[0]"),
    (lambda x: x["quorums"][0].update(lapses=["soon"]), "view.quorums[0].lapses[0]"),
    (lambda x: x.update(loose_drives=[{"serial": "X"}]), "view.loose_drives[0]"),
    (lambda x: x.update(seq="1"), "view.seq"),
    (lambda x: x.update(seq=True), "view.seq"),
    (lambda x: x.update(now="soon"), "view.now"),
    (lambda x: x["quorums"][0].update(have=None), "view.quorums[0].have"),
    (lambda x: x["quorums"][0].pop("digest"), "view.quorums[0]"),
    (lambda x: x["participants"][0].update(connected="yes"), "connected"),
    (lambda x: x.update(participants={}), "expected a list"),
    (lambda x: x["progress"].update(done=1.5), "progress.done"),
    (lambda x: x.update(step=[]), "view.step"),
])
def test_wire_refuses_what_it_does_not_understand(wire, mutate, words):
    mutate(wire)
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        from_dict(wire)


def test_sign_in_is_not_offered_where_the_machine_would_refuse_it():
    m, w = at_kso_quorum(have=1)
    v = view(m, w)
    assert kinds(v, "KSO4") == []  # dave already sits as KSO2
    assert kinds(v, "KSO3") == []  # the KSO role is full (max 2)
    assert kinds(v, "SA2") == []  # the SA role is full (max 1)


def test_every_moment_of_the_seed_ceremony():
    """Drive the bundled 132-step ceremony; after every event the view crosses the wire intact,
    observers never get an action, an approval is offered only to the role a quorum asks, and
    every offered person's act is one the machine asks for now."""
    m, w = start(seed_script())
    observers = {r.name for r in m.script.roles.values() if r.observer}
    seats = sorted(m.roster.officers)
    seen_quorum_roles: set[str] = set()
    while m.status == "running":
        v = view(m, w)
        open_roles = {q.role for q in v.quorums}
        seen_quorum_roles |= open_roles
        asked = {(a.role, a.kind) for a in v.step.asked} if v.step else set()
        for seat in seats:
            role = role_of(seat)
            acts = actions_for(v, seat, role)
            if role in observers:
                assert acts == [], seat
            for a in acts:
                if a.kind in ("approve", "refuse"):
                    assert role in open_roles, (seat, a)
                elif a.kind in ("acknowledge", "record", "signoff"):
                    assert v.step is not None
                    assert any(r in (role, v.step.actor) for r, _ in asked), (seat, a, asked)
        e = honest_event(m, w)
        assert e is not None
        send(m, w, e)
    assert view(m, w).status == "completed"
    assert {"KSO", "DSO", "SA"} <= seen_quorum_roles


def test_docs_list_every_wire_field():
    """docs/console.md's wire form names every field of every part of the view."""
    import dataclasses
    import re
    from pathlib import Path

    from ceremony import view as views

    doc = (Path(__file__).resolve().parent.parent / "docs" / "console.md").read_text()
    block = doc.split("## The wire form", 1)[1].split("```")[1]
    named = set(re.findall(r'"([a-z_0-9]+)":', block))
    parts = (views.CeremonyView, views.StepView, views.Asked, views.ExceptionView,
             views.RoleView, views.Participant, views.QuorumView, views.DriveView,
             views.LooseDrive, views.BagView,
             views.JournalLine, views.Progress, views.DeviationView, views.Cosigning,
             views.DocumentView)
    fields = {f.name for p in parts for f in dataclasses.fields(p)}
    assert fields - named == set()
    assert named - fields == set()
