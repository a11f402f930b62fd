"""The token fingerprint: a stable identity of an HSM token that officers compare between
ceremonies (the seed's `scadiag -f` value, `d34d-ba64-...`).

Definition (docs/signer.md): SHA-256 over the UTF-8 bytes of

    keyrite-token-fingerprint-v1 \\n manufacturerID \\n model \\n serialNumber \\n label \\n

each field taken from CK_TOKEN_INFO with its blank padding stripped; the first 20 bytes of the
digest are shown as 10 groups of 4 lower-case hex digits joined by '-'.

Why these fields: they are what the token itself stores in its token object, so a token restored
from a backup into another directory (or on another machine) has the same fingerprint, while a
freshly initialised token gets a new random serial and therefore a new fingerprint. Slot numbers,
library versions and paths are left out because they change with the host, not with the token.
"""

from __future__ import annotations

import hashlib
import re

DOMAIN = "keyrite-token-fingerprint-v1"
_SHAPE = re.compile(r"[0-9a-f]{4}(-[0-9a-f]{4}){9}")


def token_fingerprint(manufacturer_id: str, model: str, serial: str, label: str) -> str:
    fields = [DOMAIN, manufacturer_id.strip(), model.strip(), serial.strip(), label.strip()]
    digest = hashlib.sha256(("\n".join(fields) + "\n").encode()).hexdigest()[:40]
    return "-".join(digest[i : i + 4] for i in range(0, 40, 4))


def is_fingerprint(text: str) -> bool:
    return bool(_SHAPE.fullmatch(text))
