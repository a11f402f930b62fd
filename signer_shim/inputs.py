"""The signer's inputs directory: files the coordinator hands the signer, today a backup to
restore, read off a drive in the ceremony room.

The shim's lines are at most 64 KiB, so a backup arrives in chunks (`put`), each at the offset
the file has reached, into a partial file; the last chunk completes it only if the whole has the
SHA-256 announced with every chunk. A restore then reads it by name and digest, so what is
restored is exactly the file the plan names. Sizes are bounded (`MAX_BACKUP`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from signer_shim.interface import SignerError
from signer_shim.planning import BACKUP_FILE
from signer_shim.restore import MAX_BACKUP, sha256_hex

_HEX64 = re.compile(r"[0-9a-f]{64}")


class Inputs:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def put(self, name: str, data: bytes, offset: int, size: int, sha256: str) -> dict[str, Any]:
        """Write one chunk of input `name` (whole: `size` bytes, SHA-256 `sha256`) at `offset`,
        which must be where the file has got to (0 starts it again). The last chunk checks the
        digest and moves the file into place."""
        if not isinstance(name, str) or not BACKUP_FILE.fullmatch(name):
            raise SignerError(f"{str(name)[:60]!r} is not a backup file name "
                              "(key-backup-YYYY-MM-DD.tar.gz)")
        if not _HEX64.fullmatch(sha256):
            raise SignerError("an input's sha256 is 64 lower-case hex digits")
        if not 0 < size <= MAX_BACKUP:
            raise SignerError(f"a backup to restore is 1 to {MAX_BACKUP} bytes, not {size}")
        self.dir.mkdir(parents=True, exist_ok=True)
        partial = self.dir / f".{name}.{sha256[:16]}.partial"
        have = partial.stat().st_size if partial.exists() and offset else 0
        if offset != have:
            raise SignerError(f"{name}: a chunk at offset {offset}, but {have} bytes are in; "
                              "send from there (or from 0)")
        if offset + len(data) > size:
            raise SignerError(f"{name}: more than the announced {size} bytes")
        with open(partial, "ab" if offset else "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        received = offset + len(data)
        if received == size:
            whole = partial.read_bytes()
            if sha256_hex(whole) != sha256:
                partial.unlink()
                raise SignerError(f"{name} arrived with another SHA-256 than announced: "
                                  "send it again")
            os.replace(partial, self.dir / name)
        return {"name": name, "size": size, "received": received}

    def read(self, name: str, sha256: str) -> bytes:
        """Input `name`, which must be whole and have SHA-256 `sha256`."""
        if not isinstance(name, str) or not BACKUP_FILE.fullmatch(name):
            raise SignerError(f"{str(name)[:60]!r} is not a backup file name")
        p = self.dir / name
        if not p.is_file():
            raise SignerError(f"the signer has not been handed {name}")
        data = p.read_bytes()
        if sha256_hex(data) != sha256:
            raise SignerError(f"{name} on the signer is not the file planned (its SHA-256 "
                              "differs): hand it over again")
        return data
