"""A live coordinator (`coordinator.live.daemon.Live`, a real machine and journal) behind a real
`BusServer` in a thread of its own, and plain blocking CURVE DEALERs for the consoles: what the
bus fuzz and flood tests drive. The world does no work (no step here needs the signer)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import trio
import zmq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.bus import BusServer, CurveKeyPair, Enrolment, generate_keypair
from coordinator.journal import Journal
from coordinator.live.daemon import Live
from tests.machine_helpers import T0, drive, kso_quorum, start


class IdleWorld:
    """The coordinator's hands, unused: no drive, no signer."""

    def __init__(self, clock: Any) -> None:
        self.secrets: dict[str, str] = {}
        self.share_boxes: dict[int, dict[str, str]] = {}
        self.drives = object()
        self._clock = clock

    def now(self) -> float:
        return float(self._clock())

    def share_handed(self, seat: str) -> None:
        pass

    def share_key(self) -> str:
        raise RuntimeError("no signer here")

    def sealed_shares(self) -> dict[str, str]:
        return {}


def make_live(tmp: Path, *, real_time: bool = False) -> tuple[Live, Journal]:
    """A ceremony at its KSO quorum (a step where consoles are asked something), journaled in
    `tmp`. `real_time`: the clock moves with the wall clock (refusal windows end)."""
    m, w = start()
    drive(m, w, before=kso_quorum(0))
    journal = Journal.create(tmp / "journal.jsonl", key=Ed25519PrivateKey.generate(),
                             name="keyrite.test/live", origin="keyrite.test/live",
                             genesis_record={"type": "genesis", "at": "2026-11-27T00:00:00Z"})
    base, t0 = max(T0 + 10_000, w.now + 1), time.monotonic()

    def clock() -> float:
        return base + (time.monotonic() - t0 if real_time else 0.0)

    return Live(m, journal, IdleWorld(clock), clock=clock), journal  # type: ignore[arg-type]


class BusThread:
    """`live` served on a real bus (ZAP, CURVE, ROUTER + PUB) by trio in a thread, with its
    clock's tick running; `consoles` are the seats enrolled (a key pair each)."""

    SERVER = generate_keypair()

    def __init__(self, live: Live, seats: tuple[str, ...], *, tick: bool = False) -> None:
        self.live = live
        self.keys: dict[str, CurveKeyPair] = {s: generate_keypair() for s in seats}
        self.tick = tick
        self.router = ""
        self.ctx = zmq.Context()
        self._started = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BusThread:
        self._thread.start()
        assert self._started.wait(30), "the bus did not start"
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._cancel is not None:
            self._token.run_sync_soon(self._cancel.cancel)
        self._thread.join(30)
        self.ctx.destroy(linger=0)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # noqa: BLE001 - reported by `alive`
            self.error = e
            self._started.set()

    async def _main(self) -> None:
        server = BusServer(keys=self.SERVER, enrolment=Enrolment.from_pairs(
            {s: k.public for s, k in self.keys.items()}), handle_command=self.live.handle,
            snapshot=self.live.view, heartbeat=0)
        self.live.bus = server
        with trio.CancelScope() as scope:
            self._cancel = scope
            async with trio.open_nursery() as nursery:
                self.router, _ = await nursery.start(server.run)
                if self.tick:
                    nursery.start_soon(self.live.tick_forever)
                self._token = trio.lowlevel.current_trio_token()
                self._started.set()

    def alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    def dealer(self, seat: str, timeout_ms: int = 15_000) -> zmq.Socket:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        sock.curve_serverkey = self.SERVER.public.encode()
        sock.curve_publickey = self.keys[seat].public.encode()
        sock.curve_secretkey = self.keys[seat].secret.encode()
        sock.connect(self.router)
        return sock


def ask(sock: zmq.Socket, frame: bytes) -> dict[str, Any]:
    """Send one frame, return its answer (strict UTF-8 JSON, an object)."""
    sock.send(frame)
    return answer(sock)


def answer(sock: zmq.Socket) -> dict[str, Any]:
    raw = sock.recv()
    obj = json.loads(raw.decode("utf-8"))
    assert isinstance(obj, dict) and obj.get("kind") in ("reply", "error", "state"), obj
    return obj


PRESENCE = b'{"v":1,"kind":"command","id":"p","body":{"type":"presence"}}'
