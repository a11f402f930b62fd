"""The previous ceremony's record, read from its journal: the facts the next ceremony checks.

A ceremony's script lists the facts of the previous one it verifies against (`[ceremony]
previous = [...]`, named `previous.KEY` by its steps). They were typed by hand from the last
ceremony's papers; here they are read from that ceremony's own journal instead, by folding it
(`ceremony.machine.replay`) into a machine built from its own genesis (its script text, roster
and previous record), then reading what the machine recorded:

    hsm_fingerprint   the last hsm.fingerprint step's result (the HSM's identity as its
                      signer reported it); without one, the last verify step that observed
                      hsm.fingerprint
    key_count         the last key count: an hsm.list step's count, or a verify step that
                      observed hsm.key_count; a purge or a generation completed after it makes it
                      unknown (the count is no longer what was seen)
    signer_host_key   the signer's SSH host key as a verify step observed it (signer.host_key);
                      else, once any step reached that signer, the key its link was pinned to
                      (the script's host_key, resolved from its own previous record)
    livecd_sha256     the live CD's digest as a verify step observed it (livecd.sha256)
    backup_sha256     the last hsm.backup step's digest of the backup it wrote (as colon hex)
    backup_file       that backup's file name (`key-backup-DATE.tar.gz`)
    transcript_sha256 the last transcript step's digest of the transcript it wrote (colon hex)
    transcript_file   that transcript's file name (`transcript-DATE.txt`); neither is carried:
                      each ceremony writes its own

A journal that does not observe the live CD or write a backup carries those facts on from its
own previous record (a restore in between writes no backup: the bags still hold the key
generation's, and the next audit checks them against it); the HSM's and signer's facts are never
carried (another HSM, or the same one changed, says nothing of them).

The HSM's and signer's facts are read for the script's first signer, the one the rehearsal and
the live coordinator reach. A fact the journal never observed is absent, never guessed:
`lacks()` names the ones a script needs. Custody is what the machine holds at the end
(`Machine.custody`): each bag still held, its serial, its custodian and contents, with the serial
read off each drive inside; and each bag the ceremony before it left held that this one never
opened (still held, as recorded).

Pure: it takes the records a caller read (and verified: `coordinator.record_command` does both
at the edge) and loads nothing but the journal's own script and roster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ceremony.errors import BadInput, Failure
from ceremony.machine.machine import Machine
from ceremony.machine.replay import replay
from ceremony.roster import Roster
from ceremony.script.load import load_script_text
from ceremony.script.model import Step

#: The facts read, in the order the hand-typed record has always listed them.
FACTS = ("livecd_sha256", "signer_host_key", "hsm_fingerprint", "key_count", "backup_sha256",
         "backup_file", "transcript_sha256", "transcript_file")

#: The facts a journal carries on from its own previous record when it did not observe them.
CARRIED = ("livecd_sha256", "backup_sha256", "backup_file")

#: What gives each fact, said when a journal lacks it.
WHERE = {
    "livecd_sha256": "a verify step observing livecd.sha256",
    "signer_host_key": "a verify step observing signer.host_key, or any step on the signer",
    "hsm_fingerprint": "an hsm.fingerprint step, or a verify step observing hsm.fingerprint",
    "key_count": "an hsm.list step (or a verify step observing hsm.key_count) after the last "
                 "purge or generation",
    "backup_sha256": "an hsm.backup step (here or in a ceremony before it)",
    "backup_file": "an hsm.backup step (here or in a ceremony before it)",
    "transcript_sha256": "a transcript step",
    "transcript_file": "a transcript step",
}


@dataclass(frozen=True)
class Held:
    """A bag still in custody when the previous ceremony ended."""

    bag: str
    title: str
    serial: str
    custodian: str  # the seat that holds it
    person: str
    name: str | None  # the holder's name, from the roster
    step: int  # since which step (its seal, or the last hand-over)
    contents: tuple[str, ...]  # as sealed: drive:LABEL, password:NAME, transcript
    drives: dict[str, str | None]  # label of each drive inside -> the serial read off it

    def to_dict(self) -> dict[str, Any]:
        return {"bag": self.bag, "title": self.title, "serial": self.serial,
                "custodian": self.custodian, "person": self.person, "name": self.name,
                "step": self.step, "contents": list(self.contents), "drives": dict(self.drives)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Held:
        """A bag as `to_dict` wrote it (a genesis's previous record carries them); ValueError
        for another shape."""
        try:
            return cls(bag=str(d["bag"]), title=str(d.get("title") or d["bag"]),
                       serial=str(d["serial"]), custodian=str(d["custodian"]),
                       person=str(d["person"]),
                       name=None if d.get("name") is None else str(d["name"]),
                       step=int(d.get("step") or 0),
                       contents=tuple(str(c) for c in d.get("contents") or ()),
                       drives={str(k): None if v is None else str(v)
                               for k, v in dict(d.get("drives") or {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a bag held ({e})") from None

    def describe(self) -> str:
        """One line: the bag, its serial, who holds it since when, and what is inside."""
        inside = []
        for item in self.contents:
            kind, _, what = item.partition(":")
            if kind == "drive":
                inside.append(f"drive {what} (serial {self.drives.get(what) or 'never read'})")
            elif kind == "password":
                inside.append(f"a copy of the {what} password")
            else:
                inside.append(item)
        who = f"{self.name} ({self.custodian})" if self.name else self.custodian
        return (f"bag {self.bag} serial {self.serial}: held by {who} since step {self.step}: "
                f"{', '.join(inside)}")


@dataclass(frozen=True)
class PreviousCeremony:
    """What a previous ceremony's journal says it left: the record a next script checks
    (`record`, str -> str, what `Machine` takes) and the bags still in custody."""

    ceremony: str
    title: str
    at: str  # the genesis's time
    origin: str | None  # the journal's origin (names its checkpoint key)
    rehearsal: bool
    status: str  # the machine's: completed, aborted, exception, running
    step: int | None  # the current step when the records end (None once completed)
    steps_completed: int
    steps_total: int
    entries: int  # journal entries read
    record: dict[str, str]
    sources: dict[str, str]  # fact -> where it was read ("step 27 (hsm.fingerprint)")
    custody: tuple[Held, ...] = field(default=())

    def machine_record(self) -> dict[str, Any]:
        """The previous record as `Machine` takes it (and a genesis keeps it): the facts, and
        the bags still held under `custody`, which the next ceremony's `unseal` steps open."""
        out: dict[str, Any] = dict(self.record)
        if self.custody:
            out["custody"] = [h.to_dict() for h in self.custody]
        return out

    def lacks(self, keys: Iterable[str]) -> list[str]:
        """The keys among `keys` (a script's `previous` list) this record does not hold."""
        return [k for k in keys if k not in self.record]

    def to_dict(self) -> dict[str, Any]:
        return {"ceremony": self.ceremony, "title": self.title, "at": self.at,
                "origin": self.origin, "rehearsal": self.rehearsal, "status": self.status,
                "step": self.step, "steps_completed": self.steps_completed,
                "steps_total": self.steps_total, "entries": self.entries,
                "record": dict(self.record), "sources": dict(self.sources),
                "custody": [h.to_dict() for h in self.custody]}


def as_record(previous: Mapping[str, Any]) -> dict[str, Any]:
    """A previous record as the machine takes it, from a genesis or a TOML file: each fact as
    text, and `custody` (the bags held, `Held.to_dict` each) as it is, for the machine to check."""
    return {str(k): (v if k == "custody" else str(v)) for k, v in previous.items()}


def held_of(previous: Mapping[str, Any]) -> tuple[Held, ...]:
    """The bags a previous record says are held, for people to read (a malformed one is left
    out here; the machine refuses the record)."""
    out = []
    for d in previous.get("custody") or ():
        try:
            out.append(Held.from_dict(d))
        except ValueError:
            continue
    return tuple(out)


def read_previous(records: Sequence[tuple[int, dict[str, Any]]]) -> PreviousCeremony:
    """Fold a journal's records (seq, record), genesis first, and read the previous record and
    custody from the machine they leave. Raises BadInput for records that are not a ceremony's
    journal or do not replay."""
    if not records:
        raise BadInput("the journal holds no entries")
    genesis = records[0][1]
    if not isinstance(genesis, dict) or genesis.get("type") != "genesis":
        raise BadInput("the journal's first entry is not a ceremony genesis")
    try:
        text = genesis["script"]["text"]
        script = load_script_text(text, "the journal's genesis script")
        roster = Roster.from_dict(genesis["roster"], "the journal's genesis roster")
        own_previous = as_record(dict(genesis.get("previous") or {}))
        machine = Machine(script, roster, own_previous)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise BadInput(f"the journal's first entry is not a ceremony genesis ({e})") from None
    try:
        replay(records, machine, script.sha256)
    except Failure as e:
        raise BadInput(f"the journal does not replay: {e}") from None

    record, sources = _facts(machine)
    for key in CARRIED:
        if key not in record and own_previous.get(key):
            record[key] = str(own_previous[key])
            sources[key] = "carried on from its own previous ceremony's record"
    record = {k: record[k] for k in FACTS if k in record}
    custody = tuple(_held(machine, bag, c) for bag, c in machine.custody.items())
    # and the bags it was handed by the ceremony before it and never opened: still held by the
    # same people, so a chain of ceremonies (generate, restore, audit) keeps every bag
    custody += held_of({"custody": list(machine.carried.values())})
    journal = genesis.get("journal")
    origin = journal.get("origin") if isinstance(journal, dict) else None
    return PreviousCeremony(
        ceremony=script.ceremony.id, title=script.ceremony.title, at=str(genesis.get("at", "")),
        origin=origin if isinstance(origin, str) else None,
        rehearsal=bool(genesis.get("rehearsal", False)), status=machine.status,
        step=machine.current.n if machine.current else None,
        steps_completed=len(machine.completed), steps_total=len(machine.steps),
        entries=len(records), record=record, sources=sources, custody=custody,
    )


def _facts(m: Machine) -> tuple[dict[str, str], dict[str, str]]:
    """The four facts from the completed steps, in the order they completed."""
    snap = m.snapshot()
    values, results = snap["values"], snap["results"]
    signer = m.script.signers[0].name if m.script.signers else None
    record: dict[str, str] = {}
    sources: dict[str, str] = {}
    reached = False

    def found(key: str, value: Any, step: Step, what: str) -> None:
        if value is None or str(value) == "":
            return
        record[key] = str(value)
        sources[key] = f"step {step.n} ({what})"

    for n in m.completed:
        st = m.script.step(n)
        observe = st.observe or ""
        if signer is not None and (st.signer or signer) != signer \
                and (st.action.startswith("hsm.") or observe.startswith(("hsm.", "signer."))):
            continue  # another signer's HSM: not the one the next ceremony reaches
        if st.action.startswith("hsm.") or observe.startswith(("hsm.", "signer.")):
            reached = True
        result = results.get(str(n), {})
        value = values.get(str(n))
        if st.action == "hsm.fingerprint":
            found("hsm_fingerprint", result.get("fingerprint"), st, "hsm.fingerprint")
        elif st.action == "hsm.list":
            found("key_count", result.get("count"), st, "hsm.list")
        elif st.action == "hsm.backup":
            found("backup_sha256", result.get("sha256"), st, "hsm.backup")
            found("backup_file", str(result.get("file") or "").rpartition("/")[2], st,
                  "hsm.backup")
        elif st.action == "transcript":
            found("transcript_sha256", result.get("sha256"), st, "transcript")
            found("transcript_file", str(result.get("file") or "").rpartition("/")[2], st,
                  "transcript")
        elif st.action in ("hsm.purge", "hsm.generate"):
            record.pop("key_count", None)  # the count seen before is no longer the HSM's
            sources.pop("key_count", None)
        elif st.action == "verify" and observe == "hsm.fingerprint":
            if not sources.get("hsm_fingerprint", "").endswith("(hsm.fingerprint)"):
                found("hsm_fingerprint", value, st, "verify hsm.fingerprint")
        elif st.action == "verify" and observe == "hsm.key_count":
            found("key_count", value, st, "verify hsm.key_count")
        elif st.action == "verify" and observe == "signer.host_key":
            found("signer_host_key", value, st, "verify signer.host_key")
        elif st.action == "verify" and observe == "livecd.sha256":
            found("livecd_sha256", value, st, "verify livecd.sha256")
    if "signer_host_key" not in record and reached and signer is not None:
        pin = m.host_key_pin(signer)
        if pin:
            record["signer_host_key"] = pin
            sources["signer_host_key"] = f"signer {signer}'s pinned host key (its link " \
                "refused any other)"
    ordered = {k: record[k] for k in FACTS if k in record}
    return ordered, {k: sources[k] for k in ordered}


def _held(m: Machine, bag: str, c: dict[str, Any]) -> Held:
    officer = m.roster.officers.get(str(c.get("custodian")))
    contents = tuple(str(x) for x in c.get("contents", ()))
    drives = {x.partition(":")[2]: m.drive_serial(x.partition(":")[2])
              for x in contents if x.startswith("drive:")}
    declared = m.script.bags.get(bag)
    return Held(bag=bag, title=declared.title if declared else bag, serial=str(c["serial"]),
                custodian=str(c["custodian"]), person=str(c.get("person", "")),
                name=officer.name if officer else None, step=int(c["step"]),
                contents=contents, drives=drives)
