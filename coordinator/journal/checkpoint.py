"""C2SP tlog checkpoints (c2sp.org/tlog-checkpoint): the note text a journal checkpoint signs.

    <origin>
    <tree size, decimal, no leading zeros>
    <base64 RFC 6962 root hash>

Extension lines are allowed by the format and ignored here; the journal never writes them (the
spec advises against them: monitors cannot audit them).

Officers' consoles cosign checkpoints (c2sp.org/tlog-cosignature, the Ed25519 `cosignature/v1`
type): a cosignature is a note signature line whose key id is
SHA-256(name || "\n" || 0x04 || public key)[:4] and whose signature is the 8-byte big-endian
timestamp followed by the Ed25519 signature over "cosignature/v1\ntime <timestamp>\n" and the
checkpoint's note text. Pure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from coordinator.journal.note import valid_name

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


# --- cosignatures (c2sp.org/tlog-cosignature, Ed25519, cosignature/v1) ---------------------------
#: the signature type byte of a timestamped Ed25519 checkpoint cosignature (c2sp.org/signed-note)
COSIGNATURE_V1 = 0x04
COSIGNATURE_HEADER = "cosignature/v1"
_MAX_TIMESTAMP = 2**63 - 1
_SIGNATURE_BYTES = 4 + 8 + 64  # key id, timestamp, Ed25519 signature


class BadCosignature(ValueError):
    """A cosignature line that is malformed, by another key, or does not verify."""


def cosigner_name(origin: str, seat: str) -> str:
    """The key name a seat cosigns the journal's checkpoints under: `<origin>/<seat>` (a
    schema-less URL below the log's own, as the spec advises), e.g.
    `keyrite.ceremony/KSK-2026/KSO1`."""
    name = f"{origin}/{seat}"
    if not valid_name(name):
        raise ValueError(f"cosigner name {name!r} is empty or has a space or '+'")
    return name


def cosignature_key_id(name: str, public_key: Ed25519PublicKey) -> int:
    """SHA-256(<name> || "\\n" || 0x04 || 32-byte Ed25519 public key)[:4], big-endian."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([COSIGNATURE_V1]) + raw).digest()
    return int.from_bytes(digest[:4], "big")


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header line, the timestamp line, then the checkpoint's
    whole note text (its final newline included, no signature lines)."""
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n{text}".encode()


def cosign(text: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
    """The cosignature of the checkpoint note text `text` by `key` under `name` at `timestamp`
    (POSIX seconds): the signature line `— <name> base64(key id || u64 timestamp || signature)`,
    without its newline (append it and a newline to the signed note to get the cosigned note)."""
    Checkpoint.parse(text)  # a checkpoint's text, nothing else
    if not valid_name(name):
        raise ValueError(f"cosigner name {name!r} is empty or has a space or '+'")
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError(f"timestamp {timestamp} is out of range")
    kid = cosignature_key_id(name, key.public_key())
    sig = key.sign(cosigned_message(text, timestamp))
    raw = kid.to_bytes(4, "big") + timestamp.to_bytes(8, "big") + sig
    return f"— {name} {base64.b64encode(raw).decode()}"


def open_cosignature(line: str, text: str, name: str, public_key: Ed25519PublicKey) -> int:
    """Check that `line` is `public_key`'s cosignature under `name` of the checkpoint note text
    `text`; return its timestamp. Raises BadCosignature saying why not."""
    prefix = f"— {name} "
    if not line.startswith(prefix):
        raise BadCosignature(f"it is not a signature line by {name}")
    try:
        raw = base64.b64decode(line[len(prefix):], validate=True)
    except (binascii.Error, ValueError):
        raise BadCosignature("its signature is not base64") from None
    if len(raw) != _SIGNATURE_BYTES:
        raise BadCosignature(f"its signature is {len(raw)} bytes, not {_SIGNATURE_BYTES} "
                             "(key id, timestamp, Ed25519 signature)")
    if int.from_bytes(raw[:4], "big") != cosignature_key_id(name, public_key):
        raise BadCosignature(f"its key id is not that of {name}'s enrolled key "
                             "(cosignature/v1)")
    timestamp = int.from_bytes(raw[4:12], "big")
    if timestamp > _MAX_TIMESTAMP:
        raise BadCosignature("its timestamp exceeds 2^63 - 1")
    try:
        public_key.verify(raw[12:], cosigned_message(text, timestamp))
    except InvalidSignature:
        raise BadCosignature(f"it does not verify against {name}'s enrolled key") from None
    return timestamp
