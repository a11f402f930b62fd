"""Sealed boxes for KEK shares: a share encrypted to one Curve25519 key, opened only by its pair.

Shared ground of the shim (which seals each KSO's share to that KSO's console key when the backup
KEK is made, and opens the shares the KSOs bring to a restore) and the consoles (which open their
own share to show it once, and seal a typed share to the signer's share key). The console keys
are the CURVE pairs ZeroMQ already uses (Z85 text, X25519 keys), so no new key is enrolled.

A box is `base64(version ‖ ephemeral X25519 public ‖ ChaCha20-Poly1305 ciphertext)`: the key is
HKDF-SHA256 of the X25519 shared secret, salted with both public keys and bound to a `context`
(what the share is for: "keyrite kek <id> share for KSO1"), which is also the AEAD's associated
data. Each box has its own ephemeral key, so the nonce is fixed. Like libsodium's sealed boxes,
the sender is anonymous: who handed a box over is the bus's and the journal's business.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VERSION = 1
MAX_PLAINTEXT = 4096  # a SLIP-39 share of a 256-bit secret is 33 words, well under this
MAX_BOX = 4 * ((1 + 32 + MAX_PLAINTEXT + 16 + 2) // 3)  # base64 length of the largest box
_INFO = b"keyrite sealed box v1\0"
_NONCE = bytes(12)

#: ZeroMQ's Z85 alphabet (RFC 32/Z85)
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}


class SealError(ValueError):
    """A key or box that is not one, or a box this key and context do not open."""


def z85_decode(text: str) -> bytes:
    """A 32-byte key from its 40 Z85 characters."""
    if not isinstance(text, str) or len(text) != 40 or any(c not in _VALUE for c in text):
        raise SealError("a Curve25519 key is 40 Z85 characters")
    out = bytearray()
    for i in range(0, 40, 5):
        value = 0
        for c in text[i:i + 5]:
            value = value * 85 + _VALUE[c]
        if value >= 2**32:
            raise SealError("a Curve25519 key is 40 Z85 characters")
        out += value.to_bytes(4, "big")
    return bytes(out)


def z85_encode(data: bytes) -> str:
    if len(data) % 4:
        raise SealError("Z85 encodes whole groups of four bytes")
    chars = []
    for i in range(0, len(data), 4):
        value = int.from_bytes(data[i:i + 4], "big")
        group = []
        for _ in range(5):
            value, r = divmod(value, 85)
            group.append(_ALPHABET[r])
        chars.extend(reversed(group))
    return "".join(chars)


def new_pair() -> tuple[str, str]:
    """A fresh (public, secret) pair as Z85, the form console keys take."""
    secret = X25519PrivateKey.generate()
    return _public_z85(secret), z85_encode(secret.private_bytes_raw())


def public_of(secret_z85: str) -> str:
    return _public_z85(X25519PrivateKey.from_private_bytes(z85_decode(secret_z85)))


def seal(recipient_z85: str, plaintext: bytes, context: str) -> str:
    """`plaintext` sealed to the holder of `recipient_z85`'s secret, for `context` only."""
    if len(plaintext) > MAX_PLAINTEXT:
        raise SealError(f"a sealed box holds at most {MAX_PLAINTEXT} bytes")
    recipient = z85_decode(recipient_z85)
    ephemeral = X25519PrivateKey.generate()
    eph_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    except ValueError as e:  # a low-order point gives an all-zero secret
        raise SealError("that Curve25519 key cannot receive a sealed box") from e
    body = ChaCha20Poly1305(_key(shared, eph_public, recipient, context)).encrypt(
        _NONCE, plaintext, context.encode())
    return base64.b64encode(bytes([VERSION]) + eph_public + body).decode("ascii")


def open_sealed(secret_z85: str, box: str, context: str) -> bytes:
    """The plaintext of `box`, if it was sealed to this secret's public key for `context`."""
    if not isinstance(box, str) or len(box) > MAX_BOX:
        raise SealError("not a sealed box")
    try:
        raw = base64.b64decode(box.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise SealError("not a sealed box (not base64)") from e
    if len(raw) < 1 + 32 + 16 or raw[0] != VERSION:
        raise SealError("not a sealed box of this version")
    secret = X25519PrivateKey.from_private_bytes(z85_decode(secret_z85))
    mine = secret.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    eph_public = raw[1:33]
    try:
        shared = secret.exchange(X25519PublicKey.from_public_bytes(eph_public))
        return ChaCha20Poly1305(_key(shared, eph_public, mine, context)).decrypt(
            _NONCE, raw[33:], context.encode())
    except (ValueError, InvalidTag) as e:
        raise SealError("this sealed box is not for this key, or not for this purpose [A9]") from e


def _key(shared: bytes, eph_public: bytes, recipient: bytes, context: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=eph_public + recipient,
                info=_INFO + context.encode()).derive(shared)


def _public_z85(secret: X25519PrivateKey) -> str:
    return z85_encode(secret.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def share_context(kek_id: str, recipient: str) -> str:
    """What a KEK share's box is for: handed to a KSO's seat at the KEK's creation
    (`recipient` = "KSO1"), or brought to the signer for a restore or drill ("signer")."""
    return f"keyrite kek {kek_id} share for {recipient}"
