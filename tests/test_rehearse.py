"""`keyrite rehearse` end to end, on a real SoftHSM2 token, as a person runs it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from ceremony.digests import colon_hex
from ceremony.script import bundled_script_path
from tests.rehearsal_helpers import (
    KEYRITE,
    kill_when,
    rehearse,
    rehearse_json,
    token_private_key_ids,
)


def check_completed(workdir: Path, summary: dict) -> None:
    """Everything a finished rehearsal promises, checked from outside keyrite where we can."""
    assert summary["status"] == "completed"
    assert summary["steps_completed"] == summary["steps_total"] == 132
    k = summary["keys"]
    assert k["after_purge"] == k["initial"] - k["purged"]
    assert k["after_generate"] == k["after_purge"] + k["generated"]
    ids = token_private_key_ids(summary)
    assert len(ids) == k["after_generate"], "the token disagrees with the summary"
    assert len(set(ids)) == len(ids), "duplicate keys on the token"
    # every drive that carries a checksum file passes sha256sum -c, run in the drive
    checked = 0
    for d in summary["drives"]:
        assert d["verified"], d
        files = Path(d["path"])
        for sums in files.glob("*.sha256sum"):
            subprocess.run(["sha256sum", "-c", sums.name], cwd=files, check=True,
                           capture_output=True)
            checked += 1
            if sums.name.startswith("key-backup-"):
                assert summary["backup_sha256"] in sums.read_text()
    # the backup on the master copy and the three operative copies; on each of the two log
    # drives, the journal copy, the published public keys and the transcript's text and PDF
    assert checked == 4 + 2 * 4
    v = subprocess.run([*KEYRITE, "verify", summary["journal"], "--key", summary["checkpoint_key"]],
                       capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    assert summary["checkpoint"].startswith(summary["checkpoint_key"].split("+")[0] + "\n")
    assert sorted(summary["custody"]) == ["albany", "auckland", "keygen-log", "master-copy",
                                          "wellington"]


def test_small_rehearsal_completes_and_adds_up(tmp_path: Path) -> None:
    code, summary, err = rehearse_json(tmp_path / "r", "--fixture", "small")
    assert code == 0, err
    check_completed(tmp_path / "r", summary)
    assert summary["keys"] == {"initial": 6, "after_purge": 4, "after_generate": 10,
                               "purged": 2, "generated": 6}
    assert "[ 33/132]" in err and "generated 6 of 6 keys" in err  # progress, on stderr with --json
    check_documents(summary)


def check_documents(summary: dict[str, Any]) -> None:
    """The report and the printable transcript are written beside the journal, each one's
    SHA-256 journaled; the final checkpoint is cosigned and one more seals its cosignatures."""
    records = [json.loads(line)["record"]
               for line in Path(summary["journal"]).read_text().splitlines()]
    documented = {r["what"]: r for r in records if r["type"] == "document"}
    assert set(documented) == {"report", "transcript", "transcript-pdf"}
    for kind, key in (("report", "report"), ("transcript", "transcript"),
                      ("transcript-pdf", "transcript_pdf")):
        data = Path(summary[key]).read_bytes()
        assert documented[kind]["sha256"] == colon_hex(hashlib.sha256(data).hexdigest())
    assert Path(summary["report"]).read_bytes().startswith(b"%PDF")
    # the sign-off's actor and every officer of its cosigners' roles (the seed's step 111)
    assert summary["cosigners"] == ["DSO2", "DSO3", "DSO4", "KGA", "KSO1", "KSO2", "SA"]
    assert set(summary["bags"]) == {"wellington", "albany", "auckland", "master-copy",
                                    "keygen-log"} and all(summary["bags"].values())
    assert records[-1]["type"] == "checkpoint"  # nothing is left uncovered but the seal itself
    ok = subprocess.run([sys.executable, "-m", "keyrite.cli", "verify", summary["journal"],
                         "--cosigned-by", "KGA,SA,KSO,DSO"], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    two = subprocess.run([sys.executable, "-m", "keyrite.cli", "verify", summary["journal"],
                          "--cosigned-by", "8"], capture_output=True, text=True, timeout=60)
    assert two.returncode == 1 and "cosigned by DSO2, DSO3, DSO4, KGA, KSO1, KSO2, SA (" in \
        two.stderr and two.stderr.rstrip().endswith(": 7 officers")


@pytest.mark.parametrize("moment", [
    r"seeded 3 of 6 keys",  # during set-up, before the journal exists
    r"\[  2/132\]",  # just after the journal was created
    r"generated [1-5] of 6 keys",  # in the middle of key generation (progress is throttled)
    r"\[ 39/132\]",  # between the two KSO approvals of the backup
    r"\[ 57/132\]",  # while copying to an operative drive
    r"\[111/132\]",  # at the sign-off
])
def test_sigkill_then_resume_completes(tmp_path: Path, moment: str) -> None:
    work = tmp_path / "r"
    kill_when(work, moment, "--fixture", "small")
    code, summary, err = rehearse_json(work, "--resume")
    assert code == 0, err
    check_completed(work, summary)
    assert summary["keys"]["after_generate"] == 10
    # no step repeated: each step number completes once in the journal's replay
    entries = [json.loads(line) for line in Path(summary["journal"]).read_text().splitlines()]
    completions = [e["record"]["step"] for e in entries
                   if e["record"].get("type") == "event"
                   and e["record"]["event"]["event"] == "OperationStarted"]
    assert sorted(completions) == sorted(set(completions)), "an HSM operation was started twice"


def test_resume_after_completion_changes_nothing(tmp_path: Path) -> None:
    work = tmp_path / "r"
    code, first, _ = rehearse_json(work, "--fixture", "small")
    assert code == 0
    code, again, _ = rehearse_json(work, "--resume")
    assert code == 0
    assert again["keys"] == first["keys"]
    assert again["backup_sha256"] == first["backup_sha256"]
    # the documents are written once: a resume after the end adds nothing to the journal
    assert again["report"] == first["report"] and again["checkpoint"] == first["checkpoint"]


def test_a_verify_mismatch_stops_the_ceremony(tmp_path: Path) -> None:
    script = tmp_path / "wrong-role.toml"
    text = bundled_script_path().read_text()
    old = 'expect = "signer.standby.role"'
    assert text.count(old) == 1
    script.write_text(text.replace(old, 'value = "active"'))
    code, summary, err = rehearse_json(tmp_path / "r", str(script), "--fixture", "small")
    assert code == 1
    assert summary["status"] == "stopped"
    assert summary["exception"]["step"] == 29
    assert "standby" in summary["exception"]["reason"]
    assert summary["keys"]["initial"] is None, "nothing was purged after the stop"


def test_a_signer_with_another_host_key_stops_the_ceremony_before_any_request(
        tmp_path: Path) -> None:
    """Next year's ceremony finds another signer box: the previous journal recorded one host
    key, the signer now presents another. The link refuses it before any request, and the
    host-key check stops the ceremony showing both."""
    code, first, err = rehearse_json(tmp_path / "first", "--fixture", "small")
    assert code == 0, err
    host_key = tmp_path / "first" / "signer" / "state" / "ssh_host_ed25519_key"
    recorded = asyncssh.read_private_key(host_key).get_fingerprint("sha256")
    swapped = asyncssh.generate_private_key("ssh-ed25519")  # the box was replaced
    swapped.write_private_key(host_key)
    swapped.write_public_key(f"{host_key}.pub")
    code, summary, err = rehearse_json(
        tmp_path / "r", "--previous", str(tmp_path / "first" / "journal.jsonl"),
        "--previous-key", first["checkpoint_key"])
    assert code == 1, err
    assert summary["status"] == "stopped"
    assert summary["exception"]["step"] == 25
    live = swapped.get_fingerprint("sha256")
    assert live in summary["exception"]["reason"] and recorded in summary["exception"]["reason"]
    log = (tmp_path / "r" / "shim" / "shim.log").read_text()
    assert "signer_shim.server INFO request" not in log, "a request reached the wrong signer"


def test_a_literal_host_key_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    """A rehearsal makes its signer, with a key of its own: a script pinned to a literal key
    could never pass its host-key check, so it is refused at once, saying what to write."""
    script = tmp_path / "pinned.toml"
    text = bundled_script_path().read_text()
    old = 'host_key = "previous.signer_host_key"'
    assert text.count(old) == 1
    other = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    script.write_text(text.replace(old, f'host_key = "{other}"'))
    p = rehearse(str(script), "--workdir", str(tmp_path / "r"), "--fixture", "small")
    assert p.returncode == 2
    assert f"signer standby pins the literal host key {other}" in p.stderr
    assert not (tmp_path / "r").exists()


def test_bad_inputs_exit_2(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    p = rehearse("--workdir", str(busy), "--fixture", "small")
    assert p.returncode == 2 and "not empty" in p.stderr
    p = rehearse("--workdir", str(tmp_path / "none"), "--resume")
    assert p.returncode == 2 and "nothing to resume" in p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[ceremony]\nid = "x"\n')
    p = rehearse(str(bad), "--workdir", str(tmp_path / "new"))
    assert p.returncode == 2 and "bad.toml:" in p.stderr
    assert not (tmp_path / "new" / "signer").exists(), "the HSM was touched before validation"
    p = rehearse("--workdir", str(tmp_path / "x"), "--fixture", "huge")
    assert p.returncode == 2


def test_help_explains(tmp_path: Path) -> None:
    p = subprocess.run([*KEYRITE, "rehearse", "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    for word in ("--workdir", "--resume", "--json", "--fixture", "Exit codes"):
        assert word in p.stdout


def test_workdir_records_options_for_resume(tmp_path: Path) -> None:
    code, _, _ = rehearse_json(tmp_path / "r", "--fixture", "small")
    opts = tomllib.loads((tmp_path / "r" / "rehearsal.toml").read_text())
    assert code == 0 and opts["fixture"] == "small"
    assert Path(opts["script"]) == bundled_script_path()
