"""A fuzzer for the ceremony machine: hypothesis drives the mini ceremony with honest moves mixed
with random, mostly illegal events (wrong seats, forged, expired, replayed and cross-step
approvals, random observations and results, events for the wrong step, time jumps) and checks,
after every rule:

- only `Refused` ever escapes `handle`, and a refused event leaves the state (snapshot, State and
  wants) exactly as it was;
- completed steps only grow and are a prefix of the script's step numbers;
- every `Execute` the machine asks for, and every `OperationStarted` it accepts, is backed by M
  distinct people's unexpired, correctly signed approvals of exactly that step and operation;
- a machine fed the same accepted events, each through its journal form, is in the same state
  (checked incrementally after every rule, and by a replay from scratch at the end).

Each example starts from a random point of an honest run, so the backup quorum and the closing
steps get as much attention as the opening.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ceremony.approval import ApprovalRefused, check_approval
from ceremony.digests import colon_hex, operation_digest
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import CLOCK_SKEW, Machine, Refused
from tests.machine_helpers import (
    EXTRA_PEOPLE,
    MINI_PREVIOUS,
    PEOPLE,
    RoomStuck,
    approval,
    drive,
    honest_event,
    mini_script,
    replay,
    roster,
    signed_sign_in,
    signoff,
    start,
)

SCRIPT = mini_script()
STEP_NUMBERS = [s.n for s in SCRIPT.steps]
SEATS = sorted(roster().officers) + ["NOBODY1"]
PERSONS = sorted(set(PEOPLE) | set(EXTRA_PEOPLE)) + ["mallory"]
QUORUM_IDS = sorted(SCRIPT.quorums) + ["nope"]

seats = st.sampled_from(SEATS)
#: values a person might type or a device report: right, wrong, malformed, odd unicode
values = st.one_of(
    st.sampled_from(["standby", "4", "04", "0", "²", "AA11-BB22", "aa11bb22", "TEB-000-BACKUP",
                     "teb000backup", MINI_PREVIOUS["hsm_fingerprint"], "", " ", "x" * 200]),
    st.text(max_size=12),
    st.binary(min_size=32, max_size=32).map(lambda b: hashlib.sha256(b).hexdigest()),
)
results = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"count": st.integers(0, 9)}),
    st.fixed_dictionaries({"fingerprint": st.sampled_from([MINI_PREVIOUS["hsm_fingerprint"],
                                                           "ffff"])}),
    st.fixed_dictionaries({"sha256": st.binary(min_size=1, max_size=4).map(
        lambda b: colon_hex(hashlib.sha256(b).hexdigest()))}),
    st.fixed_dictionaries({"serial": st.sampled_from(["AA11BB22", "ZZ99"])}),
    st.fixed_dictionaries({"ok": st.booleans()}),
)
APPROVAL_FAULTS = ["none", "none", "none", "expired", "far-future", "cross-step", "wrong-operation",
                   "wrong-script", "wrong-ceremony", "wrong-key", "forged", "bad-nonce",
                   "replay", "replay-fresh-time"]


def _running(self: CeremonyFuzz) -> bool:
    """Most rules stop once the ceremony ended; `someone_acts` goes on (and is refused)."""
    return hasattr(self, "m") and self.m.status in ("running", "exception")


class CeremonyFuzz(RuleBasedStateMachine):
    m: Machine

    # --- set-up -------------------------------------------------------------------------------
    @initialize(start_at=st.one_of(st.integers(1, 32), st.sampled_from([8, 11, 13, 14, 15, 16])))
    def setup(self, start_at: int) -> None:
        self.m, self.w = start(SCRIPT)
        self.w.decide = lambda exc: ("retry", "")
        drive(self.m, self.w, until=start_at)
        drive(self.m, self.w, before=lambda x: not isinstance(x, d.Plan))  # approvals open
        self.shadow = replay(SCRIPT, self.w.accepted, self.w.previous)
        self.completed: list[int] = list(self.m._state.completed)
        self.accepted_approvals: list[ev.Approve] = [
            e for e in self.w.accepted if isinstance(e, ev.Approve)]
        for e in self.w.accepted:
            if isinstance(e, ev.OperationStarted):
                self.check_backed(e.step, tuple(a.approval for a in self.m._state.started[e.step]),
                                  e.digest, e.at)

    # --- sending, with the per-event checks ---------------------------------------------------
    def send(self, event: ev.Event) -> bool:
        m = self.m
        snap, state, wants = m.snapshot(), copy.deepcopy(m._state), m.wants()
        try:
            out = m.handle(event)  # anything but Refused escaping fails the test here
        except Refused as r:
            assert isinstance(r.reason, str) and r.reason
            assert m.snapshot() == snap, f"refused {event!r} changed the snapshot"
            assert m._state == state, f"refused {event!r} changed the state"
            assert m.wants() == wants
            return False
        self.w.accepted.append(event)
        self.shadow.handle(ev.event_from_dict(ev.event_to_dict(event)))
        if isinstance(event, ev.Approve):
            self.accepted_approvals.append(event)
        if isinstance(event, ev.OperationStarted):
            used = tuple(a.approval for a in m._state.started[event.step])
            self.check_backed(event.step, used, event.digest, event.at)
        for x in out:
            if isinstance(x, d.Execute) and not x.reconcile:
                self.check_execute(x, m._state.now)
        return True

    def at(self) -> float:
        return self.w.at()

    def current_n(self) -> int:
        cur = self.m.current
        return cur.n if cur else STEP_NUMBERS[-1]

    # --- honest moves -------------------------------------------------------------------------
    @precondition(_running)
    @rule(n=st.integers(1, 4), decision=st.sampled_from(["retry", "retry", "accept", "abort"]))
    def honest(self, n: int, decision: str) -> None:
        self.w.decide = lambda exc: (decision, "the administrator's reason")
        for _ in range(n):
            if self.m.status in ("completed", "aborted"):
                return
            try:
                e = honest_event(self.m, self.w)
            except RoomStuck:
                return
            if e is None or not self.send(e):
                return

    @precondition(_running)
    @rule(decision=st.sampled_from(["retry", "accept"]))
    def honest_to_the_next_step(self, decision: str) -> None:
        """The room finishing the current step (a second honest rule, so progress wins often)."""
        n = self.current_n()
        for _ in range(12):
            if self.current_n() != n:
                return
            self.honest(1, decision)

    @rule(seconds=st.sampled_from([1, 30, 120, 299, 301, 360, 3600]))
    def time_passes(self, seconds: int) -> None:
        self.w.now += seconds

    @precondition(_running)
    @rule(seconds=st.sampled_from([60, 299, 301, 3600]), planned=st.booleans())
    def coordinator_stalls_then_starts(self, seconds: int, planned: bool) -> None:
        """A coordinator that stalled (or restarted) acts on the Execute it was given before."""
        self.w.now += seconds
        n = self.current_n()
        op = self.m._state.operations.get(n)
        digest = op["digest"] if planned and op else operation_digest({"op": "x"})
        self.send(ev.OperationStarted(at=self.at(), step=n, digest=digest))

    # --- people doing the wrong thing ---------------------------------------------------------
    @rule(kind=st.sampled_from(["ack", "record", "signin", "decide", "signoff"]), seat=seats,
          value=values, data=st.data())
    def someone_acts(self, kind: str, seat: str, value: str, data: Any) -> None:
        at = self.at()
        if kind == "ack":
            self.send(ev.Acknowledge(at=at, seat=seat))
        elif kind == "record":
            self.send(ev.Record(at=at, seat=seat, value=value))
        elif kind == "signin":  # unsigned, signed by the seats' own keys, vouched by the
            # KGA, or signed with another seat's key
            person = data.draw(st.sampled_from(PERSONS))
            chosen = tuple(data.draw(st.lists(seats, max_size=3)))
            how = data.draw(st.sampled_from(["unsigned", "own", "vouched", "other key"]))
            if how == "unsigned" or not chosen:
                self.send(ev.SignIn(at=at, person=person, name=person.title(),
                                    organisation="org", seats=chosen,
                                    id_checked=data.draw(st.booleans())))
            else:
                signers = ((data.draw(st.sampled_from(SEATS)),) * len(chosen)
                           if how == "other key" else None)
                self.send(signed_sign_in(SCRIPT, person, person.title(), "org", chosen, at,
                                         by="KGA1" if how == "vouched" else None,
                                         signers=signers))
        elif kind == "decide":
            decision = data.draw(st.sampled_from(["retry", "accept", "abort", "shrug"]))
            reason = data.draw(st.sampled_from(["", "  ", "checked by hand"]))
            self.send(ev.Decide(at=at, seat=seat, decision=decision, reason=reason))
        else:
            e = signoff(self.w, seat if seat in roster().officers else "KGA1", "cp\n")
            if data.draw(st.booleans()):  # tampered: another text, or another seat's signature
                e = dataclasses.replace(e, checkpoint=data.draw(st.sampled_from(["cp", "x\n"])))
            self.send(dataclasses.replace(e, seat=data.draw(st.sampled_from([seat, "KGA1"]))))

    @precondition(_running)
    @rule(seat=seats, fault=st.sampled_from(APPROVAL_FAULTS),
          lifetime=st.sampled_from([300, 300, 299, 150, 5, 1]),
          how=st.sampled_from(["asked", "asked", "other role", "in the room", "anyone"]),
          data=st.data())
    def someone_approves(self, seat: str, fault: str, lifetime: int, how: str,
                         data: Any) -> None:
        self._approve(seat, fault, lifetime, how, data)

    @precondition(_running)
    @rule(fault=st.sampled_from([f for f in APPROVAL_FAULTS if f != "none"]),
          how=st.sampled_from(["asked", "asked", "other role"]), data=st.data())
    def the_room_approves_badly(self, fault: str, how: str, data: Any) -> None:
        """While approvals are asked for: an officer asked, with a faulty approval, or one of
        another role with a good one."""
        self._approve("NOBODY1", fault, 300, how, data)

    def _approve(self, seat: str, fault: str, lifetime: int, how: str, data: Any) -> None:
        """An Approve from `seat` (or, by `how`, an officer asked, someone of another role, or
        anyone signed in) carrying an approval with `fault`."""
        w, m = self.w, self.m
        req = next((x for x in m.wants() if isinstance(x, d.RequestApproval)), None)
        asked = sorted(x for x in m.signed_in
                       if req and roster().officers[x].role == req.role)
        others = sorted(set(m.signed_in) - set(asked))
        if how == "asked" and asked:  # an officer the request is for
            seat = data.draw(st.sampled_from(asked))
        elif how == "other role" and req and others:  # a good approval from the wrong seat
            seat, fault = data.draw(st.sampled_from(others)), "none"
        elif how != "anyone" and m.signed_in:
            seat = data.draw(st.sampled_from(sorted(m.signed_in)))
        if fault.startswith("replay"):
            if not self.accepted_approvals:
                return
            old = data.draw(st.sampled_from(self.accepted_approvals))
            e = old if fault == "replay" else dataclasses.replace(old, at=self.at())
            self.send(e)
            return
        if req is not None:
            step, digest, expires = req.step, req.digest, req.expires_seconds
        elif m._state.operations:
            step = data.draw(st.sampled_from(sorted(m._state.operations)))
            digest, expires = m._state.operations[step]["digest"], 300
        else:
            step, digest, expires = 16, operation_digest({"op": "backup"}), 300
        at = self.at()
        over: dict[str, Any] = {}
        signer = seat if seat in roster().officers else "KSO1"
        if fault == "expired":
            over["expires"] = int(at) - lifetime % 7
        elif fault == "far-future":
            over["expires"] = int(at) + expires + CLOCK_SKEW + lifetime
        elif fault == "cross-step":
            step = data.draw(st.sampled_from([n for n in STEP_NUMBERS if n != step]))
        elif fault == "wrong-operation":
            digest = operation_digest({"op": "backup", "n": lifetime})
        elif fault == "wrong-script":
            over["script_sha256"] = "0" * 64
        elif fault == "wrong-ceremony":
            over["ceremony"] = "another-ceremony"
        elif fault == "wrong-key":
            signer = data.draw(st.sampled_from(sorted(roster().officers)))
        elif fault == "bad-nonce":
            over["nonce"] = "Z" * 32
        a = approval(w, signer, step, digest, min(lifetime, expires), at=at, **over)
        if fault == "forged":
            other = approval(w, "KSO3", step, digest, expires, at=at)
            a = dataclasses.replace(a, signature=other.signature)
        self.send(ev.Approve(at=at, seat=seat, approval=a))

    @precondition(_running)
    @rule(seat=seats, quorum=st.sampled_from(QUORUM_IDS), data=st.data())
    def someone_refuses_the_operation(self, seat: str, quorum: str, data: Any) -> None:
        open_ = [x for x in self.m.wants() if isinstance(x, d.RequestApproval)]
        if open_ and data.draw(st.booleans()):  # often an officer the request is for
            want = data.draw(st.sampled_from(open_))
            quorum = want.quorum
            seat = data.draw(st.sampled_from(sorted(
                x for x in roster().officers if roster().officers[x].role == want.role)))
        self.send(ev.RefuseApproval(at=self.at(), seat=seat, quorum=quorum, reason="not this"))

    # --- the coordinator's own events, right or wrong -------------------------------------------
    @precondition(_running)
    @precondition(_running)
    @rule(data=st.data())
    def coordinator_reports_short(self, data: Any) -> None:
        """The result the honest room would report for this step, with one field missing."""
        e = honest_event(self.m, dataclasses.replace(self.w))  # a scratch world: no side effects
        if isinstance(e, ev.Performed) and e.result:
            drop = data.draw(st.sampled_from(sorted(e.result)))
            result = {k: v for k, v in e.result.items() if k != drop}
            self.send(dataclasses.replace(e, result=result, at=self.at()))

    @rule(kind=st.sampled_from(["observed", "performed", "failed", "started", "planned"]),
          delta=st.sampled_from([0, 0, 0, -1, 1, 3]), value=values, result=results,
          data=st.data())
    def coordinator_reports(self, kind: str, delta: int, value: str, result: dict[str, Any],
                            data: Any) -> None:
        at, n = self.at(), self.current_n() + delta
        if kind == "observed":
            self.send(ev.Observed(at=at, step=n, value=value))
        elif kind == "performed":
            self.send(ev.Performed(at=at, step=n, result=result))
        elif kind == "failed":
            self.send(ev.PerformFailed(at=at, step=n, error="EIO"))
        elif kind == "started":
            op = self.m._state.operations.get(n)
            digest = op["digest"] if op and data.draw(st.booleans()) else "ab" * 32
            self.send(ev.OperationStarted(at=at, step=n, digest=digest))
        else:
            op_kind = data.draw(st.sampled_from(["purge", "generate", "backup", "x"]))
            target = data.draw(st.sampled_from([n, 8, 11, 16]))
            self.send(ev.OperationPlanned(at=at, step=target, operation={"op": op_kind}))

    # --- invariants -------------------------------------------------------------------------------
    @invariant()
    def completed_only_grows_in_script_order(self) -> None:
        if not hasattr(self, "m"):
            return
        now = self.m._state.completed
        assert now[: len(self.completed)] == self.completed
        assert now == STEP_NUMBERS[: len(now)]
        self.completed = list(now)
        if self.m.status in ("completed", "aborted"):
            assert self.m.wants() == ()
        if self.m.status == "completed":
            assert now == STEP_NUMBERS

    @invariant()
    def every_execute_is_backed_by_a_valid_quorum(self) -> None:
        if not hasattr(self, "m"):
            return
        m = self.m
        # whenever the coordinator asks: as of the last event, now, or after a long pause
        for now in (None, self.w.now, self.w.now + 299, self.w.now + 301, self.w.now + 3600):
            for x in m.wants(now=now):
                if isinstance(x, d.Execute):
                    if x.reconcile:
                        assert x.step in m._state.started
                        assert x.approvals == tuple(a.approval for a in m._state.started[x.step])
                    else:
                        self.check_execute(x, m._state.now if now is None else now)

    @invariant()
    def a_fresh_machine_fed_the_journal_agrees(self) -> None:
        if not hasattr(self, "m"):
            return
        assert self.shadow.snapshot() == self.m.snapshot()
        assert self.shadow._state == self.m._state

    def teardown(self) -> None:
        if hasattr(self, "m"):
            again = replay(SCRIPT, self.w.accepted, self.w.previous)
            assert again.snapshot() == self.m.snapshot()
            assert again._state == self.m._state

    # --- the quorum check, independent of the machine's bookkeeping -------------------------------
    def check_execute(self, x: d.Execute, now: float) -> None:
        assert x.digest == operation_digest(x.operation)
        assert self.m._state.operations[x.step]["digest"] == x.digest
        self.check_backed(x.step, x.approvals, x.digest, now)

    def check_backed(self, step: int, approvals: tuple, digest: str, now: float) -> None:
        """M distinct people of each quorum's role, each approval valid at `now` for exactly
        this ceremony, script, step and operation, signed by the key enrolled for its seat."""
        n_step = SCRIPT.step(step)
        assert n_step.quorum, f"step {step} needs no quorum"
        nonces = [(a.key, a.nonce) for a in approvals]
        assert len(set(nonces)) == len(nonces), "one approval counted twice"
        for qid in n_step.quorum:
            q = SCRIPT.quorums[qid]
            people = set()
            for a in approvals:
                officer = roster().by_key(a.key)
                assert officer is not None, "an approval by a key not enrolled"
                if officer.role != q.role:
                    continue
                try:
                    check_approval(a, ceremony=SCRIPT.ceremony.id, step=step,
                                   script_sha256=SCRIPT.sha256, operation=digest, now=now,
                                   max_lifetime=q.expires.seconds + CLOCK_SKEW)
                except ApprovalRefused as err:
                    raise AssertionError(f"{qid}: an approval that does not hold: {err}") from err
                people.add(officer.person)
            assert len(people) >= q.m, f"{qid}: {len(people)} people of {q.m}"


CeremonyFuzz.TestCase.settings = settings(
    max_examples=60, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCeremonyFuzz = CeremonyFuzz.TestCase
