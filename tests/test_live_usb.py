"""The live coordinator on USB flash drives that udev reports: umockdev emulates each drive being
plugged into a USB port (with the serial the test gives it), and its partition is a real loop
device holding ext4, so the coordinator mounts, writes and reads back a real filesystem. Four
officers' consoles run in tmux as in test_live_tmux.py; the ceremony runs to step 53, through the
master copy and its restore drill. The script is the bundled one with the master copy's serial
declared, as a site may declare its drives' serials.

What it shows:
- the Key Gen Log (no serial declared): a wrong drive is taken at the insert step but never
  mounted; the serial step (22) finds it is not the one the KGA recorded, an exception on every
  console; the SA swaps it, the KGA retries, and the right one passes;
- a drive pulled out is on every screen at once, and taken back when plugged in again;
- the Master Copy (serial declared): a wrong drive is refused on every console, shown as a drive
  in the port with no label, never mounted; the right one completes the insert step by itself;
- the backup on the master copy's filesystem is the one journaled; the restore drill matches;
- the journal and the printed transcript keep every plug, removal and refusal.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.live_helpers import Autopilot, Room, env_ok
from tests.loopdev_helpers import loop_device, loop_missing, mounts_of
from tests.umockdev_helpers import MockUdev, umockdev_missing

OFFICERS = ("KGA", "SA", "KSO1", "KSO2")
MASTER_SERIAL = "5A4D00C0FFEE0001"


def _why_not() -> str | None:
    if not env_ok():
        return "tmux is not installed (dev/setup.sh installs it)"
    return loop_missing() or umockdev_missing()


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


def _records(room: Room) -> list[dict]:
    lines = (room.staged.live / "journal.jsonl").read_text().splitlines()
    return [json.loads(line)["record"] for line in lines]


def _performed(room: Room, step: int) -> dict:
    for r in _records(room):
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


def _script_with_master_serial(tmp: Path) -> Path:
    from ceremony.script import bundled_script_path

    text = bundled_script_path().read_text()
    declared = 'label = "master-copy"\ntitle = "Master Copy"\n'
    assert text.count(declared) == 1
    path = tmp / "second-key-generation.toml"
    path.write_text(text.replace(declared, declared + f'serial = "{MASTER_SERIAL}"\n'))
    return path


def test_the_live_ceremony_on_drives_udev_reports(tmp_path: Path) -> None:
    with (MockUdev() as bed,
          loop_device(tmp_path, 24 << 20) as stranger,
          loop_device(tmp_path, 24 << 20) as log_drive,
          loop_device(tmp_path, 48 << 20) as master):
        room = Room(tmp_path, OFFICERS, udev=bed.env(),
                    script=_script_with_master_serial(tmp_path))
        try:
            ap = Autopilot(room, OFFICERS)
            serial = room.serial("keygen-log")
            assert room.serial("master-copy") == MASTER_SERIAL
            ap.run(20)  # the SA is to plug in the Key Gen Log drive; the coordinator waits

            # the wrong drive: taken, never mounted, caught at the serial step as the seed's SA
            # would; swapped, and the step retried
            wrong = bed.plug("sdb", "0000WRONG0001", "Generic", "Flash_Disk",
                             nodes=(stranger.device,))
            ap.run(22)
            for seat in OFFICERS:
                room.wait(seat, lambda s: re.search(r"observed\W+0000WRONG0001", s) is not None,
                          30)
            assert mounts_of(stranger.device) == []
            bed.unplug(wrong)
            room.wait("KGA", lambda s: "DRIVE REMOVED: Generic Flash_Disk serial "
                      "0000WRONG0001 (keygen-log)" in s, 10)
            keygen = bed.plug("sdc", serial, "Kingston", "DataTraveler", nodes=(log_drive.device,))
            room.wait("KGA", lambda s: f"drive plugged in: Kingston DataTraveler serial {serial}"
                      in s, 10)
            room.press("KGA", "x")
            room.wait("KGA", lambda s: "[r] retry" in s, 10)
            room.press("KGA", "r")  # one key: retry
            room.wait_step("KGA", 23, 30)
            assert f"drive keygen-log: {serial}, plugged in" in room.screen("SA")

            # pulled out while the SA's own step is current: every screen shows it at once
            bed.unplug(keygen)
            for seat in OFFICERS:
                room.wait(seat, lambda s: "DRIVE REMOVED: Kingston DataTraveler serial "
                          f"{serial} (keygen-log)" in s
                          and f"drive keygen-log: {serial}, not plugged in" in s, 10)
            # plugged back in: taken back for its label at once
            bed.plug("sdc", serial, "Kingston", "DataTraveler", nodes=(log_drive.device,))
            room.wait("KGA", lambda s: f"drive keygen-log: {serial}, plugged in" in s, 20)

            # the master copy's serial is declared: another drive is refused on every console
            ap.run(49)
            other = bed.plug("sdd", "0000WRONG0002", "Generic", "Flash_Disk",
                             nodes=(stranger.device,))
            stray = "in the port, no label: Generic Flash_Disk serial 0000WRONG0002"
            for seat in OFFICERS:
                s = room.wait(seat, lambda s: "DRIVE REFUSED: Generic Flash_Disk serial "
                              "0000WRONG0002 (master-copy)" in s and stray in s, 20)
                assert "Step 49 " in s
            assert mounts_of(stranger.device) == []
            bed.unplug(other)
            room.wait("KGA", lambda s: stray not in s, 10)
            bed.plug("sde", MASTER_SERIAL, "SanDisk", "Cruzer_Blade", nodes=(master.device,))
            ap.run(53)  # serial, copy, read back from the device, verify, restore drill
            assert mounts_of(master.device) == [str(room.mounts / "master-copy")]
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
        assert _files_on(stranger.image, tmp_path) == {}  # nothing ever written to it

    records = _records(room)
    events = [(r["event"], r["serial"], r.get("label")) for r in records if r["type"] == "drive"]
    assert events == [
        ("plugged", "0000WRONG0001", None),
        ("removed", "0000WRONG0001", "keygen-log"),
        ("plugged", serial, None),
        ("removed", serial, "keygen-log"),
        ("plugged", serial, "keygen-log"),  # taken back for its label at once
        ("plugged", "0000WRONG0002", None),
        ("refused", "0000WRONG0002", "master-copy"),
        ("removed", "0000WRONG0002", None),
        ("plugged", MASTER_SERIAL, None),
    ]
    decided = [r["event"]["decision"] for r in records
               if r["type"] == "event" and r["event"]["event"] == "Decide"]
    assert decided == ["retry"]
    # the transcript written to the Key Gen Log drive prints them as well
    from ceremony.script.load import load_script
    from coordinator.transcript import render

    text = render(load_script(tmp_path / "second-key-generation.toml"),
                  ((i, r) for i, r in enumerate(records)))
    assert "DRIVE REFUSED: Generic Flash_Disk serial 0000WRONG0002 (master-copy)" in text
    assert f"DRIVE REMOVED: Kingston DataTraveler serial {serial} (keygen-log)" in text
