"""The wrap backup: every key wrapped under a backup KEK that exists whole only inside HSMs.

Why: a token that does not hand out its files (any real HSM) cannot be backed up as a token
directory. Its keys can leave it wrapped, if they were made extractable-but-only-wrapped
(CKA_EXTRACTABLE, CKA_SENSITIVE, CKA_WRAP_WITH_TRUSTED) and the wrapping key is one the token's SO
marked CKA_TRUSTED. That key, the backup KEK (AES-256), is drawn from the CSPRNG in memory, split
at once into M-of-N SLIP-39 shares (shamir-mnemonic, the reference implementation) for the KSOs,
imported into the token, and wiped: outside an HSM it exists only as shares, and whole only in
memory while it is being imported (at its creation and at a restore).

Archive (`key-backup-YYYY-MM-DD.tar.gz`, members under `key-backup-YYYY-MM-DD/`; docs/signer.md,
"Wrap backups"):

    manifest.json   format "keyrite-wrap-backup-v1", file, operation digest, token fingerprint,
                    repository, the KEK's ID, label, mechanism and share scheme (threshold,
                    shares), SHA-256 of each other member
    wrapped.json    per key: locator, label, public_label, type, the private key's attributes,
                    public_der (SPKI, base64), wrapped (CKM_AES_KEY_WRAP_PAD output, base64)
    keys.json       per key: locator, label, type, public_key_sha256 (as tokendir backups have)
    keystate.json   the signer's key-state file
    inventory.txt   the key list in `ods-hsmutil list` layout

Nothing in it is secret without the KEK, so it needs no password; the private keys are in it
only as RFC 5649 ciphertext (tests scan it for a key's private numbers).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import shamir_mnemonic
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

from signer_shim.backup import archive_files
from signer_shim.interface import SignerError

FORMAT = "keyrite-wrap-backup-v1"
KEK_LABEL = "keyrite-backup-kek"
MECHANISM = "CKM_AES_KEY_WRAP_PAD"
MEMBERS = ("manifest.json", "wrapped.json", "keys.json", "keystate.json", "inventory.txt")
#: Where keys that cannot leave a token wrapped are backed up instead (docs/signer.md).
VENDOR_ROUTES = ("Thales Luna: a Luna Backup HSM (cloning under the domain)",
                 "Entrust nShield: the Security World (kmdata, under the ACS)",
                 "Utimaco: the MBK (master backup key) backup")
#: A fixed message each restored key signs, checked against the archive's public key.
_CHALLENGE = b"keyrite wrap restore: does this private key belong to this public key?"

Call = Callable[[str, dict[str, Any]], Any]
Sign = Callable[[str, bytes, str], bytes]


@dataclass(frozen=True)
class KekShares:
    """The new KEK's public ID and its shares: each goes to one KSO, never two to one."""

    kek_id: str
    threshold: int
    shares: tuple[str, ...] = field(repr=False)


def wipe(buf: bytearray) -> None:
    """Zero a secret in place (the reason secrets here are bytearrays)."""
    buf[:] = bytes(len(buf))


def kek_id_of(kek: bytes | bytearray) -> str:
    """The KEK's CKA_ID and the archive's name for it: a one-way digest of the key (16 bytes),
    so a set of shares can be matched to its backup before any token is touched."""
    return hashlib.sha256(b"keyrite backup KEK\0" + bytes(kek)).digest()[:16].hex()


def split_kek(kek: bytearray, threshold: int, count: int) -> tuple[str, ...]:
    """The KEK as `count` SLIP-39 mnemonics of one group, any `threshold` of which rebuild it."""
    if not 2 <= threshold <= count <= 16:
        raise SignerError(f"KEK shares: need 2 <= threshold ({threshold}) <= shares ({count}) "
                          "<= 16")
    (group,) = shamir_mnemonic.generate_mnemonics(1, [(threshold, count)], bytes(kek))
    return tuple(group)


def combine_shares(mnemonics: Sequence[str]) -> bytearray:
    """The KEK from `threshold` shares, in memory; refused with a SignerError saying why."""
    ms = [" ".join(m.split()) for m in mnemonics]
    try:
        shares = [shamir_mnemonic.share.Share.from_mnemonic(m) for m in ms]
    except shamir_mnemonic.MnemonicError as e:
        raise SignerError(f"a KEK share is not a valid SLIP-39 share: {_quiet(e)}") from None
    if not shares:
        raise SignerError("no KEK shares were given")
    need = shares[0].member_threshold
    if len({s.index for s in shares}) < need:
        raise SignerError(f"the backup KEK needs {need} different shares; "
                          f"{len({s.index for s in shares})} were given")
    try:
        return bytearray(shamir_mnemonic.combine_mnemonics(ms))
    except shamir_mnemonic.MnemonicError as e:
        raise SignerError(f"the shares do not rebuild a KEK (a wrong or foreign share?): "
                          f"{_quiet(e)}") from None


def _quiet(e: Exception) -> str:
    """shamir-mnemonic's message, unless it quotes a word of the share (such messages reach
    the operation journal)."""
    text = str(e)
    return "a word is not in the SLIP-39 word list" if "mnemonic word" in text else text


def create_kek(call: Call, so_pin: str, user_pin: str, threshold: int, count: int,
               before_import: Callable[[KekShares], None] | None = None) -> KekShares:
    """Draw the KEK, split it, import it as the SO (trusted, never extractable), wipe it.
    `before_import` gets the shares before the token is touched (the shim seals and records
    them there, so that a KEK never lands on a token without its shares on record)."""
    kek = bytearray(os.urandom(32))
    try:
        shares = split_kek(kek, threshold, count)
        kid = kek_id_of(kek)
        if before_import is not None:
            before_import(KekShares(kid, threshold, shares))
        call("import_kek", {"value": base64.b64encode(kek).decode(), "kek_id": kid,
                            "label": KEK_LABEL, "so_pin": so_pin, "user_pin": user_pin})
    finally:
        wipe(kek)
    found = call("find_kek", {"kek_id": kid})
    if not (found.get("present") and found.get("trusted") and not found.get("extractable")):
        raise SignerError(f"the backup KEK on the token is not as asked: {found}")
    return KekShares(kid, threshold, shares)


# -- plan-time refusals -----------------------------------------------------------------------

def wrap_problems(description: str, mechanisms: Iterable[str], rejected: Iterable[str],
                  keys: Mapping[str, Mapping[str, bool]]) -> list[str]:
    """Why a wrap backup of this token is impossible ([] if it is not): the mechanism, the
    trust attributes, and every key that the token will not let out wrapped."""
    out = []
    if MECHANISM.removeprefix("CKM_") not in set(mechanisms):
        out.append(f"the {description} has no {MECHANISM}")
    missing = sorted({"TRUSTED", "WRAP_WITH_TRUSTED"} & set(rejected))
    if missing:
        out.append(f"the {description} rejects {', '.join('CKA_' + m for m in missing)}")
    stuck = sorted(loc for loc, a in keys.items() if not a.get("extractable"))
    if stuck:
        out.append(f"{len(stuck)} key(s) are CKA_EXTRACTABLE=false and cannot be wrapped "
                   f"({', '.join(stuck[:5])}{', ...' if len(stuck) > 5 else ''})")
    loose = sorted(loc for loc, a in keys.items()
                   if a.get("extractable") and not a.get("wrap_with_trusted"))
    if loose:
        out.append(f"{len(loose)} key(s) are extractable without CKA_WRAP_WITH_TRUSTED "
                   f"({', '.join(loose[:5])}): any wrapping key could export them")
    return out


def refuse_wrap(what: str, problems: Sequence[str]) -> None:
    if problems:
        raise SignerError(f"{what} by key wrapping is refused: {'; '.join(problems)}. Back "
                          f"these keys up the vendor's way instead: {'; '.join(VENDOR_ROUTES)}")


# -- the archive ------------------------------------------------------------------------------

def build_archive(*, name: str, operation: str, token: str, repository: str, kek_id: str,
                  kek_scheme: Mapping[str, Any], wrapped: Sequence[Mapping[str, Any]],
                  keys: Sequence[Mapping[str, Any]], keystate: bytes, inventory: str) -> bytes:
    """The `.tar.gz` bytes of wrap backup `name` (nothing is written here)."""
    if sorted(k["locator"] for k in keys) != sorted(w["locator"] for w in wrapped):
        raise SignerError("wrap backup: the wrapped keys are not the listed keys")
    members = {"wrapped.json": _json(list(wrapped)), "keys.json": _json(list(keys)),
               "keystate.json": keystate, "inventory.txt": inventory.encode()}
    manifest = {
        "format": FORMAT, "file": name, "operation": operation, "token": token,
        "repository": repository,
        "kek": {"id": kek_id, "label": KEK_LABEL, "mechanism": MECHANISM,
                "key": "AES-256, CKA_TRUSTED, never extractable", **dict(kek_scheme)},
        "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in members.items()},
    }
    members = {"manifest.json": _json(manifest), **members}
    stem = name.removesuffix(".tar.gz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for member in MEMBERS:
            info = tarfile.TarInfo(f"{stem}/{member}")
            info.size, info.mode = len(members[member]), 0o644
            tar.addfile(info, io.BytesIO(members[member]))
    return buf.getvalue()


@dataclass(frozen=True)
class WrapArchive:
    manifest: dict[str, Any]
    wrapped: list[dict[str, Any]]
    keys: list[dict[str, Any]]
    keystate: bytes
    inventory: str


def is_wrap_archive(archive: bytes) -> bool:
    try:
        return read_archive(archive) is not None
    except SignerError:
        return False


def read_archive(archive: bytes) -> WrapArchive:
    """A wrap backup's members, each checked against the manifest's digest."""
    out = archive_files(archive, MEMBERS, "the wrap backup", SignerError)
    if set(out) != set(MEMBERS):
        raise SignerError(f"the wrap backup lacks {sorted(set(MEMBERS) - set(out))}")
    manifest = json.loads(out["manifest.json"])
    if manifest.get("format") != FORMAT:
        raise SignerError(f"not a wrap backup (format {manifest.get('format')!r})")
    for member in MEMBERS[1:]:
        if hashlib.sha256(out[member]).hexdigest() != manifest["sha256"].get(member):
            raise SignerError(f"wrap backup member {member} does not match its manifest digest")
    wrapped, keys = json.loads(out["wrapped.json"]), json.loads(out["keys.json"])
    if sorted(k["locator"] for k in keys) != sorted(w["locator"] for w in wrapped):
        raise SignerError("the wrap backup's keys.json and wrapped.json list different keys")
    return WrapArchive(manifest, wrapped, keys, out["keystate.json"],
                       out["inventory.txt"].decode())


# -- restore ----------------------------------------------------------------------------------

def restore(call: Call, sign: Sign, archive: bytes, mnemonics: Sequence[str], so_pin: str,
            user_pin: str, public_sha256: Callable[[str], str]) -> dict[str, Any]:
    """Restore every key of a wrap backup onto the token `call` reaches: rebuild the KEK from
    the shares (in memory), import it as the SO unless the token has it, unwrap every key with
    its recorded attributes, and prove each is the archive's (public-key digest as keys.json
    records it; a signature of the restored private key verifies with the archive's public
    key). All or nothing: on any failure the keys unwrapped, and a KEK this call imported, are
    destroyed again."""
    got = read_archive(archive)
    kid = got.manifest["kek"]["id"]
    kek = combine_shares(mnemonics)
    try:
        if kek_id_of(kek) != kid:
            raise SignerError("the shares rebuild a KEK, but not this backup's (a share of "
                              "another backup's KEK?); nothing was restored")
        imported = not call("find_kek", {"kek_id": kid})["present"]
        if imported:
            call("import_kek", {"value": base64.b64encode(kek).decode(), "kek_id": kid,
                                "label": got.manifest["kek"]["label"], "so_pin": so_pin,
                                "user_pin": user_pin})
    finally:
        wipe(kek)
    try:
        call("unwrap_keys", {"kek_id": kid, "keys": got.wrapped})
        try:
            wrong = _wrong_keys(got, sign, public_sha256)
            if wrong:
                raise SignerError(f"restored keys are not the backup's: {', '.join(wrong[:5])}")
        except BaseException:
            call("destroy", {"locators": [w["locator"] for w in got.wrapped]})
            raise
    except BaseException:
        if imported:
            call("destroy_kek", {"kek_id": kid})
        raise
    return {"restored": sorted(w["locator"] for w in got.wrapped), "kek_id": kid,
            "kek_imported": imported}


def _wrong_keys(got: WrapArchive, sign: Sign, public_sha256: Callable[[str], str]) -> list[str]:
    listed = {k["locator"]: k for k in got.keys}
    wrong = []
    for w in got.wrapped:
        loc = w["locator"]
        if public_sha256(loc) != listed[loc]["public_key_sha256"] or not verifies(
                base64.b64decode(w["public_der"]), sign, loc):
            wrong.append(loc)
    return wrong


def verifies(spki: bytes, sign: Sign, locator: str) -> bool:
    """Does the token's private key `locator` sign so that `spki` verifies it?"""
    pub = load_der_public_key(spki)
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            sig = sign(locator, _CHALLENGE, "SHA256_RSA_PKCS")
            pub.verify(sig, _CHALLENGE, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            digest = hashlib.sha256(_CHALLENGE).digest()
            raw = sign(locator, digest, "ECDSA")
            half = len(raw) // 2
            der = encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                       int.from_bytes(raw[half:], "big"))
            pub.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        else:
            return False
    except (InvalidSignature, SignerError):
        return False
    return True


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode()
