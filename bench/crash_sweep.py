"""The crash sweep: every crash point of the small rehearsal, each killed there, resumed, checked.

An uninterrupted `keyrite rehearse --fixture small` is run first; its journals say which points
a run passes (tests/crash_helpers.points_of: every ceremony-journal entry after the genesis,
every line of the shim's request and operation journals, before and after each operation's work
on the token). Then, for each point, a fresh rehearsal is run with the test-only
`KEYRITE_TEST_CRASH=<point>` (keyrite/crashpoints.py), dies there, is resumed without it in the
same work directory, and is checked (tests/crash_helpers.check_resumed: no acknowledged entry
lost, no operation run twice, on the token too, the journal verifies, the same key counts and
steps as the uninterrupted run). docs/reliability.md reports the last measured result.

Usage: python bench/crash_sweep.py [--every K [--start S]] [--only REGEX] [--script PATH]
       [--then POINT] [--dir DIR] [--json FILE]
--every K keeps the ceremony-journal points S, S+K, S+2K, ... (S is 0 unless given; all the
shim's points are kept); --only keeps points matching REGEX; --script sweeps another script
(with the small fixture: tests/scripts/keygen-wrap.toml makes a KEK, a wrap backup and a drill
opened with shares); --then POINT kills the first resume too, at POINT (counted from that
resume's start), before a second resume must complete. Each point costs two or three
rehearsals (5 to 30 s here). Exit 1 if any fails.
"""

from __future__ import annotations

import os
import sys

# ruff: noqa: E402
# Run as `python bench/crash_sweep.py`, sys.path[0] is bench/, where copy.py would shadow the
# stdlib `copy`: the repository root goes there instead, before anything else is imported.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from tests.crash_helpers import baseline, crash_and_resume, points_of


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--only", default="")
    ap.add_argument("--script", default=None)
    ap.add_argument("--then", default=None, metavar="POINT")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    root = a.dir or Path(tempfile.mkdtemp(prefix="keyrite-crash-sweep-"))
    root.mkdir(parents=True, exist_ok=True)
    args = ([a.script] if a.script else []) + ["--fixture", "small"]
    t0 = time.monotonic()
    expected = baseline(root / "baseline", *args)
    every = points_of(expected)
    chosen = [p for p in every
              if (not p.startswith("journal:") or (int(p.split(":")[1]) - a.start) % a.every == 0)
              and re.search(a.only, p)]
    print(f"{len(every)} points in the sweep ({sum(p.startswith('journal:') for p in every)} "
          f"ceremony-journal, {sum(p.startswith('shim:') for p in every)} shim); "
          f"running {len(chosen)}", flush=True)
    results = []
    for i, point in enumerate(chosen, 1):
        work = root / f"p{i:03}"
        out = crash_and_resume(point, work, expected, *args, then=a.then)
        results.append({"point": out.point, "ok": out.ok, "first": out.first,
                        "seconds": round(out.seconds, 1), "problems": out.problems})
        print(f"[{i:3}/{len(chosen)}] {'ok  ' if out.ok else 'FAIL'} {out.point:40} "
              f"{out.seconds:5.1f} s  {out.first}" + "".join(f"\n      {p}" for p in out.problems),
              flush=True)
        if out.ok:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in results if not r["ok"]]
    print(f"{len(results) - len(failed)} of {len(results)} points passed "
          f"({len(every)} in the sweep) in {time.monotonic() - t0:.0f} s", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"points": len(every), "ran": len(results),
                                      "failed": len(failed), "results": results}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
