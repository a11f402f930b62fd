"""`keyrite console --config FILE`: one officer's console, joined up.

The screen (`consoles.screen`) draws views and turns keystrokes into commands; the link
(`consoles.bus_link`) carries them; this module holds what neither may: the officer's enrolment. An
approval or a sign-off is signed here, with the seat's key unlocked by the passphrase just typed,
for that one signature; the passphrase and the key are dropped at once, and only the signed
approval leaves the console. A wrong passphrase sends nothing: the screen says so and asks for it
again.

An auditor's console (`journal_copy` in its config) also keeps its own verified copy of the
journal, fetched as the ceremony writes it (`consoles.journal_copy`).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ceremony.view import CeremonyView
from consoles.bus_link import ConsoleLink
from consoles.journal_copy import JournalCopy
from consoles.screen import ConsoleScreen, NotSent
from consoles.signing import Stale, sign_command, sign_signin_command
from coordinator.bus import BusClient, CurveKeyPair, Refused
from coordinator.live.config import ConsoleConfig
from keyrite.enroll import EnrollError, OfficerEntry, console_keys, unlock
from keyrite.exits import FAILED, BadInput
from keyrite.keyfiles import KeyFileError

log = logging.getLogger("keyrite.console")

FIRST_VIEW_TIMEOUT = 30.0


class Console:
    def __init__(self, cfg: ConsoleConfig) -> None:
        self.cfg = cfg
        try:
            me, public, secret = console_keys(cfg.enrolment)
            others = [console_keys(d)[0] for d in cfg.also]
        except EnrollError as e:
            raise BadInput(str(e)) from None
        for o in others:
            if o.person != me.person:
                raise BadInput(f"{cfg.path}: console.also: {o.seat} is {o.name}'s seat, not "
                               f"{me.name}'s")
        self.me: OfficerEntry = me
        self.enrolments = {me.seat: cfg.enrolment, **{o.seat: d for o, d in
                                                      zip(others, cfg.also, strict=True)}}
        self.also = tuple((o.seat, o.role) for o in others)
        self.client = BusClient(router=cfg.commands, pub=cfg.broadcasts,
                                server_public=cfg.coordinator_key,
                                keys=CurveKeyPair(public, secret))
        self.copy = (JournalCopy(cfg.journal_copy, cfg.journal_key)
                     if cfg.journal_copy and cfg.journal_key else None)
        self.link_state = "connecting"
        self.view: CeremonyView | None = None
        self.screen: ConsoleScreen | None = None
        self._first = threading.Event()
        self._fetch = threading.Event()
        self.link = ConsoleLink(self.client, self._on_view, self._on_link)

    # --- from the link (trio thread) --------------------------------------------------------
    def _on_view(self, view: CeremonyView) -> None:
        self.view = view
        if self.screen is not None:
            self.screen.update(view)
        self._first.set()
        self._fetch.set()

    def _on_link(self, state: str) -> None:
        self.link_state = state
        if self.screen is not None:
            self.screen.app.invalidate()
        if state.startswith("refused"):
            self._first.set()

    def status(self) -> str:
        parts = [] if self.link_state == "connected" else [f"LINK {self.link_state.upper()}"]
        if self.copy is not None:
            parts.append(self.copy.status())
        return "   ".join(parts)

    # --- from the screen (prompt_toolkit thread) ----------------------------------------------
    def on_command(self, command: dict[str, Any]) -> None:
        """Sign what needs signing and send it. Raises NotSent (the screen shows why and, for a
        wrong passphrase, asks again) when nothing could be sent. The answer is shown while the
        step that was current when it was sent is (`notify`'s step)."""
        assert self.screen is not None
        view = self.view
        step = view.step.n if view is not None and view.step is not None else None
        try:
            body = self._signed(dict(command))
        except Stale as e:
            raise NotSent(f"NOT SENT: {e}") from None
        except EnrollError as e:
            seat = getattr(e, "seat", None) or command.get("seat")
            if isinstance(e.__cause__, KeyFileError):  # the key file opened, the passphrase not
                raise NotSent(f"wrong passphrase for {seat}'s key, try again (nothing was "
                              "sent)", again=True) from None
            raise NotSent(f"NOT SENT: {seat}'s key cannot be used: {e}. If its key file is "
                          "missing or damaged, enroll a new key (keyrite enroll) and have the "
                          "roster changed.") from None
        what = body.get("type")

        def answered(reply: Any, refused: str | None) -> None:
            assert self.screen is not None
            self.screen.notify(f"REFUSED {what}: {refused}" if refused else f"accepted: {what}",
                               step)

        self.link.send(body, answered)

    def _signed(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Replace a typed passphrase by the signature it unlocks, for this one command (a
        sign-in of several seats carries one passphrase per seat: each seat's key signs)."""
        passphrases = cmd.pop("passphrases", None)
        if passphrases is not None:
            keys = {}
            for seat, phrase in passphrases.items():
                try:
                    keys[seat] = unlock(self.enrolments[seat], phrase.encode()).signing_key
                except EnrollError as e:
                    e.seat = seat  # type: ignore[attr-defined]  # whose passphrase was wrong
                    raise
            del passphrases
            assert self.view is not None
            return sign_signin_command(self.view, cmd, keys, time.time())
        passphrase = cmd.pop("passphrase", None)
        if passphrase is None:
            return cmd
        seat = cmd["seat"]
        key = unlock(self.enrolments[seat], passphrase.encode()).signing_key
        del passphrase
        assert self.view is not None
        return sign_command(self.view, cmd, key, time.time())

    # --- the auditor's copy --------------------------------------------------------------------
    def _keep_copy(self) -> None:
        assert self.copy is not None
        while True:
            self._fetch.wait(2.0)
            self._fetch.clear()
            while self.copy.problem is None:
                try:
                    page = self.link.request({"type": "journal", "from": self.copy.size})
                except Refused as e:
                    log.warning("journal copy: %s", e)
                    break
                kept = self.copy.add(int(page["from"]), list(page["lines"]))
                if self.screen is not None:
                    self.screen.app.invalidate()
                if not kept:
                    break

    # --- running -------------------------------------------------------------------------------
    def run(self) -> int:
        print(f"keyrite console: {self.me.seat} ({self.me.role}, {self.me.name}) connecting to "
              f"{self.cfg.commands} ...", flush=True)
        self.link.start()
        if self.link.error is not None:
            print(f"keyrite console: the link failed: {self.link.error}", file=sys.stderr)
            return FAILED
        if not self._first.wait(FIRST_VIEW_TIMEOUT) or self.view is None:
            state = self.link_state
            self.link.stop()
            print(f"keyrite console: no view from the coordinator ({state})", file=sys.stderr)
            return FAILED
        if self.copy is not None:
            threading.Thread(target=self._keep_copy, name="journal-copy", daemon=True).start()
        screen = ConsoleScreen(self.view, self.me.seat, self.me.role, self.on_command,
                               also=self.also, status=self.status)
        self.screen = screen
        screen.update(self.view)  # a view that came while the screen was being built
        root = logging.getLogger()
        root.handlers = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
        root.addHandler(_ToScreen(self.screen))
        try:
            self.screen.app.run()
        finally:
            self.link.stop()
        return 0


class _ToScreen(logging.Handler):
    """Once the full screen is up, a log line would tear it: errors go to its message line."""

    def __init__(self, screen: ConsoleScreen) -> None:
        super().__init__(logging.ERROR)
        self.screen = screen

    def emit(self, record: logging.LogRecord) -> None:
        self.screen.notify(f"console error: {record.getMessage()}")


def run(config: Path, log: Path | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger().handlers[0].setLevel(logging.WARNING)
    if log is not None:
        to_file = logging.FileHandler(log)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger().addHandler(to_file)
        logging.getLogger().setLevel(logging.INFO)
    return Console(ConsoleConfig.load(config)).run()
