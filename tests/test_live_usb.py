"""The live coordinator on USB flash drives that udev reports: umockdev emulates each drive being
plugged into a USB port (with the serial the test gives it), and its partition is a real loop
device holding ext4, so the coordinator mounts, writes and reads back a real filesystem. Four
officers' consoles run in tmux as in test_live_tmux.py; the ceremony runs to step 53, through the
master copy and its restore drill.

What it shows: a wrong drive is refused on every console and nothing is mounted; the right one
completes the insert step by itself; a drive pulled out is on every screen at once, and taken
back when plugged in again; the backup on the master copy's filesystem is the one the journal
records.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.live_helpers import Autopilot, Room, env_ok
from tests.loopdev_helpers import loop_device, loop_missing, mounts_of
from tests.umockdev_helpers import MockUdev, umockdev_missing

OFFICERS = ("KGA", "SA", "KSO1", "KSO2")


def _why_not() -> str | None:
    if not env_ok():
        return "tmux is not installed (dev/setup.sh installs it)"
    return loop_missing() or umockdev_missing()


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


def _drive_records(room: Room) -> list[dict]:
    lines = (room.staged.live / "journal.jsonl").read_text().splitlines()
    return [r for r in (json.loads(line)["record"] for line in lines) if r["type"] == "drive"]


def _performed(room: Room, step: int) -> dict:
    lines = (room.staged.live / "journal.jsonl").read_text().splitlines()
    for line in lines:
        r = json.loads(line)["record"]
        if (r.get("type") == "event" and r["event"]["event"] == "Performed"
                and r["step"] == step):
            return r["event"]["result"]
    raise AssertionError(f"no Performed for step {step}")


def _files_on(image: Path, tmp: Path) -> dict[str, str]:
    """sha256 of each file on an ext4 image, read with debugfs (nothing mounts it)."""
    out = {}
    listing = subprocess.run(["debugfs", "-R", "ls -p /", str(image)], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    for line in listing.splitlines():
        fields = line.strip("/").split("/")  # inode, mode, uid, gid, name, size
        regular = len(fields) >= 5 and fields[1].startswith("10")
        if regular and fields[4] not in (".", "..", "lost+found"):
            dest = tmp / f"dump-{fields[4]}"
            subprocess.run(["debugfs", "-R", f"dump /{fields[4]} {dest}", str(image)],
                           capture_output=True, timeout=60, check=True)
            out[fields[4]] = hashlib.sha256(dest.read_bytes()).hexdigest()
    return out


def test_the_live_ceremony_on_drives_udev_reports(tmp_path: Path) -> None:
    with (MockUdev() as bed,
          loop_device(tmp_path, 24 << 20) as stranger,
          loop_device(tmp_path, 24 << 20) as log_drive,
          loop_device(tmp_path, 48 << 20) as master):
        room = Room(tmp_path, OFFICERS, udev=bed.env())
        try:
            ap = Autopilot(room, OFFICERS)
            ap.run(20)  # the SA is to plug in the Key Gen Log drive; the coordinator waits

            # a drive with another serial: refused on every console, never mounted
            wrong = bed.plug("sdb", "0000WRONG0001", "Generic", "Flash_Disk",
                             nodes=(stranger.device,))
            stray = "in the port, no label: Generic Flash_Disk serial 0000WRONG0001"
            for seat in OFFICERS:
                s = room.wait(seat, lambda s: "DRIVE REFUSED: Generic Flash_Disk serial "
                              "0000WRONG0001 (keygen-log)" in s and stray in s, 20)
                assert "Step 20 " in s
            assert mounts_of(stranger.device) == []
            bed.unplug(wrong)
            room.wait("KGA", lambda s: stray not in s, 10)

            # the right one completes the step by itself, mounted in the tool's own directory
            serial = room.serial("keygen-log")
            keygen = bed.plug("sdc", serial, "Kingston", "DataTraveler", nodes=(log_drive.device,))
            room.wait_step("KGA", 21, 30)
            assert mounts_of(log_drive.device) == [str(room.mounts / "keygen-log")]
            assert f"drive keygen-log: {serial}, plugged in" in room.screen("SA")

            # pulled out while the SA's own step is current: every screen shows it at once
            bed.unplug(keygen)
            for seat in OFFICERS:
                room.wait(seat, lambda s: "DRIVE REMOVED: Kingston DataTraveler serial "
                          f"{serial} (keygen-log)" in s
                          and f"drive keygen-log: {serial}, not plugged in" in s, 10)
            # plugged back in: taken back, and the serial check at step 22 passes
            bed.plug("sdc", serial, "Kingston", "DataTraveler", nodes=(log_drive.device,))
            room.wait("KGA", lambda s: f"drive keygen-log: {serial}, plugged in" in s, 20)

            ap.run(49)  # the master copy's drive
            bed.plug("sdd", room.serial("master-copy"), "SanDisk", "Cruzer_Blade",
                     nodes=(master.device,))
            ap.run(53)  # copy, read back from the device, verify, restore drill
        finally:
            room.close()

        copied = _performed(room, 51)
        assert copied["verified"] is True
        # the coordinator is gone (tmux killed it): the drives it mounted may still be mounted
        for mnt in mounts_of(master.device) + mounts_of(log_drive.device):
            subprocess.run(["umount", mnt], check=True, timeout=60)
        on_drive = _files_on(master.image, tmp_path)
        assert on_drive == {str(f["name"]): str(f["sha256"]) for f in copied["files"]}
        assert len(on_drive) == 2
        drill = _performed(room, 52)["drill"]
        assert drill["match"] is True and drill["restored"] == drill["live"] > 0

    events = [(r["event"], r["serial"], r.get("label")) for r in _drive_records(room)]
    assert events[:6] == [
        ("plugged", "0000WRONG0001", None),
        ("refused", "0000WRONG0001", "keygen-log"),
        ("removed", "0000WRONG0001", None),
        ("plugged", serial, None),
        ("removed", serial, "keygen-log"),
        ("plugged", serial, "keygen-log"),  # taken back for its label at once
    ]
    assert ("plugged", room.serial("master-copy"), None) in events
    # the transcript written to the Key Gen Log drive prints them as well
    from coordinator.script import bundled_script_path
    from coordinator.script.load import load_script
    from coordinator.transcript import render

    lines = (room.staged.live / "journal.jsonl").read_text().splitlines()
    text = render(load_script(bundled_script_path()),
                  ((i, json.loads(line)["record"]) for i, line in enumerate(lines)))
    assert "DRIVE REFUSED: Generic Flash_Disk serial 0000WRONG0001 (keygen-log)" in text
    assert f"DRIVE REMOVED: Kingston DataTraveler serial {serial} (keygen-log)" in text
