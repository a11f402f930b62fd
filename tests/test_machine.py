"""The ceremony machine's rules, one test (or one parametrised family) per rule, positive and
negative. Every refusal is checked by `refused()`: the reason names the rule, and the whole state
(`snapshot()`, the `State` itself and `wants()`) is what it was before the event.

Step numbers are those of tests/scripts/mini.toml (its header lists the ones that matter).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json

import pytest

from ceremony.approval import Approval
from ceremony.digests import colon_hex, operation_digest
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import Machine, Refused
from keyrite.exits import BadInput
from tests.machine_helpers import (
    MINI_PREVIOUS,
    PEOPLE,
    SEED_PREVIOUS,
    T0,
    approval,
    drive,
    honest_event,
    mini_script,
    private_key,
    refused,
    replay,
    roster,
    seal,
    seed_script,
    send,
    sign_in,
    signoff,
    start,
)

MINI_STEPS = list(range(1, 33))


def plan_for(m: Machine, w) -> d.RequestApproval:
    """At a quorum or hsm step: have the operation planned, return the approval request."""
    want = m.wants()[0]
    if isinstance(want, d.Plan):
        send(m, w, honest_event(m, w))
        want = m.wants()[0]
    assert isinstance(want, d.RequestApproval), want
    return want


def approve(m: Machine, w, seat: str, req: d.RequestApproval, **override) -> ev.Approve:
    at = w.at()
    return ev.Approve(at=at, seat=seat, approval=approval(
        w, seat, req.step, req.digest, req.expires_seconds, at=at, **override))


# --- construction ------------------------------------------------------------------------------
def test_previous_record_must_provide_every_key_the_script_lists():
    with pytest.raises(BadInput, match="key_count"):
        Machine(mini_script(), roster(), {"hsm_fingerprint": "x"})


def test_roster_roles_must_exist_in_the_script():
    script = dataclasses.replace(mini_script(), roles={
        k: v for k, v in mini_script().roles.items() if k != "WI"})
    with pytest.raises(BadInput, match="WI"):
        Machine(script, roster(), MINI_PREVIOUS)


# --- whole runs ----------------------------------------------------------------------------------
def test_mini_runs_to_completed_and_replays():
    m, w = start()
    completed: list[int] = []
    while m.status == "running":
        send(m, w, honest_event(m, w))
        # completed steps only grow, one at a time, in script order
        assert m.snapshot()["completed"][: len(completed)] == completed
        completed = m.snapshot()["completed"]
        assert completed == MINI_STEPS[: len(completed)]
    snap = m.snapshot()
    assert snap["status"] == "completed" and snap["step"] is None
    assert snap["completed"] == MINI_STEPS
    assert m.wants() == ()
    assert snap["values"]["7"] == "4" and snap["values"]["10"] == "0"
    assert snap["values"]["12"] == "4"  # two keys of each of the policy's two specs
    assert snap["values"]["18"] == "AA11BB22"  # typed "aa11 - bb22", kept in normal form
    assert snap["values"]["17"] == snap["values"]["16"] == w.backup_sha256
    assert snap["values"]["29"] == w.transcript_sha256
    assert snap["custody"] == {"backup": {
        "serial": "TEB000BACKUP", "contents": ["drive:backup", "password:device-backup"],
        "custodian": "DSO1", "person": "alice", "step": 25, "at": snap["custody"]["backup"]["at"],
        "signature": snap["custody"]["backup"]["signature"]}}
    assert [s["seat"] for s in snap["signoffs"]] == ["KGA1"]
    assert snap["started"] == {"8": ["SA1"], "11": ["SA1"], "16": ["KSO1", "KSO2", "DSO1"]}
    assert snap["exception"] is None and snap["accepted"] == {}
    again = replay(m.script, w.accepted, w.previous)
    assert again.snapshot() == snap
    assert again._state == m._state


def test_bundled_seed_script_runs_all_132_steps():
    script = seed_script()
    assert [s.n for s in script.steps] == list(range(1, 133))
    m, w = start(script)
    drive(m, w)
    assert m.status == "completed"
    assert m.snapshot()["completed"] == list(range(1, 133))
    assert set(m.snapshot()["custody"]) == {"wellington", "albany", "auckland", "master-copy",
                                            "keygen-log"}
    assert replay(script, w.accepted, w.previous)._state == m._state


def test_whole_state_after_each_event_through_the_purge():
    """h11's way: the complete state after every event of the first eight steps."""
    m, w = start()
    x = m.snapshot()
    assert x == {"status": "running", "step": 1, "now": 0.0, "completed": [], "signed_in": {},
                 "people": {}, "values": {}, "results": {}, "observed": {}, "operations": {},
                 "approvals": {}, "used_nonces": [], "started": {}, "exception": None,
                 "accepted": {}, "custody": {}, "opened": {}, "signoffs": [], "acted": {},
                 "paused": False,
                 "typist": {}, "lapsed": [], "present": {}, "section_since": None,
                 "deviations": []}

    def step(event, **changes):
        send(m, w, event)
        x.update(changes, now=event.at)
        assert m.snapshot() == x

    def person(p):
        name, org, seats = PEOPLE[p]
        return {"name": name, "organisation": org, "seats": sorted(seats)}

    first = sign_in(w, "alice")  # the first event begins the first section
    step(first, signed_in={"KGA1": "alice", "DSO1": "alice"},
         people={"alice": person("alice")}, section_since=first.at)
    step(ev.Acknowledge(at=w.at(), seat="KGA1"), step=2, completed=[1], acted={"1": ["alice"]})
    for p in ("bob", "carol", "dave", "erin"):
        e = sign_in(w, p)
        step(e, signed_in={**x["signed_in"], **{s: p for s in e.seats}},
             people={**x["people"], p: person(p)})
    step(ev.Acknowledge(at=w.at(), seat="KGA1"), step=3, completed=[1, 2],
         acted={**x["acted"], "2": ["alice"]})
    step(ev.Acknowledge(at=w.at(), seat="SA1"), step=4, completed=[1, 2, 3],
         acted={**x["acted"], "3": ["bob"]})
    step(ev.Observed(at=w.at(), step=4, value="standby"), step=5, completed=[1, 2, 3, 4],
         values={"4": "standby"}, observed={"4": "standby"})
    fp = MINI_PREVIOUS["hsm_fingerprint"]
    step(ev.Performed(at=w.at(), step=5, result={"fingerprint": fp}), step=6,
         completed=MINI_STEPS[:5], values={**x["values"], "5": fp}, results={"5": {
             "fingerprint": fp}})
    step(ev.Observed(at=w.at(), step=6, value=fp.upper()), step=7, completed=MINI_STEPS[:6],
         values={**x["values"], "6": fp.upper()}, observed={**x["observed"], "6": fp.upper()})
    keys = ev.Observed(at=w.at(), step=7, value="04")  # the last of Opening: Keys begins
    step(keys, step=8, completed=MINI_STEPS[:7], section_since=keys.at,
         values={**x["values"], "7": "04"}, observed={**x["observed"], "7": "04"})
    op = {"op": "purge", "delete": ["k1"]}
    digest = operation_digest(op)
    step(ev.OperationPlanned(at=w.at(), step=8, operation=op), operations={"8": digest})
    a = approval(w, "SA1", 8, digest, 300)
    step(ev.Approve(at=w.at(), seat="SA1", approval=a), approvals={"purge": ["SA1"]},
         used_nonces=[f"{a.key}|{a.nonce}"])
    step(ev.OperationStarted(at=w.at(), step=8, digest=digest), started={"8": ["SA1"]})
    step(ev.Performed(at=w.at(), step=8, result={"deleted": 1}), step=9,
         completed=MINI_STEPS[:8], results={**x["results"], "8": {"deleted": 1}})


# --- step order -----------------------------------------------------------------------------------
def test_events_for_another_step_are_refused():
    m, w = start()
    drive(m, w, until=4)
    refused(m, ev.Observed(at=w.at(), step=6, value="standby"), "step 6", "step 4 is current")
    refused(m, ev.Performed(at=w.at(), step=5, result={"fingerprint": "x"}),
            "does not take Performed")
    drive(m, w, until=5)
    refused(m, ev.Performed(at=w.at(), step=9, result={"count": 0}), "step 9", "step 5")
    refused(m, ev.PerformFailed(at=w.at(), step=4, error="no"), "step 4", "step 5")


@pytest.mark.parametrize("n, event", [
    (1, lambda w: ev.Record(at=w.at(), seat="KGA1", value="x")),
    (4, lambda w: ev.Acknowledge(at=w.at(), seat="SA1")),
    (13, lambda w: ev.Acknowledge(at=w.at(), seat="KSO1")),
    (18, lambda w: ev.Observed(at=w.at(), step=18, value="AA11BB22")),
    (31, lambda w: ev.Acknowledge(at=w.at(), seat="KGA1")),
    (32, lambda w: signoff(w, "KGA1")),
])
def test_a_step_takes_only_its_kind_of_event(n, event):
    m, w = start()
    drive(m, w, until=n)
    refused(m, event(w), f"step {n}", "does not take")


# --- who completes a step ------------------------------------------------------------------------
def test_only_the_actor_role_completes_a_step():
    m, w = start()
    drive(m, w, until=2)
    send(m, w, sign_in(w, "bob"))
    send(m, w, sign_in(w, "erin"))
    refused(m, ev.Acknowledge(at=w.at(), seat="SA1"), "step 2 is for the KGA", "SA1")
    refused(m, ev.Acknowledge(at=w.at(), seat="WI1"), "for the KGA", "WI1")  # an observer
    drive(m, w, until=18)
    refused(m, ev.Record(at=w.at(), seat="SA1", value="AA11BB22"), "for the KGA")
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="AA11BB22"))


def test_the_administrator_completes_only_steps_marked_kga_may_complete():
    m, w = start()
    drive(m, w, until=3)  # SA step, kga_may_complete
    refused(m, ev.Acknowledge(at=w.at(), seat="DSO2"), "for the SA")  # the flag is for the KGA
    send(m, w, ev.Acknowledge(at=w.at(), seat="KGA1"))
    assert m.snapshot()["completed"] == [1, 2, 3]
    m, w = start(seed_script())
    drive(m, w, until=9)  # an SA acknowledge without the flag
    refused(m, ev.Acknowledge(at=w.at(), seat="KGA1"), "step 9 is for the SA", "KGA1")


def test_a_participant_must_be_signed_in_to_act():
    m, w = start()
    refused(m, ev.Acknowledge(at=w.at(), seat="KGA1"), "KGA1 must sign in")
    refused(m, ev.Acknowledge(at=w.at(), seat="KGA9"), "not an enrolled seat")
    send(m, w, sign_in(w, "alice"))
    send(m, w, ev.Acknowledge(at=w.at(), seat="KGA1"))


# --- sign-in and separation of duty ---------------------------------------------------------------
def test_sign_in_may_combine_only_the_allowed_roles():
    m, w = start()
    send(m, w, sign_in(w, "alice"))  # KGA + DSO: allowed
    send(m, w, sign_in(w, "carol"))  # KSO + DSO: allowed
    e = ev.SignIn(at=w.at(), person="carol", name="Carol", organisation="R", seats=("SA2",))
    refused(m, e, "separation of duty", "DSO and SA", "may_combine")
    m, w = start()
    e = ev.SignIn(at=w.at(), person="carol", name="Carol", organisation="R", seats=("KSO1", "SA2"))
    refused(m, e, "separation of duty", "KSO and SA", "may_combine")


def test_one_person_may_not_hold_two_seats_of_one_role():
    m, w = start()
    send(m, w, sign_in(w, "dave"))
    e = ev.SignIn(at=w.at(), person="dave", name="Dave", organisation="A", seats=("KSO4",))
    refused(m, e, "two KSO seats")
    m, w = start()
    e = ev.SignIn(at=w.at(), person="dave", name="Dave", organisation="A", seats=("KSO2", "KSO4"))
    refused(m, e, "two KSO seats")


def test_sign_in_checks_the_roster_and_the_roles():
    m, w = start()
    mk = lambda person, *seats, idc=True: ev.SignIn(  # noqa: E731
        at=w.at(), person=person, name=person, organisation="o", seats=seats, id_checked=idc)
    refused(m, mk("alice"), "at least one seat")
    refused(m, mk("alice", "KSO9"), "KSO9 is not enrolled")
    refused(m, mk("bob", "KGA1"), "enrolled for another person")
    # a witness is signed in by the KGA, vouching for their ID document (tests/test_signed_signin)
    refused(m, mk("erin", "WI1", idc=False), "KGA signs WI1 in", "ID document", "no signature")
    send(m, w, sign_in(w, "alice"))
    send(m, w, sign_in(w, "erin"))
    refused(m, mk("erin", "WI1"), "already signed in")
    send(m, w, sign_in(w, "carol"))
    send(m, w, sign_in(w, "dave"))
    refused(m, mk("frank", "KSO3"), "KSO may be held by at most 2")


def test_the_signin_step_completes_only_when_every_role_has_its_minimum():
    m, w = start()
    drive(m, w, until=2)
    send(m, w, sign_in(w, "bob"))
    send(m, w, sign_in(w, "carol"))
    assert m.wants() == (d.Ask(2, "KGA", "signin", {"missing": {"KSO": 1}}),)
    refused(m, ev.Acknowledge(at=w.at(), seat="KGA1"), "sign-in is not complete", "1 more KSO")
    send(m, w, sign_in(w, "dave"))
    send(m, w, ev.Acknowledge(at=w.at(), seat="KGA1"))  # the witness is optional (min 0)
    assert m.snapshot()["completed"] == [1, 2]


# --- verify, and the exception flow ---------------------------------------------------------------
VERIFY_CASES = [  # step, a wrong observation, what the record says
    (4, "primary", "standby"),  # signer.NAME.role
    (6, "d34d-ba64-0c1e-77a2-9f10-4b3c-aa01-5e6f-1234-abce", MINI_PREVIOUS["hsm_fingerprint"]),
    (7, "5", "4"),  # previous.key_count
    (10, "2", "0"),  # literal value
    (20, "AA11BB23", "AA11BB22"),  # step.18
]


@pytest.mark.parametrize("n, wrong, expected", VERIFY_CASES)
def test_verify_mismatch_stops_the_ceremony_until_the_administrator_decides(n, wrong, expected):
    m, w = start()
    drive(m, w, until=n)
    before = m.snapshot()
    out = send(m, w, ev.Observed(at=w.at(), step=n, value=wrong))
    source = {4: "the script's [[signers]]", 6: "the previous ceremony's record",
              7: "the previous ceremony's record", 10: "the script", 20: "step 18"}[n]
    reason = f"observed {wrong} but {source} says {expected}"
    exc = {"step": n, "kind": "mismatch", "reason": reason, "observed": wrong,
           "expected": expected}
    assert out == (d.ExceptionRaised(n, reason), d.Ask(n, "KGA", "decide", exc))
    assert m.snapshot() == {**before, "now": w.now, "status": "exception", "exception": exc,
                            "observed": {**before["observed"], str(n): wrong}}
    # nothing else moves until the decision
    refused(m, ev.Observed(at=w.at(), step=n, value=expected), "stopped at step", "KGA")
    refused(m, ev.Acknowledge(at=w.at(), seat="SA1"), "stopped")


def test_exception_decisions_retry_accept_abort():
    def stopped():
        m, w = start()
        drive(m, w, until=7)
        send(m, w, ev.Observed(at=w.at(), step=7, value="5"))
        return m, w

    m, w = stopped()
    refused(m, ev.Decide(at=w.at(), seat="SA1", decision="retry"), "only the KGA")
    refused(m, ev.Decide(at=w.at(), seat="WI1", decision="abort", reason="x"), "only the KGA")
    refused(m, ev.Decide(at=w.at(), seat="KGA1", decision="accept"), "writes a reason")
    refused(m, ev.Decide(at=w.at(), seat="KGA1", decision="accept", reason="  "), "reason")
    refused(m, ev.Decide(at=w.at(), seat="KGA1", decision="abort"), "writes a reason")
    refused(m, ev.Decide(at=w.at(), seat="KGA1", decision="ignore", reason="x"),
            "retry, accept or abort")
    # retry: observe again
    before = m.snapshot()
    send(m, w, ev.Decide(at=w.at(), seat="KGA1", decision="retry"))
    assert m.snapshot() == {**before, "now": w.now, "status": "running", "exception": None,
                            "observed": {k: v for k, v in before["observed"].items() if k != "7"}}
    assert isinstance(m.wants()[0], d.Observe)
    drive(m, w)
    assert m.status == "completed" and m.snapshot()["accepted"] == {}

    # accept, with the reason written down: the step completes with what was observed
    m, w = stopped()
    send(m, w, ev.Decide(at=w.at(), seat="KGA1", decision="accept", reason="a key was added"))
    snap = m.snapshot()
    assert snap["status"] == "running" and snap["step"] == 8
    assert snap["accepted"] == {"7": "a key was added"} and snap["values"]["7"] == "5"

    # abort: the ceremony ends and takes nothing more
    m, w = stopped()
    out = send(m, w, ev.Decide(at=w.at(), seat="KGA1", decision="abort", reason="wrong HSM"))
    assert out == (d.CeremonyEnded("aborted"),)
    assert m.status == "aborted" and m.wants() == ()
    assert m.snapshot()["exception"]["reason_written"] == "wrong HSM"
    refused(m, ev.Decide(at=w.at(), seat="KGA1", decision="retry"), "aborted")
    refused(m, sign_in(w, "erin"), "the ceremony is aborted")


def test_a_decision_needs_an_exception():
    m, w = start()
    drive(m, w, until=7)
    refused(m, ev.Decide(at=w.at(), seat="KGA1", decision="retry"), "no exception")


def test_a_failed_operation_may_be_retried_or_aborted_but_not_accepted():
    m, w = start()
    drive(m, w, until=8)
    req = plan_for(m, w)
    send(m, w, approve(m, w, "SA1", req))
    send(m, w, ev.OperationStarted(at=w.at(), step=8, digest=req.digest))
    out = send(m, w, ev.PerformFailed(at=w.at(), step=8, error="CKR_DEVICE_ERROR"))
    assert out[0] == d.ExceptionRaised(8, "CKR_DEVICE_ERROR")
    assert m.snapshot()["exception"] == {"step": 8, "kind": "failure",
                                         "reason": "CKR_DEVICE_ERROR"}
    refused(m, ev.Decide(at=w.at(), seat="KGA1", decision="accept", reason="fine"),
            "cannot be accepted")
    send(m, w, ev.Decide(at=w.at(), seat="KGA1", decision="retry"))
    # it was sent once: the retry reconciles against the HSM with the approvals it started with
    [want] = m.wants()
    assert isinstance(want, d.Execute) and want.reconcile and want.digest == req.digest
    drive(m, w)
    assert m.status == "completed"


@pytest.mark.parametrize("n, result, reason", [
    (19, {"serial": "ZZ99"}, "wrong drive"),  # the drive's declared serial is AA11-BB22
    (22, {"ok": False, "detail": "backup.tar: sha256 differs"}, "sha256 differs"),
])
def test_a_wrong_drive_or_a_bad_copy_is_a_failure(n, result, reason):
    m, w = start()
    drive(m, w, until=n)
    send(m, w, ev.Performed(at=w.at(), step=n, result=result))
    assert m.status == "exception" and reason in m.snapshot()["exception"]["reason"]
    assert m.snapshot()["exception"]["kind"] == "failure"
    refused(m, ev.Decide(at=w.at(), seat="KGA1", decision="accept", reason="r"),
            "cannot be accepted")


def test_a_performed_step_must_report_the_value_it_yields():
    m, w = start()
    drive(m, w, until=5)
    refused(m, ev.Performed(at=w.at(), step=5, result={}), "lacks 'fingerprint'")
    drive(m, w, until=27)
    refused(m, ev.Performed(at=w.at(), step=27, result={"file": "t.txt"}), "lacks 'sha256'")


def test_an_odd_key_count_is_a_mismatch_not_a_crash():
    m, w = start()
    drive(m, w, until=7)
    send(m, w, ev.Observed(at=w.at(), step=7, value="²"))  # isdigit() but not int()
    assert m.status == "exception"


def test_a_handler_bug_leaves_the_state_as_it_was(monkeypatch):
    m, w = start()
    send(m, w, sign_in(w, "alice"))
    snap = m.snapshot()

    def broken(self, step, e):
        self._state.completed.append(step.n)
        raise RuntimeError("bug")

    monkeypatch.setattr(Machine, "_on_Acknowledge", broken)
    with pytest.raises(RuntimeError):
        m.handle(ev.Acknowledge(at=w.at(), seat="KGA1"))
    assert m.snapshot() == snap


# --- records, seals, sign-off ---------------------------------------------------------------------
def test_record_checks_the_format_and_equals():
    m, w = start()
    drive(m, w, until=18)
    refused(m, ev.Record(at=w.at(), seat="KGA1", value="AA11/BB22"), "not a valid usb-serial")
    refused(m, ev.Record(at=w.at(), seat="KGA1", value="   "), "not a valid usb-serial")
    drive(m, w, until=29)
    refused(m, ev.Record(at=w.at(), seat="KGA1", value="00" * 32),
            "does not match the value of step 27")
    refused(m, ev.Record(at=w.at(), seat="KGA1", value="12"), "not a valid sha256")
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value=colon_hex(str(w.transcript_sha256))))
    assert m.snapshot()["values"]["29"] == w.transcript_sha256


def test_record_equals_compares_normal_forms():
    """The rehearsal reports the transcript's digest as colon hex (as officers read it); the
    KGA typing it either way must match it."""
    digest = hashlib.sha256(b"transcript").hexdigest()
    for typed in (digest, colon_hex(digest), colon_hex(digest).upper()):
        m, w = start()
        drive(m, w, until=27)
        send(m, w, ev.Performed(at=w.at(), step=27, result={"sha256": colon_hex(digest)}))
        send(m, w, ev.Observed(at=w.at(), step=28, value=digest))
        send(m, w, ev.Record(at=w.at(), seat="KGA1", value=typed))
        assert m.snapshot()["values"]["29"] == digest


def test_seal_needs_the_custodian_and_the_recorded_bag_serial():
    m, w = start()
    drive(m, w, until=25)
    assert m.snapshot()["values"]["24"] == "TEB000BACKUP"
    contents = m.script.step(25).contents
    refused(m, ev.Record(at=w.at(), seat="KGA1", value="TEB000BACKUP"), "for the DSO")
    refused(m, ev.Record(at=w.at(), seat="DSO2", value="TEB000BACKUQ"),
            "TEB000BACKUQ does not match TEB000BACKUP", "step 24")
    refused(m, ev.Record(at=w.at(), seat="DSO2", value="TEB#000"), "not a valid bag-serial")
    # the custodian takes the bag by signing for it: unsigned, signed by someone else, or
    # signed for another serial is refused
    refused(m, ev.Record(at=w.at(), seat="DSO2", value="TEB000BACKUP"), "signing for it")
    forged = seal(w, "DSO1", 25, "backup", contents, "TEB000BACKUP")
    refused(m, dataclasses.replace(forged, seat="DSO2"), "does not verify")
    refused(m, seal(w, "DSO2", 25, "backup", contents, "TEB000BACKUP",
                    signed_serial="TEB000OTHER"), "does not verify")
    good = seal(w, "DSO2", 25, "backup", contents, "teb 000-backup")
    send(m, w, good)
    custody = m.snapshot()["custody"]["backup"]
    assert custody == {"serial": "TEB000BACKUP", "contents": ["drive:backup",
                       "password:device-backup"], "custodian": "DSO2", "person": "carol",
                       "step": 25, "at": w.now, "signature": good.signature}


def test_signoff_signature_must_verify():
    m, w = start()
    drive(m, w, until=31)
    good = signoff(w, "KGA1", "checkpoint text\n")
    refused(m, dataclasses.replace(good, checkpoint="checkpoint text!\n"), "does not verify")
    other = base64.b64encode(private_key("SA1").sign(b"checkpoint text\n")).decode()
    refused(m, dataclasses.replace(good, signature=other), "KGA1's sign-off", "does not verify")
    refused(m, dataclasses.replace(good, signature="not base64!"), "does not verify")
    refused(m, dataclasses.replace(good, signature=base64.b64encode(b"short").decode()),
            "does not verify")
    refused(m, signoff(w, "SA1", "checkpoint text\n"), "signed off by the KGA",
            "SA1 (SA) is not one of them")
    send(m, w, good)
    assert m.snapshot()["signoffs"] == [{"seat": "KGA1", "checkpoint": "checkpoint text\n",
                                         "signature": good.signature, "step": 31}]


def test_a_signoff_with_cosigners_waits_for_every_officer_on_one_checkpoint():
    """Seed step 111: the KGA, the SA, both KSOs and any DSO sign the same checkpoint, each
    person once (alice signs as KGA, not again as DSO1; carol as KSO1, not as DSO2)."""
    m, w = start(seed_script())
    drive(m, w, until=111)
    asks = m.wants(now=w.now)
    assert [(a.role, a.kind, a.detail["seats"]) for a in asks] == [
        ("KGA", "signoff", ["KGA1"]), ("SA", "signoff", ["SA1"]),
        ("KSO", "signoff", ["KSO1", "KSO2"])]
    text = "keyrite.test/second-key-generation\n500\nroot\n"
    refused(m, signoff(w, "WI1", text), "signed off by the KGA, SA, KSO or DSO",
            "WI1 (WI) is not one of them")
    send(m, w, signoff(w, "KSO2", text))
    assert m.current is not None and m.current.n == 111
    assert m.signoff_checkpoint(111) == text
    refused(m, signoff(w, "KSO1", text + "other\n"), "another checkpoint",
            "every officer signs the same one")
    refused(m, signoff(w, "KSO2", text), "dave has signed off step 111 already")
    send(m, w, signoff(w, "KGA1", text))
    refused(m, signoff(w, "DSO1", text), "alice has signed off step 111 already")
    assert [(a.role, a.detail["seats"]) for a in m.wants(now=w.now)] == [
        ("SA", ["SA1"]), ("KSO", ["KSO1"])]
    send(m, w, signoff(w, "DSO2", text))  # carol signs at her DSO seat: KSO1 is hers too
    assert [(a.role, a.detail["seats"]) for a in m.wants(now=w.now)] == [("SA", ["SA1"])]
    send(m, w, signoff(w, "SA1", text))
    assert m.current is not None and m.current.n == 112
    assert [(x["seat"], x["step"]) for x in m.snapshot()["signoffs"]] == [
        ("KSO2", 111), ("KGA1", 111), ("DSO2", 111), ("SA1", 111)]
    assert replay(m.script, w.accepted, w.previous)._state == m._state


def test_nothing_is_taken_after_completion():
    m, w = start()
    drive(m, w)
    for e in (sign_in(w, "erin"), ev.Acknowledge(at=w.at(), seat="KGA1"),
              ev.Decide(at=w.at(), seat="KGA1", decision="abort", reason="late"),
              ev.Observed(at=w.at(), step=32, value="x")):
        refused(m, e, "the ceremony is completed")


# --- quorums --------------------------------------------------------------------------------------
def test_no_execute_and_no_start_without_a_valid_quorum():
    m, w = start()
    drive(m, w, until=8)
    assert m.wants() == (d.Plan(8, "hsm.purge", {"signer": "standby"}),)
    refused(m, ev.OperationStarted(at=w.at(), step=8, digest="00" * 32),
            "not the planned operation")
    req = plan_for(m, w)
    assert (req.step, req.quorum, req.role, req.have, req.need, req.approved_by) == (
        8, "purge", "SA", 0, 1, ())
    assert not any(isinstance(x, d.Execute) for x in m.wants())
    refused(m, ev.OperationStarted(at=w.at(), step=8, digest=req.digest),
            "quorum purge has 0 of 1 valid approvals")
    refused(m, ev.Performed(at=w.at(), step=8, result={}), "never started")
    a = approve(m, w, "SA1", req)
    send(m, w, a)
    [ex] = m.wants()
    assert ex == d.Execute(8, req.operation, req.digest, (a.approval,), (), False)
    refused(m, ev.OperationStarted(at=w.at(), step=8, digest="ab" * 32), "not the planned")
    send(m, w, ev.OperationStarted(at=w.at(), step=8, digest=req.digest))
    refused(m, ev.OperationStarted(at=w.at(), step=8, digest=req.digest), "already started")
    refused(m, approve(m, w, "SA1", req), "already started")


def test_an_operation_is_planned_once_for_its_step_and_kind():
    m, w = start()
    drive(m, w, until=7)
    refused(m, ev.OperationPlanned(at=w.at(), step=8, operation={"op": "purge"}),
            "no operation is being planned for step 8")
    drive(m, w, until=8)
    refused(m, ev.OperationPlanned(at=w.at(), step=8, operation={"op": "generate"}),
            "plans a purge operation, not 'generate'")
    send(m, w, ev.OperationPlanned(at=w.at(), step=8, operation={"op": "purge"}))
    refused(m, ev.OperationPlanned(at=w.at(), step=8, operation={"op": "purge", "x": 1}),
            "already planned")
    drive(m, w, until=13)  # a quorum step plans the operation it authorizes
    refused(m, ev.OperationPlanned(at=w.at(), step=13, operation={"op": "backup"}),
            "no operation is being planned for step 13")
    send(m, w, ev.OperationPlanned(at=w.at(), step=16, operation={"op": "backup"}))


def _at_backup_quorum():
    m, w = start()
    drive(m, w, until=13)
    return m, w, plan_for(m, w)


def test_backup_quorum_needs_two_kso_people_and_a_dso():
    m, w, req = _at_backup_quorum()
    assert (req.step, req.quorum, req.need, req.expires_seconds) == (16, "keystore-backup", 2, 300)
    send(m, w, approve(m, w, "KSO1", req))  # step 13 collects one
    assert m.snapshot()["completed"][-1] == 13
    [again] = m.wants()
    assert (again.have, again.approved_by) == (1, ("KSO1",))
    refused(m, approve(m, w, "KSO1", req), "already approved keystore-backup",
            "2 different people")
    send(m, w, approve(m, w, "KSO2", req))  # step 14 collects the second
    refused(m, approve(m, w, "KSO1", req), "no KSO approval is asked for step 16")  # step 15
    [dso] = m.wants()
    assert (dso.quorum, dso.role, dso.digest) == ("device-backup", "DSO", req.digest)
    send(m, w, approve(m, w, "DSO2", dso))  # carol, also KSO1: another quorum, allowed
    [ex] = m.wants()
    assert isinstance(ex, d.Execute) and [a.key for a in ex.approvals] == [
        roster().officers[s].signing_key for s in ("KSO1", "KSO2", "DSO2")]
    assert ex.secrets == ("device-backup",)
    refused(m, approve(m, w, "DSO1", dso), "device-backup already has 1 of 1")


def test_two_keys_of_one_person_do_not_make_two_approvals():
    """Sign-in already keeps one person off two KSO seats (tested above); should a person hold two
    anyway, the quorum still counts people, not keys. The state is forced past sign-in here."""
    m, w, req = _at_backup_quorum()
    send(m, w, approve(m, w, "KSO2", req))
    m._state.signed_in["KSO4"] = "dave"  # dave's second KSO seat, with its own key
    refused(m, approve(m, w, "KSO4", req), "already approved", "different people")


@pytest.mark.parametrize("bad, reason", [
    (dict(ceremony="other-ceremony"), "ceremony 'other-ceremony'"),
    (dict(script_sha256="0" * 64), "another version of the script"),
    (dict(operation=operation_digest({"op": "backup", "other": 1})), "different operation"),
    (dict(expires=int(T0)), "expired"),
    (dict(expires=int(T0) + 10**6), "longer than allowed"),
    (dict(nonce="not-hex"), "nonce"),
])
def test_a_bad_approval_is_refused_with_its_reason(bad, reason):
    m, w, req = _at_backup_quorum()
    refused(m, approve(m, w, "KSO1", req, **bad), reason)
    send(m, w, approve(m, w, "KSO1", req))


def test_cross_step_wrong_key_forged_replayed_and_unasked_approvals():
    m, w, req = _at_backup_quorum()
    # an approval for another step (generate's, step 11)
    refused(m, ev.Approve(at=w.at(), seat="KSO1", approval=approval(
        w, "KSO1", 11, req.digest, 300)), "no KSO approval is asked for step 11")
    # signed by someone else's key, carried by KSO1's seat
    refused(m, ev.Approve(at=w.at(), seat="KSO1", approval=approval(
        w, "KSO2", 16, req.digest, 300)), "not signed with KSO1's enrolled key")
    # KSO1's key named, another key's signature
    forged = dataclasses.replace(approval(w, "KSO1", 16, req.digest, 300),
                                 signature=approval(w, "KSO3", 16, req.digest, 300).signature)
    refused(m, ev.Approve(at=w.at(), seat="KSO1", approval=forged), "signature does not verify")
    # a seat not signed in, a role not asked
    refused(m, approve(m, w, "KSO3", req), "KSO3 must sign in")
    refused(m, approve(m, w, "SA1", req), "no SA approval is asked")
    refused(m, approve(m, w, "DSO1", req), "no DSO approval is asked")  # step 13: KSOs only
    # replayed: the same signed approval (same key and nonce) a second time
    first = approve(m, w, "KSO1", req)
    send(m, w, first)
    refused(m, dataclasses.replace(first, at=w.at()), "replayed nonce")
    # after a refusal resets the quorum, the old approval still may not count again
    send(m, w, ev.RefuseApproval(at=w.at(), seat="KSO2", quorum="keystore-backup", reason="no"))
    refused(m, dataclasses.replace(first, at=w.at()), "replayed nonce")


def test_an_approval_before_the_operation_is_planned_is_refused():
    m, w = start()
    drive(m, w, until=13)
    refused(m, ev.Approve(at=w.at(), seat="KSO1", approval=approval(
        w, "KSO1", 16, "ab" * 32, 300)), "not planned yet")


def test_refusing_the_operation_resets_its_quorum():
    m, w, req = _at_backup_quorum()
    send(m, w, approve(m, w, "KSO1", req))  # step 13 done
    assert m.snapshot()["approvals"] == {"purge": ["SA1"], "generate": ["SA1"],
                                         "keystore-backup": ["KSO1"]}
    refused(m, ev.RefuseApproval(at=w.at(), seat="KSO2", quorum="nope", reason="x"), "no quorum")
    refused(m, ev.RefuseApproval(at=w.at(), seat="DSO1", quorum="keystore-backup", reason="x"),
            "may not refuse", "KSO")
    refused(m, ev.RefuseApproval(at=w.at(), seat="SA1", quorum="purge", reason="x"),
            "no SA approval is asked for step 8")
    send(m, w, ev.RefuseApproval(at=w.at(), seat="KSO2", quorum="keystore-backup",
                                 reason="the operation shows the wrong token"))
    assert m.snapshot()["approvals"]["keystore-backup"] == []
    [again] = m.wants()
    assert (again.have, again.need, again.approved_by) == (0, 2, ())
    send(m, w, approve(m, w, "KSO1", req))  # step 14 needs two again
    assert m.snapshot()["step"] == 14
    send(m, w, approve(m, w, "KSO2", req))
    assert m.snapshot()["step"] == 15


def test_an_officer_refuses_only_for_their_own_roles_quorum():
    """At the backup step both quorums are open: a KSO may not reset the DSOs' quorum."""
    m, w = start()
    drive(m, w, until=16)
    refused(m, ev.RefuseApproval(at=w.at(), seat="KSO2", quorum="device-backup", reason="x"),
            "KSO2 (KSO) may not refuse for quorum device-backup")
    send(m, w, ev.RefuseApproval(at=w.at(), seat="DSO2", quorum="device-backup", reason="x"))
    [want] = m.wants()
    assert (want.quorum, want.have) == ("device-backup", 0)
    send(m, w, ev.RefuseApproval(at=w.at(), seat="KSO2", quorum="keystore-backup", reason="x"))
    assert [x.quorum for x in m.wants()] == ["keystore-backup", "device-backup"]
    drive(m, w)
    assert m.status == "completed"


def test_approvals_that_expire_before_execution_are_dropped_and_asked_again():
    m, w = start()
    drive(m, w, until=16)
    [ex] = m.wants()
    assert isinstance(ex, d.Execute)
    w.now += 301  # the coordinator stalled (or restarted) past the approvals' expiry
    assert min(a.expires for a in ex.approvals) < w.now
    # the stale Execute is not honoured ...
    refused(m, ev.OperationStarted(at=w.at(), step=16, digest=ex.digest),
            "quorum keystore-backup has 0 of 2 valid approvals")
    # ... and asked at the coordinator's time, the machine asks for fresh approvals
    assert [(x.quorum, x.have) for x in m.wants(now=w.now)] == [("keystore-backup", 0),
                                                                ("device-backup", 0)]
    assert m.wants() == (ex,)  # without a time, the state as of the last event
    drive_events = 0
    while not isinstance(m.wants(now=w.now)[0], d.Execute):
        want = m.wants(now=w.now)[0]
        seat = {"KSO": ["KSO1", "KSO2"], "DSO": ["DSO1"]}[want.role][want.have]
        send(m, w, approve(m, w, seat, want))
        drive_events += 1
    assert drive_events == 3
    assert m.snapshot()["approvals"]["keystore-backup"] == ["KSO1", "KSO2"]
    drive(m, w)
    assert m.status == "completed"


def test_approvals_expiring_between_quorum_steps_are_asked_again():
    m, w = start()
    drive(m, w, until=14)  # KSO1 approved at step 13
    w.now += 400
    req = m.wants()[0]
    send(m, w, approve(m, w, "KSO2", req))  # the event drops KSO1's expired approval
    snap = m.snapshot()
    assert snap["step"] == 14 and snap["approvals"]["keystore-backup"] == ["KSO2"]
    send(m, w, approve(m, w, "KSO1", req))
    assert m.snapshot()["step"] == 15


def test_started_approvals_do_not_expire():
    m, w = start()
    drive(m, w, until=8)
    drive(m, w, before=lambda x: isinstance(x, d.Execute) and x.reconcile)
    w.now += 10_000
    send(m, w, ev.Performed(at=w.at(), step=8, result={"deleted": 4}))
    assert m.snapshot()["started"] == {"8": ["SA1"]}


# --- the journal form -----------------------------------------------------------------------------
def _one_of_each(w) -> list[ev.Event]:
    a = approval(w, "KSO1", 16, "ab" * 32, 300)
    return [
        ev.SignIn(at=1.5, person="p", name="N", organisation="O", seats=("WI1",),
                  id_checked=True, by="KGA1", id_document="passport", id_digits="4711",
                  signed_at=1, signatures=("c2ln",), fingerprints=("SHA256:x",)),
        ev.Acknowledge(at=2, seat="KGA1"),
        ev.Record(at=3, seat="KGA1", value="AA11"),
        ev.Approve(at=4, seat="KSO1", approval=a),
        ev.RefuseApproval(at=5, seat="KSO1", quorum="keystore-backup", reason="r"),
        ev.Decide(at=6, seat="KGA1", decision="accept", reason="ok"),
        ev.SignOff(at=7, seat="KGA1", checkpoint="c\n", signature="c2ln"),
        ev.Observed(at=8, step=4, value="standby"),
        ev.OperationPlanned(at=9, step=8, operation={"op": "purge", "delete": ["a", "b"]}),
        ev.OperationStarted(at=10, step=8, digest="cd" * 32),
        ev.Performed(at=11, step=8, result={"deleted": 2, "files": ["x"]}),
        ev.PerformFailed(at=12, step=9, error="boom"),
        ev.Pause(at=13, seat="KGA1"),
        ev.Resume(at=14, seat="KGA1"),
        ev.PasswordEntered(at=15, seat="SA1", step=16, name="device-backup", purpose="backup"),
        ev.ShareGiven(at=15, seat="KSO1", step=16, purpose="restore"),
        ev.ApprovalLapsed(at=16, seat="KSO1", quorum="keystore-backup", step=16, key="k",
                          nonce="n"),
        ev.Presence(at=17, person="p", seats=("KSO1", "DSO2"), connected=True),
        ev.Remark(at=18, seat="DSO2", kind="deviation", text="DSO2 replaced by DSO4"),
        ev.DecideDeviation(at=19, seat="KGA1", deviation=1, decision="accept", reason="ok"),
        # as journals before signed sign-ins hold them: written back in that shape
        ev.SignIn(at=20, person="p", name="N", organisation="O", seats=("KSO1", "DSO2"),
                  id_checked=True),
    ]


def test_an_unsigned_sign_in_is_written_as_it_was_before_sign_ins_were_signed():
    old = ev.SignIn(at=20, person="p", name="N", organisation="O", seats=("KSO1",),
                    id_checked=True)
    assert ev.event_to_dict(old) == {"event": "SignIn", "at": 20, "person": "p", "name": "N",
                                     "organisation": "O", "seats": ["KSO1"], "id_checked": True}


def test_every_event_type_round_trips_through_its_journal_form():
    _, w = start()
    events = _one_of_each(w)
    assert {type(e) for e in events} == set(ev.EVENT_TYPES.values()) == set(
        ev.Event.__subclasses__())
    for e in events:
        as_json = json.loads(json.dumps(ev.event_to_dict(e)))
        assert as_json["event"] == type(e).__name__
        back = ev.event_from_dict(as_json)
        assert back == e and type(back) is type(e)
    assert isinstance(ev.event_from_dict(ev.event_to_dict(events[3])).approval, Approval)


def test_a_bad_journal_form_is_a_value_error():
    with pytest.raises(ValueError, match="unknown event 'Reboot'"):
        ev.event_from_dict({"event": "Reboot", "at": 1})
    with pytest.raises(ValueError, match="unknown event None"):
        ev.event_from_dict({"at": 1})
    with pytest.raises(ValueError, match="lacks field 'seat'"):
        ev.event_from_dict({"event": "Acknowledge", "at": 1})
    for bad in ({"ceremony": "x"}, "not a table"):  # the replay reports ValueError by entry
        with pytest.raises(ValueError, match="approval is malformed"):
            ev.event_from_dict({"event": "Approve", "at": 1, "seat": "KSO1", "approval": bad})
    assert ev.event_from_dict({"event": "Performed", "at": 1, "step": 2}).result == {}


def test_replaying_a_journal_with_exceptions_and_refusals_gives_the_same_state():
    m, w = start()
    w.decide = lambda exc: ("accept", "checked by hand") if exc["kind"] == "mismatch" else (
        "retry", "")
    drive(m, w, until=7)
    send(m, w, ev.Observed(at=w.at(), step=7, value="5"))
    with pytest.raises(Refused):
        m.handle(ev.Acknowledge(at=w.at(), seat="SA1"))  # refused: not journaled
    drive(m, w, until=9)
    send(m, w, ev.PerformFailed(at=w.at(), step=9, error="timeout"))
    drive(m, w)
    assert m.status == "completed"
    again = replay(m.script, w.accepted, w.previous)
    assert again.snapshot() == m.snapshot() and again._state == m._state
    assert again.snapshot()["accepted"] == {"7": "checked by hand"}


def test_decisions_are_asked_of_the_administrator_by_role():
    m, w = start()
    drive(m, w, until=9)
    send(m, w, ev.PerformFailed(at=w.at(), step=9, error="e"))
    [ask] = m.wants()
    assert ask == d.Ask(9, "KGA", "decide", {"step": 9, "kind": "failure", "reason": "e"})
    with pytest.raises(Refused):
        m.handle(ev.Performed(at=w.at(), step=9, result={"count": 0}))
    assert m.status == "exception"


def test_a_host_key_pin_is_a_fingerprint_or_the_previous_record() -> None:
    m, _ = start()
    assert m.host_key_pin("standby") == "SHA256:96QvYCmXKW8YPnQdHF9indZTB7xB4ppUo6v5vRwRECM"
    seed, _ = start(seed_script())
    assert seed.script.signers[0].host_key == "previous.signer_host_key"
    assert seed.host_key_pin("standby") == SEED_PREVIOUS["signer_host_key"]


def test_a_drives_serial_is_the_one_last_read_and_the_record_is_the_kgas():
    """With no serial declared, insert takes the drive plugged in (here the wrong one); the
    serial check stops on it, the SA swaps it and the KGA retries: the drive's serial is then
    the swapped drive's, which views and `keyrite custody` show."""
    from ceremony.script.load import load_script_text
    from tests.machine_helpers import MINI

    text = MINI.read_text()
    assert text.count('serial = "AA11-BB22"\n') == 1
    m, w = start(load_script_text(text.replace('serial = "AA11-BB22"\n', ""), "mini, no serial"))
    record = w.drive_serials["backup"] = "USB0000BACKUP"  # as the usb-serial format keeps it
    drive(m, w, until=19)
    assert m.drive_serial("backup") is None and m.recorded_serial("backup") == record
    w.drive_serials["backup"] = "0000WRONG0001"  # the SA plugs in the wrong drive
    drive(m, w, until=20)
    assert m.drive_serial("backup") == "0000WRONG0001"
    send(m, w, ev.Observed(at=w.at(), step=20, value="0000WRONG0001"))
    assert m.status == "exception"
    send(m, w, ev.Decide(at=w.at(), seat="KGA1", decision="retry"))
    send(m, w, ev.Observed(at=w.at(), step=20, value=record))  # the right one, swapped in
    assert m.current is not None and m.current.n == 21
    assert m.drive_serial("backup") == record == m.recorded_serial("backup")
    assert m.drive_serial("log") is None and m.recorded_serial("log") is None
