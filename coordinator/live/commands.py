"""What a console's command means: pure translation from the wire to a machine event or a
coordinator act, with the checks only the coordinator can make.

The officer is the seat whose CURVE key carried the command (the bus's ZAP User-Id), never what
the message says. A command may still name another seat of the same person (the administrator
who is also a DSO approves as DSO5 from the KGA console), and the administrator signs in people
whose ID they checked (witnesses and auditors have read-only consoles and cannot sign in
themselves). Everything else, roles, order, quorums, is the machine's to judge: this module only
refuses what is malformed or not this console's to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coordinator.machine import events as ev
from coordinator.roster import Roster
from keyrite.approval import Approval

#: commands that become machine events (journaled as events or refusals)
EVENT_COMMANDS = ("signin", "acknowledge", "record", "approve", "refuse", "decide", "signoff")
#: commands the coordinator answers itself (pause and resume are journaled; the rest are not)
OWN_COMMANDS = ("pause", "resume", "secret", "presence", "journal")


class Invalid(ValueError):
    """A command this console may not send, with the reason shown on it."""


@dataclass(frozen=True)
class Own:
    """A command for the coordinator itself, not the machine."""

    kind: str  # pause | resume | secret | presence | journal
    seat: str
    params: dict[str, Any]


def _str(body: dict[str, Any], key: str) -> str:
    v = body.get(key)
    if not isinstance(v, str) or not v:
        raise Invalid(f"{body.get('type')}: {key!r} must be a non-empty string")
    return v


def _int(body: dict[str, Any], key: str) -> int:
    v = body.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise Invalid(f"{body.get('type')}: {key!r} must be an integer")
    return v


def acting_seat(roster: Roster, officer: str, body: dict[str, Any]) -> str:
    """The seat the command acts as: the console's own, or another seat of the same person."""
    seat = body.get("seat", officer)
    if not isinstance(seat, str) or seat not in roster.officers:
        raise Invalid(f"{seat!r} is not an enrolled seat")
    if officer not in roster.officers:
        raise Invalid(f"console {officer!r} is not in the roster")
    if roster.officers[seat].person != roster.officers[officer].person:
        raise Invalid(f"this console belongs to {officer}; it may not act as {seat}")
    return seat


def translate(roster: Roster, administrator: str, officer: str, body: Any,
              now: float) -> ev.Event | Own:
    """The event (or own act) `officer`'s console asks for with `body`. Raises Invalid."""
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise Invalid("a command is an object with a 'type'")
    kind = body["type"]
    if kind in ("presence", "journal"):
        return Own(kind, officer, {k: v for k, v in body.items() if k != "type"})
    if kind not in EVENT_COMMANDS + OWN_COMMANDS:
        raise Invalid(f"unknown command {kind!r}")
    if kind == "signin":
        return _signin(roster, administrator, officer, body, now)
    seat = acting_seat(roster, officer, body)
    if kind == "acknowledge":
        return ev.Acknowledge(at=now, seat=seat)
    if kind == "record":
        signature = body.get("signature", "")
        if not isinstance(signature, str):
            raise Invalid("record: 'signature' must be a string")
        return ev.Record(at=now, seat=seat, value=_str(body, "value"), signature=signature)
    if kind == "approve":
        raw = body.get("approval")
        if not isinstance(raw, dict):
            raise Invalid("approve: 'approval' must be an object")
        try:
            approval = Approval.from_dict(raw)
        except (KeyError, TypeError, ValueError) as e:
            raise Invalid(f"approve: not an approval ({e})") from e
        return ev.Approve(at=now, seat=seat, approval=approval)
    if kind == "refuse":
        return ev.RefuseApproval(at=now, seat=seat, quorum=_str(body, "quorum"),
                                 reason=_str(body, "reason"))
    if kind == "decide":
        decision = _str(body, "decision")
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise Invalid("decide: 'reason' must be a string")
        return ev.Decide(at=now, seat=seat, decision=decision, reason=reason)
    if kind == "signoff":
        return ev.SignOff(at=now, seat=seat, checkpoint=_str(body, "checkpoint"),
                          signature=_str(body, "signature"))
    if kind in ("pause", "resume"):
        if roster.officers[seat].role != administrator:
            raise Invalid(f"only the {administrator} may {kind} the ceremony")
        return Own(kind, seat, {})
    # secret: a password typed for an operation (never journaled, never broadcast)
    return Own("secret", seat, {"step": _int(body, "step"), "name": _str(body, "name"),
                                "value": _str(body, "value")})


def _signin(roster: Roster, administrator: str, officer: str, body: dict[str, Any],
            now: float) -> ev.SignIn:
    seats = body.get("seats")
    if not isinstance(seats, list) or not seats or not all(isinstance(s, str) for s in seats):
        raise Invalid("signin: 'seats' must be a non-empty list of seats")
    unknown = [s for s in seats if s not in roster.officers]
    if unknown:
        raise Invalid(f"signin: {', '.join(unknown)} not enrolled")
    people = {roster.officers[s].person for s in seats}
    if len(people) != 1:
        raise Invalid("signin: one person signs in at a time")
    me = roster.officers.get(officer)
    if me is None:
        raise Invalid(f"console {officer!r} is not in the roster")
    target = roster.officers[seats[0]]
    by_admin = me.role == administrator and target.person != me.person
    if target.person != me.person and not by_admin:
        raise Invalid(f"only the {administrator} signs in someone else")
    # the administrator vouches for the ID they checked; an officer signing in at their own
    # console is a trusted role (the machine refuses an untrusted one without the check)
    return ev.SignIn(at=now, person=target.person, name=target.name,
                     organisation=target.organisation, seats=tuple(seats),
                     id_checked=by_admin and bool(body.get("id_checked")))
