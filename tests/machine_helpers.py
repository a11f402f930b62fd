"""An honest room for the ceremony machine's tests: a roster with real Ed25519 keys, a small world
(an HSM key count, drive and bag serials, digests of what was written) and `drive()`, which
answers each of the machine's wants the way honest officers and a working coordinator would.

A test runs a ceremony to any step with `drive(m, w, until=N)`, then sends the illegal event it
is about, and `refused()` checks the refusal: the reason names the rule, and the machine's state
(both `snapshot()` and the full `State`) is exactly what it was.

Keys and nonces are derived from names and counters, not drawn at random, so a failing example
(hypothesis included) replays the same way.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.approval import (
    Approval,
    key_fingerprint,
    public_key_text,
    sign_approval,
    sign_custody,
    sign_signin,
)
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import STATE_CHANGING, Machine, Refused
from ceremony.roster import Roster
from ceremony.script.model import Script

HERE = Path(__file__).parent
MINI = HERE / "scripts" / "mini.toml"
HANDOVER = HERE / "scripts" / "handover.toml"
SEED = HERE.parent / "ceremony" / "scripts" / "second-key-generation.toml"

#: person -> (name, organisation, the seats they sign in for in an honest room).
#: alice combines KGA+DSO and carol KSO+DSO, as [separation] may_combine allows.
PEOPLE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "alice": ("Alice Admin", "Registry", ("KGA1", "DSO1")),
    "bob": ("Bob Sysadmin", "Hosting", ("SA1",)),
    "carol": ("Carol Keystore", "Registry", ("KSO1", "DSO2")),
    "dave": ("Dave Keystore", "Auditors", ("KSO2",)),
    "erin": ("Erin Witness", "Press", ("WI1",)),
}
#: Enrolled seats no honest room signs in for, there for the tests of what must be refused:
#: a third KSO (the role's max is 2), a second KSO seat for dave (two seats of one role), an SA
#: seat for carol (KSO+SA may not combine), a second WI.
EXTRA_SEATS: dict[str, str] = {"KSO3": "frank", "KSO4": "dave", "SA2": "carol", "WI2": "gina"}
EXTRA_PEOPLE = {"frank": ("Frank Third", "Elsewhere"), "gina": ("Gina Guest", "Press")}

T0 = 1_700_000_000.0
MINI_PREVIOUS = {
    "hsm_fingerprint": "d34d-ba64-0c1e-77a2-9f10-4b3c-aa01-5e6f-1234-abcd",
    "key_count": "4",
}
SEED_PREVIOUS = {
    **MINI_PREVIOUS,
    "livecd_sha256": hashlib.sha256(b"live cd").hexdigest(),
    "signer_host_key": "SHA256:96QvYCmXKW8YPnQdHF9indZTB7xB4ppUo6v5vRwRECM",
}


def role_of(seat: str) -> str:
    return seat.rstrip("0123456789")


def private_key(seat: str) -> Ed25519PrivateKey:
    seed = hashlib.sha256(f"test-key:{seat}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def _load(path: Path) -> Script:
    from ceremony.script.load import load_script_text

    return load_script_text(path.read_text(), str(path))


@functools.cache
def mini_script() -> Script:
    return _load(MINI)


@functools.cache
def handover_script() -> Script:
    return _load(HANDOVER)


@functools.cache
def seed_script() -> Script:
    return _load(SEED)


@functools.cache
def roster() -> Roster:
    officers = []
    seats = {s: p for p, (_, _, ss) in PEOPLE.items() for s in ss} | EXTRA_SEATS
    for seat, person in seats.items():
        name, org = PEOPLE[person][:2] if person in PEOPLE else EXTRA_PEOPLE[person]
        officers.append({"seat": seat, "role": role_of(seat), "person": person, "name": name,
                         "organisation": org,
                         "signing_key": public_key_text(private_key(seat).public_key())})
    return Roster.from_dict({"officers": officers})


class RoomStuck(AssertionError):
    """The honest room has no answer (an exception it was not told how to decide)."""


@dataclass
class World:
    """What the room knows and the HSM, drives and bags hold; `accepted` is the journal."""

    script: Script
    previous: dict[str, str]
    now: float = T0
    tick: float = 1.0
    hsm_keys: int = 0
    drive_serials: dict[str, str] = field(default_factory=dict)
    bag_serials: dict[str, str] = field(default_factory=dict)
    backup_sha256: str | None = None
    transcript_sha256: str | None = None
    nonces: int = 0
    accepted: list[ev.Event] = field(default_factory=list)
    #: how the administrator decides an exception: None means the room is stuck (RoomStuck)
    decide: Callable[[dict[str, Any]], tuple[str, str]] | None = None

    def at(self) -> float:
        self.now += self.tick
        return self.now

    def nonce(self) -> str:
        self.nonces += 1
        return f"{self.nonces:032x}"

    @property
    def host_key(self) -> str:
        return self.previous.get("signer_host_key") or str(self.script.signers[0].host_key)


def start(script: Script | None = None, previous: dict[str, str] | None = None
          ) -> tuple[Machine, World]:
    script = script or mini_script()
    if previous is None:
        previous = {k: v for k, v in SEED_PREVIOUS.items() if k in script.ceremony.previous}
    w = World(script, dict(previous), hsm_keys=int(previous.get("key_count", 0)))
    for i, (label, drv) in enumerate(sorted(script.drives.items())):
        w.drive_serials[label] = drv.serial or f"USB{i:04d}-{label.upper()}"
    for i, label in enumerate(sorted(script.bags)):
        w.bag_serials[label] = f"TEB-{i:03d}-{label.upper()}"
    return Machine(script, roster(), previous), w


# --- sending --------------------------------------------------------------------------------------
def send(m: Machine, w: World, event: ev.Event) -> tuple[d.Decision, ...]:
    """Hand `event` to the machine and journal it if it was accepted."""
    out = m.handle(event)
    w.accepted.append(event)
    return out


def refused(m: Machine, event: ev.Event, *words: str) -> str:
    """Assert `event` is refused with a reason mentioning every word, the state untouched."""
    snap, state = m.snapshot(), copy.deepcopy(m._state)
    wants = m.wants()
    try:
        m.handle(event)
    except Refused as e:
        reason = e.reason
    else:
        raise AssertionError(f"{event!r} was accepted")
    for word in words:
        assert word.lower() in reason.lower(), f"{word!r} not in refusal {reason!r}"
    assert m.snapshot() == snap
    assert m._state == state
    assert m.wants() == wants
    return reason


def replay(script: Script, events: list[ev.Event], previous: dict[str, str]) -> Machine:
    """A fresh machine fed the journal, each event through its dict form as the journal keeps it."""
    fresh = Machine(script, roster(), previous)
    for e in events:
        fresh.handle(ev.event_from_dict(ev.event_to_dict(e)))
    return fresh


# --- the honest room ------------------------------------------------------------------------------
def seat_of(m: Machine, role: str, exclude_people: frozenset[str] = frozenset(),
            allowed: Callable[[str], bool] = lambda seat: True) -> str:
    """The seat that acts for `role`: a signed-in one if there is one (in seat order), else the
    first honest seat whose holder would sign in for it; never one `allowed` rules out."""
    for seat, person in sorted(m.signed_in.items()):
        if role_of(seat) == role and person not in exclude_people and allowed(seat):
            return seat
    for person, (_, _, seats) in PEOPLE.items():
        for seat in seats:
            if role_of(seat) == role and person not in exclude_people and allowed(seat):
                return seat
    raise RoomStuck(f"no honest {role} left (excluding {sorted(exclude_people)})")


def may_sign_in(m: Machine, person: str) -> bool:
    """Whether the honest room would sign `person` in now: none of their seats taken, room left
    in each of their roles (a stray sign-in may have filled one)."""
    s = m._state
    seats = PEOPLE[person][2]
    if person in s.signed_in.values() or any(x in s.signed_in for x in seats):
        return False
    for seat in seats:
        role = role_of(seat)
        holders = {p for x, p in s.signed_in.items() if role_of(x) == role}
        if len(holders) >= m.script.roles[role].max:
            return False
    return True


def person_of(seat: str) -> str:
    return roster().officers[seat].person


def sign_in(w: World, person: str, *, seats: tuple[str, ...] | None = None,
            by: str | None = None, id_document: str = "passport",
            id_digits: str = "4711") -> ev.SignIn:
    """`person` signing in for `seats` (their honest room's seats by default), signed as a console
    signs it: an officer of a trusted role with each seat's own key; a witness (an untrusted
    role) by the administrator's seat `by` (KGA1 by default), vouching for the ID document they
    checked."""
    name, org, honest = PEOPLE[person] if person in PEOPLE else (*EXTRA_PEOPLE[person], ())
    seats = tuple(seats or honest)
    at = w.at()
    trusted = all(w.script.roles[role_of(x)].trusted for x in seats)
    if by is None and not trusted:
        by = "KGA1"
    return signed_sign_in(w.script, person, name, org, seats, at, by=by,
                          id_document=id_document, id_digits=id_digits)


def signed_sign_in(script: Script, person: str, name: str, org: str, seats: tuple[str, ...],
                   at: float, *, by: str | None = None, id_document: str = "passport",
                   id_digits: str = "4711", signed_at: int | None = None,
                   signers: tuple[str, ...] | None = None,
                   keys: dict[str, Ed25519PrivateKey] | None = None) -> ev.SignIn:
    """A SignIn signed over `signin_message` at `signed_at` (the event's time by default): by
    each seat's own key, or, with `by`, by that seat's key vouching for the ID document.
    `signers` signs with other seats' keys instead (and names their fingerprints), for the
    tests of what must be refused; `keys` holds a seat's key where it is not the test roster's
    (`private_key`): one enrolled as a person does."""
    stamp = int(at) if signed_at is None else signed_at
    fields: dict[str, Any] = dict(ceremony=script.ceremony.id, script_sha256=script.sha256,
                                  person=person, seats=seats, at=stamp)
    if by is not None:
        fields.update(by=by, id_document=id_document, id_digits=id_digits)
    signing = [(keys or {}).get(x) or private_key(x)
               for x in signers or ((by,) if by is not None else seats)]
    return ev.SignIn(
        at=at, person=person, name=name, organisation=org, seats=seats,
        id_checked=by is not None, by=by or "",
        id_document=id_document if by is not None else "",
        id_digits=id_digits if by is not None else "", signed_at=stamp,
        signatures=tuple(sign_signin(k, **fields) for k in signing),
        fingerprints=tuple(key_fingerprint(public_key_text(k.public_key())) for k in signing))


def approval(w: World, seat: str, step: int, digest: str, expires_in: int, *,
             at: float | None = None, **override: Any) -> Approval:
    """`seat`'s console signing an approval of `digest` for `step`, valid for `expires_in` s."""
    s = w.script
    fields: dict[str, Any] = dict(ceremony=s.ceremony.id, step=step, script_sha256=s.sha256,
                                  operation=digest, expires=int(at if at is not None else w.now)
                                  + expires_in, nonce=w.nonce())
    fields.update(override)
    return sign_approval(private_key(seat), **fields)


def seal(w: World, seat: str, step: int, bag: str, contents: tuple[str, ...] | list[str],
         typed_value: str, *, signed_serial: str | None = None, giver: str | None = None
         ) -> ev.Record:
    """The custodian types the bag's serial and signs for the bag (the serial as the machine
    normalises it, unless `signed_serial` says otherwise); with `giver`, a hand-over from that
    seat."""
    from ceremony.script.formats import check_value

    serial = signed_serial or check_value("bag-serial", typed_value) or typed_value
    taking: dict[str, Any] = {"kind": "handover", "giver": giver} if giver else {}
    sig = sign_custody(private_key(seat), ceremony=w.script.ceremony.id, step=step,
                       script_sha256=w.script.sha256, bag=bag, serial=serial, contents=contents,
                       **taking)
    return ev.Record(at=w.at(), seat=seat, value=typed_value, signature=sig)


def signoff(w: World, seat: str, checkpoint: str = "") -> ev.SignOff:
    text = checkpoint or f"keyrite.test/{w.script.ceremony.id}\n{len(w.accepted)}\n"
    sig = base64.b64encode(private_key(seat).sign(text.encode())).decode()
    return ev.SignOff(at=w.at(), seat=seat, checkpoint=text, signature=sig)


def observation(w: World, want: d.Observe) -> str:
    src, p = want.source, want.params
    if src == "signer.role":
        return next(str(x.role) for x in w.script.signers if x.name == p["signer"])
    if src == "signer.host_key":
        return w.host_key
    if src == "hsm.fingerprint":
        return w.previous["hsm_fingerprint"]
    if src == "hsm.key_count":
        return str(w.hsm_keys)
    if src == "drive.serial":
        return w.drive_serials[p["drive"]]
    if src == "backup.sha256":
        return str(w.backup_sha256)
    if src == "transcript.sha256":
        return str(w.transcript_sha256)
    if src == "livecd.sha256":
        return w.previous["livecd_sha256"]
    raise AssertionError(f"no observation for {src}")


def plan(m: Machine, w: World, want: d.Plan) -> dict[str, Any]:
    """What a signer would plan: the operation officers approve (its digest is what they sign)."""
    kind = STATE_CHANGING[want.action]
    op: dict[str, Any] = {"op": kind, "token": w.previous["hsm_fingerprint"], **want.params}
    if kind == "purge":
        op["delete"] = [f"key-{i}" for i in range(w.hsm_keys)]
    return op


def perform(w: World, want: d.Perform) -> dict[str, Any]:
    a, p = want.action, want.params
    if a == "hsm.fingerprint":
        return {"fingerprint": w.previous["hsm_fingerprint"]}
    if a == "hsm.list":
        return {"count": w.hsm_keys, "keys": [f"key-{i}" for i in range(w.hsm_keys)]}
    if a == "drive.insert":
        return {"serial": w.drive_serials[p["drive"]], "mount": f"/media/{p['drive']}"}
    if a == "drive.copy":
        return {"files": [f"{p['source']}.bin"], "drive": p["drive"]}
    if a == "drive.verify":
        if "secrets" in p:  # the restore drill: the room's HSM and its backup agree
            return {"ok": True, "drill": {"match": True, "live": w.hsm_keys,
                                          "restored": w.hsm_keys, "missing": [], "extra": [],
                                          "fingerprint_match": True}}
        return {"ok": True}
    if a == "drive.eject":
        return {}
    if a == "transcript":
        w.transcript_sha256 = hashlib.sha256(f"transcript {len(w.accepted)}".encode()).hexdigest()
        return {"sha256": w.transcript_sha256, "file": "transcript.txt", "drive": p["drive"]}
    raise AssertionError(f"no perform for {a}")


def execute(w: World, want: d.Execute) -> dict[str, Any]:
    kind = want.operation["op"]
    if kind == "purge":
        w.hsm_keys = 0
        return {"deleted": len(want.operation.get("delete", []))}
    if kind == "generate":
        n = 2 * len(want.operation.get("keys", []))
        w.hsm_keys += n
        return {"generated": n}
    if kind == "kek":  # the shares go sealed to their holders, never into the journal
        op = want.operation
        return {"kek_id": hashlib.sha256(want.digest.encode()).hexdigest()[:32],
                "scheme": "SLIP-39", "threshold": op["threshold"],
                "shares": len(op["holders"]), "holders": list(op["holders"])}
    w.backup_sha256 = hashlib.sha256(f"backup {want.digest}".encode()).hexdigest()
    return {"sha256": w.backup_sha256, "file": "backup.tar"}


def typed(value: str) -> str:
    """How a person copies a serial: lower case, a space and dashes, all of which do not matter."""
    v = value.lower().replace("-", " - ")
    return v


def honest_event(m: Machine, w: World) -> ev.Event | None:
    """The event an honest room sends next, or None when the ceremony has ended. The machine is
    asked what it wants at the time the event will carry, as a coordinator does."""
    wants = m.wants(now=w.now + w.tick)
    if not wants:
        return None
    want = wants[0]
    signed = set(m.signed_in.values())

    def acting(seat: str) -> ev.Event | None:
        """A SignIn for the seat's holder if they are not in yet; None if they may act."""
        person = person_of(seat)
        return None if person in signed else sign_in(w, person)

    if isinstance(want, d.Ask):
        if want.kind == "signin":
            for person in PEOPLE:
                if may_sign_in(m, person):
                    return sign_in(w, person)
            return ev.Acknowledge(at=w.at(), seat=seat_of(m, want.role))
        if want.kind == "decide":
            if w.decide is None:
                raise RoomStuck(f"exception at step {want.step}: {want.detail}")
            seat = seat_of(m, want.role)
            decision, reason = w.decide(want.detail)
            return acting(seat) or ev.Decide(at=w.at(), seat=seat, decision=decision,
                                             reason=reason)
        held = m.custody.get(str(want.detail.get("bag")), {})
        # a hand-over goes to someone who does not hold the bag already
        others = frozenset({held["person"]}) if want.kind == "handover" and held else frozenset()
        step = m.script.step(want.step)
        others |= {p for n in step.distinct_from for p in m.people_of(n)}
        seat = seat_of(m, want.role, frozenset(others),
                       lambda x: want.detail.get("seat") in (None, x))
        if (e := acting(seat)) is not None:
            return e
        if want.kind in ("acknowledge", "kek.share"):  # a KEK share: written down
            return ev.Acknowledge(at=w.at(), seat=seat)
        if want.kind == "seal":
            return seal(w, seat, step.n, str(step.bag), step.contents,
                        typed(w.bag_serials[str(step.bag)]))
        if want.kind == "handover":
            return seal(w, seat, step.n, str(step.bag), held.get("contents", []),
                        typed(w.bag_serials[str(step.bag)]), giver=held.get("custodian"))
        if want.kind == "unseal":  # the serial read off the bag its holder brought
            held = m.custody.get(str(step.bag)) or m.previous_custody.get(str(step.bag), {})
            return ev.Record(at=w.at(), seat=seat, value=str(held.get("serial", "")))
        if want.kind == "signoff":  # a seat the machine asks, over the step's one checkpoint
            seat = (want.detail.get("seats") or [seat])[0]
            return signoff(w, seat, m.signoff_checkpoint(want.step) or "")
        assert want.kind == "record", want
        return ev.Record(at=w.at(), seat=seat, value=record_value(m, w, step.n))
    if isinstance(want, d.Observe):
        return ev.Observed(at=w.at(), step=want.step, value=observation(w, want))
    if isinstance(want, d.Perform):
        return ev.Performed(at=w.at(), step=want.step, result=perform(w, want))
    if isinstance(want, d.Plan):
        return ev.OperationPlanned(at=w.at(), step=want.step, operation=plan(m, w, want))
    if isinstance(want, d.RequestApproval):
        approvers = frozenset(m.signed_in[s] for s in want.approved_by)
        seat = seat_of(m, want.role, approvers, lambda x: m.may_approve(want.quorum, x))
        if (e := acting(seat)) is not None:
            return e
        at = w.at()
        return ev.Approve(at=at, seat=seat, approval=approval(
            w, seat, want.step, want.digest, want.expires_seconds, at=at))
    if isinstance(want, d.Execute):
        if not want.reconcile:
            return ev.OperationStarted(at=w.at(), step=want.step, digest=want.digest)
        return ev.Performed(at=w.at(), step=want.step, result=execute(w, want))
    raise AssertionError(f"no honest answer to {want!r}")


def record_value(m: Machine, w: World, n: int) -> str:
    step = m.script.step(n)
    fmt = step.format
    if fmt == "usb-serial":
        return typed(w.drive_serials[str(step.drive)]) if step.drive else "SPARE 0001"
    if fmt == "bag-serial":
        return typed(w.bag_serials[str(step.bag)]) if step.bag else "TEB 0000"
    if fmt == "sha256":
        if step.equals is not None:  # read off the screen; typed as colon hex in capitals
            v = m._state.values.get(step.equals, "")
            return ":".join(v[i:i + 2] for i in range(0, len(v), 2)).upper()
        return hashlib.sha256(b"typed").hexdigest()
    if fmt == "datetime":
        return "2012-12-05T09:10Z"
    return "noted"


def drive(m: Machine, w: World, until: int | None = None,
          before: Callable[[d.Decision], bool] | None = None, limit: int = 5000) -> Machine:
    """Answer the machine honestly until it ends, reaches step `until` (nothing sent for it yet
    beyond what earlier steps collected), or its first want satisfies `before`."""
    for _ in range(limit):
        if m.status in ("completed", "aborted"):
            return m
        if until is not None and m.current is not None and m.current.n == until:
            return m
        wants = m.wants(now=w.now + w.tick)
        if before is not None and wants and before(wants[0]):
            return m
        e = honest_event(m, w)
        assert e is not None
        send(m, w, e)
    raise RoomStuck(f"no end after {limit} events; at step {m.current}")


def kso_quorum(have: int) -> Callable[[d.Decision], bool]:
    """`drive(before=...)`: stop when the KSOs are asked to approve and `have` approvals are in."""
    return lambda x: isinstance(x, d.RequestApproval) and x.role == "KSO" and x.have == have


def at_kso_quorum(have: int) -> tuple[Machine, World]:
    m, w = start()
    drive(m, w, before=kso_quorum(have))
    return m, w


def until_step(m: Machine, w: World, n: int) -> Machine:
    return drive(m, w, until=n)
