"""The coordinator's end of the console bus: a ROUTER for commands and snapshots, a PUB for
numbered broadcasts, both CURVE servers behind the ZAP handler (see `protocol` for the wire).

The coordinator's state is not the bus's: `BusServer` takes two callables,
`handle_command(officer, body) -> reply body` (sync or async; raise `CommandRefused(reason)` to
answer an error) and `snapshot() -> dict`. The officer is the ZAP User-Id of the connection the
command came on, never anything in the message.

Resource handling: `run` owns its context (the ZAP endpoint is one per context, so two servers in
one process would fight over it), binds the ZAP handler first, then the ROUTER and the PUB, and
reports `(router, pub)` endpoints through `task_status.started` only then. Everything is closed
when `run` is cancelled.

Error handling: a frame that is not a bus message (`protocol.decode` with `FROM_CONSOLE`: size,
nesting, strings, numbers, schema) is answered with an `error` reply to that console only and
logged; a frame beyond `MAX_WIRE` bytes is dropped by ZeroMQ itself, with the connection, before
it is ever held whole (the console reconnects). Every error text sent back goes through
`protocol.safe_text`, so a refusal that quotes a console's words can always be encoded. A command
without a User-Id (impossible behind the ZAP handler) is dropped and logged; anything
`handle_command` raises other than `CommandRefused` ends `run`, as a bug should. A reply that
cannot be encoded (a handler's bug, never the console's frame) is logged and answered with an
error instead of ending `run`: the console asked for nothing wrong.

Commands are handled one at a time, in arrival order: the ceremony machine takes one event at a
time anyway, and a snapshot then always sits between two commands, never inside one.

Floods: nothing here queues in Python. The ROUTER holds at most `ROUTER_HWM` frames from each
console (then ZeroMQ stops reading that console's connection: TCP pushes back on it alone, and
the ROUTER's fair queueing keeps taking the others' frames in turn) and at most `REPLY_HWM`
replies to each (a console that never reads its replies loses the later ones, as ZeroMQ's
ROUTER drops them; its commands were handled: a console waits for each answer, so only a
console sending without reading gets there). A console's bad frames are logged at most
`BAD_FRAME_LOGS` times in `BAD_FRAME_WINDOW` seconds, then counted: the count is logged with its
next bad frame after the window. Refused commands are the daemon's to bound
(`keyrite.budget.RefusalBudget`, in `coordinator.live.daemon`).
"""

from __future__ import annotations

import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import zmq

from coordinator.bus import protocol as p
from coordinator.bus.curve import CurveKeyPair, Enrolment
from coordinator.bus.zap import serve_zap, watch_handshakes
from coordinator.bus.zmqtrio import TrioSocket

log = logging.getLogger("keyrite.bus.server")

__all__ = ["BusServer", "CommandRefused"]

ZAP_DOMAIN = b"keyrite"
#: ZeroMQ drops a connection whose frame is larger (and never holds the frame): well beyond
#: `protocol.FROM_CONSOLE.frame`, so a frame merely too long still gets an error reply.
MAX_WIRE = 1024 * 1024
#: Frames queued from each console in the ROUTER (ZeroMQ's default is 1,000: with frames of up
#: to `MAX_WIRE`, a GiB per console), and replies queued to each (ZeroMQ's default: a console
#: that pipelines commands, as the flood test does, reads its replies a burst behind; fewer would
#: drop replies it is about to read).
ROUTER_HWM = 100
REPLY_HWM = 1000
#: Bad frames logged per console in a window of seconds; the rest are counted.
BAD_FRAME_LOGS = 20
BAD_FRAME_WINDOW = 10.0


class _LogBudget:
    """How many bad frames of each console are logged in a window (the consoles are the enrolled
    ones: the table is as small as the roster)."""

    def __init__(self, limit: int = BAD_FRAME_LOGS, window: float = BAD_FRAME_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._seen: dict[str, tuple[float, int]] = {}  # officer -> (window start, bad frames)

    def count(self, officer: str) -> tuple[int, int]:
        """One more bad frame from `officer`: its number in this window (1 is the first), and
        how many of the window just ended went unlogged."""
        now = self.clock()
        start, n = self._seen.get(officer, (now, 0))
        unlogged = 0
        if now - start >= self.window:
            unlogged, start, n = max(0, n - self.limit), now, 0
        self._seen[officer] = (start, n + 1)
        return n + 1, unlogged


class CommandRefused(Exception):
    """Raised by `handle_command` to answer the console with an error and a reason."""


Handler = Callable[[str, Any], Any | Awaitable[Any]]


class BusServer:
    def __init__(
        self,
        *,
        keys: CurveKeyPair,
        enrolment: Enrolment,
        handle_command: Handler,
        snapshot: Callable[[], dict[str, Any]],
        router: str = "tcp://127.0.0.1:0",
        pub: str = "tcp://127.0.0.1:0",
        heartbeat: float = 1.0,
        sndhwm: int = 1000,
    ) -> None:
        self.keys = keys
        self.enrolment = enrolment
        self.handle_command = handle_command
        self.snapshot = snapshot
        self.router_endpoint, self.pub_endpoint = router, pub
        self.heartbeat = heartbeat
        self.sndhwm = sndhwm
        self.epoch = secrets.token_hex(8)
        self.seq = 0
        self._pub: TrioSocket | None = None
        self._bad_frames = _LogBudget()

    def _curve_server(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret.encode())

    async def run(
        self, *, task_status: trio.TaskStatus[tuple[str, str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        ctx = zmq.Context()
        router = pub = None
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_zap, ctx, self.enrolment)
                router = TrioSocket(ctx.socket(zmq.ROUTER))
                self._curve_server(router.zmq)
                router.zmq.setsockopt(zmq.MAXMSGSIZE, MAX_WIRE)
                router.zmq.setsockopt(zmq.RCVHWM, ROUTER_HWM)
                router.zmq.setsockopt(zmq.SNDHWM, REPLY_HWM)
                nursery.start_soon(watch_handshakes, router.zmq, "router")
                router.zmq.bind(self.router_endpoint)
                pub = TrioSocket(ctx.socket(zmq.PUB))
                self._curve_server(pub.zmq)
                pub.zmq.setsockopt(zmq.SNDHWM, self.sndhwm)
                nursery.start_soon(watch_handshakes, pub.zmq, "pub")
                pub.zmq.bind(self.pub_endpoint)
                self._pub = pub
                self.router_endpoint = router.zmq.getsockopt_string(zmq.LAST_ENDPOINT)
                self.pub_endpoint = pub.zmq.getsockopt_string(zmq.LAST_ENDPOINT)
                log.info(
                    "bus: commands on %s, broadcasts on %s, epoch %s",
                    self.router_endpoint,
                    self.pub_endpoint,
                    self.epoch,
                )
                nursery.start_soon(self._serve, router)
                if self.heartbeat > 0:
                    nursery.start_soon(self._beat)
                task_status.started((self.router_endpoint, self.pub_endpoint))
        finally:
            self._pub = None
            for sock in (router, pub):
                if sock is not None:
                    sock.close()
            ctx.term()

    # --- broadcasts --------------------------------------------------------------------------

    async def publish(self, body: Any) -> int:
        """Broadcast `body` to every console with the next sequence number, and return it.

        Call it right after the state `snapshot()` describes has changed, with no await in
        between, so that a snapshot taken at seq N always includes broadcasts 1..N.
        """
        if self._pub is None:
            raise trio.ClosedResourceError("the bus server is not running")
        self.seq += 1
        data = p.encode(p.Broadcast(epoch=self.epoch, seq=self.seq, body=body))
        await self._pub.send(data)  # PUB never waits: at its high-water mark it drops
        return self.seq

    async def _beat(self) -> None:
        """Heartbeats reveal a lost last broadcast; `heartbeat` <= 0 (even set later) stops them."""
        while self.heartbeat > 0:
            await trio.sleep(self.heartbeat)
            if self._pub is not None:
                await self._pub.send(p.encode(p.Heartbeat(epoch=self.epoch, seq=self.seq)))

    # --- commands ----------------------------------------------------------------------------

    async def _serve(self, router: TrioSocket) -> None:
        while True:
            frames = await router.recv_multipart(copy=False)
            if len(frames) != 2:
                log.warning("dropped a message of %d frames", len(frames))
                continue
            routing, frame = frames
            officer = frame.get("User-Id")
            if not officer:
                log.error("dropped a message without a User-Id (no ZAP handler?)")
                continue
            reply = await self._answer(officer, frame.bytes)
            await router.send_multipart([routing.bytes, self._encode(officer, reply)])

    @staticmethod
    def _encode(officer: str, reply: p.Message) -> bytes:
        try:
            return p.encode(reply)
        except (ValueError, TypeError, RecursionError) as e:  # UnicodeEncodeError included
            log.error("to %s: cannot encode the answer to %s (%s)", officer,
                      p.safe_text(getattr(reply, "id", None), 200), p.safe_text(str(e), 200))
            rid = getattr(reply, "id", None)
            return p.encode(p.ErrorReply(id=p.safe_text(rid, p.ID_LIMIT) if rid else None,
                                         error="the coordinator could not encode its answer"))

    def _log_bad_frame(self, officer: str, why: str) -> None:
        """Log a console's bad frame, up to the budget (a flood of them must not flood the log)."""
        n, unlogged = self._bad_frames.count(officer)
        budget = self._bad_frames
        if unlogged:
            log.warning("from %s: %d more bad frames were not logged (over %d in %g s)",
                        officer, unlogged, budget.limit, budget.window)
        if n <= budget.limit:
            log.warning("from %s: %s", officer, p.safe_text(why))
        elif n == budget.limit + 1:
            log.warning("from %s: more than %d bad frames in %g s: the rest of them are "
                        "counted, not logged", officer, budget.limit, budget.window)

    async def _answer(self, officer: str, data: bytes) -> p.Message:
        try:
            message = p.decode(data, p.FROM_CONSOLE)
        except p.ProtocolError as e:
            self._log_bad_frame(officer, str(e))
            return p.ErrorReply(id=None, error=p.safe_text(f"bad message: {e}"))
        if isinstance(message, p.SnapshotRequest):
            seq, state = self.seq, self.snapshot()  # no await between: consistent
            return p.Snapshot(id=message.id, epoch=self.epoch, seq=seq, state=state)
        if not isinstance(message, p.Command):
            return p.ErrorReply(id=None, error=f"a console does not send {type(message).__name__}")
        try:
            result = self.handle_command(officer, message.body)
            if inspect.isawaitable(result):
                result = await result
        except CommandRefused as e:
            return p.ErrorReply(id=message.id, error=p.safe_text(str(e)))
        return p.Reply(id=message.id, body=result)
