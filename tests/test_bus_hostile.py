"""Hostile bus frames (issue 11, "hostile inputs" 1): one frame from any enrolled console, a
witness's read-only one included, must never stop the coordinator, reach its journal unsafe or
break its reply encoder; nor may a coordinator's frame stop a console.

First the edge (`protocol.decode`: only `ProtocolError` ever escapes, by example and by
hypothesis), then the layers behind it each on their own (`commands.translate`, the daemon's
refusal record, the journal's append), then a real `keyrite coordinator` fed every hostile frame
over a witness console's CURVE DEALER, and a real `BusClient` fed hostile broadcasts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import zmq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.bus import BusClient, CommandRefused, generate_keypair
from coordinator.bus import protocol as p
from coordinator.journal import Journal
from coordinator.journal.verify import verify_journal
from coordinator.live.daemon import Live
from coordinator.live.stage import Staged, stage
from coordinator.live.translate import Invalid, translate
from keyrite.enroll import console_keys, read_curve_pair
from tests.idle_world import NoWork
from tests.machine_helpers import T0, drive, kso_quorum, roster, start
from tests.test_plainjson import json_bytes, values

ROOT = Path(__file__).resolve().parent.parent
KEYRITE = [sys.executable, "-m", "keyrite.cli"]


def cmd(body: str, rid: str = '"c"') -> bytes:
    """A command frame whose body (and id) are given as raw JSON text."""
    return b'{"v":1,"kind":"command","id":%s,"body":%s}' % (rid.encode(), body.encode())


DEEP = "[" * 2000 + "]" * 2000

#: Frames the edge must refuse: each would have stopped the coordinator, or is malformed in a way
#: nothing behind the edge should have to think about.
HOSTILE: dict[str, bytes] = {
    "surrogate command type": cmd(r'{"type":"\ud800"}'),
    "surrogate in signin seats": cmd(r'{"type":"signin","seats":["\ud800"]}'),
    "surrogate in a refusal's reason": cmd(r'{"type":"refuse","quorum":"q","reason":"\udfff"}'),
    "surrogate snapshot id": rb'{"v":1,"kind":"snapshot","id":"\ud800"}',
    "surrogate command id": cmd("{}", r'"\ud800"'),
    "surrogate in a key": cmd(r'{"type":"presence","\ud800":1}'),
    "surrogate top-level key": rb'{"v":1,"kind":"snapshot","id":"s","\udbff":1}',
    "2,000 nested arrays": cmd(DEEP),
    "2,000 nested objects": cmd('{"a":' * 2000 + "1" + "}" * 2000),
    "200,000 nested arrays": cmd("[" * 200_000 + "]" * 200_000),
    "unterminated nesting": cmd("[" * 5000),
    "5,000-digit integer": cmd("1" * 5000),
    "5,000-digit negative integer": cmd("-" + "9" * 5000),
    "integer beyond 2**53": cmd(str(2**53 + 1)),
    "integer below -2**53": cmd(str(-(2**53) - 1)),
    "huge seq": b'{"v":1,"kind":"heartbeat","epoch":"e","seq":%d}' % 10**30,
    "1e400": cmd("1e400"),
    "-1e400": cmd("-1e400"),
    "NaN": cmd("NaN"),
    "Infinity": cmd("Infinity"),
    "-Infinity": cmd("-Infinity"),
    "NaN inside a command": cmd('{"type":"journal","from":NaN}'),
    "5,000-digit float": cmd("0." + "1" * 5000),
    "overlong string": cmd(json.dumps({"type": "refuse", "reason": "x" * 100_000})),
    "overlong key": cmd(json.dumps({"x" * 100_000: 1})),
    "oversized frame": cmd(json.dumps(["ab"] * 100_000)),
    "top-level array": b'[{"v":1,"kind":"snapshot","id":"s"}]',
    "top-level string": b'"snapshot"',
    "top-level number": b"1",
    "top-level null": b"null",
    "empty frame": b"",
    "duplicate key": b'{"v":1,"kind":"snapshot","id":"s","id":"t"}',
    "duplicate key in the body": cmd('{"type":"presence","type":"journal"}'),
    "invalid UTF-8": b'{"v":1,"kind":"command","id":"c","body":"\xff"}',
    "UTF-8 encoded surrogate": b'{"v":1,"kind":"snapshot","id":"\xed\xa0\x80"}',
    "UTF-16": '{"v":1,"kind":"snapshot","id":"s"}'.encode("utf-16"),
    "BOM": b'\xef\xbb\xbf{"v":1,"kind":"snapshot","id":"s"}',
    "trailing data": b'{"v":1,"kind":"snapshot","id":"s"}{}',
    "float version": b'{"v":1.0,"kind":"snapshot","id":"s"}',
    "unknown field": b'{"v":1,"kind":"snapshot","id":"s","officer":"KGA"}',
    "missing field": b'{"v":1,"kind":"command","id":"c"}',
    "kind not a string": b'{"v":1,"kind":["snapshot"],"id":"s"}',
    "id not a string": b'{"v":1,"kind":"snapshot","id":7}',
    "overlong id": b'{"v":1,"kind":"snapshot","id":"%s"}' % (b"i" * 1000),
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_edge_refuses_each_hostile_frame_with_a_protocol_error(data: bytes) -> None:
    with pytest.raises(p.ProtocolError) as e:
        p.decode(data)
    text = str(e.value)
    assert len(text) < 400, "the reason must not echo the frame"
    text.encode("utf-8")  # the reason is itself safe to send and to journal


#: What is refused only for its size: a coordinator may send a console far more. A key named
#: twice is refused only from a console: from the coordinator the last one counts.
BIG = ("overlong string", "overlong key", "oversized frame", "duplicate key",
       "duplicate key in the body")


@pytest.mark.parametrize("data", [v for k, v in HOSTILE.items() if k not in BIG],
                         ids=[k for k in HOSTILE if k not in BIG])
def test_a_console_refuses_them_too(data: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.decode(data, p.FROM_COORDINATOR)


def nested(depth: int, kind: str) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_nesting_is_allowed_up_to_the_limit_and_no_further(kind: str) -> None:
    limit = p.FROM_CONSOLE.depth
    # the message object is level 1: its body may nest limit - 1 levels
    ok = p.encode(p.Command(id="c", body=nested(limit - 1, kind)))
    assert p.decode(ok) == p.Command(id="c", body=nested(limit - 1, kind))
    with pytest.raises(p.ProtocolError, match="nest"):
        p.decode(p.encode(p.Command(id="c", body=nested(limit, kind))))


def test_numbers_strings_and_frames_at_their_bounds_are_accepted() -> None:
    lim = p.FROM_CONSOLE
    for body in (2**53, -(2**53), 0, -0.0, 1.5e300, -2.5e-300, 1e-400, "x" * lim.string,
                 "\U0001f512 \u00e9", {"k" * lim.string: True}, [None, False, True]):
        assert p.decode(p.encode(p.Command(id="c", body=body))) == p.Command(id="c", body=body)
    # an escaped surrogate *pair* is one proper character, not a lone surrogate
    assert p.decode(cmd(r'"\ud83d\udd12"')) == p.Command(id="c", body="\U0001f512")
    frame = cmd(json.dumps("a" * 10))
    filler = lim.frame - len(frame)
    assert len(cmd(json.dumps("a" * (10 + filler)))) == lim.frame
    with pytest.raises(p.ProtocolError, match="string"):  # within the frame, over the string
        p.decode(cmd(json.dumps("a" * (10 + filler))))
    big = cmd(json.dumps(["a" * 1000] * ((lim.frame - 100) // 1006)))
    assert len(big) <= lim.frame
    assert isinstance(p.decode(big), p.Command)
    with pytest.raises(p.ProtocolError, match="frame"):
        p.decode(big + b" " * (lim.frame - len(big) + 1))
    with pytest.raises(p.ProtocolError, match="string"):
        p.decode(cmd(json.dumps("x" * (lim.string + 1))))


def test_a_console_takes_what_a_coordinator_sends() -> None:
    """Journal pages carry whole journal lines (the genesis line holds the script's text) and
    views are large: the console's limits are the wider ones."""
    page = {"from": 0, "lines": ["x" * 200_000] * 5, "size": 5}
    reply = p.encode(p.Reply(id="1", body=page))
    assert p.decode(reply, p.FROM_COORDINATOR) == p.Reply(id="1", body=page)
    with pytest.raises(p.ProtocolError):
        p.decode(reply)  # the coordinator's own limits would refuse it


def test_error_replies_are_safe_to_encode_whatever_they_say() -> None:
    for text in ("\ud800", "a\udfffb" * 10_000, "plain"):
        safe = p.safe_text(text)
        safe.encode("utf-8")
        assert len(safe) <= p.TEXT_LIMIT + 1
        p.decode(p.encode(p.ErrorReply(id=None, error=safe)), p.FROM_COORDINATOR)


# --- by hypothesis (arbitrary bytes and numbers: tests/test_plainjson.py) ---------------------
envelopes = st.fixed_dictionaries({"v": st.sampled_from([1, 1, 1, 2, True, 1.0]),
                                   "kind": st.sampled_from(["command", "snapshot", "reply",
                                                            "error", "state", "broadcast",
                                                            "heartbeat", "nope"])},
                                  optional={"id": values, "body": values, "epoch": values,
                                            "seq": values, "state": values, "error": values,
                                            "extra": values})


def _check_decode(data: bytes) -> None:
    for limits in (p.FROM_CONSOLE, p.FROM_COORDINATOR):
        try:
            message = p.decode(data, limits)
        except p.ProtocolError as e:
            str(e).encode("utf-8")
            continue
        # whatever got through is safe to encode, journal and send back
        p.encode(message)
        json.dumps(message.__dict__, ensure_ascii=False, allow_nan=False).encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes | values, st.booleans(), st.integers(0, 1200))
def test_decode_of_arbitrary_json_raises_only_protocol_errors(value: Any, ascii_only: bool,
                                                               depth: int) -> None:
    data = json_bytes(value, ascii_only)
    _check_decode(data)
    if isinstance(value, dict):  # and the same wrapped in `depth` arrays
        _check_decode(b"[" * depth + data + b"]" * depth)


# --- behind the edge: translate, the daemon's refusal record, the journal ----------------------
ADMIN = "KGA"


@pytest.mark.parametrize("body", [
    {"type": "x" * 8000},
    {"type": "refuse", "quorum": "q" * 5000, "reason": "r"},
    {"type": "refuse", "quorum": "q", "reason": "r" * 50_000},
    {"type": "record", "value": "v" * 50_000},
    {"type": "record", "value": "v", "signature": "s" * 50_000},
    {"type": "decide", "decision": "retry", "reason": ["nested"]},
    {"type": "signin", "seats": ["WI1"] * 1000},
    {"type": "signin", "seats": ["WI1", "WI1"]},
    {"type": "signin", "seats": ["WI1"], "id_checked": "yes"},
    {"type": "acknowledge", "step": "x" * 5000},
    {"type": "acknowledge", "step": [[[1]]]},
    {"type": "acknowledge", "step": True},
    {"type": "acknowledge", "seat": {"a": ["b"] * 1000}},
    {"type": "signoff", "checkpoint": "c" * 50_000, "signature": "s"},
    {"type": "secret", "step": 3, "name": "n" * 5000, "value": "v"},
    {"type": "journal", "from": "x" * 5000},
    {"type": "journal", "from": -1},
    {"type": "approve", "approval": {"ceremony": "c", "step": "1", "script_sha256": "s",
                                     "operation": "o", "nonce": "n", "expires": 1, "key": "k",
                                     "signature": "s"}},
    {"type": "approve", "approval": {"ceremony": "c", "step": 1, "script_sha256": "s",
                                     "operation": "o", "nonce": 7, "expires": 1, "key": "k",
                                     "signature": "s"}},
    {"type": "approve", "approval": {"ceremony": "c", "step": 1, "script_sha256": "s",
                                     "operation": "o", "nonce": "n", "expires": "soon",
                                     "key": "k", "signature": "s"}},
    {"type": "approve", "approval": {"ceremony": "c" * 5000, "step": 1, "script_sha256": "s",
                                     "operation": "o", "nonce": "n", "expires": 1, "key": "k",
                                     "signature": "s"}},
    {"type": "approve", "approval": {"ceremony": "c", "step": 1, "script_sha256": "s",
                                     "operation": "o", "nonce": "n", "expires": 1, "key": "k",
                                     "signature": "s", "extra": "x"}},
], ids=lambda b: json.dumps(b)[:60])
def test_translate_refuses_ill_typed_or_unbounded_fields_briefly(body: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as e:
        translate(roster(), ADMIN, "WI1" if body["type"] == "signin" else "KGA1", body, T0)
    assert len(str(e.value)) < 300, str(e.value)[:500]


def test_translate_passes_on_only_what_it_checked() -> None:
    own = translate(roster(), ADMIN, "WI1", {"type": "presence", "junk": ["x"] * 100}, T0)
    assert own.params == {}
    page = translate(roster(), ADMIN, "WI1", {"type": "journal", "from": 3, "junk": 1}, T0)
    assert page.params == {"from": 3}


def _live(tmp_path: Path) -> tuple[Live, Journal]:
    m, w = start()
    drive(m, w, before=kso_quorum(0))
    journal = Journal.create(tmp_path / "journal.jsonl", key=Ed25519PrivateKey.generate(),
                             name="keyrite.test/live", origin="keyrite.test/live",
                             genesis_record={"type": "genesis", "at": "2026-11-27T00:00:00Z"})
    now = max(T0 + 10_000, w.now + 1)
    return Live(m, journal, NoWork(), clock=lambda: now), journal  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [
    {"type": "\ud800"},
    {"type": "x" * 100_000},
    {"type": "refuse", "quorum": "keystore-backup", "reason": "\udfff" * 10},
    {"type": "signin", "seats": ["\ud800"]},
    {"type": "acknowledge", "step": "\ud800"},
    {"type": "record", "value": "\ud800"},
    {"type": "decide", "decision": "\ud800", "reason": "x"},
    ["\ud800"],
], ids=lambda b: ascii(b)[:40])
def test_the_daemon_refuses_and_journals_only_safe_text_whatever_reaches_it(
        tmp_path: Path, body: Any) -> None:
    """Defence in depth: bodies the edge would already have refused, handed to the daemon
    directly. Each is refused to its console; the journal stays whole and valid UTF-8."""
    live, journal = _live(tmp_path)
    with pytest.raises(CommandRefused) as e:
        trio.run(live.handle, "KSO1", body)
    p.encode(p.ErrorReply(id="c", error=str(e.value)))
    for entry in journal.entries():
        if entry.record.get("type") == "refused":
            rec = entry.record
            assert len(rec.get("command") or "") <= 64 and len(rec["reason"]) <= 1100
    assert trio.run(live.handle, "WI1", {"type": "presence"}) == {"seq": 0}
    journal.close()
    raw = (tmp_path / "journal.jsonl").read_bytes()
    raw.decode("utf-8")
    assert verify_journal(tmp_path / "journal.jsonl").ok


def test_the_journal_refuses_a_record_it_cannot_encode_and_stays_usable(tmp_path: Path) -> None:
    _, journal = _live(tmp_path)
    size = journal.size
    for bad in ({"type": "x", "v": "\ud800"}, {"type": "x", "\udc00": 1}, {"type": "x", "v": {1j}}):
        with pytest.raises(ValueError, match="cannot be journaled"):
            journal.append(bad)
    assert journal.size == size
    journal.append({"type": "note", "v": "fine"})
    journal.close()
    assert verify_journal(tmp_path / "journal.jsonl").ok


# --- a real coordinator ------------------------------------------------------------------------
#: Well-formed frames whose commands the coordinator must refuse (and journal) briefly.
REFUSED: dict[str, bytes] = {
    "8,000-character command type": cmd(json.dumps({"type": "x" * 8000})),
    "overlong quorum": cmd(json.dumps({"type": "refuse", "quorum": "q" * 5000, "reason": "r"})),
    "1,000 seats": cmd(json.dumps({"type": "signin", "seats": ["WI1"] * 1000})),
    "step of the wrong type": cmd(json.dumps({"type": "acknowledge", "step": "x" * 5000})),
    "approval of the wrong types": cmd(json.dumps({"type": "approve", "approval": {
        "ceremony": [], "step": "1", "script_sha256": {}, "operation": None, "nonce": 7,
        "expires": "soon", "key": 1.5, "signature": False}})),
    "not a command object": cmd('["type"]'),
    "from of the wrong type": cmd(json.dumps({"type": "journal", "from": "x" * 5000})),
}


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    return stage(tmp_path_factory.mktemp("hostile") / "ceremony", fixture="small")


def _dealer(ctx: zmq.Context, staged: Staged, seat: str) -> zmq.Socket:
    _, public, secret = console_keys(staged.live / "officers" / seat)
    server_public, _ = read_curve_pair(staged.live / "coordinator.key_secret")
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 15_000)
    sock.curve_serverkey = server_public.encode()
    sock.curve_publickey = public.encode()
    sock.curve_secretkey = secret.encode()
    sock.connect(f"tcp://127.0.0.1:{staged.ports[1]}")
    return sock


def _ask(sock: zmq.Socket, frame: bytes) -> dict[str, Any]:
    sock.send(frame)
    answer = sock.recv()
    answer.decode("utf-8")  # strict: the reply encoder sent proper UTF-8
    obj = json.loads(answer)
    assert isinstance(obj, dict)
    return obj


def test_a_running_coordinator_refuses_each_hostile_frame_and_serves_on(staged: Staged,
                                                                         tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(60)
    stderr = tmp_path / "coordinator.stderr"
    ctx = zmq.Context()
    with notify, open(stderr, "wb") as err:
        proc = subprocess.Popen([*KEYRITE, "coordinator", "--config", str(staged.coordinator)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
        try:
            assert notify.recv(64) == b"READY=1"
            witness, kga = _dealer(ctx, staged, "WI1"), _dealer(ctx, staged, "KGA")
            for name, frame in HOSTILE.items():
                answer = _ask(witness, frame)
                assert answer["kind"] == "error", (name, answer)
                assert answer["error"].startswith("bad message"), (name, answer)
                assert proc.poll() is None, name
            for name, frame in REFUSED.items():
                answer = _ask(witness, frame)
                assert answer["kind"] == "error" and answer["id"] == "c", (name, answer)
                assert len(answer["error"]) < 300, (name, answer["error"][:400])
            # a frame beyond ZeroMQ's own limit drops the connection; the DEALER reconnects
            witness.send(cmd(json.dumps("x" * (2 * 1024 * 1024))))
            # everyone is still served: the other console, and the witness itself
            assert _ask(kga, b'{"v":1,"kind":"snapshot","id":"k"}')["kind"] == "state"
            answer = _ask(kga, cmd('{"type":"presence"}'))
            assert answer["kind"] == "reply" and "seq" in answer["body"]
            # the request may ride the connection being dropped: ask until answered
            witness.setsockopt(zmq.RCVTIMEO, 1000)
            witness.setsockopt(zmq.SNDTIMEO, 1000)
            deadline = time.monotonic() + 30
            answer = {}
            while answer.get("kind") != "state":
                assert time.monotonic() < deadline, "the witness is never answered again"
                with contextlib.suppress(zmq.Again):
                    answer = _ask(witness, b'{"v":1,"kind":"snapshot","id":"w"}')
            assert proc.poll() is None, "the coordinator stopped"
            witness.close()
            kga.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            ctx.destroy(linger=0)
    log = stderr.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    journal = staged.live / "journal.jsonl"
    raw = journal.read_bytes()
    raw.decode("utf-8")  # strict: every record is valid UTF-8
    refusals = [json.loads(line)["record"] for line in raw.splitlines()]
    refusals = [r for r in refusals if r.get("type") == "refused"]
    assert len(refusals) >= len(REFUSED) - 1  # `from` of a journal page is not journaled
    for r in refusals:
        assert r["console"] == "WI1"
        assert len(r["command"] or "") <= 64 and len(r["reason"]) <= 1100
    # no section has ended, so no checkpoint is signed yet: the links are what can be checked
    out = subprocess.run([*KEYRITE, "verify", str(journal), "--key", staged.journal_key,
                          "--allow-unsigned"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


# --- a console ---------------------------------------------------------------------------------
def test_a_console_skips_hostile_frames_from_its_coordinator_and_keeps_in_step() -> None:
    """A raw CURVE PUB stands in for a coordinator (no ZAP: it admits anyone) and sends every
    hostile frame as a broadcast; the console's client logs and skips each and still takes the
    heartbeat after them."""
    server = generate_keypair()
    ctx = zmq.Context()

    async def main() -> None:
        from coordinator.bus import TrioSocket

        pub = TrioSocket(ctx.socket(zmq.PUB))
        router = TrioSocket(ctx.socket(zmq.ROUTER))
        for s in (pub, router):
            s.zmq.setsockopt(zmq.LINGER, 0)
            s.zmq.curve_server = True
            s.zmq.curve_secretkey = server.secret.encode()
        pub.zmq.bind("tcp://127.0.0.1:0")
        router.zmq.bind("tcp://127.0.0.1:0")
        client = BusClient(router=router.zmq.getsockopt_string(zmq.LAST_ENDPOINT),
                           pub=pub.zmq.getsockopt_string(zmq.LAST_ENDPOINT),
                           server_public=server.public, keys=generate_keypair(), ctx=ctx)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                # the client's first snapshot request: answer it with each hostile frame, then
                # with a proper snapshot
                routing, request = await router.recv_multipart()
                rid = json.loads(request)["id"]
                for frame in HOSTILE.values():
                    await router.send_multipart([routing, frame])
                await router.send_multipart([routing, p.encode(p.Snapshot(
                    id=rid, epoch="e", seq=0, state={"shown": True}))])
                assert await client.updates.receive() == p.Reset(0, {"shown": True})
                while not client.subscribed.is_set():
                    for frame in HOSTILE.values():
                        await pub.send(frame)
                    await trio.sleep(0.05)
                    await pub.send(p.encode(p.Heartbeat(epoch="e", seq=0)))
                    await trio.sleep(0.05)
                for frame in HOSTILE.values():
                    await pub.send(frame)
                await pub.send(p.encode(p.Broadcast(epoch="e", seq=1, body={"n": 1})))
                assert await client.updates.receive() == p.Apply(1, {"n": 1})
                nursery.cancel_scope.cancel()
        pub.close()
        router.close()

    try:
        trio.run(main)
    finally:
        ctx.destroy(linger=0)
