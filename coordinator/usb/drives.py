"""`UsbDrives`: the coordinator's `Drives` interface on real USB flash drives.

udev (`watch.UsbWatch`) says which drive is plugged in; `blockfs.BlockDrive` mounts its first
partition privately, writes and reads it back from the device. The rehearsal keeps its folder
drives (`coordinator.drives.FolderDrives`) behind the same interface.

A `drive.insert` step waits here until a drive is plugged in that no other label holds, checks
its serial against the script's (a wrong drive is refused and nothing is written to it), mounts
it and binds it to the label until `eject`. Every later call first drains udev's events: a drive
pulled out during a step is reported as removed at the next touch, as a `Failure` the machine
turns into a stopped step. Copies are read back from the device before they count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol

from coordinator.drives import DriveInfo
from coordinator.usb.blockfs import BlockDrive, DriveError
from coordinator.usb.watch import DriveEvent, DriveTable, UsbDrive
from keyrite.exits import Failure

WAIT_SECONDS = 30 * 60  # how long a drive.insert step waits for a drive to be plugged in
Progress = Callable[[int, int, str], None]


class Watch(Protocol):
    def present(self) -> list[UsbDrive]: ...

    def poll(self, timeout: float) -> DriveEvent | None: ...


class UsbDrives:
    def __init__(self, watch: Watch, mount_root: Path, expected: Mapping[str, str | None], *,
                 wait_seconds: float = WAIT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.watch = watch
        self.mount_root = Path(mount_root)
        self.expected = dict(expected)
        self.wait_seconds = wait_seconds
        self.clock = clock
        self.table = DriveTable(watch.present())
        self.bound: dict[str, tuple[UsbDrive, BlockDrive]] = {}
        self.removed: dict[str, UsbDrive] = {}  # label -> the drive pulled while bound

    # --- what udev says ----------------------------------------------------------------------
    def _drain(self, timeout: float = 0.0) -> DriveEvent | None:
        """Apply every pending udev event; return the last one (None if none came)."""
        last = None
        while True:
            event = self.watch.poll(timeout)
            if event is None:
                return last
            timeout = 0.0
            self.table.apply(event)
            last = event
            if event.action == "removed":
                for label, (drive, _) in list(self.bound.items()):
                    if drive.syspath == event.drive.syspath:
                        self.removed[label] = drive
                        del self.bound[label]

    def seen(self) -> dict[str, str]:
        """Labels whose drive is plugged in now, with its serial (for the consoles' panel)."""
        self._drain()
        return {label: d.serial for label, (d, _) in self.bound.items()}

    def _free(self) -> list[UsbDrive]:
        taken = {d.syspath for d, _ in self.bound.values()}
        return [d for d in self.table.present() if d.syspath not in taken]

    # --- the Drives interface ----------------------------------------------------------------
    def wait_for(self, label: str) -> DriveInfo:
        self._drain()
        if label in self.bound:
            return self._info(label)
        deadline = self.clock() + self.wait_seconds
        while not self._free():
            left = deadline - self.clock()
            if left <= 0:
                raise Failure(f"no flash drive was plugged in for {label} within "
                              f"{self.wait_seconds / 60:.0f} minutes")
            self._drain(min(left, 1.0))
        drive = self._free()[0]
        reason = self.table.check(label, self.expected.get(label), drive)
        if reason:
            raise Failure(reason)
        if not drive.partitions:
            raise Failure(f"the drive plugged in for {label} (serial {drive.serial}) has no "
                          "partition: format it before the ceremony")
        block = BlockDrive(drive.partitions[0], self.mount_root, label)
        try:
            block.mount()
        except (DriveError, OSError) as e:
            raise _failure(label, e) from None
        self.bound[label] = (drive, block)
        self.removed.pop(label, None)
        return self._info(label)

    def _info(self, label: str) -> DriveInfo:
        drive, block = self.bound[label]
        return DriveInfo(label, drive.serial, drive.vendor, drive.model, str(block.mountpoint))

    def _block(self, label: str) -> BlockDrive:
        self._drain()
        if label in self.removed:
            d = self.removed[label]
            raise Failure(f"drive {label} (serial {d.serial}) was removed; plug it in again "
                          "and retry the step")
        if label not in self.bound:
            raise Failure(f"drive {label} is not plugged in (no drive.insert step bound it)")
        return self.bound[label][1]

    def copy(self, label: str, files: Iterable[tuple[str, bytes]],
             progress: Progress | None = None) -> list[dict[str, object]]:
        """Write, then read back from the device: the copy counts only if every digest holds."""
        block = self._block(label)
        try:
            written = block.copy(list(files), progress)
            check = block.verify({str(w["name"]): str(w["sha256"]) for w in written})
        except (DriveError, OSError) as e:
            self._drain()
            raise _failure(label, e) from None
        if not check["ok"]:
            raise Failure(str(check["detail"]))
        return written

    def verify(self, label: str) -> dict[str, object]:
        try:
            return self._block(label).verify({})
        except (DriveError, OSError) as e:
            raise _failure(label, e) from None

    def read(self, label: str, name: str) -> bytes:
        try:
            return self._block(label).read(name)
        except (DriveError, OSError) as e:
            raise _failure(label, e) from None

    def list(self, label: str) -> list[str]:
        try:
            return self._block(label).list()
        except (DriveError, OSError) as e:
            raise _failure(label, e) from None

    def eject(self, label: str) -> None:
        block = self._block(label)
        try:
            block.eject()
        except (DriveError, OSError) as e:
            raise _failure(label, e) from None
        del self.bound[label]


def _failure(label: str, e: BaseException) -> Failure:
    """DriveError messages are already the officer's; a bare OSError from a failing drive is
    said in the same terms."""
    if isinstance(e, DriveError):
        return Failure(str(e))
    return Failure(f"drive {label} failed or was removed ({e.strerror or e}); nothing was "
                   "recorded for this step: plug it in again, or use another drive, and retry")
