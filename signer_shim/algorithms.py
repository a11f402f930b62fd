"""The key types a signer makes, named as `ods-hsmutil list` names them.

Kept apart from the worker so planning, the key-state file and the fixture can check a type
without importing python-pkcs11.
"""

from __future__ import annotations

from dataclasses import dataclass

#: DER of the named-curve OID 1.2.840.10045.3.1.7 (secp256r1), as CKA_EC_PARAMS holds it.
P256_EC_PARAMS = bytes.fromhex("06082a8648ce3d030107")


@dataclass(frozen=True)
class Algorithm:
    name: str  # "RSA/2048"
    kind: str  # "RSA" | "EC"
    bits: int  # RSA modulus bits, EC field bits
    ec_params: bytes | None = None  # CKA_EC_PARAMS for EC keys


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("RSA/1024", "RSA", 1024),
        Algorithm("RSA/2048", "RSA", 2048),
        Algorithm("RSA/3072", "RSA", 3072),
        Algorithm("RSA/4096", "RSA", 4096),
        Algorithm("ECDSA/P-256", "EC", 256, P256_EC_PARAMS),
    )
}


def algorithm(name: str) -> Algorithm:
    """The algorithm called `name`; a ValueError naming the known ones otherwise."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        known = ", ".join(sorted(ALGORITHMS))
        raise ValueError(f"unknown key algorithm {name!r} (known: {known})") from None


def rsa_name(bits: int) -> str:
    return f"RSA/{bits}"


def ec_name(ec_params: bytes) -> str:
    for a in ALGORITHMS.values():
        if a.ec_params == ec_params:
            return a.name
    return f"ECDSA/{ec_params.hex()}"
