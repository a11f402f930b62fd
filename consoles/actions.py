"""What one officer may do about a view: the keystrokes a console offers (`actions_for`).

Pure, like the view it reads: it only keeps an officer from being offered what would certainly
be refused; the machine judges every command again.

Raising a remark or a deviation is apart (`remark_for`): it is open to anyone signed in, at any
time the ceremony is not over, witnesses and auditors included, so a console offers it beside
whatever the ceremony asks; `actions_for` is what the ceremony asks or allows of this seat now
(the administrator's decision on an open deviation among it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ceremony.approval import ID_DIGITS_MAX, ID_DOCUMENTS
from ceremony.machine.machine import DEVIATION_DECISIONS, NOTE_KINDS, NOTE_LIMIT
from ceremony.view import Asked, CeremonyView, Participant, RoleView


@dataclass(frozen=True)
class Action:
    """One thing this officer may do now. `command` is the wire command without what the officer
    still has to type (value, reason, passphrase); `needs` names those inputs in order."""

    # signin acknowledge record signoff approve refuse decide pause resume secret admit share;
    # remark (raise a remark or a deviation), deviation (the administrator decides on one)
    kind: str
    key: str  # the keystroke that starts it
    label: str
    command: dict[str, Any]
    needs: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


KEYS: dict[str, str] = {
    "signin": "s", "acknowledge": "a", "record": "v", "signoff": "o", "approve": "p",
    "refuse": "r", "decide": "x", "pause": "z", "resume": "g", "secret": "w", "admit": "i",
    "remark": "n", "deviation": "d", "share": "k",
}


def actions_for(view: CeremonyView, seat: str, role: str) -> list[Action]:
    """What `seat` (holding `role`) may do now. Observers (witness, auditor) act on nothing:
    their sign-in is the KGA's ID check, signed with the KGA's key (`admit`: the seat, the ID
    document's type and last digits, the passphrase); they sign the journal's checkpoint only
    where a sign-off names their role. A seat not signed in may only sign in, with its
    passphrase (the console signs the sign-in with the seat's key). An approval is offered to
    every signed-in seat the quorum lets approve (its role, its `seats`, its `distinct_from`)
    whose holder has not approved yet (any two KSOs, in any order); refusing is offered to every
    seat of the role."""
    r = view.role(role)
    me = view.participant(seat)
    if r is None or me is None or me.role != role:
        return []
    if view.status in ("completed", "aborted", "halted"):  # halted: it refuses everything
        return []
    if r.observer:  # never acts; signs the record where a sign-off names its role
        return [a for a in _signoffs(view, seat) if me.signed_in and view.status == "running"]
    if not me.signed_in:
        if not _may_sign_in(view, me, r):
            return []
        # signed by the seat's own key: its passphrase unlocks it for this one signature
        return [_act("signin", "Sign in", {"type": "signin", "seat": seat, "seats": [seat]},
                     ("passphrase",))]
    admin = role == view.administrator
    out: list[Action] = []
    n = view.step.n if view.step else None
    # the administrator's decision on the oldest open deviation, whatever else happens: it
    # stops nothing, and nothing stops it
    deviation = _deviation_act(view, seat) if admin else []
    if view.status == "paused":
        return [_act("resume", "Resume", {"type": "resume", "seat": seat, "step": n}),
                *deviation] if admin else []
    if view.status == "exception" and view.exception is not None:
        if admin:
            e = view.exception
            choices = ("retry", "accept", "abort") if e.acceptable else ("retry", "abort")
            out.append(_act("decide", f"Decide the exception at step {e.step}",
                            {"type": "decide", "seat": seat, "step": e.step},
                            ("decision", "reason"), {"choices": list(choices)}))
        return out + deviation
    step = view.step
    if step is not None:
        may_complete = step.actor == role or (admin and step.kga_may_complete)
        for a in step.asked:
            if a.kind == "secret" and a.detail.get("purpose") == "drill" and a.step == step.n \
                    and me.person != a.detail.get("not_person"):
                out.append(_secret_act(a, {"seat": seat, "step": a.step}))
                continue
            if a.kind == "signoff" and a.step == step.n:  # each seat the machine asks signs
                continue
            if not may_complete or a.step != step.n:
                continue
            if a.detail.get("seat") not in (None, seat) and step.actor == role:
                continue  # the step names another seat of the role
            if seat in (a.detail.get("not_seats") or ()):
                continue  # its holder did a step this one must be done apart from
            base = {"seat": seat, "step": a.step}
            if a.kind == "acknowledge":
                out.append(_act("acknowledge", f"Acknowledge step {a.step}",
                                {"type": "acknowledge", **base}))
            elif a.kind == "kek.share":  # the console opens the box sealed to it, shows it
                out.append(_act("acknowledge", "Show my KEK share; confirm it is written down",
                                {"type": "acknowledge", **base},
                                detail={"kek_id": a.detail.get("kek_id"),
                                        "box": a.detail.get("box"), "share": True}))
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
            elif a.kind == "unseal":  # read off the bag its holder presents; nothing signed
                out.append(_act("record", f"Enter the serial of bag {a.detail.get('bag')} as "
                                f"{a.detail.get('holder')} presents it",
                                {"type": "record", **base}, ("value",),
                                {"format": "bag-serial", "bag": a.detail.get("bag"),
                                 "contents": list(a.detail.get("contents") or [])}))
            elif a.kind == "secret" and a.detail.get("purpose") != "drill":
                out.append(_secret_act(a, base))
    out += _signoffs(view, seat)
    out += _share_acts(view, seat, role, me.person)
    for q in view.quorums:
        if q.role != role or not q.asked:
            continue
        base = {"seat": seat, "step": q.step, "quorum": q.quorum}
        if seat in q.waiting_for:  # may approve, and its holder has not yet
            out.append(_act("approve", f"Approve step {q.step}'s {q.operation.get('op')}",
                            {"type": "approve", **base, "digest": q.digest}, ("passphrase",),
                            {"operation": q.operation}))
        out.append(_act("refuse", f"Refuse step {q.step}'s {q.operation.get('op')}",
                        {"type": "refuse", **base}, ("reason",)))
        break  # one quorum of a role is open at a time; the next is offered when it opens
    if admin:
        # witnesses and auditors: the administrator checks their ID document and vouches for it
        # with their own key (officers of trusted roles sign in with theirs)
        waiting = [p.seat for p in view.participants
                   if not p.signed_in and (pr := view.role(p.role)) is not None and pr.observer
                   and _may_sign_in(view, p, pr)]
        if waiting:
            out.append(_act("admit", "Sign in a participant whose ID you checked",
                            {"type": "signin", "seat": seat, "id_checked": True},
                            ("seats", "id_document", "id_digits", "passphrase"),
                            {"choices": waiting, "documents": list(ID_DOCUMENTS),
                             "digits": ID_DIGITS_MAX}))
        out += deviation
        out.append(_act("pause", "Pause the ceremony", {"type": "pause", "seat": seat, "step": n}))
    return out


def _signoffs(view: CeremonyView, seat: str) -> list[Action]:
    """Signing the journal checkpoint, where the machine asks `seat` to (each seat it asks)."""
    step = view.step
    if step is None or view.checkpoint is None:
        return []
    return [_act("signoff", "Sign the journal checkpoint",
                 {"type": "signoff", "seat": seat, "step": a.step, "checkpoint": view.checkpoint},
                 ("passphrase",))
            for a in step.asked if a.kind == "signoff" and a.step == step.n
            and seat in (a.detail.get("seats") or ())]


def _share_acts(view: CeremonyView, seat: str, role: str, person: str) -> list[Action]:
    """Bringing one's KEK share to a wrap backup's restore or drill: every signed-in officer of
    the asked role who has not brought one. The console seals what is typed to the signer's
    share key; the coordinator never sees a share."""
    step = view.step
    if step is None:
        return []
    return [_act("share", f"Bring my KEK share for the {a.detail.get('purpose')}",
                 {"type": "share", "seat": seat, "step": a.step,
                  "purpose": a.detail.get("purpose")}, ("share",),
                 {k: a.detail.get(k) for k in ("kek_id", "share_key", "threshold", "purpose")})
            for a in step.asked if a.kind == "share" and a.step == step.n and a.role == role
            and seat not in (a.detail.get("brought") or ()) and a.detail.get("share_key")]


def remark_for(view: CeremonyView, seat: str, role: str) -> Action | None:
    """Raising a remark or a deviation, for `seat` (holding `role`) if it is signed in and the
    ceremony is not over: any role, witnesses and auditors included, paused or stopped too."""
    me = view.participant(seat)
    if view.role(role) is None or me is None or me.role != role or not me.signed_in:
        return None
    if view.status in ("completed", "aborted"):
        return None
    return _act("remark", "Raise a remark or a deviation", {"type": "remark", "seat": seat},
                ("kind", "text"), {"choices": list(NOTE_KINDS), "limit": NOTE_LIMIT})


def _deviation_act(view: CeremonyView, seat: str) -> list[Action]:
    """The administrator's decision on the oldest deviation still open (then on the next)."""
    x = next((x for x in view.deviations if x.open), None)
    if x is None:
        return []
    return [_act("deviation", f"Decide deviation {x.n}",
                 {"type": "deviation", "seat": seat, "deviation": x.n}, ("decision", "reason"),
                 {"choices": list(DEVIATION_DECISIONS), "seat": x.seat, "name": x.name,
                  "text": x.text, "step": x.step, "limit": NOTE_LIMIT})]


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
