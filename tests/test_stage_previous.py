"""`keyrite stage --previous J --previous-key K`: a ceremony that continues an earlier one (the
annual audit opens the key generation's offsite bags, the standby restore its master copy) is
staged from that ceremony's journal, as `keyrite rehearse --previous` rehearses it. The key
generation is rehearsed once, for real (small fixture); each script is staged from its journal
and its staged coordinator (and the restore's shim, on its fresh token) started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.folder_drives import FolderDrives
from coordinator.live.config import CoordinatorConfig
from coordinator.record_command import PreviousJournal, load_previous_journal
from signer_shim.config import SignerConfig
from staging.standup import ShimProcess
from tests.live_helpers import coordinator_started

ROOT = Path(__file__).resolve().parent.parent
KEYRITE = [sys.executable, "-m", "keyrite.cli"]
AUDIT = ROOT / "ceremony" / "scripts" / "annual-audit.toml"
RESTORE = ROOT / "ceremony" / "scripts" / "standby-restore.toml"
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
SCRIPTS = {"audit": AUDIT, "restore": RESTORE}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYRITE, *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def generation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The bundled key generation, rehearsed: its work directory and its summary."""
    work = tmp_path_factory.mktemp("prev") / "generate"
    p = _run("rehearse", "--workdir", str(work), "--fixture", "small", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    return work, json.loads(p.stdout)


@pytest.fixture(scope="module")
def earlier(generation: tuple[Path, dict]) -> PreviousJournal:
    work, summary = generation
    return load_previous_journal(work / "journal.jsonl", summary["checkpoint_key"])


@pytest.fixture(scope="module")
def staged(generation: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, tuple[subprocess.CompletedProcess[str], dict]]:
    """The audit and the restore, each staged with --previous from the key generation."""
    work, summary = generation
    root = tmp_path_factory.mktemp("staged")
    out = {}
    for name, script in SCRIPTS.items():
        p = _run("stage", str(script), "--workdir", str(root / name), "--json",
                 "--previous", str(work / "journal.jsonl"),
                 "--previous-key", summary["checkpoint_key"])
        out[name] = (p, json.loads(p.stdout) if p.returncode == 0 else {})
    return out


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_staged_coordinator_continues_from_the_previous_journal(
        name: str, staged: dict, generation: tuple[Path, dict]) -> None:
    p, s = staged[name]
    assert p.returncode == 0, p.stderr[-3000:]
    cfg = CoordinatorConfig.load(Path(s["coordinator"]))
    assert cfg.previous is None
    assert cfg.previous_journal == generation[0] / "journal.jsonl"
    assert cfg.previous_key == generation[1]["checkpoint_key"]
    assert s["previous"] == str(generation[0] / "journal.jsonl")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_drives_in_the_held_bags_are_as_the_previous_rehearsal_sealed_them(
        name: str, staged: dict, generation: tuple[Path, dict],
        earlier: PreviousJournal) -> None:
    p, s = staged[name]
    assert p.returncode == 0, p.stderr[-3000:]
    opened = set(s["held"])
    assert opened  # each script opens at least one bag the key generation left held
    custody = {h.bag: h for h in earlier.facts.custody}
    drives = FolderDrives(Path(s["root"]) / "drives")
    before = generation[0] / "drives"
    sheet = (Path(s["root"]) / "live" / "materials.txt").read_text()
    for bag in opened:
        assert s["held"][bag] == custody[bag].serial  # the serial on the bag brought in
        assert f"{bag}: {custody[bag].serial}" in sheet
        for label, serial in custody[bag].drives.items():
            assert serial and drives.info(label).serial == serial == s["drives"][label]
            files = Path(drives.info(label).path)
            names = sorted(f.name for f in (before / label / "files").iterdir())
            assert names and sorted(f.name for f in files.iterdir()) == names
            for f in names:
                assert (files / f).read_bytes() == (before / label / "files" / f).read_bytes()


def _private_keys(config: SignerConfig) -> list[str]:
    """The private keys' IDs on a token, as pkcs11-tool (not keyrite) lists them."""
    p = subprocess.run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", config.token_label,
                        "--login", "--pin", config.user_pin, "-O", "--type", "privkey"],
                       capture_output=True, text=True, timeout=60,
                       env={"SOFTHSM2_CONF": str(config.softhsm2_conf), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    return sorted(line.split(":", 1)[1].strip() for line in p.stdout.splitlines()
                  if line.strip().startswith("ID:"))


def test_the_restore_continues_on_a_fresh_token_with_the_sealed_password(
        staged: dict, generation: tuple[Path, dict]) -> None:
    p, s = staged["restore"]
    assert p.returncode == 0, p.stderr[-3000:]
    root, work = Path(s["root"]), generation[0]
    old = SignerConfig.load(work / "signer" / "signer.toml")
    new = SignerConfig.load(root / "signer" / "signer.toml")
    assert (new.token_label, new.user_pin) == (old.token_label, old.user_pin)
    assert str(new.softhsm2_conf).startswith(str(root))
    assert _private_keys(old) and _private_keys(new) == []  # empty, as a replaced HSM is
    assert new.host_key_path.read_bytes() == old.host_key_path.read_bytes()  # the same box
    copy = root / "materials" / "device-backup-password"
    assert copy.read_bytes() == (work / "materials" / "device-backup-password").read_bytes()
    cfg = CoordinatorConfig.load(Path(s["coordinator"]))
    assert cfg.passwords["device-backup"].matches(copy.read_text().strip())


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_staged_shim_and_coordinator_start(name: str, staged: dict,
                                               tmp_path: Path) -> None:
    p, s = staged[name]
    assert p.returncode == 0, p.stderr[-3000:]
    with ShimProcess(Path(s["shim"]), wait=60) as shim:  # on the continued (or fresh) token
        assert shim.port > 0
    out = "".join(coordinator_started(Path(s["coordinator"]), tmp_path / "coordinator.log"))
    assert "commands on" in out, out[-3000:]
    assert "previous record from" in out and "second-key-generation" in out
    for bag in s["held"]:
        assert f"{bag}" in out.split("previous record from", 1)[1]


def test_a_wrong_previous_key_is_refused_before_anything_is_made(
        generation: tuple[Path, dict], staged: dict, tmp_path: Path) -> None:
    work = generation[0]
    other = staged["audit"][1]["journal_key"]  # a well-formed key, of another journal
    for key, words in ((other, "does not verify"), ("not-a-key", "--previous-key")):
        p = _run("stage", str(AUDIT), "--workdir", str(tmp_path / "c"),
                 "--previous", str(work / "journal.jsonl"), "--previous-key", key)
        assert p.returncode == 2, p.stderr[-2000:]
        assert words in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
        assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_the_audit_without_previous_is_refused_naming_the_flag(tmp_path: Path) -> None:
    p = _run("stage", str(AUDIT), "--workdir", str(tmp_path / "c"))
    assert p.returncode == 2, p.stderr[-2000:]
    flat = " ".join(p.stderr.split())
    assert "--previous OLD/journal.jsonl --previous-key KEY" in flat, flat
    assert "keyrite rehearse" in flat and "Traceback" not in flat
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_the_help_names_the_previous_options() -> None:
    out = _run("stage", "--help").stdout
    flat = " ".join(out.split())
    for option in ("--previous JOURNAL", "--previous-key VKEY", "--token DIR"):
        assert option in flat, flat
    assert "annual audit" in flat and "standby restore" in flat
