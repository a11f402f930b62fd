"""Ed25519 private keys on disk: PKCS#8 PEM, optionally passphrase-encrypted.

The coordinator's checkpoint key and every officer's signing key are written the same way: created
exclusively (an existing key is never replaced, since that would orphan everything it signed),
mode 0600, fsync'd with its directory. A wrong passphrase is an error the officer can act on
(`KeyFileError` is a `BadInput`: exit 2 with the file named), never a stack trace.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from keyrite.exits import BadInput
from keyrite.files import fsync_dir


class KeyFileError(BadInput, ValueError):
    """A key file that cannot be used: not Ed25519, wrong or missing passphrase, not PEM."""


def save_private_key(
    path: str | os.PathLike[str], key: Ed25519PrivateKey, passphrase: bytes | None = None
) -> None:
    """Write `key` as PKCS#8 PEM to a new file; raises FileExistsError if `path` exists."""
    path = Path(path)
    encryption = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def load_private_key(
    path: str | os.PathLike[str], passphrase: bytes | None = None
) -> Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read the key: {e.strerror}") from None
    try:
        key = load_pem_private_key(data, password=passphrase)
    except TypeError as e:  # encrypted without a passphrase given, or the other way round
        raise KeyFileError(f"{path}: {e}") from None
    except ValueError:
        raise KeyFileError(f"{path}: not a PEM private key, or the passphrase is wrong") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key
