"""One line of text per journal record, for the consoles' journal panel (pure).

The panel is a reading aid; the journal itself is the record. Secrets never reach a record, so
nothing here can show one.
"""

from __future__ import annotations

from typing import Any

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
        return f"REFUSED {who} {what}: {record.get('reason')}"
    if t == "checkpoint":
        return "checkpoint signed"
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
    if t == "drive":
        return describe_drive(record)
    if t == "coordinator":
        return f"coordinator {record.get('what')}"
    return str(t)


def _event(record: dict[str, Any]) -> str:
    """The transcript's words for an event, with the step it happened at."""
    step = record.get("step")
    return f"step {step}: " + describe_event(record["event"]).replace("{step}", str(step))
