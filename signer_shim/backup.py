"""The key backup: the SoftHSM token directory, encrypted, with the key state and the key list.

Why the token directory: it is the faithful copy of a SoftHSM token (keys are not extractable, so
key wrapping cannot move them); restored into a separate token directory it gives the same
inventory, working keys, and the PIN still enforced.

Layout of `key-backup-YYYY-MM-DD.tar.gz` (members under `key-backup-YYYY-MM-DD/`):

    manifest.json    format, operation digest, token fingerprint and label, KDF and cipher
                     parameters, SHA-256 of each other member
    token.tar.enc    AES-256-GCM(tar of the token directory), key = scrypt(password, salt)
    keystate.json    the signer's key-state file (not secret: policies, roles, states)
    inventory.txt    the key list in `ods-hsmutil list` layout
    kasp.db          (OpenDNSSEC backend only) a consistent copy of the enforcer's KASP database
    keys.json        each key's locator, label, type and public key's SHA-256, in clear: what a
                     restore's plan lists before the password decrypts anything (both backends;
                     older backups lack it)

The GCM associated data binds the format, the token fingerprint and the KDF parameters, so a
manifest edited to weaken the KDF or to claim another token fails to decrypt. A wrong password and
a damaged file are indistinguishable by design: both are refused with one message.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ceremony.digests import canonical_json
from signer_shim.pkcs11.softhsm import write_conf

FORMAT = "keyrite-key-backup-v1"
#: scrypt cost: N=2^17, r=8, p=1 (128 MiB, well under a second here); recorded in the manifest.
DEFAULT_KDF = {"name": "scrypt", "n": 2**17, "r": 8, "p": 1, "length": 32}
MEMBERS = ("manifest.json", "token.tar.enc", "keystate.json", "inventory.txt")
#: Members a backend may add (`build_archive(extra=...)`); digested in the manifest like the rest.
OPTIONAL_MEMBERS = ("kasp.db", "keys.json")


class BackupError(ValueError):
    """A backup that cannot be written or read as asked."""


@dataclass(frozen=True)
class Restored:
    softhsm2_conf: Path  # a config naming the restored token directory only
    tokendir: Path
    manifest: dict[str, Any]
    keystate: bytes
    inventory: str
    extra: dict[str, bytes] = field(default_factory=dict)  # optional members, e.g. kasp.db


def _derive(password: str, kdf: Mapping[str, Any]) -> bytes:
    if kdf.get("name") != "scrypt":
        raise BackupError(f"unknown KDF {kdf.get('name')!r}")
    return Scrypt(salt=base64.b64decode(kdf["salt"]), length=kdf["length"], n=kdf["n"],
                  r=kdf["r"], p=kdf["p"]).derive(password.encode())


def _aad(token: str, kdf: Mapping[str, Any]) -> bytes:
    return canonical_json({"format": FORMAT, "token": token, "kdf": dict(kdf)})


def tar_directory(directory: Path, arcname: str) -> bytes:
    """A tar of `directory` (regular files and directories only), members in sorted order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(directory, arcname=arcname, recursive=False)
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = Path(root) / name
                tar.add(path, arcname=f"{arcname}/{path.relative_to(directory)}", recursive=False)
    return buf.getvalue()


def build_archive(
    *, name: str, operation: str, token: str, repository: str, tokendir: Path,
    keystate: bytes, inventory: str, password: str, kdf: Mapping[str, Any] | None = None,
    extra: Mapping[str, bytes] | None = None,
) -> bytes:
    """The `.tar.gz` bytes for backup file `name` (nothing is written here). `extra`: optional
    members (names from OPTIONAL_MEMBERS, not secret: stored in clear, digested)."""
    if not password:
        raise BackupError("the backup password is empty")
    extra = dict(extra or {})
    if set(extra) - set(OPTIONAL_MEMBERS):
        raise BackupError(f"unknown optional members {sorted(set(extra) - set(OPTIONAL_MEMBERS))}")
    kdf = {**(kdf or DEFAULT_KDF), "salt": base64.b64encode(os.urandom(16)).decode()}
    nonce = os.urandom(12)
    plain = tar_directory(tokendir, "tokens")
    sealed = AESGCM(_derive(password, kdf)).encrypt(nonce, plain, _aad(token, kdf))
    members = {"token.tar.enc": sealed, "keystate.json": keystate,
               "inventory.txt": inventory.encode(), **extra}
    manifest = {
        "format": FORMAT, "file": name, "operation": operation, "token": token,
        "repository": repository, "kdf": kdf,
        "cipher": {"name": "AES-256-GCM", "nonce": base64.b64encode(nonce).decode(),
                   "aad": "canonical JSON of {format, token, kdf}"},
        "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in members.items()},
    }
    members = {"manifest.json": json.dumps(manifest, indent=1, sort_keys=True).encode(), **members}
    stem = name.removesuffix(".tar.gz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for member in MEMBERS + tuple(m for m in OPTIONAL_MEMBERS if m in extra):
            data = members[member]
            info = tarfile.TarInfo(f"{stem}/{member}")
            info.size, info.mode = len(data), 0o600 if member == "token.tar.enc" else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def archive_files(archive: bytes, allowed: Sequence[str], what: str,
                  error: type[Exception] = BackupError) -> dict[str, bytes]:
    """Each file of a gzipped tar archive by its base name: regular files of the `allowed`
    names only, each once; anything else, or an archive that does not read, is `error`."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for info in tar.getmembers():
                member = PurePosixPath(info.name).name
                if not info.isfile() or member not in allowed or member in out:
                    raise error(f"unexpected member {info.name!r} in {what}")
                f = tar.extractfile(info)
                assert f is not None
                out[member] = f.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise error(f"not a readable backup archive: {e}") from None
    return out


def read_members(archive: bytes) -> dict[str, bytes]:
    """The four members of a backup archive (and any optional ones), checked against the
    manifest's digests."""
    out = archive_files(archive, MEMBERS + OPTIONAL_MEMBERS, "the backup")
    if not set(MEMBERS) <= set(out):
        raise BackupError(f"backup lacks {sorted(set(MEMBERS) - set(out))}")
    manifest = json.loads(out["manifest.json"])
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}")
    unlisted = sorted(m for m in out if m != "manifest.json" and m not in manifest["sha256"])
    if unlisted:
        raise BackupError(f"backup members {unlisted} are not in the manifest")
    for member, digest in manifest["sha256"].items():
        if member not in out:
            raise BackupError(f"backup lacks {member}, which its manifest lists")
        if hashlib.sha256(out[member]).hexdigest() != digest:
            raise BackupError(f"backup member {member} does not match its manifest digest")
    return out


def read_manifest(archive: bytes) -> dict[str, Any]:
    """The manifest of a backup of either method: the token directory's, or a wrap backup's
    (signer_shim.wrap), so that a retried backup recognises its own archive."""
    try:
        return json.loads(read_members(archive)["manifest.json"])
    except BackupError as first:
        from signer_shim.interface import SignerError
        from signer_shim.wrap import read_archive
        try:
            return read_archive(archive).manifest
        except SignerError:
            raise first from None


def sha256sum_line(digest: str, name: str) -> str:
    """What `sha256sum` prints and `sha256sum -c` checks: hex, two spaces, file name."""
    return f"{digest}  {name}\n"


def restore_backup(archive: Path, password: str, target_dir: Path) -> Restored:
    """Unpack a backup's token into `target_dir/tokens`, with `target_dir/softhsm2.conf` naming it.

    For the restore drill: the target must be a *separate* token directory (SoftHSM aborts when
    a copy sits beside its original). Refuses a target that already holds a token directory.
    """
    members = read_members(Path(archive).read_bytes())
    manifest = json.loads(members["manifest.json"])
    kdf, cipher = manifest["kdf"], manifest["cipher"]
    if cipher.get("name") != "AES-256-GCM":
        raise BackupError(f"unknown cipher {cipher.get('name')!r}")
    try:
        plain = AESGCM(_derive(password, kdf)).decrypt(
            base64.b64decode(cipher["nonce"]), members["token.tar.enc"],
            _aad(manifest["token"], kdf))
    except InvalidTag:
        raise BackupError("wrong backup password, or the backup is damaged") from None
    target_dir = Path(target_dir).absolute()
    tokendir = target_dir / "tokens"
    if tokendir.exists():
        raise BackupError(f"{tokendir} already exists: restore into an empty directory")
    target_dir.mkdir(parents=True, exist_ok=True)
    _safe_extract(plain, target_dir)
    conf = write_conf(target_dir / "softhsm2.conf", tokendir)
    return Restored(conf, tokendir, manifest, members["keystate.json"],
                    members["inventory.txt"].decode(),
                    {m: members[m] for m in OPTIONAL_MEMBERS if m in members})


def _safe_extract(tar_bytes: bytes, target: Path) -> None:
    """Extract only plain files and directories under `tokens/` (Python 3.11.2 has no tar
    extraction filters, so the checks are here)."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for info in tar.getmembers():
            p = PurePosixPath(info.name)
            if p.is_absolute() or ".." in p.parts or p.parts[0] != "tokens":
                raise BackupError(f"unsafe path {info.name!r} in the token archive")
            dest = target / p
            if info.isdir():
                dest.mkdir(mode=0o700, parents=True, exist_ok=True)
            elif info.isfile():
                dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                f = tar.extractfile(info)
                assert f is not None
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(f.read())
            else:
                raise BackupError(f"unexpected {info.name!r} (not a file) in the token archive")
