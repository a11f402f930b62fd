"""A flash drive's partition, mounted privately, written so that nothing is half-recorded.

Why this module is shaped the way it is:

- **Private mount.** The drive is mounted by the tool itself at `MOUNT_ROOT/LABEL` (a directory
  made 0700), with `nosuid,nodev,noexec`, never through the desktop's automounter: nothing else
  indexes, thumbnails or "helpfully" writes to a backup drive while the ceremony owns it, and the
  tool knows exactly when the filesystem is mounted and when it is not.
- **Nothing half-recorded.** Each file of a batch is written to a hidden temporary name and
  fsync'd; only when all are on the flash are they renamed to their final names and the directory
  fsync'd. A drive that fills up, fails or is pulled out part way keeps no file of the batch under
  its final name (the temporaries are removed); the error says so and `copy` returns nothing, so
  the caller never records a copy that did not happen.
- **Read back from the device.** A read right after a write is served from the page cache and
  proves nothing about the flash. `verify` therefore syncs, drops the pages
  (`posix_fadvise(DONTNEED)`) and unmounts and mounts the partition again (the remount is the sure
  one: unmounting evicts every cached page of the filesystem), then hashes what the device returns.

- **vfat, with or without the kernel's driver.** Flash drives come formatted FAT32. Where the
  kernel has `vfat` (in /proc/filesystems) it is mounted like any other filesystem, with
  `uid=0,gid=0,umask=077` added so every file is root's alone. Where it has not (some hardened
  or minimal kernels), the partition is mounted through FUSE with `fusefat -f -o rw+`, run as
  this process's child in its own session (a Ctrl-C at the console does not kill it mid-write):
  without `allow_other` only root can enter the mount, and `fsname=` makes /proc/mounts name the
  partition. fusefat's write support is marked experimental upstream, so three of its gaps are
  closed here rather than trusted: its fsync does not reach the device (the partition itself is
  fsync'd after each file and after the renames); its statvfs reports no free blocks on FAT32
  (free space is counted from the FAT on the device instead); and a full drive fails with EPERM
  (read as "full" when the FAT has no room left). It also lists the volume label as an empty
  file, which `list` leaves out. Unmounting waits for fusefat to exit, then fsyncs the partition.
- **The device's own cache too.** fusefat (like ext4 metadata) goes through the partition's
  page cache, which survives an unmount while anyone else (udev, blkid) holds the device open.
  `verify` therefore also flushes and drops that cache (`BLKFLSBUF`) between unmount and mount.

Rejected: reading back with `O_DIRECT` (alignment rules differ per filesystem, vfat and ext4
disagree, and the remount is needed anyway to catch metadata that only lived in memory); hashing
the source again instead of the drive (proves nothing about the drive).

Errors are `DriveError`, whose message is written for the officer: what happened, which drive
and file, and what to do next.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import signal
import struct
import subprocess
import tempfile
import time
from array import array
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from coordinator.drives import check_sha256sum
from keyrite import diskio

CHUNK = 1 << 20
COMMAND_SECONDS = 60  # a mount/umount that takes longer is a failing drive, not a slow one
PARTIAL_SUFFIX = ".keyrite-partial"
MOUNT_OPTIONS = "nosuid,nodev,noexec"
VFAT_OPTIONS = "uid=0,gid=0,umask=077"  # kernel vfat: every file root's alone, 0700
# fusefat: read-write (its own option), the partition named in /proc/mounts; no allow_other,
# so only root (who mounts) may enter. -f keeps it our child, so unmount can wait for its exit.
FUSEFAT_OPTIONS = "rw+,nosuid,nodev,noexec,umask=077"
_BLKFLSBUF = 0x1261  # _IO(0x12, 97): write back and drop a block device's page cache

# errno values meaning the device went away or broke under us (EROFS: ext4 remounts itself
# read-only after an I/O error on its journal; ENOENT/ESTALE: the mount point emptied).
_GONE = {errno.EIO, errno.ENODEV, errno.ENXIO, errno.EROFS, errno.ESHUTDOWN, errno.ESTALE}
_FULL = {errno.ENOSPC, errno.EDQUOT}
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_FAT = {"vfat", "msdos"}  # what blkid calls FAT12/16/32 ("msdos" only from old blkid)

Progress = Callable[[int, int, str], None]


class DriveError(Exception):
    """A drive could not do what was asked; the message is meant for the officer."""


def _plain(name: str, what: str) -> str:
    if not _PLAIN_NAME.match(name) or len(name) > 200:
        raise DriveError(
            f"refusing {what} {name!r}: only plain names (letters, digits, '._+-', "
            "not starting with a dot) are used on backup drives"
        )
    return name


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=COMMAND_SECONDS, check=False
        )
    except FileNotFoundError as e:
        raise DriveError(f"cannot {what}: the command {cmd[0]!r} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise DriveError(
            f"cannot {what}: {cmd[0]} did not finish within {COMMAND_SECONDS} s; "
            "the drive is probably failing: remove it and use another"
        ) from e


def _message(p: subprocess.CompletedProcess[str]) -> str:
    text = " ".join((p.stderr or p.stdout or "").split())
    return text.rstrip(".") or f"exit status {p.returncode}"


def kernel_has(fstype: str) -> bool:
    """The running kernel can mount `fstype` itself (it is listed in /proc/filesystems)."""
    try:
        lines = Path("/proc/filesystems").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[-1:] == [fstype] for line in lines)


class BlockDrive:
    """One partition of one flash drive, mounted at `mount_root/label` by this tool only.

    Resource handling: `mount()` makes the mount point and mounts; `eject()` syncs, unmounts and
    removes the mount point. Error handling: every failure is a `DriveError` naming the drive
    (label and device) and the file concerned.
    """

    def __init__(self, partition: str, mount_root: Path, label: str) -> None:
        self.partition = partition
        self.label = _plain(label, "drive label")
        self.mount_root = Path(mount_root)
        self.mountpoint = self.mount_root / label
        self._st_dev: int | None = None  # st_dev of our mounted filesystem's root
        self._fuse: subprocess.Popen[bytes] | None = None  # fusefat serving our mount
        self._fat_label = ""  # fusefat lists the volume label as an empty file: hidden

    def __repr__(self) -> str:
        state = "mounted" if self._st_dev is not None else "not mounted"
        return f"BlockDrive({self.label!r} on {self.partition}, {state} at {self.mountpoint})"

    @property
    def _name(self) -> str:
        return f"drive {self.label} ({self.partition})"

    # -- mounting --------------------------------------------------------------------------

    def is_mounted(self) -> bool:
        """Our filesystem is still mounted at our mount point (not someone else's, not gone)."""
        if self._st_dev is None:
            return False
        try:
            return (
                os.path.ismount(self.mountpoint) and os.stat(self.mountpoint).st_dev == self._st_dev
            )
        except OSError:
            return False

    def fstype(self) -> str:
        """The filesystem type blkid sees on the partition ('' when it recognises none)."""
        return probe_fstype(self.partition, self._name)

    def mount(self) -> None:
        if self.is_mounted():
            return
        self.mount_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.mountpoint.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.mountpoint, 0o700)
        except OSError as e:
            raise DriveError(
                f"cannot make the mount point {self.mountpoint} for {self._name}: {e.strerror}"
            ) from e
        if os.path.ismount(self.mountpoint):
            raise DriveError(
                f"{self.mountpoint} already has something mounted on it; unmount it "
                f"before using {self._name}"
            )
        fstype = self.fstype()
        if fstype in _FAT and not kernel_has("vfat"):
            self._mount_fusefat()
            self._st_dev = os.stat(self.mountpoint).st_dev
            return
        options = MOUNT_OPTIONS + ("," + VFAT_OPTIONS if fstype in _FAT else "")
        cmd = ["mount", "-o", options]
        if fstype:
            cmd += ["-t", fstype]
        p = _run(cmd + [self.partition, str(self.mountpoint)], f"mount {self._name}")
        if p.returncode != 0:
            seen = f"filesystem {fstype}" if fstype else "no filesystem blkid recognises"
            raise DriveError(
                f"cannot mount {self._name} ({seen}): {_message(p)}. Check that "
                "the right drive is inserted and formatted; otherwise use another"
            )
        self._st_dev = os.stat(self.mountpoint).st_dev

    def _mount_fusefat(self) -> None:
        """Mount the FAT partition through fusefat (the kernel has no vfat); wait until it is."""
        what = f"mount {self._name} (filesystem vfat, through fusefat: the kernel has no vfat)"
        self._reap_fuse()
        opts = f"{FUSEFAT_OPTIONS},fsname={self.partition}"
        with tempfile.TemporaryFile() as log:
            try:
                proc = subprocess.Popen(
                    ["fusefat", "-f", "-o", opts, self.partition, str(self.mountpoint)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C at the console must not kill it mid-write
                )
            except FileNotFoundError as e:
                raise DriveError(f"cannot {what}: the command 'fusefat' is not installed") from e
            deadline = time.monotonic() + COMMAND_SECONDS
            while not os.path.ismount(self.mountpoint):
                if proc.poll() is not None or time.monotonic() > deadline:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                        why = f"fusefat did not mount it within {COMMAND_SECONDS} s"
                    else:
                        why = _exit_reason("fusefat", proc.returncode, log)
                    raise DriveError(
                        f"cannot {what}: {why}. Check that the right drive is inserted and "
                        "formatted; otherwise use another"
                    )
                time.sleep(0.01)
        self._fuse = proc
        p = _run(
            ["blkid", "-p", "-o", "value", "-s", "LABEL", self.partition], f"inspect {self._name}"
        )
        self._fat_label = p.stdout.strip() if p.returncode == 0 else ""

    def unmount(self) -> None:
        if not os.path.ismount(self.mountpoint):
            self._st_dev = None
            if self._fuse is not None and self._fuse.poll() is not None:
                # fusefat died under its mount ("transport endpoint is not connected")
                _run(["umount", "-l", str(self.mountpoint)], f"unmount {self._name}")
            self._reap_fuse()
            return
        p = _run(["umount", str(self.mountpoint)], f"unmount {self._name}")
        if p.returncode != 0:
            raise DriveError(
                f"cannot unmount {self._name} from {self.mountpoint}: {_message(p)}. "
                "Close anything using the drive, then try again; do not pull it yet"
            )
        self._st_dev = None
        if self._fuse is not None:
            # fusefat may still be writing when umount returns: wait for it, then make sure
            # what it wrote left the partition's page cache for the flash.
            proc, self._fuse = self._fuse, None
            try:
                proc.wait(COMMAND_SECONDS)
            except subprocess.TimeoutExpired as e:
                proc.kill()
                proc.wait()
                raise DriveError(
                    f"{self._name} is unmounted but fusefat did not finish within "
                    f"{COMMAND_SECONDS} s; its last writes may be lost: verify it again or "
                    "use another drive"
                ) from e
            try:
                self._sync_device()
            except OSError as e:
                raise DriveError(
                    f"cannot flush {self._name} after unmounting it ({e.strerror}); its last "
                    "writes may be lost: verify it again or use another drive"
                ) from e

    def _reap_fuse(self) -> None:
        """Forget a fusefat that has exited (its mount was undone by someone else)."""
        if self._fuse is not None and self._fuse.poll() is not None:
            self._fuse = None

    def _sync_device(self, drop: bool = False) -> None:
        """fsync the partition itself; with `drop`, also empty its page cache (BLKFLSBUF)."""
        fd = os.open(self.partition, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
            if drop:
                fcntl.ioctl(fd, _BLKFLSBUF, 0)
        finally:
            os.close(fd)

    def _require_mounted(self) -> None:
        if not self.is_mounted():
            raise DriveError(
                f"{self._name} is not mounted at {self.mountpoint} (it was removed, "
                "or mount() was not called); insert it again and restart this step"
            )

    def _gone(self, name: str, e: BaseException | None = None) -> DriveError:
        why = f" ({e.strerror})" if isinstance(e, OSError) and e.strerror else ""
        return DriveError(
            f"{self._name} was removed or failed mid-copy while writing {name}{why};"
            " nothing was recorded for this copy. Use another drive and copy again"
        )

    # -- copying ---------------------------------------------------------------------------

    def copy(
        self, files: Iterable[tuple[str, bytes | Path]], progress: Progress | None = None
    ) -> list[dict[str, object]]:
        """Write each (name, data-or-source-path) to the drive's root; return what was written.

        `progress(done, total, name)` is called in bytes over the whole batch. Existing files
        are never overwritten. Returns [{"name", "size", "sha256"}] with the digest of the bytes
        as written (hashed on a second thread as the chunks go out); raises DriveError, leaving
        no file of the batch under its final name, when the drive is full, fails, or is pulled.
        """
        self._require_mounted()
        items = [(_plain(name, "file name"), src) for name, src in files]
        names = [n for n, _ in items]
        folded = [n.casefold() for n in names]  # FAT's names ignore case
        dup = {n for n in names if folded.count(n.casefold()) > 1}
        if dup:
            raise DriveError(f"file {sorted(dup)[0]} is listed twice for {self._name}")
        for n in names:
            if n.endswith("."):  # FAT drops a trailing dot: the name would not survive
                raise DriveError(f"refusing file name {n!r}: it ends with a dot")
        sizes = []
        for name, src in items:
            if (self.mountpoint / name).exists():
                raise DriveError(
                    f"{self._name} already holds a file named {name}; use a blank "
                    "drive (backups are never overwritten)"
                )
            sizes.append(len(src) if isinstance(src, bytes | bytearray) else _source_size(src))
        total, done = sum(sizes), 0
        out: list[dict[str, object]] = []
        # Every file is written and fsync'd under its temporary name first; only then are they
        # all renamed and the directory fsync'd once. A failure anywhere removes every temporary
        # (and any final name already given), so a batch is never half-recorded on the drive.
        staged: list[tuple[Path, Path]] = []
        renamed: list[Path] = []
        name = ""
        try:
            for (name, src), size in zip(items, sizes, strict=True):
                free = self.free_bytes()
                if size > free:
                    raise DriveError(
                        f"drive {self.label} is full: {name} needs {size} bytes, "
                        f"{free} free. Use a larger or emptier drive"
                    )
                tmp = self.mountpoint / f".{name}{PARTIAL_SUFFIX}"
                staged.append((tmp, self.mountpoint / name))
                digest = self._write_one(name, src, tmp, size, done, total, progress)
                done += size
                out.append({"name": name, "size": size, "sha256": digest})
            if not self.is_mounted():
                raise self._gone(name)
            for tmp, final in staged:
                name = final.name
                os.rename(tmp, final)
                renamed.append(final)
            dfd = os.open(self.mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            if self._fuse is not None:
                self._sync_device()  # fusefat's fsync stops at the page cache
        except BaseException as e:
            size = dict(zip(names, sizes, strict=False)).get(name, 0)
            err = e
            if isinstance(e, OSError) and e.errno == errno.EPERM and self._fuse is not None:
                free = _quiet(self.free_bytes)  # fusefat says EPERM when the FAT is full
                if isinstance(free, int) and free < size:
                    err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            for tmp, _ in staged:
                _quiet(os.unlink, tmp)
            for final in renamed:
                _quiet(os.unlink, final)
            if isinstance(err, OSError):
                raise self._failed(err, name, size) from e
            raise
        return out

    def free_bytes(self) -> int:
        if self._fuse is not None:
            # fusefat's statvfs says 0 free on FAT32: count the free clusters in the FAT
            # (read through the partition's page cache, which fusefat writes through)
            try:
                return fat_free_bytes(self.partition)
            except OSError as e:
                raise self._gone("(reading the FAT)", e) from e
            except ValueError as e:
                raise DriveError(f"{self._name}: {e}") from e
        try:
            st = os.statvfs(self.mountpoint)
        except OSError as e:
            raise self._gone("(statvfs)", e) from e
        return st.f_bavail * st.f_frsize

    def _failed(self, e: OSError, name: str, size: int) -> DriveError:
        """The officer's version of an OSError met while writing `name`."""
        if e.errno in _FULL:
            free = _quiet(self.free_bytes)
            return DriveError(
                f"drive {self.label} is full: {name} needs {size} bytes, "
                f"{free if free is not None else 'unknown'} free. The partial "
                "file was removed; use a larger or emptier drive"
            )
        if e.errno in _GONE or e.errno == errno.ENOENT or not self.is_mounted():
            return self._gone(name, e)
        return DriveError(
            f"could not write {name} to {self._name}: {e.strerror}; nothing "
            "was recorded for this copy"
        )

    def _write_one(
        self,
        name: str,
        src: bytes | Path,
        tmp: Path,
        size: int,
        done: int,
        total: int,
        progress: Progress | None,
    ) -> str:
        """Write `src` to `tmp` and fsync it; the caller renames it and removes it on failure."""
        h = hashlib.sha256()
        tmp.unlink(missing_ok=True)  # a leftover from an earlier interrupted copy
        io = diskio.io()  # tests inject disk failures here (keyrite.diskio)
        fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            written = 0
            # Hash chunk k on a second thread while chunk k+1 is read and written (both release
            # the GIL): the digest then costs next to nothing on a two-core machine.
            with ThreadPoolExecutor(1, thread_name_prefix="keyrite-sha256") as hasher:
                hashing: Future[None] | None = None
                for chunk in _chunks(src, name):
                    view = memoryview(chunk)
                    while view:
                        n = io.write(fd, view)
                        view = view[n:]
                    if hashing is not None:
                        hashing.result()
                    hashing = hasher.submit(h.update, chunk)
                    written += len(chunk)
                    if progress is not None:
                        progress(done + written, total, name)
                if hashing is not None:
                    hashing.result()
            if written != size:
                raise DriveError(
                    f"source of {name} changed size while copying ({size} -> "
                    f"{written} bytes); nothing was recorded"
                )
            io.fsync(fd)  # failed: the file is removed, never fsync'd again
            if self._fuse is not None:
                self._sync_device()  # fusefat's fsync stops at the page cache
        finally:
            _quiet(io.close, fd)
        return h.hexdigest()

    # -- reading back ----------------------------------------------------------------------

    def drop_cache(self) -> None:
        """Make the next reads come from the device: sync, fadvise DONTNEED, unmount, mount."""
        self._require_mounted()
        for p in self.mountpoint.iterdir():
            if p.is_file():
                try:
                    fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        os.fsync(fd)
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    finally:
                        os.close(fd)
                except OSError as e:
                    if e.errno in _GONE:
                        raise self._gone(p.name, e) from e
        self.unmount()
        try:
            self._sync_device(drop=True)
        except OSError as e:
            raise DriveError(
                f"cannot drop the cached pages of {self._name} ({e.strerror}), so it cannot "
                "be read back from the device: use another drive"
            ) from e
        self.mount()

    def verify(self, expected: dict[str, str]) -> dict[str, object]:
        """Read each expected file back from the device and compare its SHA-256.

        Also runs every `*.sha256sum` file found on the drive, as `sha256sum -c` would. Returns
        {"ok", "files": [{"name", "ok", "expected", "actual"}], "sha256sum": [...], "detail"}.
        """
        self.drop_cache()
        files: list[dict[str, object]] = []
        problems: list[str] = []
        for name in sorted(expected):
            want = expected[name].strip().lower()
            path = self.mountpoint / _plain(name, "file name")
            try:
                got = _sha256(path) if path.is_file() else None
            except OSError as e:
                if e.errno in _GONE:
                    raise DriveError(
                        f"{self._name} failed while reading back {name} "
                        f"({e.strerror}); the copy cannot be trusted: use another "
                        "drive"
                    ) from e
                raise
            good = got == want
            files.append({"name": name, "ok": good, "expected": want, "actual": got})
            if got is None:
                problems.append(f"{name}: missing on the drive")
            elif not good:
                problems.append(f"{name}: read back {got}, expected {want}")
        sums_report: list[str] = []
        sums_ok = True
        for s in sorted(p.name for p in self.mountpoint.glob("*.sha256sum")):
            good, lines = check_sha256sum(self.mountpoint, s)
            sums_ok = sums_ok and good
            sums_report += [f"{s}: {line}" for line in lines]
            problems += [f"{s}: {line}" for line in lines if not line.endswith(": OK")]
            if not lines:
                problems.append(f"{s}: empty")
        ok = bool(files or sums_report) and not problems and sums_ok
        if not files and not sums_report:
            problems.append("nothing to verify (no expected files, no .sha256sum file)")
        if ok:
            detail = f"{len(files)} file(s) read back from {self._name} match" + (
                f"; {len(sums_report)} sha256sum line(s) OK" if sums_report else ""
            )
        else:
            detail = f"{self._name} does NOT hold a good copy: " + "; ".join(problems)
        return {"ok": ok, "files": files, "sha256sum": sums_report, "detail": detail}

    def read(self, name: str) -> bytes:
        self._require_mounted()
        try:
            return (self.mountpoint / _plain(name, "file name")).read_bytes()
        except FileNotFoundError as e:
            raise DriveError(f"{self._name} holds no file named {name}") from e
        except OSError as e:
            raise DriveError(f"cannot read {name} from {self._name}: {e.strerror}") from e

    def list(self) -> list[str]:
        self._require_mounted()
        return sorted(
            p.name
            for p in self.mountpoint.iterdir()
            if p.is_file() and not p.name.startswith(".") and not self._is_fat_label(p)
        )

    def _is_fat_label(self, p: Path) -> bool:
        """fusefat shows the FAT volume label as an empty file of that name."""
        return (
            self._fuse is not None
            and bool(self._fat_label)
            and p.name == self._fat_label
            and p.stat().st_size == 0
        )

    def eject(self) -> None:
        """Flush, unmount and remove the private mount point; the drive can then be pulled."""
        if self.is_mounted():
            try:
                fd = os.open(self.mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.syncfs(fd) if hasattr(os, "syncfs") else os.sync()
                finally:
                    os.close(fd)
            except OSError as e:
                raise DriveError(
                    f"cannot flush {self._name} before ejecting ({e.strerror}); "
                    "its last writes may be lost: verify it again or use another "
                    "drive"
                ) from e
        self.unmount()
        try:
            self.mountpoint.rmdir()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise DriveError(
                f"{self._name} is unmounted but its mount point {self.mountpoint} "
                f"could not be removed: {e.strerror}"
            ) from e


def probe_fstype(partition: str, name: str | None = None) -> str:
    """The filesystem type blkid sees on `partition` ('' when it recognises none); reads only."""
    # -p: probe the device itself; the blkid cache can remember an earlier medium
    p = _run(["blkid", "-p", "-o", "value", "-s", "TYPE", partition],
             f"inspect {name or partition}")
    return p.stdout.strip() if p.returncode == 0 else ""


def fat_free_bytes(device: str) -> int:
    """Free space of the FAT12/16/32 filesystem on `device`, counted from its first FAT.

    The FSInfo sector's free count is only a hint (0xFFFFFFFF, "unknown", is common), so the
    clusters are counted: entries that are 0 are free (FAT32's 4 reserved high bits included,
    so an odd entry counts as used: the count can only err low).
    """
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        boot = os.pread(fd, 512, 0)
        if len(boot) < 512 or boot[510:512] != b"\x55\xaa":
            raise ValueError("no FAT boot sector (signature 55 AA missing)")
        per_sector, per_cluster, reserved, fats, root_entries, total16 = struct.unpack_from(
            "<HBHBHH", boot, 11
        )
        (fat16_size,) = struct.unpack_from("<H", boot, 22)
        total32, fat32_size = struct.unpack_from("<II", boot, 32)
        fat_size, total = fat16_size or fat32_size, total16 or total32
        if per_sector not in (512, 1024, 2048, 4096) or not per_cluster or not fats:
            raise ValueError(f"implausible FAT boot sector ({per_sector} bytes a sector)")
        root_sectors = (root_entries * 32 + per_sector - 1) // per_sector
        clusters = (total - reserved - fats * fat_size - root_sectors) // per_cluster
        fat = os.pread(fd, fat_size * per_sector, reserved * per_sector)
    finally:
        os.close(fd)
    if clusters < 4085:  # FAT12: 1.5 bytes an entry
        free = 0
        for c in range(2, clusters + 2):
            v = int.from_bytes(fat[c * 3 // 2 : c * 3 // 2 + 2], "little")
            free += (v >> 4 if c & 1 else v & 0xFFF) == 0
    elif clusters < 65525:  # FAT16 (0 is 0 in either byte order)
        free = array("H", fat[4 : 4 + 2 * clusters]).count(0)
    else:  # FAT32
        free = array("I", fat[8 : 8 + 4 * clusters]).count(0)
    return free * per_sector * per_cluster


def _exit_reason(command: str, returncode: int, log: object) -> str:
    """What a helper that exited said (its last lines), or the signal that killed it."""
    text = ""
    try:
        log.seek(0)  # type: ignore[attr-defined]
        text = log.read()[-4000:].decode(errors="replace")  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        pass
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = "; ".join(lines[-3:]).rstrip(".")
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        how = f"{command} was killed by {sig}"
    else:
        how = f"{command} exited with status {returncode}"
    return f"{how} ({said})" if said else how


def _source_size(src: Path) -> int:
    try:
        return Path(src).stat().st_size
    except OSError as e:
        raise DriveError(f"cannot read the source file {src}: {e.strerror}") from e


def _chunks(src: bytes | Path, name: str) -> Iterable[bytes | memoryview]:
    """1 MiB pieces of `src`. From a file, two buffers take turns: a piece stays valid until
    the next-but-one is asked for, long enough for the hashing thread to finish with it."""
    if isinstance(src, bytes | bytearray):
        view = memoryview(src)
        for i in range(0, len(view), CHUNK):
            yield view[i : i + CHUNK]
        return
    try:
        f = open(src, "rb", buffering=0)  # noqa: SIM115 - closed below, generator-scoped
    except OSError as e:
        raise DriveError(f"cannot read the source of {name} ({src}): {e.strerror}") from e
    buffers = (memoryview(bytearray(CHUNK)), memoryview(bytearray(CHUNK)))
    turn = 0
    with f:
        while True:
            buf = buffers[turn]
            turn ^= 1
            try:
                n = f.readinto(buf)
            except OSError as e:
                raise DriveError(
                    f"cannot read the source of {name} ({src}): {e.strerror}; nothing was recorded"
                ) from e
            if not n:
                return
            yield buf[:n]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _quiet(fn: Callable[..., object], *args: object) -> object:
    try:
        return fn(*args)
    except (OSError, DriveError):
        return None
