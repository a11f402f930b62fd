"""What can happen at a ceremony, as frozen values. The machine takes these and nothing else.

Every event carries `at`, the Unix time the coordinator stamped on it: the machine never reads a
clock, so approval expiry and elapsed time are judged from these stamps, and replaying a journal
judges them the same way again. Officers' events carry the `seat` whose key carried them (the bus
or the rehearsal attributes them; the machine checks the seat may act).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from ceremony.approval import Approval


@dataclass(frozen=True, kw_only=True)
class Event:
    at: float


# --- from people ---------------------------------------------------------------------------------
def _since_signed(default: Any) -> Any:
    """A field sign-ins carry since they are signed: left out of the journal form while it holds
    its default, so an event of a journal written before reads and writes back unchanged."""
    return field(default=default, metadata={"omit_default": True})


@dataclass(frozen=True, kw_only=True)
class SignIn(Event):
    """A person signs in for one or more enrolled seats, and says how they were identified.

    Signed (`ceremony.approval.signin_message`, over the ceremony, the script, the person, the
    seats and `signed_at`, the signer's clock in whole seconds), in one of two ways:

    - **own keys**: `by` is empty and each seat's enrolled key, unlocked by its passphrase on the
      person's own console, signs the one message naming all the seats: `signatures` holds one
      per seat, in the order of `seats`. For officers of trusted roles.
    - **vouched**: a participant of an untrusted role (a witness, an auditor) is signed in by the
      administrator, seat `by`, who checked their ID document and records its type
      (`id_document`, one of `ID_DOCUMENTS`) and only its last characters (`id_digits`, at most
      4): the administrator's key signs the message with those added; one signature;
      `id_checked` is true.

    `fingerprints` are the fingerprints (`ceremony.approval.key_fingerprint`) of the keys that
    signed, in the order of `signatures`, checked by the machine against the roster: how
    identity was checked and with which key is in the journaled event itself. Journals written
    before sign-ins were signed carry only `id_checked` (the administrator's word).
    """

    person: str
    name: str
    organisation: str
    seats: tuple[str, ...]
    id_checked: bool = False
    by: str = _since_signed("")
    id_document: str = _since_signed("")
    id_digits: str = _since_signed("")
    signed_at: int = _since_signed(0)
    signatures: tuple[str, ...] = _since_signed(())
    fingerprints: tuple[str, ...] = _since_signed(())


@dataclass(frozen=True, kw_only=True)
class Acknowledge(Event):
    seat: str


@dataclass(frozen=True, kw_only=True)
class Record(Event):
    """A value typed by an officer: a `record` step's value, or the bag serial a custodian reads
    at a `seal` or `handover` step (with their signed acceptance of the bag:
    `ceremony.approval.custody_message`, base64 Ed25519)."""

    seat: str
    value: str
    signature: str = ""


@dataclass(frozen=True, kw_only=True)
class Approve(Event):
    seat: str
    approval: Approval


@dataclass(frozen=True, kw_only=True)
class RefuseApproval(Event):
    """An officer refuses the operation shown; the quorum starts over."""

    seat: str
    quorum: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Decide(Event):
    """The administrator's decision on an exception: retry, accept (with a reason) or abort."""

    seat: str
    decision: str  # "retry" | "accept" | "abort"
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class SignOff(Event):
    """A closing signature over the journal checkpoint text the officer was shown."""

    seat: str
    checkpoint: str
    signature: str  # base64 Ed25519 over the checkpoint text, by the seat's enrolled key


# --- from the machine's own adapters ------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Observed(Event):
    """A value the coordinator obtained itself for a `verify` step."""

    step: int
    value: str


@dataclass(frozen=True, kw_only=True)
class OperationPlanned(Event):
    """The signer's plan for a state-changing HSM step: the exact operation officers approve."""

    step: int
    operation: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class OperationStarted(Event):
    """Journaled before the operation is sent, so a crash is reconciled, never repeated blindly."""

    step: int
    digest: str


@dataclass(frozen=True, kw_only=True)
class Performed(Event):
    """Work the coordinator carried out for a step finished (HSM, drive, transcript)."""

    step: int
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PerformFailed(Event):
    step: int
    error: str


# --- from the room: the administrator's pause, passwords typed, time, consoles ---------------
@dataclass(frozen=True, kw_only=True)
class Pause(Event):
    """The administrator stops the room: no officer's act is taken until they resume. Work the
    coordinator already started still finishes and is recorded."""

    seat: str


@dataclass(frozen=True, kw_only=True)
class Resume(Event):
    seat: str


@dataclass(frozen=True, kw_only=True)
class PasswordEntered(Event):
    """A pre-generated password typed for the work about to run: at the backup by the step's
    actor, at the restore drill by a second officer from a sealed copy. The coordinator checks it
    against the verifier recorded before the ceremony (`verified`); the password itself never
    reaches the machine or the journal."""

    seat: str
    step: int
    name: str
    purpose: str  # "backup" | "drill": what `Machine.password_asked()` said it was asked for
    verified: bool = True


@dataclass(frozen=True, kw_only=True)
class ShareGiven(Event):
    """An officer brought their KEK share to a wrap backup's restore or drill, typed on their
    own console and sealed there to the signer's share key. Neither the coordinator nor the
    machine can read it: the machine judges who brought it, the signer whether it opens."""

    seat: str
    step: int
    purpose: str  # "restore" | "drill": what `Machine.share_asked()` said it was asked for


@dataclass(frozen=True, kw_only=True)
class ApprovalLapsed(Event):
    """An approval held for an operation not yet started reached its expiry (reported once; the
    quorum is then asked again, since the machine no longer counts it)."""

    seat: str
    quorum: str
    step: int
    key: str
    nonce: str


@dataclass(frozen=True, kw_only=True)
class Presence(Event):
    """A signed-in person's console connected or dropped, as the coordinator saw it."""

    person: str
    seats: tuple[str, ...]
    connected: bool


# --- remarks and deviations: from anyone signed in, at any time ---------------------------------
@dataclass(frozen=True, kw_only=True)
class Remark(Event):
    """A remark, or a deviation from the script, raised by a signed-in seat of any role, witnesses
    included ("DSO2 replaced by DSO4", "bag 3's seal damaged, replaced by bag serial X"). It is
    journaled and shown on every console; a deviation then waits for the administrator's decision
    (`DecideDeviation`), a remark needs none. Neither stops the ceremony."""

    seat: str
    kind: str  # "remark" | "deviation"
    text: str


@dataclass(frozen=True, kw_only=True)
class DecideDeviation(Event):
    """The administrator's decision on deviation number `deviation` (remarks and deviations are
    numbered together from 1, in the order raised): accept or reject, with a written reason.
    A deviation is decided once."""

    seat: str
    deviation: int
    decision: str  # "accept" | "reject"
    reason: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        SignIn, Acknowledge, Record, Approve, RefuseApproval, Decide, SignOff,
        Observed, OperationPlanned, OperationStarted, Performed, PerformFailed,
        Pause, Resume, PasswordEntered, ShareGiven, ApprovalLapsed, Presence, Remark,
        DecideDeviation,
    )
}


def event_to_dict(event: Event) -> dict[str, Any]:
    """The journal form: `{"event": "Acknowledge", "at": ..., "seat": ...}`."""
    d: dict[str, Any] = {"event": type(event).__name__}
    for f in dataclasses.fields(event):
        v = getattr(event, f.name)
        if f.metadata.get("omit_default") and v == f.default:
            continue
        if isinstance(v, Approval):
            v = v.to_dict()
        elif isinstance(v, tuple):
            v = list(v)
        d[f.name] = v
    return d


def event_from_dict(d: dict[str, Any]) -> Event:
    """Inverse of event_to_dict; raises ValueError on an unknown event, an unknown field or a
    missing one (strict: a journal entry that says more than the event holds is not trusted)."""
    try:
        cls = EVENT_TYPES[d["event"]]
    except KeyError as e:
        raise ValueError(f"unknown event {d.get('event')!r}") from e
    unknown = set(d) - {"event"} - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"event {d['event']} has unknown field(s) {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"event {d['event']} lacks field {f.name!r}")
            continue
        v = d[f.name]
        if hints[f.name] is Approval:
            try:  # a journal's approval that is not a whole table is bad input, like a lost field
                v = Approval.from_dict(v)
            except (KeyError, TypeError) as e:
                raise ValueError(f"event {d['event']}: approval is malformed ({e!r})") from e
        elif isinstance(v, list):
            v = tuple(v)
        kwargs[f.name] = v
    return cls(**kwargs)
