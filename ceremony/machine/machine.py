"""The ceremony state machine: events in, decisions out, no I/O.

Like h11's connection object it never touches a clock, a socket or a file. The coordinator (or the
rehearsal) stamps each event with a time, hands it to `handle`, journals it if it was accepted,
and carries out what `wants()` asks for. An illegal event raises `Refused` with the rule it broke
and leaves the state exactly as it was (the handler works on a copy and commits only on success).

Every rule of the room lives here: step order, who may complete a step, sign-in (signed by each
seat's own key, or by the administrator vouching for a witness's or auditor's ID document) and
separation of duty (`separation_breach`, which the rehearsal also checks its cast with), verify
mismatches and the administrator's exception decisions, quorums of distinct people over one exact
operation, and remarks and deviations (raised by anyone signed in, decided by the administrator;
they never stop the ceremony). The step kinds and the events each accepts are the table
`ACCEPTS`; an event a step kind does not accept is refused from one place.
"""

from __future__ import annotations

import base64
import copy
import time
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature

from ceremony.approval import (
    ID_DOCUMENTS,
    SIGNIN_LEEWAY,
    Approval,
    ApprovalRefused,
    check_approval,
    custody_message,
    id_digits_problem,
    key_fingerprint,
    lapsed,
    load_public_key,
    nonce_key,
    signin_message,
    verify_signature,
)
from ceremony.digests import colon_hex, from_colon_hex, operation_digest
from ceremony.errors import BadInput
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.roster import Roster
from ceremony.script.formats import check_value
from ceremony.script.model import Quorum, Script, Step
from ceremony.script.step_kinds import STEP_KINDS
from ceremony.view import CeremonyView, Extras

#: The machine's part of the one row per action (`ceremony.script.step_kinds`): the actions
#: planned, approved by a quorum and then executed, with the `op` each plans...
STATE_CHANGING = {a: k.operation for a, k in STEP_KINDS.items() if k.operation}
#: ...the actions the coordinator carries out itself (answered by Performed / PerformFailed)...
PERFORMED = frozenset(a for a, k in STEP_KINDS.items() if k.work == "perform")
#: ...and the event types each step kind accepts while it is the current step. SignIn, Approve,
#: RefuseApproval and OperationPlanned are judged on their own (they may concern a later step).
_ACCEPTED_BY_WORK: dict[str, tuple[type[ev.Event], ...]] = {
    "quorum": (),
    "observe": (ev.Observed, ev.PerformFailed),
    "perform": (ev.Performed, ev.PerformFailed),
    "operation": (ev.OperationStarted, ev.Performed, ev.PerformFailed),
}
ACCEPTS: dict[str, tuple[type[ev.Event], ...]] = {
    a: (ev.EVENT_TYPES[k.answer],) if k.answer else _ACCEPTED_BY_WORK[k.work]
    for a, k in STEP_KINDS.items()
}
#: what still arrives while the administrator has paused the room: the outcome of work already
#: under way (people's acts are refused until they resume)
_WORK_EVENTS = (ev.Observed, ev.OperationPlanned, ev.OperationStarted, ev.Performed,
                ev.PerformFailed)


@dataclass(frozen=True)
class PasswordAsk:
    """Passwords the next piece of work needs: for the backup (its actor types them) or the
    restore drill (a second officer types them from a sealed copy, not `not_person`)."""

    step: int
    names: tuple[str, ...]
    purpose: str  # "backup" | "drill"
    actor: str  # the step's actor role
    not_person: str | None = None

@dataclass(frozen=True)
class ShareAsk:
    """KEK shares the next piece of work needs: a wrap backup's restore (its plan names the
    KEK) or its drill (the KEK this ceremony made). `threshold` different officers of `role`
    each bring their own share, typed on their own console and sealed there to the signer's
    share key for `kek_id`; `given` is who has brought one, as the record says."""

    step: int
    purpose: str  # "restore" | "drill"
    role: str
    kek_id: str
    threshold: int
    given: tuple[str, ...] = ()  # seats


#: a verify mismatch may be accepted with a reason; a failed operation may only be retried.
ACCEPTABLE_EXCEPTIONS = ("mismatch",)
#: leeway over a quorum's `expires` for clocks that differ a little between consoles.
CLOCK_SKEW = 60
#: what a signed-in seat may raise at any time: a remark, or a deviation from the script (which
#: the administrator then decides on, once, with a reason: accept or reject)
NOTE_KINDS = ("remark", "deviation")
DEVIATION_DECISIONS = ("accept", "reject")
#: the longest remark, deviation or reason on one, in characters: one line of text
NOTE_LIMIT = 1000


class Refused(Exception):
    """An event the ceremony's rules do not allow now; `reason` is shown to the officer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Approved:
    seat: str
    person: str
    approval: Approval


@dataclass
class _State:
    """Everything that changes. Deep-copied per event so a refusal leaves it untouched."""

    status: str = "running"  # running | exception | aborted | completed
    index: int = 0  # position of the current step in script order
    now: float = 0.0
    completed: list[int] = field(default_factory=list)
    signed_in: dict[str, str] = field(default_factory=dict)  # seat -> person
    people: dict[str, dict[str, Any]] = field(default_factory=dict)  # person -> name, org, seats
    values: dict[int, str] = field(default_factory=dict)  # the value each step yielded
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    observed: dict[int, str] = field(default_factory=dict)  # verify observations, even mismatched
    # step -> {operation, digest}
    operations: dict[int, dict[str, Any]] = field(default_factory=dict)
    approvals: dict[str, list[_Approved]] = field(default_factory=dict)  # quorum id -> approvals
    used_nonces: set[str] = field(default_factory=set)
    started: dict[int, list[_Approved]] = field(default_factory=dict)  # step -> approvals used
    exception: dict[str, Any] | None = None  # step, kind, reason, observed, expected
    accepted: dict[int, str] = field(default_factory=dict)  # step -> administrator's reason
    custody: dict[str, dict[str, Any]] = field(default_factory=dict)  # bag -> record
    opened: dict[str, dict[str, Any]] = field(default_factory=dict)  # bag -> its unseal
    signoffs: list[dict[str, Any]] = field(default_factory=list)  # seat, checkpoint, step
    acted: dict[int, list[str]] = field(default_factory=dict)  # person step -> who acted on it
    # the room: the administrator's pause, who typed each password at the backup (a person), a
    # lapsed approval until it is reported (quorum id, approval), each person's console as last
    # reported, and when the current section began
    paused: bool = False
    typist: dict[str, str] = field(default_factory=dict)
    shares: dict[int, list[str]] = field(default_factory=dict)  # step -> seats that brought one
    lapsed: list[tuple[str, _Approved]] = field(default_factory=list)
    present: dict[str, bool] = field(default_factory=dict)
    section: str | None = None
    section_since: float | None = None
    # remarks and deviations in the order raised (number n is index n - 1): kind, seat, person,
    # text, at, step; a deviation's decision, reason, decided_by, decided_at (None while open)
    deviations: list[dict[str, Any]] = field(default_factory=list)


class Machine:
    def __init__(self, script: Script, roster: Roster, previous: Mapping[str, Any], *,
                 signed_signin: bool = True) -> None:
        """`previous`: the previous ceremony's record, its facts (key -> text) and, under
        `custody`, the bags it left held (`ceremony.previous.Held.to_dict`), which an `unseal`
        step opens. `signed_signin`: every sign-in must be signed (`_identity`). Only the
        journal's fold (`ceremony.machine.replay`) lowers it, while it replays a journal whose
        genesis predates signed sign-ins (`ceremony.records.Genesis.signed_signin`), so old
        journals still replay; a new ceremony always requires signatures."""
        custody = previous.get("custody")
        previous = {k: v for k, v in previous.items() if k != "custody"}
        missing = [k for k in script.ceremony.previous if k not in previous]
        if missing:
            raise BadInput(f"the previous ceremony's record lacks: {', '.join(missing)}")
        for o in roster.officers.values():
            if o.role not in script.roles:
                raise BadInput(f"roster seat {o.seat} has role {o.role}, which the script lacks")
        for step in script.steps:
            held = roster.officers.get(step.seat) if step.seat else None
            if step.seat and (held is None or held.role != step.actor):
                raise BadInput(f"step {step.n} is for seat {step.seat}, which the roster does not "
                               f"hold as a {step.actor}")
        for step in script.steps:
            strangers = [x for x in step.holders if x not in roster.officers]
            if strangers:
                raise BadInput(f"step {step.n} hands KEK shares to {', '.join(strangers)}, which "
                               "the roster does not hold")
        for q in script.quorums.values():
            wrong = [x for x in q.seats if x not in roster.officers
                     or roster.officers[x].role != q.role]
            if wrong:
                raise BadInput(f"quorum {q.id} names seat{'s' if len(wrong) > 1 else ''} "
                               f"{', '.join(wrong)}, which the roster does not hold as "
                               f"{q.role}")
        self.script = script
        self.roster = roster
        self.previous = dict(previous)
        self.previous_custody = _previous_custody(custody)
        for bag in script.earlier_bags:
            if bag not in self.previous_custody:
                n = next(s.n for s in script.steps if s.action == "unseal" and s.bag == bag)
                raise BadInput(f"step {n} unseals bag {bag}, which no earlier step seals and the "
                               "previous ceremony's record does not hold (held: "
                               f"{', '.join(sorted(self.previous_custody)) or 'no bag'})")
        self.steps: tuple[Step, ...] = script.steps
        self.signed_signin = signed_signin
        self._state = _State()

    # --- reading ---------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self._state.status

    @property
    def current(self) -> Step | None:
        s = self._state
        return self.steps[s.index] if s.index < len(self.steps) else None

    def quorum_status(self, quorum: str) -> list[str]:
        return [a.seat for a in self._state.approvals.get(quorum, [])]

    @property
    def paused(self) -> bool:
        return self._state.paused

    @property
    def position(self) -> int:
        """The current step's place in script order, from 1."""
        return self._state.index + 1

    @property
    def completed(self) -> tuple[int, ...]:
        return tuple(self._state.completed)

    @property
    def signed_in(self) -> Mapping[str, str]:
        """Seat -> the person signed in for it."""
        return types.MappingProxyType(dict(self._state.signed_in))

    @property
    def exception(self) -> dict[str, Any] | None:
        return copy.deepcopy(self._state.exception)

    @property
    def custody(self) -> dict[str, dict[str, Any]]:
        """Bag -> who holds it, its serial and contents, since which step, signed how."""
        return copy.deepcopy(self._state.custody)

    @property
    def carried(self) -> dict[str, dict[str, Any]]:
        """Bag -> its previous ceremony's custody record, for each bag that ceremony left held
        and this one has neither opened nor sealed: still held, as that record says."""
        s = self._state
        return {bag: copy.deepcopy(c) for bag, c in self.previous_custody.items()
                if bag not in s.opened and bag not in s.custody}

    @property
    def opened(self) -> dict[str, dict[str, Any]]:
        """Bag -> its last unseal: serial read, contents, step, time, and who presented it
        (`holder` seat, `person`, `name`), `previous` if the previous ceremony sealed it."""
        return copy.deepcopy(self._state.opened)

    @property
    def deviations(self) -> tuple[dict[str, Any], ...]:
        """Every remark and deviation raised, in order (number n is the n-th): its `kind`, who
        raised it (`seat`, `person`), `text`, `at` and the `step` then current; a deviation's
        `decision`, `reason`, `decided_by` (seat) and `decided_at`, all None while it is open."""
        return tuple(copy.deepcopy(self._state.deviations))

    @property
    def section_since(self) -> float | None:
        """When the current section began: the time of the event that moved the ceremony in."""
        return self._state.section_since

    def results_of(self, action: str) -> list[tuple[int, dict[str, Any]]]:
        """What each completed step of `action` reported, in order."""
        s = self._state
        return [(n, copy.deepcopy(s.results[n])) for n in s.completed
                if self.script.step(n).action == action and n in s.results]

    def password_asked(self, now: float | None = None,
                       wants: tuple[d.Decision, ...] | None = None) -> PasswordAsk | None:
        """The passwords the machine's next piece of work needs, and who types them. `wants`:
        `self.wants(now)`, when the caller has it already (a view is built many times a
        second)."""
        if wants is None:
            wants = self.wants(now)
        want = wants[0] if wants else None
        step = self.current
        if step is None or not isinstance(want, (d.Execute, d.Perform)):
            return None
        if isinstance(want, d.Execute):
            names = tuple(want.secrets)
            return PasswordAsk(want.step, names, "backup", step.actor) if names else None
        names = tuple(want.params.get("secrets", ()))
        if not names:
            return None
        return PasswordAsk(want.step, names, "drill", step.actor,
                           next((self._state.typist[n] for n in names
                                 if n in self._state.typist), None))

    def share_asked(self, now: float | None = None,
                    wants: tuple[d.Decision, ...] | None = None) -> ShareAsk | None:
        """The KEK shares the machine's next piece of work needs, and from whom; None if it
        needs none. `wants` as for `password_asked`."""
        if wants is None:
            wants = self.wants(now)
        want = wants[0] if wants else None
        step = self.current
        if step is None or step.shares is None or not isinstance(want, (d.Execute, d.Perform)) \
                or want.step != step.n:
            return None
        if isinstance(want, d.Execute):
            kek = want.operation.get("kek") or {}
            purpose = "restore"
        else:
            kek = self._kek_made()
            purpose = "drill"
        kek_id, threshold = kek.get("id"), kek.get("threshold")
        if not isinstance(kek_id, str) or not isinstance(threshold, int):
            return None  # not a wrap backup's: the signer refuses it, naming why
        return ShareAsk(step.n, purpose, step.shares, kek_id, threshold,
                        tuple(self._state.shares.get(step.n, ())))

    def _kek_made(self) -> dict[str, Any]:
        """The KEK this ceremony's latest hsm.kek step made: {"id", "threshold"} ({} if none)."""
        r = self._last_result("hsm.kek")
        return {"id": r.get("kek_id"), "threshold": r.get("threshold")} if r else {}

    def lapses(self, now: float) -> tuple[ev.ApprovalLapsed, ...]:
        """Approvals that have lapsed at `now` and are not yet reported: the coordinator records
        each once (then the quorum is asked again)."""
        s = self._state
        if s.status not in ("running", "exception"):
            return ()
        return tuple(ev.ApprovalLapsed(at=now, seat=a.seat, quorum=q, step=a.approval.step,
                                       key=a.approval.key, nonce=a.approval.nonce)
                     for q, a in s.lapsed + self._lapsing(now))

    def presence_changes(self, live: set[str] | frozenset[str], now: float
                         ) -> tuple[ev.Presence, ...]:
        """Signed-in people whose console is live (`live`: people) or not, unlike what was last
        recorded: each change is journaled. Nobody is recorded connected before it is seen."""
        s = self._state
        if s.status not in ("running", "exception"):
            return ()
        out = []
        for person in sorted(set(s.signed_in.values())):
            if s.present.get(person, False) != (person in live):
                seats = tuple(sorted(o.seat for o in self.roster.officers.values()
                                     if o.person == person))
                out.append(ev.Presence(at=now, person=person, seats=seats,
                                       connected=person in live))
        return tuple(out)

    def present(self, person: str) -> bool:
        """Whether `person`'s console was last recorded connected."""
        return self._state.present.get(person, False)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain data: two machines agree iff their snapshots are equal."""
        s = self._state
        return {
            "status": s.status,
            "step": self.current.n if self.current else None,
            "now": s.now,  # judges expiry and dates the backup plan: part of the state
            "completed": list(s.completed),
            "signed_in": dict(s.signed_in),
            "people": copy.deepcopy(s.people),
            "values": {str(k): v for k, v in s.values.items()},
            "results": {str(k): v for k, v in s.results.items()},
            "observed": {str(k): v for k, v in s.observed.items()},
            "operations": {str(k): v["digest"] for k, v in s.operations.items()},
            "approvals": {q: [a.seat for a in lst] for q, lst in s.approvals.items()},
            "used_nonces": sorted(s.used_nonces),
            "started": {str(k): [a.seat for a in v] for k, v in s.started.items()},
            "exception": copy.deepcopy(s.exception),
            "accepted": {str(k): v for k, v in s.accepted.items()},
            "custody": copy.deepcopy(s.custody),
            "opened": copy.deepcopy(s.opened),
            "signoffs": copy.deepcopy(s.signoffs),
            "acted": {str(k): list(v) for k, v in s.acted.items()},
            "paused": s.paused,
            "typist": dict(s.typist),
            "lapsed": [[q, a.seat] for q, a in s.lapsed],
            "present": dict(s.present),
            "section_since": s.section_since,
            "deviations": copy.deepcopy(s.deviations),
        }

    def view(self, extras: Extras, wants: tuple[d.Decision, ...] | None = None,
             parts: Any = None) -> CeremonyView:
        """What every console is shown at `extras.now` (ceremony.view); reads, never changes.
        `parts`: a `view_of.Parts` kept by a caller that builds view after view (the daemon)."""
        from ceremony.machine.view_of import build_view  # the builder reads this class
        return build_view(self, extras, wants, parts)

    # --- what the machine wants done ------------------------------------------------------------
    def wants(self, now: float | None = None) -> tuple[d.Decision, ...]:
        """What to do next. `now`, the caller's clock, leaves out approvals that expired after the
        last accepted event: without it a coordinator resuming later would be told to Execute,
        have its OperationStarted refused, and never be asked for the approvals again."""
        s = self._state
        now = s.now if now is None else max(now, s.now)
        if s.status in ("completed", "aborted"):
            return ()
        step = self.current
        assert step is not None
        admin = self.script.ceremony.administrator
        if s.status == "exception":
            return (d.Ask(step.n, admin, "decide", dict(s.exception or {})),)
        work = STEP_KINDS[step.action].work
        if work == "person" and step.action == "signoff":
            return self._signoff_asks(step)
        if work == "person":
            return (d.Ask(step.n, step.actor, step.action, self._ask_detail(step)),)
        if work == "observe":
            return (d.Observe(step.n, step.observe or "", self._observe_params(step)),)
        if work == "perform":
            return (d.Perform(step.n, step.action, self._perform_params(step)),)
        if work == "quorum":
            q = self.script.quorums[step.quorum[0]]
            return self._approval_wants(q.authorizes, [q], now)
        # an operation: planned, approved by its quorums, executed (reconciled after a restart)
        quorums = [self.script.quorums[q] for q in step.quorum]
        if step.n in s.started:
            return (self._execute(step, s.started[step.n], reconcile=True),)
        asks = self._approval_wants(step.n, quorums, now)
        if asks:
            return asks
        used = [x for q in quorums for x in self._valid(q, now)[: q.m]]
        return (self._execute(step, used, reconcile=False),)

    def _signoff_asks(self, step: Step) -> tuple[d.Decision, ...]:
        """One Ask per role still owing its sign-off, each naming the seats asked (`seats`):
        every signed-in person of the actor's role or of the step's `cosigners` signs once,
        with the seat of theirs whose role comes first; the actor's role at least once."""
        owing = self.signoff_owing(step)
        detail = self._ask_detail(step)
        if not owing:  # the others have signed; nobody of the actor's role is here to
            return (d.Ask(step.n, step.actor, "signoff", {**detail, "seats": []}),)
        return tuple(d.Ask(step.n, role, "signoff", {**detail, "seats": seats})
                     for role, seats in owing.items())

    def signoff_owing(self, step: Step) -> dict[str, list[str]]:
        """The seats asked to sign off `step` now, by role (the actor's first): each signed-in
        person of a signing role who has not signed it, at their seat whose role comes first."""
        s = self._state
        roles = (step.actor, *step.cosigners)
        done = {s.signed_in.get(x["seat"]) for x in s.signoffs if x.get("step") == step.n}
        first: dict[str, str] = {}  # person -> seat
        for seat, person in sorted(s.signed_in.items()):
            role = self.roster.officers[seat].role
            if role not in roles or person in done:
                continue
            held = first.get(person)
            if held is None or roles.index(role) < roles.index(self.roster.officers[held].role):
                first[person] = seat
        owing: dict[str, list[str]] = {}
        for role in roles:
            seats = sorted(x for x in first.values() if self.roster.officers[x].role == role)
            if seats:
                owing[role] = seats
        return owing

    def _signed_off(self, step: Step) -> bool:
        """Whether `step` is signed off: nobody it asks still owes it, and someone of the
        actor's role has signed (the actor's is the sign-off; the others countersign it)."""
        return not self.signoff_owing(step) and any(
            x.get("step") == step.n and self.roster.officers[x["seat"]].role == step.actor
            for x in self._state.signoffs)

    def signoff_checkpoint(self, step: int) -> str | None:
        """The checkpoint the first sign-off of `step` signed: everyone after signs the same."""
        return next((x["checkpoint"] for x in self._state.signoffs if x.get("step") == step),
                    None)

    def _ask_detail(self, step: Step) -> dict[str, Any]:
        """What a person's step shows beside its text: a record's format, a bag and its
        contents (and, at a hand-over, who holds it now), the roles still to sign in."""
        if step.action == "signin":
            return {"missing": self._missing_roles()}
        detail: dict[str, Any] = {"text": step.text}
        if step.seat is not None:
            detail["seat"] = step.seat
        if step.distinct_from:  # who may not: shown, and the consoles offer it to the others
            s = self._state
            detail["not_seats"] = sorted(x for x, p in s.signed_in.items() if any(
                p in self.people_of(n) for n in step.distinct_from))
            detail["apart"] = "not whoever did step " + _words(
                tuple(str(n) for n in step.distinct_from))
        if step.format is not None:
            detail["format"] = step.format
        if step.action == "seal":
            detail.update(bag=step.bag, contents=list(step.contents))
        if step.action == "kek.share":  # the console opens its own sealed share with this ID
            detail["kek_id"] = self._kek_made().get("id")
        if step.action == "handover":
            held = self._state.custody.get(str(step.bag), {})
            detail.update(bag=step.bag, contents=list(held.get("contents", [])),
                          holder=held.get("custodian"))
        if step.action == "unseal":  # its serial is read off the bag, never shown beforehand
            held, _ = self._unseal_record(str(step.bag))
            detail.update(bag=step.bag, contents=list((held or {}).get("contents", [])),
                          holder=self._presenter(held))
        return detail

    def _unseal_record(self, bag: str) -> tuple[dict[str, Any] | None, str]:
        """The custody record an unseal of `bag` checks, and where it is from: this ceremony's
        own (a seal or hand-over here), else the previous ceremony's."""
        if bag in self._state.custody:
            held = self._state.custody[bag]
            return held, f"held by {held['custodian']} since step {held['step']}"
        if bag in self.previous_custody and bag not in self._state.opened:
            held = self.previous_custody[bag]
            who = held.get("name") or held["person"]
            return held, (f"the previous ceremony's record: held by {who} "
                          f"({held['custodian']}) since its step {held['step']}")
        return None, ""

    def _presenter(self, held: dict[str, Any] | None) -> str | None:
        """Who presents a bag: the holder's seat here if they are signed in, else their name."""
        if held is None:
            return None
        seats = sorted(x for x, p in self._state.signed_in.items() if p == held["person"])
        return seats[0] if seats else str(held.get("name") or held["person"])

    def _valid(self, q: Quorum, now: float) -> list[_Approved]:
        return self.held(q.id, now)

    def held(self, quorum: str, now: float) -> list[_Approved]:
        """The approvals `quorum` holds at `now`, in the order given: those not lapsed."""
        return [a for a in self._state.approvals.get(quorum, []) if not lapsed(a.approval, now)]

    def _approval_wants(self, step_n: int, quorums: list[Quorum], now: float
                        ) -> tuple[d.Decision, ...]:
        s = self._state
        target = self.script.step(step_n)
        if step_n not in s.operations:
            return (d.Plan(step_n, target.action, self._plan_params(target)),)
        op = s.operations[step_n]
        out: list[d.Decision] = []
        for q in quorums:
            have = self._valid(q, now)
            if len(have) < q.m:
                out.append(d.RequestApproval(
                    step_n, q.id, q.role, op["operation"], op["digest"], len(have), q.m,
                    tuple(x.seat for x in have), q.expires.seconds,
                ))
        return tuple(out)

    def _execute(self, step: Step, used: list[_Approved], reconcile: bool) -> d.Execute:
        op = self._state.operations[step.n]
        secrets = (step.password,) if step.password else ()
        return d.Execute(step.n, op["operation"], op["digest"], tuple(x.approval for x in used),
                         secrets, reconcile)

    def _missing_roles(self) -> dict[str, int]:
        held = self._holders()
        return {r.name: r.min - len(held.get(r.name, ())) for r in self.script.roles.values()
                if len(held.get(r.name, ())) < r.min}

    def _holders(self) -> dict[str, set[str]]:
        held: dict[str, set[str]] = {}
        for seat, person in self._state.signed_in.items():
            held.setdefault(self.roster.officers[seat].role, set()).add(person)
        return held

    def _last_result(self, action: str) -> dict[str, Any]:
        for n in reversed(self._state.completed):
            if self.script.step(n).action == action:
                return self._state.results.get(n, {})
        return {}

    def _observe_params(self, step: Step) -> dict[str, Any]:
        p: dict[str, Any] = {}
        if step.drive:
            p["drive"] = step.drive
        if step.observe == "signer.host_key":
            expected = self._expected(step)
            p["format"] = "sha256" if expected.startswith("SHA256:") else "md5"
        if step.observe == "backup.sha256":
            p["file"] = self._last_result("hsm.backup").get("file")
        if step.observe == "drive.sha256" and step.file:  # else the only key backup there
            p["file"] = self._pinned(step.file)
        if step.observe == "transcript.sha256":
            r = self._last_result("transcript")
            p.update(file=r.get("file"), drive=r.get("drive"))
        if step.observe and step.observe.startswith(("signer.", "hsm.")):
            p["signer"] = step.signer or self.script.signers[0].name
        return p

    def _perform_params(self, step: Step) -> dict[str, Any]:
        p: dict[str, Any] = {}
        if step.action.startswith("hsm."):
            p["signer"] = step.signer or self.script.signers[0].name
        if step.drive:
            p["drive"] = step.drive
            p["expected_serial"] = self.drive_pin(step.drive)
        if step.source:
            p["source"] = step.source
            if step.source == "backup":
                p["backup"] = self._last_result("hsm.backup")
            if step.source == "transcript":
                p["transcript"] = self._last_result("transcript")
        if step.drill and step.shares:  # a wrap backup's drill: the KSOs bring their shares
            p["backup"] = self._last_result("hsm.backup")
            p["shares"] = step.shares
            p["secrets"] = []
        elif step.drill:
            p["backup"] = self._last_result("hsm.backup")
            backups = [x for x in self.steps if x.action == "hsm.backup" and x.password]
            p["secrets"] = [backups[-1].password] if backups else []
        return p

    def _plan_params(self, step: Step) -> dict[str, Any]:
        p: dict[str, Any] = {"signer": step.signer or self.script.signers[0].name}
        if step.action == "hsm.generate":
            names = step.policies or tuple(self.script.policies)
            p["duration"] = str(step.duration)
            p["keys"] = [
                {"policy": n, "role": k.role, "algorithm": k.algorithm,
                 "lifetime_seconds": k.lifetime.seconds}
                for n in names for k in self.script.policies[n].keys
            ]
        if step.action == "hsm.backup":
            p["date"] = time.strftime("%Y-%m-%d", time.gmtime(self._state.now))
        if step.action == "hsm.kek":  # the coordinator adds each holder's console key
            p["threshold"] = step.threshold
            p["holders"] = list(step.holders)
        if step.action == "hsm.restore":  # the coordinator reads the backup off this drive
            p["drive"] = str(step.source).removeprefix("drive:")
            p["file"] = self._pinned(step.file)
        return p

    def expected(self, step: Step) -> str | None:
        """What a verify step compares with (its value, or the reference resolved), for
        displays; None when the reference cannot be resolved yet (a later step's value)."""
        try:
            return self._expected(step)
        except (KeyError, StopIteration, AssertionError):
            return None

    def drive_serial(self, label: str) -> str | None:
        """The serial last read off drive `label`: at its insert step, or at a later serial check
        (a wrong drive swapped before the check was retried is the new one); None if never."""
        for n in reversed(self._state.completed):
            st = self.script.step(n)
            if st.drive != label:
                continue
            if st.action == "drive.insert":
                return self._state.values.get(n)
            if st.action == "verify" and st.observe == "drive.serial":
                return self._state.observed.get(n) or self._state.values.get(n)
        return None

    def recorded_serial(self, label: str) -> str | None:
        """The serial the KGA wrote down for drive `label` at its latest usb-serial record step
        done; None if none."""
        for n in reversed(self._state.completed):
            st = self.script.step(n)
            if st.action == "record" and st.format == "usb-serial" and st.drive == label:
                return self._state.values.get(n)
        return None

    def host_key_pin(self, signer: str) -> str | None:
        """The host-key fingerprint the script pins for `signer`, with a `previous.KEY` pin
        resolved from the previous ceremony's record; None if the script pins none."""
        declared = next(x for x in self.script.signers if x.name == signer)
        return self._pinned(declared.host_key)

    def drive_pin(self, label: str) -> str | None:
        """The serial drive `label` must have: the script's pin (a `previous.KEY` pin resolved
        from the previous ceremony's record), else the serial the previous ceremony read off it
        if it came out of a bag that ceremony sealed (`unseal`); None if nothing pins it."""
        pin = self.script.drives[label].serial
        if pin is None:
            for opened in self._state.opened.values():
                serial = (opened.get("drives") or {}).get(label)
                if opened.get("previous") and serial:
                    return str(serial)
        return self._pinned(pin)

    def _pinned(self, pin: str | None) -> str | None:
        """A script's pin as it stands: a `previous.KEY` pin is the previous record's value."""
        if pin is not None and pin.startswith("previous."):
            return str(self.previous[pin.removeprefix("previous.")])
        return pin

    def _expected(self, step: Step) -> str:
        if step.value is not None:
            return step.value
        ref = step.expect or ""
        kind, _, rest = ref.partition(".")
        if kind == "previous":
            return str(self.previous[rest])
        if kind == "step":
            return self._state.values[int(rest)]
        if kind == "signer":
            name, _, attr = rest.rpartition(".")
            if attr == "host_key":
                pin = self.host_key_pin(name)
                assert pin is not None  # the loader checked the signer declares one
                return pin
            signer = next(x for x in self.script.signers if x.name == name)
            return str(getattr(signer, attr))
        if kind == "drive":
            return str(self.drive_pin(rest.rpartition(".")[0]))
        raise AssertionError(f"unresolvable reference {ref!r}")  # the loader checked it

    # --- events ----------------------------------------------------------------------------------
    def handle(self, event: ev.Event) -> tuple[d.Decision, ...]:
        """Apply one event; returns notices then what the machine now wants. Raises Refused."""
        saved = self._state
        self._state = copy.deepcopy(saved)
        try:
            notices = self._handle(event)
        except BaseException:  # Refused, or a bug: either way the event did not happen
            self._state = saved
            raise
        cur = self.current
        if cur is not None and cur.section != self._state.section:
            self._state.section, self._state.section_since = cur.section, event.at
        return tuple(notices) + self.wants()

    def _handle(self, e: ev.Event) -> list[d.Decision]:
        s = self._state
        if s.status in ("completed", "aborted"):
            raise Refused(f"the ceremony is {s.status}")
        # the machine's time never goes back: an event stamped earlier (another console's
        # clock, a replayed stamp) is judged at the latest time already seen
        s.now = max(s.now, e.at)
        self._expire(s.now)
        room = self._room(e)
        if room is not None:
            return room
        if s.paused and not isinstance(e, _WORK_EVENTS):
            raise Refused("the ceremony is paused by the administrator")
        if isinstance(e, ev.SignIn):
            return self._sign_in(e)
        if isinstance(e, ev.Decide):
            return self._decide(e)
        if s.status == "exception":
            raise Refused(f"the ceremony is stopped at step {self.current.n} until the "  # type: ignore[union-attr]
                          f"{self.script.ceremony.administrator} records a decision")
        if isinstance(e, ev.Approve):
            return self._approve(e)
        if isinstance(e, ev.RefuseApproval):
            return self._refuse_approval(e)
        if isinstance(e, ev.OperationPlanned):
            return self._planned(e)
        step = self.current
        assert step is not None
        if not isinstance(e, ACCEPTS[step.action]):
            raise Refused(f"step {step.n} ({step.action}) does not take {type(e).__name__}")
        if isinstance(e, (ev.Observed, ev.OperationStarted, ev.Performed, ev.PerformFailed)) \
                and e.step != step.n:
            raise Refused(f"{type(e).__name__} for step {e.step}, but step {step.n} is current")
        handler = getattr(self, f"_on_{type(e).__name__}")
        return handler(step, e)

    def _expire(self, now: float) -> None:
        """Drop approvals past their expiry, except those already consumed by a started step;
        each is kept in `lapsed` until an ApprovalLapsed reports it."""
        gone = self._lapsing(now)
        for q, a in gone:
            self._state.approvals[q].remove(a)
        self._state.lapsed += gone

    def _lapsing(self, now: float) -> list[tuple[str, _Approved]]:
        """Approvals held at `now` past their expiry, but for a step already started (its
        operation used them while they were valid): (quorum id, approval)."""
        s = self._state
        return [(q, a) for q, lst in s.approvals.items()
                if self.script.quorums[q].authorizes not in s.started
                for a in lst if lapsed(a.approval, now)]

    def _complete(self, step: Step, value: str | None = None) -> list[d.Decision]:
        s = self._state
        if value is not None:
            s.values[step.n] = value
        s.completed.append(step.n)
        s.index += 1
        notices: list[d.Decision] = [d.StepCompleted(step.n, value)]
        if s.index == len(self.steps):
            s.status = "completed"
            notices.append(d.CeremonyEnded("completed"))
        elif self._quorum_step_satisfied():
            # approvals that came in early (both KSOs at the first quorum step) complete the
            # next quorum step as soon as it is reached: nobody is left to ask
            notices += self._complete(self.current)  # type: ignore[arg-type]
        return notices

    def _quorum_step_satisfied(self) -> bool:
        step = self.current
        if step is None or step.action != "quorum":
            return False
        q = self.script.quorums[step.quorum[0]]
        return len(self._state.approvals.get(q.id, [])) >= (step.count or q.m)

    def _stop(self, step: Step, kind: str, reason: str, **extra: Any) -> list[d.Decision]:
        self._state.status = "exception"
        self._state.exception = {"step": step.n, "kind": kind, "reason": reason, **extra}
        return [d.ExceptionRaised(step.n, reason)]

    def _actor(self, step: Step, seat: str) -> None:
        """Refuse unless `seat` is signed in and may complete `step`; then its person has acted
        on it (a later step's `distinct_from` reads that)."""
        self._signed_in(seat)
        role = self.roster.officers[seat].role
        admin = self.script.ceremony.administrator
        if step.seat is not None and seat != step.seat and role == step.actor:
            raise Refused(f"step {step.n} is for {step.seat}; {seat} may not complete it [A4]")
        if role != step.actor and not (role == admin and step.kga_may_complete):
            raise Refused(f"step {step.n} is for the {step.actor}; {seat} ({role}) may not "
                          "complete it [A4]")
        self._apart(f"step {step.n}", step.distinct_from, seat)
        self._state.acted.setdefault(step.n, []).append(self._state.signed_in[seat])

    def _apart(self, what: str, steps: tuple[int, ...], seat: str) -> None:
        """Refuse `seat` if its person acted on (or approved) one of `steps`: the script's
        `distinct_from`, two different people whatever roles they hold."""
        person = self._state.signed_in[seat]
        for n in steps:
            if person in self.people_of(n):
                raise Refused(f"{what} must be done by someone other than whoever did step {n}: "
                              f"{seat}'s holder did")

    def people_of(self, n: int) -> set[str]:
        """The people who acted on step `n`: who completed or signed off a person's step, who
        approved a quorum step's quorum or an operation's (in hand, or used when it started)."""
        s = self._state
        people = set(s.acted.get(n, ())) | {
            s.signed_in.get(x["seat"], "") for x in s.signoffs if x.get("step") == n} - {""}
        step = self.script.step(n)
        for qid in step.quorum:
            q = self.script.quorums[qid]
            people |= {a.person for a in s.approvals.get(qid, ())}
            people |= {a.person for a in s.started.get(q.authorizes, ())
                       if self.roster.officers[a.seat].role == q.role}
        return people

    def may_approve(self, quorum: str, seat: str) -> bool:
        """Whether enrolled `seat` may give one of the quorum's approvals (signed in or not yet):
        of its role, a seat the quorum lists if it lists any, and its person (the roster's, the
        only one who may sign in for it) did none of its `distinct_from` steps."""
        q, officer = self.script.quorums[quorum], self.roster.officers.get(seat)
        return officer is not None and officer.role == q.role and \
            (not q.seats or seat in q.seats) and \
            not any(officer.person in self.people_of(n) for n in q.distinct_from)

    def _signed_in(self, seat: str) -> None:
        if seat not in self.roster.officers:
            raise Refused(f"{seat} is not an enrolled seat")
        if seat not in self._state.signed_in:
            raise Refused(f"{seat} must sign in before acting")

    # sign-in and separation of duty
    def _sign_in(self, e: ev.SignIn) -> list[d.Decision]:
        s = self._state
        if not e.seats:
            raise Refused("a sign-in names at least one seat")
        roles_now = sorted({self.roster.officers[x].role for x, p in s.signed_in.items()
                            if p == e.person})
        new_roles: list[str] = []
        for seat in e.seats:
            off = self.roster.officers.get(seat)
            if off is None:
                raise Refused(f"{seat} is not enrolled in the roster")
            if off.person != e.person:
                raise Refused(f"{seat} is enrolled for another person")
            if seat in s.signed_in:
                raise Refused(f"{seat} is already signed in")
            new_roles.append(off.role)
        breach = separation_breach(self.script, [*roles_now, *new_roles])
        if breach is not None:
            raise Refused(breach)
        held = self._holders()
        overflow = role_overflow(self.script, {
            r: held.get(r, set()) | {e.person} for r in new_roles})
        if overflow is not None:
            raise Refused(overflow)
        self._identity(e)
        for seat in e.seats:
            s.signed_in[seat] = e.person
        rec = s.people.setdefault(e.person, {"name": e.name, "organisation": e.organisation,
                                             "seats": []})
        rec["seats"] = sorted(set(rec["seats"]) | set(e.seats))
        return []

    def _identity(self, e: ev.SignIn) -> None:
        """Refuse a sign-in whose person is not identified as the rules say: each seat of a
        trusted role by its own enrolled key (one signature per seat, all over the one message
        naming every seat), each seat of an untrusted role by the administrator vouching for the
        ID document they checked (its type and last characters, signed by the administrator's
        key). The signed time must be within SIGNIN_LEEWAY of the event's stamp. While
        replaying a journal from before sign-ins were signed, an unsigned sign-in is judged as
        it was then: an untrusted role needs the administrator's `id_checked`."""
        admin = self.script.ceremony.administrator
        roles = {x: self.roster.officers[x].role for x in e.seats}
        untrusted = [x for x in e.seats if not self.script.roles[roles[x]].trusted]
        if not self.signed_signin and not (e.signatures or e.fingerprints or e.by):
            if untrusted and not e.id_checked:
                raise Refused(f"{roles[untrusted[0]]} is not a trusted role: a government ID "
                              "must be checked")
            return
        if not e.signatures:
            who = " and ".join(e.seats)
            raise Refused((f"the {admin} signs {who} in with their own key, vouching for the ID "
                           "document they checked" if untrusted else
                           f"{who} sign{'s' if len(e.seats) == 1 else ''} in with "
                           f"{'its' if len(e.seats) == 1 else 'each'} seat's own key") +
                          ": a sign-in is signed, and this one carries no signature")
        if not isinstance(e.by, str):
            raise Refused(f"the sign-in's voucher {_quoted(e.by)} is not a seat")
        if type(e.signed_at) is not int or abs(e.signed_at - e.at) > SIGNIN_LEEWAY:
            raise Refused(f"the sign-in was signed at {_quoted(e.signed_at)}, not within "
                          f"{SIGNIN_LEEWAY} s of its arrival: sign in again")
        fields: dict[str, Any] = {}
        if not e.by:
            if untrusted:
                raise Refused(f"{roles[untrusted[0]]} is not a trusted role: the {admin} signs "
                              f"{untrusted[0]} in after checking their ID document")
            if e.id_checked or e.id_document or e.id_digits:
                raise Refused("an officer signing in with their own key records no ID document")
            signers = list(e.seats)
        else:
            voucher = self.roster.officers.get(e.by)
            if voucher is None or voucher.role != admin:
                raise Refused(f"only the {admin} signs someone else in, vouching for their ID; "
                              f"{_quoted(e.by)} is not an enrolled {admin} seat")
            if e.by not in self._state.signed_in:
                raise Refused(f"{e.by} must sign in before signing anyone else in")
            if voucher.person == e.person:
                raise Refused(f"the {admin} does not vouch for their own ID")
            trusted = [x for x in e.seats if x not in untrusted]
            if trusted:
                raise Refused(f"{roles[trusted[0]]} is a trusted role: {trusted[0]} signs in "
                              f"with their own key, not on the {admin}'s word")
            if not e.id_checked:
                raise Refused(f"the {admin} signs someone in only after checking their ID")
            if e.id_document not in ID_DOCUMENTS:
                raise Refused(f"the ID document checked is one of {', '.join(ID_DOCUMENTS)}, "
                              f"not {_quoted(e.id_document)}")
            problem = id_digits_problem(e.id_digits)
            if problem is not None:
                raise Refused(problem)
            fields = {"by": e.by, "id_document": e.id_document, "id_digits": e.id_digits}
            signers = [e.by]
        if len(e.signatures) != len(signers) or len(e.fingerprints) != len(signers):
            raise Refused(f"the sign-in needs one signature, and one key fingerprint, by each of "
                          f"{', '.join(signers)} [A12]")
        try:
            message = signin_message(self.script.ceremony.id, self.script.sha256, e.person,
                                     tuple(e.seats), e.signed_at, **fields)
        except ValueError as err:
            raise Refused(f"the sign-in cannot be signed as it stands: {err}") from err
        for seat, signature, fingerprint in zip(signers, e.signatures, e.fingerprints,
                                                strict=True):
            key = self.roster.officers[seat].signing_key
            if fingerprint != key_fingerprint(key):
                raise Refused(f"the sign-in names key {_quoted(fingerprint)} for {seat}, whose "
                              f"enrolled key is {key_fingerprint(key)} [A12]")
            if not verify_signature(key, signature, message):
                raise Refused(f"the sign-in is not signed with {seat}'s enrolled key (the "
                              "signature does not verify) [A12]")

    # people's steps
    def _on_Acknowledge(self, step: Step, e: ev.Acknowledge) -> list[d.Decision]:
        self._actor(step, e.seat)
        if step.action == "signin":
            missing = self._missing_roles()
            if missing:
                need = ", ".join(f"{n} more {r}" for r, n in sorted(missing.items()))
                raise Refused(f"sign-in is not complete: {need} must sign in")
        return self._complete(step)

    def _on_Record(self, step: Step, e: ev.Record) -> list[d.Decision]:
        self._actor(step, e.seat)
        taken = step.action in ("seal", "handover")
        fmt = "bag-serial" if taken or step.action == "unseal" else (step.format or "text")
        value = check_value(fmt, e.value)
        if value is None:
            raise Refused(f"{e.value!r} is not a valid {fmt}")
        if taken:
            self._take_bag(step, e, value)
        elif step.action == "unseal":
            return self._unseal(step, value, e.at)
        elif step.expect is not None:  # a fact from the record: a difference is an exception
            expected = self._expected(step)
            if value != check_value(fmt, expected):
                self._state.observed[step.n] = value
                return self._stop(step, "mismatch", f"entered {value} but {_source(step)} says "
                                  f"{expected}", observed=value, expected=expected)
        elif step.equals is not None:
            # the referenced value may be a raw result (colon hex from a transcript): compare the
            # two in one normal form, as formats.py requires of every comparison
            recorded = self._state.values.get(step.equals)
            if recorded is None or value != check_value(fmt, recorded):
                raise Refused(f"{value} does not match the value of step {step.equals}")
        return self._complete(step, value)

    def _unseal(self, step: Step, serial: str, at: float) -> list[d.Decision]:
        """The actor reads the serial of the bag its holder presents. The holder must be signed
        in, and the bag must be the one the custody record names: another serial, or contents
        other than the step lists, stops the ceremony (retry or abort: a bag that is not the
        one sealed is never accepted). Opened, it leaves custody; what it held is out."""
        s, bag = self._state, str(step.bag)
        if bag in s.opened and bag not in s.custody:  # not sealed again since
            raise Refused(f"bag {bag} was unsealed at step {s.opened[bag]['step']} already")
        held, where = self._unseal_record(bag)
        if held is None:
            raise Refused(f"bag {bag} is in no custody record: neither sealed in this ceremony "
                          "nor held at the end of the previous one")
        if held["person"] not in s.signed_in.values():
            raise Refused(f"bag {bag} is held by {self._presenter(held)}, who must sign in to "
                          "present it")
        recorded = check_value("bag-serial", held["serial"]) or held["serial"]
        if serial != recorded:
            return self._stop(step, "bag-mismatch", f"bag {bag} reads serial {serial}, but "
                              f"{where} says serial {recorded}: it is not the bag that "
                              "was sealed", observed=serial, expected=recorded)
        inside = list(held.get("contents", []))
        if step.contents and sorted(step.contents) != sorted(inside):
            return self._stop(step, "bag-mismatch", f"bag {bag} holds {', '.join(inside)} by "
                              f"{where}, not {', '.join(step.contents)} as step {step.n} lists",
                              observed=", ".join(inside), expected=", ".join(step.contents))
        s.opened[bag] = {"serial": serial, "contents": inside, "step": step.n, "at": at,
                         "holder": held["custodian"], "person": held["person"],
                         "name": held.get("name"), "previous": bag not in s.custody,
                         "drives": dict(held.get("drives") or {})}
        s.custody.pop(bag, None)
        return self._complete(step, serial)

    def _take_bag(self, step: Step, e: ev.Record, serial: str) -> None:
        """A custodian takes a bag: as it is sealed (its serial must be the one recorded at the
        step `serial` names) or from its holder (its serial and contents are the sealed bag's).
        Either way they sign for it with their own key, and the machine keeps that signature.

        A hand-over to the person who already holds the bag is refused: nothing changes hands, and
        a custody chain that lists it would say someone gave a bag to themselves."""
        s, bag = self._state, str(step.bag)
        person = s.signed_in[e.seat]
        held = s.custody.get(bag)
        if step.action == "seal":
            recorded = s.values[step.serial]  # type: ignore[index]
            contents, giver, where = list(step.contents), None, f"recorded at step {step.serial}"
            sealed_at = step.n
        elif held is None:
            raise Refused(f"bag {bag} has not been sealed: there is nobody to take it from")
        elif held["person"] == person:
            raise Refused(f"{e.seat}'s holder already holds bag {bag} (as {held['custodian']} "
                          f"since step {held['step']}): a hand-over is to someone else")
        else:
            recorded, contents, giver = held["serial"], list(held["contents"]), held["custodian"]
            sealed_at = held.get("sealed_at", held["step"])
            where = f"sealed at step {sealed_at}"
        if serial != recorded:
            raise Refused(f"bag serial {serial} does not match {recorded}, {where}")
        message = custody_message(self.script.ceremony.id, step.n, self.script.sha256, bag,
                                  serial, contents, kind=step.action, giver=giver)
        key = load_public_key(self.roster.officers[e.seat].signing_key)
        try:
            key.verify(base64.b64decode(e.signature, validate=True), message)
        except (InvalidSignature, ValueError) as err:
            raise Refused(f"{e.seat} takes bag {bag} by signing for it: the "
                          "acceptance is missing or does not verify [A14]") from err
        record: dict[str, Any] = {
            "serial": serial, "contents": contents, "custodian": e.seat, "person": person,
            "step": step.n, "at": e.at, "signature": e.signature,
        }
        if giver is not None:  # a hand-over says from whom, and where the bag was sealed
            record.update({"from": giver, "from_person": held["person"],  # type: ignore[index]
                           "sealed_at": sealed_at})
        s.custody[bag] = record

    def _on_SignOff(self, step: Step, e: ev.SignOff) -> list[d.Decision]:
        self._signed_in(e.seat)
        roles = (step.actor, *step.cosigners)
        role = self.roster.officers[e.seat].role
        if role not in roles:
            raise Refused(f"step {step.n} is signed off by the {_words(roles)}; {e.seat} "
                          f"({role}) is not one of them")
        person = self._state.signed_in[e.seat]
        if any(x.get("step") == step.n and self._state.signed_in.get(x["seat"]) == person
               for x in self._state.signoffs):
            raise Refused(f"{person} has signed off step {step.n} already")
        self._apart(f"step {step.n}'s sign-off", step.distinct_from, e.seat)
        first = self.signoff_checkpoint(step.n)
        if first is not None and e.checkpoint != first:
            raise Refused(f"{e.seat} signed another checkpoint than the one step {step.n}'s "
                          "first sign-off signed: every officer signs the same one")
        key = load_public_key(self.roster.officers[e.seat].signing_key)
        try:
            key.verify(base64.b64decode(e.signature), e.checkpoint.encode())
        except (InvalidSignature, ValueError) as err:
            raise Refused(f"{e.seat}'s sign-off signature does not verify") from err
        self._state.signoffs.append({"seat": e.seat, "checkpoint": e.checkpoint,
                                    "signature": e.signature, "step": step.n})
        return self._complete(step) if self._signed_off(step) else []

    def _decide(self, e: ev.Decide) -> list[d.Decision]:
        s = self._state
        admin = self.script.ceremony.administrator
        self._signed_in(e.seat)
        if self.roster.officers[e.seat].role != admin:
            raise Refused(f"only the {admin} records exception decisions")
        if s.status != "exception" or s.exception is None:
            raise Refused("there is no exception to decide")
        step = self.current
        assert step is not None
        exc = s.exception
        if e.decision == "retry":
            s.status, s.exception = "running", None
            s.observed.pop(step.n, None)
            return []
        if e.decision in ("accept", "abort") and not e.reason.strip():
            raise Refused(f"to {e.decision}, the {admin} writes a reason")
        if e.decision == "abort":
            s.status = "aborted"
            s.exception = {**exc, "decision": "abort", "reason_written": e.reason}
            return [d.CeremonyEnded("aborted")]
        if e.decision == "accept":
            if exc["kind"] not in ACCEPTABLE_EXCEPTIONS:
                raise Refused("a failed operation cannot be accepted: retry it or abort")
            s.status, s.exception = "running", None
            s.accepted[step.n] = e.reason
            return self._complete(step, s.observed.get(step.n))
        raise Refused(f"decision must be retry, accept or abort, not {e.decision!r}")

    # the machine's own steps
    def _on_Observed(self, step: Step, e: ev.Observed) -> list[d.Decision]:
        expected = self._expected(step)
        self._state.observed[step.n] = e.value
        if _normalise(step.observe or "", e.value) == _normalise(step.observe or "", expected):
            return self._complete(step, e.value)
        return self._stop(step, "mismatch", f"observed {e.value} but {_source(step)} says "
                          f"{_shown(step.observe or '', expected)}", observed=e.value,
                          expected=expected)

    def _on_OperationStarted(self, step: Step, e: ev.OperationStarted) -> list[d.Decision]:
        s = self._state
        if step.n in s.started:
            raise Refused(f"step {step.n}'s operation was already started")
        op = s.operations.get(step.n)
        if op is None or op["digest"] != e.digest:
            raise Refused(f"step {step.n}: that is not the planned operation")
        used: list[_Approved] = []
        for qid in step.quorum:
            q = self.script.quorums[qid]
            valid = self.held(qid, s.now)
            if len(valid) < q.m:
                raise Refused(f"quorum {qid} has {len(valid)} of {q.m} valid approvals")
            used += valid[: q.m]
        s.started[step.n] = used
        return []

    def _on_Performed(self, step: Step, e: ev.Performed) -> list[d.Decision]:
        s = self._state
        if step.action in STATE_CHANGING and step.n not in s.started:
            raise Refused(f"step {step.n}'s operation was never started")
        r = e.result
        a = step.action
        needed = STEP_KINDS[a].yields
        if needed and needed not in r:
            raise Refused(f"step {step.n} ({a}): the result lacks {needed!r}")
        s.results[step.n] = dict(e.result)
        if a == "drive.insert":
            expected = self.drive_pin(str(step.drive))
            serial = str(r.get("serial", ""))
            if expected and (_normalise("drive.serial", serial)
                             != _normalise("drive.serial", expected)):
                return self._stop(step, "failure", f"drive {step.drive} has serial {serial}, the "
                                  f"script expects {expected}: wrong drive")
            return self._complete(step, serial)
        if a == "drive.verify" and not r.get("ok"):
            return self._stop(step, "failure", f"drive {step.drive} failed its check: "
                              f"{r.get('detail', 'sha256 mismatch')}")
        if a == "drive.verify" and step.drill:
            drill = r.get("drill")
            if not isinstance(drill, dict):
                raise Refused(f"step {step.n} (drive.verify with drill): the result lacks 'drill'")
            if not drill.get("match"):
                return self._stop(step, "failure", f"restore drill: {drill_difference(drill)}")
        return self._complete(step, str(r[needed]) if needed else None)

    def _on_PerformFailed(self, step: Step, e: ev.PerformFailed) -> list[d.Decision]:
        return self._stop(step, "failure", e.error)

    def _planned(self, e: ev.OperationPlanned) -> list[d.Decision]:
        s = self._state
        step = self.current
        assert step is not None
        target = step.n if step.action in STATE_CHANGING else (
            self.script.quorums[step.quorum[0]].authorizes if step.action == "quorum" else None)
        if e.step != target:
            raise Refused(f"no operation is being planned for step {e.step} now")
        if e.step in s.operations:
            raise Refused(f"step {e.step}'s operation is already planned")
        kind = STATE_CHANGING[self.script.step(e.step).action]
        if e.operation.get("op") != kind:
            raise Refused(f"step {e.step} plans a {kind} operation, not {e.operation.get('op')!r}")
        s.operations[e.step] = {"operation": dict(e.operation),
                                "digest": operation_digest(e.operation)}
        return []

    def _quorum_for(self, approval_step: int, role: str) -> Quorum:
        step = self.current
        assert step is not None
        open_ids = step.quorum if step.action in ("quorum", *STATE_CHANGING) else ()
        for qid in open_ids:
            q = self.script.quorums[qid]
            if q.authorizes == approval_step and q.role == role:
                return q
        raise Refused(f"no {role} approval is asked for step {approval_step} now")

    def _approve(self, e: ev.Approve) -> list[d.Decision]:
        s = self._state
        self._signed_in(e.seat)
        officer = self.roster.officers[e.seat]
        if e.approval.key != officer.signing_key:
            raise Refused(f"the approval is not signed with {e.seat}'s enrolled key")
        q = self._quorum_for(e.approval.step, officer.role)
        op = s.operations.get(q.authorizes)
        if op is None:
            raise Refused(f"step {q.authorizes}'s operation is not planned yet")
        if q.authorizes in s.started:
            raise Refused(f"step {q.authorizes}'s operation has already started")
        try:
            check_approval(
                e.approval, ceremony=self.script.ceremony.id, step=q.authorizes,
                script_sha256=self.script.sha256, operation=op["digest"], now=s.now,
                max_lifetime=q.expires.seconds + CLOCK_SKEW,
            )
        except ApprovalRefused as err:
            raise Refused(str(err)) from err
        nonce = nonce_key(e.approval.key, e.approval.nonce)
        if nonce in s.used_nonces:
            raise Refused("this approval was already used (replayed nonce) [A3]")
        if q.seats and e.seat not in q.seats:
            raise Refused(f"quorum {q.id} is approved by {_words(q.seats)} only; {e.seat} may "
                          "not approve it")
        self._apart(f"an approval of quorum {q.id}", q.distinct_from, e.seat)
        have = s.approvals.setdefault(q.id, [])
        person = s.signed_in[e.seat]
        if any(a.person == person for a in have):
            raise Refused(f"{e.seat}'s holder already approved {q.id}: a quorum needs "
                          f"{q.m} different people")
        if len(have) >= q.m:
            raise Refused(f"{q.id} already has {q.m} of {q.m} approvals")
        have.append(_Approved(e.seat, person, e.approval))
        s.used_nonces.add(nonce)
        step = self.current
        assert step is not None
        if step.action == "quorum" and step.quorum[0] == q.id and len(have) >= (step.count or q.m):
            return self._complete(step)
        return []

    def _refuse_approval(self, e: ev.RefuseApproval) -> list[d.Decision]:
        self._signed_in(e.seat)
        q = self.script.quorums.get(e.quorum)
        if q is None:
            raise Refused(f"there is no quorum {e.quorum!r}")
        role = self.roster.officers[e.seat].role
        if role != q.role:
            raise Refused(f"{e.seat} ({role}) may not refuse for quorum {q.id} of the {q.role}")
        self._quorum_for(q.authorizes, role)
        if q.authorizes in self._state.started:
            raise Refused(f"step {q.authorizes}'s operation has already started")
        self._state.approvals[q.id] = []
        return []

    # the room: pause and resume, passwords, lapsed approvals, consoles
    def _room(self, e: ev.Event) -> list[d.Decision] | None:
        """Events that concern the room rather than a step; None for every other event."""
        s = self._state
        if isinstance(e, (ev.Pause, ev.Resume)):
            kind = "pause" if isinstance(e, ev.Pause) else "resume"
            admin = self.script.ceremony.administrator
            officer = self.roster.officers.get(e.seat)
            if officer is None or officer.role != admin:
                raise Refused(f"only the {admin} may {kind} the ceremony")
            if s.paused == isinstance(e, ev.Pause):
                raise Refused(f"the ceremony is already {'paused' if s.paused else 'running'}")
            s.paused = isinstance(e, ev.Pause)
            return []
        if isinstance(e, ev.PasswordEntered):
            return self._password(e)
        if isinstance(e, ev.ShareGiven):
            return self._share(e)
        if isinstance(e, ev.ApprovalLapsed):
            key = nonce_key(e.key, e.nonce)
            mine = [x for x in s.lapsed if nonce_key(x[1].approval.key, x[1].approval.nonce) == key]
            if not mine:
                raise Refused(f"{e.seat}'s approval for {e.quorum} has not lapsed unreported")
            s.lapsed.remove(mine[0])
            return []
        if isinstance(e, ev.Presence):
            s.present[e.person] = e.connected
            return []
        if isinstance(e, ev.Remark):
            return self._remark(e)
        if isinstance(e, ev.DecideDeviation):
            return self._decide_deviation(e)
        return None

    def _remark(self, e: ev.Remark) -> list[d.Decision]:
        """A remark or a deviation, from any signed-in seat (witnesses included), at any time
        the ceremony is not over: paused and stopped on an exception too. It stops nothing."""
        s = self._state
        self._signed_in(e.seat)
        if e.kind not in NOTE_KINDS:
            raise Refused(f"a note is a remark or a deviation, not {_quoted(e.kind)}")
        text = _note_text(f"the {e.kind}", e.text, f"a {e.kind} says what happened: its text "
                          "is empty")
        cur = self.current
        s.deviations.append({
            "n": len(s.deviations) + 1, "kind": e.kind, "seat": e.seat,
            "person": s.signed_in[e.seat], "text": text, "at": e.at,
            "step": cur.n if cur is not None else None,
            "decision": None, "reason": None, "decided_by": None, "decided_at": None,
        })
        return []

    def _decide_deviation(self, e: ev.DecideDeviation) -> list[d.Decision]:
        """The administrator accepts or rejects an open deviation, with a reason; once."""
        s = self._state
        admin = self.script.ceremony.administrator
        self._signed_in(e.seat)
        if self.roster.officers[e.seat].role != admin:
            raise Refused(f"only the {admin} decides on deviations")
        n = e.deviation
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(s.deviations):
            raise Refused(f"there is no deviation {_quoted(n)}")
        x = s.deviations[n - 1]
        if x["kind"] != "deviation":
            raise Refused(f"#{n} is a remark: a remark needs no decision")
        if x["decision"] is not None:
            raise Refused(f"deviation {n} was already decided: {x['decision']}ed by "
                          f"{x['decided_by']}")
        if e.decision not in DEVIATION_DECISIONS:
            raise Refused(f"a deviation is accepted or rejected, not {_quoted(e.decision)}")
        reason = _note_text("the reason", e.reason,
                            f"to {e.decision} deviation {n}, the {admin} writes a reason")
        x.update(decision=e.decision, reason=reason, decided_by=e.seat, decided_at=e.at)
        return []

    def _password(self, e: ev.PasswordEntered) -> list[d.Decision]:
        s = self._state
        ask = self.password_asked(s.now)
        if ask is None or e.step != ask.step or e.name not in ask.names:
            raise Refused(f"no {e.name} password is asked for at step {e.step}")
        if e.purpose != ask.purpose:
            raise Refused(f"the {e.name} password is asked for the {ask.purpose}, not the "
                          f"{e.purpose}")
        me = self.roster.officers.get(e.seat)
        if me is None:
            raise Refused(f"{e.seat} is not an enrolled seat")
        if ask.purpose == "backup" and me.role != ask.actor:
            raise Refused(f"the {ask.actor} enters the {e.name} password at step {e.step}")
        if ask.purpose == "drill":
            role = self.script.roles.get(me.role)
            if e.seat not in s.signed_in or role is None or role.observer:
                raise Refused(f"{e.seat} cannot enter a password: only a signed-in officer of a "
                              "trusted role can")
            if me.person == ask.not_person:
                raise Refused(f"the restore drill needs the {e.name} password from a second "
                              "officer, read from a sealed copy: not from the person who typed "
                              "it at the backup")
        if not e.verified:
            raise Refused(f"that is not the pre-generated {e.name} password (it does not match "
                          "the verifier recorded before the ceremony): read it again and retype "
                          "it [A11]")
        if ask.purpose == "backup":
            s.typist[e.name] = me.person
        return []


    def _share(self, e: ev.ShareGiven) -> list[d.Decision]:
        """Who brings a KEK share: a signed-in officer of the step's `shares` role, each person
        once. Whether the share opens is the signer's to say."""
        s = self._state
        ask = self.share_asked(s.now)
        if ask is None or e.step != ask.step:
            raise Refused(f"no KEK share is asked for at step {e.step}")
        if e.purpose != ask.purpose:
            raise Refused(f"the KEK shares are asked for the {ask.purpose}, not the {e.purpose}")
        me = self.roster.officers.get(e.seat)
        if me is None or e.seat not in s.signed_in:
            raise Refused(f"{e.seat} is not signed in")
        if me.role != ask.role:
            raise Refused(f"the KEK shares at step {e.step} are brought by the {ask.role}s, not "
                          f"the {me.role}")
        given = s.shares.setdefault(e.step, [])
        if e.seat not in given:  # a share brought again (after a restart) is the same person's
            given.append(e.seat)
        return []


def separation_breach(script: Script, roles: Iterable[str]) -> str | None:
    """Why one person may not hold `roles` together (one entry per seat they hold), or None: two
    seats of one role (quorums count people), or a pair of roles the script's `[separation]
    may_combine` does not list. The one statement of the rule: the machine's sign-in refuses with
    it, and the rehearsal checks its cast with it before anything starts."""
    seen: set[str] = set()
    for r in roles:
        if r in seen:
            return f"one person may not hold two {r} seats (quorums count people) [A5]"
        seen.add(r)
    ordered = sorted(seen)
    for i, r1 in enumerate(ordered):
        for r2 in ordered[i + 1:]:
            if frozenset((r1, r2)) not in script.may_combine:
                return (f"separation of duty: one person may not be both {r1} and {r2} (the "
                        "script's [separation] may_combine does not allow it) [A5]")
    return None


def role_overflow(script: Script, holders: Mapping[str, Iterable[str]]) -> str | None:
    """Why `holders` (role -> the people who would hold it) is more people than a role's `max`,
    or None. The one statement of the rule: the machine's sign-in refuses with it, and the
    rehearsal checks its cast with it before anything starts."""
    for r, people in holders.items():
        role = script.roles.get(r)
        if role is not None and len(set(people)) > role.max:
            return f"{r} may be held by at most {role.max} people"
    return None


def _note_text(what: str, text: object, empty: str) -> str:
    """A remark's, a deviation's or a decision's text (`what`), stripped: not empty (else the
    refusal `empty`), one line without control characters, at most NOTE_LIMIT characters (every
    console shows it on one line)."""
    if not isinstance(text, str) or not text.strip():
        raise Refused(empty)
    if len(text) > NOTE_LIMIT:
        raise Refused(f"{what} is longer than {NOTE_LIMIT} characters ({len(text)})")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text):
        raise Refused(f"{what} is one line of text: no line breaks or control characters")
    return text.strip()


def _quoted(v: object) -> str:
    """A value an event carried, quoted short in a refusal."""
    r = repr(v)
    return r if len(r) <= 40 else r[:39] + "…"


def drill_difference(drill: dict[str, Any]) -> str:
    """Why a restored backup is not the live HSM, in a sentence an officer can read out."""
    parts = []
    if drill.get("missing"):
        parts.append(f"the backup lacks {len(drill['missing'])} key(s) the HSM holds: "
                     f"{', '.join(map(str, drill['missing']))}")
    if drill.get("extra"):
        parts.append(f"the backup holds {len(drill['extra'])} key(s) the HSM does not: "
                     f"{', '.join(map(str, drill['extra']))}")
    if drill.get("kasp_missing"):
        parts.append(f"the backup's KASP database names {len(drill['kasp_missing'])} key(s) "
                     f"its token lacks: {', '.join(map(str, drill['kasp_missing']))}")
    if drill.get("fingerprint_match") is False:
        parts.append("the restored token is not the HSM's token (fingerprints differ)")
    return "; ".join(parts) or str(drill.get("detail", "the restored token differs"))


def _normalise(observe: str, value: str) -> str:
    v = str(value).strip()
    if observe.endswith(".sha256") or observe == "hsm.fingerprint":
        return from_colon_hex(v)
    if observe == "drive.serial":
        return "".join(c for c in v.upper() if c.isalnum())
    if observe == "signer.role":
        return v.lower()
    if observe == "hsm.key_count":
        # ASCII digits only: isdecimal() admits "١٤", isdigit() "²"; at most 19 of them
        return str(int(v)) if v.isascii() and v.isdecimal() and len(v) <= 19 else v
    return v


def _shown(observe: str, value: str) -> str:
    """An expected digest as the observation is shown (colon hex), so people compare like with
    like; anything else as it is."""
    if observe.endswith(".sha256") and check_value("sha256", value) is not None:
        return colon_hex(str(check_value("sha256", value)))
    return value


def _source(step: Step) -> str:
    """Where a step's expected value comes from, in words: the script's own literal, an earlier
    step, the previous ceremony's record, or the script's declarations."""
    ref = step.expect or ""
    if step.value is not None:
        return "the script"
    if ref.startswith("step."):
        return f"step {ref.removeprefix('step.')}"
    if ref.startswith("previous."):
        return "the previous ceremony's record"
    if ref.startswith(("signer.", "drive.")):
        return f"the script's [[{ref.split('.')[0]}s]]"
    return "the record"


def _words(names: tuple[str, ...]) -> str:
    """`("KGA", "SA", "KSO")` as "KGA, SA or KSO"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _previous_custody(custody: Any) -> dict[str, dict[str, Any]]:
    """The bags a previous ceremony left held (`previous["custody"]`: a list of
    `ceremony.previous.Held.to_dict`), by label; BadInput for a record of another shape."""
    if custody is None:
        return {}
    if not isinstance(custody, list) or len(custody) > 1000:
        raise BadInput("the previous ceremony's custody is not a list of bags")
    out: dict[str, dict[str, Any]] = {}
    for i, held in enumerate(custody):
        ok = isinstance(held, dict) and all(
            isinstance(held.get(k), str) for k in ("bag", "serial", "custodian", "person")) \
            and isinstance(held.get("contents"), list) \
            and all(isinstance(c, str) for c in held["contents"]) \
            and isinstance(held.get("drives") or {}, dict) \
            and all(isinstance(k, str) and (v is None or isinstance(v, str))
                    for k, v in (held.get("drives") or {}).items())
        if not ok:
            raise BadInput(f"the previous ceremony's custody, bag {i + 1}: expected bag, serial, "
                           "custodian, person (text), contents (a list of text) and drives "
                           "(label -> serial)")
        out[held["bag"]] = dict(held)
    return out
