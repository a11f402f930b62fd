"""`keyrite rehearse --signer opendnssec`: the bundled key generation end to end on a private
OpenDNSSEC 2.1 (staging/ods.py), its ods-enforcerd started and stopped by the rehearsal.

The counts are checked with the enforcer's own client, not keyrite's code: `ods-enforcer
backup list --repository` names every key the enforcer holds (pool keys included; `key list`
only names keys handed to zones, so it is checked to be a subset), run against the rehearsal's
private conf.xml on an enforcer this test starts again afterwards. Skipped, with the reason,
where OpenDNSSEC is not installed; the refusals need none and always run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ceremony.script import bundled_script_path
from signer_shim.backup import read_members
from signer_shim.opendnssec.ods_kasp import known_locators, parse_key_list
from staging import ods
from tests.rehearsal_helpers import KEYRITE, kill_when, rehearse, rehearse_json

UNAVAILABLE = ods.unavailable()
needs_ods = pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE or "OpenDNSSEC installed")


def journaled(journal: Path) -> dict[tuple[str, int], Any]:
    """(event kind, step) -> its result, observed value or planned operation, as journaled."""
    out: dict[tuple[str, int], Any] = {}
    for line in journal.read_text().splitlines():
        event = json.loads(line)["record"].get("event") or {}
        for kind, field in (("Performed", "result"), ("Observed", "value"),
                            ("OperationPlanned", "operation")):
            if event.get("event") == kind:
                out[(kind, int(event["step"]))] = event[field]
    return out


def listed(result: dict[str, Any]) -> list[str]:
    """The key IDs of an `hsm.list` step's listing (`ods-hsmutil list` layout)."""
    return sorted(re.findall(r"^\S+\s+([0-9a-f]{32})\s+RSA/2048$", result["listing"], re.M))


def enforcerds_under(directory: Path) -> list[int]:
    """Running ods-enforcerd processes whose conf.xml is under `directory` (ours only)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if argv and argv[0].endswith(b"ods-enforcerd") and state != "Z" and \
                str(directory).encode() in b" ".join(argv):
            pids.append(int(proc.name))
    return pids


@needs_ods
def test_the_bundled_ceremony_completes_on_opendnssec(tmp_path: Path) -> None:
    workdir = tmp_path / "r"
    code, summary, err = rehearse_json(workdir, "--fixture", "small", "--signer", "opendnssec")
    assert code == 0, err
    assert summary["status"] == "completed"
    assert summary["steps_completed"] == summary["steps_total"]
    assert summary["token"]["signer"] == "opendnssec"
    verified = subprocess.run([*KEYRITE, "verify", summary["journal"], "--key",
                               summary["checkpoint_key"]], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert enforcerds_under(workdir) == [], "an ods-enforcerd outlived the rehearsal"

    done = journaled(workdir / "journal.jsonl")
    record = (workdir / "previous-record.toml").read_text()
    seeded = done[("Observed", 30)]
    assert f'key_count = "{seeded}"' in record  # observed at set-up, found again at step 30
    plan = done[("OperationPlanned", 33)]
    planned = sum(b["count"] for b in plan["batches"])
    # the enforcer's rule, not the PKCS#11 one: one zone or thirteen, P14M is at most 2 + 5
    assert [(b["role"], b["zones"]) for b in plan["batches"]] == [("KSK", 1), ("ZSK", 1)]
    assert planned == sum(max(0, n - b["unused"])
                          for n, b in zip((2, 5), plan["batches"], strict=True))
    generated = done[("Performed", 33)]
    assert generated["added"] == len(generated["generated"]) == planned
    final = listed(done[("Performed", 34)])
    assert len(final) == done[("Performed", 34)]["count"] == generated["after"]
    k = summary["keys"]
    assert (k["initial"], k["after_generate"]) == (int(seeded), len(final))

    # the backup holds the KASP database, and it knows every key of the final listing
    backup = workdir / "signer" / "state" / "outputs" / done[("Performed", 43)]["file"]
    members = read_members(backup.read_bytes())
    assert "kasp.db" in members and "token.tar.enc" in members
    copy = tmp_path / "kasp-copy.db"
    copy.write_bytes(members["kasp.db"])
    assert sorted(known_locators(copy)) == final

    # the enforcer's own word, on the rehearsal's private config, started again here
    with ods.running(workdir / "signer" / "signer.toml") as daemon:
        held = re.findall(r"^([0-9a-f]{32})\s", daemon.command(
            "backup", "list", "--repository", "SoftHSM"), re.M)
        zoned = parse_key_list(daemon.command("key", "list", "--all", "--verbose",
                                              "--parsable"))
    assert sorted(held) == final
    assert len(held) == k["after_generate"]
    assert {z.locator for z in zoned} <= set(final)
    assert enforcerds_under(workdir) == []


def test_another_token_module_is_refused(tmp_path: Path) -> None:
    p = rehearse("--workdir", str(tmp_path / "r"), "--fixture", "small", "--signer",
                 "opendnssec", "--token-module", "opencryptoki")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "--token-module opencryptoki does not go with it" in p.stderr
    assert not (tmp_path / "r").exists()


def test_a_restore_is_refused_up_front(tmp_path: Path) -> None:
    restore = bundled_script_path().with_name("standby-restore.toml")
    p = rehearse(str(restore), "--workdir", str(tmp_path / "r"), "--signer", "opendnssec")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "--signer opendnssec makes a new installation" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()


def test_the_option_is_explained() -> None:
    p = subprocess.run([*KEYRITE, "rehearse", "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
    text = " ".join(p.stdout.split())
    assert "--signer {pkcs11,opendnssec}" in text
    assert "does not multiply by zones" in text


@needs_ods
def test_killed_mid_ceremony_it_resumes_on_a_new_enforcer(tmp_path: Path) -> None:
    """SIGKILL after the generation (the enforcer in its process group dies too, leaving its
    pid file); --resume clears that, starts another enforcer over the same installation,
    finishes and stops it."""
    workdir = tmp_path / "r"
    kill_when(workdir, r"\[ 34/132\]", "--fixture", "small", "--signer", "opendnssec")
    code, summary, err = rehearse_json(workdir, "--resume")
    assert code == 0, err
    assert summary["status"] == "completed" and summary["token"]["signer"] == "opendnssec"
    assert summary["keys"]["after_generate"] > summary["keys"]["after_purge"]
    assert enforcerds_under(workdir) == []
