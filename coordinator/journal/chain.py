"""The rules a journal must hold, applied line by line: the one place both `Journal.open` and
`verify_journal` take them from, so the writer never accepts what the verifier would refuse.

`Chain.feed(line, following)` checks one complete line and either folds it in or raises `Broken`
naming the first entry that does not hold. It never reads a file: the caller hands it lines, and
the next line too (`following`), because a broken hash link alone cannot say which side changed:

- entry i's `prev` differs from SHA-256(line i-1). If line i+1 still links to line i, line i is as
  it was written, so it is entry i-1 that was altered; otherwise entry i itself was (its `prev`
  field). With no line i+1 the earlier entry is named, as everything before it is proven.
- a `seq` out of place: a gap is a deletion, an earlier number an insertion, a neighbour holding
  the expected number a swap.

The attribution assumes one change; whatever it names, every entry before the named one holds.

Why a hash chain *and* checkpoints: the chain finds accidental damage anywhere before the last
entry with no key at all; a signed checkpoint also stops someone who rewrites the file and
recomputes every link, since they cannot sign the new root.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from coordinator.journal import entry as _entry
from coordinator.journal.checkpoint import BadCheckpoint, Checkpoint
from coordinator.journal.entry import CHECKPOINT_TYPE, GENESIS_PREV, BadLine, Entry
from coordinator.journal.merkle import CompactRange
from coordinator.journal.note import (
    BadSignature,
    MalformedNote,
    NoTrustedSignature,
    Verifier,
    open_note,
)

_HEXDIGEST = type(hashlib.sha256()).hexdigest  # unbound, for map
_new_entry = tuple.__new__  # what a NamedTuple's generated __new__ calls
# One line hashed alone, between two fsyncs (the writer's `extend`): CPython's own SHA-256 costs
# about half of OpenSSL's there (less code to bring back into the caches after the sleep); in
# a batch (`feed_lines`, by `map`) OpenSSL's is the faster. The same digest either way.
try:
    from _sha256 import sha256 as _sha256_alone  # CPython 3.11
except ImportError:  # pragma: no cover - CPython 3.12+, or another Python
    try:
        from _sha2 import sha256 as _sha256_alone  # type: ignore[no-redef]
    except ImportError:
        _sha256_alone = hashlib.sha256

#: The genesis record's field that carries the journal's own parameters:
#: `{"origin": <checkpoint origin>, "vkey": <coordinator verifier key>, "version": 1}`.
GENESIS_FIELD = "journal"
FORMAT_VERSION = 1


class Broken(Exception):
    """The first entry that does not hold: its seq (0-based position), a kind, and why.

    Kinds: json, format, seq, link, genesis, note, signature, untrusted, checkpoint, root;
    verify adds cosignature (`verify._RecordingChain`).
    The line number is seq + 1: entry n is always meant to be on line n + 1.
    """

    def __init__(self, seq: int, kind: str, reason: str) -> None:
        super().__init__(f"entry {seq} (line {seq + 1}): {reason}")
        self.seq = seq
        self.kind = kind
        self.reason = reason

    @property
    def line(self) -> int:
        return self.seq + 1


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as found in the journal: the entry that holds it and what it says."""

    seq: int
    checkpoint: Checkpoint
    note: str
    signed_by: tuple[str, ...]


def _peek(line: bytes | None) -> tuple[int, str] | None:
    """`(seq, prev)` of a lookahead line, or None if it does not decode."""
    if line is None:
        return None
    try:
        seq, prev, _ = _entry.decode(line)
    except BadLine:
        return None
    return seq, prev


class Chain:
    """What the lines so far add up to: size, last line hash, Merkle state, keys, checkpoints.

    `trusted` are the verifier keys checkpoints must be signed by; None means "the key the
    genesis entry announces" (`trust == "genesis"`), which proves consistency, not authorship.
    Errors are sticky: after `Broken`, every later `feed` raises it again.

    `special_types`: the record types (besides the genesis) that a rule reads, and that the
    common path of `feed_lines` therefore hands to `feed`; a subclass adds its own and checks
    them in `_special`.
    """

    special_types: tuple[str, ...] = (CHECKPOINT_TYPE,)

    def __init__(self, trusted: list[Verifier] | None = None) -> None:
        self.size = 0
        self.last_hash = GENESIS_PREV
        self.tree = CompactRange()
        self.trust = "genesis" if trusted is None else "given"
        self.verifiers: list[Verifier] = list(trusted or [])
        self.genesis: dict[str, Any] | None = None
        self.origin: str | None = None
        self.announced: Verifier | None = None  # the genesis entry's key
        self.checkpoints = 0
        self.last_checkpoint: SignedCheckpoint | None = None
        self.previous_checkpoint: SignedCheckpoint | None = None  # the one before the last
        self.broken: Broken | None = None

    def feed(self, line: bytes, following: bytes | None = None) -> Entry:
        """Check one complete line (no newline) at position `size` and fold it in."""
        if self.broken is not None:
            raise self.broken
        try:
            return self._feed(line, following)
        except Broken as e:
            self.broken = e
            raise

    def _feed(self, line: bytes, following: bytes | None) -> Entry:
        pos = self.size
        try:
            seq, prev, record = _entry.decode(line)
        except BadLine as e:
            raise Broken(pos, e.kind, e.reason) from None
        line_hash = _entry.line_hash(line)
        if seq != pos:
            raise self._seq_broken(pos, seq, following)
        if prev != self.last_hash:
            raise self._link_broken(pos, line_hash, following, record)
        if pos == 0:
            self._genesis(record)
        elif record.get("type") == CHECKPOINT_TYPE:
            self._checkpoint(pos, record)
        elif record.get("type") in self.special_types:
            self._special(pos, record)
        self.last_hash = line_hash
        self.tree.append(line)
        self.size = pos + 1
        return Entry(seq, prev, record, line_hash)

    def feed_lines(self, lines: list[bytes]) -> None:
        """`feed` every line in order, each with the next as its lookahead; raises `Broken`.

        The same rules as `feed`, with the common case (an ordinary entry that holds) inlined:
        verifying 100,000 entries must take well under a second. The line hashes (each the next
        entry's `prev`) are taken over the raw bytes in one pass, and the Merkle tree is
        extended a batch at a time (before each line `feed` handles, and at the end). Each line
        is parsed once, for what the rules need of it: that it is an entry (valid UTF-8 JSON,
        exactly `prev`, `record`, `seq`), its `seq` and `prev`, and its record's type, which
        sends the genesis, checkpoints and `special_types` (and any line that does not hold)
        to `feed`, which checks them in full and names the problem.
        """
        if self.broken is not None:
            raise self.broken
        scan = _entry.DECODER.scan_once  # raw_decode without its Python frame
        special = self.special_types
        hexes = list(map(_HEXDIGEST, map(hashlib.sha256, lines)))
        last = len(lines) - 1
        pos, last_hash = self.size, self.last_hash
        start = 0  # the first line not yet in the Merkle tree
        for i, line in enumerate(lines):
            try:
                text = line.decode("utf-8")
                obj, end = scan(text, 0)
                # obj["prev"] raises TypeError unless obj is a dict (scan_once makes nothing
                # else that takes a string index), KeyError if it lacks the key
                if (
                    end == len(text)
                    and obj["prev"] == last_hash
                    and obj["seq"] == pos
                    and len(obj) == 3
                    and type(obj["seq"]) is int
                    and type(record := obj["record"]) is dict
                    and pos > 0
                    and record.get("type") not in special
                ):
                    last_hash = hexes[i]
                    pos += 1
                    continue
            except (ValueError, StopIteration, RecursionError, KeyError, TypeError):
                pass
            self.tree.extend(lines[start:i])
            self.size, self.last_hash = pos, last_hash
            self.feed(line, lines[i + 1] if i < last else None)
            pos, last_hash = self.size, self.last_hash
            start = i + 1
        self.tree.extend(lines[start:])
        self.size, self.last_hash = pos, last_hash

    def extend(self, line: bytes, record: dict[str, Any]) -> Entry:
        """Fold in a line the writer just built from `record` at position `size`.

        Skips re-parsing what was serialised a moment ago (append is on the ceremony's critical
        path), but applies every rule that is not a matter of syntax: a checkpoint record is
        still opened and checked against the tree, so the journal never signs and writes a
        checkpoint its own verifier would refuse.
        """
        if self.broken is not None:
            raise self.broken
        pos = self.size
        if pos == 0 or record.get("type") == CHECKPOINT_TYPE:
            return self.feed(line)
        line_hash = _sha256_alone(line).hexdigest()  # _entry.line_hash
        prev, self.last_hash = self.last_hash, line_hash
        self.tree.append(line)
        self.size = pos + 1
        return _new_entry(Entry, (pos, prev, record, line_hash))  # Entry(...) without a frame

    def _seq_broken(self, pos: int, seq: int, following: bytes | None) -> Broken:
        nxt = _peek(following)
        found = f"found seq {seq} where seq {pos} belongs"
        if nxt is not None and nxt[0] == pos and seq == pos + 1:
            return Broken(pos, "seq", f"{found}, and seq {pos} after it: entries swapped")
        if nxt is not None and nxt[0] == pos + 1:
            return Broken(pos, "seq", f"{found}, and seq {pos + 1} after it: seq altered")
        if seq > pos:
            gone = f"entry {pos}" if seq == pos + 1 else f"entries {pos} to {seq - 1}"
            return Broken(pos, "seq", f"{found}: {gone} deleted (or moved)")
        return Broken(pos, "seq", f"{found}: an entry was inserted (a copy of seq {seq}?)")

    def _link_broken(self, pos: int, line_hash: str, following: bytes | None,
                     record: dict[str, Any]) -> Broken:
        if pos == 0:
            return Broken(0, "link", "the genesis entry's prev is not 64 zeros")
        nxt = _peek(following)
        if nxt is not None and nxt[1] != line_hash:
            return Broken(
                pos,
                "link",
                f"altered: its prev does not match entry {pos - 1}, "
                f"and entry {pos + 1} does not link to it",
            )
        why = f"altered: entry {pos} records a different SHA-256 for it"
        if nxt is None:  # nothing after entry pos to tell which of the two changed...
            signed = self._signs_tree(pos, record)
            if signed is True:  # ...but entry pos is a checkpoint that signs entry pos - 1
                return Broken(pos, "link", f"altered: its prev does not match entry {pos - 1}, "
                              f"which the checkpoint it holds signs as it is")
            if signed is False:
                why += f" (the checkpoint at entry {pos} signs another root over it)"
            else:
                why += f" (or entry {pos}'s prev was altered)"
        return Broken(pos - 1, "link", why)

    def _signs_tree(self, pos: int, record: dict[str, Any]) -> bool | None:
        """Whether `record`, at `pos`, is a checkpoint that a trusted key signed over the tree of
        the entries before it as they are (True), over another tree (False), or neither: not a
        checkpoint, or not one that opens (None)."""
        note = record.get("note")
        if record.get("type") != CHECKPOINT_TYPE or not isinstance(note, str):
            return None
        try:
            cp = Checkpoint.parse(open_note(note, self.verifiers).text)
        except (MalformedNote, BadCheckpoint, BadSignature, NoTrustedSignature):
            return None
        if cp.origin != self.origin or cp.size != pos:
            return None
        return cp.root == self.tree.root()

    def _genesis(self, record: dict[str, Any]) -> None:
        params = record.get(GENESIS_FIELD)
        if not isinstance(params, dict):
            raise Broken(0, "genesis", f"genesis record has no {GENESIS_FIELD!r} object")
        origin, vkey = params.get("origin"), params.get("vkey")
        if params.get("version") != FORMAT_VERSION:
            raise Broken(0, "genesis", f"journal version {params.get('version')!r} is not 1")
        if not isinstance(origin, str) or not origin or "\n" in origin:
            raise Broken(0, "genesis", "genesis has no valid checkpoint origin")
        try:
            announced = Verifier.parse(vkey) if isinstance(vkey, str) else None
        except ValueError as e:
            raise Broken(0, "genesis", str(e)) from None
        if announced is None:
            raise Broken(0, "genesis", "genesis has no verifier key (vkey)")
        self.genesis, self.origin, self.announced = record, origin, announced
        if self.trust == "genesis":
            self.verifiers = [announced]

    def _special(self, pos: int, record: dict[str, Any]) -> None:
        """A record of one of `special_types` (other than a checkpoint); raise Broken if it does
        not hold. The journal's own rules have none."""

    def _checkpoint(self, pos: int, record: dict[str, Any]) -> None:
        note_text = record.get("note")
        if not isinstance(note_text, str):
            raise Broken(pos, "note", "checkpoint record has no note text")
        try:
            opened = open_note(note_text, self.verifiers)
            cp = Checkpoint.parse(opened.text)
        except (MalformedNote, BadCheckpoint) as e:
            raise Broken(pos, "note", f"checkpoint note is malformed: {e}") from None
        except BadSignature as e:
            raise Broken(pos, "signature", f"checkpoint {e}") from None
        except NoTrustedSignature as e:
            raise Broken(pos, "untrusted", f"checkpoint is {e}") from None
        if cp.origin != self.origin:
            raise Broken(pos, "checkpoint", f"checkpoint origin {cp.origin!r} is not the journal's")
        if cp.size != pos:
            why = f"checkpoint covers {cp.size} entries, not {pos}"
            earlier = self.last_checkpoint
            if earlier is not None and cp.size < earlier.checkpoint.size:
                why += (f": fewer than the checkpoint at entry {earlier.seq} "
                        f"({earlier.checkpoint.size}): the log shrank")
            elif earlier is not None and cp.size == earlier.checkpoint.size:
                same = "the same root" if cp.root == earlier.checkpoint.root else "another root"
                why += (f": the size of the checkpoint at entry {earlier.seq}, with {same}"
                        + (": two histories of one size (a fork)" if cp.root !=
                           earlier.checkpoint.root else ""))
            raise Broken(pos, "checkpoint", why)
        if cp.root != self.tree.root():
            raise Broken(
                pos,
                "root",
                f"checkpoint root does not match entries 0 to {pos - 1}: an earlier entry "
                "was rewritten and its links recomputed [A7]",
            )
        self.checkpoints += 1
        self.previous_checkpoint = self.last_checkpoint
        self.last_checkpoint = SignedCheckpoint(pos, cp, note_text, opened.signed_by)
