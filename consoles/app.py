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

import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.view import CeremonyView
from consoles.bus_link import ConsoleLink
from consoles.cosign import Accepted, Cosigner, Refusal, cosign_command, opened, refusal_command
from consoles.journal_copy import JournalCopy
from consoles.screen import ConsoleScreen, NotSent
from consoles.shares import ShareKeeper
from consoles.signing import Stale, sign_command, sign_signin_command
from coordinator.bus import BusClient, CurveKeyPair, Refused
from coordinator.journal.note import Verifier
from coordinator.live.config import ConsoleConfig
from keyrite.enroll import EnrollError, OfficerEntry, console_keys, unlock
from keyrite.exits import FAILED, BadInput
from keyrite.files import write_atomic
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
        self._curve_secret = secret  # opens the KEK share the signer seals to this console
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
        # checks each checkpoint of the journal and cosigns (consoles.cosign): it needs the
        # coordinator's checkpoint key, given at staging (console.journal_key)
        try:
            self.keeper = (RecordKeeper(cfg.journal_key, cfg.enrolment, me.seat,
                                        self.link.request, self._tell)
                           if cfg.journal_key else None)
        except ValueError as e:
            raise BadInput(f"{cfg.path}: console.journal_key: {e}") from None

    # --- from the link (trio thread) --------------------------------------------------------
    def _on_view(self, view: CeremonyView) -> None:
        self.view = view
        if self.screen is not None:
            self.screen.update(view)
        self._first.set()
        self._fetch.set()
        if self.keeper is not None:
            self.keeper.seen(view)

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
        if self.keeper is not None and self.keeper.status():
            parts.append(self.keeper.status())
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
        body = sign_command(self.view, cmd, key, time.time())
        if cmd["type"] == "signoff" and self.keeper is not None:
            cosign = self.keeper.signoff_cosignature(seat, key, cmd["checkpoint"], time.time())
            if cosign is not None:
                body["cosign"] = cosign
            self.keeper.hold(seat, key, time.time())  # to cosign it, and the final checkpoint
        return body

    def _tell(self, body: dict[str, Any]) -> None:
        """Send a command of the console's own (a cosignature, a refusal to cosign); the answer
        is logged, and shown when it is a refusal."""

        def answered(reply: Any, refused: str | None) -> None:
            if refused:
                log.warning("%s refused: %s", body.get("type"), refused)
                if self.screen is not None:
                    self.screen.notify(f"REFUSED {body.get('type')}: {refused}")

        self.link.send(body, answered)

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
        if self.keeper is not None:
            threading.Thread(target=self.keeper.run, name="record", daemon=True).start()
        screen = ConsoleScreen(self.view, self.me.seat, self.me.role, self.on_command,
                               also=self.also, status=self.status,
                               shares=ShareKeeper(self.me.seat, self._curve_secret))
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


#: how long a key unlocked for the sign-off is kept to cosign the checkpoints that follow it, at
#: most: the ceremony's final checkpoint is written once its last step is done
HOLD_AFTER_SIGNOFF = 15 * 60.0


class RecordKeeper:
    """This console's watch over the journal (`consoles.cosign`): each new checkpoint the view
    announces is fetched with a consistency proof from the last one this console accepted,
    checked, and kept (in memory, and in the enrolment directory, so a console started again
    remembers it: `checkpoints/<hash of the coordinator key>.note`); a fork or a shrunken
    checkpoint is refused, said on this screen and told to the coordinator.

    Cosigning needs the seat's key, which only a passphrase unlocks: the key unlocked for the
    sign-off (whose prompt shows the checkpoint it signs) cosigns that checkpoint, and is kept
    in memory to cosign those that follow until the ceremony's final one (written once its last
    step is done) is cosigned, at most HOLD_AFTER_SIGNOFF seconds; then it is dropped.

    `request(body) -> reply` asks the coordinator and waits (raising `Refused`); `send(body)`
    sends without waiting."""

    def __init__(self, coordinator_key: str, enrolment: Path, seat: str,
                 request: Callable[[dict[str, Any]], Any],
                 send: Callable[[dict[str, Any]], None],
                 clock: Callable[[], float] = time.time) -> None:
        verifier = Verifier.parse(coordinator_key)
        digest = hashlib.sha256(verifier.text().encode()).hexdigest()[:16]
        self.path = Path(enrolment) / "checkpoints" / f"{digest}.note"
        self.cosigner = Cosigner(verifier, self._stored(verifier))
        self.seat = seat
        self.request = request
        self.send = send
        self.clock = clock
        self.view: CeremonyView | None = None
        self.held: tuple[str, Ed25519PrivateKey, float] | None = None  # seat, key, until
        self.cosigned: set[tuple[str, int]] = set()  # (seat, size) sent
        self.problem: str | None = None  # a fetch that failed, for the log
        self.looked: int | None = None  # the size announced when it last fetched a checkpoint
        self._wake = threading.Event()
        self._lock = threading.Lock()

    def _stored(self, verifier: Verifier) -> Accepted | None:
        """The checkpoint accepted before this console was started, if it still verifies."""
        try:
            note = self.path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            log.warning("%s: the checkpoint accepted before cannot be read: %s", self.path, e)
            return None
        try:
            return opened(note, verifier)
        except Refusal as r:
            log.warning("%s: the checkpoint accepted before is not the coordinator's: %s",
                        self.path, r.reason)
            return None

    # --- from the link's thread and the screen's ---------------------------------------------
    def seen(self, view: CeremonyView) -> None:
        self.view = view
        if view.cosigning.checkpoint is not None:
            self._wake.set()

    def hold(self, seat: str, key: Ed25519PrivateKey, now: float) -> None:
        with self._lock:
            self.held = (seat, key, now + HOLD_AFTER_SIGNOFF)
        self._wake.set()

    def signoff_cosignature(self, seat: str, key: Ed25519PrivateKey, note: str,
                            now: float) -> dict[str, Any] | None:
        """The cosignature that goes with `seat`'s sign-off of checkpoint `note`, if it is the
        one this console accepted last (checked, consistent): sent in the same command, the
        coordinator journals it right after the sign-off, before the journal is next copied.
        None if this console has not accepted that checkpoint (it is cosigned when it has)."""
        accepted = self.cosigner.accepted
        if accepted is None:
            return None
        try:
            signed = opened(note, self.cosigner.coordinator)
        except Refusal:
            return None
        if (signed.checkpoint.size, signed.root) != (accepted.checkpoint.size, accepted.root):
            return None
        if not self._first_cosignature(seat, accepted.checkpoint.size):
            return None
        command = cosign_command(accepted, seat, key, now)
        return {k: command[k] for k in ("size", "root", "cosignature")}

    def status(self) -> str:
        r = self.cosigner.refusal
        if r is None:
            return ""
        return f"YOU REFUSED TO COSIGN checkpoint {r.size}: {r.reason}"

    # --- its own thread -------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            self._wake.wait(5.0)
            self._wake.clear()
            try:
                self.look()
            except Exception:  # a bug must not stop the watch; it is logged
                log.exception("checking the journal's checkpoint")

    def look(self) -> None:
        """Fetch the latest checkpoint if the view announces one this console has not
        accepted, check it, keep it or refuse it; then cosign it if a key is held."""
        view = self.view
        if view is None or view.cosigning.checkpoint is None:
            return
        announced = view.cosigning.checkpoint
        accepted = self.cosigner.accepted
        if accepted is None or accepted.checkpoint.size != announced:
            if announced == self.looked:
                return  # fetched and refused already: looked at again when a new one comes
            try:
                reply = self.request({"type": "checkpoint", "from": self.cosigner.size})
            except Refused as e:
                self.problem = str(e)
                log.warning("checkpoint: %s", e)
                return
            self.looked = announced
            note = reply.get("note") if isinstance(reply, dict) else None
            if not isinstance(note, str):
                return
            try:
                before = self.cosigner.accepted
                accepted = self.cosigner.offer(note, reply.get("proof"), announced)
            except Refusal as r:
                log.error("refusing to cosign checkpoint %d: %s", r.size, r.reason)
                if self.cosigner.first_refusal(r):
                    self.send(refusal_command(self.seat, r))
                return
            if accepted is not before:
                self.cosigner.refusal = None
                self.path.parent.mkdir(mode=0o700, exist_ok=True)
                write_atomic(self.path, accepted.note.encode())
        self._cosign(accepted, view.status in ("completed", "aborted")
                     and accepted.checkpoint.size == announced)

    def _cosign(self, accepted: Accepted, final: bool) -> None:
        """Cosign `accepted` with the key held since the sign-off, if there is one; `final`:
        the ceremony's last checkpoint, after which the key is dropped."""
        with self._lock:
            held = self.held
            if held is None:
                return
            seat, key, until = held
            if self.clock() > until:
                self.held = None
                return
            if final:
                self.held = None
        if self._first_cosignature(seat, accepted.checkpoint.size):
            self.send(cosign_command(accepted, seat, key, self.clock()))

    def _first_cosignature(self, seat: str, size: int) -> bool:
        """Whether `seat` has not cosigned checkpoint `size` yet (and now counts as having):
        each is sent once, with the sign-off or from the watch, whichever comes first."""
        with self._lock:
            if (seat, size) in self.cosigned:
                return False
            self.cosigned.add((seat, size))
            return True


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
