"""C2SP signed notes with Ed25519 keys (c2sp.org/signed-note, golang.org/x/mod/sumdb/note).

A note is a text ending in a newline, a blank line, then one or more signature lines
`— <key name> <base64(4-byte key id || signature)>`. The key id of an Ed25519 key is the first four
bytes of SHA-256(name || 0x0A || 0x01 || 32-byte public key); a verifier key is written
`<name>+<8 hex key id>+<base64(0x01 || public key)>`, the Go `note` package's vkey form, so that
the same text configures our verifier and any tlog tooling.

Why these opening rules: a verifier ignores signatures from keys it does not know (a witness's
cosignature, a rotated key) but verifies every signature from a key it does know, and rejects
the note if one of those fails or if none of them is present. That is what lets a log add
signatures later without breaking old verifiers, and what stops an attacker from getting a note
accepted by adding a signature of their own.

Pure: text and keys in, text or errors out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
SIG_PREFIX = "— "  # em dash U+2014, space
#: More than this many signature lines is refused (the spec asks verifiers to accept at least 16).
MAX_SIGNATURES = 100


class NoteError(ValueError):
    """A note that must not be believed; subclasses say why."""


class MalformedNote(NoteError):
    """Not a signed note at all: bad characters, no signature block, a bad signature line."""


class BadSignature(NoteError):
    """A signature by a known key that does not verify: the text was changed after signing."""

    def __init__(self, key: str) -> None:
        super().__init__(f"signature by {key} does not verify")
        self.key = key


class NoTrustedSignature(NoteError):
    """Well-formed, but no signature is by a key the verifier trusts."""

    def __init__(self, unknown: tuple[str, ...]) -> None:
        who = ", ".join(unknown) or "nobody"
        super().__init__(f"not signed by a trusted key (signed by: {who})")
        self.unknown = unknown


# One C scan each rather than a Python loop per character (verify opens every checkpoint's note).
#: What no key name may hold: a Unicode space (`\s` is `str.isspace`), ASCII controls, DEL.
_NOT_IN_NAME = re.compile(r"[\s\x00-\x1f\x7f]")
#: What no note may hold: an ASCII control character other than newline.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def valid_name(name: str) -> bool:
    """Key names: non-empty, no Unicode space, no `+` (they would break the vkey form)."""
    return name != "" and "+" not in name and _NOT_IN_NAME.search(name) is None


def key_id(name: str, public_key: Ed25519PublicKey) -> int:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + raw).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class Verifier:
    """One trusted key: its name, key id and Ed25519 public key."""

    name: str
    key_id: int
    public_key: Ed25519PublicKey

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> Verifier:
        if not valid_name(name):
            raise ValueError(f"key name {name!r} is empty or has a space or '+'")
        return cls(name, key_id(name, public_key), public_key)

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Read `<name>+<hex id>+<base64 key>`; the id must be the one the key computes to."""
        name, _, rest = vkey.partition("+")
        hex_id, _, b64 = rest.partition("+")
        try:
            raw = base64.b64decode(b64, validate=True)
            kid = int(hex_id, 16)
        except (binascii.Error, ValueError):
            raise ValueError(f"verifier key {vkey!r} is not <name>+<8 hex>+<base64>") from None
        if len(hex_id) != 8 or not valid_name(name) or not raw:
            raise ValueError(f"verifier key {vkey!r} is not <name>+<8 hex>+<base64>")
        if raw[0] != ALG_ED25519 or len(raw) != 33:
            raise ValueError(f"verifier key {vkey!r} is not an Ed25519 key")
        public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
        if key_id(name, public_key) != kid:
            raise ValueError(f"verifier key {vkey!r}: key id does not match name and key")
        return cls(name, kid, public_key)

    def text(self) -> str:
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        b64 = base64.b64encode(bytes([ALG_ED25519]) + raw).decode()
        return f"{self.name}+{self.key_id:08x}+{b64}"

    def label(self) -> str:
        return f"{self.name}+{self.key_id:08x}"


@dataclass(frozen=True)
class Signer:
    """A named Ed25519 private key that signs notes. Its repr never shows the key."""

    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        if not valid_name(self.name):
            raise ValueError(f"key name {self.name!r} is empty or has a space or '+'")

    def verifier(self) -> Verifier:
        return Verifier.from_public_key(self.name, self.private_key.public_key())

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key=<hidden>)"


def _check_text(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate, as JSON's \ud800 escape can smuggle in
        raise MalformedNote("note is not valid UTF-8") from None
    if _CONTROL.search(text) is not None:
        raise MalformedNote("note has an ASCII control character other than newline")


def sign(text: str, signers: list[Signer]) -> str:
    """The signed note: `text` (which must end in a newline), a blank line, one line per signer."""
    if not text.endswith("\n"):
        raise MalformedNote("note text must end in a newline")
    _check_text(text)
    lines = [text, "\n"]
    for s in signers:
        sig = s.private_key.sign(text.encode())
        kid = key_id(s.name, s.private_key.public_key()).to_bytes(4, "big")
        lines.append(f"{SIG_PREFIX}{s.name} {base64.b64encode(kid + sig).decode()}\n")
    return "".join(lines)


@dataclass(frozen=True)
class OpenedNote:
    """A note whose text may be believed: `signed_by` lists the trusted keys that verified it."""

    text: str
    signed_by: tuple[str, ...]  # "<name>+<hex id>" of each trusted key that verified
    unknown: tuple[str, ...]  # the same for signatures by keys the verifier does not know


def note_text(note: str) -> str:
    """A signed note's text, up to the blank line before its signatures, unchecked: what its
    signatures, and an officer's cosignature, sign ("" if it has no blank line)."""
    return note[: note.rfind("\n\n") + 1]


def open_note(msg: str, verifiers: list[Verifier]) -> OpenedNote:
    """Parse `msg` and check its signatures against `verifiers`, by the signed-note rules.

    Raises MalformedNote, BadSignature (a known key's signature fails) or NoTrustedSignature.
    """
    _check_text(msg)
    split = msg.rfind("\n\n")
    if split < 0:
        raise MalformedNote("no blank line before the signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNote("signature block is empty or does not end in a newline")
    known = {(v.name, v.key_id): v for v in verifiers}
    signed: list[str] = []
    unknown: list[str] = []
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"more than {MAX_SIGNATURES} signatures")
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise MalformedNote(f"signature line {line!r} does not start with an em dash")
        name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise MalformedNote(f"signature by {name!r} is not base64") from None
        if not valid_name(name) or len(raw) < 5:
            raise MalformedNote(f"signature line {line!r} is malformed")
        kid = int.from_bytes(raw[:4], "big")
        label = f"{name}+{kid:08x}"
        v = known.get((name, kid))
        if v is None:
            if label not in unknown:
                unknown.append(label)
            continue
        if label in signed:
            continue  # a repeated signature by one key counts once
        try:
            v.public_key.verify(raw[4:], text.encode())
        except InvalidSignature:
            raise BadSignature(label) from None
        signed.append(label)
    if not signed:
        raise NoTrustedSignature(tuple(unknown))
    return OpenedNote(text, tuple(signed), tuple(unknown))
