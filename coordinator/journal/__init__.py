"""The ceremony journal: append-only JSON lines, hash-linked, with signed C2SP checkpoints.

The journal is the source of truth: every event is appended and fsync'd before anyone is told it
happened, and `keyrite verify` checks a journal file alone. See docs/journal.md for the formats.

Public names:

- `Journal.create(path, key, name, origin, genesis_record) -> Journal`,
  `Journal.open(path, key=None) -> Journal`; then `append(record) -> Entry`,
  `append_many(records) -> list[Entry]` (group commit), `recover()` (after a failed write),
  `checkpoint(at) -> str` (the signed note), `entries() -> Iterator[Entry]`, `size`,
  `last_checkpoint` (`SignedCheckpoint | None`), `torn` (`TornTail | None`: what open cut),
  `genesis`, `verifier`, `origin`, `close()`.
- `Entry(seq, prev, record, line_hash)`.
- `verify_journal(path, trusted_keys=None) -> Report` (`ok`, `problem`, `summary()`,
  `to_dict()`), `Problem(seq, line, kind, reason)`.
- `JournalError`, `JournalCorrupt` (`.broken`), `JournalBusy`, `JournalWriteFailed` (an OSError
  too: `errno`, `op`).
- Keys: `generate_key()`, `save_private_key(path, key, passphrase=None)`,
  `load_private_key(path, passphrase=None)`, `verifier_key(name, key) -> str`, `KeyFileError`.
- Record conventions: `GENESIS_FIELD` ("journal": origin, vkey, version) and `CHECKPOINT_TYPE`.
"""

from coordinator.journal.chain import GENESIS_FIELD, SignedCheckpoint
from coordinator.journal.checkpoint import Checkpoint
from coordinator.journal.entry import CHECKPOINT_TYPE, Entry
from coordinator.journal.file import (
    Journal,
    JournalBusy,
    JournalCorrupt,
    JournalError,
    JournalWriteFailed,
)
from coordinator.journal.keys import (
    KeyFileError,
    generate_key,
    load_private_key,
    save_private_key,
    verifier_key,
)
from coordinator.journal.lines import TornTail
from coordinator.journal.verify import Problem, Report, verify_journal

__all__ = [
    "CHECKPOINT_TYPE",
    "GENESIS_FIELD",
    "Checkpoint",
    "Entry",
    "Journal",
    "JournalBusy",
    "JournalCorrupt",
    "JournalError",
    "JournalWriteFailed",
    "KeyFileError",
    "Problem",
    "Report",
    "SignedCheckpoint",
    "TornTail",
    "generate_key",
    "load_private_key",
    "save_private_key",
    "verifier_key",
    "verify_journal",
]
