"""The crash matrix: kill a rehearsal at one crash point (`KEYRITE_TEST_CRASH`, test-only:
keyrite/crashpoints.py), resume it in the same work directory, and check what a crash must not
change. Shared by tests/test_crash_matrix.py (a fixed sample, in CI) and bench/crash_sweep.py
(every point of the small rehearsal). docs/reliability.md reports both.

A point and what is expected of the first run:

- `journal:N`: the coordinator dies (SIGKILL) just after its Nth journal entry since start;
- `shim:...`: the shim dies; the rehearsal sees its link lost to a dead shim and stops (exit 1,
  nothing journaled of it), or, at the shim's `boot` line, fails to stand the shim up.

The resume (`--resume`, no crash variable) must complete, and then:

- no acknowledged step is lost: the journal as the crash left it is a prefix of the final one;
- no HSM operation ran twice: each operation is `started` once and `finished` once in the
  signer's operation journal, each step's OperationStarted is journaled once, and the token
  (read with OpenSC's pkcs11-tool) holds as many private keys as an uninterrupted run's, no
  CKA_ID twice;
- the journal verifies (`keyrite verify`);
- the final inventory equals an uninterrupted run's: the same key counts (initial, purged,
  generated, after; the key IDs themselves are random per run, so only counts compare) and the
  same steps completed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyrite import crashpoints
from tests.rehearsal_helpers import KEYRITE, token_object_ids

ROOT = Path(__file__).resolve().parent.parent
ENV = "KEYRITE_TEST_CRASH"
MARK = "keyrite crashpoint "


def rehearse(workdir: Path, *args: str, crash: str | None = None,
             timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["PYTHONPATH"] = str(ROOT)
    if crash is not None:
        env[ENV] = crash
    return subprocess.run([*KEYRITE, "rehearse", "--workdir", str(workdir), "--json", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def baseline(workdir: Path, *args: str) -> dict[str, Any]:
    """An uninterrupted run: its summary (with what its token holds, read with pkcs11-tool, as
    `token_keys`), and what the sweep enumerates from it."""
    p = rehearse(workdir, *args)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout)
    summary["token_keys"] = token_keys(summary)
    return summary


def token_keys(summary: dict[str, Any]) -> dict[str, int]:
    """How many private and secret keys (a KEK) the rehearsal's token holds; a CKA_ID found
    twice counts as a problem of its own (`check_resumed`)."""
    return {kind: len(token_object_ids(summary, kind)) for kind in ("privkey", "secrkey")}


def points_of(summary: dict[str, Any]) -> list[str]:
    """Every crash point an uninterrupted run passes: each journal entry after the genesis,
    each line of the shim's two journals, and before and after each operation's work."""
    journal = Path(summary["journal"])
    state = journal.parent / "signer" / "state"
    entries = len(journal.read_text().splitlines())
    shim_lines = sum(len(p.read_text().splitlines())
                     for p in (state / "requests.jsonl", state / "operations.jsonl"))
    ops: Counter[str] = Counter()
    phases = []
    for e in map(json.loads, (state / "operations.jsonl").read_text().splitlines()):
        if e["event"] == "received":
            ops[e["operation"]["op"]] += 1
            n = ops[e["operation"]["op"]]
            phases += [f"shim:{e['operation']['op']}:{when}:{n}"
                       for when in ("before_device", "after_device")]
    return ([f"journal:{n}" for n in range(1, entries)]
            + [f"shim:journal:{n}" for n in range(1, shim_lines + 1)] + phases)


def marker(point: str) -> str:
    """What the process writes to stderr as it kills itself at `point`."""
    parsed = crashpoints.parse(point)
    assert parsed is not None
    return f"{MARK}{parsed[0]}:{parsed[1]}: SIGKILL"


@dataclass
class Outcome:
    point: str
    problems: list[str] = field(default_factory=list)
    first: str = ""  # how the first run ended
    last: dict[str, Any] | None = None  # the last record the crash left in the journal
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def crash_and_resume(point: str, workdir: Path, expected: dict[str, Any],
                     *args: str, then: str | None = None) -> Outcome:
    """Kill a fresh rehearsal in `workdir` at `point`, resume it, check it against `expected`
    (an uninterrupted run's summary). With `then`, the first resume is killed too, at `then`
    (counted from that resume's own start), and a second resume must complete."""
    out = Outcome(point if then is None else f"{point} then {then}")
    t0 = time.monotonic()
    first = rehearse(workdir, *args, crash=point)
    out.problems += _killed(point, first, workdir)
    out.first = "shim killed; rehearsal exit 1" if point.startswith("shim:") \
        else "coordinator killed"
    journal = workdir / "journal.jsonl"
    left = journal.read_bytes() if journal.exists() else b""
    if then is not None:
        marks = _shim_logs(workdir).count(marker(then)) if then.startswith("shim:") else 0
        again = rehearse(workdir, "--resume", crash=then)
        reached = (_shim_logs(workdir).count(marker(then)) > marks if then.startswith("shim:")
                   else marker(then) in again.stderr)
        if again.returncode == 0 and not reached:
            # the resume had less left to do than `then` needs (a kill near the end): it ran
            # to completion, and is checked as the one resume of a single kill
            out.first += f", then the resume completed before reaching {then}"
            out.seconds = time.monotonic() - t0
            out.problems += check_resumed(json.loads(again.stdout), expected, left)
            return out
        out.problems += _killed(then, again, workdir, marks)
        out.first += ", then " + ("its shim killed" if then.startswith("shim:")
                                  else "the resume killed")
        after = journal.read_bytes() if journal.exists() else b""
        if not after.startswith(left):
            out.problems.append("the first resume changed what the crash left in the journal")
        left = after
    if left.strip():
        out.last = json.loads(left.splitlines()[-1])["record"]
    second = rehearse(workdir, "--resume")
    out.seconds = time.monotonic() - t0
    if second.returncode != 0:
        out.problems.append(f"the resume exited {second.returncode}: {second.stderr[-800:]}")
        return out
    summary = json.loads(second.stdout)
    out.problems += check_resumed(summary, expected, left)
    return out


def _shim_logs(workdir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (workdir / "shim").glob("*.log"))


def _killed(point: str, run: subprocess.CompletedProcess[str], workdir: Path,
            marks_before: int = 0) -> list[str]:
    """What is wrong with how `run` ended, for a run killed at `point` (`marks_before`: the
    shim's logs' kills at that point before the run)."""
    if point.startswith("shim:"):
        if _shim_logs(workdir).count(marker(point)) <= marks_before:
            return [f"the shim never reached {point} (exit {run.returncode})"]
        if run.returncode != 1:
            return [f"the rehearsal exited {run.returncode}, not 1, when its shim died"]
        return []
    if run.returncode != -signal.SIGKILL or marker(point) not in run.stderr:
        return [f"the coordinator was not killed at {point} (exit {run.returncode})"]
    return []


def check_resumed(summary: dict[str, Any], expected: dict[str, Any], left: bytes) -> list[str]:
    problems = []
    if summary["status"] != "completed":
        problems.append(f"status {summary['status']}")
    if summary["steps_completed"] != expected["steps_completed"]:
        problems.append(f"{summary['steps_completed']} steps completed, "
                        f"not {expected['steps_completed']}")
    journal = Path(summary["journal"])
    final = journal.read_bytes()
    if not final.startswith(left) or (left and not left.endswith(b"\n")):
        problems.append("the journal the crash left is not a prefix of the final one: "
                        "an acknowledged entry was lost or changed")
    records = [json.loads(line)["record"] for line in final.splitlines()]
    started = [r["step"] for r in records if r.get("type") == "event"
               and r["event"]["event"] == "OperationStarted"]
    if len(started) != len(set(started)):
        problems.append(f"an operation was journaled as started twice: steps {started}")
    ops = [json.loads(line) for line in
           (journal.parent / "signer" / "state" / "operations.jsonl").read_text().splitlines()]
    for event in ("started", "finished"):
        counts = Counter(e["digest"] for e in ops if e["event"] == event)
        twice = [d[:12] for d, n in counts.items() if n != 1]
        if twice or len(counts) != len({e["digest"] for e in ops}):
            problems.append(f"an operation was not {event} exactly once: {twice or counts}")
    if summary["keys"] != expected["keys"]:
        problems.append(f"keys {summary['keys']}, an uninterrupted run's {expected['keys']}")
    want = expected.get("token_keys") or {"privkey": expected["keys"]["after_generate"]}
    for kind, n in want.items():
        ids = token_object_ids(summary, kind)
        if len(ids) != n or len(set(ids)) != len(ids):
            problems.append(f"the token holds {len(ids)} {kind} objects ({len(set(ids))} IDs), "
                            f"an uninterrupted run's {n}")
    v = subprocess.run([*KEYRITE, "verify", str(journal), "--key", summary["checkpoint_key"]],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    if v.returncode != 0:
        problems.append(f"keyrite verify exited {v.returncode}: {v.stderr[-500:]}")
    return problems
