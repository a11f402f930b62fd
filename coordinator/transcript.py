"""The printable transcript: the journal rendered for people, the paper copy the seed printed.

Pure: journal records in, text out. What is printed is what was journaled, in journal order, with
each step's instruction beside what happened, so an auditor can read it against the script; the
flash drives udev saw come and go (and any refused) are printed too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ceremony.script.model import Script


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + "Z"


def describe_event(e: dict[str, Any]) -> str:
    """One line for a journaled event (`{step}` is left for the caller to fill in)."""
    kind = e.get("event")
    if kind == "SignIn":
        return (f"{e['name']} ({e['organisation']}) signs in as {', '.join(e['seats'])}"
                + (" (ID checked)" if e.get("id_checked") else ""))
    if kind == "Acknowledge":
        return f"{e['seat']} confirms step {{step}}"
    if kind == "Record":
        return f"{e['seat']} records {e['value']}"
    if kind == "Approve":
        a = e["approval"]
        return f"{e['seat']} approves operation {a['operation'][:16]}... for step {a['step']}"
    if kind == "RefuseApproval":
        return f"{e['seat']} refuses {e['quorum']}: {e['reason']}"
    if kind == "Decide":
        why = f": {e['reason']}" if e.get("reason") else ""
        return f"{e['seat']} decides {e['decision']}{why}"
    if kind == "SignOff":
        return f"{e['seat']} signs off the checkpoint"
    if kind == "Observed":
        return f"machine observes {e['value']}"
    if kind == "OperationPlanned":
        op = e["operation"]
        return f"signer plans {op.get('op')} ({_op_summary(op)})"
    if kind == "OperationStarted":
        return f"operation {e['digest'][:16]}... started"
    if kind == "Performed":
        return "done: " + _result_summary(e.get("result", {}))
    if kind == "PerformFailed":
        return f"FAILED: {e['error']}"
    return str(kind)


def describe_drive(record: dict[str, Any]) -> str:
    """A USB drive plugged in, removed or refused, as the journal recorded it."""
    what = {"present": "drive present at start", "plugged": "drive plugged in",
            "removed": "DRIVE REMOVED", "refused": "DRIVE REFUSED"}.get(
        str(record.get("event")), f"drive {record.get('event')}")
    who = " ".join(str(record[k]) for k in ("vendor", "model") if record.get(k))
    line = f"{what}: {who} serial {record.get('serial') or '(none)'}".replace(":  ", ": ")
    if record.get("label"):
        line += f" ({record['label']})"
    if record.get("reason"):
        line += f": {record['reason']}"
    return line


def _op_summary(op: dict[str, Any]) -> str:
    if op.get("op") == "purge":
        return f"{len(op.get('delete', []))} dead keys"
    if op.get("op") == "generate":
        count = sum(b.get("count", 0) for b in op.get("batches", []))
        return f"{count} keys for {op.get('duration')}"
    return str(op.get("file", ""))


def _result_summary(r: dict[str, Any]) -> str:
    keep = {k: v for k, v in r.items()
            if isinstance(v, str | int | float | bool) and k != "listing"}
    return ", ".join(f"{k}={v}" for k, v in sorted(keep.items())) or "ok"


def render(script: Script, records: Iterable[tuple[int, dict[str, Any]]]) -> str:
    """Text of the transcript from (seq, journal record) pairs."""
    c = script.ceremony
    out = [f"{c.title} (id {c.id}, script version {c.version})",
           f"script sha256 {script.sha256}", ""]
    for seq, rec in records:
        if rec.get("type") == "drive":  # what udev saw: drives plugged in, removed, refused
            out.append(f"{seq:5d}  {_when(rec['at'])}  {describe_drive(rec)}")
            continue
        if rec.get("type") != "event":
            if rec.get("type") == "checkpoint":
                out.append(f"{seq:5d}  checkpoint of the first {seq} entries")
            continue
        e = rec["event"]
        step = e.get("step")
        line = describe_event(e).replace("{step}", str(rec.get("step", step or "")))
        where = rec.get("step")
        text = ""
        if where is not None:
            try:
                s = script.step(int(where))
                text = f"  [{s.n}. {s.actor}: {s.text[:70]}]"
            except KeyError:
                text = ""
        out.append(f"{seq:5d}  {_when(e['at'])}  {line}{text}")
    out.append("")
    return "\n".join(out)
