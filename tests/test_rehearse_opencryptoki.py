"""`keyrite rehearse --token-module opencryptoki`: the small rehearsal end to end on the second
PKCS#11 implementation, opencryptoki 3.8's software token in a private pkcsslotd the rehearsal
starts and stops (staging/okc.py).

The key counts are checked with the token's own tools, not keyrite's: OpenSC's pkcs11-tool on
opencryptoki's module, run inside pkcsslotd's namespaces through the launcher as
tests/test_token_opencryptoki.py does. The bundled key generation backs up, which this token
cannot: it is refused before anything is made. Skipped, with the reason, where a private
opencryptoki cannot run (not root, no CAP_SYS_ADMIN in a container, opencryptoki missing);
the refusals need no opencryptoki and always run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ceremony.script import bundled_script_path
from coordinator.rehearsal import rehearse as rehearse_module
from staging import okc
from tests.rehearsal_helpers import KEYRITE, kill_when, rehearse, rehearse_json

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "scripts" / "keygen-no-backup.toml"
UNAVAILABLE = okc.unavailable()
needs_okc = pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE or "opencryptoki runs")


def journaled(journal: Path, kind: str = "Performed") -> dict[int, Any]:
    """Each step's result (`Performed`) or observed value (`Observed`) as the journal holds
    it."""
    out: dict[int, Any] = {}
    for line in journal.read_text().splitlines():
        event = json.loads(line)["record"].get("event") or {}
        if event.get("event") == kind:
            out[int(event["step"])] = event["result" if kind == "Performed" else "value"]
    return out


def listed(result: dict[str, Any]) -> list[str]:
    """The key IDs of an `hsm.list` step's listing (`ods-hsmutil list` layout)."""
    return sorted(re.findall(r"^\S+\s+([0-9a-f]{32})\s+RSA/2048$", result["listing"], re.M))


def pkcsslotds_under(directory: Path) -> list[int]:
    """Running pkcsslotd processes whose log is under `directory` (ours, not the host's)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"pkcsslotd") for a in argv[:1]) and str(directory).encode() in \
                b" ".join(argv):
            pids.append(int(proc.name))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in \
        Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]


@needs_okc
def test_the_small_rehearsal_completes_on_opencryptoki(tmp_path: Path) -> None:
    workdir = tmp_path / "r"
    code, summary, err = rehearse_json(workdir, str(SCRIPT), "--fixture", "small",
                                       "--token-module", "opencryptoki")
    assert code == 0, err
    assert summary["status"] == "completed"
    assert summary["steps_completed"] == summary["steps_total"] == 56
    k = summary["keys"]
    assert (k["initial"], k["after_purge"], k["after_generate"]) == (6, 4, 10)
    assert summary["token"]["token_module"] == "opencryptoki"
    for kind in ("report", "transcript", "transcript_pdf"):
        assert Path(summary[kind]).stat().st_size > 0
    verified = subprocess.run([*KEYRITE, "verify", summary["journal"], "--key",
                               summary["checkpoint_key"]], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert pkcsslotds_under(workdir) == [], "a pkcsslotd outlived the rehearsal"

    # the token as the rehearsal left it, read with pkcs11-tool in a pkcsslotd of our own
    token = okc.restart(Path(summary["token"]["directory"]), summary["token"]["label"],
                        summary["token"]["user_pin"])
    try:
        on_token = token.private_key_ids()
    finally:
        okc.stop(token)
    assert on_token == listed(journaled(workdir / "journal.jsonl")[34])
    assert len(on_token) == 10


@needs_okc
def test_each_count_is_what_pkcs11_tool_reads(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """pkcs11-tool reads the token whenever the rehearsal's pkcsslotd is up (set-up, and the
    ceremony before its first step and after its last): the journal's counts at steps 30-34
    are exactly the sets it read, purged and generated keys included."""
    reads: list[tuple[str, int, list[str]]] = []
    real = okc.running

    @contextmanager
    def spy(config_path: Path) -> Iterator[okc.OkcToken]:
        with real(config_path) as token:
            reads.append(("up", token.pid, token.private_key_ids()))
            yield token
            reads.append(("down", token.pid, token.private_key_ids()))

    monkeypatch.setattr(okc, "running", spy)
    workdir = tmp_path / "r"
    code, summary = rehearse_module.rehearse(str(SCRIPT), workdir, fixture="small",
                                             as_json=True, token_module="opencryptoki")
    assert code == 0 and summary["status"] == "completed"
    # set-up's look (the previous record's count), then the ceremony's run
    assert [what for what, _, _ in reads] == ["up", "down", "up", "down"]
    seeded, _, before, after = (ids for _, _, ids in reads)
    assert len(seeded) == len(before) == 6 and seeded == before
    record = (workdir / "previous-record.toml").read_text()
    assert 'key_count = "6"' in record

    done = journaled(workdir / "journal.jsonl")
    # step 30 checks the count it observes against the previous record's
    assert journaled(workdir / "journal.jsonl", "Observed")[30] == str(len(before))
    deleted = sorted(done[31]["deleted"])
    assert (done[31]["before"], done[31]["after"]) == (6, 4) and set(deleted) <= set(before)
    assert listed(done[32]) == sorted(set(before) - set(deleted))
    generated = sorted(done[33]["generated"])
    assert (done[33]["before"], done[33]["after"], len(generated)) == (4, 10, 6)
    assert after == listed(done[34]) == sorted(set(before) - set(deleted) | set(generated))
    for _, pid, _ in reads:
        assert not alive(pid), f"pkcsslotd {pid} left running"
    assert pkcsslotds_under(workdir) == []


@needs_okc
def test_killed_mid_ceremony_it_resumes_on_a_new_pkcsslotd(tmp_path: Path) -> None:
    """SIGKILL after the generation (pkcsslotd dies with it, PDEATHSIG); --resume starts
    another over the same token, points the launcher at it, finishes and stops it."""
    workdir = tmp_path / "r"
    kill_when(workdir, r"\[ 34/56\]", str(SCRIPT), "--fixture", "small", "--token-module",
              "opencryptoki")
    code, summary, err = rehearse_json(workdir, "--resume")
    assert code == 0, err
    assert summary["status"] == "completed" and summary["keys"]["after_generate"] == 10
    assert summary["token"]["token_module"] == "opencryptoki"
    assert pkcsslotds_under(workdir) == []


@pytest.mark.parametrize("script, step", [(bundled_script_path(), "step 43 (hsm.backup)"),
                                          (None, "step 52 (drive.verify)")])
def test_a_script_that_backs_up_is_refused_up_front(tmp_path: Path, script: Path | None,
                                                    step: str) -> None:
    """Refused before anything is made (no work directory, no pkcsslotd), naming the step, the
    token and why; needs no opencryptoki."""
    workdir = tmp_path / "r"
    p = rehearse(*([str(script)] if script else []), "--workdir", str(workdir), "--fixture",
                 "small", "--token-module", "opencryptoki")
    assert p.returncode == 2, p.stdout + p.stderr
    assert step in p.stderr
    assert "opencryptoki software token" in p.stderr and "CKM_AES_KEY_WRAP_PAD" in p.stderr
    assert "nothing was made" in p.stderr and "keygen-no-backup.toml" in p.stderr
    assert not workdir.exists()
    assert "Traceback" not in p.stderr


def test_a_restore_is_refused_up_front(tmp_path: Path) -> None:
    restore = bundled_script_path().with_name("standby-restore.toml")
    p = rehearse(str(restore), "--workdir", str(tmp_path / "r"), "--token-module",
                 "opencryptoki")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "(hsm.restore): a restore is refused" in p.stderr
    assert not (tmp_path / "r").exists()


def test_the_option_is_explained() -> None:
    p = subprocess.run([*KEYRITE, "rehearse", "--help"], capture_output=True, text=True)
    text = " ".join(p.stdout.split())
    assert "--token-module {softhsm2,opencryptoki}" in text
    assert "cannot back up" in text and "keygen-no-backup.toml" in text
