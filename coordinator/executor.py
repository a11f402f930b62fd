"""What each of the machine's work decisions means, in one table, for both loops that run them.

The machine asks for four kinds of the coordinator's own work: observe a value (`Observe`), do a
step's work (`Perform`), have the signer plan an operation (`Plan`) and run an approved one
(`Execute`). `TABLE` says, for each, which `World` method does it, the event that carries its
outcome, whether it waits on a person plugging a drive in (a stopping daemon abandons that wait),
whether it starts a new progress bar, the event journaled before it starts (an operation is
journaled as started before it is sent: after a crash it is reconciled, never repeated blindly),
and whether it copies the journal (a checkpoint is signed first, so that the copy ends with one).

`job()` looks a decision up; `Job.run` does the work in whatever thread the caller chooses. The
rehearsal's runner runs it inline (`coordinator.runner.Runner.run`), the live daemon in a trio
worker thread (`coordinator.live.daemon.Live._work`); each keeps only its own way of waiting and
of applying the events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from keyrite.exits import Failure

Progress = Callable[[int, int, str], None]


class World(Protocol):
    def now(self) -> float: ...

    def observe(self, want: d.Observe) -> str: ...

    def perform(self, want: d.Perform, progress: Progress) -> dict[str, Any]: ...

    def plan(self, want: d.Plan) -> dict[str, Any]: ...

    def execute(self, want: d.Execute, progress: Progress) -> dict[str, Any]: ...

    def people(self, want: d.Ask | d.RequestApproval, context: dict[str, Any]) -> list[ev.Event]:
        """Officers' answers; an empty list means nobody here can answer (the ceremony waits)."""


def _no(want: Any) -> bool:
    return False


def _yes(want: Any) -> bool:
    return True


def _nothing(want: Any, at: float) -> ev.Event | None:
    return None


def _started(want: d.Execute, at: float) -> ev.Event | None:
    """An operation is journaled as started before it is sent, unless it was started before a
    restart (`reconcile`): then the signer reconciles it against its inventory."""
    return None if want.reconcile else ev.OperationStarted(at=at, step=want.step,
                                                           digest=want.digest)


@dataclass(frozen=True)
class Kind:
    """What one type of work decision means."""

    call: Callable[[World, Any, Progress], Any]  # the World method that does the work
    outcome: type[ev.Event]  # the event that carries what the work gave...
    carries: str  # ...in this field
    waits_for_person: Callable[[Any], bool] = _no  # on someone plugging a drive in
    new_bar: Callable[[Any], bool] = _no  # the work reports progress from zero
    prelude: Callable[[Any, float], ev.Event | None] = _nothing  # journaled before the work
    seals_journal: Callable[[Any], bool] = _no  # it copies the journal: a checkpoint first


TABLE: dict[type[d.Decision], Kind] = {
    d.Observe: Kind(call=lambda world, want, progress: world.observe(want),
                    outcome=ev.Observed, carries="value",
                    waits_for_person=lambda want: want.source == "drive.serial"),
    d.Perform: Kind(call=lambda world, want, progress: world.perform(want, progress),
                    outcome=ev.Performed, carries="result",
                    waits_for_person=lambda want: want.action == "drive.insert",
                    new_bar=lambda want: want.action == "drive.copy",
                    seals_journal=lambda want: want.action == "drive.copy"
                    and want.params.get("source") == "journal"),
    d.Plan: Kind(call=lambda world, want, progress: world.plan(want),
                 outcome=ev.OperationPlanned, carries="operation"),
    d.Execute: Kind(call=lambda world, want, progress: world.execute(want, progress),
                    outcome=ev.Performed, carries="result", new_bar=_yes, prelude=_started),
}


@dataclass(frozen=True)
class Job:
    """One work decision, looked up in `TABLE`."""

    want: Any  # d.Observe | d.Perform | d.Plan | d.Execute
    kind: Kind

    @property
    def step(self) -> int:
        return int(self.want.step)

    @property
    def waits_for_person(self) -> bool:
        """The work may wait minutes for someone to plug a drive in, and changes nothing while
        it waits: a stopping coordinator may leave it behind."""
        return self.kind.waits_for_person(self.want)

    @property
    def new_bar(self) -> bool:
        return self.kind.new_bar(self.want)

    @property
    def seals_journal(self) -> bool:
        """The work copies the journal, which goes into a bag: the caller signs a checkpoint of
        all of it first, so the copy ends with one that covers everything in it."""
        return self.kind.seals_journal(self.want)

    def prelude(self, at: float) -> ev.Event | None:
        """The event to journal (and have accepted) before the work starts, stamped `at`."""
        return self.kind.prelude(self.want, at)

    def run(self, world: World, progress: Progress) -> ev.Event:
        """Do the work (in any thread) and return the event saying what it gave, made and
        stamped once it is done (a wait for a drive takes minutes), or how it failed."""
        def work() -> ev.Event:
            value = self.kind.call(world, self.want, progress)
            return self.kind.outcome(at=world.now(), step=self.step,  # type: ignore[call-arg]
                                     **{self.kind.carries: value})
        return attempt(self.step, work, world.now)


def job(want: d.Decision) -> Job | None:
    """The coordinator's work `want` asks for; None when it is not work (people's turn)."""
    kind = TABLE.get(type(want))
    return None if kind is None else Job(want, kind)


def attempt(step: int, work: Callable[[], ev.Event], now: Callable[[], float]) -> ev.Event:
    """Do work for a step; a failure becomes PerformFailed, which stops the ceremony."""
    try:
        return work()
    except (Failure, OSError, RuntimeError, ValueError, KeyError) as e:
        return ev.PerformFailed(at=now(), step=step, error=f"{type(e).__name__}: {e}")
