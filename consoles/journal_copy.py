"""The auditor's own copy of the journal, verified line by line as the ceremony writes it.

Each line fetched from the coordinator is checked (position, hash link, and every checkpoint's
signature by the coordinator key the auditor was given before the ceremony) before it is appended
to the copy and fsync'd; the copy therefore only ever holds a verified prefix of the journal. A
line that does not hold stops the copy for good and says which entry and why: the auditor then
has independent evidence, taken during the ceremony, of what the coordinator had written up to
that point. A copy left by an earlier run of the console is verified again from its first line.
"""

from __future__ import annotations

import os
from pathlib import Path

from coordinator.journal.chain import Broken, Chain
from coordinator.journal.entry import line_hash
from coordinator.journal.note import Verifier


class JournalCopy:
    def __init__(self, path: Path, coordinator_key: str) -> None:
        self.path = Path(path)
        self.verifier = Verifier.parse(coordinator_key)
        self.chain = Chain([self.verifier])
        self.problem: str | None = None
        self.hashes: list[str] = []  # each kept line's SHA-256: a page fetched again must match
        if self.path.exists():
            data = self.path.read_bytes()
            for line in data.splitlines():
                if not self._check(line):
                    break
            if data and not data.endswith(b"\n") and self.problem is None:
                self.problem = f"{self.path}: the last line is torn (the console died mid-write)"

    @property
    def size(self) -> int:
        return self.chain.size

    def _check(self, line: bytes) -> bool:
        try:
            entry = self.chain.feed(line)
        except Broken as e:
            self.problem = str(e)
            return False
        self.hashes.append(entry.line_hash)
        return True

    def add(self, start: int, lines: list[str]) -> int:
        """Verify and keep `lines`, the journal from entry `start`; return how many were kept.
        Lines the copy already holds must be the same bytes (a page fetched twice); a line that
        changed means the coordinator's journal was rewritten, and the copy stops."""
        if self.problem is not None:
            return 0
        kept: list[bytes] = []
        for i, text in enumerate(lines):
            line = text.encode()
            seq = start + i
            if seq < self.size:
                if line_hash(line) != self.hashes[seq]:
                    self.problem = (f"entry {seq} (line {seq + 1}) is not what the coordinator "
                                    "sent before: the journal was changed after it was copied")
                    return 0
                continue
            if not self._check(line):
                break
            kept.append(line)
        if kept:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, b"".join(x + b"\n" for x in kept))
                os.fsync(fd)
            finally:
                os.close(fd)
        return len(kept)

    def status(self) -> str:
        if self.problem is not None:
            return f"YOUR JOURNAL COPY STOPPED at {self.size} verified entries: {self.problem}"
        return (f"your journal copy: {self.size} entries verified, {self.chain.checkpoints} "
                f"checkpoints signed by {self.verifier.name} ({self.path.name})")
