"""CURVE keys for the bus: key pairs, their Z85 text, and the table of enrolled console keys.

A console's CURVE key says which officer's console is talking; the officer's Ed25519 key (in
`keyrite.keyfiles`) is what signs approvals. The two are separate on purpose: losing a console
key lets someone watch and press buttons, never approve an HSM operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import zmq
from zmq.utils import z85

__all__ = ["CurveKeyPair", "Enrolment", "check_public_key", "generate_keypair"]


@dataclass(frozen=True)
class CurveKeyPair:
    """Z85 text (40 characters) of a CURVE key pair; the secret stays out of `repr`."""

    public: str
    secret: str

    def __repr__(self) -> str:
        return f"CurveKeyPair(public={self.public!r}, secret=...)"

    @classmethod
    def from_secret(cls, secret: str) -> CurveKeyPair:
        check_public_key(secret)  # same shape
        return cls(zmq.curve_public(secret.encode()).decode(), secret)


def generate_keypair() -> CurveKeyPair:
    public, secret = zmq.curve_keypair()
    return CurveKeyPair(public.decode(), secret.decode())


def check_public_key(text: str) -> str:
    """Return `text` if it is the Z85 form of a 32-byte key, else raise ValueError."""
    if not isinstance(text, str) or len(text) != 40:
        raise ValueError(f"a CURVE key is 40 Z85 characters, not {text!r}")
    try:
        raw = z85.decode(text.encode("ascii"))
    except (UnicodeEncodeError, ValueError, KeyError, IndexError):
        raise ValueError(f"not Z85: {text!r}") from None
    if len(raw) != 32:
        raise ValueError(f"not a 32-byte key: {text!r}")
    return text


@dataclass(frozen=True)
class Enrolment:
    """Which console key belongs to which officer (seat). One key, one seat: a key listed twice
    would make attribution ambiguous, so it is refused when the table is built."""

    officers: Mapping[str, str]  # Z85 public key -> officer id

    @classmethod
    def from_pairs(cls, pairs: Mapping[str, str] | list[tuple[str, str]]) -> Enrolment:
        """`pairs`: officer id -> Z85 public key (the roster's direction)."""
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        table: dict[str, str] = {}
        for officer, key in items:
            check_public_key(key)
            if not officer or not isinstance(officer, str):
                raise ValueError(f"bad officer id {officer!r}")
            if key in table:
                raise ValueError(f"CURVE key {key} enrolled for both {table[key]} and {officer}")
            table[key] = officer
        return cls(table)

    def officer_for(self, public_z85: str) -> str | None:
        return self.officers.get(public_z85)
