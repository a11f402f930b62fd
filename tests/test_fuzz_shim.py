"""Fuzzing the signer shim's protocol (issue 16, item 4): every method of signer_shim.protocol
with its params, built by hypothesis (tests/fuzz_helpers.py) right, wrong and hostile, mutated
request lines, random bytes, and the regression corpus (tests/fuzz_corpus/shim/, one line per
file).

Pure level: `parse_request` raises only `ProtocolError` (of a documented type), and `Shim.answer`
(a stand-in signer that does whatever it is asked, the real authority check and request journal)
never answers `Internal`, which would be a bug of the shim. Live level: a real shim over SSH on a
SoftHSM2 token takes a fuzzed stream of lines on one session while another session's `info` is
still answered. `KEYRITE_FUZZ_EXAMPLES` sets how many examples each test runs (docs/signer.md).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from hypothesis import given

from signer_shim import protocol
from signer_shim.interface import Inventory, KeyInfo
from signer_shim.request_journal import RequestJournal
from signer_shim.server import Shim
from staging.fixture import RehearsalToken
from tests.fuzz_helpers import FUZZ, METHODS, corpus, shim_lines, shim_requests
from tests.shim_helpers import cast_authority
from tests.test_shim_ssh import WAIT, shim_files, start_shim, stop

SHIM_CORPUS = corpus("shim")
ERROR_TYPES = ("BadRequest", "UnsupportedVersion", "UnknownMethod", "QuorumRefused",
               "IdempotencyConflict", "SignerError")


def test_the_strategies_cover_every_method() -> None:
    assert set(METHODS) == set(protocol.METHODS)


def check_line(line: bytes) -> protocol.Request | None:
    try:
        req = protocol.parse_request(line)
    except protocol.ProtocolError as e:
        assert e.type in ("BadRequest", "UnsupportedVersion", "UnknownMethod"), e.type
        assert e.id is None or (isinstance(e.id, str) and len(e.id) <= protocol.MAX_TOKEN)
        protocol.parse_reply(protocol.error(e.id, e.type, str(e)))  # the answer encodes
        return None
    assert req.method in protocol.METHODS
    protocol.parse_request(req.to_line())  # what passed passes again
    return req


@FUZZ
@given(shim_lines)
def test_parse_request_raises_only_protocol_errors(line: bytes) -> None:
    check_line(line)


@FUZZ
@given(shim_requests())
def test_structured_requests_are_parsed_or_refused(doc: dict[str, Any]) -> None:
    from tests.fuzz_helpers import shim_line

    check_line(shim_line(doc))


class Obliging:
    """A signer that does whatever it is asked: only the shim's own checks stand in the way."""

    def inventory(self) -> Inventory:
        return Inventory("stand-in", (KeyInfo("00" * 16, "ECDSA/P-256"),))

    def read_output(self, name: str) -> bytes:
        return b"output of " + name.encode("utf-8", "replace")

    def read_output_chunk(self, name: str, offset: int, length: int) -> tuple[int, bytes]:
        data = self.read_output(name)
        return len(data), data[offset:offset + length]

    def fingerprint(self) -> str:
        return "d34d"

    def share_key(self) -> str:
        return "key"

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **kw: {"called": name}


def check_answer(raw: bytes) -> dict[str, Any]:
    msg = protocol.parse_reply(raw)
    if "error" in msg:
        assert msg["error"]["type"] in ERROR_TYPES, msg
    return msg


def test_the_shim_never_answers_internal_to_fuzzed_requests(tmp_path: Path) -> None:
    shim = Shim(Obliging(), cast_authority(), RequestJournal(tmp_path / "requests.jsonl"))  # type: ignore[arg-type]

    @FUZZ
    @given(shim_lines)
    def fuzz(line: bytes) -> None:
        check_answer(asyncio.run(shim.answer(line)))

    fuzz()
    for path in SHIM_CORPUS:
        check_answer(asyncio.run(shim.answer(path.read_bytes())))
    shim.queue.close()


@pytest.mark.parametrize("path", SHIM_CORPUS, ids=[x.name for x in SHIM_CORPUS])
def test_the_shim_corpus_is_refused_or_parsed(path: Path) -> None:
    check_line(path.read_bytes())


# --- a real shim over SSH ----------------------------------------------------------------------
def collect(strategy: Any, n: int) -> list[bytes]:
    """`n` examples of `strategy`, as hypothesis draws them (shrinking is lost: the corpus keeps
    what a live run finds)."""
    out: list[bytes] = []

    @FUZZ
    @given(strategy)
    def draw(x: bytes) -> None:
        if len(out) < n:
            out.append(x)

    draw()
    return out


def one_line(raw: bytes) -> bytes:
    """One request line: newlines inside replaced, one at the end."""
    return raw.rstrip(b"\n").replace(b"\n", b" ") + b"\n"


async def connect(port: int, d: Path) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect("127.0.0.1", port, username="officer",
                                  client_keys=[str(d / "client_key")],
                                  known_hosts=str(d / "known_hosts"), agent_path=None, config=[],
                                  connect_timeout=WAIT)


async def finals_of(proc: Any, n: int) -> list[dict[str, Any]]:
    """The next `n` final messages on `proc` (progress and queue notices skipped)."""
    out = []
    while len(out) < n:
        got = await asyncio.wait_for(proc.stdout.readline(), WAIT)
        assert got, f"the shim closed the session after {len(out)} of {n} answers"
        msg = check_answer(got)
        if "progress" not in msg and "queued" not in msg:
            out.append(msg)
    return out


async def info_time(port: int, d: Path) -> float:
    """Seconds until another client's `info` is answered, connection and all."""
    started = time.monotonic()
    async with await connect(port, d) as conn:
        proc = await conn.create_process(subsystem=protocol.SUBSYSTEM, encoding=None)
        proc.stdin.write(protocol.Request("i", "i", "info", {}).to_line())
        [msg] = await finals_of(proc, 1)
        assert "result" in msg, msg
        proc.stdin.write_eof()
    return time.monotonic() - started


def test_a_real_shim_takes_a_fuzzed_stream_and_answers_another_session(
        small_rehearsal: RehearsalToken, tmp_path: Path) -> None:
    config = shim_files(small_rehearsal, tmp_path / "shim")
    lines = [one_line(x) for x in collect(shim_lines, 200)]
    lines += [one_line(p.read_bytes()) for p in SHIM_CORPUS]
    expected = sum(1 for x in lines if x.strip())
    proc, port = start_shim(config)
    try:
        async def scenario() -> tuple[list[dict[str, Any]], float]:
            async with await connect(port, config.parent) as conn:
                fuzzed = await conn.create_process(subsystem=protocol.SUBSYSTEM, encoding=None)
                reading = asyncio.ensure_future(finals_of(fuzzed, expected))
                for x in lines:
                    fuzzed.stdin.write(x)
                await asyncio.sleep(0.2)
                took = await info_time(port, config.parent)
                answers = await reading
                fuzzed.stdin.write_eof()
                return answers, took

        try:
            answers, took = asyncio.run(scenario())
        except AssertionError as e:  # an Internal answer: the shim's log says what raised
            log = (config.parent / "shim.log").read_text(errors="replace")
            raise AssertionError(f"{e}\nthe shim's log ends:\n{log[-4000:]}") from None
        assert len(answers) == expected
        assert took < 20, took
        assert proc.poll() is None
    finally:
        stop(proc)
    log = (config.parent / "shim.log").read_text()
    assert "Traceback" not in log and "Internal" not in log
