"""`bench/run --quick --json`: every row of the table is there, with numbers or a reason.

No timing is asserted: the numbers of a shared machine say nothing about correctness. What is
checked is that each bench still runs and parses (a bench whose output changed shape shows up
here as a failed row).
"""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("zmq")


@pytest.mark.slow
def test_bench_run_quick_json_has_every_row(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "run"), "--quick", "--json",
                        "--dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    rows = {r["key"]: r for r in report["rows"]}
    expected = [k for k, _ in runpy.run_path(str(ROOT / "bench" / "run"), run_name="x")["ROWS"]]
    assert len(expected) == 16
    assert sorted(rows) == sorted(expected)
    for key, r in rows.items():
        assert r["row"], key
        if r["status"] == "ok":
            for field in ("ours", "baseline", "ratio"):
                assert isinstance(r[field], int | float) and r[field] >= 0, (key, field, r)
            assert r["target"] and r["baseline_is"], key
        else:  # a bench that cannot run here says why; none may fail outright
            assert r["status"] == "skipped" and r["note"], (key, r)
    # the benches that need nothing but this checkout ran
    for key in ("journal.append", "journal.verify", "shim.rsa.1", "shim.ec.2", "bus.small",
                "bus.view", "planning.plan", "planning.diff", "rehearse.small.wall",
                "rehearse.small.rss"):
        assert rows[key]["status"] == "ok", rows[key]
    assert rows["rehearse.seed.rss"]["status"] == "skipped"  # only with --seed-rehearsal
    # the live room's row runs wherever tmux is (bench/coordinator_rss.py), else says it needs it
    coordinator = rows["coordinator.rss.10"]
    if shutil.which("tmux"):
        assert coordinator["status"] == "ok", coordinator
        assert "10 console processes" in coordinator["note"], coordinator
    else:
        assert "needs tmux" in coordinator["note"], coordinator
    assert isinstance(report["load_before"], list) and report["cores"] >= 1
