"""What a ceremony report states, read from a verified journal's records alone (pure).

The journal's genesis entry carries the script, the roster and the previous ceremony's record, so
the ceremony machine is rebuilt and every record the machine saw is fed to it again, in order, as
`ceremony.machine.replay` does: what a step yielded, the custody of each bag and the exceptions
are the machine's own judgement, never re-derived here. Around that fold this module notes what
the machine keeps no history of: when each step was reached and completed and by whom, every
observation of a verify step (a retried mismatch included), each approval's officer and time, the
exceptions and the administrator's decisions as they happened, and every checkpoint.

Nothing here checks the journal's links or signatures: `verify_journal` does that first (the
report command refuses a journal that does not verify). A journal that verifies but does not
replay (a record that does not read, an event the machine refuses) is a `Failure`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ceremony import records as rec
from ceremony.approval import key_fingerprint as approval_key_fingerprint
from ceremony.digests import colon_hex, pgp_words
from ceremony.errors import BadInput, Failure
from ceremony.machine import Machine, Refused
from ceremony.machine import events as ev
from ceremony.previous import as_record, held_of
from ceremony.roster import Roster
from ceremony.script.load import load_script_text
from ceremony.script.model import Script, Step
from coordinator.publish import PublicKey, PublishError, keys_from_results


@dataclass(frozen=True)
class Verification:
    """What `keyrite verify` found, as the command hands it on (the facts do not verify)."""

    journal: str  # the file name as given
    entries: int
    checkpoints: int
    keys: tuple[str, ...]  # "<name>+<hexid>" of the trusted keys
    trust: str  # "given" (--key) or "genesis" (the key the journal announces)


@dataclass(frozen=True)
class CheckpointFact:
    seq: int  # the checkpoint's own entry
    at: str
    size: int  # entries it covers: 0 to size - 1
    root: str  # hex
    origin: str
    signers: tuple[str, ...]  # key names on the note
    note: str  # the signed note, whole

    @property
    def root_colon(self) -> str:
        return colon_hex(self.root)

    @property
    def root_words(self) -> str:
        return pgp_words(self.root)


@dataclass(frozen=True)
class SignInFact:
    seat: str
    role: str
    name: str
    organisation: str
    person: str
    at: float
    identity: str  # how identity was checked
    fingerprint: str  # of the seat's enrolled signing key


@dataclass(frozen=True)
class StepFact:
    n: int
    section: str
    actor: str
    action: str
    text: str
    reached: float | None  # when it became the current step
    completed: float | None
    by: str  # seat (and name) that completed it, "coordinator", or ""
    outcome: str  # done, accepted, aborted, stopped, not reached, ...
    value: str | None  # what the step yielded
    expected: str | None  # a verify step's expected value
    observed: tuple[str, ...]  # a verify step's observations, each attempt
    notes: tuple[str, ...]  # further values worth printing (results, reasons)

    @property
    def duration(self) -> float | None:
        if self.reached is None or self.completed is None:
            return None
        return max(0.0, self.completed - self.reached)


@dataclass(frozen=True)
class KeyFacts:
    """The HSM's key counts as the Performed results state them, and which keys changed."""

    listed: tuple[tuple[int, int], ...]  # (step, count) of each hsm.list
    before_purge: int | None
    after_purge: int | None
    after_generation: int | None
    purged: tuple[str, ...]
    generated: tuple[str, ...]
    batches: tuple[dict[str, Any], ...]  # the generation plan's batches (policy, role, locators)
    fingerprint: str | None  # the HSM's, as performed
    #: each new key's public key as its generate result carries it (coordinator.publish)
    public_keys: tuple[PublicKey, ...] = ()


@dataclass(frozen=True)
class FileFact:
    name: str
    size: int | None
    sha256: str  # hex


@dataclass(frozen=True)
class BackupFact:
    step: int
    file: str
    size: int | None
    sha256: str
    sha256sum_file: str | None
    observed: str | None  # the digest the coordinator recomputed at the verify step
    at: float


@dataclass(frozen=True)
class DriveFact:
    label: str
    title: str
    recorded: str | None  # the serial the KGA wrote down
    read: str | None  # the serial the drive reported
    vendor: str | None
    model: str | None
    files: tuple[tuple[int, FileFact], ...]  # (step, file) copied onto it
    checks: tuple[tuple[int, str], ...]  # (step, what its read-back check said)
    bag: str | None  # the bag it was sealed in


@dataclass(frozen=True)
class HandFact:
    """One change of hands of a bag: its seal (from nobody) or a hand-over."""

    kind: str  # "seal" | "handover"
    step: int
    at: float
    giver: str | None  # seat
    giver_name: str | None
    taker: str  # seat
    taker_name: str
    signature: str | None


@dataclass(frozen=True)
class BagFact:
    label: str
    title: str
    serial: str | None
    contents: tuple[str, ...]  # as people read them: "flash drive X (serial ...)"
    custodian: str | None  # seat
    custodian_name: str | None
    organisation: str | None
    at: float | None
    chain: tuple[HandFact, ...]
    since: str | None = None  # a bag carried on unopened: since which step of the ceremony before


@dataclass(frozen=True)
class ApprovalFact:
    quorum: str
    step: int  # the step whose operation it approves
    op: str  # purge, generate, backup
    operation: str  # hex digest of the exact operation
    seat: str
    name: str
    at: float
    expires: int
    fingerprint: str
    outcome: str  # "used", "lapsed", "withdrawn" (quorum refused), "held" (never used)


@dataclass(frozen=True)
class ExceptionFact:
    step: int
    kind: str  # mismatch | failure
    reason: str
    observed: str | None
    expected: str | None
    at: float
    decision: str | None  # retry | accept | abort | None (still open)
    by: str | None
    why: str | None  # the administrator's written reason
    decided: float | None


@dataclass(frozen=True)
class RoomFact:
    """A record of the room: pause, resume, password typed, approval lapsed, console, drive,
    coordinator, refusal; one line each, for the report's list."""

    seq: int
    at: float | None
    kind: str
    text: str


@dataclass(frozen=True)
class SectionFact:
    title: str
    planned: int  # seconds, the script's estimate
    planned_start: float | None  # the ceremony's start plus the estimates before it
    started: float | None
    ended: float | None
    steps: tuple[int, int]  # first and last step number

    @property
    def actual(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


@dataclass(frozen=True)
class SignOffFact:
    seat: str
    name: str
    at: float
    size: int | None
    root: str | None  # hex


@dataclass(frozen=True)
class Participant:
    person: str
    name: str
    organisation: str
    seats: tuple[str, ...]


@dataclass(frozen=True)
class Facts:
    ceremony: str
    title: str
    version: str
    continues: str | None
    rehearsal: bool
    script_name: str
    script_sha256: str
    opened: str  # the genesis entry's time, ISO 8601 UTC
    status: str  # completed | running | exception | aborted
    at_step: int | None  # where it stands if not completed
    planned: int | None  # the ceremony's estimate, seconds
    started: float | None
    ended: float | None
    origin: str | None
    verification: Verification | None
    previous: dict[str, str]
    final: CheckpointFact | None
    checkpoints: tuple[CheckpointFact, ...]
    signoffs: tuple[SignOffFact, ...]
    signins: tuple[SignInFact, ...]
    participants: tuple[Participant, ...]
    steps: tuple[StepFact, ...]
    keys: KeyFacts
    backups: tuple[BackupFact, ...]
    transcripts: tuple[tuple[int, FileFact], ...]
    drives: tuple[DriveFact, ...]
    bags: tuple[BagFact, ...]
    approvals: tuple[ApprovalFact, ...]
    exceptions: tuple[ExceptionFact, ...]
    room: tuple[RoomFact, ...]
    refusals: int
    sections: tuple[SectionFact, ...]
    entries: int = field(default=0)


def key_fingerprint(key: str) -> str:
    """An officer's key as `ssh-keygen -l` prints its fingerprint (`ceremony.approval`'s), or a
    note in its place when the journal holds something that is not an Ed25519 key: the report
    is still made."""
    try:
        return approval_key_fingerprint(key)
    except ValueError:  # binascii.Error is one
        return "(not an Ed25519 key)"


def parse_checkpoint(seq: int, at: str, note: str) -> CheckpointFact | None:
    """A checkpoint note's size, root and signers; None if the note does not read."""
    lines = note.split("\n")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True).hex()
    except (IndexError, ValueError, binascii.Error):
        return None
    signers = tuple(s.split(" ")[1] for s in lines[4:]
                    if s.startswith("\u2014 ") and len(s.split(" ")) >= 3)
    return CheckpointFact(seq, at, size, root, lines[0], signers, note)


def facts_of(records: Iterable[tuple[int, dict[str, Any]]],
             verification: Verification | None = None) -> Facts:
    """The report's facts from a journal's (seq, record) pairs, genesis first. Raises Failure
    if the journal does not replay, BadInput if its first entry is not a ceremony's genesis."""
    return _Fold(list(records), verification).facts()


class _Fold:
    def __init__(self, entries: list[tuple[int, dict[str, Any]]],
                 verification: Verification | None) -> None:
        if not entries:
            raise BadInput("the journal has no entries")
        self.entries = entries
        self.verification = verification
        try:
            g = rec.record_from_dict(entries[0][1])
        except ValueError as e:
            raise BadInput(f"the first entry is not a ceremony genesis: {e}") from None
        if not isinstance(g, rec.Genesis):
            raise BadInput("the first entry is not a ceremony genesis")
        self.genesis = g
        self.script: Script = load_script_text(g.script["text"], "the journal's script")
        if self.script.sha256 != g.script["sha256"]:
            raise Failure("the journal's copy of the script does not match the SHA-256 its "
                          "genesis entry states")
        self.roster = Roster.from_dict(g.roster, "the journal's roster")
        self.m = Machine(self.script, self.roster, as_record(g.previous),
                         signed_signin=g.signed_signin)  # unsigned only in an older journal
        self.reached: dict[int, float] = {}
        self.completed: dict[int, tuple[float, str]] = {}
        self.observed: dict[int, list[str]] = {}
        self.expected: dict[int, str] = {}
        self.signins: list[SignInFact] = []
        self.plans: dict[int, dict[str, Any]] = {}
        self.approvals: list[dict[str, Any]] = []
        self.exceptions: list[dict[str, Any]] = []
        self.chains: dict[str, list[HandFact]] = {}
        self.checkpoints: list[CheckpointFact] = []
        self.signoffs: list[SignOffFact] = []
        self.room: list[RoomFact] = []
        self.refusals = 0
        self.first_at: float | None = None
        self.last_at: float | None = None

    # --- the fold ------------------------------------------------------------------------------
    def facts(self) -> Facts:
        for seq, d in self.entries[1:]:
            try:
                r = rec.record_from_dict(d)
            except ValueError as e:
                raise Failure(f"journal entry {seq} does not read: {e}") from None
            self._record(seq, r)
        return self._facts()

    def _record(self, seq: int, r: rec.Record) -> None:
        at = getattr(r, "at", None)
        if isinstance(at, (int, float)):
            self.first_at = at if self.first_at is None else self.first_at
            self.last_at = at
        if isinstance(r, rec.Checkpoint):
            cp = parse_checkpoint(seq, r.at, r.note)
            if cp is not None:
                self.checkpoints.append(cp)
            return
        if isinstance(r, rec.Refused):
            self.refusals += 1
            self.room.append(RoomFact(seq, r.at, "refused",
                                      f"{r.console or 'coordinator'} {r.command}: {r.reason}"))
            return
        self._room(seq, r)
        event = r.machine_event()
        if event is None:
            return
        self._event(event)

    def _room(self, seq: int, r: rec.Record) -> None:
        text = None
        if isinstance(r, rec.Resume):
            text = f"{self._who(r.seat)} resumed the ceremony"
        elif isinstance(r, rec.Pause):
            text = f"{self._who(r.seat)} paused the ceremony"
        elif isinstance(r, rec.Secret):
            purpose = (rec.operation_typed_for(self.script, r.step) if r.purpose == "backup"
                       else r.purpose)
            text = (f"{self._who(r.seat)} typed the {r.name} password for the {purpose} at "
                    f"step {r.step} (the password itself is never journaled)")
        elif isinstance(r, rec.Share):
            text = (f"{self._who(r.seat)} brought their KEK share for the {r.purpose} at step "
                    f"{r.step} (the share itself is never journaled)")
        elif isinstance(r, rec.Expired):
            text = f"{self._who(r.seat)}'s approval ({r.quorum}, step {r.step}) lapsed"
        elif isinstance(r, rec.Presence):
            text = (f"console of {', '.join(r.seats)} "
                    f"{'connected' if r.connected else 'disconnected'}")
        elif isinstance(r, rec.Drive):
            who = " ".join(x for x in (r.vendor, r.model) if x)
            text = (f"drive {r.event}: {who} serial {r.serial or '(none)'}"
                    + (f" ({r.label})" if r.label else "") + (f": {r.reason}" if r.reason else ""))
        elif isinstance(r, rec.Coordinator):
            text = f"coordinator {r.what}"
        if text is not None:
            self.room.append(RoomFact(seq, getattr(r, "at", None), r.TYPE, text))

    def _event(self, e: ev.Event) -> None:
        m = self.m
        step = m.current
        if step is not None and step.n not in self.reached:
            self.reached[step.n] = e.at
        before = set(m.completed)
        status = m.status
        custody = m.custody
        if isinstance(e, ev.Observed) and step is not None:
            self.expected[step.n] = m.expected(step) or ""
        try:
            m.handle(e)
        except Refused as err:
            raise Failure(f"the journal does not replay: {type(e).__name__} at step "
                          f"{step.n if step else '-'} is refused: {err.reason}") from None
        self._noted(e, step)
        for n in m.completed:
            if n not in before:
                self.completed[n] = (e.at, self._completer(e))
        nxt = m.current
        if nxt is not None and nxt.n not in self.reached and m.status == "running":
            self.reached[nxt.n] = e.at
        if m.status == "exception" and status != "exception":
            x = m.exception or {}
            self.exceptions.append({**x, "at": e.at})
        if isinstance(e, ev.Decide) and self.exceptions:
            self.exceptions[-1].update(decision=e.decision, by=e.seat, why=e.reason,
                                       decided=e.at)
        for bag, c in m.custody.items():
            if custody.get(bag) != c:
                giver = c.get("from")
                self.chains.setdefault(bag, []).append(HandFact(
                    "handover" if giver else "seal", int(c["step"]), float(c["at"]), giver,
                    self._name(giver) if giver else None, c["custodian"],
                    self._name(c["custodian"]) or "", c.get("signature")))

    def _noted(self, e: ev.Event, step: Step | None) -> None:
        if isinstance(e, ev.SignIn):
            for seat in e.seats:
                o = self.roster.officers[seat]
                trusted = self.script.roles[o.role].trusted
                identity = ("government ID checked by the "
                            f"{self.script.ceremony.administrator}" if e.id_checked else
                            "known officer of a trusted role; no ID check recorded"
                            if trusted else "no ID check recorded")
                self.signins.append(SignInFact(seat, o.role, e.name, e.organisation, e.person,
                                               e.at, identity, key_fingerprint(o.signing_key)))
        elif isinstance(e, ev.Observed) and step is not None:
            self.observed.setdefault(step.n, []).append(e.value)
        elif isinstance(e, ev.OperationPlanned):
            self.plans[e.step] = dict(e.operation)
        elif isinstance(e, ev.Approve):
            a = e.approval
            role = self.roster.officers[e.seat].role
            quorum = next((q.id for q in self.script.quorums.values()
                           if q.authorizes == a.step and q.role == role), "?")
            self.approvals.append({"quorum": quorum, "step": a.step, "operation": a.operation,
                                   "seat": e.seat, "at": e.at, "expires": a.expires,
                                   "key": a.key, "nonce": a.nonce, "outcome": "held"})
        elif isinstance(e, ev.ApprovalLapsed):
            for a in self.approvals:
                if a["key"] == e.key and a["nonce"] == e.nonce:
                    a["outcome"] = "lapsed"
        elif isinstance(e, ev.RefuseApproval):
            for a in self.approvals:
                if a["quorum"] == e.quorum and a["outcome"] == "held":
                    a["outcome"] = f"withdrawn ({self._who(e.seat)} refused: {e.reason})"
        elif isinstance(e, ev.OperationStarted):
            used = self.m.snapshot()["started"].get(str(e.step), [])
            for a in self.approvals:
                if a["step"] == e.step and a["outcome"] == "held" and a["seat"] in used:
                    a["outcome"] = "used"
        elif isinstance(e, ev.SignOff):
            cp = parse_checkpoint(-1, "", e.checkpoint)
            self.signoffs.append(SignOffFact(e.seat, self._name(e.seat) or "", e.at,
                                             cp.size if cp else None, cp.root if cp else None))

    def _completer(self, e: ev.Event) -> str:
        seat = getattr(e, "seat", None)
        return self._who(seat) if seat else "coordinator"

    def _name(self, seat: str | None) -> str | None:
        o = self.roster.officers.get(seat or "")
        return o.name if o else None

    def _who(self, seat: str) -> str:
        name = self._name(seat)
        return f"{seat} ({name})" if name else seat

    # --- the facts -----------------------------------------------------------------------------
    def _facts(self) -> Facts:
        m, s, g = self.m, self.script, self.genesis
        snap = m.snapshot()
        current = m.current
        return Facts(
            ceremony=s.ceremony.id, title=s.ceremony.title, version=s.ceremony.version,
            continues=s.ceremony.continues, rehearsal=g.rehearsal,
            script_name=str(g.script.get("name", "")), script_sha256=s.sha256, opened=g.at,
            status=m.status, at_step=current.n if current else None,
            planned=s.ceremony.estimated.seconds if s.ceremony.estimated else None,
            started=self.first_at, ended=self.last_at,
            origin=(g.journal or {}).get("origin"), verification=self.verification,
            previous={**{k: str(v) for k, v in g.previous.items() if k != "custody"},
                      **{f"bag {h.bag}": h.describe() for h in held_of(g.previous)}},
            final=self.checkpoints[-1] if self.checkpoints else None,
            checkpoints=tuple(self.checkpoints), signoffs=tuple(self.signoffs),
            signins=tuple(self.signins), participants=self._participants(snap),
            steps=self._steps(snap), keys=self._keys(), backups=self._backups(),
            transcripts=tuple((n, _file(r)) for n, r in m.results_of("transcript")),
            drives=self._drives(), bags=self._bags(), approvals=self._approvals(),
            exceptions=self._exceptions(), room=tuple(self.room), refusals=self.refusals,
            sections=self._sections(), entries=len(self.entries),
        )

    def _participants(self, snap: dict[str, Any]) -> tuple[Participant, ...]:
        return tuple(Participant(p, str(x.get("name", "")), str(x.get("organisation", "")),
                                 tuple(x.get("seats", ())))
                     for p, x in snap["people"].items())

    def _steps(self, snap: dict[str, Any]) -> tuple[StepFact, ...]:
        m = self.m
        values = snap["values"]
        results = snap["results"]
        accepted = snap["accepted"]
        out = []
        for st in self.script.steps:
            done = self.completed.get(st.n)
            excs = [x for x in self.exceptions if x.get("step") == st.n]
            notes = [f"{k}: {v}" for k, v in _plain(results.get(str(st.n), {}))]
            if st.n in self.plans:
                notes.insert(0, f"planned {self.plans[st.n].get('op')}: "
                             f"{_plan_words(self.plans[st.n])}")
            for x in excs:
                line = f"exception: {x.get('reason')}"
                if x.get("decision"):
                    line += (f"; {x.get('decision')} by {self._who(str(x.get('by')))}"
                             + (f": {x.get('why')}" if x.get("why") else ""))
                notes.append(line)
            if done is not None:
                retries = sum(1 for x in excs if x.get("decision") == "retry")
                if str(st.n) in accepted:
                    outcome = "accepted with a reason"
                else:
                    outcome = "done" + (f" after {retries} retr{'y' if retries == 1 else 'ies'}"
                                        if retries else "")
            elif m.status == "aborted" and m.current is not None and m.current.n == st.n:
                outcome = "ABORTED here"
            elif m.status == "exception" and m.current is not None and m.current.n == st.n:
                outcome = "STOPPED here (exception open)"
            elif m.current is not None and m.current.n == st.n:
                outcome = "current, not done"
            else:
                outcome = "not reached"
            expected = None
            if st.action == "verify":
                expected = self.expected.get(st.n) or m.expected(st)
            out.append(StepFact(
                n=st.n, section=st.section, actor=st.actor, action=st.action, text=st.text,
                reached=self.reached.get(st.n), completed=done[0] if done else None,
                by=done[1] if done else "", outcome=outcome, value=values.get(str(st.n)),
                expected=expected, observed=tuple(self.observed.get(st.n, [])),
                notes=tuple(notes)))
        return tuple(out)

    def _keys(self) -> KeyFacts:
        m = self.m
        purges = m.results_of("hsm.purge")
        gens = m.results_of("hsm.generate")
        batches: list[dict[str, Any]] = []
        for n, _ in gens:
            batches += [dict(b) for b in self.plans.get(n, {}).get("batches", [])]
        fingerprints = m.results_of("hsm.fingerprint")
        return KeyFacts(
            listed=tuple((n, int(r["count"])) for n, r in m.results_of("hsm.list")
                         if isinstance(r.get("count"), int)),
            before_purge=_int(purges[0][1].get("before")) if purges else None,
            after_purge=_int(purges[-1][1].get("after")) if purges else None,
            after_generation=_int(gens[-1][1].get("after")) if gens else None,
            purged=tuple(str(k) for _, r in purges for k in r.get("deleted", [])),
            generated=tuple(str(k) for _, r in gens for k in r.get("generated", [])),
            batches=tuple(batches),
            fingerprint=str(fingerprints[-1][1].get("fingerprint")) if fingerprints else None,
            public_keys=tuple(self._public_keys(gens)),
        )

    def _public_keys(self, gens: list[tuple[int, dict[str, Any]]]) -> list[PublicKey]:
        try:
            return keys_from_results(gens)
        except PublishError as e:
            raise Failure(f"the journal's published keys do not read: {e}") from None

    def _backups(self) -> tuple[BackupFact, ...]:
        out = []
        checks = {st.n: st for st in self.script.steps
                  if st.action == "verify" and st.observe == "backup.sha256"}
        for n, r in self.m.results_of("hsm.backup"):
            later = [k for k in checks if k > n and self.observed.get(k)]
            observed = self.observed[later[0]][-1] if later else None
            out.append(BackupFact(n, str(r.get("file", "")), _int(r.get("size")),
                                  str(r.get("sha256", "")), r.get("sha256sum_file"),
                                  observed, self.completed[n][0]))
        return tuple(out)

    def _drives(self) -> tuple[DriveFact, ...]:
        m = self.m
        out = []
        custody = m.custody
        for label, d in self.script.drives.items():
            inserted = [r for n, r in m.results_of("drive.insert")
                        if self.script.step(n).drive == label]
            files = tuple((n, _file(f)) for n, r in m.results_of("drive.copy")
                          if self.script.step(n).drive == label
                          for f in r.get("files", []) if isinstance(f, dict))
            checks = tuple((n, _check(r)) for n, r in m.results_of("drive.verify")
                           if self.script.step(n).drive == label)
            bag = next((b for b, c in custody.items() if f"drive:{label}" in c["contents"]),
                       None)
            last = inserted[-1] if inserted else {}
            out.append(DriveFact(label, d.title, m.recorded_serial(label), m.drive_serial(label),
                                 last.get("vendor"), last.get("model"), files, checks, bag))
        return tuple(out)

    def _bags(self) -> tuple[BagFact, ...]:
        m = self.m
        custody = m.custody
        out = []
        carried = {h.bag: h for h in held_of({"custody": list(m.carried.values())})}
        for label, b in self.script.bags.items():
            c = custody.get(label)
            if c is None and label in carried:
                continue  # listed below, with the bags this script does not name
            if c is None:
                out.append(BagFact(label, b.title, None, (), None, None, None, None,
                                   tuple(self.chains.get(label, []))))
                continue
            o = self.roster.officers.get(c["custodian"])
            out.append(BagFact(
                label, b.title, str(c["serial"]), tuple(self._content(x) for x in c["contents"]),
                c["custodian"], o.name if o else None, o.organisation if o else None,
                float(c["at"]), tuple(self.chains.get(label, []))))
        for h in carried.values():  # still held as the previous ceremony's record says
            o = self.roster.officers.get(h.custodian)
            inside = tuple(
                f"flash drive {x.partition(':')[2]}, serial "
                f"{h.drives.get(x.partition(':')[2]) or 'never read'}"
                if x.startswith("drive:") else self._content(x) for x in h.contents)
            out.append(BagFact(h.bag, h.title, h.serial, inside, h.custodian, h.name,
                               o.organisation if o else None, None, (),
                               since=f"step {h.step} of the previous ceremony (carried on "
                                     "unopened)"))
        return tuple(out)

    def _content(self, item: str) -> str:
        kind, _, name = item.partition(":")
        if kind == "drive":
            title = self.script.drives[name].title if name in self.script.drives else name
            serial = self.m.drive_serial(name) or "never read"
            return f"flash drive {title} ({name}), serial {serial}"
        if kind == "password":
            return f"a copy of the {name} password"
        if item == "transcript":
            return "the printed transcript"
        return item

    def _approvals(self) -> tuple[ApprovalFact, ...]:
        return tuple(ApprovalFact(
            quorum=a["quorum"], step=a["step"], op=str(self.plans.get(a["step"], {}).get("op", "")),
            operation=a["operation"], seat=a["seat"], name=self._name(a["seat"]) or "",
            at=a["at"], expires=a["expires"], fingerprint=key_fingerprint(a["key"]),
            outcome=a["outcome"]) for a in self.approvals)

    def _exceptions(self) -> tuple[ExceptionFact, ...]:
        return tuple(ExceptionFact(
            step=int(x.get("step", 0)), kind=str(x.get("kind", "")),
            reason=str(x.get("reason", "")), observed=x.get("observed"),
            expected=x.get("expected"), at=float(x["at"]), decision=x.get("decision"),
            by=self._who(str(x["by"])) if x.get("by") else None, why=x.get("why"),
            decided=x.get("decided")) for x in self.exceptions)

    def _sections(self) -> tuple[SectionFact, ...]:
        out = []
        clock = self.first_at
        for sec in self.script.sections:
            ns = [st.n for st in sec.steps]
            started = min((self.reached[n] for n in ns if n in self.reached), default=None)
            done = [self.completed[n][0] for n in ns if n in self.completed]
            ended = max(done) if len(done) == len(ns) else None
            out.append(SectionFact(sec.title, sec.estimated.seconds, clock, started, ended,
                                   (ns[0], ns[-1])))
            clock = None if clock is None else clock + sec.estimated.seconds
        return tuple(out)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _file(r: dict[str, Any]) -> FileFact:
    return FileFact(str(r.get("name") or r.get("file") or ""), _int(r.get("size")),
                    str(r.get("sha256", "")).replace(":", ""))


def _check(r: dict[str, Any]) -> str:
    said = "; ".join(str(x) for x in r.get("checked", [])) or str(r.get("detail", ""))
    if not r.get("ok"):
        said = f"FAILED: {said}"
    drill = r.get("drill")
    if isinstance(drill, dict):
        said += (f"; restore drill: {drill.get('restored')} keys restored, "
                 f"{'the same as' if drill.get('match') else 'NOT the same as'} the "
                 f"{drill.get('live')} on the HSM")
    return said


def _plain(r: dict[str, Any]) -> list[tuple[str, str]]:
    """A result's values worth printing beside its step (not the key listing, which the
    report's key section and the journal hold; not lists the report states elsewhere)."""
    out = []
    for k, v in sorted(r.items()):
        if k in ("listing", "path", "files", "checked", "deleted", "generated", "drill"):
            continue
        if isinstance(v, str | int | float | bool):
            out.append((k, str(v)))
    return out


def _plan_words(op: dict[str, Any]) -> str:
    if op.get("op") == "purge":
        return f"delete {len(op.get('delete', []))} keys"
    if op.get("op") == "generate":
        return (f"{sum(b.get('count', 0) for b in op.get('batches', []))} keys for "
                f"{op.get('duration')}")
    if op.get("op") == "restore":
        return f"restore {len(op.get('keys', []))} keys from {op.get('file')}"
    return str(op.get("file", ""))
