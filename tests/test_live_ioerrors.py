"""The live coordinator when its journal cannot be written (ENOSPC, EIO, injected through
`keyrite.diskio`): it halts its ceremony work, every console's view says why, every command is
refused with that reason, and once the fault clears it resumes from the journal by itself, on
the same bus, with every acknowledged entry; a coordinator restarted on the same journal does
the same (docs/live.md, "When the journal fails")."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.machine import decisions as d
from ceremony.machine.replay import replay
from ceremony.view import from_dict
from consoles.actions import actions_for
from coordinator.bus import CommandRefused
from coordinator.journal import Journal, verify_journal
from coordinator.live.daemon import PRESENCE_TIMEOUT, RECOVER_EVERY, Live
from keyrite import diskio
from tests.idle_world import NoWork, SetClock
from tests.machine_helpers import T0, approval, honest_event, kso_quorum, start

KEY = Ed25519PrivateKey.generate()
NAME = "keyrite.test/live"


def _live(path: Path) -> tuple[Live, Journal, Any, SetClock]:
    """A coordinator whose journal holds every event of a ceremony up to the KSOs' quorum
    (journaled by its own runner, so a restart can replay them)."""
    m, w = start()
    journal = Journal.create(path, key=KEY, name=NAME, origin=NAME,
                             genesis_record={"type": "genesis", "at": "2026-12-08T00:00:00Z"})
    clock = SetClock(T0 + 10_000)
    live = Live(m, journal, NoWork(), clock=clock)  # type: ignore[arg-type]
    before = kso_quorum(0)
    while True:
        wants = m.wants(now=w.now + w.tick)
        if wants and before(wants[0]):
            break
        e = honest_event(m, w)
        assert e is not None
        live.runner.apply(e)
        w.accepted.append(e)
    clock.now = max(clock.now, w.now + 1)
    return live, journal, w, clock


def _restarted(path: Path, clock: SetClock) -> tuple[Live, Journal]:
    """What `serve.open_live` does with an existing journal: open it, replay it."""
    journal = Journal.open(path, key=KEY)
    m, _ = start()
    replay(((e.seq, e.record) for e in journal.entries() if e.seq > 0), m, m.script.sha256)
    return Live(m, journal, NoWork(), clock=clock), journal  # type: ignore[arg-type]


def _handle(live: Live, officer: str, body: dict[str, Any]) -> Any:
    return trio.run(live.handle, officer, body)


def _records(journal: Journal) -> list[dict[str, Any]]:
    return [e.record for e in journal.entries()]


def _approve(live: Live, w: Any, clock: SetClock, seat: str) -> Any:
    [want] = [x for x in live.m.wants(now=clock()) if isinstance(x, d.RequestApproval)]
    a = approval(w, seat, want.step, want.digest, 300, at=clock())
    return _handle(live, seat, {"type": "approve", "approval": a.to_dict()})


@pytest.mark.parametrize("op", ["write", "fsync"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=errno.errorcode.get)
@pytest.mark.parametrize("times", [1, None], ids=["once", "persistent"])
def test_a_failing_append_halts_the_coordinator_and_a_restart_resumes(
        tmp_path: Path, op: str, code: int, times: int | None) -> None:
    path = tmp_path / "journal.jsonl"
    live, journal, w, clock = _live(path)
    _handle(live, "KSO1", {"type": "presence"})
    acknowledged = _records(journal)
    faults = diskio.Faults().fail(op, code, times=times, path=str(path))
    with diskio.injected(faults):
        with pytest.raises(CommandRefused, match="THE JOURNAL CANNOT BE WRITTEN") as e:
            _approve(live, w, clock, "KSO1")
        assert errno.errorcode[code] in str(e.value)
        # every console is shown why: the one view every console gets
        view = from_dict(live.view())
        assert view.status == "halted" and view.exception is not None
        assert view.exception.kind == "journal" and errno.errorcode[code] in view.exception.reason
        assert "approve" in view.exception.reason.lower() or "event" in view.exception.reason
        assert "restart the coordinator" in view.exception.reason
        assert actions_for(view, "KSO2", "KSO") == []  # nothing is offered: all is refused
        # every command is refused with the reason; the coordinator's own reads still answer
        with pytest.raises(CommandRefused, match="THE JOURNAL CANNOT BE WRITTEN"):
            _handle(live, "KGA1", {"type": "pause"})
        assert "seq" in _handle(live, "KSO2", {"type": "presence"})
        assert _handle(live, "KSO2", {"type": "journal", "from": 0})["size"] == len(acknowledged)
        # time goes on without journaling (a console dropping is shown, not recorded)
        clock.now += PRESENCE_TIMEOUT + 0.1
        live.tick()
        assert "KSO1" not in live.connected
        trio.run(live.drive)  # the driver does nothing more: it returns at once
        asked: list[bool] = []
        live.on_resumable = lambda: asked.append(True)
        if times is None and op == "write":  # the file recovers (no write), the disk does not
            clock.now += RECOVER_EVERY
            live.tick()
            assert live.recovered and not live.resumable and asked == []
            reason = from_dict(live.view()).exception.reason  # type: ignore[union-attr]
            assert "sound again" in reason and "once the disk takes a write" in reason
        faults.clear()
        clock.now += RECOVER_EVERY
        live.tick()  # recovered, and the disk takes a probe write: the server is asked once
        assert live.recovered and live.resumable and asked == [True]
        assert "resuming from the journal" in from_dict(  # type: ignore[union-attr]
            live.view()).exception.reason
        clock.now += RECOVER_EVERY
        live.tick()
        assert asked == [True]
        assert faults.fsync_retried == []
        assert not list(tmp_path.glob("*.probe"))  # the probe file is gone
        journal.close()

    # the file holds every acknowledged entry, nothing half-written, and verifies
    assert verify_journal(path).ok
    again, journal2 = _restarted(path, clock)
    assert _records(journal2) == acknowledged  # the failed approval was never acknowledged
    view = from_dict(again.view())
    assert view.status == "running" and view.exception is None
    [q] = view.quorums
    assert q.have == 0
    assert _approve(again, w, clock, "KSO1") == {"accepted": True}
    assert from_dict(again.view()).quorums[0].have == 1
    journal2.close()
    assert verify_journal(path).ok


def test_a_restart_before_the_disk_recovers_keeps_what_landed(tmp_path: Path) -> None:
    """EIO on fsync, and the coordinator stops before the disk lets it recover the file (the
    file does not even open again): the restarted one finds the approval's line whole (never
    acknowledged, and harmless: as if it had stopped just after the fsync), writes it again in
    place, fsyncs it and resumes with it."""
    path = tmp_path / "journal.jsonl"
    live, journal, w, clock = _live(path)
    acknowledged = _records(journal)
    faults = diskio.Faults().fail("fsync", errno.EIO, path=str(path))
    faults.fail("open", errno.EIO, times=None, path=str(path))
    with diskio.injected(faults):
        with pytest.raises(CommandRefused, match="EIO"):
            _approve(live, w, clock, "KSO1")
        assert not live.recovered
        journal.close()
        with pytest.raises(OSError):  # still failing: the coordinator does not start
            _restarted(path, clock)
        faults.clear()
        again, journal2 = _restarted(path, clock)
    records = _records(journal2)
    assert records[: len(acknowledged)] == acknowledged
    assert [r["type"] for r in records[len(acknowledged):]] == ["event"]  # the approval
    assert from_dict(again.view()).quorums[0].have == 1
    journal2.close()
    assert verify_journal(path).ok


def test_every_console_shows_why(tmp_path: Path) -> None:
    from tests.test_console_screen import console

    path = tmp_path / "journal.jsonl"
    live, journal, w, clock = _live(path)
    with diskio.injected(diskio.Faults().fail("fsync", errno.EIO, times=None)):
        with pytest.raises(CommandRefused):
            _approve(live, w, clock, "KSO1")
        view = from_dict(live.view())
        journal.close()
    for seat in ("KGA1", "KSO1", "KSO2", "WI1"):
        with console(view, seat, clock()) as c:
            text = " ".join(c.screen.render_text(width=200, height=80).split())
            assert "HALTED: the coordinator cannot write its journal" in text
            assert "THE JOURNAL CANNOT BE WRITTEN (EIO)" in text, text
            assert "restart the coordinator" in text


def test_a_failure_in_the_coordinators_own_journaling_halts_it_too(tmp_path: Path) -> None:
    """Not a command: a console dropping, which time records (tick)."""
    path = tmp_path / "journal.jsonl"
    live, journal, _, clock = _live(path)
    _handle(live, "KSO1", {"type": "presence"})
    with diskio.injected(diskio.Faults().fail("write", errno.ENOSPC, times=None)):
        clock.now += PRESENCE_TIMEOUT + 0.1
        live.tick()  # no exception out of the daemon's loop
        assert live.halted is not None and "KSO1, SA2 DISCONNECTED" in live.halted
        assert from_dict(live.view()).status == "halted"
        journal.close()
    assert verify_journal(path).ok


def test_a_coordinator_starting_on_a_failing_disk(tmp_path: Path) -> None:
    """`open_live`: a journal that cannot be created or opened is a Failure saying why (no
    traceback); one that opens but takes no append halts the daemon at once (the consoles are
    told); once the disk is sound it starts, and then resumes, from the journal."""
    from coordinator.live.config import CoordinatorConfig
    from coordinator.live.serve import open_live
    from coordinator.live.stage import stage
    from keyrite.exits import Failure

    s = stage(tmp_path / "c", fixture="small")
    cfg = CoordinatorConfig.load(s.coordinator)
    where = str(cfg.journal)
    full = diskio.Faults().fail("fsync", errno.ENOSPC, times=None, path=where)
    with diskio.injected(full), pytest.raises(Failure, match="cannot be opened: .*No space"):
        open_live(cfg)
    live, journal, _, _ = open_live(cfg)  # what the failed creation left is started again
    assert live.halted is None
    journal.close()
    broken = diskio.Faults().fail("fsync", errno.EIO, times=None, path=where)
    with diskio.injected(broken), pytest.raises(Failure, match="cannot be opened: .*Input/out"):
        open_live(cfg)
    with diskio.injected(diskio.Faults().fail("write", errno.ENOSPC, times=None, path=where)):
        live, journal, _, _ = open_live(cfg)
        assert live.halted is not None and "ENOSPC" in live.halted
        assert from_dict(live.view()).status == "halted"
        journal.close()
    live, journal, _, _ = open_live(cfg)
    assert live.halted is None
    whats = [e.record.get("what") for e in journal.entries() if e.record["type"] == "coordinator"]
    assert whats == ["started", "resumed at step 1"]
    journal.close()
    assert verify_journal(cfg.journal).ok


def test_the_daemon_resumes_by_itself_once_the_disk_takes_writes(tmp_path: Path) -> None:
    """`serve.serve` end to end, in process: a console on the real bus (CURVE, its enrolled
    key) is refused while the disk is full, and once space is back the daemon reopens the
    ceremony from its journal on the same bus and the console's next command is taken."""
    import functools

    import zmq

    from coordinator.bus import BusClient, CurveKeyPair, Refused
    from coordinator.bus import protocol as p
    from coordinator.live import daemon as live_daemon
    from coordinator.live.config import ConsoleConfig, CoordinatorConfig
    from coordinator.live.serve import close_live, open_live, serve
    from coordinator.live.stage import stage
    from keyrite.enroll import console_keys

    s = stage(tmp_path / "c", fixture="small")
    cfg = CoordinatorConfig.load(s.coordinator)
    seat, path = next(iter(s.consoles.items()))
    console = ConsoleConfig.load(path)
    _, public, secret = console_keys(console.enrolment)
    live, _, enrolment, curve = open_live(cfg)
    opened = [live]

    def reopen(old: Live) -> Live:
        close_live(old)
        opened.append(open_live(cfg)[0])
        return opened[-1]

    full = diskio.Faults().fail("write", errno.ENOSPC, times=None, path=str(cfg.journal))
    ctx = zmq.Context()
    statuses: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            bound = trio.Event()
            nursery.start_soon(functools.partial(serve, cfg, live, enrolment, curve,
                                                 ready=lambda *_: bound.set(), reopen=reopen))
            await bound.wait()
            client = BusClient(router=console.commands, pub=console.broadcasts,
                               server_public=console.coordinator_key,
                               keys=CurveKeyPair(public, secret), ctx=ctx)
            await nursery.start(client.run)

            async def watch() -> None:
                async for update in client.updates:
                    if isinstance(update, p.Reset):
                        statuses.append(from_dict(update.state).status)

            nursery.start_soon(watch)
            with trio.fail_after(60):
                with diskio.injected(full):
                    with pytest.raises(Refused, match="THE JOURNAL CANNOT BE WRITTEN"):
                        await client.command({"type": "pause"})
                    with pytest.raises(Refused, match="ENOSPC"):
                        await client.command({"type": "pause"})
                    await trio.sleep(live_daemon.RECOVER_EVERY + 1.5)
                    assert len(opened) == 1  # still full: no resume
                while len(opened) == 1:  # space is back: the next probe resumes it
                    await trio.sleep(0.2)
                assert await client.command({"type": "pause"}) == {"accepted": True}
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        ctx.destroy(linger=0)
        close_live(opened[-1])
    assert len(opened) == 2 and opened[-1].halted is None and opened[-1].m.paused
    journal = Journal.open(cfg.journal, key=None)
    whats = [e.record.get("what") for e in journal.entries() if e.record["type"] == "coordinator"]
    journal.close()
    assert whats == ["started", "resumed at step 1"], whats
    assert verify_journal(cfg.journal).ok
