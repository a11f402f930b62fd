"""Console bus benchmark: how long a broadcast takes to reach 10 consoles, against raw pyzmq.

Three paths, each a PUB on 127.0.0.1 and 10 SUB sockets in this process, taking turns a round
of broadcasts each (--rounds) so that other processes' load falls on all alike:

1. raw: a bare pyzmq PUB and 10 bare SUBs (no CURVE, no JSON, no trio), the SUBs read with one
   blocking `zmq.Poller`; latency = send start to each SUB's recv;
2. raw+CURVE: the same with CURVE on every socket (what encryption alone costs);
3. bus: `BusServer.publish` to 10 `BusClient`s (CURVE, ZAP, JSON, trio adapter, the Follower),
   each console's task stamping arrival as it reads its `updates`; latency = publish start to
   the update reaching the console's own code.

One broadcast at a time: the next is sent once all 10 have it, so this is latency, not
throughput. With --processes, each console (raw SUB or BusClient) is its own process, as real
consoles are, and broadcasts go out every --gap ms instead (arrival is reported at the end; the
monotonic clock is shared by all processes).
p50 and p99 over all (broadcast, console) pairs; ratios against raw measured in the same run
(target: bus p99 <= 2x raw).
With --view, each bus broadcast is what the live coordinator sends: a journal append (fsync'd),
then the whole view of a ceremony built and broadcast, timed from the append's return; raw sends
the same bytes.
Prints numbers, asserts nothing. Usage: python bench/bus.py [--n N] [--rounds R] [--consoles C]
[--processes [--gap MS]] [--view]
"""

from __future__ import annotations

import os
import sys

# ruff: noqa: E402
# (the imports below wait for the path)
# Run as `python bench/bus.py`, sys.path[0] is bench/, where copy.py (the drive-copy bench)
# would shadow the stdlib `copy` for every module imported after it: the repository root goes
# there instead, before anything else is imported.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import statistics
import struct
import subprocess
import time
from pathlib import Path

import trio
import zmq

from coordinator.bus import BusClient, BusServer, Enrolment, generate_keypair
from coordinator.bus import protocol as p


class Raw:
    """A bare pyzmq PUB and its SUBs, used blocking (the trio loop simply waits meanwhile)."""

    def __init__(self, consoles: int, curve: bool) -> None:
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.subs = [self.ctx.socket(zmq.SUB) for _ in range(consoles)]
        if curve:
            server, client = generate_keypair(), generate_keypair()
            self.pub.curve_server = True
            self.pub.curve_secretkey = server.secret.encode()
            for s in self.subs:
                s.curve_serverkey = server.public.encode()
                s.curve_publickey = client.public.encode()
                s.curve_secretkey = client.secret.encode()
        for s in [self.pub, *self.subs]:
            s.linger = 0
        self.pub.bind("tcp://127.0.0.1:0")
        endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.poller = zmq.Poller()
        for s in self.subs:
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(endpoint)
            self.poller.register(s, zmq.POLLIN)
        self.warm()

    def warm(self) -> None:
        """Send until every SUB has received something (joined), then drain."""
        joined: set[zmq.Socket] = set()
        while len(joined) < len(self.subs):
            self.pub.send(b"warm")
            for s, _ in self.poller.poll(10):
                while s.poll(0):
                    s.recv()
                joined.add(s)
        time.sleep(0.05)
        for s in self.subs:
            while s.poll(0):
                s.recv()

    def one(self, payload: bytes) -> list[float]:
        times: list[float] = []
        pending = set(self.subs)
        t0 = time.perf_counter()
        self.pub.send(payload)
        while pending:
            for s, _ in self.poller.poll():
                s.recv()
                times.append(time.perf_counter() - t0)
                pending.discard(s)
        return times

    def close(self) -> None:
        for s in [self.pub, *self.subs]:
            s.close()
        self.ctx.term()


class LiveEvent:
    """--view: what the live coordinator does per accepted command, timed from the journal's
    fsync: build the whole view of a ceremony at the KSO quorum (the seed script, 11 seats) and
    broadcast it. The body then weighs what a real broadcast weighs."""

    def __init__(self, workdir: Path, deltas: bool = False) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from ceremony.machine import decisions as d
        from ceremony.view import Extras, to_dict
        from coordinator.journal import Journal
        from tests.machine_helpers import drive, seed_script, start

        self.m, self.w = start(seed_script())
        drive(self.m, self.w, before=lambda x: isinstance(x, d.RequestApproval)
              and x.role == "KSO")
        self.journal = Journal.create(
            workdir / "journal.jsonl", key=Ed25519PrivateKey.generate(), name="bench/bus",
            origin="bench/bus", genesis_record={"type": "genesis", "at": "2026-01-01T00:00:00Z"})
        self._view = lambda: to_dict(self.m.view(Extras(now=self.w.now)))
        self.deltas = deltas
        if deltas:  # the views before and after one KSO approval, broadcast by turns as changes
            from tests.machine_helpers import honest_event, send

            self._pair = [self._view()]
            send(self.m, self.w, honest_event(self.m, self.w))  # type: ignore[arg-type]
            self._pair.append(self._view())
            self._turn = 0

    def body(self) -> dict[str, object]:
        self.journal.append({"type": "presence", "at": self.w.now, "seats": ["KSO2"]})
        t = time.perf_counter()  # the event is on disk: from here to each console
        view = self._view()  # built each time, as the coordinator does
        if self.deltas:
            from coordinator.bus import view_delta

            before, after = self._pair[self._turn % 2], self._pair[(self._turn + 1) % 2]
            self._turn += 1
            return {"t": t, "view": view_delta.delta(before, after)}
        return {"t": t, "view": view}

    def payload(self) -> bytes:
        body = self.body()
        return json.dumps({"body": {**body, "t": 0.0}, "seq": 1, "v": 1}).encode()


async def bus_path(consoles: int, nursery: trio.Nursery, live: LiveEvent | None = None):
    keys = generate_keypair()
    officers = {f"C{i}": generate_keypair() for i in range(consoles)}
    state = {"seq": 0}
    server = BusServer(
        keys=keys,
        enrolment=Enrolment.from_pairs({k: v.public for k, v in officers.items()}),
        handle_command=lambda officer, body: None,
        snapshot=lambda: dict(state),
        heartbeat=0.05,
    )
    await nursery.start(server.run)
    clients = []
    for k in officers.values():
        c = BusClient(
            router=server.router_endpoint,
            pub=server.pub_endpoint,
            server_public=keys.public,
            keys=k,
        )
        await nursery.start(c.run)
        clients.append(c)
    for c in clients:
        assert isinstance(await c.updates.receive(), p.Reset)
        await c.subscribed.wait()
    server.heartbeat = 0  # no heartbeats during the measurements (they would add jitter)
    times: list[float] = []
    box: dict[str, object] = {}

    async def console(c: BusClient) -> None:
        from coordinator.bus import view_delta

        shown: dict[str, object] | None = None
        async for update in c.updates:
            if isinstance(update, p.Apply) and live is not None and live.deltas:
                shown = view_delta.apply(shown or {}, update.body["view"])  # as a console folds
            arrived = time.perf_counter()
            if isinstance(update, p.Apply):
                times.append(arrived - update.body["t"])
            box["left"] -= 1  # type: ignore[operator]
            if box["left"] == 0:
                box["done"].set()  # type: ignore[union-attr]

    for c in clients:
        nursery.start_soon(console, c)

    async def one() -> None:
        box["left"], box["done"] = len(clients), trio.Event()
        state["seq"] += 1
        body = live.body() if live else {"t": time.perf_counter(), "step": 42, "note": "x" * 40}
        await server.publish(body)
        await box["done"].wait()  # type: ignore[union-attr]

    return one, times, clients


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def main_async(args: argparse.Namespace) -> None:
    payload = b'{"body":{"note":"' + b"x" * 40 + b'","step":42,"t":0.0},"seq":1,"v":1}'
    live = None
    if args.view:
        import tempfile

        live = LiveEvent(Path(tempfile.mkdtemp(prefix="keyrite-bench-bus-")), args.delta)
        payload = live.payload()
        what = "the changes of one approval to a ceremony view (view_delta)" if args.delta \
            else "a whole ceremony view"
        print(f"--view: each broadcast is {what}, {len(payload)} bytes, timed from the journal's "
              "fsync; raw sends the same bytes")
    raw, raw_curve = Raw(args.consoles, curve=False), Raw(args.consoles, curve=True)
    t_raw: list[float] = []
    t_curve: list[float] = []
    async with trio.open_nursery() as nursery:
        one_bus, t_bus, clients = await bus_path(args.consoles, nursery, live)
        per_round = max(1, args.n // args.rounds)
        for _ in range(args.rounds):
            for _ in range(per_round):
                t_raw += raw.one(payload)
            for _ in range(per_round):
                t_curve += raw_curve.one(payload)
            for _ in range(per_round):
                await one_bus()
        snapshots = sum(c.snapshots_requested for c in clients)
        nursery.cancel_scope.cancel()
    raw.close()
    raw_curve.close()
    n = per_round * args.rounds
    print(f"bus: {n} broadcasts to {args.consoles} consoles each, in {args.rounds} rounds")
    rows = [("raw pyzmq PUB/SUB", t_raw), ("raw pyzmq + CURVE", t_curve), ("keyrite bus", t_bus)]
    base50, base99 = statistics.median(t_raw), pct(t_raw, 99)
    for name, t in rows:
        p50, p99 = statistics.median(t), pct(t, 99)
        print(
            f"  {name:20} p50 {p50 * 1e6:7.0f} us  p99 {p99 * 1e6:7.0f} us   "
            f"ratio p50 {p50 / base50:5.2f}x  p99 {p99 / base99:5.2f}x"
        )
    c50, c99 = statistics.median(t_curve), pct(t_curve, 99)
    b50, b99 = statistics.median(t_bus), pct(t_bus, 99)
    print(f"  bus against raw+CURVE: p50 {b50 / c50:.2f}x  p99 {b99 / c99:.2f}x")
    print(f"  target: bus p99 <= 2x raw: {'met' if b99 <= 2 * base99 else 'NOT met'}")
    print(f"  snapshots asked by consoles (1 each expected): {snapshots}")


# --- consoles in their own processes ----------------------------------------------------------


def child_raw(spec: dict[str, str]) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(spec["pub"])
    sub.recv()
    print("ready", flush=True)
    times: list[float] = []
    while True:
        data = sub.recv()
        arrived = time.perf_counter()
        if data == b"stop":
            break
        if data != b"warm":
            times.append(arrived - struct.unpack_from("d", data)[0])
    print(json.dumps(times), flush=True)


async def child_bus(spec: dict[str, str]) -> None:
    from coordinator.bus.curve import CurveKeyPair

    client = BusClient(
        router=spec["router"],
        pub=spec["pub"],
        server_public=spec["server"],
        keys=CurveKeyPair(spec["public"], spec["secret"]),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        await client.updates.receive()
        await client.subscribed.wait()
        print("ready", flush=True)
        times: list[float] = []
        async for update in client.updates:
            arrived = time.perf_counter()
            if isinstance(update, p.Apply):
                if update.body == "stop":
                    break
                times.append(arrived - update.body["t"])
        print(json.dumps(times), flush=True)
        nursery.cancel_scope.cancel()


def spawn(spec: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec) + "\n")
    proc.stdin.close()
    proc.stdin = None  # so that communicate() only reads
    return proc


async def ready(procs: list[subprocess.Popen[str]], poke) -> None:
    async def one(proc: subprocess.Popen[str]) -> None:
        line = await trio.to_thread.run_sync(proc.stdout.readline)  # type: ignore[union-attr]
        assert line.strip() == "ready", line

    async with trio.open_nursery() as nursery:
        for proc in procs:
            nursery.start_soon(one, proc)
        if poke is not None:
            while len(nursery.child_tasks) > 0:
                poke()
                await trio.sleep(0.01)


async def collect(procs: list[subprocess.Popen[str]]) -> list[float]:
    times: list[float] = []
    for proc in procs:
        out = await trio.to_thread.run_sync(proc.communicate)
        times += json.loads(out[0].strip().splitlines()[-1])
    return times


async def processes_async(args: argparse.Namespace) -> None:
    gap = args.gap / 1000
    pad = b"x" * 60
    live = None
    if args.view:
        import tempfile

        live = LiveEvent(Path(tempfile.mkdtemp(prefix="keyrite-bench-bus-")), args.delta)
        pad = live.payload()
        what = "the changes of one approval (view_delta)" if args.delta else "a whole view"
        print(f"--view: each broadcast is {what} of a ceremony, {len(pad)} bytes, timed from "
              "the journal's fsync; raw sends the same bytes")
    # raw
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.linger = 0
    pub.bind("tcp://127.0.0.1:0")
    procs = [
        spawn({"kind": "raw", "pub": pub.getsockopt_string(zmq.LAST_ENDPOINT)})
        for _ in range(args.consoles)
    ]
    await ready(procs, lambda: pub.send(b"warm"))
    await trio.sleep(0.1)
    for _ in range(args.n):
        pub.send(struct.pack("d", time.perf_counter()) + pad)
        await trio.sleep(gap)
    pub.send(b"stop")
    t_raw = await collect(procs)
    pub.close()
    ctx.term()
    # bus
    keys = generate_keypair()
    officers = {f"C{i}": generate_keypair() for i in range(args.consoles)}
    server = BusServer(
        keys=keys,
        enrolment=Enrolment.from_pairs({k: v.public for k, v in officers.items()}),
        handle_command=lambda officer, body: None,
        snapshot=lambda: {},
        heartbeat=0.05,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        procs = [
            spawn(
                {
                    "kind": "bus",
                    "router": server.router_endpoint,
                    "pub": server.pub_endpoint,
                    "server": keys.public,
                    "public": k.public,
                    "secret": k.secret,
                }
            )
            for k in officers.values()
        ]
        await ready(procs, None)
        server.heartbeat = 0
        await trio.sleep(0.1)
        for _ in range(args.n):
            await server.publish(live.body() if live else
                                 {"t": time.perf_counter(), "step": 42, "note": "x" * 40})
            await trio.sleep(gap)
        await server.publish("stop")
        t_bus = await collect(procs)
        nursery.cancel_scope.cancel()
    expected = args.n * args.consoles
    print(f"bus: {args.n} broadcasts every {args.gap} ms to {args.consoles} console processes")
    r50, r99 = statistics.median(t_raw), pct(t_raw, 99)
    for name, t in (("raw pyzmq PUB/SUB", t_raw), ("keyrite bus", t_bus)):
        p50, p99 = statistics.median(t), pct(t, 99)
        print(
            f"  {name:20} p50 {p50 * 1e6:7.0f} us  p99 {p99 * 1e6:7.0f} us   ratio p50 "
            f"{p50 / r50:5.2f}x  p99 {p99 / r99:5.2f}x   ({len(t)} of {expected} arrived)"
        )
    print(f"  target: bus p99 <= 2x raw: {'met' if pct(t_bus, 99) <= 2 * r99 else 'NOT met'}")


def child() -> None:
    spec = json.loads(sys.stdin.readline())
    if spec["kind"] == "raw":
        child_raw(spec)
    else:
        trio.run(child_bus, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="broadcasts per path")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--consoles", type=int, default=10)
    ap.add_argument("--processes", action="store_true", help="one process per console")
    ap.add_argument("--gap", type=float, default=2.0, help="ms between broadcasts (--processes)")
    ap.add_argument("--view", action="store_true",
                    help="broadcast a real ceremony view after a journal append (as the live "
                    "coordinator does), timed from the append's fsync")
    ap.add_argument("--delta", action="store_true",
                    help="with --view: broadcast what the live coordinator now sends, the changes "
                    "since the last view (coordinator.bus.view_delta), folded by each console")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child()
    elif args.processes:
        trio.run(processes_async, args)
    else:
        trio.run(main_async, args)


if __name__ == "__main__":
    main()
