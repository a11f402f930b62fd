"""The state as a fold over a journal's records: every accepted event again, in order.

The one reader that rebuilds a machine from a journal, for the rehearsal resuming and the live
coordinator restarting alike. Pure: it takes the records (seq, record) a caller read, and loads
nothing but the journal's own copy of the script, to check it still loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ceremony.errors import BadInput, Failure
from ceremony.machine.machine import Machine, Refused
from ceremony.records import Genesis, record_from_dict
from ceremony.script.load import load_script_text


def replay(records: Iterable[tuple[int, dict[str, Any]]], machine: Machine,
           script_sha256: str) -> None:
    """Feed `machine` every event the journal accepted, the room's (pauses, passwords typed,
    lapses, presence) included. A genesis for another version of the script is bad input; an
    event the machine refuses, or a record that does not read, stops the replay (never
    skipped).

    A journal whose genesis predates signed sign-ins (no `format`: `Genesis.signed_signin`)
    holds unsigned ones: while its events are replayed the machine takes them as it did then
    (`Machine.signed_signin` lowered), and once the replay is over it requires signatures again,
    so whatever is signed in after a resume is signed."""
    required = machine.signed_signin
    try:
        for seq, rec in records:
            try:
                record = record_from_dict(rec)
            except ValueError as e:
                raise Failure(f"journal entry {seq} does not replay: {e}") from e
            if isinstance(record, Genesis):
                if record.script["sha256"] != script_sha256:
                    raise BadInput("the journal was written for another version of the script")
                load_script_text(record.script["text"])  # the journal's own copy must still load
                machine.signed_signin = required and record.signed_signin
                continue
            event = record.machine_event()
            if event is None:
                continue  # what the machine never saw: refusals, drives, checkpoints, starts
            try:
                machine.handle(event)
            except Refused as e:
                raise Failure(f"journal entry {seq} does not replay: {e}") from e
    finally:
        machine.signed_signin = required
