"""Loop devices holding small ext4 filesystems: real block devices for the drive tests.

`needs_loop` skips with the exact thing that is missing, found by actually trying (make an image,
mkfs.ext4, attach, mount, unmount, detach) rather than by guessing from the environment.
`loop_device()` always unmounts and detaches at teardown, even when the test failed mid-way.
`pull()` / `plug_back()` make a live loop device look like a drive yanked out: its size limit is
set to one sector, so every later read or write of the filesystem fails with EIO, and restored
afterwards (the backing image is untouched, so the test can look at what reached the "flash").
`loop_device(..., fs="vfat")` formats the image FAT (what real flash drives hold); `fusefat_missing`
and `vfat_kernel_missing` say, by trying, why a FAT image cannot be mounted through fusefat or by
the kernel.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

TOOLS = {
    "losetup": "mount",
    "mount": "mount",
    "umount": "mount",
    "blkid": "util-linux",
    "mkfs.ext4": "e2fsprogs",
}

_LOOP_GET_STATUS64 = 0x4C05
_LOOP_SET_STATUS64 = 0x4C04
_LOOP_SET_CAPACITY = 0x4C07
_SIZELIMIT_OFFSET = 32  # struct loop_info64: lo_device, lo_inode, lo_rdevice, lo_offset, ...
_LOOP_INFO64_SIZE = 232


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, check=False)


def _err(p: subprocess.CompletedProcess[str]) -> str:
    return " ".join((p.stderr or p.stdout).split()) or f"exit {p.returncode}"


@functools.cache
def loop_missing() -> str | None:
    """Why loop-device ext4 tests cannot run here, or None when they can (tried for real)."""
    if os.geteuid() != 0:
        return "not root: loop devices and mount need root"
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control: the kernel has no loop driver"
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    if "ext4" not in Path("/proc/filesystems").read_text().split():
        return "the kernel has no ext4 (not in /proc/filesystems)"
    with tempfile.TemporaryDirectory(prefix="keyrite-loopprobe-") as d:
        img, mnt = Path(d) / "probe.img", Path(d) / "mnt"
        mnt.mkdir()
        with open(img, "wb") as f:
            f.truncate(8 << 20)
        p = _run("mkfs.ext4", "-q", "-F", str(img))
        if p.returncode != 0:
            return f"mkfs.ext4 fails: {_err(p)}"
        p = _run("losetup", "--find", "--show", str(img))
        if p.returncode != 0:
            return f"losetup fails: {_err(p)}"
        dev = p.stdout.strip()
        try:
            p = _run("mount", "-t", "ext4", dev, str(mnt))
            if p.returncode != 0:
                return f"mounting ext4 from a loop device fails: {_err(p)}"
            _run("umount", str(mnt))
        finally:
            _run("losetup", "-d", dev)
    return None


needs_loop = pytest.mark.skipif(loop_missing() is not None, reason=str(loop_missing()))

FAT_TOOLS = {
    "mkfs.vfat": "dosfstools",
    "fsck.fat": "dosfstools",
    "mcopy": "mtools",
    "mdir": "mtools",
}


@functools.cache
def fat_tools_missing() -> str | None:
    """Why FAT images cannot be made and inspected here (loop devices included), or None."""
    if (why := loop_missing()) is not None:
        return why
    for tool, package in FAT_TOOLS.items():
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    return None


@functools.cache
def fusefat_missing() -> str | None:
    """Why a FAT loop device cannot be mounted through fusefat here, or None (tried for real)."""
    if (why := fat_tools_missing()) is not None:
        return why
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse: the kernel has no FUSE device"
    if "fuse" not in Path("/proc/filesystems").read_text().split():
        return "the kernel has no fuse (not in /proc/filesystems)"
    if shutil.which("fusefat") is None:
        return "fusefat is not installed (Debian package fusefat)"
    with tempfile.TemporaryDirectory(prefix="keyrite-fuseprobe-") as d:
        mnt = Path(d) / "mnt"
        mnt.mkdir()
        with loop_device(Path(d), 8 << 20, fs="vfat") as dev, fusefat_mount(dev.device, mnt):
            if not os.path.ismount(mnt):
                return "fusefat -o rw+ does not mount a FAT loop device"
    return None


@contextmanager
def fusefat_mount(device: str, mnt: Path) -> Iterator[None]:
    """fusefat alone (no BlockDrive) serving `device` at `mnt` read-write; always unmounted."""
    proc = subprocess.Popen(
        ["fusefat", "-f", "-o", f"rw+,fsname={device}", device, str(mnt)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            if os.path.ismount(mnt) or proc.poll() is not None:
                break
            time.sleep(0.01)
        yield
    finally:
        _run("umount", str(mnt))
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@functools.cache
def vfat_kernel_missing() -> str | None:
    """Why the kernel cannot mount a FAT loop device itself, or None (tried for real)."""
    if (why := fat_tools_missing()) is not None:
        return why
    if "vfat" not in Path("/proc/filesystems").read_text().split():
        return "the kernel has no vfat (not in /proc/filesystems)"
    with tempfile.TemporaryDirectory(prefix="keyrite-vfatprobe-") as d:
        mnt = Path(d) / "mnt"
        mnt.mkdir()
        with loop_device(Path(d), 8 << 20, fs="vfat") as dev:
            p = _run("mount", "-t", "vfat", dev.device, str(mnt))
            if p.returncode != 0:
                return f"mounting vfat from a loop device fails: {_err(p)}"
            _run("umount", str(mnt))
    return None


@dataclass
class LoopDev:
    device: str
    image: Path


def mounts_of(device: str) -> list[str]:
    """Mount points where `device` is mounted (from /proc/self/mounts)."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        src, target = line.split()[:2]
        if src == device:
            out.append(target.replace("\\040", " "))
    return out


@contextmanager
def loop_device(
    directory: Path, size: int, *, fs: str | None = "ext4", fat_bits: int | None = None
) -> Iterator[LoopDev]:
    """An image of `size` bytes (with an ext4 filesystem unless fs=None: all zeros), attached.

    fs="vfat": a FAT filesystem labelled KEYRITE (`fat_bits` 12, 16 or 32 forces the FAT size;
    FAT32 needs about 33 MiB at least), like a flash drive fresh from the shop.
    """
    img = Path(directory) / f"drive-{os.getpid()}-{id(directory):x}-{size}.img"
    n = 0
    while img.exists():
        n += 1
        img = img.with_name(f"{img.stem}-{n}.img")
    with open(img, "wb") as f:
        f.truncate(size)
    if fs == "ext4":
        p = _run("mkfs.ext4", "-q", "-F", str(img))
        assert p.returncode == 0, f"mkfs.ext4: {_err(p)}"
    elif fs == "vfat":
        bits = ["-F", str(fat_bits)] if fat_bits else []
        p = _run("mkfs.vfat", *bits, "-n", "KEYRITE", str(img))
        assert p.returncode == 0, f"mkfs.vfat: {_err(p)}"
    elif fs is not None:
        raise ValueError(f"unsupported filesystem {fs!r}")
    p = _run("losetup", "--find", "--show", str(img))
    assert p.returncode == 0, f"losetup: {_err(p)}"
    dev = LoopDev(p.stdout.strip(), img)
    try:
        yield dev
    finally:
        _set_sizelimit(dev.device, 0, quiet=True)
        for target in reversed(mounts_of(dev.device)):
            if _run("umount", target).returncode != 0:
                _run("umount", "-l", target)
        _run("losetup", "-d", dev.device)


def _set_sizelimit(device: str, limit: int, *, quiet: bool = False) -> None:
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        if quiet:
            return
        raise
    try:
        buf = bytearray(_LOOP_INFO64_SIZE)
        fcntl.ioctl(fd, _LOOP_GET_STATUS64, buf)
        if struct.unpack_from("=Q", buf, _SIZELIMIT_OFFSET)[0] == limit and quiet:
            return
        struct.pack_into("=Q", buf, _SIZELIMIT_OFFSET, limit)
        fcntl.ioctl(fd, _LOOP_SET_STATUS64, bytes(buf))
        fcntl.ioctl(fd, _LOOP_SET_CAPACITY, 0)
    except OSError:
        if not quiet:
            raise
    finally:
        os.close(fd)


def pull(device: str) -> None:
    """The drive is yanked: the device shrinks to one sector, so I/O to the filesystem fails."""
    _set_sizelimit(device, 512)


def plug_back(device: str) -> None:
    """Undo `pull`: the whole image is visible again."""
    _set_sizelimit(device, 0)


def holders(device: str) -> list[int]:
    """The pids of processes holding `device` open (fusefat still serving a mount, say)."""
    pids = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == device for fd in fd_dir.iterdir()):
                pids.append(int(fd_dir.parent.name))
        except OSError:
            continue
    return pids


def find_marker(image: Path, marker: bytes) -> int:
    """The one offset of `marker` in the image (asserts it occurs exactly once)."""
    data = image.read_bytes()
    at = data.find(marker)
    assert at >= 0, f"marker {marker!r} not found in {image}"
    assert data.find(marker, at + 1) < 0, f"marker {marker!r} occurs twice in {image}"
    return at
