"""USB flash drives as udev sees them: plugged in, removed, and checked against the script.

The coordinator writes backups and the auditor's copy to named drives ("albany", ...), each
enrolled with the serial its firmware reports. Before anything is written, it has to know
which drive is in which port, and refuse a drive whose serial is not the one expected.

Three layers, so that only the thinnest one needs udev:

- `usb_drive` / `drive_from_properties` turn one udev device into a `UsbDrive`, or None for
  anything that is not a whole USB mass-storage disk (SATA disks, partitions, loop devices...).
- `_Fold` (sans-I/O, clock passed in) folds udev's per-device uevents into one `DriveEvent` per
  disk. Chosen rule: a disk's `added` is held back until no partition event has arrived for
  it for `settle` seconds (0.5 s by default), so it carries its partitions; the kernel emits
  the disk first and each partition after it. A partition appearing after that re-reports the
  disk as `added` with the new partition (an `added` for a present drive replaces it); a
  partition removed is not reported, since the disk's own removal follows on unplug.
  A disk removed before it settled is never reported. A `removed` carries the drive as last
  reported (partitions included): udev remove events carry fewer properties, the device has
  left sysfs, and the consumer can match it with what it was told.
- `UsbWatch` owns the udev context and netlink monitor (subsystem "block") and offers a
  blocking `poll()` for a thread and an async `events()` for trio; use one or the other on a
  given watch (each keeps settle times on its own clock).

`DriveTable` is the pure record the coordinator keeps from those events, and the one place
where an expected serial is compared with the drive plugged in.

Rejected: reporting `added` on the disk's uevent with whatever partitions sysfs shows then
(on umockdev and on slow drives the partitions are not there yet, so every consumer would
have to handle a drive whose partitions arrive later); a separate "changed" action (the
consumers only ever want "this drive, as it is now").
"""

from __future__ import annotations

import math
import posixpath
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, final

import pyudev
import trio

Action = Literal["added", "removed"]
_ACTIONS = ("added", "removed")


@dataclass(frozen=True, kw_only=True)
class UsbDrive:
    """One USB flash drive (the whole disk), as udev describes it."""

    serial: str  # ID_SERIAL_SHORT (else ID_USB_SERIAL_SHORT); "" when the drive reports none
    vendor: str  # ID_VENDOR, else ID_VENDOR_ID
    model: str  # ID_MODEL
    devnode: str  # /dev/sdb
    partitions: tuple[str, ...] = ()  # /dev/sdb1, ... sorted
    syspath: str = ""  # /sys/devices/.../block/sdb: stable while the drive stays plugged in

    def __post_init__(self) -> None:
        if not self.devnode.startswith("/dev/"):
            raise ValueError(f"UsbDrive devnode must be under /dev/, not {self.devnode!r}")
        object.__setattr__(self, "partitions", tuple(sorted(self.partitions)))


@dataclass(frozen=True, kw_only=True)
class DriveEvent:
    """A drive plugged in ("added", or re-reported with new partitions) or taken out."""

    action: Action
    drive: UsbDrive

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"DriveEvent action must be one of {_ACTIONS}, not {self.action!r}")


def normalise_serial(serial: str) -> str:
    """Uppercase ASCII letters and digits only: "ab-12 c" and "AB12C" are the same serial."""
    return re.sub(r"[^A-Z0-9]", "", serial.upper())


def drive_from_properties(
    properties: Mapping[str, str], *, syspath: str = "", partitions: Iterable[str] = ()
) -> UsbDrive | None:
    """The UsbDrive for a udev device given by its properties, or None if it is not one.

    Only whole disks (SUBSYSTEM=block, DEVTYPE=disk) on the USB bus (ID_BUS=usb, which udev's
    usb_id sets for USB mass storage) count, and only with a device node.
    """
    if (
        properties.get("SUBSYSTEM") != "block"
        or properties.get("DEVTYPE") != "disk"
        or properties.get("ID_BUS") != "usb"
        or not properties.get("DEVNAME", "").startswith("/dev/")
    ):
        return None
    return UsbDrive(
        serial=properties.get("ID_SERIAL_SHORT") or properties.get("ID_USB_SERIAL_SHORT", ""),
        vendor=properties.get("ID_VENDOR") or properties.get("ID_VENDOR_ID", ""),
        model=properties.get("ID_MODEL", ""),
        devnode=properties["DEVNAME"],
        partitions=tuple(partitions),
        syspath=syspath,
    )


def usb_drive(device: Any) -> UsbDrive | None:
    """The UsbDrive for a pyudev Device, with its partitions as udev enumerates them now."""
    properties = dict(device.properties)
    properties.setdefault("SUBSYSTEM", device.subsystem or "")
    properties.setdefault("DEVTYPE", device.device_type or "")
    if device.device_node:
        properties.setdefault("DEVNAME", device.device_node)
    if drive_from_properties(properties) is None:  # cheap check before enumerating children
        return None
    partitions = [
        child.device_node
        for child in device.children
        if child.device_type == "partition" and child.device_node
    ]
    return drive_from_properties(properties, syspath=device.sys_path, partitions=partitions)


@dataclass
class _Fold:
    """Folds per-device block uevents into per-disk DriveEvents (no I/O; `now` is passed in)."""

    settle: float
    known: dict[str, UsbDrive] = field(default_factory=dict)  # reported, by syspath
    pending: dict[str, tuple[UsbDrive, float]] = field(default_factory=dict)  # drive, due
    live: dict[str, set[str]] = field(default_factory=dict)  # partitions there now, known disks

    def seed(self, drive: UsbDrive) -> None:
        """A drive found by enumeration: known at once, without an event."""
        self.pending.pop(drive.syspath, None)
        self.known[drive.syspath] = drive
        self.live[drive.syspath] = set(drive.partitions)

    def disk(
        self, action: str, syspath: str, drive: UsbDrive | None, now: float
    ) -> list[DriveEvent]:
        if action == "remove":
            self.pending.pop(syspath, None)
            self.live.pop(syspath, None)
            gone = self.known.pop(syspath, None)
            return [DriveEvent(action="removed", drive=gone)] if gone else []
        if drive is None:  # not a USB disk (or no longer looks like one)
            return []
        if syspath in self.pending:
            old = self.pending[syspath][0]
            drive = replace(drive, partitions=tuple(set(drive.partitions) | set(old.partitions)))
            self.pending[syspath] = (drive, now + self.settle)
            return []
        if syspath in self.known:
            if self.known[syspath] == drive:
                return []
            self.known[syspath] = drive
            self.live[syspath] = set(drive.partitions)
            return [DriveEvent(action="added", drive=drive)]
        self.pending[syspath] = (drive, now + self.settle)
        return []

    def partition(self, action: str, syspath: str, devnode: str, now: float) -> list[DriveEvent]:
        disk = posixpath.dirname(syspath)  # sysfs puts a partition inside its disk's directory
        parts: set[str]
        if disk in self.pending:
            drive, _ = self.pending[disk]
            parts = set(drive.partitions)
            if action == "remove":
                parts.discard(devnode)
            else:
                parts.add(devnode)
            self.pending[disk] = (replace(drive, partitions=tuple(parts)), now + self.settle)
            return []
        if disk in self.known:
            live = self.live.setdefault(disk, set(self.known[disk].partitions))
            if action == "remove":
                live.discard(devnode)  # kept as reported: the disk's removal follows on unplug
            elif devnode not in self.known[disk].partitions:
                live.add(devnode)
                self.known[disk] = replace(self.known[disk], partitions=tuple(live))
                return [DriveEvent(action="added", drive=self.known[disk])]
        return []

    def settled(self, now: float) -> list[DriveEvent]:
        """The held-back disks whose settle time has passed, now reported."""
        ready = sorted((due, path) for path, (_, due) in self.pending.items() if due <= now)
        events = []
        for _, path in ready:
            drive, _ = self.pending.pop(path)
            self.known[path] = drive
            self.live[path] = set(drive.partitions)
            events.append(DriveEvent(action="added", drive=drive))
        return events

    def next_due(self) -> float | None:
        return min((due for _, due in self.pending.values()), default=None)


@final
class UsbWatch:
    """udev's view of USB flash drives: what is present, and what is plugged in or removed.

    Resource handling: the netlink monitor is opened and started in the constructor, before any
    enumeration, so that a drive plugged in meanwhile is seen by one or the other (or both: an
    `added` for a drive `present()` already listed is harmless). It closes with the object.

    Error handling: an OSError from the monitor (ENOBUFS when udev events overflowed its
    buffer, so some were lost) propagates; the caller should make a new watch and take
    `present()` as the truth again.
    """

    def __init__(self, *, settle: float = 0.5) -> None:
        self._context = pyudev.Context()
        self._monitor = pyudev.Monitor.from_netlink(self._context)
        self._monitor.filter_by(subsystem="block")
        self._monitor.start()
        self._fold = _Fold(settle)
        self._ready: deque[DriveEvent] = deque()

    def present(self) -> list[UsbDrive]:
        """The USB drives plugged in now, by device node; later removals report them."""
        drives = []
        for device in self._context.list_devices(subsystem="block", DEVTYPE="disk"):
            drive = usb_drive(device)
            if drive is not None:
                self._fold.seed(drive)
                drives.append(drive)
        return sorted(drives, key=lambda d: d.devnode)

    def poll(self, timeout: float) -> DriveEvent | None:
        """The next DriveEvent, waiting up to `timeout` seconds (for a thread), else None."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            self._ready.extend(self._fold.settled(now))
            if self._ready:
                return self._ready.popleft()
            if now >= deadline:
                return None
            wait = deadline - now
            due = self._fold.next_due()
            if due is not None:
                wait = min(wait, max(due - now, 0.0))
            device = self._monitor.poll(timeout=wait)
            if device is not None:
                self._feed(device, time.monotonic())

    async def events(self) -> AsyncIterator[DriveEvent]:
        """DriveEvents as they happen, for trio; bound it with a cancel scope."""
        while True:
            self._ready.extend(self._fold.settled(trio.current_time()))
            while self._ready:
                yield self._ready.popleft()
            due = self._fold.next_due()
            with trio.move_on_at(math.inf if due is None else due):
                await trio.lowlevel.wait_readable(self._monitor.fileno())
            while (device := self._monitor.poll(timeout=0)) is not None:
                self._feed(device, trio.current_time())

    def _feed(self, device: Any, now: float) -> None:
        action = device.action or ""
        if device.device_type == "disk":
            drive = None if action == "remove" else usb_drive(device)
            self._ready.extend(self._fold.disk(action, device.sys_path, drive, now))
        elif (
            device.device_type == "partition"
            and device.device_node
            and action
            in (
                "add",
                "remove",
            )
        ):
            self._ready.extend(
                self._fold.partition(action, device.sys_path, device.device_node, now)
            )


@final
class DriveTable:
    """The drives present, kept from DriveEvents (sans-I/O), and the serial check.

    A drive is keyed by its syspath, which stays the same while it is plugged in; "added"
    for a syspath already present replaces it.
    """

    def __init__(self, drives: Iterable[UsbDrive] = ()) -> None:
        self._drives: dict[str, UsbDrive] = {d.syspath: d for d in drives}

    def apply(self, event: DriveEvent) -> None:
        if event.action == "added":
            self._drives[event.drive.syspath] = event.drive
        else:
            self._drives.pop(event.drive.syspath, None)

    def present(self) -> list[UsbDrive]:
        return sorted(self._drives.values(), key=lambda d: d.devnode)

    def find(self, serial: str) -> UsbDrive | None:
        """The present drive with this serial (normalised), or None.

        Raises ValueError if two present drives share it (cheap drives sometimes do): which one
        is meant cannot be told, and guessing could write a backup to the wrong drive.
        """
        want = normalise_serial(serial)
        found = [d for d in self.present() if want and normalise_serial(d.serial) == want]
        if len(found) > 1:
            nodes = ", ".join(d.devnode for d in found)
            raise ValueError(f"{len(found)} drives plugged in have serial {serial} ({nodes})")
        return found[0] if found else None

    def check(self, label: str, expected_serial: str | None, drive: UsbDrive) -> str | None:
        """Why `drive` must not be used as drive `label`, or None if it may.

        None also when no serial is expected (a drive enrolled without one).
        """
        if expected_serial is None or not expected_serial.strip():
            return None
        refused = "wrong drive, nothing is written to it"
        want, have = normalise_serial(expected_serial), normalise_serial(drive.serial)
        if not have:
            return (
                f"drive {label} expects serial {expected_serial}; the drive plugged in "
                f"({drive.devnode}) reports no serial: {refused}"
            )
        if want != have:
            return (
                f"drive {label} expects serial {expected_serial}; the drive plugged in has "
                f"serial {drive.serial}: {refused}"
            )
        twins = [
            d
            for d in self._drives.values()
            if d.syspath != drive.syspath and normalise_serial(d.serial) == want
        ]
        if twins:
            return (
                f"drive {label}: {len(twins) + 1} drives plugged in have serial "
                f"{expected_serial}; unplug all but one, nothing is written to any"
            )
        return None
