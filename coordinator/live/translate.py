"""What a console's command means: pure translation from the wire to a machine event or a
coordinator act, with the checks only the coordinator can make.

The officer is the seat whose CURVE key carried the command (the bus's ZAP User-Id), never what
the message says. A command may still name another seat of the same person (the administrator
who is also a DSO approves as DSO5 from the KGA console), and the administrator signs in people
whose ID they checked (witnesses and auditors have read-only consoles and cannot sign in
themselves). Everything else, roles, order, quorums, is the machine's to judge: this module only
refuses what is malformed or not this console's to say.

The bus's edge (`coordinator.bus.protocol.decode`) has already refused frames that are not safe
JSON; this module checks each field it passes on for its type and size (`NAME_LIMIT` for names,
seats, keys and signatures, `TEXT_LIMIT` for what a person types, a step number as an integer)
and that every string encodes as UTF-8, again, so a refusal's journal record and the machine's
events hold only what a journal can write. Fields it does not use are ignored and never passed
on. A reason it gives quotes a console's words only shortened (`keyrite.plainjson.safe_text`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ceremony import approval, records
from ceremony.approval import Approval, MalformedApproval, key_fingerprint
from ceremony.machine import events as ev
from ceremony.roster import Roster
from coordinator.journal.checkpoint import (
    BadCosignature,
    Checkpoint,
    cosigner_name,
    open_cosignature,
)
from coordinator.journal.note import note_text
from keyrite import sealing
from keyrite.plainjson import MAX_INT, safe_text

#: commands that become machine events (journaled as events or refusals)
EVENT_COMMANDS = ("signin", "acknowledge", "record", "approve", "refuse", "decide", "signoff",
                  "pause", "resume", "remark", "deviation")
#: commands the coordinator answers first: a password is checked against its verifier before
#: the machine judges who typed it (as a PasswordEntered); presence, journal pages, the latest
#: checkpoint (with a consistency proof) and a console's cosignature of it, or its refusal to
#: cosign, are not the machine's at all; a KEK share, sealed on the console to the signer's share
#: key, is kept for the signer (the machine judges who brought it, as a ShareGiven)
OWN_COMMANDS = ("secret", "share", "presence", "journal", "checkpoint", "cosign")


class Invalid(ValueError):
    """A command this console may not send, with the reason shown on it."""


@dataclass(frozen=True)
class Own:
    """A command for the coordinator itself, not the machine."""

    kind: str  # secret | share | presence | journal | checkpoint | cosign
    seat: str
    params: dict[str, Any]


#: the longest seat, quorum, decision, password name, key, nonce, digest or signature taken
NAME_LIMIT = 256
#: the longest text a person types (a value, a reason, a password) or a checkpoint note
TEXT_LIMIT = 4096
#: the longest ID document type or last digits a sign-in's command may carry (the machine holds
#: them to its own list of types and to at most 4 digits; this only bounds what reaches it)
ID_FIELD_LIMIT = 32


def _show(value: Any) -> str:
    """A console's value quoted in a reason: short, and always safe to send and journal (an
    object or list is named by its type: its repr could be 5,000 levels deep)."""
    if isinstance(value, (dict, list)):
        return type(value).__name__
    return safe_text(value if not isinstance(value, str) else repr(value), 40)


def _utf8(v: str) -> bool:
    if v.isascii():
        return True
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(kind: str, key: str, v: Any, limit: int, *, empty: bool = False) -> str:
    if not isinstance(v, str) or (not v and not empty):
        raise Invalid(f"{kind}: {key!r} must be a {'' if empty else 'non-empty '}string")
    if len(v) > limit:
        raise Invalid(f"{kind}: {key!r} is longer than {limit} characters")
    if not _utf8(v):
        raise Invalid(f"{kind}: {key!r} is not UTF-8 text")
    return v


def _str(body: dict[str, Any], key: str, limit: int = NAME_LIMIT) -> str:
    return _text(str(body.get("type")), key, body.get(key), limit)


def _opt_str(body: dict[str, Any], key: str, limit: int) -> str:
    """An optional string field, "" when absent."""
    return _text(str(body.get("type")), key, body.get(key, ""), limit, empty=True)


def _integer(kind: str, key: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not -MAX_INT <= v <= MAX_INT:
        raise Invalid(f"{kind}: {key!r} must be an integer")
    return v


def _int(body: dict[str, Any], key: str) -> int:
    return _integer(str(body.get("type")), key, body.get(key))


def _approval(raw: Any) -> Approval:
    """The approval's shape and types are `Approval.from_dict`'s to judge (exactly its fields,
    integers and strings); this adds the bounds every field a console sends is held to."""
    try:
        approval = Approval.from_dict(raw)
    except MalformedApproval as e:
        raise Invalid(f"approve: not an approval ({safe_text(str(e), 100)})") from None
    for name, value in approval.to_dict().items():
        if isinstance(value, int):
            _integer("approve", name, value)
        else:
            _text("approve", name, value, NAME_LIMIT, empty=True)
    return approval


def acting_seat(roster: Roster, officer: str, body: dict[str, Any]) -> str:
    """The seat the command acts as: the console's own, or another seat of the same person."""
    seat = body.get("seat", officer)
    if not isinstance(seat, str) or seat not in roster.officers:
        raise Invalid(f"{_show(seat)} is not an enrolled seat")
    if officer not in roster.officers:
        raise Invalid(f"console {officer!r} is not in the roster")
    if roster.officers[seat].person != roster.officers[officer].person:
        raise Invalid(f"this console belongs to {officer}; it may not act as {seat} [A6]")
    return seat


def translate(roster: Roster, administrator: str, officer: str, body: Any,
              now: float) -> ev.Event | Own:
    """The event (or own act) `officer`'s console asks for with `body`. Raises Invalid."""
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise Invalid("a command is an object with a 'type'")
    kind = body["type"]
    if kind not in EVENT_COMMANDS + OWN_COMMANDS:
        raise Invalid(f"unknown command {_show(kind)}")
    if body.get("step") is not None:  # the step a console meant (the daemon's `_stale`)
        _int(body, "step")
    if kind == "presence":
        return Own(kind, officer, {})
    if kind == "journal":
        start = body.get("from", 0)
        if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= MAX_INT:
            raise Invalid("journal: 'from' must be a line number (0 or more)")
        return Own(kind, officer, {"from": start})
    if kind == "checkpoint":  # the latest checkpoint, proven to extend the one of size `from`
        start = body.get("from", 0)
        if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= MAX_INT:
            raise Invalid("checkpoint: 'from' must be a tree size (0 or more)")
        return Own(kind, officer, {"from": start})
    if kind == "signin":
        return _signin(roster, administrator, officer, body, now)
    seat = acting_seat(roster, officer, body)
    if kind == "acknowledge":
        return ev.Acknowledge(at=now, seat=seat)
    if kind == "record":
        return ev.Record(at=now, seat=seat, value=_str(body, "value", TEXT_LIMIT),
                         signature=_opt_str(body, "signature", NAME_LIMIT))
    if kind == "approve":
        return ev.Approve(at=now, seat=seat, approval=_approval(body.get("approval")))
    if kind == "refuse":
        return ev.RefuseApproval(at=now, seat=seat, quorum=_str(body, "quorum"),
                                 reason=_str(body, "reason", TEXT_LIMIT))
    if kind == "decide":
        return ev.Decide(at=now, seat=seat, decision=_str(body, "decision"),
                         reason=_opt_str(body, "reason", TEXT_LIMIT))
    if kind == "signoff":
        return ev.SignOff(at=now, seat=seat, checkpoint=_str(body, "checkpoint", TEXT_LIMIT),
                          signature=_str(body, "signature"))
    if kind == "pause":
        return ev.Pause(at=now, seat=seat)
    if kind == "resume":
        return ev.Resume(at=now, seat=seat)
    if kind == "remark":  # any signed-in seat, witnesses included: the machine judges who
        return ev.Remark(at=now, seat=seat, kind=_str(body, "kind"),
                         text=_str(body, "text", TEXT_LIMIT))
    if kind == "cosign":
        return Own(kind, seat, cosign_params(body))
    if kind == "deviation":  # the administrator's decision on one
        return ev.DecideDeviation(at=now, seat=seat, deviation=_int(body, "deviation"),
                                  decision=_str(body, "decision"),
                                  reason=_str(body, "reason", TEXT_LIMIT))
    if kind == "share":  # a KEK share sealed to the signer (never journaled, never broadcast)
        box = _str(body, "box", sealing.MAX_BOX)
        if not box.isascii() or len(box) < 64:
            raise Invalid("share: 'box' is a sealed box (base64), as the console makes it")
        return Own("share", seat, {"step": _int(body, "step"), "purpose": _str(body, "purpose"),
                                   "box": box})
    # secret: a password typed for an operation (never journaled, never broadcast)
    return Own("secret", seat, {"step": _int(body, "step"), "name": _str(body, "name"),
                                "value": _str(body, "value", TEXT_LIMIT)})


def cosign_params(body: dict[str, Any]) -> dict[str, Any]:
    """A console's word on a checkpoint: its cosignature (the note signature line), or its
    refusal to cosign (why), never both."""
    size = _int(body, "size")
    if size < 0:
        raise Invalid("cosign: 'size' must be a tree size (0 or more)")
    params: dict[str, Any] = {"size": size, "root": _opt_str(body, "root", NAME_LIMIT)}
    if ("cosignature" in body) == ("refusal" in body):
        raise Invalid("cosign: give either 'cosignature' or 'refusal'")
    if "cosignature" in body:
        params["cosignature"] = _str(body, "cosignature", TEXT_LIMIT)
    else:
        params["refusal"] = _str(body, "refusal", TEXT_LIMIT)
    return params


#: how far in the future a cosignature's timestamp may be (the consoles' clocks against the
#: coordinator's), as an approval's expiry is allowed
COSIGN_LEEWAY = 60


def judge_cosign(roster: Roster, notes: Mapping[int, str], seat: str, params: dict[str, Any],
                 now: float, step: int | None) -> records.Cosignature | records.Refused:
    """What the coordinator journals for a console's `cosign` (`params` as `translate` checked
    them), the daemon and the rehearsal alike: a `Cosignature` once the line verifies against
    the seat's enrolled key over the journal's own checkpoint of that size (`notes`: tree size
    -> signed note, every checkpoint the journal holds) with that root; else a `Refused`
    (command `cosign`) saying what was wrong. A console's refusal to cosign is journaled as a
    `Refused` too, in its words: every screen shows both kinds."""
    size, root = params["size"], params["root"]

    def refused(reason: str) -> records.Refused:
        return records.Refused(at=now, step=step, console=seat, command="cosign",
                               reason=safe_text(reason, 999))

    if "refusal" in params:
        return refused(f"REFUSES TO COSIGN checkpoint {size}: {params['refusal']}")
    note = notes.get(size)
    why = None
    if note is None:
        why = f"the journal has no checkpoint of size {size}"
    else:
        text = note_text(note)
        cp = Checkpoint.parse(text)
        if base64.b64encode(cp.root).decode() != root:
            why = f"the journal's checkpoint of size {size} has another root than {_show(root)}"
        else:
            try:
                key = approval.load_public_key(roster.officers[seat].signing_key)
                at = open_cosignature(params["cosignature"], text,
                                      cosigner_name(cp.origin, seat), key)
            except (BadCosignature, ValueError) as e:
                why = str(e)
            else:
                if at > now + COSIGN_LEEWAY:
                    why = f"it is dated {int(at - now)} s in the future"
    if why is not None:
        return refused(f"sent a cosignature of checkpoint {size} that was refused: {why}")
    return records.Cosignature(at=now, seat=seat, size=size, root=root,
                               signature=params["cosignature"])


def _signin(roster: Roster, administrator: str, officer: str, body: dict[str, Any],
            now: float) -> ev.SignIn:
    """A signed sign-in: the person's own seats, each signing with its own key (`signatures`,
    one per seat in the order of `seats`), or a participant the administrator signs in,
    vouching with their own key for the ID document they checked (`id_document`, `id_digits`,
    one signature). `signed_at` is the time signed. The key fingerprints are the roster's, for the
    seats (or the administrator's seat) that sign: the journal says which key signed, whatever a
    console claims. The machine verifies every signature."""
    seats = body.get("seats")
    if (not isinstance(seats, list) or not seats or len(seats) > len(roster.officers)
            or not all(isinstance(s, str) for s in seats)):
        raise Invalid("signin: 'seats' must be a non-empty list of seats")
    unknown = [s for s in seats if s not in roster.officers]
    if unknown:
        raise Invalid(f"signin: {', '.join(safe_text(u, 40) for u in unknown[:3])} not enrolled")
    if len(set(seats)) != len(seats):
        raise Invalid("signin: a seat is named twice")
    id_checked = body.get("id_checked", False)
    if not isinstance(id_checked, bool):
        raise Invalid("signin: 'id_checked' must be true or false")
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
    signed_at = _integer("signin", "signed_at", body.get("signed_at"))
    signatures = body.get("signatures")
    signers = [officer] if by_admin else seats
    if (not isinstance(signatures, list) or len(signatures) != len(signers)
            or not all(isinstance(x, str) for x in signatures)):
        raise Invalid(f"signin: 'signatures' must be a list of {len(signers)} signature(s): "
                      + ("the administrator's, vouching for the ID checked" if by_admin else
                         "one by each seat's own key"))
    for x in signatures:
        _text("signin", "signatures", x, NAME_LIMIT)
    fingerprints = tuple(key_fingerprint(roster.officers[s].signing_key) for s in signers)
    if not by_admin:  # an officer at their own console: their own keys say who they are
        return ev.SignIn(at=now, person=target.person, name=target.name,
                         organisation=target.organisation, seats=tuple(seats),
                         signed_at=signed_at, signatures=tuple(signatures),
                         fingerprints=fingerprints)
    # the administrator vouches for the ID document they checked: its type and last digits
    # (the machine refuses a full number, an unknown type, a trusted role vouched for)
    return ev.SignIn(at=now, person=target.person, name=target.name,
                     organisation=target.organisation, seats=tuple(seats),
                     id_checked=id_checked, by=officer,
                     id_document=_str(body, "id_document", ID_FIELD_LIMIT),
                     id_digits=_str(body, "id_digits", ID_FIELD_LIMIT),
                     signed_at=signed_at, signatures=tuple(signatures),
                     fingerprints=fingerprints)
