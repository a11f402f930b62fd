"""`FolderDrives`: the `Drives` interface on folders, for the rehearsal and a staged ceremony.

Each drive is a folder under the workdir holding a `.drive` label file (label, serial, vendor,
model) and a `files/` tree standing for its filesystem. Copies are written to a temporary name,
fsync'd, renamed, the directory fsync'd, then read back and compared, so a crash never leaves a
half-written file under its final name; each file's `.sha256sum` is written the same way
(`coordinator.drives.with_sums`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from coordinator.drives import DriveInfo, Progress, check_sha256sum, sha256_file, with_sums
from keyrite.exits import Failure
from keyrite.files import write_atomic


class FolderDrives:
    """Drives as folders: `ROOT/LABEL/.drive` holds the identity, `ROOT/LABEL/files/` the data."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def provision(self, label: str, serial: str, vendor: str = "Rehearsal",
                  model: str = "Folder Drive") -> DriveInfo:
        """Put a blank, labelled drive in the box (rehearsal set-up)."""
        d = self.root / label
        (d / "files").mkdir(parents=True, exist_ok=True)
        info = DriveInfo(label, serial, vendor, model, str(d / "files"))
        (d / ".drive").write_text(json.dumps(asdict(info), indent=1) + "\n")
        return info

    def info(self, label: str) -> DriveInfo:
        p = self.root / label / ".drive"
        if not p.is_file():
            raise Failure(f"no flash drive labelled {label!r} in the box ({p} is missing)")
        return DriveInfo(**json.loads(p.read_text()))

    def wait_for(self, label: str, expected: str | None = None) -> DriveInfo:
        return self.info(label)

    def _files(self, label: str) -> Path:
        return Path(self.info(label).path)

    def copy(self, label: str, files: Iterable[tuple[str, bytes]],
             progress: Progress | None = None) -> list[dict[str, object]]:
        dest = self._files(label)
        out = []
        items = with_sums(files)
        total, done = sum(len(d) for _, d in items), 0
        for name, data in items:
            if "/" in name or name.startswith("."):
                raise Failure(f"refusing to write {name!r}: not a plain file name")
            write_atomic(dest / name, data, mode=0o644)
            want = hashlib.sha256(data).hexdigest()
            got = sha256_file(dest / name)
            if got != want:
                raise Failure(f"{label}/{name}: read back {got}, wrote {want}")
            out.append({"name": name, "size": len(data), "sha256": got})
            done += len(data)
            if progress is not None:
                progress(done, total, f"copied {name} to {label}")
        return out

    def verify(self, label: str) -> dict[str, object]:
        folder = self._files(label)
        sums = sorted(p.name for p in folder.glob("*.sha256sum"))
        report: list[str] = []
        ok = bool(sums)
        for s in sums:
            good, lines = check_sha256sum(folder, s)
            ok = ok and good
            report += lines
        detail = "; ".join(report) if report else "no .sha256sum file on the drive"
        return {"ok": ok, "checked": report, "detail": detail}

    def read(self, label: str, name: str) -> bytes:
        return (self._files(label) / name).read_bytes()

    def list(self, label: str) -> list[str]:
        return sorted(p.name for p in self._files(label).iterdir() if not p.name.startswith("."))

    def eject(self, label: str) -> None:
        self.info(label)  # a drive that is not there cannot be ejected
