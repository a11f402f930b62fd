"""Bounded floods on the console bus (issue 16, item 5): an enrolled console (a witness's, say)
that sends 20,000 commands the coordinator refuses, over a real bus to a real `Live`.

- the journal grows by a bounded number of records: `RefusalBudget` journals at most `limit`
  refusals per console per window, then one summary record per window;
- another console's command is still answered, promptly, all along;
- memory stays flat (RSS, measured and printed: the figure is in docs/bus.md);
- bad frames (not bus messages at all) are logged at most `BAD_FRAME_LOGS` per console per window,
  then counted.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from coordinator.bus import server as bus_server
from coordinator.live.daemon import REFUSAL_WINDOW, REFUSALS
from keyrite.budget import RefusalBudget
from tests.bus_fuzz_helpers import PRESENCE, BusThread, answer, make_live

REFUSED = b'{"v":1,"kind":"command","id":"f","body":{"type":"acknowledge","step":"x"}}'
FLOOD = 20_000
BATCH = 200  # frames in flight at once (the DEALER's queue and the ROUTER's are bounded)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def records(journal: Any, kind: str) -> list[dict[str, Any]]:
    return [e.record for e in journal.entries() if e.record.get("type") == kind]


def flood(bus: BusThread, frame: bytes, n: int) -> tuple[float, list[float]]:
    """`n` copies of `frame` from WI1, `BATCH` in flight at a time; KGA1's presence between
    batches. Returns the time taken and each of KGA1's round trips."""
    flooder, other = bus.dealer("WI1"), bus.dealer("KGA1")
    waits: list[float] = []
    started = time.monotonic()
    sent = 0
    while sent < n:
        k = min(BATCH, n - sent)
        for _ in range(k):
            flooder.send(frame)
        t = time.monotonic()
        other.send(PRESENCE)  # asked while the batch is being handled
        assert answer(other)["kind"] == "reply"
        waits.append(time.monotonic() - t)
        for _ in range(k):
            reply = answer(flooder)
            assert reply["kind"] == "error", reply
        sent += k
    took = time.monotonic() - started
    flooder.close()
    other.close()
    return took, waits


@pytest.mark.parametrize("window", [REFUSAL_WINDOW, 0.25], ids=["default window", "short window"])
def test_a_console_flooding_refused_commands_over_the_bus_is_bounded(
        tmp_path: Path, window: float) -> None:
    """With the daemon's own window (10 s: the whole flood inside one or two of them) and with a
    short one (the flood spread over many windows, each journaling its budget and a summary)."""
    n = FLOOD
    live, journal = make_live(tmp_path, real_time=True)
    live.budget = RefusalBudget(REFUSALS, window)
    with BusThread(live, ("WI1", "KGA1"), tick=True) as bus:
        before = len(records(journal, "refused"))
        started = time.monotonic()
        flood(bus, REFUSED, 2 * BATCH)  # warm up: sockets, caches
        gc.collect()
        before_rss = rss_kib()
        _, waits = flood(bus, REFUSED, n - 2 * BATCH)
        took = time.monotonic() - started
        gc.collect()
        after_rss = rss_kib()
        time.sleep(window + 1)  # the window ends: the summary record is written
        assert bus.alive()
        refused = records(journal, "refused")
    grown = len(refused) - before
    windows = int(took // live.budget.window) + 2
    bound = windows * (live.budget.limit + 1)
    summaries = [r for r in refused[before:] if r["command"] == "*"]
    print(f"\nbus flood, {window:g} s window: {n} refused commands in {took:.1f} s "
          f"({n / took:.0f}/s); journal "
          f"+{grown} refused records (bound {bound}); RSS {before_rss} -> {after_rss} KiB "
          f"({(after_rss - before_rss) / 1024:+.1f} MiB); other console's presence: "
          f"max {max(waits) * 1000:.1f} ms, median {sorted(waits)[len(waits) // 2] * 1000:.1f} ms")
    assert grown <= bound, (grown, bound)
    assert summaries and sum(int(r["reason"].split()[0]) for r in summaries) >= n - bound
    assert all(r["console"] == "WI1" for r in refused[before:])
    assert after_rss - before_rss < 20 * 1024, "memory grew by more than 20 MiB"
    assert max(waits) < 5, max(waits)


def test_bad_frames_are_logged_a_few_times_per_window_then_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live, _ = make_live(tmp_path, real_time=True)
    caplog.set_level(logging.WARNING, logger="keyrite.bus.server")
    with BusThread(live, ("WI1", "KGA1")) as bus:
        flood(bus, b"not json", 2_000)
    lines = [r.getMessage() for r in caplog.records if r.name == "keyrite.bus.server"]
    bad = [x for x in lines if x.startswith("from WI1")]
    assert len(bad) == bus_server.BAD_FRAME_LOGS + 1, bad[-3:]
    assert "counted, not logged" in bad[-1]


def test_the_log_budget_counts_what_it_did_not_log() -> None:
    now = [0.0]
    budget = bus_server._LogBudget(limit=2, window=10, clock=lambda: now[0])
    assert [budget.count("WI1") for _ in range(5)] == [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]
    assert budget.count("KGA1") == (1, 0)
    now[0] = 10
    assert budget.count("WI1") == (1, 3)
    assert budget.count("WI1") == (2, 0)
