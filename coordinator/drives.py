"""Flash drives behind one small interface (`Drives`, `DriveInfo`), and the digest checks every
kind of drive shares.

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
        """Write and read back; `progress(done, total, what)` in bytes."""

    def verify(self, label: str) -> dict[str, object]: ...

    def read(self, label: str, name: str) -> bytes: ...

    def list(self, label: str) -> list[str]: ...

    def eject(self, label: str) -> None: ...


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
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
