"""The journal's records as typed values, one shape per type: writers build one and append its
`to_dict()`, readers get one back from `record_from_dict()`, which is strict about that shape but
also reads the older shapes journals already hold, so every journal ever written stays readable.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ceremony.machine import events as ev


def _optional() -> Any:
    """A field written only when it has a value (absent from the record when None)."""
    return field(default=None, metadata={"optional": True})


@dataclass(frozen=True, kw_only=True)
class Record:
    """A journal record. Subclasses declare their fields in the order they are written."""

    TYPE: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """Exactly the JSON object written to the journal: "type" first, then the fields."""
        out: dict[str, Any] = {"type": self.TYPE}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None and f.metadata.get("optional"):
                continue
            if isinstance(v, ev.Event):
                v = ev.event_to_dict(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def _older(cls, d: dict[str, Any]) -> dict[str, Any]:
        """An older shape of this record, brought to today's (the same dict when it is)."""
        return d

    def _check(self) -> None:
        """What a field's type cannot say; raise ValueError."""

    def machine_event(self) -> ev.Event | None:
        """The event the machine accepted that this record holds (the journal's fold feeds it
        back); None for what the machine never saw (refusals, drives, checkpoints...)."""
        return None


#: The format of a ceremony journal's records, which its genesis states (`Genesis.format`).
#: Absent: journals written before sign-ins were signed (the 2026-12-07 journal of record), whose
#: SignIn events carry only the administrator's `id_checked`. 2: every sign-in is signed
#: (`ceremony.approval.signin_message`). Every new journal is written in FORMAT.
FORMAT = 2
FORMATS = (2,)


@dataclass(frozen=True, kw_only=True)
class Genesis(Record):
    """The journal's first record: the ceremony, its script and roster, and the previous
    ceremony's record. `journal` is the journal's own parameters, which `Journal.create` adds
    (origin, version, vkey): absent from what a coordinator hands it, present once written.
    `format` is the format of the ceremony's records (FORMAT), absent from journals written
    before it was stated; a format this keyrite does not know is refused, not guessed at."""

    TYPE: ClassVar[str] = "genesis"
    at: str  # ISO 8601, UTC
    ceremony: str
    title: str
    rehearsal: bool
    script: dict[str, Any]  # {"name", "sha256", "text"}
    roster: dict[str, Any]
    previous: dict[str, Any]
    journal: dict[str, Any] | None = _optional()
    format: int | None = _optional()

    def _check(self) -> None:
        for k in ("name", "sha256", "text"):
            if not isinstance(self.script.get(k), str):
                raise ValueError(f"genesis: script.{k} is not text")
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"genesis: format {self.format} is not one this keyrite reads "
                             f"({', '.join(map(str, FORMATS))}, or none for a journal written "
                             "before sign-ins were signed)")

    @property
    def signed_signin(self) -> bool:
        """Whether this journal's sign-ins are signed (format 2 on): the machine refuses an
        unsigned one. False only for a journal written before (no format)."""
        return self.format is not None


@dataclass(frozen=True, kw_only=True)
class Event(Record):
    """An event the machine accepted, at the step that was current when it did."""

    TYPE: ClassVar[str] = "event"
    at: float
    step: int | None
    event: ev.Event

    def machine_event(self) -> ev.Event:
        return self.event


@dataclass(frozen=True, kw_only=True)
class Refused(Record):
    """Something refused: a console's command the coordinator would not take, or an event the
    machine refused (then `event` is that event; `console` is its seat, or "" for the
    coordinator's own events, and `command` its name)."""

    TYPE: ClassVar[str] = "refused"
    at: float
    step: int | None
    console: str
    command: str
    reason: str
    event: ev.Event | None = _optional()

    @classmethod
    def of_event(cls, event: ev.Event, step: int | None, reason: str) -> Refused:
        """The record of an event the machine refused. A room event is named by its own record
        type (a mistyped password is a refused "secret")."""
        room = _ROOM.get(type(event))
        console = getattr(event, "seat", None) or getattr(event, "person", "")
        return cls(at=event.at, step=step, console=str(console),
                   command=room.TYPE if room else type(event).__name__, reason=reason,
                   event=event)

    @classmethod
    def _older(cls, d: dict[str, Any]) -> dict[str, Any]:
        # before one shape, the runner wrote a refused event without console and command
        if "console" not in d and "command" not in d and isinstance(d.get("event"), dict):
            e = d["event"]
            d = {**d, "console": e.get("seat", ""), "command": e.get("event")}
        return d


@dataclass(frozen=True, kw_only=True)
class Checkpoint(Record):
    """A signed checkpoint note over the journal so far (`coordinator.journal` writes it)."""

    TYPE: ClassVar[str] = "checkpoint"
    note: str
    at: str  # ISO 8601, UTC


@dataclass(frozen=True, kw_only=True)
class Pause(Record):
    """The administrator paused the ceremony from their console."""

    TYPE: ClassVar[str] = "pause"
    at: float
    seat: str
    step: int | None

    def machine_event(self) -> ev.Event:
        return ev.Pause(at=self.at, seat=self.seat)


@dataclass(frozen=True, kw_only=True)
class Resume(Pause):
    """The administrator resumed a paused ceremony."""

    TYPE: ClassVar[str] = "resume"

    def machine_event(self) -> ev.Event:
        return ev.Resume(at=self.at, seat=self.seat)


@dataclass(frozen=True, kw_only=True)
class Secret(Record):
    """A password was typed for a step's work: who typed it and for what, never the password.
    `purpose` is "backup" (the operation's actor) or "drill" (a second officer, from a sealed
    copy)."""

    TYPE: ClassVar[str] = "secret"
    at: float
    seat: str
    step: int
    name: str
    purpose: str

    @classmethod
    def _older(cls, d: dict[str, Any]) -> dict[str, Any]:
        # written before the restore drill took passwords: every one was for the backup
        return d if "purpose" in d else {**d, "purpose": "backup"}

    def machine_event(self) -> ev.Event:
        # only a password that matched its verifier is ever recorded
        return ev.PasswordEntered(at=self.at, seat=self.seat, step=self.step, name=self.name,
                                  purpose=self.purpose)


@dataclass(frozen=True, kw_only=True)
class Share(Record):
    """An officer brought their KEK share to a wrap backup's restore or drill (`purpose`). The
    share itself went sealed to the signer and is never journaled."""

    TYPE: ClassVar[str] = "share"
    at: float
    seat: str
    step: int
    purpose: str

    def machine_event(self) -> ev.Event:
        return ev.ShareGiven(at=self.at, seat=self.seat, step=self.step, purpose=self.purpose)


def operation_typed_for(script: Any, step: Any) -> str:
    """The operation a `secret` record of purpose "backup" was typed for, by its step's action:
    "restore" for an hsm.restore, else "backup" (its actor types an operation's password, and
    the record says "backup" whichever it is). `script`: a `ceremony.script.model.Script`."""
    try:
        action = script.step(int(step)).action
    except (KeyError, TypeError, ValueError):
        return "backup"
    return "restore" if action == "hsm.restore" else "backup"


@dataclass(frozen=True, kw_only=True)
class Expired(Record):
    """An officer's approval lapsed before its operation started (journaled once)."""

    TYPE: ClassVar[str] = "expired"
    at: float
    seat: str
    quorum: str
    step: int
    key: str
    nonce: str

    def machine_event(self) -> ev.Event:
        return ev.ApprovalLapsed(at=self.at, seat=self.seat, quorum=self.quorum, step=self.step,
                                 key=self.key, nonce=self.nonce)


@dataclass(frozen=True, kw_only=True)
class Presence(Record):
    """A signed-in person's console went away or came back."""

    TYPE: ClassVar[str] = "presence"
    at: float
    person: str
    seats: tuple[str, ...]
    connected: bool

    def machine_event(self) -> ev.Event:
        return ev.Presence(at=self.at, person=self.person, seats=self.seats,
                           connected=self.connected)


@dataclass(frozen=True, kw_only=True)
class Drive(Record):
    """What udev said about a USB drive: `event` is present, plugged, removed or refused."""

    TYPE: ClassVar[str] = "drive"
    at: float
    step: int | None
    event: str
    serial: str
    vendor: str
    model: str
    device: str
    label: str | None = _optional()
    reason: str | None = _optional()


@dataclass(frozen=True, kw_only=True)
class Coordinator(Record):
    """The coordinator started, or resumed from its journal."""

    TYPE: ClassVar[str] = "coordinator"
    at: float
    step: int | None
    what: str


@dataclass(frozen=True, kw_only=True)
class Document(Record):
    """A document made from the journal (the report, the printable transcript) and its SHA-256,
    so that a printed or copied document is bound to the journal a checkpoint then covers."""

    TYPE: ClassVar[str] = "document"
    at: float
    what: str  # "report" | "transcript" | "transcript-pdf"
    file: str
    sha256: str  # colon hex


@dataclass(frozen=True, kw_only=True)
class Cosignature(Record):
    """An officer's console cosigned one of the journal's checkpoints (c2sp.org/tlog-cosignature,
    `cosignature/v1`), verified by the coordinator against the seat's enrolled key before it was
    written: the checkpoint's tree size and base64 root, and the note signature line as the
    console sent it (`— <origin>/<seat> <base64>`, no newline)."""

    TYPE: ClassVar[str] = "cosignature"
    at: float
    seat: str
    size: int
    root: str
    signature: str


RECORD_TYPES: dict[str, type[Record]] = {
    cls.TYPE: cls
    for cls in (Genesis, Event, Refused, Checkpoint, Pause, Resume, Secret, Share, Expired,
                Presence,
                Drive, Coordinator, Cosignature, Document)
}


#: The room's events keep the record types the coordinator always wrote for them.
_ROOM: dict[type[ev.Event], type[Record]] = {
    ev.Pause: Pause, ev.Resume: Resume, ev.PasswordEntered: Secret, ev.ShareGiven: Share,
    ev.ApprovalLapsed: Expired, ev.Presence: Presence,
}


def of_event(event: ev.Event, step: int | None) -> Record:
    """The record an accepted event is written as, `step` being current when it was accepted:
    the room's events as their own types (pause, resume, secret, expired, presence), every other
    as an `event` record. `Record.machine_event()` is the way back."""
    if isinstance(event, (ev.Pause, ev.Resume)):
        return _ROOM[type(event)](at=event.at, seat=event.seat, step=step)  # type: ignore[call-arg]
    if isinstance(event, ev.PasswordEntered):
        return Secret(at=event.at, seat=event.seat, step=event.step, name=event.name,
                      purpose=event.purpose)
    if isinstance(event, ev.ShareGiven):
        return Share(at=event.at, seat=event.seat, step=event.step, purpose=event.purpose)
    if isinstance(event, ev.ApprovalLapsed):
        return Expired(at=event.at, seat=event.seat, quorum=event.quorum, step=event.step,
                       key=event.key, nonce=event.nonce)
    if isinstance(event, ev.Presence):
        return Presence(at=event.at, person=event.person, seats=event.seats,
                        connected=event.connected)
    return Event(at=event.at, step=step, event=event)


def record_from_dict(d: Any) -> Record:
    """The record a journal line holds. Raises ValueError on an unknown type, an unknown or
    missing field, or a field of the wrong type (an event inside is read as strictly)."""
    if not isinstance(d, dict):
        raise ValueError("a journal record is a JSON object")
    t = d.get("type")
    cls = RECORD_TYPES.get(t) if isinstance(t, str) else None
    if cls is None:
        raise ValueError(f"unknown record type {t!r}")
    d = cls._older(d)
    fields = dataclasses.fields(cls)
    unknown = set(d) - {"type"} - {f.name for f in fields}
    if unknown:
        raise ValueError(f"{t} record has unknown field(s) {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields:
        if f.name not in d:
            if not f.metadata.get("optional"):
                raise ValueError(f"{t} record lacks field {f.name!r}")
            continue
        kwargs[f.name] = _value(t, f.name, d[f.name], hints[f.name])
    record = cls(**kwargs)
    record._check()
    return record


def _value(t: str, name: str, v: Any, hint: Any) -> Any:
    """`v` as a field of type `hint`, or ValueError."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if v is None and type(None) in options:
        return None
    for h in options:
        if h is ev.Event:
            if isinstance(v, dict):
                try:
                    return ev.event_from_dict(v)
                except (KeyError, TypeError, AttributeError) as e:
                    raise ValueError(f"{t} record: {name} is malformed ({e!r})") from e
        elif h is float:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return v
        elif h is int:
            if isinstance(v, int) and not isinstance(v, bool):
                return v
        elif h in (str, bool):
            if isinstance(v, h):
                return v
        elif typing.get_origin(h) is dict:
            if isinstance(v, dict):
                return v
        elif typing.get_origin(h) is tuple:  # tuple[str, ...]: a JSON list of text
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                return tuple(v)
        elif h is not type(None):
            raise AssertionError(f"{t}.{name}: no reader for {h!r}")
    raise ValueError(f"{t} record: {name} is not {_named(options)} ({type(v).__name__})")


def _named(options: tuple[Any, ...]) -> str:
    words = {float: "a number", int: "an integer", str: "text", bool: "true or false",
             type(None): "null", ev.Event: "an event", dict: "an object",
             tuple: "a list of text"}
    return " or ".join(words.get(h, words.get(typing.get_origin(h), str(h))) for h in options)
