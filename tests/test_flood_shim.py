"""Bounded floods on the signer shim (issue 16, item 5), a real shim over SSH on a SoftHSM2 token:

- one session sends 100,000 refused lines and never reads an answer: the shim holds at most
  OUTPUT_BUFFER bytes of answers for it, stops reading it (SSH's flow control holds the client
  back), logs REFUSAL_LOGS of its refusals and a count, and answers another client at once;
- one session sends 20,000 lines and reads the answers: every one is answered, in order;
- many sessions: a connection gets MAX_SESSIONS_PER_CONNECTION, the next are refused `Busy`,
  another connection is still served;
- the shim's memory (RSS, read from /proc) stays flat through all of it: the figures are printed
  and in docs/signer.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any

import asyncssh

from signer_shim import protocol
from signer_shim.request_journal import RequestJournal
from signer_shim.server import (
    MAX_SESSIONS_PER_CONNECTION,
    OUTPUT_BUFFER,
    REFUSAL_LOGS,
    REFUSED_EXECUTES,
    REFUSED_EXECUTES_WINDOW,
    Shim,
    _Refusals,
)
from staging.fixture import RehearsalToken
from tests.test_flood_bus import rss_kib as _own_rss
from tests.test_fuzz_shim import connect, finals_of, info_time
from tests.test_shim_ssh import WAIT, shim_files, start_shim, stop

#: a line refused with a long answer (the unknown method's error lists every known one)
REFUSED = (b'{"v":1,"id":"' + b"i" * 120 + b'","key":"k","method":"nope","params":{}}\n')


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def open_session(conn: asyncssh.SSHClientConnection) -> Any:
    return await conn.create_process(subsystem=protocol.SUBSYSTEM, encoding=None)


def test_a_flooding_session_is_bounded_and_others_are_served(
        small_rehearsal: RehearsalToken, tmp_path: Path) -> None:
    assert _own_rss() > 0
    config = shim_files(small_rehearsal, tmp_path / "shim")
    proc, port = start_shim(config)
    d = config.parent
    figures: dict[str, Any] = {}
    try:
        async def scenario() -> None:
            figures["info alone"] = await info_time(port, d)
            figures["rss start"] = rss_kib(proc.pid)
            # 1. a session that writes and never reads
            async with await connect(port, d) as conn:
                mute = await open_session(conn)
                n = 100_000
                mute.stdin.write(REFUSED * n)  # buffered client-side as SSH holds it back
                await asyncio.sleep(8)
                figures["rss mute"] = rss_kib(proc.pid)
                figures["info during mute"] = await info_time(port, d)
                mute.close()
            # 2. a session that writes 20,000 lines and reads every answer
            async with await connect(port, d) as conn:
                talk = await open_session(conn)
                n2 = 20_000
                reading = asyncio.ensure_future(finals_of(talk, n2))
                started = time.monotonic()
                talk.stdin.write((REFUSED.replace(b'"nope"', b'"x"')) * n2)
                await asyncio.sleep(0.5)
                figures["info during talk"] = await info_time(port, d)
                answers = await asyncio.wait_for(reading, 300)
                figures["talk seconds"] = time.monotonic() - started
                assert all(a["error"]["type"] == "UnknownMethod" for a in answers)
                talk.stdin.write_eof()
            figures["rss talk"] = rss_kib(proc.pid)
            # 3. many sessions on one connection, and several connections
            conns = [await connect(port, d) for _ in range(4)]
            try:
                busy = served = 0
                for conn in conns:
                    for _ in range(MAX_SESSIONS_PER_CONNECTION + 2):
                        s = await open_session(conn)
                        with contextlib.suppress(BrokenPipeError):  # refused: closed at once
                            s.stdin.write(protocol.Request("s", "s", "info", {}).to_line())
                        line = await asyncio.wait_for(s.stdout.readline(), WAIT)
                        msg = protocol.parse_reply(line)
                        if "error" in msg:
                            assert msg["error"]["type"] == "Busy", msg
                            busy += 1
                        else:
                            served += 1
                figures["sessions served"], figures["sessions busy"] = served, busy
                figures["info during sessions"] = await info_time(port, d)
            finally:
                for conn in conns:
                    conn.close()
            await asyncio.sleep(1)
            figures["rss end"] = rss_kib(proc.pid)

        asyncio.run(scenario())
        assert proc.poll() is None
    finally:
        stop(proc)
    print("\nshim flood:", ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in figures.items()))
    start = figures["rss start"]
    for k in ("rss mute", "rss talk", "rss end"):
        assert figures[k] - start < 20 * 1024, (k, figures[k] - start)
    for k in ("info during mute", "info during talk", "info during sessions"):
        assert figures[k] < 10, (k, figures[k])
    assert figures["sessions served"] == 4 * MAX_SESSIONS_PER_CONNECTION
    assert figures["sessions busy"] == 4 * 2
    log = (d / "shim.log").read_text()
    assert "Traceback" not in log and "Internal" not in log
    refused_lines = len(re.findall(r"refused request (None|')", log))
    # one mute session, one talking session: REFUSAL_LOGS each, then a count at its end
    assert refused_lines <= 2 * REFUSAL_LOGS, refused_lines
    assert "more refused requests were not logged" in log
    assert OUTPUT_BUFFER <= 1 << 20


def test_refused_executes_are_journaled_up_to_a_budget_per_session(tmp_path: Path) -> None:
    """2,000 executes with forged approvals on one session: REFUSED_EXECUTES are checked and
    journaled each window, the rest refused unread and journaled as one count; another session's
    are checked as ever."""
    from tests.shim_helpers import cast_authority
    from tests.test_fuzz_shim import Obliging

    now = [1000.0]
    journal = RequestJournal(tmp_path / "requests.jsonl")
    shim = Shim(Obliging(), cast_authority(), journal)  # type: ignore[arg-type]
    session = _Refusals(clock=lambda: now[0])

    def execute(i: int) -> bytes:
        return protocol.Request(f"r{i}", f"k{i}", "execute", {
            "operation": {"op": "purge", "token": "t"}, "approvals": [{"forged": True}]}).to_line()

    async def flood(n: int, s: _Refusals | None) -> list[dict[str, Any]]:
        return [protocol.parse_reply(await shim.answer(execute(i), None, s)) for i in range(n)]

    answers = asyncio.run(flood(2_000, session))
    assert all(a["error"]["type"] == "QuorumRefused" for a in answers)
    unread = sum("refused unread" in a["error"]["message"] for a in answers)
    assert unread == 2_000 - REFUSED_EXECUTES
    [other] = asyncio.run(flood(1, _Refusals(clock=lambda: now[0])))  # another session's
    assert "refused unread" not in other["error"]["message"]
    refused = [e for e in journal.entries() if e["event"] == "refused"]
    assert len(refused) == REFUSED_EXECUTES + 1  # the budget's, and the other session's
    now[0] += REFUSED_EXECUTES_WINDOW
    asyncio.run(flood(1, session))  # the window is over: the count is journaled, and this one
    refused = [e for e in journal.entries() if e["event"] == "refused"]
    assert refused[-2]["key"] == "*" and refused[-2]["reason"].startswith(
        f"{2_000 - REFUSED_EXECUTES} more execute requests")
    assert refused[-1]["key"] == "k0" and len(refused) == REFUSED_EXECUTES + 3
    shim.queue.close()
