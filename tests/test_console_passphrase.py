"""A wrong passphrase at the console: it says "wrong passphrase, try again", sends nothing and asks
again; the advice to enroll a new key is kept for a key file that cannot be used (missing or
damaged). The console's own signing (consoles.app) with a key enrolled as a person does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ceremony.machine import decisions as d
from consoles.app import Console as ConsoleApp
from consoles.screen import NotSent
from keyrite.enroll import SIGNING_KEY, make_officer
from tests.machine_helpers import drive, start
from tests.test_console_screen import console, view_at

PASS = "correct horse battery staple"


class _Link:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, body: dict[str, Any], answered: Any) -> None:
        self.sent.append(body)


def _app(tmp_path: Path, view: Any) -> ConsoleApp:
    make_officer(tmp_path / "kso2", role="KSO", seat="KSO2", name="Dave Keystore",
                 person="dave", organisation="Auditors", passphrase=PASS.encode())
    app = object.__new__(ConsoleApp)  # the signing part only: no bus
    app.enrolments = {"KSO2": tmp_path / "kso2"}
    app.view = view
    app.link = _Link()  # type: ignore[assignment]
    return app


def _at_kso2():
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.RequestApproval) and x.role == "KSO"
          and x.have == 1)
    return view_at(m, w), w.now


def test_a_wrong_passphrase_says_so_sends_nothing_and_asks_again(tmp_path: Path) -> None:
    view, now = _at_kso2()
    app = _app(tmp_path, view)
    with console(view, "KSO2", now) as c:
        app.screen = c.screen
        c.screen.on_command = app.on_command
        c.press("p")
        assert c.press("not my passphrase\r") == []
        text = " ".join(c.text().split())
        assert "wrong passphrase for KSO2's key, try again (nothing was sent)" in text
        assert "enroll" not in text and str(tmp_path) not in text
        assert app.link.sent == []  # type: ignore[attr-defined]
        assert "Passphrase of KSO2's key" in c.text()  # asked again, the field empty
        assert c.screen.field.text == ""
        c.press(PASS + "\r")
    [body] = app.link.sent  # type: ignore[attr-defined]
    assert body["type"] == "approve" and "passphrase" not in body
    assert PASS not in repr(body)


def test_a_key_file_that_cannot_be_used_keeps_the_advice_to_enroll_again(tmp_path: Path) -> None:
    view, _ = _at_kso2()
    app = _app(tmp_path, view)
    app.screen = object()  # type: ignore[assignment]
    (tmp_path / "kso2" / SIGNING_KEY).unlink()
    q = view.quorums[0]
    with pytest.raises(NotSent) as e:
        app.on_command({"type": "approve", "seat": "KSO2", "step": q.step, "quorum": q.quorum,
                        "digest": q.digest, "passphrase": PASS})
    assert not e.value.again
    assert "cannot read the signing key" in str(e.value)
    assert "enroll a new key (keyrite enroll) and have the roster changed" in str(e.value)
