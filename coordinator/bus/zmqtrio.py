"""pyzmq sockets under trio.

pyzmq has no trio support, and the obvious adapter ("wait until ZMQ_FD is readable, then recv")
hangs: ZMQ_FD is edge-triggered and shared by sending and receiving, and any operation on the
socket (a send, a recv, reading ZMQ_EVENTS) may consume the edge that announced a message for
some other task. So, as measured and written down in the field notes:

- `ZMQ_EVENTS` is read before every send and recv (NOBLOCK) and before sleeping: it is the
  truth, the FD only says "look again" (reading it first spares the `zmq.Again` exception a
  reader would otherwise raise before every message; `zmq.Again` still means "wait");
- exactly one task sleeps in `trio.lowlevel.wait_readable(fd)` (trio allows only one waiter
  per FD); the others sleep on an in-process event;
- after every successful send or recv, and whenever the FD fires, every sleeper is woken
  (the FD sleeper by cancelling its private cancel scope) so each re-reads `ZMQ_EVENTS`; a
  socket only one task ever waits on (`one_task`) needs no scope;
- `trio.lowlevel.notify_closing(fd)` before the socket is closed, so a sleeper gets
  `trio.ClosedResourceError` instead of waiting on a dead descriptor.

Rejected: a thread per socket (pyzmq sockets are not thread-safe, and a hop through a thread costs
more than the whole round trip), and `zmq.asyncio` through trio-asyncio (it changes the global
asyncio policy, see the field notes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio
import zmq

__all__ = ["TrioSocket"]

# plain ints: pyzmq's enums cost a Python call for each `&`
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_NOBLOCK = int(zmq.NOBLOCK)


class TrioSocket:
    """A pyzmq socket whose send and receive calls wait in trio instead of blocking the thread.

    Any number of tasks may send and receive on one `TrioSocket` at the same time. Multipart
    messages are atomic in ZeroMQ (the first frame's success means the rest go, and a received
    first frame means the rest are there), so `send_multipart`/`recv_multipart` never interleave.

    `one_task=True` promises that one task alone ever waits on the socket (a console's SUB, a
    monitor): its wait on the FD then needs no cancel scope for others to poke it (a few
    microseconds per message); a second task waiting at once gets trio's BusyResourceError.
    """

    def __init__(self, sock: zmq.Socket, *, one_task: bool = False) -> None:
        self.zmq = sock
        self._one_task = one_task
        self._fd: int = sock.getsockopt(zmq.FD)
        self._fd_scope: trio.CancelScope | None = None
        self._changed = trio.Event()
        self._sleepers = 0  # tasks waiting on `_changed`
        self._closed = False

    # --- waiting -----------------------------------------------------------------------------

    def _wake(self) -> None:
        """Make every sleeper re-read ZMQ_EVENTS: something on the socket may have changed."""
        if self._sleepers:  # a new Event only when someone waits on the old one
            self._changed.set()
            self._changed = trio.Event()
        if self._fd_scope is not None:
            self._fd_scope.cancel()

    async def _wait_for(self, flag: int) -> bool:
        """Return once ZMQ_EVENTS has `flag` (POLLIN or POLLOUT) or the socket closes; True if
        it had to sleep for it (then it has been a full checkpoint)."""
        slept = False
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the socket was closed")
            if self.zmq.getsockopt(_EVENTS) & flag:
                return slept
            slept = True
            if self._one_task:
                await trio.lowlevel.wait_readable(self._fd)  # nobody else to poke it
            elif self._fd_scope is None:
                # No await between reading EVENTS and registering: no edge can be missed.
                try:
                    with trio.CancelScope() as scope:
                        self._fd_scope = scope
                        await trio.lowlevel.wait_readable(self._fd)
                finally:
                    self._fd_scope = None
                    # The FD fired, we were poked, or we are leaving (cancelled): in every case
                    # the others must look again, and one of them take over the FD.
                    self._wake()
            else:
                self._sleepers += 1
                try:
                    await self._changed.wait()
                finally:
                    self._sleepers -= 1

    async def _attempt(self, flag: int, op: Any) -> Any:
        """Run `op()` (a NOBLOCK call) once ZMQ_EVENTS has `flag`, until it does not raise
        zmq.Again. EVENTS first: a call that would block costs an exception, a read does not
        (a console's reader finds its socket empty before every message)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        spins = 0
        slept = False
        while True:
            waited = await self._wait_for(flag)
            slept = slept or waited
            try:
                result = op()
            except zmq.Again:
                if waited:
                    spins = 0
                else:
                    # EVENTS says ready yet the call said Again: ROUTER_MANDATORY reports
                    # POLLOUT when *any* peer has room. Retry once at once, then back off so
                    # that this can never become a busy loop.
                    spins += 1
                    if spins > 1:
                        await trio.sleep(min(0.0005 * spins, 0.01))
                        slept = True
                continue
            self._wake()
            if not slept:
                # A schedule point on every call (a socket that always has a message must not
                # starve the other tasks), cancel-shielded so that a message taken off the
                # socket is never lost to a cancellation. A call that slept has had one.
                await trio.lowlevel.cancel_shielded_checkpoint()
            return result

    # --- the calls ---------------------------------------------------------------------------

    async def send(self, data: bytes | zmq.Frame, *, copy: bool = True) -> None:
        await self._attempt(_POLLOUT, lambda: self.zmq.send(data, _NOBLOCK, copy=copy))

    async def send_multipart(
        self, frames: Sequence[bytes | zmq.Frame], *, copy: bool = True
    ) -> None:
        await self._attempt(
            _POLLOUT, lambda: self.zmq.send_multipart(frames, _NOBLOCK, copy=copy)
        )

    async def recv(self, *, copy: bool = True) -> Any:
        """One frame: bytes, or a `zmq.Frame` with `copy=False` (to read `frame.get(...)`)."""
        return await self._attempt(_POLLIN, lambda: self.zmq.recv(_NOBLOCK, copy=copy))

    async def recv_multipart(self, *, copy: bool = True) -> list[Any]:
        """All frames of one message: bytes, or `zmq.Frame`s with `copy=False`."""
        return await self._attempt(
            _POLLIN, lambda: self.zmq.recv_multipart(_NOBLOCK, copy=copy)
        )

    # --- closing -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, linger: int = 0) -> None:
        """Wake every sleeper with ClosedResourceError, then close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._fd)
        self._wake()
        self.zmq.close(linger=linger)

    def __enter__(self) -> TrioSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
