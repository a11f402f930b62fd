"""Scripted officers for the rehearsal: they answer what the machine asks the way honest people
at their consoles would, and sign with their own enrolled keys exactly as a console does.

They read only what a person in the room could see: the same view every console is shown
(`Machine.view`), the labels on drives and bags. They act as a console acts: the
keystroke `actions_for` offers them, filled in, signed by `consoles.signing` and translated by
the coordinator's own `translate`, so a rehearsal exercises the consoles' logic. Signing in too:
an officer signs in at their console for all their seats at once, each seat's key signing; a
witness or auditor is signed in by the administrator, who checks their ID document (a made-up
one: its type and last digits are the cast's) and vouches for it with their own key. Only when
they arrive (when first needed) is their own.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.machine import Machine
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.view import CeremonyView, Extras
from consoles.actions import Action, actions_for
from consoles.cosign import Cosigner, Refusal, cosign_command, refusal_command
from consoles.signing import SIGNED, sign_command, sign_signin_command
from coordinator.journal import Journal
from coordinator.journal.checkpoint import Checkpoint
from coordinator.journal.merkle import consistency_proof, leaf_hash
from coordinator.journal.note import note_text
from coordinator.live.translate import Own, judge_cosign, translate


@dataclass(frozen=True)
class Person:
    """One of the cast. A witness or auditor shows the administrator an ID document
    (`id_document`, and the last digits of its number: the cast's own made-up ones unless given)
    when `id_checked` (the administrator signs in nobody whose ID they did not check)."""

    person: str
    name: str
    organisation: str
    seats: tuple[str, ...]
    id_checked: bool = True
    id_document: str = "passport"
    id_digits: str = ""

    def last_digits(self) -> str:
        """The last four digits of their document's number, as the administrator reads them."""
        return self.id_digits or f"{sum(map(ord, self.person)) * 37 % 10000:04d}"


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

    # --- what they see -------------------------------------------------------------------------
    def _view(self, now: float, context: dict[str, Any]) -> CeremonyView:
        return self.m.view(Extras(now=now, checkpoint=context.get("checkpoint")))

    @staticmethod
    def _signed_in(view: CeremonyView) -> list[str]:
        return sorted(p.seat for p in view.participants if p.signed_in)

    def _seat_for(self, view: CeremonyView, role: str) -> str:
        for seat in self._signed_in(view):
            if view.participant(seat).role == role:  # type: ignore[union-attr]
                return seat
        raise LookupError(f"no {role} is signed in")

    def _apart(self, view: CeremonyView, role: str, step: int) -> str | None:
        """For a step whose person must be other than those of earlier steps (`distinct_from`):
        the first seat of `role`, signed in first, whose holder did none of them. None where the
        step says nothing of the kind."""
        apart = self.m.script.step(step).distinct_from
        if not apart:
            return None
        barred = {p for n in apart for p in self.m.people_of(n)}
        signed = set(self._signed_in(view))
        seats = sorted((p for p in view.participants if p.role == role and p.person not in barred),
                       key=lambda p: (p.seat not in signed, p.seat))
        return seats[0].seat if seats else None

    # --- arriving ------------------------------------------------------------------------------
    def _sign_in(self, view: CeremonyView, p: Person, now: float) -> list[ev.Event]:
        """`p` signs in for every seat of theirs not signed in yet, as a console does: an
        officer at their own console (the sign-in `actions_for` offers their first seat, for all
        their seats, as the screen does), each seat's key signing; a participant of an observer
        role by the administrator's admit, signed by the administrator's key over the ID document
        they checked. Nothing offered (the administrator not signed in yet, say): nothing done."""
        waiting = [s for s in p.seats if (x := view.participant(s)) is not None
                   and not x.signed_in]
        if not waiting:
            return []
        first = view.participant(waiting[0])
        role = view.role(first.role) if first is not None else None
        if role is None or not role.observer:
            action = next((a for a in actions_for(view, waiting[0], first.role)  # type: ignore[union-attr]
                           if a.kind == "signin"), None)
            if action is None:
                return []
            command = {**action.command, "seats": waiting}
            signed = sign_signin_command(view, command, {s: self.keys[s] for s in waiting}, now)
            return [self._translated(waiting[0], signed, now)]
        if not p.id_checked:
            return []
        admin = next((s for s in self._signed_in(view)
                      if view.participant(s).role == view.administrator), None)  # type: ignore[union-attr]
        if admin is None:
            return []
        action = next((a for a in actions_for(view, admin, view.administrator)
                       if a.kind == "admit" and waiting[0] in a.detail.get("choices", [])), None)
        if action is None:
            return []
        command = self._filled(action, {"seats": [waiting[0]], "id_document": p.id_document,
                                        "id_digits": p.last_digits()})
        signed = sign_command(view, command, self.keys[admin], now)
        return [self._translated(admin, signed, now)]

    def _arrive(self, view: CeremonyView, role: str, now: float,
                seat: str | None = None) -> list[ev.Event]:
        """A person needed at their console who has not signed in yet does so first (the
        administrator, for one, signs in before the first step)."""
        signed = self._signed_in(view)
        seats = sorted(p.seat for p in view.participants if p.role == role)
        if seat is not None:
            wanted = [seat] if seat not in signed else []
        elif any(s in signed for s in seats):
            wanted = []
        else:
            wanted = seats[:1]
        for p in self.people:
            if wanted and wanted[0] in p.seats:
                return self._sign_in(view, p, now)
        return []

    def _translated(self, seat: str, command: dict[str, Any], now: float) -> ev.Event:
        """The event the coordinator makes of `seat`'s console's `command`."""
        event = translate(self.m.roster, self.m.script.ceremony.administrator, seat, command,
                          now)
        assert isinstance(event, ev.Event), event
        return event

    # --- acting as a console does --------------------------------------------------------------
    def _press(self, view: CeremonyView, seat: str, kind: str, step: int | None,
               typed: dict[str, Any], now: float, quorum: str | None = None) -> list[ev.Event]:
        """The keystroke `actions_for` offers `seat` for `kind` (at `step`, for `quorum`),
        filled in with what the officer types, signed if it must be, and translated as the
        coordinator translates a console's command. Nothing offered: nothing done."""
        role = view.participant(seat).role  # type: ignore[union-attr]
        action = next((a for a in actions_for(view, seat, role) if a.kind == kind
                       and (step is None or a.command.get("step") == step)
                       and (quorum is None or a.command.get("quorum") == quorum)), None)
        if action is None:
            return []
        command = self._filled(action, typed)
        if command["type"] in SIGNED and "passphrase" in action.needs:
            command = sign_command(view, command, self.keys[seat], now)
        return [self._translated(seat, command, now)]

    @staticmethod
    def _filled(action: Action, typed: dict[str, Any]) -> dict[str, Any]:
        missing = [n for n in action.needs if n != "passphrase" and n not in typed]
        if missing:
            raise LookupError(f"the scripted officer has nothing to type for {missing}")
        return {**action.command, **{n: typed[n] for n in action.needs if n in typed}}

    def _as(self, view: CeremonyView, role: str, now: float, kind: str, step: int,
            typed: dict[str, Any], seat: str | None = None) -> list[ev.Event]:
        seat = self.m.script.step(step).seat or seat or self._apart(view, role, step)
        arrivals = self._arrive(view, role, now, seat)
        if arrivals:
            return arrivals  # the runner applies them, then asks again
        return self._press(view, seat or self._seat_for(view, role), kind, step, typed, now)

    def answer(self, want: d.Ask | d.RequestApproval, context: dict[str, Any]) -> list[ev.Event]:
        now = self.clock()
        view = self._view(now, context)
        if isinstance(want, d.RequestApproval):
            return self._approve(view, want, now)
        kind = want.kind
        if kind == "signin":  # one person at a time: the runner applies it and asks again
            signed = set(self._signed_in(view))
            for p in self.people:
                if not any(s in signed for s in p.seats) and (out := self._sign_in(view, p, now)):
                    return out
            return self._press(view, self._seat_for(view, want.role), "acknowledge",
                               want.step, {}, now)
        step = self.m.script.step(want.step)
        if kind in ("acknowledge", "kek.share"):  # a holder writes down their KEK share
            return self._as(view, want.role, now, "acknowledge", want.step, {})
        if kind == "record":
            return self._as(view, want.role, now, "record", want.step,
                            {"value": self._typed(view, step, now)})
        if kind in ("seal", "handover"):
            return self._take_bag(view, want, step, now)
        if kind == "unseal":  # the serial read off the bag its holder brought
            bag = str(step.bag)
            held = self.m.custody.get(bag) or self.m.previous_custody.get(bag) or {}
            return self._as(view, want.role, now, "record", want.step,
                            {"value": str(held.get("serial") or self.bag_serial(bag))})
        if kind == "signoff":  # the first seat the machine asks of the role, each in turn
            seats = want.detail.get("seats") or [None]
            return self._as(view, want.role, now, "signoff", want.step, {}, seat=seats[0])
        return []  # "decide": a rehearsal has nobody to decide an exception for the KGA

    def _take_bag(self, view: CeremonyView, want: d.Ask, step: Any,
                  now: float) -> list[ev.Event]:
        """The custodian reads the serial off the bag and signs for it: at a seal, the seat the
        bag goes to (`custodians`); at a hand-over, the first seat of the role whose holder does
        not hold the bag already (the machine refuses a hand-over to oneself)."""
        bag = step.bag or ""
        if want.kind == "seal":  # a bag opened here goes back to whoever brought it
            seat = self._brought(view, bag, want.role) or self.custodians.get(bag)
        else:
            held = next((b for b in view.bags if b.label == bag), None)
            holder = view.participant(held.custodian) if held and held.custodian else None
            seat = self._receiver(view, want.role, holder.person if holder else None)
        return self._as(view, want.role, now, "record", want.step,
                        {"value": self.bag_serial(bag)}, seat=seat)

    def _brought(self, view: CeremonyView, bag: str, role: str) -> str | None:
        """The seat, of `role`, of the person who presented `bag` at its unseal, if any."""
        opened = self.m.opened.get(bag)
        if opened is None:
            return None
        return next((p.seat for p in sorted(view.participants, key=lambda p: p.seat)
                     if p.role == role and p.person == opened["person"]), None)

    def _receiver(self, view: CeremonyView, role: str, holder: str | None) -> str | None:
        seats = sorted((p for p in view.participants if p.role == role and p.person != holder),
                       key=lambda p: (not p.signed_in, p.seat))
        return seats[0].seat if seats else None

    def _typed(self, view: CeremonyView, step: Any, now: float) -> str:
        """What the officer reads off the drive, the bag, the clock or the screen and types."""
        if step.format == "datetime":
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        if step.format == "usb-serial" and step.drive:
            return self.drive_label_serial(step.drive)
        if step.format == "bag-serial" and step.bag:
            return self.bag_serial(step.bag)
        if step.equals is not None and view.step is not None and view.step.expected is not None:
            return view.step.expected  # read off the screen, as the record shows it
        if step.expect is not None and (known := self.m.expected(step)) is not None:
            return known  # read off the previous ceremony's papers
        if step.format == "sha256":  # a digest read off something the rehearsal has no copy of
            return hashlib.sha256(f"{self.m.script.ceremony.id} step {step.n}".encode()).hexdigest()
        return "noted"

    def _approve(self, view: CeremonyView, want: d.RequestApproval,
                 now: float) -> list[ev.Event]:
        """The first signed-in officer of the role who has not approved approves the operation
        the view shows, as their console would sign it."""
        for seat in self._signed_in(view):
            out = self._press(view, seat, "approve", None, {}, now, quorum=want.quorum)
            if out:
                return out
        # nobody signed in may: one who may comes to their console (a quorum naming its seats,
        # or apart from an earlier step's people)
        approved = {self.m.signed_in.get(x) for x in want.approved_by}
        for p in self.people:
            if p.person not in approved and any(self.m.may_approve(want.quorum, x)
                                                for x in p.seats):
                return self._sign_in(view, p, now)
        return []

    # --- cosigning the record --------------------------------------------------------------------
    def cosigners(self, journal: Journal) -> Callable[[str], list[dict[str, Any]]]:
        """What the runner calls with each checkpoint it writes (`Runner.cosigners`): every
        person signed in checks it at their console as a console does (`consoles.cosign`:
        signed by the coordinator's key, consistent with the last one they accepted by the
        proof the coordinator makes from the journal's lines), and refuses it if it does not
        hold. As at a console, only a key unlocked cosigns: the one the sign-off unlocked,
        which cosigns the sign-off's checkpoint and every one after it (`_cosigning`). Each
        word is judged as the daemon judges a console's (`translate.judge_cosign`), and the
        records come back for the runner to journal."""
        cosigners: dict[str, Cosigner] = {}
        notes: dict[int, str] = {}

        def cosign(note: str) -> list[dict[str, Any]]:
            size = Checkpoint.parse(note_text(note)).size
            notes[size] = note
            hashes = [leaf_hash(line) for line in journal.path.read_bytes().split(b"\n")[:size]]
            now = self.clock()
            view = self._view(now, {})
            signed = set(self._signed_in(view))
            signing = self._cosigning(view)
            cur = self.m.current
            out: list[dict[str, Any]] = []
            for p in self.people:
                seat = next((s for s in p.seats if s in signing), None) or \
                    next((s for s in p.seats if s in signed), None)
                if seat is None:
                    continue
                c = cosigners.setdefault(p.person, Cosigner(journal.verifier))
                proof = None if c.size > size else [
                    base64.b64encode(h).decode() for h in consistency_proof(hashes, c.size)]
                try:
                    accepted = c.offer(note, proof, size)
                except Refusal as r:
                    command = refusal_command(seat, r)
                else:
                    if seat not in signing:
                        continue  # checked, and kept; no key unlocked to cosign it with
                    command = cosign_command(accepted, seat, self.keys[seat], now)
                act = translate(self.m.roster, self.m.script.ceremony.administrator, seat,
                                command, now)
                assert isinstance(act, Own), act
                out.append(judge_cosign(self.m.roster, notes, act.seat, act.params, now,
                                        cur.n if cur else None).to_dict())
            return out

        return cosign

    def _cosigning(self, view: CeremonyView) -> set[str]:
        """The seats whose key a sign-off unlocked (signed off already, or about to at the
        current sign-off step): at a console that key stays to cosign until the end."""
        seats = {str(x["seat"]) for x in self.m.snapshot()["signoffs"]}
        cur = self.m.current
        if cur is not None and cur.action == "signoff":
            seats.update(s for owing in self.m.signoff_owing(cur).values() for s in owing)
        return {s for s in seats if s in self.keys}
