"""Splitting a journal file's bytes into complete lines and a torn tail. Pure.

A crash during `append` can leave the last line cut short: no newline, or (on file systems that
extend the size before the data lands) a line of zeros or garbage. Such a tail was never
acknowledged to anyone (append returns only after fsync), so dropping it loses nothing that was
promised. Everything else is a complete line, and a complete line that does not hold is
corruption, never cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.journal import entry as _entry


@dataclass(frozen=True)
class TornTail:
    """What a torn last line was: where it started and how much of it there was."""

    line: int  # 1-based line number of the torn line
    offset: int  # byte offset where it starts (the file is cut back to this size)
    cut_bytes: int  # bytes removed, its newline included if it had one
    partial_chars: int  # length of the partial text, in characters, newline excluded
    reason: str  # "no trailing newline" or "not JSON"

    def to_dict(self) -> dict[str, object]:
        return {
            "line": self.line,
            "offset": self.offset,
            "cut_bytes": self.cut_bytes,
            "partial_chars": self.partial_chars,
            "reason": self.reason,
        }


def split(data: bytes) -> tuple[list[bytes], TornTail | None]:
    """Complete lines (without newlines) and the torn tail, if the last line is torn."""
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when data ends in a newline (or is empty)
    if tail:
        reason = "no trailing newline"
        cut = tail
    elif lines and _unreadable(lines[-1]):
        reason = "not JSON"
        cut = lines.pop() + b"\n"
    else:
        return lines, None
    offset = len(data) - len(cut)
    text = cut.rstrip(b"\n").decode("utf-8", errors="replace")
    return lines, TornTail(len(lines) + 1, offset, len(cut), len(text), reason)


def _unreadable(line: bytes) -> bool:
    try:
        _entry.decode(line)
    except _entry.BadLine as e:
        return e.kind == "json"
    return False
