"""The signer's outputs directory: backups and their .sha256sum files, never overwritten.

Both backends write the same way: an archive is built only if it is not already there, an
archive that is there must be this operation's (its manifest names the operation digest), and
the `.sha256sum` line is written once and must match. So a backup interrupted anywhere is
finished by running the same operation again, and nothing of another operation is touched.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keyrite.files import write_exclusive
from signer_shim import planning
from signer_shim.backup import BackupError, read_manifest, sha256sum_line
from signer_shim.interface import SignerError

#: the longest file name (bytes) a Linux file system takes; a longer one is refused as such
NAME_MAX = 255


class Outputs:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def path(self, name: str) -> Path:
        """The output file `name`, which must exist (a plain name: no directories)."""
        if "/" in name or "\0" in name or name.startswith(".") or not name or \
                len(name.encode("utf-8", "surrogatepass")) > NAME_MAX:
            raise SignerError(f"{name[:80]!r} is not the name of an output file")
        p = self.dir / name
        try:
            found = p.is_file()
        except OSError as e:  # whatever the file system says of a name: a refusal, not a crash
            raise SignerError(f"{name[:80]!r} is not the name of an output file ({e.strerror})") \
                from None
        if not found:
            raise SignerError(f"the signer has no output named {name}")
        return p

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def read_chunk(self, name: str, offset: int, length: int) -> tuple[int, bytes]:
        """The file's size and at most `length` of its bytes from `offset` (none past its
        end): a client reads a backup a chunk at a time, and each request reads only its
        chunk, not the whole file again (which made a large backup's reading quadratic and
        held the whole file in memory per request)."""
        with self.path(name).open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset >= size:
                return size, b""
            f.seek(offset)
            return size, f.read(length)

    def plan_backup(self, token: str, date: str) -> dict[str, Any]:
        """The backup operation of `token` for `date`, refused if its files already exist."""
        op = planning.plan_backup(token, date)
        self.refuse_existing(op["file"])
        return op

    def refuse_existing(self, name: str) -> None:
        for n in (name, name + ".sha256sum"):
            if (self.dir / n).exists():
                raise SignerError(f"output {n} already exists; a backup never overwrites")

    def write_backup(self, name: str, digest: str, build: Callable[[], bytes]) -> dict[str, Any]:
        """The archive `name` for operation `digest` (built by `build` unless an earlier attempt
        of this operation wrote it) and its .sha256sum; the backup result."""
        path = self.dir / name
        sums = self.dir / f"{name}.sha256sum"
        if path.exists():
            data = path.read_bytes()
            try:
                ours = read_manifest(data).get("operation") == digest
            except BackupError:
                ours = False
            if not ours:
                raise SignerError(f"{name} exists and is not this operation's: not overwriting")
        else:
            data = build()
            write_exclusive(path, data)
        sha = hashlib.sha256(data).hexdigest()
        line = sha256sum_line(sha, name)
        if sums.exists():
            if sums.read_text() != line:
                raise SignerError(f"{sums.name} exists and does not match {name}")
        else:
            write_exclusive(sums, line.encode())
        return {"file": name, "sha256": sha, "sha256sum_file": sums.name, "size": len(data)}
