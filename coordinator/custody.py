"""`keyrite custody JOURNAL`: who holds which tamper-evident bag, with what inside, from the
journal alone.

The journal's first entry carries the script, the roster and the previous record, so the
ceremony machine can be rebuilt by replaying the journal's events (the journal is the truth);
custody is what the machine recorded at each `seal` and `handover` step: the bag's serial as
the custodian confirmed it, what went in (drives named by the serial read when they were plugged
in, password copies), and who took it (from whom, at a hand-over), with the taker's signature for
the bag (which the machine verified against their enrolled key while replaying: an event whose
signature does not verify does not replay, and the command fails), and at each `unseal` step:
the serial read off the bag and who presented it (a bag the previous ceremony sealed is named as
its record names the holder). Each bag's chain lists the seal, every hand-over and every opening
in the order they happened.

A ceremony that continues an earlier one (its genesis's previous record carries `custody`, the
bags that ceremony left held: `ceremony.previous.Held`) lists those bags too: one it never
touched is still held as that record says (`carried`: holder, serial, contents, since which step
of the earlier ceremony), so the output agrees with `keyrite record export` and with the next
ceremony, which both know it is held; one it opened says so (`opened`, and `resealed` where a
seal of this ceremony took it again), with the earlier record it was checked against
(`previous`). Run `keyrite verify` on the journal first: this command trusts what it reads.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ceremony.machine import Machine, Refused
from ceremony.machine import events as ev
from ceremony.previous import Held, held_of
from ceremony.roster import Roster
from ceremony.script.load import load_script_text
from coordinator.journal.entry import decode
from keyrite import exits
from keyrite.exits import BadInput

DESCRIPTION = (
    "Print who holds which tamper-evident bag and what is inside, from a ceremony journal alone: "
    "the journal's events are replayed through the ceremony machine with the script, roster "
    "and previous record its first entry carries. For each bag: its serial, its contents "
    "(drives by the serial read when plugged in, password copies), who holds it now, and its "
    "chain: the seal, then each hand-over from whom to whom, with the step, the time and the "
    "taker's signature (verified while replaying), and each opening with the serial read. A "
    "journal that continues an earlier ceremony also lists the bags that ceremony left held: "
    "those never opened here as carried on (holder, serial, contents, since which of its "
    "steps), those opened here with the step that opened them and the one that resealed them. "
    "--json for a script. Verify the journal first (keyrite verify). Exit codes: 0 printed, 2 "
    "the journal cannot be read or does not replay."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("custody", help="who holds which bag, from a journal",
                       description=DESCRIPTION)
    p.add_argument("journal", type=Path, metavar="JOURNAL")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(run=run)


def custody(path: Path) -> dict[str, Any]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError as e:
        raise BadInput(f"{path}: {e.strerror}") from None
    if not lines:
        raise BadInput(f"{path}: empty")
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(decode(line)[2])
        except ValueError as e:
            raise BadInput(f"{path}:{i + 1}: not a journal entry ({e})") from None
    genesis = records[0]
    try:
        script = load_script_text(genesis["script"]["text"], f"{path}: genesis script")
        roster = Roster.from_dict(genesis["roster"], f"{path}: genesis roster")
        # sign-ins are unsigned only in a journal from before its genesis stated a format
        # (ceremony.records.Genesis.signed_signin)
        machine = Machine(script, roster, dict(genesis.get("previous", {})),
                          signed_signin=genesis.get("format") is not None)
    except (KeyError, TypeError) as e:
        raise BadInput(f"{path}: the first entry is not a ceremony genesis ({e})") from None
    chains: dict[str, list[dict[str, Any]]] = {}
    for i, rec in enumerate(records[1:], start=2):
        if rec.get("type") != "event":
            continue
        before = {b: dict(c) for b, c in machine.custody.items()}
        opened = machine.opened
        try:
            machine.handle(ev.event_from_dict(rec["event"]))
        except (Refused, ValueError) as e:
            raise BadInput(f"{path}:{i}: the event does not replay: {e}") from None
        for bag, c in machine.custody.items():
            if before.get(bag) != c:
                chains.setdefault(bag, []).append(_link(machine, c))
        for bag, o in machine.opened.items():
            if opened.get(bag) != o:
                chains.setdefault(bag, []).append(_opened(machine, o))
    earlier = {h.bag: h for h in held_of({"custody": list(machine.previous_custody.values())})}
    carried = machine.carried
    bags = {}
    for label in sorted(set(script.bags) | set(earlier)):
        c = machine.custody.get(label)
        o = machine.opened.get(label)
        h = earlier.get(label)
        chain = chains.get(label, [])
        title = script.bags[label].title if label in script.bags else earlier[label].title
        if h is not None and label in carried:  # never touched here: still held
            bags[label] = {"title": title, **_carried(machine, h), "chain": chain}
            continue
        row: dict[str, Any] = {"title": title, **(_row(machine, c) if c else {"sealed": False}),
                               "carried": False}
        if o is not None:
            row["opened"] = {"step": o["step"], "serial": o["serial"], "at": _time(o["at"])}
            again = [x for x in chain if x["kind"] == "seal" and x["step"] > o["step"]]
            if c is not None and again:
                row["resealed"] = {"step": again[0]["step"], "at": again[0]["at"]}
        if h is not None:
            row["previous"] = _earlier(h)
        bags[label] = {**row, "chain": chain}
    return {"journal": str(path), "ceremony": script.ceremony.id, "status": machine.status,
            "bags": bags}


def _earlier(h: Held) -> dict[str, Any]:
    """The bag as the previous ceremony's record left it: who held it since which of its steps,
    its serial and what it was sealed with."""
    return {"serial": h.serial, "custodian": h.custodian, "name": h.name, "step": h.step,
            "contents": [_earlier_content(h, x) for x in h.contents]}


def _carried(m: Machine, h: Held) -> dict[str, Any]:
    """A bag the previous ceremony left held and this one never opened: still held, as that
    record says; nothing here signed for it (its signature is in that ceremony's journal)."""
    seat = m.roster.officers.get(h.custodian)  # their organisation, if the seat is still theirs
    organisation = seat.organisation if seat is not None and seat.person == h.person else None
    return {
        "sealed": True, "carried": True, "serial": h.serial, "custodian": h.custodian,
        "name": h.name, "organisation": organisation,
        "contents": [_earlier_content(h, x) for x in h.contents],
        "step": h.step, "since": "previous", "signature": None, "at": None,
        "previous": _earlier(h),
    }


def _earlier_content(h: Held, item: str) -> str:
    """An item of a bag as the previous record lists it, its drives by the serial read then."""
    kind, _, name = item.partition(":")
    if kind == "drive":
        return f"flash drive {name} (serial {h.drives.get(name) or 'never read'})"
    return _content_words(item)


def _row(m: Machine, c: dict[str, Any]) -> dict[str, Any]:
    """The bag as it is now: its serial, its contents and who holds it since when."""
    return {
        "sealed": True, "serial": c["serial"], "custodian": c["custodian"],
        **_officer(m, c["custodian"]),
        "contents": [_content(m, x) for x in c["contents"]], "step": c["step"],
        # the machine verified it while replaying: the holder's own key signed for this bag
        "signature": c.get("signature"), "at": _time(c["at"]),
    }


def _link(m: Machine, c: dict[str, Any]) -> dict[str, Any]:
    """One change of hands: a seal (from nobody) or a hand-over, with the taker's signature."""
    giver = c.get("from")
    return {
        "kind": "handover" if giver else "seal", "step": c["step"], "at": _time(c["at"]),
        "from": giver, "from_name": _officer(m, giver)["name"] if giver else None,
        "to": c["custodian"], "to_name": _officer(m, c["custodian"])["name"],
        "signature": c.get("signature"),
        # replaying refused any acceptance that does not verify: one that is here verified
        "verified": bool(c.get("signature")),
    }


def _opened(m: Machine, o: dict[str, Any]) -> dict[str, Any]:
    """A bag opened: the serial read off it and who presented it (a previous ceremony's holder
    is named as that ceremony's record names them)."""
    name = o.get("name") if o.get("previous") else _officer(m, o["holder"])["name"]
    return {"kind": "unseal", "step": o["step"], "at": _time(o["at"]), "from": o["holder"],
            "from_name": name, "to": None, "to_name": None, "serial": o["serial"],
            "previous": bool(o.get("previous")), "signature": None, "verified": False}


def _officer(m: Machine, seat: str) -> dict[str, str | None]:
    officer = m.roster.officers.get(seat)
    return {"name": officer.name if officer else None,
            "organisation": officer.organisation if officer else None}


def _time(at: Any) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(at)))


def _content(m: Machine, item: str) -> str:
    kind, _, name = item.partition(":")
    if kind == "drive":
        return f"flash drive {name} (serial {m.drive_serial(name) or 'never read'})"
    return _content_words(item)


def _content_words(item: str) -> str:
    kind, _, name = item.partition(":")
    if kind == "password":
        return f"a copy of the {name} password"
    return item


def render(report: dict[str, Any]) -> str:
    out = [f"custody in {report['journal']} (ceremony {report['ceremony']}, {report['status']})"]
    for label, b in report["bags"].items():
        if b.get("carried"):
            who = f"{b['name']} ({b['custodian']})" if b["name"] else b["custodian"]
            out.append(f"  bag {label} serial {b['serial']}: held by {who} since step "
                       f"{b['step']} of the previous ceremony, carried on from it (not opened "
                       "in this one)")
            out += [f"      {x}" for x in b["contents"]]
            continue
        o, again = b.get("opened"), b.get("resealed")
        if not b["sealed"]:
            out.append(f"  bag {label}: opened at step {o['step']} (serial {o['serial']})" if o
                       else f"  bag {label}: not sealed")
        else:
            out.append(f"  bag {label} serial {b['serial']}: held by {b['name']} "
                       f"({b['custodian']}, {b['organisation']}) since step {b['step']}, "
                       f"{b['at']}, {_signed(b.get('signature'))}")
            if o:
                out.append(f"      opened at step {o['step']} (serial {o['serial']})"
                           + (f", resealed at step {again['step']}" if again else ""))
            out += [f"      {x}" for x in b["contents"]]
        p = b.get("previous")
        if p:
            who = f"{p['name']} ({p['custodian']})" if p["name"] else p["custodian"]
            out.append(f"      the previous ceremony left it held by {who} since its step "
                       f"{p['step']}, serial {p['serial']}: {', '.join(p['contents'])}")
        out += [f"      step {h['step']} {h['at']}: {_said(h)}" for h in b["chain"]]
    return "\n".join(out)


def _said(h: dict[str, Any]) -> str:
    """One link of a bag's chain in words."""
    if h["kind"] == "unseal":
        where = " (sealed at the previous ceremony)" if h["previous"] else ""
        return (f"opened, serial {h['serial']} read as {h['from_name']} ({h['from']}) "
                f"presented it{where}")
    who = f"{h['to_name']} ({h['to']})"
    what = (f"handed over from {h['from_name']} ({h['from']}) to {who}"
            if h["kind"] == "handover" else f"sealed, taken by {who}")
    return f"{what}, {_signed(h['signature'])}"


def _signed(signature: str | None) -> str:
    return "signed for" if signature else "NOT signed for"


def run(args: argparse.Namespace) -> int:
    report = custody(args.journal)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return exits.OK
