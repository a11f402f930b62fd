"""The incremental view (ceremony.view.WireForm, what the live daemon broadcasts) is the view
built afresh, after every event of a whole seed ceremony run through the daemon itself, and
whatever order views come in; the builder's shortcuts (every drive's serial in one pass, one
observed value instead of a snapshot) give what the machine's own accessors give."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ceremony.machine.view_of import Parts, _drive_serials
from ceremony.view import Extras, JournalLine, LooseDrive, Progress, WireForm, to_dict
from coordinator.bus import protocol as p
from coordinator.bus import view_delta
from coordinator.journal import Journal
from coordinator.live.daemon import Live
from tests.idle_world import NoWork
from tests.machine_helpers import honest_event, seed_script, start


def _wire(v: Any) -> str:
    """The bytes a console gets: 1 and 1.0, True and 1 differ here."""
    return json.dumps(v, sort_keys=True)


class _Bus:
    """The bus as the daemon sees it: a sequence number, and frames encoded as the bus would."""

    def __init__(self) -> None:
        self.seq = 0
        self.frames: list[bytes] = []

    async def publish(self, body: Any) -> int:
        self.seq += 1
        self.frames.append(p.encode(p.Broadcast(epoch="e", seq=self.seq, body=body)))
        return self.seq


def test_the_daemons_incremental_view_is_the_fresh_view_after_every_event(tmp_path: Path
                                                                          ) -> None:
    m, w = start(seed_script())
    journal = Journal.create(tmp_path / "journal.jsonl", key=Ed25519PrivateKey.generate(),
                             name="keyrite.test/wire", origin="keyrite.test/wire",
                             genesis_record={"type": "genesis", "at": "2026-11-27T00:00:00Z"})
    live = Live(m, journal, NoWork(), clock=lambda: w.now)  # type: ignore[arg-type]
    bus = _Bus()
    live.bus = bus  # type: ignore[assignment]
    shown: dict[str, Any] | None = None
    events = tails = documents = 0
    while m.status not in ("completed", "aborted"):
        kept, live._parts = live._parts, Parts()  # built afresh: nothing kept
        fresh = to_dict(live._view_object(live.clock()))  # at the seq the view will carry
        live._parts = kept
        trio.run(live.publish)
        assert _wire(live.published) == _wire(fresh)  # incremental == built afresh
        body = p.decode(bus.frames[-1], p.FROM_COORDINATOR).body  # type: ignore[union-attr]
        shown = view_delta.apply(shown, body)  # a console folding what went over the wire
        assert _wire(shown) == _wire(fresh)
        tails += view_delta.TAILS in body
        for label in m.script.drives:  # the one-pass serials are the machine's
            assert _drive_serials(m).get(label) == m.drive_serial(label)
        done = m.results_of("transcript")  # the transcript is the latest one written
        shown_doc = live.published["transcript"]
        assert (shown_doc["step"] if shown_doc else None) == (done[-1][0] if done else None)
        documents += shown_doc is not None
        cur = m.current
        if cur is not None and live.published["step"] is not None:
            observed = m.snapshot()["observed"].get(str(cur.n))
            if m._state.exception is None:
                assert live.published["step"]["observed"] == (
                    None if observed is None else str(observed))
        e = honest_event(m, w)
        assert e is not None
        w.accepted.append(e)
        live._apply(e)
        events += 1
    assert events > 100 and tails > events // 2  # the journal tail went as tails, mostly
    assert documents > 0  # a transcript was written and shown


def _views() -> list[Any]:
    m, w = start(seed_script())
    out = []
    for _ in range(60):
        out.append(m.view(Extras(now=w.now)))
        from tests.machine_helpers import send
        send(m, w, honest_event(m, w))  # type: ignore[arg-type]
    return out


VIEWS = _views()
LINES = [JournalLine(i, 1000.0 + i, f"line {i}") for i in range(60)]
BARS = [Progress(1, 4, "keys", 7), Progress(4, 4, "keys", None), None]
LOOSE = [LooseDrive("S1", "V", "M"), LooseDrive("S2", "V", "M")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VIEWS) - 1), st.integers(0, 59), st.integers(0, 10),
                          st.integers(0, 2), st.integers(0, 2), st.booleans()),
                min_size=1, max_size=12))
def test_a_stream_of_views_in_any_order_converts_as_each_alone(picks: list[tuple]) -> None:
    """Kept objects (journal lines, progress bars, loose drives) come, go and come back, shared
    or fresh copies, next to whole views in any order: each wire form is still to_dict's."""
    wire = WireForm()
    for view_i, start_i, length, bar_i, loose_n, copies in picks:
        lines = LINES[start_i:start_i + length]
        if copies:  # equal objects that are not the same ones
            lines = [dataclasses.replace(x) for x in lines]
        view = dataclasses.replace(VIEWS[view_i], journal=tuple(lines), progress=BARS[bar_i],
                                   loose_drives=tuple(LOOSE[:loose_n]))
        assert _wire(wire.to_dict(view)) == _wire(to_dict(view))


def test_kept_parts_are_the_fresh_ones_and_are_kept_while_nothing_changed() -> None:
    m, w = start(seed_script())
    parts = Parts()
    seats = sorted(m.roster.officers)
    labels = sorted(m.script.drives)
    for i in range(150):
        if m.status in ("completed", "aborted"):
            break
        for connected, seen in ((frozenset(seats[: i % 5]), frozenset(labels[: i % 3])),
                                (frozenset(seats[: i % 5]), frozenset(labels[: i % 3])),
                                (frozenset(seats[1:]), frozenset())):
            extras = Extras(now=w.now, connected=connected, drives_seen=seen)
            before = parts.kept
            kept = m.view(extras, parts=parts)
            assert kept == m.view(extras)  # the same as built afresh
            assert _wire(to_dict(kept)) == _wire(to_dict(m.view(extras)))
            if parts.kept is before:  # kept: the very same objects as the last view's
                assert kept.participants is before["participants"]
        again = m.view(Extras(now=w.now, connected=frozenset(seats[1:])), parts=parts)
        assert again.participants is parts.kept["participants"]
        from tests.machine_helpers import send
        send(m, w, honest_event(m, w))  # type: ignore[arg-type]
        assert m.view(Extras(now=w.now, connected=frozenset(seats[1:])), parts=parts) \
            .participants is not again.participants  # a new state: built again
