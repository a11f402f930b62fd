"""`keyrite drives`: run as a person would, in a process that sees a umockdev testbed (its
partitions real ext4 loop devices, so blkid reads a real filesystem), with a drive plugged in
before it starts and another plugged in and taken out while it watches."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.loopdev_helpers import loop_device, loop_missing
from tests.umockdev_helpers import REPO, MockUdev, umockdev_missing

pytestmark = pytest.mark.skipif(bool(loop_missing() or umockdev_missing()),
                                reason=str(loop_missing() or umockdev_missing()))


def _keyrite(bed: MockUdev, *args: str) -> subprocess.Popen[str]:
    env = bed.env()
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen([sys.executable, "-m", "keyrite.cli", "drives", *args], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_lists_the_drives_plugged_in_then_watches(tmp_path: Path) -> None:
    with MockUdev() as bed, loop_device(tmp_path, 16 << 20) as a, \
            loop_device(tmp_path, 16 << 20, fs=None) as b:
        bed.plug("sdb", "AA0011", "Kingston", "DataTraveler", nodes=(a.device,))
        proc = _keyrite(bed, "--json", "--watch", "--seconds", "6")
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first == {"drives": [{
            "serial": "AA0011", "vendor": "Kingston", "model": "DataTraveler",
            "device": "/dev/sdb", "partitions": [{"device": a.device, "filesystem": "ext4"}]}]}
        time.sleep(0.5)
        syspath = bed.plug("sdc", "BB0022", "SanDisk", "Cruzer_Blade", nodes=(b.device,))
        added = json.loads(proc.stdout.readline())
        assert added == {"event": "added", "drive": {
            "serial": "BB0022", "vendor": "SanDisk", "model": "Cruzer_Blade",
            "device": "/dev/sdc", "partitions": [{"device": b.device, "filesystem": ""}]}}
        bed.unplug(syspath)
        removed = json.loads(proc.stdout.readline())
        assert (removed["event"], removed["drive"]["serial"]) == ("removed", "BB0022")
        assert proc.wait(30) == 0, proc.stderr.read()  # type: ignore[union-attr]


def test_the_text_form_names_serial_device_and_filesystem(tmp_path: Path) -> None:
    with MockUdev() as bed, loop_device(tmp_path, 16 << 20) as a:
        bed.plug("sdb", "AA0011", "Kingston", "DataTraveler", nodes=(a.device,))
        proc = _keyrite(bed)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.splitlines() == [
            "1 USB flash drive(s) plugged in:",
            f"  /dev/sdb  serial AA0011  Kingston DataTraveler  [{a.device} ext4]",
        ]
