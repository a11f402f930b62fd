"""The signer's SSH host key, and its fingerprint as OpenSSH prints it.

Officers compare the fingerprint `info()` reports with the one pinned in the script, so it must be
character for character what `ssh-keygen -lf` shows: `SHA256:` and unpadded base64 of the
SHA-256 of the public key blob (and the legacy `MD5:aa:bb:...` form for older records).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_ssh_private_key,
)

from signer_shim.interface import SignerError


def ensure_host_key(path: Path) -> Path:
    """Create an Ed25519 host key in OpenSSH format at `path` unless one is there (mode 0600)."""
    path = Path(path)
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        pub = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
        Path(f"{path}.pub").write_bytes(pub + b" keyrite-signer\n")
    return path


def _public_blob(path: Path) -> bytes:
    key = load_ssh_private_key(Path(path).read_bytes(), password=None)
    line = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def host_key_fingerprint(path: Path) -> str:
    digest = hashlib.sha256(_public_blob(path)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_key_md5(path: Path) -> str:
    h = hashlib.md5(_public_blob(path)).hexdigest()
    return "MD5:" + ":".join(h[i : i + 2] for i in range(0, 32, 2))


def signer_info(name: str, role: str, host_key_path: Path, backend: str,
                repository: str) -> dict[str, Any]:
    """What a signer says of itself (`Signer.info`), the same for every backend."""
    if not Path(host_key_path).exists():
        raise SignerError(f"the signer's host key {host_key_path} does not exist")
    return {"name": name, "role": role, "host_key": host_key_fingerprint(host_key_path),
            "host_key_md5": host_key_md5(host_key_path), "backend": backend,
            "repository": repository}
