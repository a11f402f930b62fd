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
With --view, each bus broadcast is what the live coordinator sends, by its own code: the seed
ceremony's events one at a time, each judged by the machine and journaled (fsync'd) by the daemon
(`coordinator.live.daemon.Live`, whose journal tail the view shows), then, timed from there, the
daemon's `Live.publish`: the view built, what changed since the last broadcast
(`coordinator.bus.view_delta`), the bus; each console folds the change in before it stamps its
arrival. A ceremony that ends starts again. Raw sends the same frames (recorded beforehand from
the same path). --whole broadcasts the whole view each time instead (the daemon's old path).
Prints numbers, asserts nothing. Usage: python bench/bus.py [--n N] [--rounds R] [--consoles C]
[--processes [--gap MS]] [--view [--whole]]
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


class _Recorder:
    """A stand-in for the bus that keeps the frames it would send (raw's payloads)."""

    def __init__(self) -> None:
        self.seq, self.epoch, self.frames = 0, "0123456789abcdef", []

    async def publish(self, body: object) -> int:
        self.seq += 1
        self.frames.append(p.encode(p.Broadcast(epoch=self.epoch, seq=self.seq, body=body)))
        return self.seq


class LiveCeremony:
    """--view: what the live coordinator does for each accepted event, with its own code: the
    seed ceremony's events (11 seats; sign-ins, steps, approvals, the coordinator's work) one at
    a time, each judged by the machine and journaled, fsync'd, by the daemon
    (`coordinator.live.daemon.Live`: its runner and its journal tail, which the view shows), then
    timed from there: the daemon's own `Live.publish` (the view built, what changed since the
    last broadcast, the bus), to each console's code once it has folded the change in. A
    ceremony that ends starts again (untimed), the consoles showing the last one's view.
    `whole=True` broadcasts the whole view each time instead (what the daemon did before it sent
    deltas)."""

    def __init__(self, workdir: Path, bus: object, whole: bool = False) -> None:
        self.workdir, self.bus, self.whole = workdir, bus, whole
        self.live: object | None = None
        self.ceremonies = 0
        self._new()

    def _new(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from coordinator.journal import Journal
        from coordinator.live.daemon import Live
        from tests.idle_world import NoWork
        from tests.machine_helpers import seed_script, start

        self.ceremonies += 1
        self.m, self.w = start(seed_script())
        journal = Journal.create(
            self.workdir / f"journal-{self.ceremonies}.jsonl", key=Ed25519PrivateKey.generate(),
            name="bench/bus", origin="bench/bus",
            genesis_record={"type": "genesis", "at": "2026-01-01T00:00:00Z"})
        live = Live(self.m, journal, NoWork(), clock=lambda: self.w.now)  # type: ignore[arg-type]
        live.bus = self.bus  # type: ignore[assignment]
        if self.live is not None:
            live.published = self.live.published  # type: ignore[attr-defined]
        self.live = live

    def event(self) -> None:
        """The next event, judged and journaled (fsync'd) as the daemon does it: untimed."""
        from tests.machine_helpers import honest_event

        if self.m.status in ("completed", "aborted"):
            self._new()
        e = honest_event(self.m, self.w)
        assert e is not None
        self.w.accepted.append(e)
        self.live._apply(e)  # type: ignore[attr-defined]  # the daemon's: runner + journal

    async def publish(self) -> int:
        if self.whole:
            self.live.published = None  # type: ignore[attr-defined]
        return await self.live.publish()  # type: ignore[attr-defined]


async def view_frames(n: int, whole: bool) -> list[bytes]:
    """The frames n broadcasts of `LiveCeremony` send, encoded as the bus encodes them: raw's
    payloads (the same bytes, give or take a timestamp's digits)."""
    import tempfile

    rec = _Recorder()
    live = LiveCeremony(Path(tempfile.mkdtemp(prefix="keyrite-bench-bus-")), rec, whole)
    for _ in range(n):
        live.event()
        await live.publish()
    return rec.frames


async def bus_path(consoles: int, nursery: trio.Nursery, view: bool = False,
                   whole: bool = False):
    keys = generate_keypair()
    officers = {f"C{i}": generate_keypair() for i in range(consoles)}
    state = {"seq": 0}
    ceremony: LiveCeremony | None = None
    server = BusServer(
        keys=keys,
        enrolment=Enrolment.from_pairs({k: v.public for k, v in officers.items()}),
        handle_command=lambda officer, body: None,
        snapshot=lambda: ceremony.live.snapshot() if ceremony else dict(state),  # type: ignore
        heartbeat=0.05,
    )
    await nursery.start(server.run)
    if view:
        import tempfile

        ceremony = LiveCeremony(Path(tempfile.mkdtemp(prefix="keyrite-bench-bus-")), server,
                                whole)
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
    sent: dict[int, float] = {}  # seq -> when its publish started
    box: dict[str, object] = {}

    async def console(c: BusClient) -> None:
        from coordinator.bus import view_delta

        shown: dict[str, object] | None = None
        async for update in c.updates:
            if isinstance(update, p.Reset):
                shown = update.state
            elif view:  # as a console folds a broadcast (consoles/bus_link.py)
                shown = view_delta.apply(shown, update.body)
            arrived = time.perf_counter()
            if isinstance(update, p.Apply):
                times.append(arrived - sent[update.seq])
            box["left"] -= 1  # type: ignore[operator]
            if box["left"] == 0:
                box["done"].set()  # type: ignore[union-attr]

    for c in clients:
        nursery.start_soon(console, c)

    async def one() -> None:
        box["left"], box["done"] = len(clients), trio.Event()
        if ceremony is not None:
            ceremony.event()  # judged and journaled (fsync'd): untimed
            sent[server.seq + 1] = time.perf_counter()
            await ceremony.publish()
        else:
            state["seq"] += 1
            sent[server.seq + 1] = t = time.perf_counter()
            await server.publish({"t": t, "step": 42, "note": "x" * 40})
        await box["done"].wait()  # type: ignore[union-attr]

    return one, times, clients


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def describe_view(frames: list[bytes], whole: bool) -> str:
    sizes = sorted(len(f) for f in frames)
    what = "the whole view" if whole else "what changed since the last broadcast (view_delta)"
    return (f"--view: each broadcast follows one event of a seed ceremony, judged and journaled "
            f"(fsync'd) by the live daemon, and is its own Live.publish: {what}, timed from the "
            f"journal's fsync to each console having folded it in; frames of {sizes[0]} to "
            f"{sizes[-1]} bytes, median {statistics.median(sizes):.0f}; raw sends the same "
            "frames")


async def main_async(args: argparse.Namespace) -> None:
    payloads = [b'{"body":{"note":"' + b"x" * 40 + b'","step":42,"t":0.0},"seq":1,"v":1}']
    per_round = max(1, args.n // args.rounds)
    if args.view:
        payloads = await view_frames(per_round * args.rounds, args.whole)
        print(describe_view(payloads, args.whole))
    raw, raw_curve = Raw(args.consoles, curve=False), Raw(args.consoles, curve=True)
    t_raw: list[float] = []
    t_curve: list[float] = []
    async with trio.open_nursery() as nursery:
        one_bus, t_bus, clients = await bus_path(args.consoles, nursery, args.view, args.whole)
        i = j = 0
        for _ in range(args.rounds):
            for _ in range(per_round):
                t_raw += raw.one(payloads[i % len(payloads)])
                i += 1
            for _ in range(per_round):
                t_curve += raw_curve.one(payloads[j % len(payloads)])
                j += 1
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
    from coordinator.bus import view_delta
    from coordinator.bus.curve import CurveKeyPair

    client = BusClient(
        router=spec["router"],
        pub=spec["pub"],
        server_public=spec["server"],
        keys=CurveKeyPair(spec["public"], spec["secret"]),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        reset = await client.updates.receive()
        shown = reset.state if isinstance(reset, p.Reset) else None
        await client.subscribed.wait()
        print("ready", flush=True)
        arrivals: list[tuple[int, float]] = []  # (seq, when it reached this console's code)
        async for update in client.updates:
            if isinstance(update, p.Reset):
                shown = update.state
                continue
            if update.body == "stop":
                break
            if spec.get("view"):  # as a console folds a broadcast
                shown = view_delta.apply(shown, update.body)
            arrivals.append((update.seq, time.perf_counter()))
        print(json.dumps(arrivals), flush=True)
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


async def collect(procs: list[subprocess.Popen[str]]) -> list:
    out: list = []
    for proc in procs:
        text = await trio.to_thread.run_sync(proc.communicate)
        out += json.loads(text[0].strip().splitlines()[-1])
    return out


async def processes_async(args: argparse.Namespace) -> None:
    gap = args.gap / 1000
    frames = [b"x" * 60]
    if args.view:
        frames = await view_frames(args.n, args.whole)
        print(describe_view(frames, args.whole))
    # raw: each frame behind the time it was sent
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
    for i in range(args.n):
        pub.send(struct.pack("d", time.perf_counter()) + frames[i % len(frames)])
        await trio.sleep(gap)
    pub.send(b"stop")
    t_raw = await collect(procs)
    pub.close()
    ctx.term()
    # bus
    keys = generate_keypair()
    officers = {f"C{i}": generate_keypair() for i in range(args.consoles)}
    ceremony: LiveCeremony | None = None
    server = BusServer(
        keys=keys,
        enrolment=Enrolment.from_pairs({k: v.public for k, v in officers.items()}),
        handle_command=lambda officer, body: None,
        snapshot=lambda: ceremony.live.snapshot() if ceremony else {},  # type: ignore
        heartbeat=0.05,
    )
    sent: dict[int, float] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        if args.view:
            import tempfile

            ceremony = LiveCeremony(Path(tempfile.mkdtemp(prefix="keyrite-bench-bus-")), server,
                                    args.whole)
        procs = [
            spawn(
                {
                    "kind": "bus",
                    "router": server.router_endpoint,
                    "pub": server.pub_endpoint,
                    "server": keys.public,
                    "public": k.public,
                    "secret": k.secret,
                    "view": "yes" if args.view else "",
                }
            )
            for k in officers.values()
        ]
        await ready(procs, None)
        server.heartbeat = 0
        await trio.sleep(0.1)
        for _ in range(args.n):
            if ceremony is not None:
                ceremony.event()  # judged and journaled (fsync'd): untimed
                sent[server.seq + 1] = time.perf_counter()
                await ceremony.publish()
            else:
                sent[server.seq + 1] = t = time.perf_counter()
                await server.publish({"t": t, "step": 42, "note": "x" * 40})
            await trio.sleep(gap)
        await server.publish("stop")
        t_bus = [arrived - sent[seq] for seq, arrived in await collect(procs)]
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
                    help="what the live coordinator broadcasts: after each event of a seed "
                    "ceremony, judged and journaled (fsync'd) by the daemon, its own "
                    "Live.publish (the changes since the last view, coordinator.bus.view_delta), "
                    "timed from the fsync to each console having folded it in")
    ap.add_argument("--whole", action="store_true",
                    help="with --view: the whole view each time instead of the changes (what "
                    "the daemon sent before it sent deltas)")
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
