"""The rehearsal's cast and officers under the script's rules for people: a quorum naming its
seats and apart from earlier approvers is given by someone who may, and rules that leave nobody
stop the rehearsal with the reason (exit 1), never silently and never with a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESTORE = ROOT / "ceremony" / "scripts" / "standby-restore.toml"
DEVICE = 'distinct_from = [12]   # a DSO who is neither of the KSOs who approved the restore'


def _rehearse(script: Path, work: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyrite.cli", "rehearse", str(script),
                           "--workdir", str(work), "--fixture", "small"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_rules_that_leave_nobody_stop_the_rehearsal_with_the_reason(tmp_path: Path) -> None:
    """The device quorum may be approved by DSO1 only, and not by either KSO who approved the
    restore; in the seed's cast DSO1 is KSO1's holder: nobody is left to approve."""
    text = RESTORE.read_text()
    assert DEVICE in text
    script = tmp_path / "restore.toml"
    script.write_text(text.replace(DEVICE, 'distinct_from = [12]\nseats = ["DSO1"]'))
    p = _rehearse(script, tmp_path / "work")
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert "stopped at step 13: nobody in the rehearsal's cast may do it (1 more DSO " \
        "approval(s) of step 13's restore): the script's rules for who does it leave nobody" \
        in p.stdout, p.stdout[-1500:]
