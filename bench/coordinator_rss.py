"""Coordinator memory benchmark: the live coordinator's RSS with 10 consoles through a ceremony.

The live room of the end-to-end tests (tests/live_helpers.py: `Room`, `Autopilot`), each program
in its own tmux window: the bundled ceremony staged with the small fixture, the signer shim, the
coordinator and 10 consoles, each its own process, connected over the CURVE bus as in the room:
the cast's 9 (KGA also DSO5, SA, KSO1 also DSO1, KSO2, DSO2, DSO3, DSO4, the witness WI1, the
auditor SAU1, who keeps a verified copy of the journal) and a second witness, WI2, enrolled
beyond the cast (`enrol_observer`: the script allows up to 5 witnesses, the cast has one). The
KGA signs the three observers in after checking their ID; the autopilot then presses, on the 7
officers' consoles, what each bold line asks, as the officers would, until the ceremony is
completed (or, with --until N, until step N is current).

The coordinator's process (the child of its window's shell) is sampled from /proc every
--interval (VmRSS from status, Pss from smaps_rollup), tagged with the step WI2's screen shows;
a step's sample is the first one that shows it. Printed: the peak (VmHWM at the end: the most
the process held in its life, transients between samples included), the RSS at the first and the
last step, and the slope per step (least squares over the per-step samples after --warmup
steps). Baseline: the same coordinator process, up (its bus bound, "commands on") with no
console connected yet, the most it held over a second. Target: peak <= 100 MB, and flat: slope
< 0.1 MB/step and last-step minus first-step (after the warm-up) < 5 MB, judged over a whole
ceremony only (with --quick or --until, the peak alone).

Needs tmux. Prints numbers, asserts nothing; exit 0 unless the room could not be run.
Usage: python bench/coordinator_rss.py [--quick | --until N] [--json] [--dir DIR]
"""

from __future__ import annotations

import os
import sys

# ruff: noqa: E402
# (the imports below wait for the path: run as `python bench/coordinator_rss.py`, sys.path[0] is
# bench/, whose copy.py would shadow the stdlib `copy`)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PEAK_TARGET_MB = 100.0
SLOPE_FLAT_MB = 0.1  # MB per step
GROWTH_FLAT_MB = 5.0  # last step minus first step, after the warm-up
QUICK_UNTIL = 20  # --quick: steps 1 to 19 (the sign-in, the live CD and drive checks)
SOCKET_DIR_MAX = 70  # --dir's length that leaves room for /keyrite-rss-XXXXXXXX/tmux-XXXXXXXX
EXTRA = "WI2"  # the tenth console: a witness enrolled beyond the cast
OBSERVERS = (("WI1", "p", "4711"), ("SAU1", "d", "08X2"), (EXTRA, "p", "0042"))


def step_of(screen: str) -> int | None:
    """The step a console's screen shows as current."""
    m = re.search(r"^Step (\d+) ", screen, re.M)
    return int(m.group(1)) if m else None


def high_water(pid: int) -> int:
    """VmHWM of `pid` in kB: the most RSS it has held since it started, which a transient
    between two samples (a typed password's scrypt check: 32 MiB for a fraction of a second)
    does not escape."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, Pss) of `pid` in kB."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/smaps_rollup") as f:
        pss = next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    return rss, pss


def slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of y over x; 0 for fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


class Sampler:
    """The coordinator's memory every `interval` s, with the step `seat`'s screen shows."""

    def __init__(self, room: Any, pid: int, seat: str, interval: float) -> None:
        self.room, self.pid, self.seat, self.interval = room, pid, seat, interval
        self.samples: list[tuple[float, int | None, int, int]] = []  # (t, step, rss, pss) kB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        t0 = time.monotonic()
        step: int | None = None
        while not self._stop.wait(self.interval):
            try:
                screen = self.room.screen(self.seat)
            except RuntimeError:  # the tmux server is going away
                return
            shown = step_of(screen)
            if shown is not None:
                step = shown
            elif "CEREMONY COMPLETED" in screen:
                step = 0  # after the last step
            try:
                rss, pss = memory(self.pid)
            except (OSError, StopIteration):  # the coordinator has exited
                return
            self.samples.append((time.monotonic() - t0, step, rss, pss))


def measure(workdir: Path, until: int | None, interval: float, warmup: int,
            timeout: float) -> dict[str, Any]:
    from ceremony.script import bundled_script_path
    from ceremony.script.load import load_script
    from coordinator.rehearsal.people import cast_for
    from tests.live_helpers import Autopilot, Room, sign_in_observer

    script = load_script(bundled_script_path())
    cast = cast_for(script)
    firsts = tuple(p.seats[0] for p in cast.people)
    officers = tuple(p.seats[0] for p in cast.people if not script.roles[cast.roles[
        p.seats[0]]].observer and cast.roles[p.seats[0]] != "SAU")
    consoles = (*firsts, EXTRA)
    t0 = time.monotonic()
    room = Room(workdir, (), observers=(EXTRA,))
    try:
        pid = room.pid("coordinator")
        base: list[tuple[int, int]] = []
        for _ in range(10):  # up, bus bound, nobody connected
            base.append(memory(pid))
            time.sleep(0.1)
        for seat in consoles:
            room.start_console(seat)
        connected = memory(pid)
        started = time.monotonic()
        with Sampler(room, pid, EXTRA, interval) as sampler:
            ap = Autopilot(room, officers)
            ap.act("KGA", "s", None)
            room.wait("KGA", lambda s: "KGA   Administrator A: signed in" in s)
            for seat, doc, digits in OBSERVERS:
                sign_in_observer(room, seat, doc, digits)
            if until is None:
                ap.finish(timeout)
                room.wait(EXTRA, lambda s: "CEREMONY COMPLETED" in s, 60)
            else:
                ap.run(until, timeout)
                room.wait(EXTRA, lambda s: int(step_of(s) or 0) >= until, 60)
            time.sleep(3 * interval)
        ceremony_s = time.monotonic() - started
        samples = sampler.samples
        hwm = high_water(pid)
        journal = (room.staged.live / "journal.jsonl").read_text().count("\n")
    finally:
        room.close()
    return summarise(samples, base, connected, hwm, consoles, until, warmup, journal,
                     ceremony_s, time.monotonic() - t0)


def summarise(samples: list[tuple[float, int | None, int, int]], base: list[tuple[int, int]],
              connected: tuple[int, int], hwm: int, consoles: tuple[str, ...],
              until: int | None,
              warmup: int, journal: int, ceremony_s: float, wall: float) -> dict[str, Any]:
    if not samples:
        raise RuntimeError("no sample of the coordinator's memory was taken")
    mb = 1 / 1024
    per_step: list[tuple[int, int, int]] = []  # (step, rss, pss) at its first sample
    seen: set[int | None] = set()
    for _, step, rss, pss in samples:
        if step is not None and step not in seen:
            seen.add(step)
            per_step.append((step, rss, pss))
    if per_step and per_step[-1][0] == 0:  # completed: after the last step
        per_step[-1] = (max(s for s, _, _ in per_step) + 1, *per_step[-1][1:])
    kept = per_step[warmup:] if len(per_step) > warmup + 1 else per_step
    points = [(float(i), rss * mb) for i, (_, rss, _) in enumerate(kept)]
    first, last = kept[0], kept[-1]
    peak = max(samples, key=lambda s: s[2])
    baseline = max(r for r, _ in base) * mb
    out = {
        "consoles": list(consoles),
        "until": until,
        "steps_seen": len(per_step),
        "warmup_steps": len(per_step) - len(kept),
        "samples": len(samples),
        "journal_entries": journal,
        "ceremony_s": ceremony_s,
        "wall_s": wall,
        "baseline_rss_mb": baseline,
        "baseline_pss_mb": max(p for _, p in base) * mb,
        "connected_rss_mb": connected[0] * mb,
        "peak_rss_mb": max(hwm, peak[2]) * mb,
        "sampled_peak_rss_mb": peak[2] * mb,
        "peak_at_step": peak[1],
        "peak_pss_mb": max(s[3] for s in samples) * mb,
        "step_peak_rss_mb": max(r for _, r, _ in per_step) * mb if per_step else 0.0,
        "first_step": first[0],
        "first_step_rss_mb": first[1] * mb,
        "last_step": last[0],
        "last_step_rss_mb": last[1] * mb,
        "growth_mb": (last[1] - first[1]) * mb,
        "slope_mb_per_step": slope(points),
        "per_step": [[s, round(r * mb, 2), round(p * mb, 2)] for s, r, p in per_step],
    }
    # flat is judged over a whole ceremony only: over --quick's few steps a one-off (the first
    # worker thread, the first link to the signer) is most of the line
    out["flat"] = None if until is not None else (
        abs(out["slope_mb_per_step"]) < SLOPE_FLAT_MB and out["growth_mb"] < GROWTH_FLAT_MB)
    out["met"] = out["peak_rss_mb"] <= PEAK_TARGET_MB and out["flat"] is not False
    return out


def show(r: dict[str, Any]) -> None:
    print(f"consoles ({len(r['consoles'])}): {', '.join(r['consoles'])}")
    what = "to completion" if r["until"] is None else f"until step {r['until']}"
    print(f"ceremony {what}: {r['steps_seen']} steps seen, {r['journal_entries']} journal "
          f"entries, {r['ceremony_s']:.0f} s ({r['wall_s']:.0f} s with staging); "
          f"{r['samples']} samples")
    last = "the end (completed)" if r["until"] is None else f"the last step ({r['last_step']})"

    def line(label: str, mb: float, more: str = "") -> None:
        print(f"{label:44} RSS {mb:6.1f} MB{'  ' + more if more else ''}")

    line("baseline: coordinator up, no console", r["baseline_rss_mb"],
         f"PSS {r['baseline_pss_mb']:.1f} MB")
    line("10 consoles connected", r["connected_rss_mb"])
    line("peak (VmHWM: the process's whole life)", r["peak_rss_mb"])
    line("peak of the 100 ms samples", r["sampled_peak_rss_mb"],
         f"PSS {r['peak_pss_mb']:.1f} MB, at step {r['peak_at_step']}")
    line("peak of the per-step samples", r["step_peak_rss_mb"],
         "what it holds between steps")
    line(f"step {r['first_step']} (after {r['warmup_steps']} warm-up steps)",
         r["first_step_rss_mb"])
    line(last, r["last_step_rss_mb"])
    print(f"{'growth, last - first':44} {r['growth_mb']:+.2f} MB (flat: < {GROWTH_FLAT_MB:.0f} MB)")
    print(f"{'slope (least squares over the steps)':44} {r['slope_mb_per_step']:+.4f} MB/step "
          f"(flat: |slope| < {SLOPE_FLAT_MB} MB/step)")
    flat = {True: "flat", False: "NOT flat", None: "flat not judged: not a whole ceremony"}
    print(f"target: peak <= {PEAK_TARGET_MB:.0f} MB and flat: "
          f"{'met' if r['met'] else 'NOT met'} ({flat[r['flat']]}); peak / baseline "
          f"{r['peak_rss_mb'] / r['baseline_rss_mb']:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true",
                   help=f"stop when step {QUICK_UNTIL} is current (under a minute)")
    g.add_argument("--until", type=int, metavar="N",
                   help="stop when step N is current (default: the whole ceremony)")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    ap.add_argument("--warmup", type=int, default=5,
                    help="steps left out of the slope and the growth (default 5)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds for the ceremony")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--dir", type=Path, help="where the room goes (default: a temp dir)")
    a = ap.parse_args()
    if shutil.which("tmux") is None:
        print("coordinator_rss: needs tmux (the live room runs each program in a tmux window)",
              file=sys.stderr)
        return 2
    until = QUICK_UNTIL if a.quick else a.until
    base = a.dir
    if base is not None and len(str(base.absolute())) > SOCKET_DIR_MAX:
        # tmux's socket goes in the room's directory, and a unix socket's path is at most 107
        # bytes (a pytest tmp_path under bench/run's directory is longer)
        print(f"coordinator_rss: {base} is too long a path for tmux's socket: the room goes in "
              f"{tempfile.gettempdir()}", file=sys.stderr)
        base = None
    with tempfile.TemporaryDirectory(dir=base, prefix="keyrite-rss-") as d:
        r = measure(Path(d), until, a.interval, a.warmup, a.timeout)
    r["load_average"] = os.getloadavg()
    if a.json:
        json.dump(r, sys.stdout, indent=1)
        print()
    else:
        show(r)
        print(f"load average {r['load_average'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
