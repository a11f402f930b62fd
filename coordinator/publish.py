"""The public keys a registry publishes: each new key's PEM, and its DNSKEY and DS RRs where the
key manager knows its role and zone.

Read from the `hsm.generate` results the journal holds (their `public_keys`: locator, `spki`
base64 SubjectPublicKeyInfo DER, and where the backend knows them `role`, `zone` and
`dnssec_algorithm`), so `keyrite keys` and the Key Gen Log drive's files are rebuilt from the
record alone, never asked of the HSM again. The RRs are made by dnspython (`make_dnskey`,
`make_ds`): their wire and text forms and the DS digest are its job, not ours to hand-roll.
Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

with warnings.catch_warnings():  # dnspython imports its DSA support, which cryptography deprecates
    warnings.simplefilter("ignore")
    import dns.dnssec
    import dns.name
    import dns.rdata

#: DNSKEY flags: a KSK carries SEP (257), a ZSK only ZONE (256); a CSK is published as a KSK.
FLAGS = {"KSK": 257, "CSK": 257, "ZSK": 256}
#: The DNSSEC algorithm a key gets when its backend does not say: RSASHA256, ECDSAP256SHA256.
DEFAULT_ALGORITHM = {"RSA": 8, "EC": 13}
FORMATS = ("pem", "dnskey", "ds")
#: The files the Key Gen Log drive gets beside the backup (dnskey/ds only when there are roles).
FILES = {"pem": "public-keys.pem", "dnskey": "dnskey.txt", "ds": "ds.txt"}


class PublishError(ValueError):
    """A generate result's public key that cannot be read (the journal says what it says)."""


@dataclass(frozen=True)
class PublicKey:
    locator: str
    spki: bytes  # SubjectPublicKeyInfo DER
    step: int = 0  # the hsm.generate step that made it
    role: str | None = None  # KSK, ZSK or CSK where the key manager knows it
    zone: str | None = None  # the owner name of its DNSKEY, where known
    dnssec_algorithm: int | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.spki).hexdigest()

    @property
    def publishes_rrs(self) -> bool:
        """Whether it gets a DNSKEY (and, as a KSK, a DS): only with a role and an owner name."""
        return self.role in FLAGS and bool(self.zone)

    def pem(self) -> str:
        """`# locator` then the PEM block: a reader of the file knows which key each is."""
        key = serialization.load_der_public_key(self.spki)
        body = key.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return f"# {self.locator}\n{body}"

    def dnskey(self) -> dns.rdata.Rdata:
        if not self.publishes_rrs:
            raise PublishError(f"key {self.locator} has no role and zone: no DNSKEY")
        assert self.role is not None
        key = serialization.load_der_public_key(self.spki)
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise PublishError(f"key {self.locator} is neither RSA nor EC")
        alg = self.dnssec_algorithm or DEFAULT_ALGORITHM[
            "RSA" if isinstance(key, rsa.RSAPublicKey) else "EC"]
        return dns.dnssec.make_dnskey(key, alg, flags=FLAGS[self.role])

    def dnskey_rr(self) -> str:
        """The DNSKEY RR in zone-file text: `owner. IN DNSKEY 257 3 8 ...`."""
        return f"{self._owner().to_text()} IN DNSKEY {self.dnskey().to_text()}"

    def ds_rr(self) -> str | None:
        """The DS RR (SHA-256) of a KSK; None for a ZSK."""
        if self.role not in ("KSK", "CSK"):
            return None
        ds = dns.dnssec.make_ds(self._owner(), self.dnskey(), "SHA256")
        return f"{self._owner().to_text()} IN DS {ds.to_text()}"

    def _owner(self) -> dns.name.Name:
        return dns.name.from_text(str(self.zone))


def keys_from_results(results: Iterable[tuple[int, Mapping[str, Any]]]) -> list[PublicKey]:
    """Every public key of these (step, hsm.generate result) pairs, in order. A result written
    before results carried public keys has none (its keys are simply not published)."""
    out = []
    for step, r in results:
        for k in r.get("public_keys", []) or []:
            out.append(key_from_entry(step, k))
    return out


def key_from_entry(step: int, k: Any) -> PublicKey:
    if not isinstance(k, Mapping) or not isinstance(k.get("locator"), str):
        raise PublishError(f"step {step}: a public key entry without a locator")
    loc = k["locator"]
    try:  # re-encoded: the digest the report prints is always of the SPKI DER
        key = serialization.load_der_public_key(
            base64.b64decode(str(k.get("spki", "")), validate=True))
        spki = key.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
    except (binascii.Error, ValueError) as e:
        raise PublishError(f"step {step}: key {loc}'s public key does not read: {e}") from None
    alg = k.get("dnssec_algorithm")
    return PublicKey(locator=loc, spki=spki, step=step,
                     role=k["role"] if isinstance(k.get("role"), str) else None,
                     zone=k["zone"] if isinstance(k.get("zone"), str) else None,
                     dnssec_algorithm=alg if type(alg) is int else None)


def render(keys: Sequence[PublicKey], fmt: str) -> str:
    """All of `keys` in one format: PEMs of every key; DNSKEY RRs of those with a role and
    zone; DS RRs of the KSKs among them. Empty text if none has one."""
    if fmt == "pem":
        return "".join(k.pem() for k in keys)
    if fmt == "dnskey":
        return "".join(k.dnskey_rr() + "\n" for k in keys if k.publishes_rrs)
    if fmt == "ds":
        lines = [k.ds_rr() for k in keys if k.publishes_rrs]
        return "".join(x + "\n" for x in lines if x)
    raise PublishError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def files(keys: Sequence[PublicKey]) -> dict[str, bytes]:
    """What the Key Gen Log drive gets: public-keys.pem always when there are keys, dnskey.txt
    and ds.txt only when some key has a role and zone."""
    if not keys:
        return {}
    out = {FILES["pem"]: render(keys, "pem").encode()}
    if any(k.publishes_rrs for k in keys):
        for fmt in ("dnskey", "ds"):
            text = render(keys, fmt)
            if text:
                out[FILES[fmt]] = text.encode()
    return out

