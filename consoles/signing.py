"""What an officer's key signs, from what the view shows: an approval of the operation on
screen, an acceptance of the bag being taken, the checkpoint being signed off, a sign-in (by
each of the person's seats' keys, or by the administrator's vouching for the ID they checked).

Pure (no clock, file or terminal): a real console calls it with the key its passphrase just
unlocked, the rehearsal's scripted officers with theirs, so both sign exactly the same things
from the same view. A view that no longer shows what the command was about signs nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.approval import sign_approval, sign_custody, sign_signin
from ceremony.script.formats import check_value
from ceremony.view import CeremonyView

#: the commands a key signs; any other command is sent as it is
SIGNED = ("approve", "record", "signoff", "signin")


class Stale(Exception):
    """The view moved on between the keystroke and the signature: nothing is signed."""


def sign_command(view: CeremonyView, cmd: dict[str, Any], key: Ed25519PrivateKey,
                 now: float) -> dict[str, Any]:
    """The command to send, signed with `key` for what `view` shows (`cmd` as `actions_for`
    gave it, with what the officer typed; no passphrase)."""
    if cmd["type"] == "approve":
        q = next((q for q in view.quorums if q.quorum == cmd["quorum"]), None)
        if q is None or q.digest != cmd["digest"]:
            raise Stale("the operation changed before it was signed: look again")
        approval = sign_approval(key, ceremony=view.ceremony_id, step=cmd["step"],
                                 script_sha256=view.script_sha256, operation=q.digest,
                                 expires=int(now) + q.expires_seconds)
        return {"type": "approve", "seat": cmd["seat"], "step": cmd["step"],
                "quorum": q.quorum, "approval": approval.to_dict()}
    if cmd["type"] == "record":  # a custodian signs for the bag they take
        step = view.step
        seal = next((x for x in (step.asked if step else ())
                     if x.kind in ("seal", "handover")), None)
        if seal is None or step is None or step.n != cmd["step"]:
            raise Stale("the step moved on before the bag was signed for: look again")
        serial = check_value("bag-serial", cmd["value"]) or cmd["value"]
        taking = ({"kind": "handover", "giver": str(seal.detail.get("holder"))}
                  if seal.kind == "handover" else {})
        signature = sign_custody(key, ceremony=view.ceremony_id, step=step.n,
                                 script_sha256=view.script_sha256,
                                 bag=str(seal.detail.get("bag")), serial=serial,
                                 contents=list(seal.detail.get("contents") or []), **taking)
        return {**cmd, "signature": signature}
    if cmd["type"] == "signoff":
        signature = base64.b64encode(key.sign(cmd["checkpoint"].encode())).decode()
        return {**cmd, "signature": signature}
    if cmd["type"] == "signin":  # the administrator vouching, or an officer with one seat
        return sign_signin_command(view, cmd, {cmd["seat"]: key}, now)
    raise ValueError(f"{cmd['type']} is not signed")


def sign_signin_command(view: CeremonyView, cmd: dict[str, Any],
                        keys: Mapping[str, Ed25519PrivateKey], now: float) -> dict[str, Any]:
    """A sign-in command signed over `ceremony.approval.signin_message`, at `now` (whole
    seconds). A person signing in for their own seats signs with each seat's key (`keys`: seat ->
    key, every seat of `cmd["seats"]`); the administrator signing someone else in (`id_document`
    and `id_digits` in `cmd`: the ID they checked) signs with their own seat's key alone."""
    seats = list(cmd["seats"])
    people = {p.person for p in view.participants if p.seat in seats}
    if len(people) != 1 or len(seats) != len([p for p in view.participants if p.seat in seats]):
        raise Stale("the seats to sign in are not one person's seats in this ceremony: look again")
    person = people.pop()
    fields: dict[str, Any] = {"ceremony": view.ceremony_id, "script_sha256": view.script_sha256,
                              "person": person, "seats": seats, "at": int(now)}
    me = view.participant(cmd["seat"])
    if me is not None and me.person != person:  # vouched: the ID document goes into the text
        fields.update(by=cmd["seat"], id_document=cmd["id_document"],
                      id_digits=cmd["id_digits"])
        signers = [cmd["seat"]]
    else:
        signers = seats
    missing = [s for s in signers if s not in keys]
    if missing:
        raise ValueError(f"no key to sign the sign-in with for {', '.join(missing)}")
    signatures = [sign_signin(keys[s], **fields) for s in signers]
    return {**cmd, "signed_at": int(now), "signatures": signatures}
