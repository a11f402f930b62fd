"""What the rehearsal shows while it runs: section, step n of N, elapsed against the estimate."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ceremony.digests import colon_hex, pgp_words
from ceremony.machine import Machine
from ceremony.machine import decisions as d


def _mmss(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


class Display:
    def __init__(self, out: TextIO | None = None, quiet: bool = False) -> None:
        self.out = out or sys.stdout
        self.quiet = quiet
        self.tty = self.out.isatty()
        self._section: str | None = None
        self._section_start = 0.0
        self._last_progress = -1
        self._shown: set[tuple[int, str]] = set()

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    def step(self, machine: Machine) -> None:
        step = machine.current
        if step is None:
            return
        if step.section != self._section:
            self._section = step.section
            self._section_start = time.monotonic()
            est = next(s.estimated for s in machine.script.sections if s.title == step.section)
            self.say(f"== {step.section} (estimated {_mmss(est.seconds)})")
        total = len(machine.steps)
        pos = machine.position
        elapsed = _mmss(time.monotonic() - self._section_start)
        self.say(f"  [{pos:3d}/{total}] {elapsed} {step.actor:<4} {step.action:<16} "
                 f"{step.text[:60]}")
        self._last_progress = -1

    def notice(self, machine: Machine, notice: d.Decision) -> None:
        if isinstance(notice, d.ExceptionRaised):
            self.say(f"  !! step {notice.step} stopped: {notice.reason}")
        elif isinstance(notice, d.CeremonyEnded):
            self.say(f"== ceremony {notice.status}")
        elif isinstance(notice, d.StepCompleted) and notice.value:
            self.say(f"         -> {notice.value[:100]}")

    def approval(self, machine: Machine, want: d.RequestApproval) -> None:
        """What every officer sees before approving: the whole operation and its digest, in hex
        and in PGP words to read aloud. Shown once per operation."""
        key = (want.step, want.digest)
        if key in self._shown:
            self.say(f"         {want.role} approval {want.have + 1} of {want.need} for step "
                     f"{want.step}")
            return
        self._shown.add(key)
        op = want.operation
        self.say(f"         operation for step {want.step}, to be approved by {want.need} "
                 f"{want.role}: {op.get('op')}")
        if op.get("op") == "purge":
            self.say(f"           delete {len(op['delete'])} dead keys: {' '.join(op['delete'])}")
        elif op.get("op") == "generate":
            for b in op.get("batches", []):
                self.say(f"           {b['policy']} {b['role']} {b['algorithm']}: {b['count']} "
                         "new keys")
        elif op.get("op") == "backup":
            self.say(f"           write {op.get('file')} of token {op.get('token')}")
        elif op.get("op") == "restore":
            self.say(f"           restore {op.get('file')}: {len(op.get('keys', []))} keys of "
                     f"token {op.get('backup_token')} onto token {op.get('token')}")
        self.say(f"           digest {colon_hex(want.digest)}")
        self.say(f"           words  {pgp_words(want.digest)}")

    def progress(self, done: int, total: int, what: str) -> None:
        if self.quiet or total <= 0:
            return
        pct = done * 100 // total
        if self.tty:
            bar = "#" * (pct // 5)
            end = "\n" if done >= total else ""
            print(f"\r         [{bar:<20}] {pct:3d}% {what}", end=end, file=self.out, flush=True)
        elif pct // 10 != self._last_progress // 10 or done >= total:
            self._last_progress = pct
            self.say(f"         {pct:3d}% {what}")
