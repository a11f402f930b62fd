"""BlockDrive on real block devices: loop devices holding ext4 (this kernel has no vfat).

Each test builds its own image, attaches it, and the helper always unmounts and detaches it.
The tamper test changes a byte on the device while the good bytes are still in the page cache,
so only a read-back from the device can notice it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coordinator.usb.blockfs import BlockDrive, DriveError
from tests.loopdev_helpers import (
    LoopDev,
    find_marker,
    loop_device,
    mounts_of,
    needs_loop,
    plug_back,
    pull,
)

pytestmark = needs_loop

MiB = 1 << 20


def filler(d: BlockDrive, at: int = MiB) -> Callable[[int, int, str], None]:
    """A copy's progress callback that, once `at` bytes are written, fills the drive up with
    another file (someone else writing to it meanwhile)."""

    def fill(done: int, total: int, name: str) -> None:
        if done == at:
            with open(d.mountpoint / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass

    return fill


def backup_pair(marker: bytes = b"") -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """A random 3 MiB 'backup' (with `marker` written in the middle) and its .sha256sum."""
    data = bytearray(os.urandom(3 * MiB))
    if marker:
        at = 3 * MiB // 2 + 123
        data[at : at + len(marker)] = marker
    data = bytes(data)
    name = "token-backup.tar"
    sums = f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()
    return (name, data), (name + ".sha256sum", sums)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[LoopDev]:
    with loop_device(tmp_path, 64 * MiB) as dev:
        yield dev


@pytest.fixture
def drive(loop: LoopDev, tmp_path: Path) -> Iterator[BlockDrive]:
    d = BlockDrive(loop.device, tmp_path / "mnt", "BACKUP1")
    d.mount()
    yield d
    if d.is_mounted():
        d.unmount()


def names_on_disk(d: BlockDrive) -> list[str]:
    return sorted(p.name for p in d.mountpoint.iterdir() if p.name != "lost+found")


def test_private_mount_point(drive: BlockDrive, loop: LoopDev) -> None:
    assert drive.is_mounted()
    assert str(drive.mountpoint) in mounts_of(loop.device)
    drive.unmount()
    assert stat.S_IMODE(os.stat(drive.mountpoint).st_mode) == 0o700
    assert mounts_of(loop.device) == []


def test_copy_and_verify_backup_pair(drive: BlockDrive) -> None:
    (name, data), (sname, sums) = backup_pair()
    seen: list[tuple[int, int, str]] = []
    out = drive.copy([(name, data), (sname, sums)], lambda d, t, n: seen.append((d, t, n)))
    assert out == [
        {"name": name, "size": 3 * MiB, "sha256": hashlib.sha256(data).hexdigest()},
        {"name": sname, "size": len(sums), "sha256": hashlib.sha256(sums).hexdigest()},
    ]
    total = 3 * MiB + len(sums)
    assert seen[-1] == (total, total, sname)
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    assert len([s for s in seen if s[2] == name]) == 3  # 1 MiB chunks
    assert names_on_disk(drive) == [name, sname]  # no partial file left behind
    res = drive.verify({o["name"]: o["sha256"] for o in out})
    assert res["ok"] is True, res["detail"]
    assert res["sha256sum"] == [f"{sname}: {name}: OK"]
    assert [f["ok"] for f in res["files"]] == [True, True]
    assert drive.read(name) == data
    assert drive.read(sname) == sums
    assert drive.list() == [name, sname]


def test_copy_from_path_and_refuse_overwrite(drive: BlockDrive, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(2 * MiB + 7))
    out = drive.copy([("a.bin", src)])
    assert out[0]["size"] == 2 * MiB + 7
    assert drive.verify({"a.bin": str(out[0]["sha256"])})["ok"] is True
    with pytest.raises(DriveError, match="already holds a file named a.bin"):
        drive.copy([("a.bin", b"other")])
    with pytest.raises(DriveError, match="plain names"):
        drive.copy([("../evil", b"x")])
    assert drive.read("a.bin") == src.read_bytes()


def test_byte_changed_on_the_device_is_caught(drive: BlockDrive, loop: LoopDev) -> None:
    marker = b"KEYRITE-TAMPER-MARKER-" + os.urandom(8).hex().encode()
    (name, data), (sname, sums) = backup_pair(marker)
    out = drive.copy([(name, data), (sname, sums)])
    # The file's good bytes are still in the page cache; change one on the device itself.
    at = find_marker(loop.image, marker) + 5
    fd = os.open(loop.device, os.O_RDWR)
    try:
        old = os.pread(fd, 1, at)
        assert old == marker[5:6]
        os.pwrite(fd, bytes([old[0] ^ 0x01]), at)
        os.fsync(fd)
    finally:
        os.close(fd)
    res = drive.verify({o["name"]: o["sha256"] for o in out})
    assert res["ok"] is False
    bad = [f for f in res["files"] if not f["ok"]]
    assert [f["name"] for f in bad] == [name]
    assert bad[0]["expected"] == hashlib.sha256(data).hexdigest()
    assert bad[0]["actual"] != bad[0]["expected"]
    assert name in str(res["detail"]) and str(bad[0]["actual"]) in str(res["detail"])
    assert f"{sname}: {name}: FAILED" in res["sha256sum"]
    assert drive.read(name) != data


def test_full_drive_refused_up_front(tmp_path: Path) -> None:
    with loop_device(tmp_path, 4 * MiB) as dev:
        d = BlockDrive(dev.device, tmp_path / "mnt", "SMALL")
        d.mount()
        free = d.free_bytes()
        big = os.urandom(free + MiB)
        with pytest.raises(
            DriveError,
            match=r"drive SMALL is full: big.bin needs "
            rf"{len(big)} bytes, \d+ free",
        ):
            d.copy([("big.bin", big)])
        assert names_on_disk(d) == []
        d.eject()
        assert not d.mountpoint.exists()


def test_drive_fills_up_mid_copy(tmp_path: Path) -> None:
    """Someone else fills the drive while we write: a real ENOSPC, and the partial is removed."""
    with loop_device(tmp_path, 16 * MiB) as dev:
        d = BlockDrive(dev.device, tmp_path / "mnt", "FILLS")
        d.mount()
        data = os.urandom(6 * MiB)
        assert d.free_bytes() > len(data)

        with pytest.raises(DriveError, match=r"drive FILLS is full: b.bin needs 6291456 bytes"):
            d.copy([("b.bin", data)], filler(d))
        assert names_on_disk(d) == ["filler"]
        d.unmount()


def test_drive_pulled_mid_copy(drive: BlockDrive, loop: LoopDev) -> None:
    """Pulled while writing the second file: neither file is recorded, on the drive or back."""
    first, data = os.urandom(MiB), os.urandom(8 * MiB)
    calls: list[int] = []

    def yank(done: int, total: int, name: str) -> None:
        calls.append(done)
        if done == 3 * MiB:
            pull(loop.device)

    with pytest.raises(DriveError) as e:
        drive.copy([("first.bin", first), ("pulled.bin", data)], yank)
    assert 3 * MiB in calls  # pulled part way (writes land in the page cache; fsync fails)
    msg = str(e.value)
    assert "removed or failed mid-copy while writing pulled.bin" in msg, msg
    assert "nothing was recorded" in msg and "BACKUP1" in msg and loop.device in msg
    # Put it back: no file reached its final name on the flash.
    plug_back(loop.device)
    subprocess.run(["umount", str(drive.mountpoint)], capture_output=True, check=False)
    fresh = BlockDrive(loop.device, drive.mountpoint.parent, "BACKUP1")
    fresh.mount()
    assert fresh.list() == []
    assert not (fresh.mountpoint / "pulled.bin").exists()
    assert not (fresh.mountpoint / "first.bin").exists()
    fresh.unmount()


def test_mount_vanishes_mid_copy(drive: BlockDrive) -> None:
    def lazy_unmount(done: int, total: int, name: str) -> None:
        if done == MiB:
            subprocess.run(["umount", "-l", str(drive.mountpoint)], check=True)

    with pytest.raises(DriveError, match="removed or failed mid-copy.*nothing was recorded"):
        drive.copy([("gone.bin", os.urandom(3 * MiB))], lazy_unmount)
    assert not drive.is_mounted()
    drive.mount()
    assert drive.list() == []


def test_unmountable_device(tmp_path: Path) -> None:
    with loop_device(tmp_path, 8 * MiB, fs=None) as dev:
        d = BlockDrive(dev.device, tmp_path / "mnt", "BLANK")
        with pytest.raises(
            DriveError,
            match=rf"cannot mount drive BLANK \({dev.device}\) "
            r"\(no filesystem blkid recognises\): mount",
        ):
            d.mount()
        assert not d.is_mounted()
        assert mounts_of(dev.device) == []


_ONLY_SYS_ADMIN = """
import sys
from pathlib import Path
from coordinator.usb.blockfs import BlockDrive
eff = int(open("/proc/self/status").read().split("CapEff:")[1].split()[0], 16)
assert eff == 1 << 21, hex(eff)  # CAP_SYS_ADMIN and nothing else
drive = BlockDrive(sys.argv[1], Path(sys.argv[2]), "albany")
drive.mount()
written = drive.copy([("token-backup.tar", b"backup " * 50_000)])
check = drive.verify({"token-backup.tar": written[0]["sha256"]})
assert check["ok"], check
drive.eject()
print("ok", check["detail"])
"""


@pytest.mark.parametrize("fs", ["ext4", "vfat"])
def test_root_with_cap_sys_admin_alone_is_enough(tmp_path: Path, fs: str) -> None:
    """What systemd/keyrite-coordinator.service.d/usb-drives.conf grants: root, its capability
    bounding set cut to CAP_SYS_ADMIN, no new privileges. Mount (mount(8), or fusefat where the
    kernel has no vfat), write, drop the caches, read back and unmount all work with that."""
    import shutil
    import sys

    from tests.loopdev_helpers import fusefat_missing, vfat_kernel_missing

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed (Debian package util-linux)")
    if fs == "vfat" and vfat_kernel_missing() and fusefat_missing():
        pytest.skip(f"FAT cannot be mounted here: {fusefat_missing()}")
    with loop_device(tmp_path, 16 * MiB, fs=fs) as dev:
        out = subprocess.run(
            ["setpriv", "--bounding-set=-all,+sys_admin", "--inh-caps=-all", "--no-new-privs",
             "--", sys.executable, "-c", _ONLY_SYS_ADMIN, dev.device, str(tmp_path / "mnt")],
            capture_output=True, text=True, timeout=120,
            cwd=Path(__file__).resolve().parent.parent)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith("ok 1 file(s) read back from drive albany")
        assert mounts_of(dev.device) == []
