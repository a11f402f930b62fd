"""The console bus (coordinator/bus): wire format, catch-up logic and ZAP decisions without I/O,
then server and clients over CURVE on 127.0.0.1, and the trio adapter under concurrent load.

Each test runs its own `trio.run`; every network wait is bounded by `trio.fail_after`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import zmq

from coordinator.bus import (
    BusClient,
    BusServer,
    CommandRefused,
    Enrolment,
    Refused,
    TrioSocket,
    generate_keypair,
)
from coordinator.bus import protocol as p
from coordinator.bus.curve import CurveKeyPair, check_public_key
from coordinator.bus.zap import decide

# --- the wire ---------------------------------------------------------------------------------


def test_messages_round_trip() -> None:
    for m in (
        p.Command(id="1", body={"do": "ack", "step": 3}),
        p.SnapshotRequest(id="2"),
        p.Reply(id="1", body=None),
        p.ErrorReply(id=None, error="bad"),
        p.Snapshot(id="2", epoch="e", seq=7, state={"step": 3}),
        p.Broadcast(epoch="e", seq=8, body=["x"]),
        p.Heartbeat(epoch="e", seq=8),
    ):
        assert p.decode(p.encode(m)) == m
    assert (
        p.encode(p.Heartbeat(epoch="e", seq=1)) == b'{"epoch":"e","kind":"heartbeat","seq":1,"v":1}'
    )


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v":2,"kind":"snapshot","id":"1"}',
        b'{"v":true,"kind":"snapshot","id":"1"}',
        b'{"v":1,"kind":"nope","id":"1"}',
        b'{"v":1,"kind":"snapshot"}',
        b'{"v":1,"kind":"snapshot","id":"1","officer":"KSO1"}',
        b'{"v":1,"kind":"heartbeat","epoch":"e","seq":"1"}',
        b'{"v":1,"kind":"heartbeat","epoch":"e","seq":true}',
        b'{"v":1,"kind":"heartbeat","epoch":"e","seq":-1}',
    ],
)
def test_decode_is_strict(data: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.decode(data)


# --- catching up (pure) -----------------------------------------------------------------------


def b(seq: int, epoch: str = "e") -> p.Broadcast:
    return p.Broadcast(epoch=epoch, seq=seq, body=seq)


def snap(seq: int, epoch: str = "e") -> p.Snapshot:
    return p.Snapshot(id="s", epoch=epoch, seq=seq, state={"at": seq})


def test_follower_starts_from_a_snapshot_and_replays_what_came_meanwhile() -> None:
    f = p.Follower()
    assert f.start() == [p.NeedSnapshot("start")]
    assert f.broadcast(b(3)) == [] and f.broadcast(b(4)) == []
    assert f.snapshot(snap(3)) == [p.Reset(3, {"at": 3}), p.Apply(4, 4)]
    assert f.broadcast(b(5)) == [p.Apply(5, 5)]
    assert f.broadcast(b(5)) == []  # a duplicate is shown once


def test_follower_asks_again_on_a_gap_and_catches_up() -> None:
    f = p.Follower()
    f.start()
    f.snapshot(snap(0))
    assert f.broadcast(b(1)) == [p.Apply(1, 1)]
    assert f.broadcast(b(4)) == [p.NeedSnapshot("gap: expected 2, got 4")]
    assert f.broadcast(b(5)) == []
    assert f.snapshot(snap(4)) == [p.Reset(4, {"at": 4}), p.Apply(5, 5)]


def test_follower_heartbeat_epoch_and_reconnect() -> None:
    f = p.Follower()
    f.start()
    f.snapshot(snap(2))
    assert f.heartbeat(p.Heartbeat(epoch="e", seq=2)) == []
    assert f.heartbeat(p.Heartbeat(epoch="e", seq=3)) == [p.NeedSnapshot("heartbeat at 3, shown 2")]
    assert f.reconnected() == []  # already asking
    f.snapshot(snap(3))
    assert f.broadcast(b(1, epoch="new")) == [p.NeedSnapshot("new epoch new")]
    assert f.snapshot(snap(0, epoch="new")) == [p.Reset(0, {"at": 0}), p.Apply(1, 1)]
    assert f.reconnected() == [p.NeedSnapshot("reconnected")]
    assert f.snapshot_lost() == [p.NeedSnapshot("snapshot request unanswered")]


# --- ZAP decisions (pure) ---------------------------------------------------------------------

KSO1 = generate_keypair()


def zap_request(mechanism: bytes, *credentials: bytes) -> list[bytes]:
    return [b"peer", b"", b"1.0", b"7", b"keyrite", b"127.0.0.1", b"", mechanism, *credentials]


def test_zap_admits_only_enrolled_curve_keys() -> None:
    from zmq.utils import z85

    enrolment = Enrolment.from_pairs({"KSO1": KSO1.public})
    reply, v = decide(enrolment, zap_request(b"CURVE", z85.decode(KSO1.public)))
    assert reply == [b"peer", b"", b"1.0", b"7", b"200", b"OK", b"KSO1", b""] and v.admitted
    stranger = generate_keypair()
    reply, v = decide(enrolment, zap_request(b"CURVE", z85.decode(stranger.public)))
    assert reply[4] == b"400" and reply[6] == b"" and v.key == stranger.public
    reply, v = decide(enrolment, zap_request(b"PLAIN", b"KSO1", b"pw"))
    assert reply[4] == b"400" and (v.mechanism, v.key) == ("PLAIN", "KSO1")
    reply, v = decide(enrolment, zap_request(b"NULL"))
    assert reply[4] == b"400" and v.mechanism == "NULL"
    reply, v = decide(enrolment, [b"peer", b"", b"9.9", b"7"])
    assert reply[4] == b"400"


def test_enrolment_refuses_a_key_twice_and_bad_keys() -> None:
    with pytest.raises(ValueError, match="both"):
        Enrolment.from_pairs([("KSO1", KSO1.public), ("KSO2", KSO1.public)])
    with pytest.raises(ValueError):
        check_public_key("short")
    assert CurveKeyPair.from_secret(KSO1.secret) == KSO1
    assert KSO1.secret not in repr(KSO1)


# --- over the network -------------------------------------------------------------------------

SERVER = generate_keypair()
OFFICERS = {"KSO1": generate_keypair(), "KSO2": generate_keypair(), "KGA": generate_keypair()}


class Coordinator:
    """A stand-in for the daemon: a counter state, every command recorded."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, Any]] = []
        self.state: dict[str, Any] = {"count": 0}

    def handle(self, officer: str, body: Any) -> Any:
        if body == "refuse me":
            raise CommandRefused("not your step")
        self.commands.append((officer, body))
        return {"officer": officer, "n": len(self.commands)}

    def snapshot(self) -> dict[str, Any]:
        return dict(self.state)


@asynccontextmanager
async def running(
    nursery: trio.Nursery, coordinator: Coordinator, **kw: Any
) -> AsyncIterator[BusServer]:
    server = BusServer(
        keys=SERVER,
        enrolment=Enrolment.from_pairs({k: v.public for k, v in OFFICERS.items()}),
        handle_command=coordinator.handle,
        snapshot=coordinator.snapshot,
        **kw,
    )
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None]) -> None:
        with scope:
            await server.run(task_status=task_status)

    await nursery.start(run)
    try:
        yield server
    finally:
        scope.cancel()


async def start_client(nursery: trio.Nursery, server: BusServer, keys: CurveKeyPair, **kw: Any):
    client = BusClient(
        router=server.router_endpoint,
        pub=server.pub_endpoint,
        server_public=SERVER.public,
        keys=keys,
        **kw,
    )
    await nursery.start(client.run)
    return client


def run(test: Callable[[trio.Nursery], Any], timeout: float = 20) -> None:
    async def main() -> None:
        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                await test(nursery)
                nursery.cancel_scope.cancel()

    trio.run(main)


def test_commands_are_attributed_to_the_officer_whose_key_carried_them() -> None:
    coordinator = Coordinator()

    async def test(nursery: trio.Nursery) -> None:
        async with running(nursery, coordinator) as server:
            kso1 = await start_client(nursery, server, OFFICERS["KSO1"])
            kso2 = await start_client(nursery, server, OFFICERS["KSO2"])
            first = await kso1.updates.receive()
            assert first == p.Reset(0, {"count": 0})
            assert await kso1.command({"do": "approve", "officer": "KSO2"}) == {
                "officer": "KSO1",
                "n": 1,
            }
            assert (await kso2.command("ack"))["officer"] == "KSO2"
            with pytest.raises(Refused, match="not your step"):
                await kso2.command("refuse me")
            assert coordinator.commands == [
                ("KSO1", {"do": "approve", "officer": "KSO2"}),
                ("KSO2", "ack"),
            ]

    run(test)


async def shown(client: BusClient, seq: int) -> dict[str, Any]:
    """Fold `client`'s updates up to `seq`: a broadcast may come as itself or, if the SUB had
    not joined yet when it was sent, inside a snapshot."""
    state: dict[str, Any] = {}
    while True:
        update = await client.updates.receive()
        state = update.state if isinstance(update, p.Reset) else update.body
        if update.seq >= seq:
            return state


def raw_client(ctx: zmq.Context, endpoint: str, setup: Callable[[zmq.Socket], None]) -> TrioSocket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    setup(sock)
    sock.connect(endpoint)
    return TrioSocket(sock)


def curve_as(keys: CurveKeyPair) -> Callable[[zmq.Socket], None]:
    def setup(sock: zmq.Socket) -> None:
        sock.curve_serverkey = SERVER.public.encode()
        sock.curve_publickey = keys.public.encode()
        sock.curve_secretkey = keys.secret.encode()

    return setup


def plain(sock: zmq.Socket) -> None:
    sock.plain_username = b"KSO1"
    sock.plain_password = b"guess"


def test_unknown_curve_null_and_plain_clients_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="keyrite.bus")
    coordinator = Coordinator()
    stranger = generate_keypair()
    ctx = zmq.Context()

    async def test(nursery: trio.Nursery) -> None:
        async with running(nursery, coordinator) as server:
            socks = [
                raw_client(ctx, server.router_endpoint, curve_as(stranger)),
                raw_client(ctx, server.router_endpoint, lambda s: None),
                raw_client(ctx, server.router_endpoint, plain),
            ]
            command = p.encode(p.Command(id="1", body="ack"))
            for sock in socks:
                with trio.move_on_after(0.2):  # queued until a handshake succeeds: never
                    await sock.send(command)
            # An enrolled console gets through meanwhile: the refusals are not a dead server.
            kso1 = raw_client(ctx, server.router_endpoint, curve_as(OFFICERS["KSO1"]))
            await kso1.send(command)
            assert p.decode(await kso1.recv()) == p.Reply(id="1", body={"officer": "KSO1", "n": 1})
            for sock in socks:
                with trio.move_on_after(0.5) as waited:
                    await sock.recv()
                assert waited.cancelled_caught, "a refused client got an answer"
            for sock in [*socks, kso1]:
                sock.close()

    try:
        run(test)
    finally:
        ctx.term()
    assert coordinator.commands == [("KSO1", "ack")]
    text = caplog.text
    assert f"refused CURVE client (key '{stranger.public}')" in text
    assert "CURVE key not enrolled" in text
    assert text.count("refused a client: handshake failed") >= 2  # NULL, PLAIN


def test_broadcasts_arrive_in_order_with_sequence_numbers() -> None:
    coordinator = Coordinator()

    async def test(nursery: trio.Nursery) -> None:
        async with running(nursery, coordinator, heartbeat=0.05) as server:
            clients = [await start_client(nursery, server, k) for k in OFFICERS.values()]
            for c in clients:
                assert await c.updates.receive() == p.Reset(0, {"count": 0})
                await c.subscribed.wait()  # else the PUB may drop the first ones (slow joiner)
            for i in range(1, 201):
                coordinator.state["count"] = i
                assert await server.publish({"count": i}) == i
            for c in clients:
                got = [await c.updates.receive() for _ in range(200)]
                assert got == [p.Apply(i, {"count": i}) for i in range(1, 201)]
                assert c.snapshots_requested == 1

    run(test)


def test_a_subscriber_that_missed_broadcasts_catches_up_from_a_snapshot() -> None:
    """The console stops reading; its SUB queue and the PUB's fill (high-water mark 10) and the
    PUB drops. When it reads again it sees a gap (or the heartbeat), asks for a snapshot, and
    ends on the coordinator's final state, every seq shown at most once and in order."""
    coordinator = Coordinator()
    n, payload = 3000, "x" * 2000

    async def test(nursery: trio.Nursery) -> None:
        async with running(nursery, coordinator, sndhwm=10, heartbeat=0.2) as server:
            client = await start_client(nursery, server, OFFICERS["KGA"], rcvhwm=10)
            assert await client.updates.receive() == p.Reset(0, {"count": 0})
            for i in range(1, n + 1):
                coordinator.state["count"] = i
                await server.publish({"count": i, "pad": payload})
                if i % 100 == 0:
                    await trio.sleep(0)
            shown, resets = 0, 0
            while shown < n:
                update = await client.updates.receive()
                if isinstance(update, p.Reset):
                    resets += 1
                    assert update.state == {"count": update.seq}
                else:
                    assert update.seq == shown + 1
                shown = update.seq
            assert resets >= 1 and client.snapshots_requested >= 2

    run(test)


def test_a_console_catches_up_after_the_coordinator_restarts() -> None:
    """A new server on the same endpoints: new epoch, the SUB reconnects, a snapshot follows."""
    coordinator = Coordinator()

    async def test(nursery: trio.Nursery) -> None:
        async with running(nursery, coordinator, heartbeat=0.2) as server:
            endpoints = {"router": server.router_endpoint, "pub": server.pub_endpoint}
            client = await start_client(nursery, server, OFFICERS["KSO2"])
            assert await client.updates.receive() == p.Reset(0, {"count": 0})
            coordinator.state["count"] = 1
            await server.publish({"count": 1})
            assert await shown(client, 1) == {"count": 1}
        coordinator.state["count"] = 5
        async with running(nursery, coordinator, heartbeat=0.2, **endpoints) as again:
            update = await client.updates.receive()
            assert update == p.Reset(0, {"count": 5}) and again.epoch != server.epoch
            coordinator.state["count"] = 6
            await again.publish({"count": 6})
            assert await shown(client, 1) == {"count": 6}
            assert (await client.command("ack"))["officer"] == "KSO2"

    run(test)


# --- the adapter ------------------------------------------------------------------------------


def test_adapter_survives_many_tasks_sending_and_receiving_on_one_socket() -> None:
    """8 senders and 8 receivers on each of two DEALER/ROUTER sockets, high-water marks of 5 so
    that senders do block: every message arrives, nothing hangs (the naive adapter does)."""
    tasks, each = 8, 250
    ctx = zmq.Context()

    async def main() -> None:
        router = TrioSocket(ctx.socket(zmq.ROUTER))
        dealer = TrioSocket(ctx.socket(zmq.DEALER))
        for s in (router, dealer):
            s.zmq.setsockopt(zmq.SNDHWM, 5)
            s.zmq.setsockopt(zmq.RCVHWM, 5)
            s.zmq.setsockopt(zmq.LINGER, 0)
        dealer.zmq.setsockopt(zmq.ROUTING_ID, b"d")
        router.zmq.setsockopt(zmq.ROUTER_MANDATORY, 1)  # wait at the high-water mark, never drop
        router.zmq.bind("inproc://stress")
        dealer.zmq.connect("inproc://stress")
        echoed, received = [], []
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:

                async def send(t: int) -> None:
                    for i in range(each):
                        await dealer.send(f"{t}:{i}".encode())

                async def receive() -> None:
                    for _ in range(each):
                        received.append(await dealer.recv())

                async def echo() -> None:
                    for _ in range(each):
                        routing, data = await router.recv_multipart(copy=False)
                        echoed.append(data.bytes)
                        await router.send_multipart([routing, data], copy=False)

                for t in range(tasks):
                    nursery.start_soon(send, t)
                    nursery.start_soon(receive)
                    nursery.start_soon(echo)
        expected = sorted(f"{t}:{i}".encode() for t in range(tasks) for i in range(each))
        assert sorted(received) == expected and sorted(echoed) == expected
        router.close()
        dealer.close()
        with pytest.raises(trio.ClosedResourceError):
            await dealer.recv()

    try:
        trio.run(main)
    finally:
        ctx.term()


def test_close_wakes_a_waiting_task() -> None:
    ctx = zmq.Context()

    async def main() -> None:
        sock = TrioSocket(ctx.socket(zmq.PULL))
        sock.zmq.bind("inproc://nobody")
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:

                async def wait(task_status: trio.TaskStatus[None]) -> None:
                    task_status.started()
                    with pytest.raises(trio.ClosedResourceError):
                        await sock.recv()

                await nursery.start(wait)
                await nursery.start(wait)
                await trio.sleep(0.05)
                sock.close()

    try:
        trio.run(main)
    finally:
        ctx.term()
