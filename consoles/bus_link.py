"""A console's network side: the bus client on trio, in its own thread, beside prompt_toolkit's
asyncio loop in the main thread.

The two loops meet in three places only: views and link states go to the screen through
callbacks (the screen's `update`/`notify` are safe from any thread), and commands come from the
screen through `send`, which hands them to the trio thread and returns at once (the answer, or the
coordinator's refusal with its reason, arrives later through `on_answer`). Presence is sent every
second, so every console shows who dropped within a few seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import trio

from ceremony.view import CeremonyView, from_dict
from coordinator.bus import BusClient, Refused, view_delta
from coordinator.bus import protocol as p

log = logging.getLogger("keyrite.console")

PRESENCE = 1.0
ANSWER_TIMEOUT = 15.0

Answer = Callable[[Any, str | None], None]  # (reply body, refusal reason or None)


class ConsoleLink:
    def __init__(self, client: BusClient, on_view: Callable[[CeremonyView], None],
                 on_link: Callable[[str], None]) -> None:
        self.client = client
        self.on_view = on_view
        self.client.on_link = on_link
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-bus", daemon=True)
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # shown by the console; the thread must not die silently
            self.error = e
            log.exception("the console's bus link stopped")
            self._started.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.client.run)
            nursery.start_soon(self._updates)
            nursery.start_soon(self._presence)
            self._started.set()

    async def _updates(self) -> None:
        shown: dict[str, Any] | None = None  # the view as of the last update, as a dict
        async for update in self.client.updates:
            log.debug("view %d (%s)", update.seq, type(update).__name__)
            try:  # a broadcast carries what changed since the one before (view_delta)
                data = update.state if isinstance(update, p.Reset) else \
                    view_delta.apply(shown, update.body)
                view = from_dict(data)
            except ValueError as e:  # DeltaError too
                log.error("a view this console cannot read: %s", e)
                continue
            shown = data
            self.on_view(view)

    async def _presence(self) -> None:
        while True:
            with trio.move_on_after(PRESENCE * 3):
                try:
                    await self.client.command({"type": "presence"})
                except Refused as e:
                    log.error("presence refused: %s", e)
            await trio.sleep(PRESENCE)

    # --- from the screen's thread ---------------------------------------------------------------
    def send(self, body: dict[str, Any], on_answer: Answer) -> None:
        if self._token is None or self._nursery is None:
            on_answer(None, "not connected to the coordinator")
            return
        trio.from_thread.run_sync(self._nursery.start_soon, self._command, body, on_answer,
                                  trio_token=self._token)

    async def _command(self, body: dict[str, Any], on_answer: Answer) -> None:
        with trio.move_on_after(ANSWER_TIMEOUT) as scope:
            try:
                reply = await self.client.command(body)
            except Refused as e:
                on_answer(None, str(e))
                return
            on_answer(reply, None)
        if scope.cancelled_caught:
            on_answer(None, f"no answer from the coordinator in {ANSWER_TIMEOUT:.0f} s")

    def request(self, body: dict[str, Any], timeout: float = ANSWER_TIMEOUT) -> Any:
        """Send and wait (from a non-trio thread): the reply body, or raise Refused."""
        if self._token is None:
            raise Refused("not connected to the coordinator")

        async def ask() -> Any:
            with trio.fail_after(timeout):
                return await self.client.command(body)

        try:
            return trio.from_thread.run(ask, trio_token=self._token)
        except trio.TooSlowError:
            raise Refused(f"no answer from the coordinator in {timeout:.0f} s") from None

    def stop(self) -> None:
        if self._token is not None and self._nursery is not None:
            with contextlib.suppress(trio.RunFinishedError):  # it had stopped already
                trio.from_thread.run_sync(self._nursery.cancel_scope.cancel,
                                          trio_token=self._token)
        if self._thread is not None:
            self._thread.join(5)
