"""Writing files so that a crash leaves either the old content or the new, never half of it.

Two ways, for two kinds of file: state a room keeps (key state, config) is replaced atomically;
outputs others read (backups, checksums, keys, the rehearsal's records) are created exclusively
and never replace anything, the boulder ceremony tool's rule. Every room writes through here.
"""

from __future__ import annotations

import os
from pathlib import Path

from keyrite import diskio


def fsync_dir(path: Path) -> None:
    """Make a rename or link in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, fsync of the directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    io = diskio.io()  # tests inject disk failures here (keyrite.diskio)
    fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            diskio.write_all(fd, data)
            io.fsync(fd)
        finally:
            io.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_exclusive(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create `path` holding `data`; FileExistsError if anything is already there.

    Written under a temporary name first and then hard-linked into place, so the final name
    only ever appears complete (a crash leaves at most the temporary, which the caller may
    remove; see `partial_name`).
    """
    path = Path(path)
    tmp = Path(partial_name(path))
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails if path exists: never overwrites
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def partial_name(path: Path) -> str:
    """Where `write_exclusive` writes before the file gets its name."""
    path = Path(path)
    return str(path.with_name(f".{path.name}.partial"))
