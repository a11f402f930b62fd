"""Fuzzing the console bus (issue 16, item 4): every command type translate.py accepts, built by
hypothesis (tests/fuzz_helpers.py) right, wrong and hostile, mutated valid frames, random bytes
and JSON, and the regression corpus (tests/fuzz_corpus/bus/, one frame per file).

Pure level: `protocol.decode` raises only `ProtocolError`, `translate` only `Invalid`, and the
daemon's `Live.handle` only `CommandRefused`, whatever comes. Live level: a real `BusServer`
serving a real `Live` takes a fuzzed stream from one console while another console's command is
still answered. `KEYRITE_FUZZ_EXAMPLES` sets how many examples each test runs (docs/bus.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from ceremony.machine import events as ev
from coordinator.bus import CommandRefused
from coordinator.bus import protocol as p
from coordinator.bus.server import MAX_WIRE
from coordinator.journal.verify import verify_journal
from coordinator.live.translate import Invalid, Own, translate
from tests.bus_fuzz_helpers import PRESENCE, BusThread, answer, ask, make_live
from tests.fuzz_helpers import (
    COMMANDS,
    FUZZ,
    SEATS,
    anything,
    bus_frames,
    command_bodies,
    corpus,
    deep,
)
from tests.machine_helpers import T0, roster

ADMIN = "KGA"
BUS_CORPUS = corpus("bus")


def test_the_strategies_cover_every_command_translate_accepts() -> None:
    from coordinator.live.translate import EVENT_COMMANDS, OWN_COMMANDS

    assert set(COMMANDS) == set(EVENT_COMMANDS + OWN_COMMANDS)


def check_translate(officer: str, body: Any) -> None:
    try:
        act = translate(roster(), ADMIN, officer, body, T0)
    except Invalid as e:
        reason = str(e)
        reason.encode("utf-8")  # journaled and sent back as it is
        assert len(reason) < 1000, reason[:300]
        return
    assert isinstance(act, (ev.Event, Own))
    assert isinstance(body, dict) and body["type"] in COMMANDS


@FUZZ
@given(st.sampled_from(SEATS), command_bodies)
def test_translate_raises_only_invalid(officer: str, body: Any) -> None:
    check_translate(officer, body)


@pytest.mark.parametrize("body", [
    deep(5000), {"type": "pause", "seat": deep(5000)}, {"type": "pause", "seat": 10**5000},
    {"type": 10**5000}, {"type": "signin", "seats": [deep(5000)]},
    {"type": "approve", "seat": "KSO1", "approval": deep(5000, kind="dict")},
    {"type": "remark", "kind": "\ud800", "text": 10**5000},
], ids=["deep", "deep seat", "huge seat", "huge type", "deep seats", "deep approval",
        "surrogate and huge"])
def test_translate_takes_what_never_passes_the_edge_too(body: Any) -> None:
    """Defence in depth: values the edge refuses (5,000 levels, 5,000 digits) given to translate
    directly are refused as Invalid, not with a RecursionError or int()'s ValueError."""
    for officer in ("KGA1", "WI1", "nobody"):
        check_translate(officer, body)


def check_frame(frame: bytes) -> Any:
    """The edge, then translate: only their own refusals."""
    try:
        message = p.decode(frame, p.FROM_CONSOLE)
    except p.ProtocolError as e:
        str(e).encode("utf-8")
        return None
    p.encode(message)  # what passed encodes again
    if isinstance(message, p.Command):
        for officer in ("KGA1", "WI1", "KSO2"):
            check_translate(officer, message.body)
    return message


@FUZZ
@given(bus_frames)
def test_the_edge_and_translate_raise_only_their_refusals(frame: bytes) -> None:
    check_frame(frame)


@pytest.mark.parametrize("path", BUS_CORPUS, ids=[x.name for x in BUS_CORPUS])
def test_the_bus_corpus_is_refused_or_handled(path: Path, tmp_path: Path) -> None:
    message = check_frame(path.read_bytes())
    if isinstance(message, p.Command):
        live, journal = make_live(tmp_path)
        for officer in ("KGA1", "WI1"):
            try:
                trio.run(live.handle, officer, message.body)
            except CommandRefused as e:
                str(e).encode("utf-8")
        journal.close()
        assert verify_journal(tmp_path / "journal.jsonl").ok


def test_the_daemon_refuses_fuzzed_commands_and_serves_on(tmp_path: Path) -> None:
    """`Live.handle` with a real machine and journal: nothing but CommandRefused, another
    console's presence is answered after each, and the journal stays valid."""
    live, journal = make_live(tmp_path)
    live.budget.limit = 10**9  # every command read (the flood test keeps the budget)

    @FUZZ
    @given(st.sampled_from(SEATS), command_bodies | anything)
    def fuzz(officer: str, body: Any) -> None:
        try:
            reply = trio.run(live.handle, officer, body)
            json.dumps(reply, allow_nan=False).encode("utf-8")
        except CommandRefused as e:
            str(e).encode("utf-8")
        assert trio.run(live.handle, "WI2", {"type": "presence"}) == {"seq": 0}

    fuzz()
    journal.close()
    assert verify_journal(tmp_path / "journal.jsonl").ok


# --- a real bus --------------------------------------------------------------------------------
def _refused_or_answered(reply: dict[str, Any]) -> None:
    assert reply["kind"] in ("reply", "error", "state"), reply
    if reply["kind"] == "error":
        assert len(reply["error"]) <= p.TEXT_LIMIT + 1


def test_a_real_bus_takes_a_fuzzed_stream_from_one_console_and_serves_another(
        tmp_path: Path) -> None:
    live, journal = make_live(tmp_path)
    live.budget.limit = 10**9
    with BusThread(live, ("WI1", "KGA1")) as bus:
        fuzzer, other = bus.dealer("WI1"), bus.dealer("KGA1")

        @FUZZ
        @given(st.lists(bus_frames, min_size=1, max_size=5))
        def fuzz(frames: list[bytes]) -> None:
            for frame in frames:  # pipelined: all sent, then every answer read
                fuzzer.send(frame)
            for _ in frames:
                _refused_or_answered(answer(fuzzer))
            assert ask(other, PRESENCE)["kind"] == "reply"
            assert bus.alive()

        fuzz()
        # the corpus over the wire; a frame beyond MAX_WIRE drops the connection unanswered
        for path in BUS_CORPUS:
            frame = path.read_bytes()
            if len(frame) <= MAX_WIRE:
                _refused_or_answered(ask(fuzzer, frame))
        for path in BUS_CORPUS:
            if path.stat().st_size > MAX_WIRE:
                fuzzer.send(path.read_bytes())
        assert ask(other, PRESENCE)["kind"] == "reply"
        assert bus.alive()
        for s in (fuzzer, other):
            s.close()
    journal.close()
    assert verify_journal(tmp_path / "journal.jsonl").ok

