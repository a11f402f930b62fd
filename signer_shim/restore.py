"""`hsm.restore`'s pure rules: what a backup holds, the plan officers approve, and the check of
what the restore changed. No device, no file: the caller hands in bytes and listings.

Why the plan lists every key with its public key's digest: the quorum approves exactly which
keys will appear on this signer's token. The key list comes from the backup's clear members
(`inventory.txt`, and `keys.json` where the backup has one: label and public-key digest per
key), so it is known before the password decrypts anything; after decrypting, the restored token
must hold exactly those keys, and the live token afterwards exactly those too.

What a restore may do to the token it lands on: the SoftHSM2 token-directory backup *replaces*
the token (its identity, PINs and keys are the backup's), so a token holding a key the backup
lacks is refused (that key would be lost); a fresh token, or one holding some of the backup's
keys only, is replaced and then holds exactly the backup's keys.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from keyrite.sealing import SealError, z85_decode
from signer_shim.backup import BackupError, read_members
from signer_shim.interface import SignerError
from signer_shim.pkcs11.inventory import diff
from signer_shim.wrap import FORMAT as WRAP_FORMAT
from signer_shim.wrap import is_wrap_archive, read_archive

_LOCATOR = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: One listed key of a restore plan, exactly these fields.
KEY_FIELDS = frozenset({"locator", "label", "type", "public_key_sha256"})
#: What a wrap backup's restore adds to the plan: `method` ("wrap"), `kek` (the manifest's
#: {"id", "threshold", "shares"}) and `share_key` (the signer's, for the KSOs' boxes).
WRAP_RESTORE_FIELDS = frozenset({"method", "kek", "share_key"})
_KEK_ID = re.compile(r"[0-9a-f]{32}")
#: The largest backup a coordinator may hand a signer (bytes): bounds the inputs directory.
MAX_BACKUP = 256 << 20


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_listing(text: str) -> list[tuple[str, str]]:
    """(locator, type) of each key in an `ods-hsmutil list` layout (`Inventory.render`)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and _LOCATOR.fullmatch(parts[1]):
            out.append((parts[1], parts[2]))
    return out


def backup_keys(members: Mapping[str, bytes]) -> list[dict[str, Any]]:
    """Every key a backup holds, sorted by locator: from `keys.json` if the backup has one (it
    must list the keys `inventory.txt` lists), else from `inventory.txt` with no label or
    public-key digest recorded (backups written before `keys.json`)."""
    listed = parse_listing(members["inventory.txt"].decode())
    if "keys.json" not in members:
        return [{"locator": loc, "label": None, "type": t, "public_key_sha256": None}
                for loc, t in sorted(listed)]
    try:
        rows = json.loads(members["keys.json"])
        keys = [{k: r[k] for k in sorted(KEY_FIELDS)} for r in rows]
    except (ValueError, TypeError, KeyError) as e:
        raise SignerError(f"the backup's keys.json is not a key list: {e}") from None
    if sorted((k["locator"], k["type"]) for k in keys) != sorted(listed):
        raise SignerError("the backup's keys.json and inventory.txt list different keys")
    return sorted(keys, key=lambda k: str(k["locator"]))


def plan_restore(token: str, name: str, archive: bytes, *,
                 wrap_ok: bool = False) -> dict[str, Any]:
    """The restore of backup `name` (its bytes `archive`) onto token `token`: what the quorum
    approves. Reads only the backup's clear members (no password). A wrap backup
    (signer_shim.wrap) is planned only when `wrap_ok` (the signer's method is wrap): the same
    key list, plus `method` "wrap" and the manifest's `kek` {id, threshold, shares}; the
    signer adds its `share_key`, to which the KSOs seal the shares they bring."""
    try:
        members = read_members(archive)
    except BackupError as e:
        if not is_wrap_archive(archive):
            raise SignerError(f"{name}: {e}") from None
        if not wrap_ok:
            raise SignerError(f"{name} is a wrap backup: it is restored with the KSOs' KEK "
                              "shares onto a signer whose backup.method is \"wrap\"") from None
        got = read_archive(archive)  # a wrap backup: the same clear key list
        members = {"manifest.json": json.dumps(got.manifest).encode(),
                   "keys.json": json.dumps(got.keys).encode(),
                   "inventory.txt": got.inventory.encode()}
    manifest = json.loads(members["manifest.json"])
    op = {"op": "restore", "token": token, "file": name, "sha256": sha256_hex(archive),
          "backup_token": str(manifest["token"]), "repository": str(manifest["repository"]),
          "keys": backup_keys(members)}
    if manifest.get("format") == WRAP_FORMAT:  # the caller adds its share_key
        kek = manifest["kek"]
        op.update(method="wrap", kek={"id": str(kek["id"]), "threshold": int(kek["threshold"]),
                                      "shares": int(kek["shares"])})
    return op


def check_restore_shape(op: Mapping[str, Any]) -> None:
    """The restore-specific fields of an operation, well formed (planning checks the rest)."""
    if not isinstance(op["sha256"], str) or not _HEX64.fullmatch(op["sha256"]):
        raise SignerError("restore operation: sha256 must be 64 lower-case hex digits")
    for f in ("backup_token", "repository"):
        if not isinstance(op[f], str) or not op[f]:
            raise SignerError(f"restore operation: {f} must be a non-empty string")
    keys = op["keys"]
    if not isinstance(keys, list) or not all(isinstance(k, Mapping) and set(k) == KEY_FIELDS
                                             for k in keys):
        raise SignerError(f"restore operation: keys must be a list of {sorted(KEY_FIELDS)}")
    locs = [k["locator"] for k in keys]
    if not all(isinstance(x, str) and _LOCATOR.fullmatch(x) for x in locs):
        raise SignerError("restore operation: each key's locator is 32 hex digits")
    if locs != sorted(set(locs)):
        raise SignerError("restore operation: keys must be sorted by locator, each once")
    if "method" in op:
        _check_wrap_fields(op)


def _check_wrap_fields(op: Mapping[str, Any]) -> None:
    if op["method"] != "wrap":
        raise SignerError(f"restore operation: unknown method {op['method']!r}")
    kek = op["kek"]
    if (not isinstance(kek, Mapping) or set(kek) != {"id", "threshold", "shares"}
            or not isinstance(kek["id"], str) or not _KEK_ID.fullmatch(kek["id"])
            or type(kek["threshold"]) is not int or type(kek["shares"]) is not int
            or not 2 <= kek["threshold"] <= kek["shares"] <= 16):
        raise SignerError("restore operation: kek must be {id (32 hex digits), threshold, "
                          "shares} with 2 <= threshold <= shares <= 16")
    try:
        z85_decode(op["share_key"])
    except SealError:
        raise SignerError("restore operation: share_key is not a Curve25519 key") from None


def foreign_keys(on_token: Iterable[str], planned: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys on the token that the backup does not hold: a restore would lose them."""
    return sorted(set(on_token) - {str(k["locator"]) for k in planned})


def refuse_foreign(on_token: Iterable[str], planned: Sequence[Mapping[str, Any]]) -> None:
    lost = foreign_keys(on_token, planned)
    if lost:
        raise SignerError(f"this token holds {len(lost)} key(s) the backup does not "
                          f"({', '.join(lost[:5])}{', ...' if len(lost) > 5 else ''}): a "
                          "restore replaces the token and would lose them; restore onto a "
                          "fresh token")


def restored_difference(planned: Sequence[Mapping[str, Any]], got: Mapping[str, tuple[str, str]]
                        ) -> str | None:
    """Why a restored token (locator -> (type, public-key digest)) is not the plan's keys, or
    None. A key the plan records no digest for is compared by type."""
    want = {str(k["locator"]): k for k in planned}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(loc for loc in set(want) & set(got)
                   if got[loc][0] != want[loc]["type"] or
                   want[loc]["public_key_sha256"] not in (None, got[loc][1]))
    parts = []
    if missing:
        parts.append(f"lacks {len(missing)} planned key(s): {', '.join(missing[:5])}")
    if extra:
        parts.append(f"holds {len(extra)} key(s) not planned: {', '.join(extra[:5])}")
    if wrong:
        parts.append(f"{len(wrong)} key(s) differ in type or public key: "
                     f"{', '.join(wrong[:5])}")
    return "; ".join(parts) or None


def check_restored(before: Iterable[str], after: Iterable[str],
                   planned: Sequence[Mapping[str, Any]]) -> list[str]:
    """The inventory diff of a restore: nothing went, only planned keys came, and the token
    now holds exactly the planned keys. Returns the keys added."""
    added, removed = diff(before, after)
    plan = {str(k["locator"]) for k in planned}
    if removed:
        raise SignerError(f"{len(removed)} keys vanished during the restore: "
                          f"{', '.join(removed[:5])}")
    unplanned = sorted(set(added) - plan)
    if unplanned:
        raise SignerError(f"keys appeared that the backup does not hold: "
                          f"{', '.join(unplanned[:5])}")
    missing = sorted(plan - set(after))
    if missing:
        raise SignerError(f"{len(missing)} of the backup's keys are not on the token: "
                          f"{', '.join(missing[:5])}")
    return added
