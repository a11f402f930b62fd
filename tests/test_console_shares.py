"""A KSO's KEK share on their own console (consoles/shares.py, the screen's share prompts):
the holder's console opens the box sealed to it and shows every word, at 80x24 too, until the
holder confirms; another console cannot open it; a KSO brings a share back typed (masked), its
checksum checked on the console, and what is sent is a box sealed to the signer's share key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import zmq
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from shamir_mnemonic import generate_mnemonics

from ceremony.view import CeremonyView, Extras
from consoles import shares
from consoles.screen import ConsoleScreen
from keyrite import sealing
from tests.machine_helpers import drive, role_of
from tests.test_machine_kek import SCRIPT, _at_drill, start

CTRL_C = "\x03"
KEK_ID = "00" * 16


def _pair() -> tuple[str, str]:
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


@pytest.fixture(scope="module")
def words() -> list[str]:
    [group] = generate_mnemonics(1, [(2, 3)], b"k" * 32)
    return group


@contextmanager
def console(view: CeremonyView, seat: str, keeper: shares.ShareKeeper | None
            ) -> Iterator[tuple[ConsoleScreen, Any, list[dict[str, Any]]]]:
    sent: list[dict[str, Any]] = []
    with create_pipe_input() as pipe:
        yield ConsoleScreen(view, seat, role_of(seat), sent.append, clock=lambda: view.now,
                            shares=keeper, input=pipe, output=DummyOutput()), pipe, sent


def press(screen: ConsoleScreen, pipe: Any, *keys: str) -> None:
    for k in keys:
        pipe.send_text(k)
    pipe.send_text(CTRL_C)
    screen.app.run()


def _at_share(words: list[str]) -> tuple[CeremonyView, str, str]:
    """The view at KSO1's kek.share step, its box sealed to a fresh console key of KSO1."""
    m, w = start(SCRIPT, {})
    w.previous["hsm_fingerprint"] = "d34d-ba64"
    drive(m, w, until=4)
    kek_id = m.results_of("hsm.kek")[0][1]["kek_id"]
    public, secret = _pair()
    box = sealing.seal(public, words[0].encode(), sealing.share_context(kek_id, "KSO1"))
    view = m.view(Extras(now=w.now, sealed_shares=(("KSO1", box),)))
    return view, secret, kek_id


@pytest.mark.parametrize("size", [(80, 24), (160, 60)])
def test_the_holder_sees_every_word_of_their_share_then_confirms(
        words: list[str], size: tuple[int, int]) -> None:
    view, secret, _ = _at_share(words)
    with console(view, "KSO1", shares.ShareKeeper("KSO1", secret)) as (screen, pipe, sent):
        press(screen, pipe, "a")
        text = screen.render_text(*size)
        shown = [w for row in shares.rows(words[0]) for w in row.split()[1::2]]
        assert shown == words[0].split()
        for row in shares.rows(words[0]):
            assert row in text, (row, text)
        assert "written down" in text
        assert sent == []  # nothing leaves before the holder confirms
        press(screen, pipe, "\r")
        assert sent == []  # Enter alone confirms nothing
        press(screen, pipe, "written\r")
        assert sent == [{"type": "acknowledge", "seat": "KSO1", "step": 4}]


def test_another_console_key_does_not_open_the_share(words: list[str]) -> None:
    view, _, _ = _at_share(words)
    _, other = _pair()
    with console(view, "KSO1", shares.ShareKeeper("KSO1", other)) as (screen, pipe, sent):
        press(screen, pipe, "a")
        text = screen.render_text(160, 60)
        assert "does not open on KSO1's console" in text
        assert not any(row in text for row in shares.rows(words[0]))
        assert sent == []


def test_a_ksos_typed_share_is_checked_and_sealed_to_the_signer(words: list[str]) -> None:
    m, w = _at_drill()
    kek_id = m.share_asked(w.now).kek_id  # type: ignore[union-attr]
    signer_public, signer_secret = _pair()
    view = m.view(Extras(now=w.now, share_key=signer_public))
    _, mine = _pair()
    with console(view, "KSO2", shares.ShareKeeper("KSO2", mine)) as (screen, pipe, sent):
        wrong = words[1].split()
        wrong[5] = "academic" if wrong[5] != "academic" else "acid"
        press(screen, pipe, "k", " ".join(wrong), "\r")
        assert sent == []
        assert "checksum does not match" in screen.render_text(160, 60)
        assert " ".join(wrong) not in screen.render_text(160, 60)
    with console(view, "KSO2", shares.ShareKeeper("KSO2", mine)) as (screen, pipe, sent):
        press(screen, pipe, "k", words[1].upper(), "\r")
        assert words[1] not in screen.render_text(160, 60)  # masked while typed
        [cmd] = sent
        assert cmd["type"] == "share" and cmd["step"] == 10 and cmd["purpose"] == "drill"
        assert words[1] not in str(cmd)
        opened = sealing.open_sealed(signer_secret, cmd["box"],
                                     sealing.share_context(kek_id, "signer"))
        assert opened.decode() == words[1]


def test_an_sa_or_a_ksos_second_share_is_not_offered(words: list[str]) -> None:
    from consoles.actions import actions_for

    m, w = _at_drill()
    view = m.view(Extras(now=w.now, share_key=_pair()[0], shares_brought=("KSO1",)))
    assert [a.kind for a in actions_for(view, "KSO2", "KSO") if a.kind == "share"] == ["share"]
    assert not [a for a in actions_for(view, "KSO1", "KSO") if a.kind == "share"]
    assert not [a for a in actions_for(view, "SA1", "SA") if a.kind == "share"]


def test_the_approver_reads_every_holder_and_key_of_the_kek_they_approve() -> None:
    from consoles.screen import operation_lines

    keys = [_pair()[0] for _ in range(3)]
    op = {"op": "kek", "token": "d34d", "threshold": 2,
          "holders": [{"seat": f"KSO{i + 1}", "key": k} for i, k in enumerate(keys)]}
    text = "\n".join(operation_lines(op))
    assert "split it into 3 shares, any 2 of which rebuild it" in text
    for i, k in enumerate(keys):
        assert f"KSO{i + 1} console key {k}" in text
    restore = {"op": "restore", "token": "d34d", "file": "b.tar.gz", "sha256": "ab",
               "backup_token": "d34d", "keys": [], "method": "wrap", "share_key": keys[0],
               "kek": {"id": KEK_ID, "threshold": 2, "shares": 3}}
    text = "\n".join(operation_lines(restore))
    assert f"opened by 2 of the 3 shares of backup KEK {KEK_ID}" in text and keys[0] in text
