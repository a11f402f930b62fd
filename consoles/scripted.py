"""Scripted officers for the rehearsal: they answer what the machine asks the way honest people
at their consoles would, and sign approvals with their own enrolled keys exactly as a console will.

They read only what a person in the room could see: the machine's requests, the values shown on
screen (the machine's state), the labels on drives and bags.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.machine import Machine
from coordinator.machine import decisions as d
from coordinator.machine import events as ev
from coordinator.script.formats import check_value
from keyrite.approval import sign_approval, sign_custody


@dataclass(frozen=True)
class Person:
    person: str
    name: str
    organisation: str
    seats: tuple[str, ...]
    id_checked: bool = True


class ScriptedRoom:
    def __init__(
        self,
        machine: Machine,
        people: list[Person],
        keys: dict[str, Ed25519PrivateKey],
        clock: Callable[[], float],
        drive_label_serial: Callable[[str], str],
        bag_serial: Callable[[str], str],
        custodians: dict[str, str],
    ) -> None:
        self.m = machine
        self.people = people
        self.keys = keys
        self.clock = clock
        self.drive_label_serial = drive_label_serial
        self.bag_serial = bag_serial
        self.custodians = custodians

    def _seat_for(self, role: str) -> str:
        roster = self.m.roster.officers
        for seat in sorted(self.m.state.signed_in):
            if roster[seat].role == role:
                return seat
        raise LookupError(f"no {role} is signed in")

    def _sign_in(self, p: Person, now: float) -> ev.SignIn:
        return ev.SignIn(at=now, person=p.person, name=p.name, organisation=p.organisation,
                         seats=p.seats, id_checked=p.id_checked)

    def _arrive(self, role: str, now: float, seat: str | None = None) -> list[ev.Event]:
        """A person needed at their console who has not signed in yet does so first (the
        administrator, for one, signs in before the first step)."""
        roster = self.m.roster.officers
        signed = self.m.state.signed_in
        if seat is not None:
            wanted = [seat] if seat not in signed else []
        elif any(roster[s].role == role for s in signed):
            wanted = []
        else:
            wanted = sorted(s for s in roster if roster[s].role == role)[:1]
        return [self._sign_in(p, now) for p in self.people if wanted and wanted[0] in p.seats]

    def _as(self, role: str, now: float, make: Callable[[str], ev.Event],
            seat: str | None = None) -> list[ev.Event]:
        arrivals = self._arrive(role, now, seat)
        if arrivals:
            return arrivals  # the runner applies them, then asks again
        return [make(seat or self._seat_for(role))]

    def answer(self, want: d.Ask | d.RequestApproval, context: dict[str, Any]) -> list[ev.Event]:
        now = self.clock()
        if isinstance(want, d.RequestApproval):
            return self._approve(want, now)
        kind = want.kind
        if kind == "signin":
            out: list[ev.Event] = [
                self._sign_in(p, now) for p in self.people
                if not any(s in self.m.state.signed_in for s in p.seats)
            ]
            return out or [ev.Acknowledge(at=now, seat=self._seat_for(want.role))]
        step = self.m.script.step(want.step)
        if kind == "acknowledge":
            return self._as(want.role, now, lambda seat: ev.Acknowledge(at=now, seat=seat))
        if kind == "record":
            value = self._typed(step, now)
            return self._as(want.role, now, lambda seat: ev.Record(at=now, seat=seat, value=value))
        if kind in ("seal", "handover"):
            return self._take_bag(want, step, now)
        if kind == "signoff":
            note = context["checkpoint"]
            return self._as(want.role, now, lambda seat: ev.SignOff(
                at=now, seat=seat, checkpoint=note,
                signature=base64.b64encode(self.keys[seat].sign(note.encode())).decode()))
        return []  # "decide": a rehearsal has nobody to decide an exception for the KGA

    def _take_bag(self, want: d.Ask, step: Any, now: float) -> list[ev.Event]:
        """The custodian reads the serial off the bag and signs for it: at a seal, the seat the
        bag goes to (`custodians`); at a hand-over, the first seat of the role whose holder does
        not hold the bag already (the machine refuses a hand-over to oneself)."""
        bag = step.bag or ""
        typed = self.bag_serial(bag)
        serial = check_value("bag-serial", typed) or typed
        held = self.m.state.custody.get(bag, {})
        if want.kind == "seal":
            fields: dict[str, Any] = {"contents": step.contents}
            seat = self.custodians.get(bag)
        else:
            fields = {"contents": held.get("contents", []), "kind": "handover",
                      "giver": held.get("custodian")}
            seat = self._receiver(want.role, held.get("person"))

        def taken(seat: str) -> ev.Event:
            signature = sign_custody(
                self.keys[seat], ceremony=self.m.script.ceremony.id, step=step.n,
                script_sha256=self.m.script.sha256, bag=bag, serial=serial, **fields)
            return ev.Record(at=now, seat=seat, value=typed, signature=signature)

        return self._as(want.role, now, taken, seat=seat)

    def _receiver(self, role: str, holder: str | None) -> str | None:
        roster, signed = self.m.roster.officers, self.m.state.signed_in
        seats = sorted((s for s in roster if roster[s].role == role and roster[s].person != holder),
                       key=lambda s: (s not in signed, s))
        return seats[0] if seats else None

    def _typed(self, step: Any, now: float) -> str:
        """What the officer reads off the drive, the bag, the clock or the screen and types."""
        if step.format == "datetime":
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        if step.format == "usb-serial" and step.drive:
            return self.drive_label_serial(step.drive)
        if step.format == "bag-serial" and step.bag:
            return self.bag_serial(step.bag)
        if step.equals is not None:
            return self.m.state.values[step.equals]
        return "noted"

    def _approve(self, want: d.RequestApproval, now: float) -> list[ev.Event]:
        roster = self.m.roster.officers
        done_people = {self.m.state.signed_in[s] for s in want.approved_by}
        for seat in sorted(self.m.state.signed_in):
            person = self.m.state.signed_in[seat]
            if roster[seat].role == want.role and person not in done_people:
                approval = sign_approval(
                    self.keys[seat], ceremony=self.m.script.ceremony.id, step=want.step,
                    script_sha256=self.m.script.sha256, operation=want.digest,
                    expires=int(now) + want.expires_seconds,
                )
                return [ev.Approve(at=now, seat=seat, approval=approval)]
        return []
