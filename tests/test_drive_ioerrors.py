"""A drive that fails mid-copy with EIO (injected through `keyrite.diskio`): on a real ext4 loop
device (as ENOSPC is in tests/test_usb_blockfs.py) and on folder drives. The copy is reported
as a failed step, with the officer's message, never a traceback; no file reaches its final
name; the failed descriptor is never fsync'd again; and the drive takes the copy once the
fault clears."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from coordinator import executor
from coordinator.folder_drives import FolderDrives
from coordinator.usb.blockfs import BlockDrive, DriveError
from coordinator.usb.usb_drives import _failure
from keyrite import diskio
from tests.loopdev_helpers import loop_device, needs_loop

MiB = 1 << 20


class World:
    """The coordinator's hands for one drive.copy step: `copy` is the drive's."""

    def __init__(self, copy: Any) -> None:
        self.copy = copy

    def now(self) -> float:
        return 42.0

    def perform(self, want: d.Perform, progress: Any) -> dict[str, Any]:
        return {"files": self.copy(progress), "verified": True}


def run_copy_step(copy: Any) -> ev.Event:
    job = executor.job(d.Perform(7, "drive.copy"))
    assert job is not None
    return job.run(World(copy), lambda *a: None)  # type: ignore[arg-type]


@pytest.mark.parametrize("op, after", [("write", 2), ("fsync", 0)])
@pytest.mark.parametrize("times", [1, None], ids=["once", "persistent"])
@needs_loop
def test_ext4_eio_mid_copy_is_a_failed_step(tmp_path: Path, op: str, after: int,
                                            times: int | None) -> None:
    data = os.urandom(4 * MiB)
    with loop_device(tmp_path, 32 * MiB) as dev:
        drive = BlockDrive(dev.device, tmp_path / "mnt", "BACKUP1")
        drive.mount()
        try:
            faults = diskio.Faults().fail(op, errno.EIO, times=times, after=after,
                                          path=str(drive.mountpoint))
            with diskio.injected(faults):
                with pytest.raises(DriveError) as e:
                    drive.copy([("a.bin", MiB * b"a"), ("b.bin", data)])
                msg = str(e.value)
                assert "failed mid-copy while writing" in msg and "Input/output error" in msg
                assert "nothing was recorded" in msg
                # through the coordinator: a failed step with the officer's message
                event = run_copy_step(lambda p: _raise(_failure("BACKUP1", e.value)))
                assert isinstance(event, ev.PerformFailed) and event.step == 7
                assert "failed mid-copy" in event.error and "Traceback" not in event.error
                assert _names(drive) == []  # nothing half-written, no temporary left
                assert faults.fsync_retried == []
                faults.clear()
                out = drive.copy([("a.bin", MiB * b"a"), ("b.bin", data)])
            assert [f["name"] for f in out] == ["a.bin", "b.bin"]
            assert (drive.mountpoint / "b.bin").read_bytes() == data
        finally:
            drive.unmount()


def _names(drive: BlockDrive) -> list[str]:
    return sorted(p.name for p in drive.mountpoint.iterdir() if p.name != "lost+found")


def _raise(e: BaseException) -> Any:
    raise e


@pytest.mark.parametrize("op", ["write", "fsync"])
def test_folder_drive_eio_mid_copy_is_a_failed_step(tmp_path: Path, op: str) -> None:
    drives = FolderDrives(tmp_path / "drives")
    drives.provision("BACKUP1", "USB0001")
    files = [("a.bin", b"a" * 1000), ("b.bin", b"b" * 1000)]
    faults = diskio.Faults().fail(op, errno.EIO, after=1, path=str(tmp_path / "drives"))
    with diskio.injected(faults):
        event = run_copy_step(lambda p: drives.copy("BACKUP1", files, p))
    assert isinstance(event, ev.PerformFailed) and event.step == 7
    assert event.error.startswith("OSError: [Errno 5] Input/output error"), event.error
    assert faults.fsync_retried == []
    folder = tmp_path / "drives" / "BACKUP1" / "files"
    # the copy that failed left no temporary behind, and no file half-written under its name
    assert all(not p.name.startswith(".") for p in folder.iterdir())
    for p in folder.iterdir():
        assert p.read_bytes() == dict(files)[p.name] or p.name.endswith(".sha256sum")
    # the step is retried once the fault clears (a retried copy goes to a blank drive)
    drives.provision("BACKUP2", "USB0002")
    again = run_copy_step(lambda p: drives.copy("BACKUP2", files, p))
    assert isinstance(again, ev.Performed), again
