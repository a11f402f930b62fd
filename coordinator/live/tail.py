"""One line of text per journal record, for the consoles' journal panel (pure).

The panel is a reading aid; the journal itself is the record. Secrets never reach a record, so
nothing here can show one.
"""

from __future__ import annotations

import calendar
import collections
import contextlib
import time
from collections.abc import Iterable
from typing import Any

from ceremony.view import JournalLine
from coordinator.transcript import describe_drive, describe_event


def describe(record: dict[str, Any]) -> str:
    t = record.get("type")
    if t == "event":
        return _event(record)
    if t == "refused":
        # `ceremony.records.Refused`; a runner's refusal written before it had one shape has
        # no console or command, only the refused event
        event = record.get("event")
        event = event if isinstance(event, dict) else {}
        who = record.get("console") or event.get("seat") or "?"
        what = record.get("command") or event.get("event") or "command"
        if what == "cosign":  # the reason says who refused what (`translate.judge_cosign`)
            return f"{who} {record.get('reason')}"
        return f"REFUSED {who} {what}: {record.get('reason')}"
    if t == "checkpoint":
        return "checkpoint signed"
    if t == "cosignature":
        return f"{record.get('seat')} cosigned checkpoint {record.get('size')}"
    if t == "genesis":
        return f"ceremony {record.get('ceremony')} opened"
    if t in ("pause", "resume"):
        return f"{record.get('seat')} {'paused' if t == 'pause' else 'resumed'} the ceremony"
    if t == "expired":
        return (f"{record.get('seat')}'s approval of step {record.get('step')} "
                f"({record.get('quorum')}) expired")
    if t == "presence":
        state = "reconnected" if record.get("connected") else "DISCONNECTED"
        return f"{', '.join(record.get('seats', []))} {state}"
    if t == "secret":
        return f"{record.get('seat')} entered the {record.get('name')} password"
    if t == "share":
        return f"{record.get('seat')} brought their KEK share"
    if t == "drive":
        return describe_drive(record)
    if t == "coordinator":
        return f"coordinator {record.get('what')}"
    if t == "document":
        return f"{record.get('what')} {record.get('file')} written, SHA-256 {record.get('sha256')}"
    return str(t)


def _event(record: dict[str, Any]) -> str:
    """The transcript's words for an event, with the step it happened at (a remark's or a
    deviation's, and the decision on one, are the panel's own words)."""
    step = record.get("step")
    event = record["event"]
    note = _note(event) if isinstance(event, dict) else None
    if note is not None:
        return f"step {step}: {note}"
    return f"step {step}: " + describe_event(event).replace("{step}", str(step))


def _note(e: dict[str, Any]) -> str | None:
    """A remark or a deviation raised, or the administrator's decision on a deviation; None for
    any other event."""
    kind = e.get("event")
    if kind == "Remark":
        what = "a DEVIATION" if e.get("kind") == "deviation" else "a remark"
        return f"{e.get('seat')} raises {what}: {e.get('text')}"
    if kind == "DecideDeviation":
        verb = {"accept": "accepts", "reject": "rejects"}.get(
            str(e.get("decision")), f"decides {e.get('decision')} on")
        return f"{e.get('seat')} {verb} deviation {e.get('deviation')}: {e.get('reason')}"
    return None


def tail(entries: Iterable[tuple[int, dict[str, Any]]], n: int) -> list[JournalLine]:
    """The panel's last `n` lines from a journal's entries (seq, record), for a coordinator
    that restarts: what the consoles showed before is shown again."""
    return [JournalLine(seq, _seconds(rec.get("at")) or 0.0, describe(rec))
            for seq, rec in collections.deque(entries, maxlen=n)]


def _seconds(at: Any) -> float | None:
    """A record's time: Unix seconds, or the genesis entry's ISO 8601 text."""
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        return float(at)
    if isinstance(at, str):
        with contextlib.suppress(ValueError):
            return float(calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ")))
    return None
