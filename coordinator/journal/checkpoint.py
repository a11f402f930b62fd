"""C2SP tlog checkpoints (c2sp.org/tlog-checkpoint): the note text a journal checkpoint signs.

    <origin>
    <tree size, decimal, no leading zeros>
    <base64 RFC 6962 root hash>

Extension lines are allowed by the format and ignored here; the journal never writes them (the
spec advises against them: monitors cannot audit them). Pure.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_SIZE = re.compile(r"0|[1-9][0-9]*")


class BadCheckpoint(ValueError):
    """Note text that is not a well-formed checkpoint body."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes  # 32 bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise BadCheckpoint("checkpoint text does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or any(not line for line in lines):
            raise BadCheckpoint("checkpoint needs origin, size and root, each on a non-empty line")
        origin, size, root64 = lines[:3]
        if not _SIZE.fullmatch(size):
            raise BadCheckpoint(f"tree size {size!r} is not a decimal number without leading zeros")
        try:
            root = base64.b64decode(root64, validate=True)
        except binascii.Error:
            raise BadCheckpoint(f"root hash {root64!r} is not base64") from None
        if len(root) != 32:
            raise BadCheckpoint(f"root hash is {len(root)} bytes, not 32")
        return cls(origin, int(size), root)
