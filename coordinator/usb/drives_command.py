"""`keyrite drives`: the USB flash drives udev sees on this laptop, as the coordinator will.

For the people preparing a ceremony (to read each drive's serial into the script's `[[drives]]`,
where a declared serial makes the coordinator refuse any other drive) and for the SA on the day:
the same watcher and the same rules as `drives = "usb"`, nothing mounted, nothing written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from typing import Any

from keyrite.exits import OK

DESCRIPTION = (
    "List the USB flash drives plugged in now, as the live coordinator's udev watcher sees them: "
    "serial (what a script's [[drives]] serial is compared with), vendor, model, device and each "
    "partition's filesystem (read with blkid -p; nothing is mounted or written). --watch then "
    "prints each drive plugged in or removed until --seconds have passed (or Ctrl-C). --json: "
    "one JSON object per line (the list first, then one per event). Exit codes: 0 done, "
    "3 internal error (udev could not be read)."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("drives", help="the USB flash drives udev sees (serials for the script)",
                       description=DESCRIPTION)
    p.add_argument("--watch", action="store_true", help="then print plug and unplug events")
    p.add_argument("--seconds", type=float, default=None, metavar="N",
                   help="with --watch: stop after N seconds (default: until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="JSON lines for a script")
    p.set_defaults(run=run)


def describe(drive: Any) -> dict[str, Any]:
    from coordinator.usb.blockfs import probe_fstype

    return {"serial": drive.serial, "vendor": drive.vendor, "model": drive.model,
            "device": drive.devnode,
            "partitions": [{"device": part, "filesystem": probe_fstype(part)}
                           for part in drive.partitions]}


def _line(d: dict[str, Any]) -> str:
    parts = ", ".join(f"{p['device']} {p['filesystem'] or 'no filesystem'}"
                      for p in d["partitions"]) or "no partition"
    name = " ".join(w for w in (d["vendor"], d["model"]) if w) or "unnamed drive"
    return f"{d['device']}  serial {d['serial'] or '(none)'}  {name}  [{parts}]"


def run(args: argparse.Namespace) -> int:
    from coordinator.usb.watch import UsbWatch

    watch = UsbWatch()
    drives = [describe(d) for d in watch.present()]
    if args.json:
        print(json.dumps({"drives": drives}), flush=True)
    else:
        print(f"{len(drives)} USB flash drive(s) plugged in" + (":" if drives else ""))
        for d in drives:
            print("  " + _line(d))
        if args.watch:
            print("watching: plug a drive in or take one out (Ctrl-C to stop)", flush=True)
    if not args.watch:
        return OK
    with contextlib.suppress(KeyboardInterrupt):  # how a watch is meant to end
        _watch(watch, args)
    return OK


def _watch(watch: Any, args: argparse.Namespace) -> None:
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    while deadline is None or time.monotonic() < deadline:
        left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
        event = watch.poll(max(left, 0.0))
        if event is None:
            continue
        d = describe(event.drive) if event.action == "added" else {
            "serial": event.drive.serial, "vendor": event.drive.vendor,
            "model": event.drive.model, "device": event.drive.devnode,
            "partitions": [{"device": p, "filesystem": ""} for p in event.drive.partitions]}
        if args.json:
            print(json.dumps({"event": event.action, "drive": d}), flush=True)
        else:
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp} {event.action:7} {_line(d)}", flush=True)
