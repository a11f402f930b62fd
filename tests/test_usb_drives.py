"""`UsbDrives` on real filesystems: loop devices with ext4 stand in for the flash drives, and a
`Port` stands in for the USB port udev would report them on (a physical port cannot exist here;
udev's own reports are tested with umockdev in test_usb_watch.py). The label binding, the serial
check, copies read back from the device, a drive pulled during a step, and eject."""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from pathlib import Path

import pytest

from coordinator.usb.usb_drives import DriveNotice, UsbDrives
from coordinator.usb.watch import DriveEvent, UsbDrive
from keyrite.exits import Failure
from tests.loopdev_helpers import loop_device, mounts_of, needs_loop, pull

pytestmark = needs_loop


class Port:
    """What udev would say, one event at a time, for drives the test plugs in."""

    def __init__(self) -> None:
        self.events: queue.Queue[DriveEvent] = queue.Queue()
        self.now: list[UsbDrive] = []

    def present(self) -> list[UsbDrive]:
        return list(self.now)

    def poll(self, timeout: float) -> DriveEvent | None:
        try:
            return self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()
        except queue.Empty:
            return None

    def plug(self, device: str, serial: str, n: int = 0) -> UsbDrive:
        d = UsbDrive(serial=serial, vendor="Vendor", model="Stick", devnode=f"/dev/sd{n}",
                     partitions=(device,), syspath=f"/sys/test/sd{n}/{time.monotonic_ns()}")
        self.now.append(d)
        self.events.put(DriveEvent(action="added", drive=d))
        return d

    def unplug(self, d: UsbDrive) -> None:
        self.now.remove(d)
        self.events.put(DriveEvent(action="removed", drive=d))


class Heard:
    """The notices a started UsbDrives gives, as the live coordinator's listener gets them."""

    def __init__(self) -> None:
        self.notices: queue.Queue[DriveNotice] = queue.Queue()

    def __call__(self, notice: DriveNotice) -> None:
        self.notices.put(notice)

    def next(self, timeout: float = 5.0) -> DriveNotice:
        return self.notices.get(timeout=timeout)


def test_a_drive_is_bound_copied_read_back_verified_and_ejected(tmp_path: Path) -> None:
    port = Port()
    drives = UsbDrives(port, tmp_path / "mnt", {"master-copy": "AB12CD"}, wait_seconds=1)
    with loop_device(tmp_path, 32 << 20) as loop:
        port.plug(loop.device, "ab-12-cd")
        info = drives.wait_for("master-copy")
        assert (info.label, info.serial) == ("master-copy", "ab-12-cd")
        assert mounts_of(loop.device) == []  # bound, not mounted before its first use
        data = b"backup " * 100_000
        digest = hashlib.sha256(data).hexdigest()
        written = drives.copy("master-copy", [("b.tar.gz", data),
                                              ("b.tar.gz.sha256sum",
                                               f"{digest}  b.tar.gz\n".encode())])
        assert written[0]["sha256"] == digest
        assert mounts_of(loop.device) == [str(tmp_path / "mnt" / "master-copy")]
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


def test_a_wrong_drive_is_told_at_once_and_the_step_waits_for_the_right_one(tmp_path: Path):
    """The script declares albany's serial: any other drive is refused."""
    port, heard = Port(), Heard()
    drives = UsbDrives(port, tmp_path / "mnt", {"albany": "AA-0011"}, wait_seconds=20)
    drives.start(heard)
    try:
        with loop_device(tmp_path, 16 << 20) as wrong, loop_device(tmp_path, 16 << 20) as right:
            got: list[object] = []
            waiting = threading.Thread(target=lambda: got.append(drives.wait_for("albany")))
            waiting.start()
            port.plug(wrong.device, "BB0022", 1)
            assert heard.next().what == "plugged"
            refused = heard.next()
            assert (refused.what, refused.label, refused.drive.serial) == ("refused", "albany",
                                                                          "BB0022")
            assert refused.reason is not None and "wrong drive" in refused.reason
            assert refused.to_record()["reason"] == refused.reason
            assert mounts_of(wrong.device) == [] and waiting.is_alive()
            port.plug(right.device, "aa0011", 2)
            waiting.join(10)
            assert [i.serial for i in got] == ["aa0011"]  # type: ignore[attr-defined]
            assert drives.list("albany") == []
            assert mounts_of(right.device) == [str(tmp_path / "mnt" / "albany")]
            assert mounts_of(wrong.device) == []
            drives.eject("albany")
    finally:
        drives.close()


def test_a_pulled_drive_is_told_at_once_and_taken_back_when_plugged_in_again(tmp_path: Path):
    port, heard = Port(), Heard()
    drives = UsbDrives(port, tmp_path / "mnt", {}, wait_seconds=5)
    drives.start(heard)
    try:
        with loop_device(tmp_path, 32 << 20) as loop:
            d = port.plug(loop.device, "CAFE01")
            assert heard.next().what == "plugged"
            drives.wait_for("wellington")
            port.unplug(d)
            start = time.monotonic()
            notice = heard.next()
            assert (notice.what, notice.label) == ("removed", "wellington")
            assert time.monotonic() - start < 2  # told by the watcher, not at the next touch
            assert drives.seen() == {}
            with pytest.raises(Failure, match="wellington .*was removed; plug it in again"):
                drives.copy("wellington", [("b.tar.gz", b"x")])
            port.plug(loop.device, "cafe-01")  # the same drive, back in the port
            assert heard.next().what == "plugged"
            written = drives.copy("wellington", [("b.tar.gz", b"x" * 1000)])
            assert written[0]["size"] == 1000
            assert mounts_of(loop.device) == [str(tmp_path / "mnt" / "wellington")]
            drives.eject("wellington")
    finally:
        drives.close()


def test_an_ejected_drive_left_in_the_port_is_not_taken_for_another_label(tmp_path: Path):
    port = Port()
    drives = UsbDrives(port, tmp_path / "mnt", {}, wait_seconds=0.3)
    with loop_device(tmp_path, 16 << 20) as loop:
        port.plug(loop.device, "CAFE01")
        drives.wait_for("keygen-log")
        drives.eject("keygen-log")
        with pytest.raises(Failure, match="no flash drive was plugged in for albany"):
            drives.wait_for("albany")
        assert drives.wait_for("keygen-log").serial == "CAFE01"  # the same label may again
        drives.eject("keygen-log")


def test_the_recorded_serial_picks_the_drive_among_several(tmp_path: Path):
    port = Port()
    drives = UsbDrives(port, tmp_path / "mnt", {}, wait_seconds=1)
    with loop_device(tmp_path, 16 << 20) as a, loop_device(tmp_path, 16 << 20) as b:
        port.plug(a.device, "AA0011", 1)
        port.plug(b.device, "BB0022", 2)
        assert drives.wait_for("master-copy", "bb0022").serial == "BB0022"
        drives.list("master-copy")
        assert mounts_of(b.device) and not mounts_of(a.device)
        drives.eject("master-copy")


def test_a_drive_not_the_recorded_one_is_bound_but_never_mounted_until_checked(tmp_path: Path):
    """Only the script's serial refuses. Against the KGA's record the machine's verify step
    decides (a typo in the record may be accepted); until then nothing touches the drive, and
    once it is swapped the next serial step takes the new one."""
    port = Port()
    drives = UsbDrives(port, tmp_path / "mnt", {}, wait_seconds=1)
    with loop_device(tmp_path, 16 << 20) as wrong, loop_device(tmp_path, 16 << 20) as right:
        w = port.plug(wrong.device, "0000WRONG0001", 1)
        assert drives.wait_for("keygen-log", "AA0011").serial == "0000WRONG0001"
        drives.eject("keygen-log")  # nothing was mounted, nothing to unmount
        assert mounts_of(wrong.device) == []
        drives = UsbDrives(port, tmp_path / "mnt", {}, wait_seconds=1)
        assert drives.wait_for("keygen-log", "AA0011").serial == "0000WRONG0001"
        port.unplug(w)  # the SA swaps it for the right one; the serial step is retried
        port.plug(right.device, "AA0011", 2)
        assert drives.wait_for("keygen-log", "AA0011").serial == "AA0011"
        assert drives.list("keygen-log") == [] and mounts_of(wrong.device) == []
        assert mounts_of(right.device) == [str(tmp_path / "mnt" / "keygen-log")]
        drives.eject("keygen-log")


def test_close_ends_a_wait_for_a_drive(tmp_path: Path):
    drives = UsbDrives(Port(), tmp_path / "mnt", {}, wait_seconds=60)
    drives.start(Heard())
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            drives.wait_for("albany")
        except Failure as e:
            errors.append(e)

    waiting = threading.Thread(target=wait)
    waiting.start()
    time.sleep(0.3)
    drives.close()
    waiting.join(5)
    assert not waiting.is_alive()
    assert "stopping" in str(errors[0])


def test_a_log_drive_gets_its_sums_and_drive_verify_checks_it(tmp_path: Path) -> None:
    """The Key Gen Log on a real filesystem: the journal copy and the transcript get their
    `.sha256sum` in the batch that writes them; a copy of the whole drive takes the sums along
    (once each); `drive.verify` passes on both, and names the journal once a byte of it on the
    device is flipped."""
    from ceremony.machine import decisions as d
    from coordinator.ceremony_world import CeremonyWorld
    from tests.machine_helpers import start

    port = Port()
    drives = UsbDrives(port, tmp_path / "mnt", {}, wait_seconds=1)
    journal = tmp_path / "journal.jsonl"
    journal.write_bytes(b'{"seq":0}\n' * 1000)
    machine, _ = start()  # a ceremony that has generated nothing: no public keys to copy
    world = CeremonyWorld(machine, None, drives, journal, journal, list, {})  # type: ignore[arg-type]

    def work(action: str, **params: str) -> dict[str, object]:
        return world.perform(d.Perform(step=1, action=action, params=params), lambda *a: None)

    with loop_device(tmp_path, 16 << 20) as log, loop_device(tmp_path, 16 << 20) as cp:
        port.plug(log.device, "LOG1", 0)
        port.plug(cp.device, "COPY2", 1)
        drives.wait_for("keygen-log", "LOG1")
        drives.wait_for("keygen-copy", "COPY2")
        copied = work("drive.copy", drive="keygen-log", source="journal")["files"]
        assert [f["name"] for f in copied] == ["journal.jsonl", "journal.jsonl.sha256sum"]
        drives.copy("keygen-log", [("transcript-20261207.txt", b"page 1\n"),
                                   ("transcript-20261207.pdf", b"%PDF-1.4\n")])
        names = ["journal.jsonl", "journal.jsonl.sha256sum", "transcript-20261207.pdf",
                 "transcript-20261207.pdf.sha256sum", "transcript-20261207.txt",
                 "transcript-20261207.txt.sha256sum"]
        assert drives.list("keygen-log") == names
        assert work("drive.verify", drive="keygen-log")["ok"] is True
        again = work("drive.copy", drive="keygen-copy", source="drive:keygen-log")["files"]
        assert sorted(f["name"] for f in again) == names  # the sums came along, not doubled
        assert drives.list("keygen-copy") == names
        assert work("drive.verify", drive="keygen-copy")["ok"] is True
        on_drive = tmp_path / "mnt" / "keygen-log" / "journal.jsonl"
        data = bytearray(on_drive.read_bytes())
        data[5] ^= 0x01
        on_drive.write_bytes(bytes(data))
        result = work("drive.verify", drive="keygen-log")
        assert result["ok"] is False
        assert "journal.jsonl: FAILED" in str(result["detail"]), result
        assert "transcript-20261207.txt: OK" in " ".join(map(str, result["sha256sum"]))
        drives.eject("keygen-log")
        drives.eject("keygen-copy")
