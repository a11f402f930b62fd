"""The OpenDNSSEC generation's crash window, with the test-only crash point
(`KEYRITE_TEST_CRASH=shim:generate:enforcer_accepted`, keyrite/crashpoints.py): the process
executing a generation is SIGKILLed just after `ods-enforcer key generate` was accepted and
before `scheduled` was journaled; the retry must reconcile (the enforcer's work is found and
waited for), not schedule a second generation. Skipped where OpenDNSSEC is not installed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from signer_shim.opendnssec.ods_setup import EnforcerDaemon, OdsInstallation
from signer_shim.opendnssec.signer import OdsSigner
from tests.ods_helpers import EC_POLICIES, running_installation
from tests.test_opendnssec import ONE_ZONE, hsmutil_count, kasp_locators

pytestmark = pytest.mark.skipif(
    any(shutil.which(t, path="/usr/bin:/usr/sbin:/bin") is None
        for t in ("ods-enforcerd", "ods-enforcer", "ods-hsmutil")),
    reason="OpenDNSSEC is not installed (dev/setup.sh)")

ROOT = Path(__file__).resolve().parent.parent
EXECUTE = """
import json, sys
from signer_shim.opendnssec.signer import OdsSigner
OdsSigner.from_file(sys.argv[1]).execute(json.loads(open(sys.argv[2]).read()), [])
"""


@pytest.fixture
def ods1(tmp_path: Path) -> Iterator[tuple[OdsInstallation, EnforcerDaemon]]:
    with running_installation(tmp_path / "ods", ONE_ZONE) as pair:
        yield pair


def test_a_kill_after_the_enforcer_accepted_a_generate_is_reconciled(
        ods1, tmp_path: Path) -> None:
    inst, _daemon = ods1
    op = OdsSigner.from_file(inst.config_path).plan_generate(EC_POLICIES, "P14M")
    assert sum(b["count"] for b in op["batches"]) == 7
    (tmp_path / "op.json").write_text(json.dumps(op))
    env = {**os.environ, "KEYRITE_TEST_CRASH": "shim:generate:enforcer_accepted",
           "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", EXECUTE, str(inst.config_path),
                        str(tmp_path / "op.json")], env=env, capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    assert "crashpoint shim:generate:enforcer_accepted:1" in p.stderr
    signer = OdsSigner.from_file(inst.config_path)
    events = [e["event"] for e in signer._journal.entries()]
    assert "scheduled" not in events, "the kill came before `scheduled` was journaled"
    # retried at once, while the enforcer may still be making the keys
    result = signer.execute(op, [])
    assert result["added"] == 7 and hsmutil_count(inst) == 7
    assert set(result["generated"]) == kasp_locators(inst.database)
    log = (inst.directory / "enforcerd.log").read_text()
    assert log.count("need to be created") == 2, "the enforcer was asked to generate twice"


def test_a_kill_before_the_enforcer_was_asked_schedules_on_retry(
        ods1, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed just after `scheduling` was journaled (the operation journal's third line, after
    `received` and `started`), before the enforcer was asked: nothing comes within the grace
    period, so the retry asks it, once."""
    inst, _daemon = ods1
    op = OdsSigner.from_file(inst.config_path).plan_generate(EC_POLICIES, "P14M")
    (tmp_path / "op.json").write_text(json.dumps(op))
    env = {**os.environ, "KEYRITE_TEST_CRASH": "shim:journal:3", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", EXECUTE, str(inst.config_path),
                        str(tmp_path / "op.json")], env=env, capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    signer = OdsSigner.from_file(inst.config_path)
    assert [e["event"] for e in signer._journal.entries()] == ["received", "started",
                                                               "scheduling"]
    monkeypatch.setattr("signer_shim.opendnssec.signer.ACCEPT_GRACE_SECONDS", 2.0)
    result = signer.execute(op, [])
    assert result["added"] == 7 and hsmutil_count(inst) == 7
    log = (inst.directory / "enforcerd.log").read_text()
    assert log.count("need to be created") == 2
