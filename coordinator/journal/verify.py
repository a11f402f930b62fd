"""`verify_journal`: check a journal file alone and name the first entry that does not hold.

Read-only: unlike `Journal.open` it never cuts a torn tail, it reports it, and the journal does
not verify (a torn tail means the writer crashed mid-append, or the last line was damaged; in
either case the file is not the clean record a verifier should sign off on). Open the journal with
the coordinator to cut it, then verify again.

What a pass proves: every line is a well-formed entry in its place, every link holds, and every
checkpoint is signed by a trusted key over exactly the entries before it. With trusted keys
given, also that the genesis entry announces one of them and that at least one checkpoint by
them is there (a journal with every checkpoint removed and its links recomputed is otherwise
perfectly consistent): a journal the given key never signed fails unless `allow_unsigned`, and
then the report says so. What it cannot prove alone: that entries were not removed from the end.
Compare the last checkpoint with the one the ceremony's signed transcript records.

`checkpoint=` does that comparison: given a checkpoint note kept apart from the journal (printed,
on paper, by a witness), the copy must hold at least its size in entries and the RFC 6962 root of
its first `size` entries must be the note's root. A copy cut short, or one that forked (some
entry rewritten and its links and even its checkpoints recomputed with the coordinator's key),
fails it, named by entry number (`CheckpointCheck`). Why a fork is bounded rather than pinned:
one root says only that the entries under it differ somewhere, and no entry can be singled out
without the other history's entries. The copy's own checkpoints by a trusted key vouch for the
entries before them, so the first entry that departs lies between the copy's last own checkpoint
below `size` and `size` - 1, *if* the key never signed two histories of those entries (a log must
not; whoever forked the copy with the key itself may have): the bound is reported with that
condition, never as a fact. A copy's own checkpoint of the same size with another root is proof
that the key signed two histories, and is said so.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceremony.approval import load_public_key
from ceremony.records import Cosignature
from ceremony.roster import Officer, Roster
from coordinator.journal import entry as _entry
from coordinator.journal import lines as _lines
from coordinator.journal.chain import Broken, Chain, SignedCheckpoint
from coordinator.journal.checkpoint import (
    BadCheckpoint,
    BadCosignature,
    Checkpoint,
    cosigner_name,
    open_cosignature,
)
from coordinator.journal.entry import CHECKPOINT_TYPE
from coordinator.journal.lines import TornTail
from coordinator.journal.merkle import CompactRange
from coordinator.journal.note import (
    BadSignature,
    MalformedNote,
    NoTrustedSignature,
    Verifier,
    note_text,
    open_note,
)

#: The record type of an officer's cosignature of a checkpoint.
COSIGNATURE_TYPE = Cosignature.TYPE

#: Problem kinds that name no entry: the journal as a whole is what does not hold.
_WHOLE_JOURNAL = ("unsigned",)


@dataclass(frozen=True)
class Problem:
    """The first entry that does not hold."""

    seq: int
    line: int
    kind: str  # see chain.Broken; "torn" for a torn tail, "empty" for no entries
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "line": self.line, "kind": self.kind, "reason": self.reason}


#: A checkpoint file larger than this is not a note (a note with 100 signatures is ~10 KiB).
MAX_CHECKPOINT_FILE = 64 * 1024


class BadCheckpointFile(ValueError):
    """A checkpoint file that cannot be read or is not a checkpoint note at all."""


def read_checkpoint_file(path: str | os.PathLike[str]) -> str:
    """The note text in a checkpoint file, as printed: UTF-8, CRLF line ends and a missing or
    repeated final newline tolerated (they are outside the signed text, or restore it exactly;
    the signature still decides). Raises BadCheckpointFile, naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CHECKPOINT_FILE + 1)
    except OSError as e:
        raise BadCheckpointFile(f"cannot read checkpoint file {os.fsdecode(path)}: "
                                f"{e.strerror or e}") from None
    if len(data) > MAX_CHECKPOINT_FILE:
        raise BadCheckpointFile(f"checkpoint file {os.fsdecode(path)}: larger than "
                                f"{MAX_CHECKPOINT_FILE} bytes, not a checkpoint note")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadCheckpointFile(f"checkpoint file {os.fsdecode(path)}: not UTF-8 text") from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").rstrip("\n") + "\n"


def parse_checkpoint_note(note: str, name: str = "checkpoint") -> Checkpoint:
    """The checkpoint a note states, its signatures not yet checked (they need the trusted keys,
    which may come from the journal). Raises BadCheckpointFile if `note` is not a signed note
    whose text is a C2SP checkpoint."""
    try:
        open_note(note, [])
    except NoTrustedSignature:
        pass  # well-formed: with no key trusted yet, every signature is an unknown one
    except MalformedNote as e:
        hint = " (the file should hold the note text itself, as printed)" if note.startswith(
            "{") else ""
        raise BadCheckpointFile(f"{name}: not a signed note: {e}{hint}") from None
    try:
        return Checkpoint.parse(note_text(note))
    except BadCheckpoint as e:
        raise BadCheckpointFile(f"{name}: not a checkpoint: {e}") from None


def _entries(n: int) -> str:
    return f"{n} {'entry' if n == 1 else 'entries'}"


def _span(lo: int, hi: int) -> str:
    """`entry 4` or `entries 4 to 7`."""
    return f"entry {lo}" if lo == hi else f"entries {lo} to {hi}"


def _own(cp: SignedCheckpoint | None) -> dict[str, Any] | None:
    """One of the copy's own checkpoints, for JSON."""
    if cp is None:
        return None
    return {"seq": cp.seq, "size": cp.checkpoint.size,
            "root": base64.b64encode(cp.checkpoint.root).decode(),
            "signed_by": list(cp.signed_by)}


@dataclass(frozen=True)
class CheckpointCheck:
    """The journal copy against one checkpoint kept apart from it.

    `outcome`: "holds" (the copy's first `size` entries are the ones signed), "short" (it has
    fewer entries than the checkpoint covers), "forked" (the root of its first `size` entries is
    another), "untrusted" (the note's signature does not verify with a trusted key, or there is
    no trusted key) or "origin" (a checkpoint of another log).
    """

    name: str  # the checkpoint file, as given
    outcome: str
    reason: str  # what was found, one sentence; the summary line is built from it
    checkpoint: Checkpoint
    entries: int  # complete lines in the copy (a torn tail is not counted)
    signed_by: tuple[str, ...] = ()  # trusted keys whose signature verified
    ignored: tuple[str, ...] = ()  # signatures by keys not trusted (cosigners, witnesses)
    departs: tuple[int, int] | None = None  # forked: the first departing entry is in [lo, hi]
    bounded_by: SignedCheckpoint | None = None  # forked: the own checkpoint that gives lo
    same_size: SignedCheckpoint | None = None  # forked: the copy's own checkpoint of this size
    later: SignedCheckpoint | None = None  # forked: its first own checkpoint covering more

    @property
    def holds(self) -> bool:
        return self.outcome == "holds"

    @property
    def not_covered(self) -> int | None:
        """Entries of the copy after those the checkpoint covers (when it holds)."""
        return self.entries - self.checkpoint.size if self.holds else None

    def summary(self) -> str:
        verdict = "holds" if self.holds else "does not hold"
        line = f"{self.name}: checkpoint ({_entries(self.checkpoint.size)}) {verdict}: " \
            f"{self.reason}"
        if self.ignored:
            line += f" (ignored: signatures by keys not trusted: {', '.join(self.ignored)})"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.name,
            "ok": self.holds,
            "outcome": self.outcome,
            "reason": self.reason,
            "origin": self.checkpoint.origin,
            "size": self.checkpoint.size,
            "root": base64.b64encode(self.checkpoint.root).decode(),
            "entries": self.entries,
            "not_covered": self.not_covered,
            "signed_by": list(self.signed_by),
            "ignored_signatures": list(self.ignored),
            "departs": None if self.departs is None else
            {"from": self.departs[0], "to": self.departs[1]},
            "bounded_by": _own(self.bounded_by),
            "same_size_checkpoint": _own(self.same_size),
            "later_checkpoint": _own(self.later),
        }


def parse_cosigned_by(text: str) -> int | tuple[str, ...]:
    """`--cosigned-by`: a number of officers (at least 1), or a comma-separated list of roles
    (`KSO,SA`), each of which must have cosigned. Raises ValueError."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        n = int(text)
        if n < 1:
            raise ValueError("--cosigned-by: a number of officers is at least 1")
        return n
    roles = tuple(r.strip() for r in text.split(","))
    if not all(r and r.isascii() and r.isalnum() for r in roles):
        raise ValueError(f"--cosigned-by {text!r}: give a number of officers or roles separated "
                         "by commas (KSO,SA)")
    return roles


@dataclass(frozen=True)
class CosignCheck:
    """The journal's final checkpoint against `--cosigned-by`: the officers whose `cosignature`
    records (after it, of its size and root) verify against their seat's key in the genesis
    roster, under `<origin>/<seat>` (c2sp.org/tlog-cosignature, cosignature/v1)."""

    required: int | tuple[str, ...]  # a number of officers, or roles each of which must cosign
    holds: bool
    reason: str
    size: int | None  # the final checkpoint's tree size (None: there is none)
    cosigned_by: tuple[str, ...] = ()  # seats whose cosignature verified
    bad: tuple[str, ...] = ()  # "<seat>: why" for cosignature records that do not verify

    def summary(self, path: str) -> str:
        verdict = "holds" if self.holds else "does not hold"
        return f"{path}: cosigned-by {_required(self.required)} {verdict}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.holds, "required": self.required if isinstance(self.required, int)
                else list(self.required), "reason": self.reason, "size": self.size,
                "cosigned_by": list(self.cosigned_by), "bad": list(self.bad)}


def _required(required: int | tuple[str, ...]) -> str:
    if isinstance(required, int):
        return f"{required} officer{'' if required == 1 else 's'}"
    return ",".join(required)


def cosigned_checkpoint(held: list[SignedCheckpoint],
                        lines: list[bytes]) -> SignedCheckpoint | None:
    """The checkpoint whose cosignatures `--cosigned-by` counts: the last one that any
    `cosignature` record after it is of (its size). A journal, and every copy of it that goes
    into a bag, ends with a checkpoint of the coordinator's alone over what came after the one
    the officers signed off and cosigned (their cosignatures, the copy's own steps), so that no
    entry is left uncovered; with no cosignature at all, the last checkpoint."""
    if not held:
        return None
    sizes: set[int] = set()
    for line in lines[held[0].seq + 1:]:
        try:
            _, _, record = _entry.decode(line)
        except _entry.BadLine:
            continue  # the journal's own check names it
        if record.get("type") == COSIGNATURE_TYPE and isinstance(record.get("size"), int):
            sizes.add(record["size"])
    return next((c for c in reversed(held) if c.checkpoint.size in sizes), held[-1])


def _genesis_roster(genesis: dict[str, Any] | None) -> Roster:
    """The roster the genesis entry recorded, whose keys cosignatures are checked against."""
    return Roster.from_dict((genesis or {}).get("roster") or {}, "genesis roster")


def _cosigner(roster: Roster, origin: str, seat: Any, line: str, text: str) -> Officer | None:
    """The officer at `seat` whose key made `line`, a cosignature of the checkpoint `text`
    under `<origin>/<seat>`; None if `seat` is not one of `roster`'s. Raises BadCosignature
    (or ValueError, for a key that does not load) if the line does not verify."""
    officer = roster.officers.get(seat) if isinstance(seat, str) else None
    if officer is None:
        return None
    open_cosignature(line, text, cosigner_name(origin, seat), load_public_key(officer.signing_key))
    return officer


def check_cosigned(required: int | tuple[str, ...], genesis: dict[str, Any] | None,
                   origin: str | None, last: SignedCheckpoint | None,
                   after: list[bytes], sealed_by: SignedCheckpoint | None = None) -> CosignCheck:
    """Whether the final checkpoint `last` is cosigned as `required`: by at least that many
    officers (distinct people: one person's two seats count once), or by an officer of each
    role named. `after`: the journal's lines after it, where its cosignatures are; each is
    checked against the genesis roster's key for its seat. `sealed_by`: the later checkpoint,
    the coordinator's alone, that covers what follows it (said in the reason)."""
    if last is None or origin is None:
        return CosignCheck(required, False, "the journal has no checkpoint to be cosigned", None)
    size = last.checkpoint.size
    root = base64.b64encode(last.checkpoint.root).decode()
    text = note_text(last.note)
    try:
        roster = _genesis_roster(genesis)
    except Exception as e:  # a genesis whose roster does not read: nothing can verify
        return CosignCheck(required, False, f"the genesis roster cannot be read: {e}", size)
    good: dict[str, str] = {}  # seat -> person
    bad: list[str] = []
    for line in after:
        try:
            _, _, record = _entry.decode(line)
        except _entry.BadLine:
            continue  # the journal's own check names it
        if record.get("type") != COSIGNATURE_TYPE or record.get("size") != size \
                or record.get("root") != root:
            continue
        seat = record.get("seat")
        try:
            officer = _cosigner(roster, origin, seat, str(record.get("signature")), text)
        except (BadCosignature, ValueError) as e:
            bad.append(f"{seat}: {e}")
            continue
        if officer is None:
            bad.append(f"{seat}: not a seat of the genesis roster")
            continue
        good[seat] = officer.person
    seats = tuple(sorted(good))
    people = len(set(good.values()))
    who = f"cosigned by {', '.join(seats)}" if seats else "cosigned by nobody"
    where = f"the final checkpoint ({_entries(size)}) is {who}"
    if sealed_by is not None:
        where = (f"the last cosigned checkpoint ({_entries(size)}) is {who} (the "
                 f"{sealed_by.checkpoint.size - size} entries after it are covered by the "
                 "coordinator's checkpoint alone)")
    if bad:
        where += f"; {len(bad)} cosignature{' does' if len(bad) == 1 else 's do'} not verify (" + \
            "; ".join(bad[:3]) + (", ..." if len(bad) > 3 else "") + ")"
    if isinstance(required, int):
        holds = people >= required
        reason = f"{where}: {people} officer{'' if people == 1 else 's'}"
        if people != len(seats):
            reason += " (one person's seats count once)"
    else:
        missing = [r for r in required
                   if not any(roster.officers[s].role == r for s in seats)]
        holds = not missing
        reason = where + ("" if holds else f": no {', '.join(missing)} among them")
    return CosignCheck(required, holds, reason, size, seats, tuple(bad))


@dataclass(frozen=True)
class Report:
    """What verifying one journal found. `ok` only if nothing at all is wrong."""

    path: str
    entries: int  # entries that hold (all of them, when ok)
    checkpoints: int
    last_checkpoint_size: int | None
    last_checkpoint_seq: int | None
    ceremony: str | None  # the genesis record's ceremony id, if it has one
    origin: str | None
    key_names: tuple[str, ...]  # "<name>+<id>" of the trusted keys
    trust: str  # "given" (--key) or "genesis" (the key the genesis entry announces)
    problem: Problem | None
    torn: TornTail | None
    allow_unsigned: bool = False  # --allow-unsigned: a given key that signed nothing is accepted
    against: CheckpointCheck | None = None  # --checkpoint: the copy against a kept checkpoint
    cosigned: CosignCheck | None = None  # --cosigned-by: the final checkpoint's cosignatures

    @property
    def ok(self) -> bool:
        """Nothing wrong: every entry holds, and the checkpoint given (if any) holds too, and
        the final checkpoint is cosigned as asked (if asked)."""
        return (self.journal_ok and (self.against is None or self.against.holds)
                and (self.cosigned is None or self.cosigned.holds))

    @property
    def journal_ok(self) -> bool:
        """The journal alone holds (what `ok` is without a checkpoint)."""
        return self.problem is None and self.torn is None

    @property
    def unsigned(self) -> int:
        """Entries after the last checkpoint's entry (its own, or the one given if it holds and
        covers more): linked, but not yet under a signature."""
        # a checkpoint's own entry is its signature: a journal that ends with one is all covered
        covered = 0 if self.last_checkpoint_seq is None else self.last_checkpoint_seq + 1
        if self.against is not None and self.against.holds:
            covered = max(covered, min(self.against.checkpoint.size, self.entries))
        return self.entries - covered

    def summary(self) -> str:
        if self.problem is not None:
            p = self.problem
            if p.kind in _WHOLE_JOURNAL:
                return f"{self.path}: does not verify: {p.reason}"
            return f"{self.path}: entry {p.seq} (line {p.line}) does not hold: {p.reason}"
        entries = f"{self.entries} {'entry' if self.entries == 1 else 'entries'}"
        checkpoints = f"{self.checkpoints} checkpoint{'' if self.checkpoints == 1 else 's'}"
        parts = [entries, checkpoints]
        if self.last_checkpoint_size is not None:
            parts.append(f"last checkpoint covers {self.last_checkpoint_size}")
        elif self.against is not None and self.against.holds and self.against.checkpoint.size:
            parts.append("no checkpoint of its own (the checkpoint given covers "
                         f"{self.against.checkpoint.size})")
        elif self.trust == "given":  # only with allow_unsigned, or it would not be ok
            parts.append("UNSIGNED: no checkpoint by the given key, accepted only because of "
                         "--allow-unsigned")
        else:
            parts.append("no checkpoint signed yet")
        uncovered = self.unsigned
        parts.append(f"{uncovered} {'entry' if uncovered == 1 else 'entries'} covered by no "
                     "checkpoint")
        if self.ceremony:
            parts.append(f"ceremony {self.ceremony}")
        keys = "key " + ", ".join(self.key_names)
        if self.trust == "genesis":
            keys += " (as announced by the genesis entry; pass --key to check who signed)"
        parts.append(keys)
        return f"{self.path}: ok: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "last_checkpoint_size": self.last_checkpoint_size,
            "unsigned_entries": self.unsigned,
            "ceremony": self.ceremony,
            "origin": self.origin,
            "keys": list(self.key_names),
            "trust": self.trust,
            "problem": None if self.problem is None else self.problem.to_dict(),
            "torn": None if self.torn is None else self.torn.to_dict(),
            "allow_unsigned": self.allow_unsigned,
        }
        if self.against is not None:
            out["checkpoint"] = self.against.to_dict()
        if self.cosigned is not None:
            out["cosigned"] = self.cosigned.to_dict()
        return out


def _ceremony_id(genesis: dict[str, Any] | None) -> str | None:
    value = (genesis or {}).get("ceremony")
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


class _GivenKeyChain(Chain):
    """The chain's rules, and with trusted keys given: the genesis entry must announce one of
    them. A journal written under another key is someone else's, whatever it holds."""

    def _genesis(self, record: dict[str, Any]) -> None:
        super()._genesis(record)
        announced = self.announced
        if self.trust != "given" or announced is None:
            return
        if announced.text() not in {v.text() for v in self.verifiers}:
            given = ", ".join(v.label() for v in self.verifiers)
            raise Broken(0, "genesis", f"the genesis entry announces key {announced.label()}, "
                         f"not a given key ({given}): this journal was begun under another key")


class _RecordingChain(_GivenKeyChain):
    """The same rules, keeping every checkpoint that held: comparing the copy with a checkpoint
    kept apart from it bounds a fork by them. And one more rule: every `cosignature` record
    verifies (below)."""

    special_types = (CHECKPOINT_TYPE, COSIGNATURE_TYPE)

    def __init__(self, trusted: list[Verifier] | None) -> None:
        super().__init__(trusted)
        self.held: list[SignedCheckpoint] = []
        self._roster: Roster | None = None

    def _checkpoint(self, pos: int, record: dict[str, Any]) -> None:
        super()._checkpoint(pos, record)
        assert self.last_checkpoint is not None
        self.held.append(self.last_checkpoint)

    def _special(self, pos: int, record: dict[str, Any]) -> None:
        """A `cosignature` record holds as the coordinator wrote it only once it verified
        (`judge_cosign`): of a checkpoint of this journal before it (its size and root), by a
        seat of the genesis roster, its signature line verifying against that seat's key under
        `<origin>/<seat>` over that checkpoint's text. Anything else was put there by someone
        else: a cosignature over another checkpoint body, of another history, by no seat."""
        if record.get("type") != COSIGNATURE_TYPE:
            return
        seat, size, root = record.get("seat"), record.get("size"), record.get("root")
        line = record.get("signature")
        if not (isinstance(seat, str) and type(size) is int and isinstance(root, str)
                and isinstance(line, str)):
            raise Broken(pos, "cosignature", "a cosignature record needs a seat, a size, a root "
                         "and a signature")
        cp = next((h for h in reversed(self.held) if h.checkpoint.size == size), None)
        if cp is None:
            raise Broken(pos, "cosignature", f"a cosignature by {seat} of a checkpoint of size "
                         f"{size}, which no checkpoint before it in this journal has")
        if base64.b64encode(cp.checkpoint.root).decode() != root:
            raise Broken(pos, "cosignature", f"a cosignature by {seat} of a checkpoint of size "
                         f"{size} with another root than the journal's (entry {cp.seq}): a "
                         "cosignature of another history")
        if self._roster is None:
            try:
                self._roster = _genesis_roster(self.genesis)
            except Exception as e:  # a roster that does not read: nothing can be checked
                raise Broken(pos, "cosignature", f"a cosignature by {seat}, and the genesis "
                             f"roster to check it against cannot be read: {e}") from None
        officer = None
        if self.origin is not None:
            try:
                officer = _cosigner(self._roster, self.origin, seat, line, note_text(cp.note))
            except (BadCosignature, ValueError) as e:
                raise Broken(pos, "cosignature", f"the cosignature by {seat} of the checkpoint "
                             f"at entry {cp.seq} does not verify: {e}") from None
        if officer is None:
            raise Broken(pos, "cosignature", f"a cosignature by {seat}, which is not a seat of "
                         "the genesis roster")


def _labels(labels: tuple[str, ...] | list[str]) -> str:
    return ", ".join(labels) or "nobody"


def compare_with_checkpoint(
    name: str,
    note: str,
    cp: Checkpoint,
    lines: list[bytes],
    verifiers: list[Verifier],
    origin: str | None,
    held: list[SignedCheckpoint],
) -> CheckpointCheck:
    """The copy's complete `lines` against the checkpoint `cp` that `note` states.

    `verifiers` are the trusted keys (none if there is nothing to trust: the outcome is then
    "untrusted"); `origin` the journal's, if its genesis held; `held` the copy's own checkpoints
    that held, in order. The Merkle root is taken over the lines as they are, whatever the
    chain's rules made of them: it is the signed root that says what the entries were.
    """
    size, entries = cp.size, len(lines)

    def check(outcome: str, reason: str, **more: Any) -> CheckpointCheck:
        return CheckpointCheck(name, outcome, reason, cp, entries, **more)

    if not verifiers:
        return check("untrusted", "there is no key to check its signature with: the journal's "
                     "genesis entry does not hold and no --key was given")
    try:
        opened = open_note(note, verifiers)
    except BadSignature as e:
        return check("untrusted", f"its signature by {e.key} does not verify: the note or "
                     "its signature was altered after signing")
    except NoTrustedSignature as e:
        trusted = _labels([v.label() for v in verifiers])
        return check("untrusted", f"it is not signed by a trusted key (signed by "
                     f"{_labels(e.unknown)}; trusted: {trusted})", ignored=e.unknown)
    signed = {"signed_by": opened.signed_by, "ignored": opened.unknown}
    if origin is not None and cp.origin != origin:
        return check("origin", f"it is a checkpoint of {cp.origin!r}, not of this journal "
                     f"({origin!r})", **signed)
    if entries < size:
        stop = "it has no entries" if entries == 0 else f"it stops at entry {entries - 1}"
        return check("short", f"the copy is SHORT: {stop}; the checkpoint covers "
                     f"{_entries(size)} (0 to {size - 1}): {_span(entries, size - 1)} missing",
                     **signed)
    tree = CompactRange()
    tree.extend(lines[:size])
    if tree.root() == cp.root:
        if size == 0:
            covered = "it covers no entries"
        else:
            covered = f"the copy's entries 0 to {size - 1} are the {_entries(size)} it signs"
        beyond = entries - size
        rest = "every entry of the copy is covered by it" if beyond == 0 else \
            f"{_span(size, entries - 1)} ({_entries(beyond)}) not covered by it"
        return check("holds", f"{covered} (signed by {_labels(opened.signed_by)}); {rest}",
                     **signed)
    if size == 0:
        return check("forked", "its root for no entries is not the empty tree's root", **signed)
    why = [f"the copy has FORKED: the root of its entries 0 to {size - 1} is not the "
           "checkpoint's"]
    same = next((h for h in held if h.checkpoint.size == size), None)
    later = next((h for h in held if h.checkpoint.size > size), None)
    if same is not None:
        why.append(f"its own checkpoint at entry {same.seq} covers the same "
                   f"{_entries(size)} with another root, signed by "
                   f"{_labels(same.signed_by)}: the key signed two histories")
    elif later is not None:
        why.append(f"its own checkpoint at entry {later.seq} (covering "
                   f"{_entries(later.checkpoint.size)}), signed by "
                   f"{_labels(later.signed_by)}, commits to the other history")
    below = [h for h in held if h.checkpoint.size < size]
    lo, bound = 0, None
    if below:
        bound = below[-1]
        lo = bound.checkpoint.size
        where = f"at entry {lo}" if lo == size - 1 else f"at one of entries {lo} to {size - 1}"
        why.append(f"its own checkpoint at entry {bound.seq}, signed by "
                   f"{_labels(bound.signed_by)}, covers entries 0 to {lo - 1}: if that key "
                   f"signed no other history of those, it departs {where}")
    else:
        why.append(f"no checkpoint of its own before entry {size} narrows down where it "
                   f"departs: one of entries 0 to {size - 1}")
    return check("forked", "; ".join(why), departs=(lo, size - 1), bounded_by=bound,
                 same_size=same, later=later, **signed)


def verify_journal(
    path: str | os.PathLike[str],
    trusted_keys: list[str] | None = None,
    *,
    allow_unsigned: bool = False,
    checkpoint: str | None = None,
    checkpoint_name: str = "checkpoint",
    cosigned_by: int | tuple[str, ...] | None = None,
) -> Report:
    """Check every line, link and checkpoint of the journal at `path`.

    `trusted_keys` are verifier keys (`name+hexid+base64`); every checkpoint must carry a valid
    signature by one of them, the genesis entry must announce one of them, and there must be at
    least one checkpoint, unless `allow_unsigned` (the report then says the journal is unsigned).
    None trusts the key the genesis entry announces, which shows the journal is intact and
    self-consistent but not who wrote it; the report says which it was.
    `checkpoint` is a checkpoint note kept apart from the journal (`read_checkpoint_file`),
    named `checkpoint_name` in messages: it must be signed by a trusted key (the given ones, or
    the genesis's), and the journal's first `size` entries must have its root
    (`Report.against`; `ok` then needs both). A checkpoint that holds also counts as a
    checkpoint by the given key for the rule above.
    `cosigned_by` (`parse_cosigned_by`) asks that the final checkpoint be cosigned by that many
    officers, or by an officer of each role named (`Report.cosigned`; `ok` then needs it).
    Raises OSError if the file cannot be read and ValueError for a malformed key, or
    BadCheckpointFile (a ValueError) for a `checkpoint` that is not a checkpoint note.
    """
    trusted = None if trusted_keys is None else [Verifier.parse(k) for k in trusted_keys]
    cp = None if checkpoint is None else parse_checkpoint_note(checkpoint, checkpoint_name)
    data = Path(path).read_bytes()
    complete, torn = _lines.split(data)
    chain = _RecordingChain(trusted)
    problem: Problem | None = None
    try:
        chain.feed_lines(complete)
    except Broken as e:
        problem = Problem(e.seq, e.line, e.kind, e.reason)
    if problem is None and torn is not None:
        problem = Problem(
            chain.size,
            torn.line,
            "torn",
            f"torn last line ({torn.reason}, {torn.cut_bytes} bytes): "
            "the writer stopped mid-append or the line was damaged",
        )
    if problem is None and chain.size == 0:
        problem = Problem(0, 1, "empty", "the journal has no entries")
    against = None
    if cp is not None and checkpoint is not None:
        against = compare_with_checkpoint(checkpoint_name, checkpoint, cp, complete,
                                          chain.verifiers, chain.origin, chain.held)
    signed_apart = against is not None and against.holds and against.checkpoint.size > 0
    if (problem is None and chain.trust == "given" and chain.checkpoints == 0
            and not allow_unsigned and not signed_apart):
        n = chain.size
        problem = Problem(
            n, n + 1, "unsigned",
            f"no checkpoint signed by the given key: none of its {n} entries is covered by a "
            "signature (a journal whose checkpoints were removed and links recomputed looks "
            "just like this); pass --allow-unsigned to accept a journal not yet signed",
        )
    keys = chain.verifiers if chain.verifiers else ([] if trusted is None else trusted)
    last = chain.last_checkpoint
    cosigned = None
    if cosigned_by is not None:
        final = cosigned_checkpoint(chain.held, complete)
        after = complete[final.seq + 1: chain.size] if final is not None else []
        cosigned = check_cosigned(cosigned_by, chain.genesis, chain.origin, final, after,
                                  sealed_by=last if last is not final else None)
    return Report(
        path=str(path),
        entries=chain.size,
        checkpoints=chain.checkpoints,
        last_checkpoint_size=None if last is None else last.checkpoint.size,
        last_checkpoint_seq=None if last is None else last.seq,
        ceremony=_ceremony_id(chain.genesis),
        origin=chain.origin,
        key_names=tuple(v.label() for v in keys),
        trust=chain.trust,
        problem=problem,
        torn=torn,
        allow_unsigned=allow_unsigned,
        against=against,
        cosigned=cosigned,
    )


class JournalChanged(Exception):
    """The journal file changed between the two readings of `read_verified`."""


@dataclass(frozen=True)
class Verified:
    """A journal as verified: the report, and (when it verifies) every complete entry decoded
    from the very bytes that were verified, as (seq, record)."""

    report: Report
    records: list[tuple[int, dict[str, Any]]]


def read_verified(path: str | os.PathLike[str], keys: list[str] | None) -> Verified:
    """Verify the journal at `path` (`verify_journal`) and read its records from the same bytes:
    a file written to in between raises JournalChanged, so what is read is what was verified.
    OSError for a file that cannot be read, ValueError for a malformed key."""
    data = Path(path).read_bytes()
    report = verify_journal(path, keys)
    if Path(path).read_bytes() != data:
        raise JournalChanged(f"{os.fsdecode(path)} changed while it was being verified")
    records: list[tuple[int, dict[str, Any]]] = []
    if report.ok:
        lines, _torn = _lines.split(data)
        for line in lines:
            seq, _prev, record = _entry.decode(line)  # verify read each: none is a BadLine
            records.append((seq, record))
    return Verified(report, records)
