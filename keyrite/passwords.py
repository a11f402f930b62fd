"""Verifiers of pre-generated passwords: what the KGA records before the ceremony so that the
password typed at the backup (and again at the restore drill) is checked, without the password
itself ever being written down by keyrite.

A backup encrypted under a mistyped password cannot be opened with the copies sealed in the
bags; the seed's tool asked for the password twice, and that only catches a typo made once. A
verifier recorded beforehand, from the password as generated, catches every typo. It is an scrypt
hash with its own salt, in one line:

    scrypt$N=32768,r=8,p=1$<salt, base64>$<32-byte hash, base64>

The parameters are read from the line, within bounds (a config file is input like any other),
so a verifier cannot make the coordinator spend unbounded memory or time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

#: scrypt's cost for new verifiers: about 0.1 s and 32 MiB here, once per typed password.
N, R, P = 2**15, 8, 1
_N_MAX, _R_MAX, _P_MAX = 2**17, 16, 4
_SALT = 16
_HASH = 32
_LINE = re.compile(r"scrypt\$N=([0-9]{1,7}),r=([0-9]{1,2}),p=([0-9])\$([A-Za-z0-9+/=]{1,200})"
                   r"\$([A-Za-z0-9+/=]{1,200})", re.ASCII)
#: a typed password's bounds: the pre-generated ones are printable ASCII of this length or less
MAX_PASSWORD = 256


class VerifierError(ValueError):
    """A verifier line that is not one this module writes."""


@dataclass(frozen=True)
class Verifier:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def __repr__(self) -> str:  # the hash is no secret, but it has no place in logs either
        return f"Verifier(scrypt N={self.n} r={self.r} p={self.p})"

    def __str__(self) -> str:
        b64 = base64.b64encode
        return (f"scrypt$N={self.n},r={self.r},p={self.p}$"
                f"{b64(self.salt).decode()}${b64(self.digest).decode()}")

    def matches(self, password: str) -> bool:
        """Whether `password` is the one this verifier was made from (constant-time compare)."""
        if not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD:
            return False
        try:
            raw = password.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(_scrypt(raw, self.salt, self.n, self.r, self.p), self.digest)


def _scrypt(raw: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(raw, salt=salt, n=n, r=r, p=p, dklen=_HASH,
                          maxmem=129 * r * n * p + 2**20)


def make_verifier(password: str, *, salt: bytes | None = None) -> Verifier:
    """A new verifier of `password` (a fresh random salt unless one is given, for tests)."""
    if not password:
        raise VerifierError("the password is empty")
    if len(password) > MAX_PASSWORD:
        raise VerifierError(f"the password is longer than {MAX_PASSWORD} characters")
    salt = os.urandom(_SALT) if salt is None else salt
    return Verifier(N, R, P, salt, _scrypt(password.encode("utf-8"), salt, N, R, P))


def parse_verifier(text: str) -> Verifier:
    """A verifier line, checked: the format, and parameters within bounds."""
    m = _LINE.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise VerifierError("not a password verifier (expected scrypt$N=...,r=...,p=...$SALT$HASH, "
                            "as `keyrite password verifier` prints)")
    n, r, p = int(m[1]), int(m[2]), int(m[3])
    if n < 2**10 or n > _N_MAX or n & (n - 1):
        raise VerifierError(f"scrypt N must be a power of two from 1024 to {_N_MAX}")
    if not 1 <= r <= _R_MAX or not 1 <= p <= _P_MAX:
        raise VerifierError(f"scrypt r must be 1 to {_R_MAX} and p 1 to {_P_MAX}")
    try:
        salt = base64.b64decode(m[4], validate=True)
        digest = base64.b64decode(m[5], validate=True)
    except (binascii.Error, ValueError):
        raise VerifierError("the verifier's salt or hash is not base64") from None
    if not 8 <= len(salt) <= 64 or len(digest) != _HASH:
        raise VerifierError(f"the verifier needs a salt of 8 to 64 bytes and a {_HASH}-byte hash")
    return Verifier(n, r, p, salt, digest)
