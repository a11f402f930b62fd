"""The value formats a ceremony records or observes, and their one normal form each.

A value typed by an officer, declared in the script and observed by the machine are compared only
after all three went through `check_value`, so "0019 e000-faa9" and "0019E000FAA9" or colon hex and
plain hex are the same value, and a value that does not fit its format never reaches a comparison.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import datetime

from ceremony.script.model import RECORD_FORMATS

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_COLON_HEX32 = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){31}")
_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]*")  # as written by hand; spaces and dashes dropped
_DATETIME = re.compile(  # [0-9], not \d: `\d` also matches non-ASCII digits such as `١`
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)
_SHA256_FP = re.compile(r"SHA256:([A-Za-z0-9+/]{43})")
_MD5_FP = re.compile(r"(?:MD5:)?([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){15})")
_COUNT = re.compile(r"[0-9]{1,9}")  # ASCII: int() would read "١٤" as 14

#: Formats only the machine or the script supplies (never a `record` step's `format`).
OBSERVED_FORMATS = ("host-key", "count")

#: Every format `check_value` knows, with what it accepts (rendered into docs/script-format.md).
FORMATS: dict[str, str] = {
    "text": "any text with a non-space character; kept with outer spaces stripped",
    "usb-serial": "letters and digits, spaces and dashes ignored, at most 126; upper-cased",
    "bag-serial": "letters and digits, spaces and dashes ignored, at most 64; upper-cased",
    "sha256": "64 hex digits, or 32 colon-separated hex bytes (`openssl dgst -c`), spaces and "
    "line breaks ignored; normalised to 64 lower-case hex digits",
    "datetime": "ISO 8601 date and time, `YYYY-MM-DDTHH:MM[:SS[.ffffff]]` with an optional `Z` or "
    "`+HH:MM`; normalised to Python's `isoformat()`",
    "host-key": "`SHA256:` and 43 base64 characters as OpenSSH prints it, or 16 colon-separated "
    "hex bytes (legacy MD5, optionally `MD5:`-prefixed; normalised to `MD5:` + lower case)",
    "count": "a non-negative whole number in decimal digits; normalised without leading zeros",
}


def _text(value: str) -> str | None:
    return value.strip() or None


def _serial(limit: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        value = value.strip()
        if not _SERIAL.fullmatch(value):
            return None
        compact = value.replace(" ", "").replace("-", "").upper()
        return compact if len(compact) <= limit else None

    return check


def _sha256(value: str) -> str | None:
    compact = "".join(value.split())
    if _HEX64.fullmatch(compact) or _COLON_HEX32.fullmatch(compact):
        return compact.replace(":", "").lower()
    return None


def _datetime(value: str) -> str | None:
    value = value.strip()
    if not _DATETIME.fullmatch(value):
        return None
    try:  # the pattern fixes the shape; fromisoformat rejects month 13 and the like
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return None


def _host_key(value: str) -> str | None:
    value = value.strip()
    if m := _SHA256_FP.fullmatch(value):
        raw = base64.b64decode(m[1] + "=")  # 43 chars hold 32 bytes; the last char's spare bits
        if base64.b64encode(raw).decode().rstrip("=") == m[1]:  # must be zero to be canonical
            return value
        return None
    if m := _MD5_FP.fullmatch(value):
        return "MD5:" + m[1].lower()
    return None


def _count(value: str) -> str | None:
    value = value.strip()
    return str(int(value)) if _COUNT.fullmatch(value) else None


_CHECKS: dict[str, Callable[[str], str | None]] = {
    "text": _text,
    "usb-serial": _serial(126),
    "bag-serial": _serial(64),
    "sha256": _sha256,
    "datetime": _datetime,
    "host-key": _host_key,
    "count": _count,
}

assert set(_CHECKS) == set(FORMATS) == set(RECORD_FORMATS) | set(OBSERVED_FORMATS)


def check_value(format: str, value: str) -> str | None:
    """The normal form of `value` in `format`, or None if it does not fit.

    Raises ValueError for a format that does not exist: that is a bug in the caller, not bad input.
    """
    try:
        check = _CHECKS[format]
    except KeyError:
        raise ValueError(f"unknown value format {format!r}") from None
    if not isinstance(value, str):
        return None
    return check(value)
