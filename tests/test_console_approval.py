"""The approval prompt at every terminal size from 80x24 up: the whole operation, the full digest
and every PGP word reach the screen (on pages when they do not fit on one), no word is broken
across rows, and the passphrase is taken only once the last page has been shown. On a terminal
too small to show it all, the passphrase is refused and the prompt says why.

The console runs under prompt_toolkit with a pipe for input and an output of a fixed size; what a
person sees is the real layout drawn at that size.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from ceremony.digests import colon_hex, operation_digest, pgp_words
from ceremony.machine import decisions as d
from ceremony.view import CeremonyView, Extras
from consoles.screen import ConsoleScreen
from tests.machine_helpers import MINI_PREVIOUS, drive, mini_script, role_of, start

CTRL_C = "\x03"
PGDN = "\x1b[6~"
PGUP = "\x1b[5~"
SIZES = [(80, 24), (100, 30), (120, 45), (200, 50)]


class SizedOutput(DummyOutput):
    """Draws nothing, but says how big it is: the screen lays itself out for that size."""

    def __init__(self, columns: int, rows: int) -> None:
        self.size = Size(rows=rows, columns=columns)

    def get_size(self) -> Size:
        return self.size


class Sized:
    def __init__(self, screen: ConsoleScreen, pipe: Any, sent: list[dict[str, Any]],
                 size: tuple[int, int]) -> None:
        self.screen, self.pipe, self.sent, self.size = screen, pipe, sent, size

    def press(self, *keys: str) -> list[dict[str, Any]]:
        for k in keys:
            self.pipe.send_text(k)
        self.pipe.send_text(CTRL_C)
        self.screen.app.run()
        return self.sent

    def text(self) -> str:
        return self.screen.render_text(*self.size)


@contextmanager
def sized(view: CeremonyView, seat: str, now: float, size: tuple[int, int]) -> Iterator[Sized]:
    sent: list[dict[str, Any]] = []
    with create_pipe_input() as pipe:
        screen = ConsoleScreen(view, seat, role_of(seat), sent.append, clock=lambda: now,
                               input=pipe, output=SizedOutput(*size))
        yield Sized(screen, pipe, sent, size)


def purge_of(keys: int) -> tuple[CeremonyView, float]:
    """The SA asked to approve the purge of `keys` dead keys (mini step 8)."""
    m, w = start(mini_script(), {**MINI_PREVIOUS, "key_count": str(keys)})
    drive(m, w, before=lambda x: isinstance(x, d.RequestApproval))
    v = m.view(Extras(now=w.now, connected=frozenset(m.signed_in)))
    assert v.quorums[0].operation["op"] == "purge"
    return v, w.now


def generate_of(keys: int) -> tuple[CeremonyView, float]:
    """The SA asked to approve a generation as the signer plans it: every locator listed."""
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.RequestApproval) and x.step == 11)
    v = m.view(Extras(now=w.now, connected=frozenset(m.signed_in)))
    locators = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(keys)]
    op = {"op": "generate", "token": "d34d-ba64-0c1e-77a2-9f10-4b3c-aa01-5e6f-1234-abcd",
          "duration": "P14M", "batches": [
              {"policy": "default", "role": "ZSK", "algorithm": "RSA/2048",
               "lifetime_seconds": 2592000, "zones": 13, "unused": 6, "count": keys - 13,
               "locators": locators[13:]},
              {"policy": "default", "role": "KSK", "algorithm": "RSA/2048",
               "lifetime_seconds": 31536000, "zones": 13, "unused": 0, "count": 13,
               "locators": locators[:13]}]}
    q = dataclasses.replace(v.quorums[0], operation=op, digest=operation_digest(op))
    return dataclasses.replace(v, quorums=(q,)), w.now


def pages(c: Sized) -> list[str]:
    """Every page of the open approval, PgDn after PgDn until the last."""
    out = [c.text()]
    while "All of it is shown above." not in out[-1] and "(end)" not in out[-1]:
        assert len(out) < 40, out[-1]
        c.press(PGDN)
        out.append(c.text())
    return out


def block(screen: str, label: str) -> str:
    """The row starting with `label` and the rows that continue it (indented under it)."""
    rows = screen.splitlines()
    start = next(i for i, r in enumerate(rows) if r.startswith(label))
    taken = [rows[start][len(label):]]
    for r in rows[start + 1:]:
        if not r.startswith(" " * len(label)) or not r.strip():
            break
        taken.append(r.strip())
    return " ".join(taken)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("operation", ["purge", "generate"])
def test_the_whole_operation_its_digest_and_every_word_reach_the_screen(size, operation):
    view, now = purge_of(140) if operation == "purge" else generate_of(85)
    q = view.quorums[0]
    if operation == "purge":
        expected = [str(k) for k in q.operation["delete"]]
    else:
        expected = [x for b in q.operation["batches"] for x in b["locators"]]
    with sized(view, "SA1", now, size) as c:
        assert c.press("p") == []
        shown = pages(c)
        for page in shown:
            assert all(len(row) <= size[0] for row in page.splitlines())
            assert len(page.splitlines()) <= size[1]
        last = shown[-1]
        # the digest and its words on one page: every character, every word whole
        assert block(last, "digest ").replace(" ", "") == colon_hex(q.digest)
        assert block(last, "words  ").split() == pgp_words(q.digest).split()
        # every key of the operation, each a whole word on some page
        words = {w for page in shown for w in page.split()}
        assert set(expected) <= words
        assert f"operation: {operation} on token {q.operation['token']}" in " ".join(
            " ".join(page.split()) for page in shown)
        if len(shown) > 1:  # the small sizes page: the first page does not take the passphrase
            assert size[1] <= 45
            c.press(PGUP * len(shown))
            assert "page 1 of" in c.text()
        [cmd] = c.press("my passphrase\r")  # the last page has been shown
        assert cmd["type"] == "approve" and cmd["digest"] == q.digest


def test_the_passphrase_is_refused_until_the_last_page_has_been_shown():
    view, now = purge_of(140)
    with sized(view, "SA1", now, (80, 24)) as c:
        c.press("p")
        first = c.text()
        assert "page 1 of" in first and "PgDn" in first
        assert "Passphrase taken once the last page is shown (PgDn):" in first
        assert c.press("my passphrase\r") == []
        assert "PgDn to the last page first" in " ".join(c.text().split())
        c.press(*[PGDN] * 10)
        assert "(end)" in c.text()
        assert "Passphrase of SA1's key (Enter approves, Esc cancels):" in c.text()
        [cmd] = c.press("\r")  # what was typed before is still in the (masked) field
        assert cmd["passphrase"] == "my passphrase"


@pytest.mark.parametrize("size", [(60, 15), (79, 24), (80, 23)])
def test_a_terminal_too_small_to_show_it_all_refuses_the_passphrase_and_says_why(size):
    view, now = purge_of(4)
    with sized(view, "SA1", now, size) as c:
        c.press("p")
        text = " ".join(c.text().split())
        assert f"This terminal is {size[0]}x{size[1]}, smaller than the 80x24" in text
        assert "the passphrase is not taken" in text and "Enlarge the terminal" in text
        assert c.press("my passphrase", "\r") == []
        assert c.screen.field.text == ""  # the field takes nothing
        c.screen.app.ttimeoutlen = 0.01
        c.press("\x1b")
        assert c.screen.message == "cancelled"


def test_at_80x24_the_approval_shows_the_digest_and_the_words_on_one_page():
    """The KSO's approval of the backup fits one page at 80x24: the digest and every word."""
    from tests.machine_helpers import at_kso_quorum

    m, w = at_kso_quorum(have=1)
    v = m.view(Extras(now=w.now, connected=frozenset(m.signed_in)))
    (q,) = v.quorums
    with sized(v, "KSO2", w.now, (80, 24)) as c:
        c.press("p")
        text = c.text()
        assert "All of it is shown above." in text
        assert block(text, "digest ").replace(" ", "") == colon_hex(q.digest)
        assert block(text, "words  ").split() == pgp_words(q.digest).split()
        [cmd] = c.press("pw\r")
        assert cmd["digest"] == q.digest
