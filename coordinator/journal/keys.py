"""The coordinator's checkpoint key: making one, and its verifier key text.

The key file itself is written and read by `keyrite.keyfiles`, like every officer's key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.journal.note import Verifier
from keyrite.keyfiles import KeyFileError, load_private_key, save_private_key

__all__ = ["KeyFileError", "generate_key", "load_private_key", "save_private_key", "verifier_key"]


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def verifier_key(name: str, key: Ed25519PrivateKey) -> str:
    """The verifier key text (`name+hexid+base64`) to hand to `keyrite verify --key`."""
    return Verifier.from_public_key(name, key.public_key()).text()
