"""The roster: who is enrolled for which seat, with which signing key.

A seat is one officer position ("KSO1"); one person may hold several seats where the script's
separation rules allow. The roster is an input of the ceremony, like the script, and is copied
into the journal's first entry so the journal can be verified and replayed alone.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ceremony.approval import load_public_key
from ceremony.errors import BadInput

_SEAT = re.compile(r"[A-Z][A-Z0-9]{0,31}", re.ASCII)


@dataclass(frozen=True)
class Officer:
    seat: str  # "KSO1"
    role: str  # "KSO"
    person: str  # a stable id of the human; the same for all their seats
    name: str
    organisation: str
    signing_key: str  # ed25519:<base64>
    console_key: str | None = None  # Z85 CURVE public key of the officer's console (live only)


_OPTIONAL = {"console_key"}


@dataclass(frozen=True)
class Roster:
    officers: dict[str, Officer]

    def by_key(self, key: str) -> Officer | None:
        return next((o for o in self.officers.values() if o.signing_key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return {"officers": [_entry(o) for o in self.officers.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "roster") -> Roster:
        officers: dict[str, Officer] = {}
        fields = set(Officer.__dataclass_fields__)
        required = fields - _OPTIONAL
        for i, o in enumerate(d.get("officers", [])):
            at = f"{where}: officers[{i}]"
            if not isinstance(o, dict):
                raise BadInput(f"{at}: expected a table")
            unknown = set(o) - fields
            missing = required - set(o)
            if unknown:
                raise BadInput(f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
            if missing:
                raise BadInput(f"{at}: missing key(s) {', '.join(sorted(missing))}")
            off = Officer(**{k: str(o[k]) for k in fields if o.get(k) is not None})
            if not _SEAT.fullmatch(off.seat):
                raise BadInput(f"{at}.seat: {off.seat!r} is not a seat name like KSO1")
            try:
                load_public_key(off.signing_key)
            except ValueError as e:
                raise BadInput(f"{at}.signing_key: {e}") from e
            if off.console_key is not None and not _is_curve_key(off.console_key):
                raise BadInput(f"{at}.console_key: {off.console_key!r} is not a Z85 CURVE "
                               "public key (40 characters, as keyrite enroll prints it)")
            if off.seat in officers:
                raise BadInput(f"{at}.seat: {off.seat} is enrolled twice")
            officers[off.seat] = off
        keys = [o.signing_key for o in officers.values()]
        if len(set(keys)) != len(keys):
            raise BadInput(f"{where}: two seats share one signing key")
        consoles = [o.console_key for o in officers.values() if o.console_key is not None]
        if len(set(consoles)) != len(consoles):
            raise BadInput(f"{where}: two seats share one console key")
        return cls(officers)


def load_roster(path: Path) -> Roster:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BadInput(f"{path}: {e}") from e
    except RecursionError:
        raise BadInput(f"{path}: TOML nested too deeply") from None
    return Roster.from_dict(data, where=str(path))


def dump_roster(roster: Roster) -> str:
    out = []
    for o in roster.officers.values():
        out.append("[[officers]]")
        out += [f"{k} = {_toml_str(v)}" for k, v in _entry(o).items()]
        out.append("")
    return "\n".join(out)


def _entry(o: Officer) -> dict[str, str]:
    """An officer as the roster file and the journal carry it (an absent key is left out)."""
    return {k: v for k, v in asdict(o).items() if v is not None}


#: ZeroMQ's Z85 alphabet (RFC 32/Z85), for checking a console key without loading pyzmq here
_Z85 = {c: i for i, c in enumerate(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")}


def _is_curve_key(text: str) -> bool:
    """A CURVE public key as Z85 text: 40 characters that decode to 32 bytes (each group of
    five a 32-bit value)."""
    if not isinstance(text, str) or len(text) != 40 or not all(c in _Z85 for c in text):
        return False
    for i in range(0, 40, 5):
        value = 0
        for c in text[i:i + 5]:
            value = value * 85 + _Z85[c]
        if value >= 2**32:
            return False
    return True


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
