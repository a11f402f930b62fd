"""`UsbDrives` on real filesystems: loop devices with ext4 stand in for the flash drives, and a
`Port` stands in for the USB port udev would report them on (a physical port cannot exist here;
udev's own reports are tested with umockdev in test_usb_watch.py). The label binding, the serial
check, copies read back from the device, a drive pulled during a step, and eject."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from coordinator.usb.drives import UsbDrives
from coordinator.usb.watch import DriveEvent, UsbDrive
from keyrite.exits import Failure
from tests.loopdev_helpers import loop_device, mounts_of, needs_loop, pull

pytestmark = needs_loop


class Port:
    """What udev would say, one event at a time, for drives the test plugs in."""

    def __init__(self) -> None:
        self.events: list[DriveEvent] = []
        self.now: list[UsbDrive] = []

    def present(self) -> list[UsbDrive]:
        return list(self.now)

    def poll(self, timeout: float) -> DriveEvent | None:
        return self.events.pop(0) if self.events else None

    def plug(self, device: str, serial: str, n: int = 0) -> UsbDrive:
        d = UsbDrive(serial=serial, vendor="Vendor", model="Stick", devnode=f"/dev/sd{n}",
                     partitions=(device,), syspath=f"/sys/test/sd{n}")
        self.now.append(d)
        self.events.append(DriveEvent(action="added", drive=d))
        return d

    def unplug(self, d: UsbDrive) -> None:
        self.now.remove(d)
        self.events.append(DriveEvent(action="removed", drive=d))


def test_a_drive_is_bound_copied_read_back_verified_and_ejected(tmp_path: Path) -> None:
    port = Port()
    drives = UsbDrives(port, tmp_path / "mnt", {"master-copy": "AB12CD"}, wait_seconds=1)
    with loop_device(tmp_path, 32 << 20) as loop:
        port.plug(loop.device, "ab-12-cd")
        info = drives.wait_for("master-copy")
        assert (info.label, info.serial) == ("master-copy", "ab-12-cd")
        assert mounts_of(loop.device) == [str(tmp_path / "mnt" / "master-copy")]
        data = b"backup " * 100_000
        digest = hashlib.sha256(data).hexdigest()
        written = drives.copy("master-copy", [("b.tar.gz", data),
                                              ("b.tar.gz.sha256sum",
                                               f"{digest}  b.tar.gz\n".encode())])
        assert written[0]["sha256"] == digest
        assert drives.read("master-copy", "b.tar.gz") == data
        assert drives.list("master-copy") == ["b.tar.gz", "b.tar.gz.sha256sum"]
        assert drives.verify("master-copy")["ok"] is True
        assert drives.seen() == {"master-copy": "ab-12-cd"}
        drives.eject("master-copy")
        assert mounts_of(loop.device) == [] and drives.seen() == {}


def test_a_wrong_drive_is_refused_and_nothing_is_mounted(tmp_path: Path) -> None:
    port = Port()
    drives = UsbDrives(port, tmp_path / "mnt", {"albany": "AA0011"}, wait_seconds=1)
    with loop_device(tmp_path, 16 << 20) as loop:
        port.plug(loop.device, "BB0022")
        with pytest.raises(Failure, match="expects serial AA0011.*BB0022: wrong drive"):
            drives.wait_for("albany")
        assert mounts_of(loop.device) == []


def test_no_drive_plugged_in_is_reported_after_the_wait(tmp_path: Path) -> None:
    drives = UsbDrives(Port(), tmp_path / "mnt", {}, wait_seconds=0.2)
    with pytest.raises(Failure, match="no flash drive was plugged in for albany"):
        drives.wait_for("albany")


def test_a_drive_pulled_during_a_step_is_noticed_and_nothing_claims_a_copy(tmp_path: Path):
    port = Port()
    drives = UsbDrives(port, tmp_path / "mnt", {}, wait_seconds=1)
    with loop_device(tmp_path, 32 << 20) as loop:
        d = port.plug(loop.device, "CAFE01")
        drives.wait_for("wellington")
        pull(loop.device)  # the device goes away under the mounted filesystem
        with pytest.raises(Failure, match="wellington"):
            drives.copy("wellington", [("b.tar.gz", b"x" * (4 << 20))])
        port.unplug(d)  # and udev says so
        with pytest.raises(Failure, match="wellington .*was removed"):
            drives.list("wellington")
