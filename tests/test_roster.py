"""The roster's strict reading, and the optional console key of the live ceremony."""

from __future__ import annotations

import tomllib

import pytest
import zmq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.approval import public_key_text
from ceremony.roster import Roster, dump_roster
from keyrite.exits import BadInput


def entry(seat: str, **extra: str) -> dict[str, str]:
    return {"seat": seat, "role": seat.rstrip("0123456789"), "person": seat.lower(),
            "name": f"Officer {seat}", "organisation": "Registry",
            "signing_key": public_key_text(Ed25519PrivateKey.generate().public_key()), **extra}


def console_key() -> str:
    return zmq.curve_keypair()[0].decode()


def test_a_console_key_is_optional_and_kept() -> None:
    key = console_key()
    r = Roster.from_dict({"officers": [entry("KSO1", console_key=key), entry("SA1")]})
    assert r.officers["KSO1"].console_key == key and r.officers["SA1"].console_key is None
    again = Roster.from_dict(tomllib.loads(dump_roster(r)))
    assert again == r
    assert "console_key" not in r.to_dict()["officers"][1]  # absent, not null, in the journal


@pytest.mark.parametrize("bad", ["short", "x" * 39 + "~", "x" * 45])
def test_a_malformed_console_key_is_refused(bad: str) -> None:
    with pytest.raises(BadInput, match=r"officers\[0\]\.console_key"):
        Roster.from_dict({"officers": [entry("KSO1", console_key=bad)]})


def test_two_seats_never_share_a_console_key() -> None:
    key = console_key()
    with pytest.raises(BadInput, match="share one console key"):
        Roster.from_dict({"officers": [entry("KSO1", console_key=key),
                                       entry("KSO2", console_key=key)]})


def test_unknown_and_missing_keys_are_still_refused() -> None:
    with pytest.raises(BadInput, match="unknown key"):
        Roster.from_dict({"officers": [entry("KSO1", colour="blue")]})
    e = entry("KSO1")
    del e["name"]
    with pytest.raises(BadInput, match="missing key"):
        Roster.from_dict({"officers": [e]})


def test_the_console_key_check_agrees_with_zmqs_z85() -> None:
    """The roster checks a CURVE key's Z85 over the standard library (the core loads no zmq)."""
    import os

    from zmq.utils import z85

    from ceremony.roster import _is_curve_key

    for _ in range(200):
        text = z85.encode(os.urandom(32)).decode()
        assert _is_curve_key(text)
        assert not _is_curve_key(text[:-1]) and not _is_curve_key(text + "0")
        assert not _is_curve_key(text[:-1] + "~")  # not in the alphabet
    overflow = "#####" + "0" * 35  # 85**5 - 1 does not fit in 32 bits
    with pytest.raises(Exception):  # noqa: B017 (zmq raises struct.error)
        z85.decode(overflow)
    assert not _is_curve_key(overflow)
