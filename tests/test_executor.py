"""The one executor (coordinator.executor): a table from each work decision the machine emits to
the work it means, which the rehearsal's runner (inline) and the live daemon (in a worker thread)
both go through. An honest room is run through whole ceremonies by the runner to see every kind
of work come up and be carried out in the durable order; failures become PerformFailed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import trio

from ceremony.machine import Machine
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from coordinator import executor
from coordinator.runner import Runner
from keyrite.exits import Failure
from tests import machine_helpers as h

PEOPLE_WANTS = (d.Ask, d.RequestApproval)


class Journal:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def checkpoint(self, at: str) -> str:
        return f"keyrite.test\n{len(self.records)}\n"

    def events(self) -> list[str]:
        return [r["event"]["event"] for r in self.records if r["type"] == "event"]


class Display:
    def __init__(self) -> None:
        self.bars: list[tuple[int, int, str]] = []

    def step(self, machine: Machine) -> None:
        pass

    def notice(self, machine: Machine, notice: d.Decision) -> None:
        pass

    def progress(self, done: int, total: int, what: str) -> None:
        self.bars.append((done, total, what))

    def approval(self, machine: Machine, want: d.RequestApproval) -> None:
        pass


class Room:
    """The honest room of tests.machine_helpers as the runner's World, noting every want it is
    asked to answer and checking the journal's order as it works."""

    def __init__(self, m: Machine, w: h.World, journal: Journal, people: bool = True) -> None:
        self.m, self.w, self.journal, self.people_here = m, w, journal, people
        self.seen: list[d.Decision] = []

    def now(self) -> float:
        return self.w.at()

    def observe(self, want: d.Observe) -> str:
        self.seen.append(want)
        return h.observation(self.w, want)

    def perform(self, want: d.Perform, progress: executor.Progress) -> dict[str, Any]:
        self.seen.append(want)
        return h.perform(self.w, want)

    def plan(self, want: d.Plan) -> dict[str, Any]:
        self.seen.append(want)
        return h.plan(self.m, self.w, want)

    def execute(self, want: d.Execute, progress: executor.Progress) -> dict[str, Any]:
        self.seen.append(want)
        # journal first, then act: the operation is on record as started before it is sent
        last = self.journal.records[-1]
        assert last["type"] == "event" and last["event"] == {
            "event": "OperationStarted", "at": last["at"], "step": want.step,
            "digest": want.digest}
        progress(1, 1, "done")
        return h.execute(self.w, want)

    def people(self, want: d.Ask | d.RequestApproval, context: dict[str, Any]) -> list[ev.Event]:
        self.seen.append(want)
        if not self.people_here:
            return []
        e = h.honest_event(self.m, self.w)
        return [] if e is None else [e]


@pytest.mark.parametrize("script", [h.mini_script, h.handover_script, h.seed_script],
                         ids=["mini", "handover", "seed"])
def test_the_table_covers_all_the_work_a_whole_ceremony_asks_for(script: Any) -> None:
    m, w = h.start(script(), None if script is h.mini_script else dict(h.SEED_PREVIOUS))
    journal, display = Journal(), Display()
    room = Room(m, w, journal)
    assert Runner(m, journal, room, display, str).run() == "completed"
    work = {type(x) for x in room.seen if not isinstance(x, PEOPLE_WANTS)}
    assert work <= set(executor.TABLE)
    if script is h.seed_script:  # the seed ceremony has every kind of work
        assert work == set(executor.TABLE)
    # every decision type is either people's, the table's, or a notice (never a want)
    requests = {c for c in vars(d).values() if isinstance(c, type) and issubclass(c, d.Decision)
                and c is not d.Decision and "step" in {f.name for f in dataclasses.fields(c)}
                and c not in (d.StepCompleted, d.ExceptionRaised)}
    assert requests == set(executor.TABLE) | set(PEOPLE_WANTS)


def test_each_kind_of_work_calls_its_world_method_and_answers_with_its_event() -> None:
    calls: list[tuple[str, Any]] = []

    class World:
        def __init__(self) -> None:
            self.t = 100.0

        def now(self) -> float:
            self.t += 1
            return self.t

        def observe(self, want: Any) -> str:
            calls.append(("observe", self.t))
            return "USB-1"

        def perform(self, want: Any, progress: Any) -> dict[str, Any]:
            calls.append(("perform", self.t))
            progress(1, 2, "copying")
            return {"ok": True}

        def plan(self, want: Any) -> dict[str, Any]:
            calls.append(("plan", self.t))
            return {"op": "purge"}

        def execute(self, want: Any, progress: Any) -> dict[str, Any]:
            calls.append(("execute", self.t))
            return {"deleted": 2}

    world, bars = World(), []
    cases = [
        (d.Observe(3, "drive.serial", {"drive": "a"}), ev.Observed, {"value": "USB-1"}),
        (d.Perform(4, "drive.copy", {}), ev.Performed, {"result": {"ok": True}}),
        (d.Plan(5, "hsm.purge"), ev.OperationPlanned, {"operation": {"op": "purge"}}),
        (d.Execute(6, {"op": "purge"}, "ab" * 32, ()), ev.Performed, {"result": {"deleted": 2}}),
    ]
    for want, outcome, fields in cases:
        job = executor.job(want)
        assert job is not None and job.step == want.step
        before = world.t
        event = job.run(world, lambda *a: bars.append(a))
        # made and stamped once the work is done (a wait for a drive can take minutes)
        assert event == outcome(at=before + 1, step=want.step, **fields)
        assert calls[-1] == (type(want).__name__.lower(), before)
    assert bars == [(1, 2, "copying")]
    for people in (d.Ask(1, "KGA", "signin"), d.StepCompleted(1), d.CeremonyEnded("completed")):
        assert executor.job(people) is None


def test_what_the_table_says_about_waiting_bars_and_preludes() -> None:
    def job(want: d.Decision) -> executor.Job:
        j = executor.job(want)
        assert j is not None
        return j

    execute = d.Execute(6, {"op": "purge"}, "ab" * 32, ())
    # only a drive being plugged in waits on a person: a stopping daemon abandons that wait
    assert job(d.Observe(1, "drive.serial")).waits_for_person
    assert job(d.Perform(1, "drive.insert")).waits_for_person
    assert not job(d.Observe(1, "hsm.key_count")).waits_for_person
    assert not job(d.Perform(1, "drive.copy")).waits_for_person
    assert not job(d.Plan(1, "hsm.purge")).waits_for_person
    assert not job(execute).waits_for_person
    # a new progress bar for an HSM operation and for a copy to a drive
    assert job(execute).new_bar and job(d.Perform(1, "drive.copy")).new_bar
    assert not job(d.Perform(1, "drive.verify")).new_bar
    assert not job(d.Observe(1, "drive.serial")).new_bar and not job(d.Plan(1, "x")).new_bar
    # an operation is journaled as started before it is sent, unless it is being reconciled
    assert job(execute).prelude(7.0) == ev.OperationStarted(at=7.0, step=6, digest="ab" * 32)
    assert job(dataclasses.replace(execute, reconcile=True)).prelude(7.0) is None
    assert job(d.Perform(1, "drive.copy")).prelude(7.0) is None


@pytest.mark.parametrize("error", [Failure("signer gone"), OSError("EIO"),
                                   RuntimeError("link"), ValueError("bad"), KeyError("k")])
@pytest.mark.parametrize("want", [
    d.Observe(3, "hsm.key_count"), d.Perform(4, "drive.copy"), d.Plan(5, "hsm.purge"),
    d.Execute(6, {"op": "purge"}, "ab" * 32, ()),
], ids=lambda w: type(w).__name__)
def test_a_failing_world_call_becomes_perform_failed(want: d.Decision, error: Exception) -> None:
    class Broken:
        def now(self) -> float:
            return 42.0

        def fail(self, *args: Any) -> Any:
            raise error

        observe = perform = plan = execute = fail

    job = executor.job(want)
    assert job is not None
    event = job.run(Broken(), lambda *a: None)  # type: ignore[arg-type]
    assert event == ev.PerformFailed(at=42.0, step=job.step,
                                     error=f"{type(error).__name__}: {error}")


def test_a_bug_in_the_world_is_not_taken_for_a_failed_step() -> None:
    class Buggy:
        def now(self) -> float:
            return 42.0

        def observe(self, want: Any) -> str:
            raise AssertionError("a bug")

    job = executor.job(d.Observe(3, "hsm.key_count"))
    assert job is not None
    with pytest.raises(AssertionError, match="a bug"):
        job.run(Buggy(), lambda *a: None)  # type: ignore[arg-type]


def test_the_sync_adapter_runs_execute_as_operation_started_then_performed() -> None:
    m, w = h.start()
    h.drive(m, w, before=lambda x: isinstance(x, d.Execute))
    [want] = m.wants(now=w.now + w.tick)
    assert isinstance(want, d.Execute) and not want.reconcile
    journal, display = Journal(), Display()
    room = Room(m, w, journal, people=False)  # nobody answers: the run stops after the work
    assert Runner(m, journal, room, display, str).run() == "stopped"
    assert [x for x in room.seen if not isinstance(x, PEOPLE_WANTS)][0] == want
    assert journal.events()[:2] == ["OperationStarted", "Performed"]
    started, performed = [r for r in journal.records if r["type"] == "event"][:2]
    assert started["step"] == performed["step"] == want.step
    assert performed["event"]["result"] == {"deleted": len(want.operation.get("delete", []))}
    assert want.step in m.completed
    assert display.bars == [(1, 1, "done")]


def test_the_sync_adapter_reconciles_without_starting_again() -> None:
    m, w = h.start()
    h.drive(m, w, before=lambda x: isinstance(x, d.Execute))
    [want] = m.wants(now=w.now + w.tick)
    h.send(m, w, ev.OperationStarted(at=w.at(), step=want.step, digest=want.digest))
    restarted = h.replay(m.script, w.accepted, w.previous)  # a coordinator that crashed
    [again] = restarted.wants(now=w.now + w.tick)
    assert isinstance(again, d.Execute) and again.reconcile
    journal = Journal()
    journal.records.append({"type": "event", "at": w.now, "step": want.step,  # as journaled
                            "event": ev.event_to_dict(w.accepted[-1])})
    room = Room(restarted, w, journal, people=False)
    Runner(restarted, journal, room, Display(), str).run()
    assert room.seen[0] == again  # sent again, to be reconciled...
    assert journal.events()[:2] == ["OperationStarted", "Performed"]  # ...never started twice
    assert want.step in restarted.completed


def test_the_daemon_goes_through_the_same_table(tmp_path: Path) -> None:
    """The live daemon's trio adapter: the prelude journaled, the work in a worker thread with
    its progress reaching the view, the outcome applied back; a fresh bar for the operation."""
    from tests.test_live_daemon import _live, _records

    live, journal, w, clock = _live(
        tmp_path, lambda x: isinstance(x, d.RequestApproval) and x.role == "SA")
    [want] = live.m.wants(now=clock())
    a = h.approval(w, "SA1", want.step, want.digest, 300, at=clock())
    trio.run(live.handle, "SA1", {"type": "approve", "approval": a.to_dict()})
    [execute] = live.m.wants(now=clock())
    assert isinstance(execute, d.Execute)
    live.progress = object()  # type: ignore[assignment]  # a finished bar from earlier work
    order: list[str] = []

    class Signer:
        secrets: dict[str, str] = {}

        def now(self) -> float:
            return clock()

        def execute(self, want: d.Execute, progress: executor.Progress) -> dict[str, Any]:
            assert live.progress is None  # the old bar went when the work began
            order.extend(r["event"]["event"] for r in _records(journal, "event")[-1:])
            progress(3, 4, "backing up")
            return h.execute(w, want)

    live.world = Signer()  # type: ignore[assignment]
    live.runner.world = live.world  # type: ignore[assignment]

    async def main() -> None:
        live._token = trio.lowlevel.current_trio_token()
        await live._work(execute)
        await trio.sleep(0)  # the progress report handed over from the worker thread

    trio.run(main)
    assert order == ["OperationStarted"]  # journaled before the work was sent
    assert [r["event"]["event"] for r in _records(journal, "event")[-2:]] == [
        "OperationStarted", "Performed"]
    assert execute.step in live.m.completed
    assert live.progress is not None and (live.progress.done, live.progress.total) == (3, 4)


def test_the_daemon_turns_a_refused_outcome_into_perform_failed(tmp_path: Path) -> None:
    from tests.test_live_daemon import _live, _records

    live, journal, w, clock = _live(tmp_path, lambda x: isinstance(x, d.Plan))
    [plan] = live.m.wants(now=clock())
    assert isinstance(plan, d.Plan)

    class Planner:
        secrets: dict[str, str] = {}

        def now(self) -> float:
            return clock()

        def plan(self, want: d.Plan) -> dict[str, Any]:
            return {"op": "launch"}  # nothing the machine takes for this step

    live.world = Planner()  # type: ignore[assignment]
    live.runner.world = live.world  # type: ignore[assignment]
    trio.run(live._work, plan)
    [refused] = _records(journal, "refused")
    assert refused["command"] == "OperationPlanned" and refused["console"] == ""
    assert _records(journal, "event")[-1]["event"]["event"] == "PerformFailed"
    assert live.m.status == "exception"


def test_every_action_the_coordinator_performs_has_its_hands_in_the_world() -> None:
    """One row per step action (ceremony.script.step_kinds): a `perform` row without the world's
    work for it would stop a real ceremony at that step, so a new row needs both."""
    from ceremony.script.step_kinds import STEP_KINDS
    from coordinator.ceremony_world import PERFORMS

    performed = {a for a, k in STEP_KINDS.items() if k.work == "perform"}
    assert set(PERFORMS) == performed
