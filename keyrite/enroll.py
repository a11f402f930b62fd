"""An officer's keys: what `keyrite enroll` writes and what a console unlocks.

One enrolment is one seat. Its directory holds four files:

- `signing.pem`: the Ed25519 signing key, PKCS#8 PEM encrypted with the officer's passphrase
  (mode 0600). It signs approvals; `keyrite.keyfiles` reads it, as the rehearsal's officers do.
  Not named `*.key`: `zmq.auth.load_certificates(dir)` reads every `*.key` as a certificate.
- `console.key_secret`: the console's CURVE key pair (mode 0600), and `console.key`: its public
  half, both in the certificate format of pyzmq's `zmq.auth.create_certificates` (czmq's
  `zcert`), so `zmq.auth.load_certificate` and `load_certificates(dir)` read them unchanged. The
  CURVE secret is not passphrase-protected: a console must connect before its officer types
  anything, and that key only says whose console is talking; it cannot approve anything.
- `officer.toml`: the public parts as a roster entry (`[[officers]]`), written last, so its
  presence means the enrolment is complete.

Every file is created exclusively (`keyrite.files.write_exclusive`): enrolling again into a
directory that holds an officer's keys is refused, since replacing a key orphans what it signed.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
)

from ceremony.approval import public_key_text
from keyrite.exits import BadInput
from keyrite.files import fsync_dir, write_exclusive
from keyrite.keyfiles import KeyFileError, load_private_key

SIGNING_KEY = "signing.pem"
CONSOLE_SECRET = "console.key_secret"
CONSOLE_PUBLIC = "console.key"
OFFICER = "officer.toml"
#: In the order they are written; `officer.toml` last marks a complete enrolment.
FILES = (SIGNING_KEY, CONSOLE_SECRET, CONSOLE_PUBLIC, OFFICER)

#: Shorter passphrases are refused: the key file may be copied, and then only this protects it.
MIN_PASSPHRASE = 8

_SEAT = re.compile(r"[A-Z][A-Z0-9]{0,31}", re.ASCII)  # as coordinator/roster.py checks it
_ROLE = re.compile(r"[A-Z]{1,32}", re.ASCII)


class EnrollError(BadInput):
    """An enrolment that cannot be made or unlocked; the message says what to do (exit 2)."""


@dataclass(frozen=True, kw_only=True)
class OfficerEntry:
    """The public parts of one seat, as the roster takes them, plus the console's CURVE key.

    `console_key` is the proposed roster key for the console's Z85 CURVE public key.
    """

    seat: str
    role: str
    person: str
    name: str
    organisation: str
    signing_key: str  # ed25519:<base64>
    console_key: str  # Z85, 40 characters

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def to_toml(self) -> str:
        lines = ["[[officers]]"] + [f"{k} = {_toml_str(v)}" for k, v in asdict(self).items()]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass(frozen=True)
class Unlocked:
    """What a console holds once its officer has typed the passphrase."""

    entry: OfficerEntry
    signing_key: Ed25519PrivateKey
    console_public: str  # Z85
    console_secret: str  # Z85

    def __repr__(self) -> str:  # never print key material by accident
        return f"Unlocked(seat={self.entry.seat!r}, console_public={self.console_public!r})"


def default_person(name: str) -> str:
    """A stable person id from a name ("Officer C" -> "officer-c") when none is given."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "person"


def check_identity(*, seat: str, role: str, person: str, name: str) -> None:
    """Refuse what the roster would refuse, before any key is made."""
    if not _ROLE.fullmatch(role):
        raise EnrollError(f"role {role!r} is not a role like KSO (upper-case letters)")
    if not _SEAT.fullmatch(seat):
        raise EnrollError(f"seat {seat!r} is not a seat name like KSO1")
    if seat.rstrip("0123456789") != role:
        raise EnrollError(f"seat {seat} is not a seat of role {role} (like {role}1)")
    if not name.strip():
        raise EnrollError("the officer's name is empty")
    if not person.strip():
        raise EnrollError("the person id is empty")


def check_passphrase(passphrase: bytes) -> None:
    if len(passphrase) < MIN_PASSPHRASE:
        raise EnrollError(f"the passphrase must be at least {MIN_PASSPHRASE} characters")


def new_keys(passphrase: bytes) -> tuple[Ed25519PrivateKey, bytes, str, str]:
    """A fresh signing key, its encrypted PEM, and a CURVE pair (Z85 public, secret)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase))
    public, secret = zmq.curve_keypair()
    return key, pem, public.decode("ascii"), secret.decode("ascii")


def certificate_text(public: str, secret: str | None, *, seat: str) -> str:
    """pyzmq's (czmq's) certificate format: a banner, `metadata`, `curve` with the key(s)."""
    kind = "Secret" if secret else "Public"
    lines = [
        f"#   ZeroMQ CURVE {kind} Certificate, keyrite console of seat {seat}",
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions."
        if secret
        else "#   Give this to the ceremony administrator for the roster.",
        "",
        "metadata",
        f'    seat = "{seat}"',
        "curve",
        f'    public-key = "{public}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{secret}"')
    return "\n".join(lines) + "\n"


def make_officer(
    out: Path,
    *,
    role: str,
    name: str,
    passphrase: bytes,
    seat: str | None = None,
    person: str | None = None,
    organisation: str = "",
) -> OfficerEntry:
    """Make one seat's keys in `out` (created 0700 if missing) and return its roster entry.

    Refuses (EnrollError) if `out` already holds any of an officer's files, complete or not:
    nothing is ever replaced or removed here.
    """
    out = Path(out)
    seat = seat or role
    person = person if person is not None else default_person(name)
    check_identity(seat=seat, role=role, person=person, name=name)
    check_passphrase(passphrase)
    check_target(out)
    _prepare_dir(out)
    key, pem, curve_public, curve_secret = new_keys(passphrase)
    entry = OfficerEntry(
        seat=seat, role=role, person=person, name=name, organisation=organisation,
        signing_key=public_key_text(key.public_key()), console_key=curve_public,
    )
    try:
        write_exclusive(out / SIGNING_KEY, pem, 0o600)
        write_exclusive(out / CONSOLE_SECRET,
                        certificate_text(curve_public, curve_secret, seat=seat).encode(), 0o600)
        write_exclusive(out / CONSOLE_PUBLIC,
                        certificate_text(curve_public, None, seat=seat).encode(), 0o644)
        write_exclusive(out / OFFICER, entry.to_toml().encode(), 0o644)
    except FileExistsError as e:  # someone else enrolling into the same directory meanwhile
        raise EnrollError(f"{e.filename}: appeared while enrolling: refusing to overwrite") from e
    return entry


def check_target(out: Path) -> None:
    """Refuse a target that is not a directory or holds any officer file (before asking for a
    passphrase, so nobody types one twice for nothing)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EnrollError(f"{out}: exists and is not a directory")
    present = [f for f in FILES if (out / f).exists() or (out / f).is_symlink()]
    if present:
        what = "an officer's keys" if OFFICER in present else "part of an unfinished enrolment"
        raise EnrollError(
            f"{out} already holds {what} ({', '.join(present)}): refusing to overwrite; "
            "enroll into another directory"
        )


def _prepare_dir(out: Path) -> None:
    if not out.exists():
        try:
            out.mkdir(mode=0o700, parents=True)
        except OSError as e:
            raise EnrollError(f"{out}: cannot create the directory: {e.strerror}") from e
        fsync_dir(out.parent)


def read_entry(directory: Path) -> OfficerEntry:
    """The public roster entry of an enrolment directory (no passphrase needed)."""
    path = Path(directory) / OFFICER
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise EnrollError(f"{path}: missing: {directory} is not a complete enrolment") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise EnrollError(f"{path}: cannot read: {e}") from None
    except RecursionError:
        raise EnrollError(f"{path}: cannot read: TOML nested too deeply") from None
    officers = data.get("officers")
    if not isinstance(officers, list) or len(officers) != 1 or not isinstance(officers[0], dict):
        raise EnrollError(f"{path}: expected exactly one [[officers]] table")
    fields = set(OfficerEntry.__dataclass_fields__)
    got: dict[str, Any] = officers[0]
    if set(got) != fields or not all(isinstance(v, str) for v in got.values()):
        raise EnrollError(f"{path}: expected the string keys {', '.join(sorted(fields))}")
    return OfficerEntry(**got)


def read_passphrase_file(path: Path) -> bytes:
    """A passphrase from a file (scripts, tests): its content less one trailing newline."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise EnrollError(f"{path}: cannot read the passphrase file: {e.strerror}") from None
    for end in (b"\r\n", b"\n"):
        if data.endswith(end):
            return data[: -len(end)]
    return data


def unlock(directory: Path, passphrase: bytes) -> Unlocked:
    """Open an enrolment with its passphrase, checking that every file belongs to the entry.

    A wrong passphrase, a missing file or keys that do not match `officer.toml` raise
    EnrollError (exit 2) naming the file, never a stack trace.
    """
    directory = Path(directory)
    entry = read_entry(directory)
    key_path = directory / SIGNING_KEY
    try:
        pem = key_path.read_bytes()
    except OSError as e:
        raise EnrollError(f"{key_path}: cannot read the signing key: {e.strerror}") from None
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" not in pem:
        raise EnrollError(f"{key_path}: not a passphrase-protected private key")
    try:
        key = load_private_key(key_path, passphrase)
    except KeyFileError as e:
        raise EnrollError(
            f"{key_path}: the passphrase is wrong (a lost passphrase cannot be recovered: "
            "enroll a new key and have the roster changed)"
        ) from e
    if public_key_text(key.public_key()) != entry.signing_key:
        raise EnrollError(f"{key_path}: this key is not the signing_key of {directory / OFFICER}")
    public, secret = _load_certificate(directory / CONSOLE_SECRET)
    if secret is None:
        raise EnrollError(f"{directory / CONSOLE_SECRET}: holds no secret-key")
    try:
        derived = zmq.curve_public(secret.encode("ascii")).decode("ascii")
    except (zmq.ZMQError, ValueError, UnicodeEncodeError) as e:
        raise EnrollError(f"{directory / CONSOLE_SECRET}: the secret-key is not a Z85 key") from e
    if derived != public or public != entry.console_key:
        raise EnrollError(
            f"{directory / CONSOLE_SECRET}: this CURVE key is not the console_key of "
            f"{directory / OFFICER}"
        )
    return Unlocked(entry, key, public, secret)


def console_keys(directory: Path) -> tuple[OfficerEntry, str, str]:
    """The entry and the console's CURVE pair (public, secret Z85), without the passphrase: a
    console connects before its officer types anything, and the passphrase only ever unlocks the
    signing key, for one signature."""
    directory = Path(directory)
    entry = read_entry(directory)
    public, secret = _load_certificate(directory / CONSOLE_SECRET)
    if secret is None:
        raise EnrollError(f"{directory / CONSOLE_SECRET}: holds no secret-key")
    if public != entry.console_key:
        raise EnrollError(f"{directory / CONSOLE_SECRET}: this CURVE key is not the console_key "
                          f"of {directory / OFFICER}")
    return entry, public, secret


def write_curve_pair(path: Path, public: str, secret: str, *, seat: str) -> None:
    """Write a CURVE pair in pyzmq's certificate format (0600, never over an existing file)."""
    write_exclusive(path, certificate_text(public, secret, seat=seat).encode(), 0o600)


def read_curve_pair(path: Path) -> tuple[str, str]:
    """A CURVE pair written by `write_curve_pair` or `keyrite enroll` (public, secret Z85)."""
    public, secret = _load_certificate(path)
    if secret is None:
        raise EnrollError(f"{path}: holds no secret-key")
    return public, secret


def _load_certificate(path: Path) -> tuple[str, str | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise EnrollError(f"{path}: cannot read the console key: {e}") from None
    return public.decode("ascii"), secret.decode("ascii") if secret else None


def _toml_str(s: str) -> str:
    """A TOML basic string (json.dumps escapes are valid TOML escapes for these characters)."""
    return json.dumps(s, ensure_ascii=False)
