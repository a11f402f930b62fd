"""keyrite.sealing: a KEK share sealed to one console's CURVE key opens only there, only for
its purpose, and a stranger's box is refused without a traceback."""

from __future__ import annotations

import base64

import pytest
import zmq
from zmq.utils import z85

from keyrite import sealing


def _pair() -> tuple[str, str]:
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


def test_a_box_sealed_to_a_console_key_opens_with_that_consoles_secret() -> None:
    public, secret = _pair()
    context = sealing.share_context("00ff", "KSO1")
    box = sealing.seal(public, b"academic acid acrobat", context)
    assert sealing.open_sealed(secret, box, context) == b"academic acid acrobat"
    assert sealing.public_of(secret) == public


def test_another_key_or_another_purpose_does_not_open_it() -> None:
    public, _ = _pair()
    _, other_secret = _pair()
    context = sealing.share_context("00ff", "KSO1")
    box = sealing.seal(public, b"share", context)
    with pytest.raises(sealing.SealError):
        sealing.open_sealed(other_secret, box, context)
    own_public, own_secret = _pair()
    box = sealing.seal(own_public, b"share", context)
    with pytest.raises(sealing.SealError):
        sealing.open_sealed(own_secret, box, sealing.share_context("00ff", "KSO2"))


def test_every_box_is_new() -> None:
    public, _ = _pair()
    assert sealing.seal(public, b"x", "c") != sealing.seal(public, b"x", "c")


@pytest.mark.parametrize("box", [
    "", "not base64!", base64.b64encode(b"\x02" + bytes(60)).decode(),
    base64.b64encode(b"\x01" + bytes(10)).decode(), "A" * (sealing.MAX_BOX + 4), "é",
])
def test_what_is_not_a_box_is_refused(box: str) -> None:
    _, secret = _pair()
    with pytest.raises(sealing.SealError):
        sealing.open_sealed(secret, box, "c")


def test_one_flipped_byte_is_refused() -> None:
    public, secret = _pair()
    raw = bytearray(base64.b64decode(sealing.seal(public, b"share words", "c")))
    for i in (1, 40, len(raw) - 1):
        bad = bytearray(raw)
        bad[i] ^= 1
        with pytest.raises(sealing.SealError):
            sealing.open_sealed(secret, base64.b64encode(bytes(bad)).decode(), "c")


@pytest.mark.parametrize("key", ["", "~" * 40, "0" * 39, "#" * 41, "%" * 40])
def test_a_key_that_is_not_one_is_refused(key: str) -> None:
    with pytest.raises(sealing.SealError):
        sealing.seal(key, b"x", "c")


def test_z85_agrees_with_zmq() -> None:
    public, secret = _pair()
    assert z85.decode(public) == sealing.z85_decode(public)
    assert sealing.z85_encode(sealing.z85_decode(secret)) == secret
    new_public, new_secret = sealing.new_pair()
    assert zmq.curve_public(new_secret.encode()).decode() == new_public
