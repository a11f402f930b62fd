"""The ceremony view: what every console is shown, as frozen plain data, and its wire form.

It is in the core because both sides of the bus share it: the machine builds it
(`Machine.view`), the daemon broadcasts its `to_dict()` and a console rebuilds it with
`from_dict()`. Everything here is pure (no clock, socket or terminal): the daemon supplies the
time and what only it knows (who is connected, HSM progress, the journal tail) in `Extras`, so a
view is the same on every console and a test can build one at any moment of a ceremony.

The view is derived, never authoritative: the machine judges every command again.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: the wire form's version; `from_dict` refuses any other.
#: 2: loose_drives; 3: quorums holding approvals (asked, lapses), progress.step; 4: deviations;
#: 5: cosigning; 6: transcript
VERSION = 6


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
class DeviationView:
    """A remark or a deviation raised during the ceremony (the machine's, in the journal):
    numbered from 1 in the order raised, remarks and deviations together."""

    n: int
    kind: str  # remark | deviation
    seat: str  # who raised it
    name: str  # the seat's holder, as enrolled
    text: str
    at: float
    step: int | None  # the step current when it was raised
    # a deviation's decision (accept | reject), its reason and the seat that decided; None while
    # it is open, and always for a remark (it needs no decision)
    decision: str | None
    reason: str | None
    decided_by: str | None

    @property
    def open(self) -> bool:
        """A deviation the administrator has not decided on yet."""
        return self.kind == "deviation" and self.decision is None


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
class Cosigning:
    """The record officers cosign: the journal's latest checkpoint, which each console fetches
    with a consistency proof from the last one it accepted, checks and cosigns; and every
    refusal to cosign that the coordinator journaled (a console shown a fork or a shrunken
    checkpoint, or a cosignature that did not verify), one line each, shown on every screen."""

    checkpoint: int | None  # the tree size of the latest checkpoint; None before the first
    refusals: tuple[JournalLine, ...]  # the journal entry, its time and what was refused


@dataclass(frozen=True)
class DocumentView:
    """A document the ceremony printed, once written: the printable transcript of the latest
    `transcript` step, its file and digests as officers read them aloud and compare them. Every
    console shows it from the step that wrote it to the end; the record step whose value must
    equal it (the KGA's, in the seed) is where it is confirmed. Bounded: one document, file names
    cut at `NAME_MAX` characters, digests of 32 bytes."""

    step: int  # the step that wrote it
    file: str  # the text's file name on the step's drive
    sha256: str  # the text's SHA-256 in colon hex, as `openssl dgst -c` prints it
    words: str  # the same 32 bytes in PGP words, for reading aloud
    pdf: str | None  # the same pages as a PDF: its file name, if one was written
    pdf_sha256: str | None  # the PDF's SHA-256 in colon hex
    confirm_step: int | None  # the record step whose value must equal `sha256`, if any
    confirmed: bool  # that step is done: the digest typed there matched


#: the longest file name a DocumentView carries (a longer one is cut, ending in …)
NAME_MAX = 120


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
    deviations: tuple[DeviationView, ...]  # every remark and deviation raised, in order
    cosigning: Cosigning  # the latest checkpoint consoles cosign, and refusals to cosign
    transcript: DocumentView | None  # the latest printable transcript written; None before

    def role(self, name: str) -> RoleView | None:
        return next((r for r in self.roles if r.name == name), None)

    def participant(self, seat: str) -> Participant | None:
        return next((p for p in self.participants if p.seat == seat), None)


@dataclass(frozen=True)
class Extras:
    """What the daemon knows and the machine does not: its clock, the consoles connected, HSM
    progress, the journal tail, drives plugged in now, passwords nobody has typed since it
    started. (A pause, a section's start and who typed a password are the machine's.)"""

    now: float
    seq: int = 0
    connected: frozenset[str] = frozenset()  # seats
    progress: Progress | None = None
    journal: tuple[JournalLine, ...] = ()
    drives_seen: frozenset[str] = frozenset()  # drive labels
    loose_drives: tuple[LooseDrive, ...] = ()  # plugged in, no label holds them
    checkpoint: str | None = None
    secrets_needed: tuple[str, ...] = ()  # passwords the next operation needs and nobody typed
    cosigning: Cosigning = Cosigning(None, ())  # the latest checkpoint, refusals to cosign
    # KEK shares: the signer's share key the consoles seal brought shares to (while some are
    # asked for), the seats whose shares the daemon holds for the current step, and the boxes
    # of a KEK just made, each sealed to its holder's console key, until each is handed over
    share_key: str | None = None
    shares_brought: tuple[str, ...] = ()
    sealed_shares: tuple[tuple[str, str], ...] = ()


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


# --- the wire form -------------------------------------------------------------------------------
def to_dict(view: CeremonyView) -> dict[str, Any]:
    """Plain JSON-able data: dataclasses as objects, tuples as lists."""
    return _plain(view)


#: what `_plain` returns as it is, by exact type (the view is mostly these)
_ATOMS = frozenset({str, int, float, bool, type(None)})
#: a dataclass's field names, by its type (dataclasses.fields() each time cost a third of
#: the conversion of a whole view)
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(v: Any) -> Any:
    t = type(v)
    if t in _ATOMS:
        return v
    names = _FIELD_NAMES.get(t)
    if names is not None:
        return {n: _plain(getattr(v, n)) for n in names}
    if t is tuple or t is list:
        return [_plain(x) for x in v]
    if t is dict:
        return {str(k): _plain(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        _FIELD_NAMES[t] = tuple(f.name for f in dataclasses.fields(v))
        return _plain(v)
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


class WireForm:
    """`to_dict` for a stream of views, each converted knowing the one before: a top-level
    field that is the very object it was (a string of the script) keeps its wire form, and so
    does every journal line, progress bar and loose drive the last view already held (the same
    objects: the daemon keeps them from view to view; they are frozen and hold only plain
    values). So a view whose journal tail moved on by a line converts one line, not 48, and the
    lines reused are the same objects as before, which `coordinator.bus.view_delta` then finds
    unchanged at a glance. What it returns equals `to_dict(view)`; nobody may change it."""

    #: frozen dataclasses holding only plain values, kept by the daemon from view to view
    KEPT = (JournalLine, Progress, LooseDrive)

    def __init__(self) -> None:
        self._last: CeremonyView | None = None
        self._wire: dict[str, Any] = {}
        self._kept: dict[int, tuple[Any, Any]] = {}  # id -> (object, its wire form)

    def to_dict(self, view: CeremonyView) -> dict[str, Any]:
        last, wire, kept = self._last, self._wire, self._kept
        held: dict[int, tuple[Any, Any]] = {}  # the kept objects this view holds, for the next

        def plain(v: Any) -> Any:
            t = type(v)
            if t in self.KEPT:
                hit = kept.get(id(v))  # an entry holds its object, so no other has its id
                entry = hit if hit is not None and hit[0] is v else (v, _plain(v))
                held[id(v)] = entry
                return entry[1]
            if t is tuple:
                return [plain(x) for x in v]
            if t is Cosigning:
                return {"checkpoint": v.checkpoint, "refusals": plain(v.refusals)}
            return _plain(v)

        out: dict[str, Any] = {}
        for name in _VIEW_FIELDS:
            value = getattr(view, name)
            if last is not None and getattr(last, name) is value and name in wire:
                out[name] = wire[name]
            else:
                out[name] = plain(value)
        self._last, self._wire, self._kept = view, out, held
        return out


_VIEW_FIELDS = tuple(f.name for f in dataclasses.fields(CeremonyView))
assert tuple(f.name for f in dataclasses.fields(Cosigning)) == ("checkpoint", "refusals")


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
