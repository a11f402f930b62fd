"""The loop that carries the machine's decisions out and journals every accepted event.

The order is the durability rule of DESIGN.md: the machine accepts an event, the journal appends
and fsyncs it, and only then does anyone act on it. An HSM operation is journaled as started
before it is sent; after a crash the machine (rebuilt from the journal) asks for it again with
`reconcile=True`, and the signer reconciles against its inventory instead of repeating it.

The runner knows nothing of where answers come from: a `World` supplies observations, HSM work,
drive work and people's answers. The rehearsal's world is scripted; the live coordinator's is
consoles and udev. What each piece of work means is `coordinator.executor`'s table, which the
live daemon goes through too; the runner runs the work inline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ceremony import records
from ceremony.machine import Machine, Refused
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from coordinator import executor
from coordinator.executor import World

__all__ = ["Display", "Journal", "Runner"]


class Display(Protocol):
    def step(self, machine: Machine) -> None: ...

    def notice(self, machine: Machine, notice: d.Decision) -> None: ...

    def progress(self, done: int, total: int, what: str) -> None: ...

    def approval(self, machine: Machine, want: d.RequestApproval) -> None: ...


class Journal(Protocol):
    def append(self, record: dict[str, Any]) -> Any: ...

    def checkpoint(self, at: str) -> str: ...


class Runner:
    def __init__(self, machine: Machine, journal: Journal, world: World, display: Display,
                 iso: Callable[[float], str]) -> None:
        self.machine = machine
        self.journal = journal
        self.world = world
        self.display = display
        self.iso = iso
        #: who cosigns each checkpoint as it is written, where no console does (the rehearsal's
        #: scripted officers): given the signed note, the records to journal after it
        self.cosigners: Callable[[str], list[dict[str, Any]]] | None = None
        self.stalled: d.Ask | d.RequestApproval | None = None  # what nobody answered, if any
        #: KEK shares asked for and too few brought: (what was asked, how many came)
        self.short_of_shares: tuple[Any, int] | None = None

    def checkpoint(self, at: float) -> str:
        """Sign a checkpoint of the journal so far; then journal the cosigners' word on it."""
        note = self.journal.checkpoint(self.iso(at))
        records = self.cosigners(note) if self.cosigners is not None else []
        append_many = getattr(self.journal, "append_many", None)
        if append_many is not None and len(records) > 1:
            append_many(records)  # group commit: the officers' word arrives together
        else:
            for record in records:
                self.journal.append(record)
        return note

    def seal(self, at: float) -> str:
        """Sign a checkpoint of the journal so far that nobody's word follows: what a copy of the
        journal that goes into a bag ends with, covering all of it."""
        return self.journal.checkpoint(self.iso(at))

    def signoff_checkpoint(self, step: int, at: float) -> str:
        """The checkpoint step `step`'s officers sign off: the one its first sign-off signed,
        else a new one (cosigned). Every officer of a sign-off signs the same checkpoint."""
        return self.machine.signoff_checkpoint(step) or self.checkpoint(at)

    def apply(self, event: ev.Event) -> tuple[d.Decision, ...]:
        """Have the machine judge `event`; journal it if accepted; report what followed."""
        current = self.machine.current
        at_step = current.n if current else None
        try:
            out = self.machine.handle(event)
        except Refused as r:
            self.journal.append(records.Refused.of_event(event, at_step, r.reason).to_dict())
            raise
        self.journal.append(records.of_event(event, at_step).to_dict())
        for n in out:
            if isinstance(n, (d.StepCompleted, d.ExceptionRaised, d.CeremonyEnded)):
                self.display.notice(self.machine, n)
            if isinstance(n, d.StepCompleted) and self._section_ended(n.step):
                self.checkpoint(event.at)
        return out

    def _section_ended(self, n: int) -> bool:
        nxt = self.machine.current
        return nxt is None or nxt.section != self.machine.script.step(n).section

    def run(self) -> str:
        """Run until the ceremony completes, aborts, or waits for someone absent ("stopped")."""
        m = self.machine
        last_step = None
        while m.status in ("running", "exception"):
            if m.current and m.current.n != last_step:
                last_step = m.current.n
                self.display.step(m)
            want = m.wants(now=self.world.now())[0]
            if isinstance(want, (d.Ask, d.RequestApproval)):
                context: dict[str, Any] = {}
                if isinstance(want, d.RequestApproval):
                    self.display.approval(m, want)
                if isinstance(want, d.Ask) and want.kind == "signoff":
                    context["checkpoint"] = self.signoff_checkpoint(want.step, self.world.now())
                answers = self.world.people(want, context)
                if not answers:
                    self.stalled = want
                    return "stopped"
                for e in answers:
                    self.apply(e)
            else:
                job = executor.job(want)
                if job is None:
                    raise AssertionError(f"unhandled decision {want!r}")
                if not self._shares_brought():
                    return "stopped"
                self._carry_out(job)
        return m.status

    def _shares_brought(self) -> bool:
        """A wrap backup's restore or drill waits for the KEK shares its officers bring (the
        world's `bring_shares`: the rehearsal's scripted KSOs); False if too few came."""
        m = self.machine
        ask = m.share_asked(self.world.now())
        if ask is None:
            return True
        bring = getattr(self.world, "bring_shares", None)
        for e in bring(ask) if bring is not None else []:
            self.apply(e)
        boxes = getattr(self.world, "share_boxes", {}).get(ask.step, {})
        if len(boxes) < ask.threshold:
            self.short_of_shares = (ask, len(boxes))
            return False
        return True

    def _carry_out(self, job: executor.Job) -> None:
        """The work inline: its prelude (an operation started) journaled first, then its
        outcome. A refusal of either stops the run (the machine said no; nothing is skipped)."""
        started = job.prelude(self.world.now())
        if started is not None:
            self.apply(started)
        if job.seals_journal:
            self.seal(self.world.now())
        self.apply(job.run(self.world, self.display.progress))
