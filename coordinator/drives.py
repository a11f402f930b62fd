"""Flash drives behind one small interface (`Drives`, `DriveInfo`), and the digest checks every
kind of drive shares.

Every file keyrite writes to a drive gets `NAME.sha256sum` beside it (`with_sums`), in the batch
that writes it, so it is flushed and read back with it: a `drive.verify` step can then check any
drive keyrite wrote (a backup's, the Key Gen Log's journal and transcript), and anyone can check
it later with `sha256sum -c` alone.

The live coordinator implements `Drives` with udev and real mounts (`coordinator.usb.usb_drives`);
the rehearsal (and a staged ceremony) uses folders (`coordinator.folder_drives`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class DriveInfo:
    label: str
    serial: str
    vendor: str
    model: str
    path: str  # where its files are (the mount point, for real drives)


class Drives(Protocol):
    def wait_for(self, label: str, expected: str | None = None) -> DriveInfo:
        """The drive for `label`, waiting for it; `expected` is the serial the KGA recorded
        (the machine checks it in any case; real drives use it to pick the right one)."""

    def copy(self, label: str, files: Iterable[tuple[str, bytes]],
             progress: Progress | None = None) -> list[dict[str, object]]:
        """Write `files` and their sums (`with_sums`) and read them all back; returns each file
        written, sums included ({"name", "size", "sha256"}); `progress(done, total, what)` in
        bytes."""

    def verify(self, label: str) -> dict[str, object]: ...

    def read(self, label: str, name: str) -> bytes: ...

    def list(self, label: str) -> list[str]: ...

    def eject(self, label: str) -> None: ...


SUM_SUFFIX = ".sha256sum"


def sha256sum_line(digest: str, name: str) -> str:
    """What `sha256sum NAME` prints and `sha256sum -c` reads: hex, two spaces, the name."""
    return f"{digest}  {name}\n"


def with_sums(files: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """`files`, each followed by its `NAME.sha256sum`, unless it is a sum itself or its sum is
    already in the batch (a backup's, written by the signer; a drive's copied with its files):
    a sum is never doubled, nor summed."""
    items = list(files)
    names = {n for n, _ in items}
    out: list[tuple[str, bytes]] = []
    for name, data in items:
        out.append((name, data))
        if not name.endswith(SUM_SUFFIX) and name + SUM_SUFFIX not in names:
            line = sha256sum_line(hashlib.sha256(data).hexdigest(), name)
            out.append((name + SUM_SUFFIX, line.encode()))
    return out


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read into one 64 KiB buffer: a fresh 1 MiB bytes object per read
    left 2 MB behind in each worker thread's malloc arena of the live coordinator for good
    (bench/coordinator_rss.py saw it at the live CD's check); 64 KiB hashes as fast."""
    h = hashlib.sha256()
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def check_sha256sum(folder: Path, sumfile: str) -> tuple[bool, list[str]]:
    """What `sha256sum -c SUMFILE` does, run in `folder`: (all OK, the report lines)."""
    lines, ok = [], True
    for raw in (folder / sumfile).read_text().splitlines():
        if not raw.strip():
            continue
        digest, _, name = raw.partition("  ")
        name = name.lstrip("*")
        target = folder / name
        if not name or "/" in name or not target.is_file():
            lines.append(f"{name or raw}: FAILED open or read")
            ok = False
        elif sha256_file(target) != digest.strip().lower():
            lines.append(f"{name}: FAILED")
            ok = False
        else:
            lines.append(f"{name}: OK")
    return ok and bool(lines), lines
