"""A console's end of the bus: a DEALER for commands and snapshots, a SUB for broadcasts, both
CURVE clients of the coordinator's key (see `protocol` for the wire).

What the console should show arrives on `updates` as `protocol.Reset` (a snapshot: replace
everything) and `protocol.Apply` (the next broadcast, in order, each once). The pure
`protocol.Follower` decides when a snapshot is needed; this module only carries it out: a gap, a
heartbeat ahead of what was shown, a new epoch (coordinator restarted) or a reconnect of the SUB
(seen on its socket monitor) makes it ask for a snapshot on the DEALER, again every
`snapshot_timeout` seconds until one comes.

`updates` has no buffer: a console that stops reading stops the SUB, whose queue then fills and
the PUB drops; the gap is noticed and healed by a snapshot. Slow consoles cost nothing upstream.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
import zmq
from zmq.utils.monitor import parse_monitor_message

from coordinator.bus import protocol as p
from coordinator.bus.curve import CurveKeyPair
from coordinator.bus.zmqtrio import TrioSocket

log = logging.getLogger("keyrite.bus.client")

__all__ = ["BusClient", "Refused"]


class Refused(Exception):
    """The coordinator answered a command with an error (its reason is the message)."""


class BusClient:
    def __init__(
        self,
        *,
        router: str,
        pub: str,
        server_public: str,
        keys: CurveKeyPair,
        snapshot_timeout: float = 2.0,
        rcvhwm: int = 1000,
        ctx: zmq.Context | None = None,
    ) -> None:
        self.router_endpoint, self.pub_endpoint = router, pub
        self.server_public = server_public
        self.keys = keys
        self.snapshot_timeout = snapshot_timeout
        self.rcvhwm = rcvhwm
        self._ctx = ctx
        self.follower = p.Follower()
        self.snapshots_requested = 0
        self._ids = itertools.count(1)
        self._waiting: dict[str, trio.MemorySendChannel[p.Message]] = {}
        self._dealer: TrioSocket | None = None
        self._need_snapshot = trio.Event()
        self._emit_lock = trio.Lock()
        #: Set when the first message (a heartbeat, usually) arrives on the SUB: from then on
        #: the PUB sends this console everything (ZeroMQ's "slow joiner" is over).
        self.subscribed = trio.Event()
        self._send_update, self.updates = trio.open_memory_channel[p.Reset | p.Apply](0)
        #: "connecting", "connected", "disconnected: ..." or "refused: ..." (key not admitted)
        self.link = "connecting"
        self.on_link: Callable[[str], None] | None = None

    def _curve_client(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret.encode())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and keep the console in step until cancelled."""
        ctx = self._ctx or zmq.Context.instance()
        dealer = TrioSocket(ctx.socket(zmq.DEALER))
        sub = TrioSocket(ctx.socket(zmq.SUB), one_task=True)  # _read_broadcasts only
        try:
            self._curve_client(dealer.zmq)
            self._curve_client(sub.zmq)
            sub.zmq.setsockopt(zmq.RCVHWM, self.rcvhwm)
            sub.zmq.setsockopt(zmq.SUBSCRIBE, b"")
            # the monitor exists before the connect, so the first handshake cannot be missed
            # (seen under load: a monitor attached a moment later left the link "connecting")
            events = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                      | zmq.EVENT_DISCONNECTED)
            monitor = TrioSocket(sub.zmq.get_monitor_socket(events), one_task=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_reconnects, sub.zmq, monitor)
                dealer.zmq.connect(self.router_endpoint)
                sub.zmq.connect(self.pub_endpoint)
                self._dealer = dealer
                nursery.start_soon(self._read_replies, dealer)
                nursery.start_soon(self._read_broadcasts, sub)
                nursery.start_soon(self._sync)
                await self._act(self.follower.start())
                task_status.started()
        finally:
            self._dealer = None
            dealer.close()
            sub.close()

    # --- requests ----------------------------------------------------------------------------

    async def _request(self, message_for: Any) -> p.Message:
        if self._dealer is None:
            raise trio.ClosedResourceError("the bus client is not running")
        rid = str(next(self._ids))
        send, receive = trio.open_memory_channel[p.Message](1)
        self._waiting[rid] = send
        try:
            await self._dealer.send(p.encode(message_for(rid)))
            return await receive.receive()
        finally:
            del self._waiting[rid]

    async def command(self, body: Any) -> Any:
        """Send a command; return the coordinator's reply body or raise `Refused`."""
        answer = await self._request(lambda rid: p.Command(id=rid, body=body))
        if isinstance(answer, p.ErrorReply):
            raise Refused(answer.error)
        assert isinstance(answer, p.Reply)
        return answer.body

    @staticmethod
    async def _messages(sock: TrioSocket, what: str) -> AsyncIterator[p.Message]:
        """Every bus message arriving on `sock`; one that does not decode (`protocol.decode`
        with the console's limits: it raises only ProtocolError) is logged, skipped."""
        while True:
            data = await sock.recv()
            try:
                yield p.decode(data, p.FROM_COORDINATOR)
            except p.ProtocolError as e:
                log.warning("bad %s: %s", what, p.safe_text(str(e)))

    async def _read_replies(self, dealer: TrioSocket) -> None:
        async for message in self._messages(dealer, "reply from the coordinator"):
            rid = getattr(message, "id", None)
            waiter = self._waiting.get(rid) if rid is not None else None
            if waiter is None:
                # e.g. for a request cancelled
                log.warning("unexpected reply: %s", p.safe_text(repr(message), 200))
                continue
            waiter.send_nowait(message)

    # --- keeping in step ---------------------------------------------------------------------

    async def _act(self, actions: list[p.Action]) -> None:
        """Carry out the Follower's actions. Callers call it right after the Follower (no await
        between), and trio.Lock is FIFO, so updates reach `updates` in the Follower's order even
        when the snapshot task and the broadcast reader both have some to hand on.

        When nobody holds the lock and the console's task is waiting on `updates` (the usual
        case), nothing here waits: the update is handed over without a trip through the
        scheduler (the reader's next wait on its socket is the schedule point)."""
        if not actions:
            return
        lock = self._emit_lock
        try:
            lock.acquire_nowait()  # refused while anyone holds it or waits for it: FIFO kept
        except trio.WouldBlock:
            await lock.acquire()
        try:
            for action in actions:
                if isinstance(action, p.NeedSnapshot):
                    log.info("asking for a snapshot: %s", action.reason)
                    self._need_snapshot.set()
                    continue
                try:
                    self._send_update.send_nowait(action)
                except trio.WouldBlock:  # the console is busy: wait for it
                    await self._send_update.send(action)
        finally:
            lock.release()

    async def _sync(self) -> None:
        while True:
            await self._need_snapshot.wait()
            self._need_snapshot = trio.Event()
            while True:
                self.snapshots_requested += 1
                with trio.move_on_after(self.snapshot_timeout):
                    answer = await self._request(lambda rid: p.SnapshotRequest(id=rid))
                    break
                await self._act(self.follower.snapshot_lost())
                self._need_snapshot = trio.Event()
            if isinstance(answer, p.Snapshot):
                await self._act(self.follower.snapshot(answer))
            else:
                log.error("snapshot refused: %r", answer)
                await self._act(self.follower.snapshot_lost())

    async def _read_broadcasts(self, sub: TrioSocket) -> None:
        # `_messages` spelled out: this loop runs once per broadcast on every console
        while True:
            data = await sub.recv()
            try:
                message = p.decode(data, p.FROM_COORDINATOR)
            except p.ProtocolError as e:
                log.warning("bad broadcast: %s", p.safe_text(str(e)))
                continue
            if not self.subscribed.is_set():
                self.subscribed.set()
            if isinstance(message, p.Broadcast):
                await self._act(self.follower.broadcast(message))
            elif isinstance(message, p.Heartbeat):
                await self._act(self.follower.heartbeat(message))

    async def _watch_reconnects(self, sub: zmq.Socket, monitor: TrioSocket) -> None:
        """Every handshake after the first is a reconnect: broadcasts were missed meanwhile.
        A handshake the coordinator's ZAP handler refused means this console's key is not
        enrolled: `link` says so, for the console to show (ZeroMQ itself keeps retrying)."""
        try:
            first = True
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                kind = event["event"]
                if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    self._set_link(f"refused: the coordinator does not admit this console's key "
                                   f"(ZAP status {event['value']}); is it in the roster?")
                    continue
                if kind == zmq.EVENT_DISCONNECTED:
                    if self.link == "connected":
                        self._set_link("disconnected: trying again")
                    continue
                self._set_link("connected")
                if not first:
                    await self._act(self.follower.reconnected())
                first = False
        finally:
            sub.disable_monitor()
            monitor.close()

    def _set_link(self, state: str) -> None:
        if state != self.link:
            self.link = state
            log.info("link: %s", state)
            if self.on_link is not None:
                self.on_link(state)
