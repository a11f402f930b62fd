"""The ceremony view: what every console is shown, as frozen plain data, and what one officer may
do about it.

The coordinator builds a `CeremonyView` from its machine with `view_from()` and broadcasts its
`to_dict()`; a console rebuilds it with `from_dict()` and asks `actions_for()` which keystrokes
to offer. Everything here is pure (no clock, socket or terminal): the daemon supplies the time and
what only it knows (who is connected, HSM progress, the journal tail) in `Extras`, so a view is
the same on every console and a test can build one at any moment of a ceremony.

The view is derived, never authoritative: the machine judges every command again. `actions_for`
only keeps an officer from being offered what would certainly be refused.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ceremony.machine import Machine
from ceremony.machine import decisions as d

#: the wire form's version; `from_dict` refuses any other.
VERSION = 3  # 2: loose_drives; 3: quorums holding approvals (asked, lapses), progress.step


# --- the view ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoleView:
    name: str
    title: str
    min: int
    max: int
    observer: bool  # witnesses and auditors: read-only consoles


@dataclass(frozen=True)
class Participant:
    seat: str
    role: str
    person: str
    name: str
    organisation: str
    signed_in: bool
    connected: bool


@dataclass(frozen=True)
class Asked:
    """One thing the ceremony waits for: a person's act (role set) or the coordinator's work
    (role empty: observe, plan, perform, execute)."""

    step: int
    role: str
    # people: signin acknowledge record seal handover signoff decide approve;
    # the coordinator: observe plan perform execute
    kind: str
    text: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepView:
    n: int
    position: int  # 1-based place in script order (the "n" of "step n of N")
    total: int
    actor: str
    action: str
    text: str  # the instruction as printed in the script
    note: str | None
    kga_may_complete: bool
    observed: str | None  # what the coordinator observed for a verify step
    expected: str | None  # what the record says it must be
    asked: tuple[Asked, ...]


@dataclass(frozen=True)
class QuorumView:
    quorum: str
    role: str
    step: int  # the step whose operation is approved
    operation: dict[str, Any]
    digest: str  # hex SHA-256 of the operation's canonical JSON: what approvers sign
    have: int
    need: int
    approved_by: tuple[str, ...]  # seats
    waiting_for: tuple[str, ...]  # signed-in seats of the role whose holder has not approved
    expires_seconds: int  # how long one approval stays valid
    expires_at: float | None  # when the earliest approval in hand lapses (the countdown)
    lapses: tuple[float, ...]  # when each approval of approved_by lapses, in that order
    # approvals are asked for now (approve is offered); else the quorum only holds approvals in
    # hand for a later step, counting down until they are used or lapse
    asked: bool


@dataclass(frozen=True)
class DriveView:
    label: str
    title: str
    expected_serial: str | None
    serial: str | None  # as read when it was inserted at a drive.insert step
    seen: bool  # plugged in now (the daemon's udev watch)


@dataclass(frozen=True)
class LooseDrive:
    """A USB drive in the port that no label holds (a spare, or one refused as the wrong one)."""

    serial: str
    vendor: str
    model: str


@dataclass(frozen=True)
class BagView:
    label: str
    title: str
    serial: str | None
    contents: tuple[str, ...]
    custodian: str | None  # seat
    custodian_name: str | None


@dataclass(frozen=True)
class ExceptionView:
    step: int
    kind: str  # mismatch | failure
    reason: str
    observed: str | None
    expected: str | None
    acceptable: bool  # a mismatch may be accepted with a reason; a failure only retried/aborted


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    what: str
    step: int | None = None  # the step whose work it reports (the daemon stamps it)


@dataclass(frozen=True)
class JournalLine:
    seq: int
    at: float
    text: str


@dataclass(frozen=True)
class CeremonyView:
    version: int
    seq: int  # the broadcast's sequence number (a console that sees a gap asks for a snapshot)
    ceremony_id: str
    title: str
    script_sha256: str  # what an approval signs over, with the ceremony id and the step
    administrator: str
    status: str  # running | exception | paused | completed | aborted
    now: float  # the coordinator's clock when the view was built
    section: str | None
    section_estimate: int  # seconds
    section_started: float | None
    step: StepView | None
    exception: ExceptionView | None
    roles: tuple[RoleView, ...]
    participants: tuple[Participant, ...]
    quorums: tuple[QuorumView, ...]
    drives: tuple[DriveView, ...]
    loose_drives: tuple[LooseDrive, ...]  # in the port, held by no label (real drives only)
    bags: tuple[BagView, ...]
    journal: tuple[JournalLine, ...]
    progress: Progress | None
    checkpoint: str | None  # the checkpoint text a signoff step signs

    def role(self, name: str) -> RoleView | None:
        return next((r for r in self.roles if r.name == name), None)

    def participant(self, seat: str) -> Participant | None:
        return next((p for p in self.participants if p.seat == seat), None)


@dataclass(frozen=True)
class Extras:
    """What the daemon knows and the machine does not: its clock, the consoles connected, HSM
    progress, the journal tail, drives plugged in now, whether the KGA paused."""

    now: float
    seq: int = 0
    connected: frozenset[str] = frozenset()  # seats
    paused: bool = False
    section_started: float | None = None
    progress: Progress | None = None
    journal: tuple[JournalLine, ...] = ()
    drives_seen: frozenset[str] = frozenset()  # drive labels
    loose_drives: tuple[LooseDrive, ...] = ()  # plugged in, no label holds them
    checkpoint: str | None = None
    secrets_needed: tuple[str, ...] = ()  # passwords the next operation needs and nobody typed
    # "backup": the step's actor types them (twice); "drill": a second officer, reading a sealed
    # copy, who is not `secret_typist` (the person who typed it at the backup)
    secret_purpose: str = "backup"
    secret_typist: str | None = None


# --- building it ---------------------------------------------------------------------------------
#: Asked.role of a password the restore drill needs: any officer but the backup's typist
SECOND_OFFICER = "second officer"


def _secret_asked(n: int, actor: str, name: str, extras: Extras) -> Asked:
    """A password asked for: at the backup from the step's actor; at the restore drill from
    someone else, reading a sealed copy, so that the drill proves the copies open the backup."""
    if extras.secret_purpose == "drill":
        return Asked(n, SECOND_OFFICER, "secret",
                     f"an officer other than the one who typed it at the backup enters the {name} "
                     "password from a sealed copy, for the restore drill",
                     {"name": name, "purpose": "drill", "not_person": extras.secret_typist})
    return Asked(n, actor, "secret", f"the {actor} enters the {name} password",
                 {"name": name, "purpose": "backup"})


def view_from(machine: Machine, extras: Extras,
              wants: tuple[d.Decision, ...] | None = None) -> CeremonyView:
    """The view of `machine` at `extras.now`. Reads the machine, never changes it. `wants`:
    `machine.wants(now=extras.now)`, when the caller has it already."""
    m, s, script = machine, machine.state, machine.script
    roster = m.roster.officers
    snap = m.snapshot()
    if wants is None:
        wants = m.wants(now=extras.now)
    step = m.current
    status = s.status
    if status == "running" and extras.paused:
        status = "paused"

    exc = None
    if s.exception is not None:
        x = s.exception
        exc = ExceptionView(int(x["step"]), str(x["kind"]), str(x["reason"]),
                            _opt(x.get("observed")), _opt(x.get("expected")),
                            x["kind"] == "mismatch")

    quorums = _quorums(m, wants, extras.now)

    step_view = None
    section, estimate = None, 0
    if step is not None:
        section = step.section
        estimate = next(x.estimated.seconds for x in script.sections if x.title == step.section)
        observed = _opt(snap["observed"].get(str(step.n)))
        expected = None
        if exc is not None:
            observed, expected = exc.observed, exc.expected
        elif step.action == "verify":
            expected = _expected(m, step)
        elif step.action == "record" and step.equals is not None:
            expected = s.values.get(step.equals)
        step_view = StepView(
            n=step.n, position=s.index + 1, total=len(m.steps), actor=step.actor,
            action=step.action, text=step.text, note=step.note,
            kga_may_complete=step.kga_may_complete, observed=observed, expected=expected,
            asked=tuple(_asked(w) for w in wants) + tuple(
                _secret_asked(step.n, step.actor, name, extras) for name in extras.secrets_needed),
        )

    participants = tuple(
        Participant(o.seat, o.role, o.person, o.name, o.organisation, o.seat in s.signed_in,
                    o.seat in extras.connected)
        for o in sorted(roster.values(), key=lambda o: o.seat)
    )
    drives = tuple(
        DriveView(label, drv.title, drv.serial, m.drive_serial(label),
                  label in extras.drives_seen)
        for label, drv in sorted(script.drives.items())
    )
    bags = []
    for label, bag in sorted(script.bags.items()):
        c = s.custody.get(label)
        seat = c["custodian"] if c else None
        bags.append(BagView(label, bag.title, c["serial"] if c else None,
                            tuple(c["contents"]) if c else (), seat,
                            roster[seat].name if seat in roster else None))
    roles = tuple(RoleView(r.name, r.title, r.min, r.max, r.observer)
                  for r in script.roles.values())
    return CeremonyView(
        version=VERSION, seq=extras.seq, ceremony_id=script.ceremony.id,
        title=script.ceremony.title, script_sha256=script.sha256,
        administrator=script.ceremony.administrator, status=status,
        now=extras.now, section=section, section_estimate=estimate,
        section_started=extras.section_started, step=step_view, exception=exc, roles=roles,
        participants=participants, quorums=quorums, drives=drives,
        loose_drives=extras.loose_drives, bags=tuple(bags),
        journal=tuple(extras.journal), progress=_progress(m, extras.progress),
        checkpoint=extras.checkpoint,
    )


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


def _expected(m: Machine, step: Any) -> str | None:
    return m.expected(step)


def _quorums(m: Machine, wants: tuple[d.Decision, ...], now: float) -> tuple[QuorumView, ...]:
    """The quorums asked for now, then every other quorum holding approvals that have not lapsed
    and whose operation has not started (between quorum steps their clocks still run)."""
    s = m.state
    asked = [w for w in wants if isinstance(w, d.RequestApproval)]
    out = [_quorum(m, w.quorum, w.step, w.operation, w.digest, now, asked=True) for w in asked]
    for qid, q in m.script.quorums.items():
        op = s.operations.get(q.authorizes)
        if any(w.quorum == qid for w in asked) or op is None or q.authorizes in s.started:
            continue
        if m.held(qid, now):
            out.append(_quorum(m, qid, q.authorizes, op["operation"], op["digest"], now,
                               asked=False))
    return tuple(out)


def _quorum(m: Machine, qid: str, step: int, operation: dict[str, Any], digest: str, now: float,
            *, asked: bool) -> QuorumView:
    s, q = m.state, m.script.quorums[qid]
    have = m.held(qid, now)
    done_people = {a.person for a in have}
    waiting = () if len(have) >= q.m else tuple(
        seat for seat, person in sorted(s.signed_in.items())
        if m.roster.officers[seat].role == q.role and person not in done_people)
    lapses = tuple(float(a.approval.expires) for a in have)
    return QuorumView(qid, q.role, step, dict(operation), digest, len(have), q.m,
                      tuple(a.seat for a in have), waiting, q.expires.seconds,
                      min(lapses) if lapses else None, lapses, asked)


#: the steps whose work reports progress (HSM operations, copies, read-backs)
PROGRESS_ACTIONS = frozenset({"hsm.purge", "hsm.generate", "hsm.backup", "drive.copy",
                              "drive.verify"})
#: the steps that wait for people (the rest are the coordinator's own work)
PEOPLE_ACTIONS = frozenset({"signin", "acknowledge", "record", "seal", "handover", "signoff",
                            "quorum"})


def _progress(m: Machine, p: Progress | None) -> Progress | None:
    """The daemon's last progress while it still concerns the room: while its step is current,
    and once finished, until the first step after it that waits for people is done. A bar of
    unknown step (`step` None) is shown as it comes."""
    cur = m.current
    if p is None or cur is None:
        return None
    if p.step is None or p.step == cur.n:
        return p
    if p.total <= 0 or p.done < p.total:
        return None  # unfinished work of a step that is over: it failed, or was redone
    order = [x.n for x in m.steps]
    try:
        start, here = order.index(p.step), order.index(cur.n)
    except ValueError:
        return None
    between = m.steps[start + 1:here]
    return p if start < here and not any(x.action in PEOPLE_ACTIONS for x in between) else None


def _asked(w: d.Decision) -> Asked:
    if isinstance(w, d.Ask):
        return Asked(w.step, w.role, w.kind, _ask_text(w), dict(w.detail))
    if isinstance(w, d.RequestApproval):
        return Asked(w.step, w.role, "approve",
                     f"{w.need - w.have} more {w.role} approval(s) of step {w.step}'s "
                     f"{w.operation.get('op', 'operation')}", {"quorum": w.quorum})
    if isinstance(w, d.Observe):
        return Asked(w.step, "", "observe", f"the coordinator reads {w.source}")
    if isinstance(w, d.Plan):
        return Asked(w.step, "", "plan", f"the signer plans {w.action}")
    if isinstance(w, d.Perform):
        return Asked(w.step, "", "perform", f"the coordinator runs {w.action}",
                     {"action": w.action})
    if isinstance(w, d.Execute):
        what = "resumes" if w.reconcile else "runs"
        return Asked(w.step, "", "execute", f"the signer {what} the approved "
                     f"{w.operation.get('op', 'operation')}", {"action": w.operation.get("op")})
    raise AssertionError(f"not a want: {w!r}")


def _ask_text(w: d.Ask) -> str:
    if w.kind == "signin":
        missing = w.detail.get("missing") or {}
        if missing:
            need = ", ".join(f"{n} more {r}" for r, n in sorted(missing.items()))
            return f"sign in: {need}"
        return f"the {w.role} confirms everyone is signed in"
    if w.kind == "decide":
        return f"the {w.role} decides the exception: retry, accept or abort"
    if w.kind == "record":
        return f"the {w.role} enters the value ({w.detail.get('format') or 'text'})"
    if w.kind == "seal":
        return f"the {w.role} seals bag {w.detail.get('bag')} and enters its serial"
    if w.kind == "handover":
        return (f"the {w.role} takes bag {w.detail.get('bag')} from {w.detail.get('holder')} "
                "and enters its serial")
    if w.kind == "signoff":
        return f"the {w.role} signs the journal checkpoint"
    return f"the {w.role} acknowledges"


# --- what one officer may do ---------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """One thing this officer may do now. `command` is the wire command without what the officer
    still has to type (value, reason, passphrase); `needs` names those inputs in order."""

    kind: str  # signin acknowledge record signoff approve refuse decide pause resume secret admit
    key: str  # the keystroke that starts it
    label: str
    command: dict[str, Any]
    needs: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


KEYS: dict[str, str] = {
    "signin": "s", "acknowledge": "a", "record": "v", "signoff": "o", "approve": "p",
    "refuse": "r", "decide": "x", "pause": "z", "resume": "g", "secret": "w", "admit": "i",
}


def actions_for(view: CeremonyView, seat: str, role: str) -> list[Action]:
    """What `seat` (holding `role`) may do now. Observers (witness, auditor) get nothing: their
    sign-in is the KGA's ID check. A seat not signed in may only sign in. An approval is offered
    to every signed-in seat of the quorum's role whose holder has not approved yet (any two KSOs,
    in any order); refusing is offered to all of them."""
    r = view.role(role)
    me = view.participant(seat)
    if r is None or r.observer or me is None or me.role != role:
        return []
    if view.status in ("completed", "aborted"):
        return []
    if not me.signed_in:
        if not _may_sign_in(view, me, r):
            return []
        return [_act("signin", "Sign in", {"type": "signin", "seat": seat, "seats": [seat]})]
    admin = role == view.administrator
    out: list[Action] = []
    n = view.step.n if view.step else None
    if view.status == "paused":
        return [_act("resume", "Resume", {"type": "resume", "seat": seat, "step": n})] if admin \
            else []
    if view.status == "exception" and view.exception is not None:
        if admin:
            e = view.exception
            choices = ("retry", "accept", "abort") if e.acceptable else ("retry", "abort")
            out.append(_act("decide", f"Decide the exception at step {e.step}",
                            {"type": "decide", "seat": seat, "step": e.step},
                            ("decision", "reason"), {"choices": list(choices)}))
        return out
    step = view.step
    if step is not None:
        may_complete = step.actor == role or (admin and step.kga_may_complete)
        for a in step.asked:
            if a.kind == "secret" and a.detail.get("purpose") == "drill" and a.step == step.n \
                    and me.person != a.detail.get("not_person"):
                out.append(_secret_act(a, {"seat": seat, "step": a.step}))
                continue
            if not may_complete or a.step != step.n:
                continue
            base = {"seat": seat, "step": a.step}
            if a.kind == "acknowledge":
                out.append(_act("acknowledge", f"Acknowledge step {a.step}",
                                {"type": "acknowledge", **base}))
            elif a.kind == "signin" and not a.detail.get("missing"):
                out.append(_act("acknowledge", "Confirm everyone is signed in",
                                {"type": "acknowledge", **base}))
            elif a.kind == "record":
                fmt = a.detail.get("format") or "text"
                out.append(_act("record", f"Enter the value for step {a.step} ({fmt})",
                                {"type": "record", **base}, ("value",), {"format": fmt}))
            elif a.kind in ("seal", "handover"):  # the custodian types the serial and signs
                taking = {"from": a.detail.get("holder")} if a.kind == "handover" else {}
                out.append(_act("record", f"Enter the value for step {a.step} (bag-serial)",
                                {"type": "record", **base}, ("value", "passphrase"),
                                {"format": "bag-serial", "bag": a.detail.get("bag"),
                                 "contents": list(a.detail.get("contents") or []), **taking}))
            elif a.kind == "secret" and a.detail.get("purpose") != "drill":
                out.append(_secret_act(a, base))
            elif a.kind == "signoff" and view.checkpoint is not None:
                out.append(_act("signoff", "Sign the journal checkpoint",
                                {"type": "signoff", **base, "checkpoint": view.checkpoint},
                                ("passphrase",)))
    for q in view.quorums:
        if q.role != role or not q.asked:
            continue
        base = {"seat": seat, "step": q.step, "quorum": q.quorum}
        approved = {p.person for p in view.participants if p.seat in q.approved_by}
        if me.person not in approved and q.have < q.need:
            out.append(_act("approve", f"Approve step {q.step}'s {q.operation.get('op')}",
                            {"type": "approve", **base, "digest": q.digest}, ("passphrase",),
                            {"operation": q.operation}))
        out.append(_act("refuse", f"Refuse step {q.step}'s {q.operation.get('op')}",
                        {"type": "refuse", **base}, ("reason",)))
        break  # one quorum of a role is open at a time; the next is offered when it opens
    if admin:
        waiting = [p.seat for p in view.participants
                   if not p.signed_in and _may_sign_in(view, p, view.role(p.role))]
        if waiting:
            out.append(_act("admit", "Sign in a participant whose ID you checked",
                            {"type": "signin", "seat": seat, "id_checked": True}, ("seats",),
                            {"choices": waiting}))
        out.append(_act("pause", "Pause the ceremony", {"type": "pause", "seat": seat, "step": n}))
    return out


def absent_actor(view: CeremonyView) -> str | None:
    """Who the current step waits for because their console dropped: the step's actor role has
    people signed in and none of them connected. The coordinator holds its own work for them
    too (a person should see what is done in their name)."""
    step = view.step
    if step is None or view.status not in ("running", "paused"):
        return None
    holders = [p for p in view.participants if p.role == step.actor and p.signed_in]
    if holders and not any(p.connected for p in holders):
        seats = ", ".join(p.seat for p in holders)
        return f"the {step.actor} ({seats}) is disconnected; the ceremony waits for them"
    return None


def _may_sign_in(view: CeremonyView, me: Participant, role: RoleView | None) -> bool:
    """Not when the holder already sits in another seat of the role, or the role is full."""
    if role is None:
        return False
    holders = {p.person for p in view.participants if p.signed_in and p.role == role.name}
    return me.person not in holders and len(holders) < role.max


def _secret_act(a: Asked, base: dict[str, Any]) -> Action:
    name, purpose = a.detail["name"], a.detail.get("purpose", "backup")
    label = f"Enter the {name} password" + (
        " from a sealed copy (restore drill)" if purpose == "drill" else "")
    return _act("secret", label, {"type": "secret", **base, "name": name}, ("value",),
                {"name": name, "purpose": purpose})


def _act(kind: str, label: str, command: dict[str, Any], needs: tuple[str, ...] = (),
         detail: dict[str, Any] | None = None) -> Action:
    return Action(kind, KEYS[kind], label, command, needs, detail or {})


# --- the wire form -------------------------------------------------------------------------------
def to_dict(view: CeremonyView) -> dict[str, Any]:
    """Plain JSON-able data: dataclasses as objects, tuples as lists."""
    return _plain(view)


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def from_dict(data: Any) -> CeremonyView:
    """The inverse of `to_dict`. Strict: an unknown, missing or mistyped field anywhere, or another
    version, is a ValueError (a console shows nothing rather than a half-understood view)."""
    view = _build(CeremonyView, data, "view")
    if view.version != VERSION:
        raise ValueError(f"view: version {view.version}, this console reads {VERSION}")
    return view


def _build(tp: Any, v: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _build(inner, v, where)
    if origin is tuple:
        if not isinstance(v, list):
            raise ValueError(f"{where}: expected a list, got {type(v).__name__}")
        (inner, _) = typing.get_args(tp)
        return tuple(_build(inner, x, f"{where}[{i}]") for i, x in enumerate(v))
    if origin is dict:
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise ValueError(f"{where}: expected an object")
        return dict(v)
    if dataclasses.is_dataclass(tp):
        if not isinstance(v, dict):
            raise ValueError(f"{where}: expected an object, got {type(v).__name__}")
        fields = dataclasses.fields(tp)
        names = {f.name for f in fields}
        unknown = set(v) - names
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        missing = names - set(v)
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _build(hints[f.name], v[f.name], f"{where}.{f.name}")
                     for f in fields})
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{where}: expected a number, got {v!r}")
        return float(v)
    if tp in (int, str, bool):
        if not isinstance(v, tp) or (tp is int and isinstance(v, bool)):
            raise ValueError(f"{where}: expected {tp.__name__}, got {v!r}")
        return v
    raise AssertionError(f"{where}: no wire form for {tp!r}")
