"""Value formats: what each accepts, its normal form, and what it refuses."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ceremony.script.formats import FORMATS, check_value
from ceremony.script.model import RECORD_FORMATS

DIGEST = hashlib.sha256(b"live cd").hexdigest()
COLON = ":".join(DIGEST[i : i + 2] for i in range(0, 64, 2))
FP = "SHA256:" + base64.b64encode(hashlib.sha256(b"host key").digest()).decode().rstrip("=")

GOOD = [
    ("text", "  Anything at all ", "Anything at all"),
    ("usb-serial", "0019 E000 FAA9-5K87080D0389", "0019E000FAA95K87080D0389"),
    ("usb-serial", "001cc0ec34befb90671d25f1", "001CC0EC34BEFB90671D25F1"),
    ("bag-serial", "32 34864", "3234864"),
    ("bag-serial", "ab-1234", "AB1234"),
    ("sha256", DIGEST.upper(), DIGEST),
    ("sha256", COLON, DIGEST),
    ("sha256", COLON.upper().replace(":", ": ", 5) + "\n", DIGEST),  # as copied from a terminal
    ("datetime", "2012-12-05T09:28:50+13:00", "2012-12-05T09:28:50+13:00"),
    ("datetime", "2012-12-05 09:28", "2012-12-05T09:28:00"),
    ("datetime", "2012-12-05T09:28:50.5Z", "2012-12-05T09:28:50.500000+00:00"),
    ("host-key", FP, FP),
    ("host-key", "ED:73:EE:03:6C:4C:C0:26:3A:E8:F4:CC:60:26:A1:81",
     "MD5:ed:73:ee:03:6c:4c:c0:26:3a:e8:f4:cc:60:26:a1:81"),
    ("host-key", "MD5:ed:73:ee:03:6c:4c:c0:26:3a:e8:f4:cc:60:26:a1:81",
     "MD5:ed:73:ee:03:6c:4c:c0:26:3a:e8:f4:cc:60:26:a1:81"),
    ("count", "0", "0"),
    ("count", "0140", "140"),
]

BAD = [
    ("text", "   \n"),
    ("usb-serial", ""),
    ("usb-serial", "0019/E000"),
    ("usb-serial", "-0019"),
    ("usb-serial", "A" * 127),
    ("bag-serial", "B" * 65),
    ("bag-serial", "no.dots"),
    ("sha256", DIGEST[:-1]),
    ("sha256", DIGEST + "0"),
    ("sha256", DIGEST[:-1] + "g"),
    ("sha256", COLON[:-3]),
    ("sha256", COLON.replace(":", "", 1)),  # a colon missing: neither form
    ("datetime", "05-12-2012 09:28"),
    ("datetime", "2012-13-05T09:28"),
    ("datetime", "2012-12-05"),
    ("datetime", "2012-12-05T25:00"),
    ("host-key", FP[:-1]),
    ("host-key", FP + "A"),
    ("host-key", "sha256:" + FP[7:]),
    ("host-key", "ed:73:ee:03:6c:4c:c0:26:3a:e8:f4:cc:60:26:a1"),
    ("host-key", "MD5:ed73ee036c4cc0263ae8f4cc6026a181"),
    ("count", "-1"),
    ("count", "1.0"),
    ("count", "twelve"),
]


@pytest.mark.parametrize(("fmt", "value", "normal"), GOOD)
def test_accepts_and_normalises(fmt: str, value: str, normal: str) -> None:
    assert check_value(fmt, value) == normal
    assert check_value(fmt, normal) == normal  # the normal form is a fixed point


@pytest.mark.parametrize(("fmt", "value"), BAD)
def test_refuses(fmt: str, value: str) -> None:
    assert check_value(fmt, value) is None


def test_sha256_fingerprint_last_character_must_be_canonical() -> None:
    # 43 base64 characters carry 258 bits; the last character's 2 spare bits must be zero
    assert FP[-1] in "AEIMQUYcgkosw048"
    assert check_value("host-key", FP[:-1] + "B") is None


def test_every_record_format_is_known() -> None:
    assert set(RECORD_FORMATS) <= set(FORMATS)
    for fmt in FORMATS:
        assert check_value(fmt, 12) is None  # not a string: never a value  # type: ignore[arg-type]


def test_unknown_format_is_a_bug_not_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown value format 'md5'"):
        check_value("md5", "x")
