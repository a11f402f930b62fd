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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.journal import lines as _lines
from coordinator.journal.chain import Broken, Chain
from coordinator.journal.lines import TornTail
from coordinator.journal.note import Verifier

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

    @property
    def ok(self) -> bool:
        return self.problem is None and self.torn is None

    @property
    def unsigned(self) -> int:
        """Entries after the last checkpoint: linked, but not yet under a signature."""
        covered = 0 if self.last_checkpoint_seq is None else self.last_checkpoint_seq
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
        return {
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


def verify_journal(
    path: str | os.PathLike[str],
    trusted_keys: list[str] | None = None,
    *,
    allow_unsigned: bool = False,
) -> Report:
    """Check every line, link and checkpoint of the journal at `path`.

    `trusted_keys` are verifier keys (`name+hexid+base64`); every checkpoint must carry a valid
    signature by one of them, the genesis entry must announce one of them, and there must be at
    least one checkpoint, unless `allow_unsigned` (the report then says the journal is unsigned).
    None trusts the key the genesis entry announces, which shows the journal is intact and
    self-consistent but not who wrote it; the report says which it was.
    Raises OSError if the file cannot be read and ValueError for a malformed key.
    """
    trusted = None if trusted_keys is None else [Verifier.parse(k) for k in trusted_keys]
    data = Path(path).read_bytes()
    complete, torn = _lines.split(data)
    chain = _GivenKeyChain(trusted)
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
    if (problem is None and chain.trust == "given" and chain.checkpoints == 0
            and not allow_unsigned):
        n = chain.size
        problem = Problem(
            n, n + 1, "unsigned",
            f"no checkpoint signed by the given key: none of its {n} entries is covered by a "
            "signature (a journal whose checkpoints were removed and links recomputed looks "
            "just like this); pass --allow-unsigned to accept a journal not yet signed",
        )
    keys = chain.verifiers if chain.verifiers else ([] if trusted is None else trusted)
    cp = chain.last_checkpoint
    return Report(
        path=str(path),
        entries=chain.size,
        checkpoints=chain.checkpoints,
        last_checkpoint_size=None if cp is None else cp.checkpoint.size,
        last_checkpoint_seq=None if cp is None else cp.seq,
        ceremony=_ceremony_id(chain.genesis),
        origin=chain.origin,
        key_names=tuple(v.label() for v in keys),
        trust=chain.trust,
        problem=problem,
        torn=torn,
        allow_unsigned=allow_unsigned,
    )
