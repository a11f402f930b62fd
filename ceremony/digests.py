"""Digests as officers read them: `openssl dgst -c` colon hex, and PGP words for reading aloud."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ceremony._pgpwords import EVEN, ODD

#: One encoder for every call: building a JSONEncoder per call cost the journal's append path a
#: measurable share of its time next to the fsync (bench/journal.py).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8; what officers sign builds on it."""
    return _CANONICAL.encode(value).encode()


def operation_digest(operation: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of an HSM operation's canonical form: what an approval binds to."""
    return hashlib.sha256(canonical_json(dict(operation))).hexdigest()


def colon_hex(hexdigest: str) -> str:
    """`ab:cd:...` as `openssl dgst -c` prints it."""
    h = hexdigest.lower()
    return ":".join(h[i : i + 2] for i in range(0, len(h), 2))


def from_colon_hex(text: str) -> str:
    """Plain lower-case hex from colon hex, spaces or line breaks as people copy it."""
    return "".join(c for c in text.lower() if c in "0123456789abcdef")


def pgp_words(hexdigest: str) -> str:
    """The PGP word list rendering: even bytes from the two-syllable list, odd from the three."""
    data = bytes.fromhex(hexdigest)
    return " ".join((EVEN if i % 2 == 0 else ODD)[b] for i, b in enumerate(data))
