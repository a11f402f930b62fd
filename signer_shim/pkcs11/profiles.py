"""Token profiles: what differs between PKCS#11 implementations, one place per token.

Why profiles and not `if` chains: every token keyrite meets differs in a few facts (which key
generation mechanisms it has, how an RSA signature must be asked for, which attributes it
rejects, whether and how its keys can be backed up). Keeping each token's facts in one record
means the signer asks "can this token do X?" and gets an answer that names the reason, and an
operator bringing a new HSM adds one record (docs/signer.md, "Bringing an untested HSM").

A profile is chosen by name in signer.toml (`pkcs11.profile`) or, when that is empty, by how
the token identifies itself (its CK_TOKEN_INFO manufacturer and model).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signer_shim.algorithms import algorithm
from signer_shim.interface import SignerError
from signer_shim.tokenid import token_fingerprint

#: The backup of the token directory (signer_shim.backup): a file copy, so only a token whose
#: keys live in files keyrite can read (SoftHSM2's file object store).
TOKENDIR = "tokendir"
#: The SHA-256 DigestInfo prefix (RFC 8017, 9.2): what CKM_SHA256_RSA_PKCS prepends itself.
SHA256_DIGESTINFO = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclass(frozen=True, kw_only=True)
class TokenProfile:
    name: str  # as signer.toml's pkcs11.profile names it
    description: str  # for the officers' messages
    module: Path  # the module's usual path on Debian
    manufacturer: str  # CK_TOKEN_INFO.manufacturerID, how the token identifies itself
    model: str  # CK_TOKEN_INFO.model
    #: key generation mechanism per algorithm kind (signer_shim.algorithms); a kind absent here
    #: is one the token cannot make, refused at plan time naming the mechanism it lacks
    keygen: Mapping[str, str]
    #: the token has no CKM_SHA256_RSA_PKCS: sign a SHA-256 DigestInfo with CKM_RSA_PKCS
    rsa_sign_digestinfo: bool = False
    #: attributes the token refuses as AttributeTypeInvalid: never put in a template
    rejected_attributes: frozenset[str] = frozenset()
    #: backup methods it supports (TOKENDIR only where the token is files keyrite can copy)
    backup_methods: tuple[str, ...] = ()
    #: why a backup is impossible, for the refusal (empty when one is possible)
    no_backup_reason: str = ""
    #: token info fields that make up the HSM fingerprint (signer_shim.tokenid)
    fingerprint_fields: tuple[str, ...] = field(
        default=("manufacturer_id", "model", "serial", "label"))

    def fingerprint(self, info: Mapping[str, Any]) -> str:
        """The HSM fingerprint from the worker's `token_info`."""
        return token_fingerprint(*(str(info[f]) for f in self.fingerprint_fields))

    def refuse_algorithms(self, names: Iterable[str]) -> None:
        """Refuse, before anything is planned, algorithms this token has no mechanism for."""
        for name in sorted(set(names)):
            kind = algorithm(name).kind
            if kind not in self.keygen:
                raise SignerError(
                    f"the {self.description} cannot generate {name} keys: it has no "
                    f"{_KEYGEN_NEEDED[kind]} (profile {self.name!r})")

    def refuse_backup(self, what: str = "a backup") -> None:
        """Refuse a backup (or its restore, or a restore drill) this token cannot make."""
        if TOKENDIR not in self.backup_methods:
            raise SignerError(f"{what} is refused: the {self.description} {self.no_backup_reason}"
                              f" (profile {self.name!r})")

    def sign_request(self, data: bytes, mechanism: str) -> tuple[bytes, str]:
        """The (data, mechanism) to hand the worker for a signature asked as `mechanism`."""
        if mechanism == "SHA256_RSA_PKCS" and self.rsa_sign_digestinfo:
            return SHA256_DIGESTINFO + hashlib.sha256(data).digest(), "RSA_PKCS"
        return data, mechanism


_KEYGEN_NEEDED = {"RSA": "CKM_RSA_PKCS_KEY_PAIR_GEN", "EC": "CKM_EC_KEY_PAIR_GEN"}

SOFTHSM2 = TokenProfile(
    name="softhsm2",
    description="SoftHSM2 token",
    module=Path("/usr/lib/softhsm/libsofthsm2.so"),
    manufacturer="SoftHSM project",
    model="SoftHSM v2",
    keygen={"RSA": "CKM_RSA_PKCS_KEY_PAIR_GEN", "EC": "CKM_EC_KEY_PAIR_GEN"},
    backup_methods=(TOKENDIR,),
)

OPENCRYPTOKI_SW = TokenProfile(
    name="opencryptoki-sw",
    description="opencryptoki software token",
    module=Path("/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so"),
    manufacturer="IBM Corp.",
    model="IBM SoftTok",
    keygen={"RSA": "CKM_RSA_PKCS_KEY_PAIR_GEN"},  # 3.8 has no EC mechanisms at all
    rsa_sign_digestinfo=True,  # no CKM_SHA256_RSA_PKCS
    rejected_attributes=frozenset({"TRUSTED", "WRAP_WITH_TRUSTED", "KEY_GEN_MECHANISM"}),
    no_backup_reason=("keeps its keys in a store keyrite does not copy (no token-directory "
                      "backup) and has no CKM_AES_KEY_WRAP_PAD to wrap them"),
)

PROFILES: Mapping[str, TokenProfile] = {p.name: p for p in (SOFTHSM2, OPENCRYPTOKI_SW)}


def by_name(name: str) -> TokenProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise SignerError(f"unknown token profile {name!r} (known: "
                          f"{', '.join(sorted(PROFILES))})") from None


def for_token(info: Mapping[str, Any]) -> TokenProfile:
    """The profile of the token that identifies itself with this `token_info`."""
    for p in PROFILES.values():
        if (str(info.get("manufacturer_id", "")).strip() == p.manufacturer
                and str(info.get("model", "")).strip() == p.model):
            return p
    raise SignerError(f"no token profile for manufacturer {info.get('manufacturer_id')!r}, "
                      f"model {info.get('model')!r}: name one in signer.toml (pkcs11.profile; "
                      f"known: {', '.join(sorted(PROFILES))}) or add one "
                      "(docs/signer.md, 'Bringing an untested HSM')")


def select(configured: str, info: Mapping[str, Any]) -> TokenProfile:
    """The configured profile, else the one the token's identity names. A configured profile
    that contradicts the token is not second-guessed: the operator may know better (a vendor
    build with another model string), and the fingerprint still names the real token."""
    return by_name(configured) if configured else for_token(info)
