"""The device-backup password cannot be mistyped into a backup nobody can open (issue 11).

Before: the SA typed it once, masked; a typo was taken, the backup encrypted under it, and the
restore drill reused the typed password, so it passed; the sealed copies then did not open the
backup. Now: a verifier recorded before the ceremony refuses any other password, the typed one
is forgotten once the backup has it, and the drill asks a second officer to type it again from a
sealed copy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.replay import replay
from ceremony.records import record_from_dict
from ceremony.view import from_dict
from consoles.actions import actions_for
from coordinator.bus import CommandRefused
from coordinator.ceremony_world import CeremonyWorld
from coordinator.folder_drives import FolderDrives
from coordinator.journal import Journal
from coordinator.live.daemon import Live
from keyrite.exits import BadInput, Failure
from keyrite.passwords import VerifierError, make_verifier, parse_verifier
from signer_shim.interface import PolicyKeys, SignerError
from signer_shim.pkcs11.signer import Pkcs11Signer
from staging.fixture import seed_rehearsal_token
from tests.idle_world import NoWork
from tests.machine_helpers import drive, execute, seed_script, send, start

PASSWORD = "correct horse battery staple"
TYPO = "correct horse battery stapel"
SALT = b"0123456789abcdef"


# --- the verifier ------------------------------------------------------------------------------
def test_a_verifier_takes_its_password_and_nothing_else() -> None:
    v = make_verifier(PASSWORD, salt=SALT)
    assert v.matches(PASSWORD)
    for other in (TYPO, PASSWORD + " ", PASSWORD.upper(), "", "\ud800", "x" * 10_000):
        assert not v.matches(other)
    again = parse_verifier(str(v))
    assert again == v and again.matches(PASSWORD)
    assert PASSWORD not in str(v) and str(v).split("$")[-1] not in repr(v)


@pytest.mark.parametrize("line", [
    "", "plain", "scrypt$N=32768,r=8,p=1$c2FsdHNhbHQ=",
    "scrypt$N=1073741824,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 43 + "=",  # 1 TiB of memory
    "scrypt$N=30000,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 43 + "=",  # not a power of two
    "scrypt$N=32768,r=99,p=1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 43 + "=",
    "scrypt$N=32768,r=8,p=1$!!!!$" + "A" * 43 + "=",
    "scrypt$N=32768,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA==$c2hvcnQ=",  # a hash of 5 bytes
    "scrypt$N=３２７６８,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 43 + "=",
])
def test_a_verifier_line_out_of_bounds_is_refused_before_any_work(line: str) -> None:
    with pytest.raises(VerifierError):
        parse_verifier(line)


def test_keyrite_password_verifier_prints_a_line_that_checks(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text(PASSWORD + "\n")
    out = subprocess.run([sys.executable, "-m", "keyrite.cli", "password", "verifier",
                          "--password-file", str(f)], capture_output=True, text=True, check=True)
    name, _, value = out.stdout.strip().partition(" = ")
    assert name == '"device-backup"'
    assert parse_verifier(value.strip('"')).matches(PASSWORD)
    assert PASSWORD not in out.stdout + out.stderr
    piped = subprocess.run([sys.executable, "-m", "keyrite.cli", "password", "verifier"],
                           input=PASSWORD, capture_output=True, text=True)
    assert piped.returncode == 2 and "terminal" in piped.stderr and not piped.stdout


# --- the coordinator takes only the pre-generated password --------------------------------------
def _live(tmp_path: Path, before: Any) -> tuple[Live, Journal, Any]:
    m, w = start(seed_script())
    drive(m, w, before=before)
    journal = Journal.create(tmp_path / "journal.jsonl", key=Ed25519PrivateKey.generate(),
                             name="keyrite.test/live", origin="keyrite.test/live",
                             genesis_record={"type": "genesis", "at": "2026-11-27T00:00:00Z"})
    live = Live(m, journal, NoWork(), clock=lambda: w.now + 1,  # type: ignore[arg-type]
                passwords={"device-backup": make_verifier(PASSWORD, salt=SALT)})
    return live, journal, w


def _secret(live: Live, seat: str, value: str) -> Any:
    step = live.m.current
    assert step is not None
    return trio.run(live.handle, seat, {"type": "secret", "step": step.n,
                                        "name": "device-backup", "value": value})


def _backup_execute(x: d.Decision) -> bool:
    return isinstance(x, d.Execute) and bool(x.secrets)


def _drill(x: d.Decision) -> bool:
    return isinstance(x, d.Perform) and "secrets" in x.params


def test_a_mistyped_password_is_refused_before_the_backup_starts(tmp_path: Path) -> None:
    live, journal, _ = _live(tmp_path, _backup_execute)
    with pytest.raises(CommandRefused, match="not the pre-generated device-backup password"):
        _secret(live, "SA1", TYPO)
    assert live.world.secrets == {}
    with pytest.raises(CommandRefused, match="the SA enters the device-backup password"):
        _secret(live, "KSO1", PASSWORD)
    _secret(live, "SA1", PASSWORD)
    assert live.world.secrets == {"device-backup": PASSWORD}
    text = (tmp_path / "journal.jsonl").read_text()
    assert PASSWORD not in text and TYPO not in text
    # both refusals are journaled: the mistyped password, then the wrong officer's
    mistyped, wrong_officer = [e.record for e in journal.entries()
                               if e.record.get("type") == "refused"
                               and e.record.get("command") == "secret"]
    assert "does not match the verifier" in mistyped["reason"]
    assert "the SA enters" in wrong_officer["reason"]
    [typed] = [e.record for e in journal.entries() if e.record.get("type") == "secret"]
    assert (typed["seat"], typed["purpose"]) == ("SA1", "backup")


def test_the_restore_drill_asks_a_second_officer_for_the_password_again(tmp_path: Path) -> None:
    live, journal, w = _live(tmp_path, _backup_execute)
    _secret(live, "SA1", PASSWORD)
    # the backup runs: the world hands the password over once and forgets it
    [want] = live.m.wants(now=w.now)
    assert isinstance(want, d.Execute)
    world = CeremonyWorld.__new__(CeremonyWorld)
    world.secrets = live.world.secrets
    assert world.take_secret("device-backup", "the backup") == PASSWORD
    assert live.world.secrets == {}
    send(live.m, w, ev.OperationStarted(at=w.at(), step=want.step, digest=want.digest))
    send(live.m, w, ev.Performed(at=w.at(), step=want.step, result=execute(w, want)))
    drive(live.m, w, before=_drill)

    view = from_dict(live.view())
    assert view.step is not None
    [asked] = [a for a in view.step.asked if a.kind == "secret"]
    assert asked.detail["purpose"] == "drill" and asked.detail["not_person"] == "bob"
    assert not [a for a in actions_for(view, "SA1", "SA") if a.kind == "secret"]
    [offer] = [a for a in actions_for(view, "KSO1", "KSO") if a.kind == "secret"]
    assert "sealed copy" in offer.label

    with pytest.raises(CommandRefused, match="second officer"):
        _secret(live, "SA1", PASSWORD)
    with pytest.raises(CommandRefused, match="not the pre-generated"):
        _secret(live, "KSO1", TYPO)
    _secret(live, "KSO1", PASSWORD)
    assert live.world.secrets == {"device-backup": PASSWORD}
    drill = [e.record for e in journal.entries() if e.record.get("type") == "secret"][-1]
    assert (drill["seat"], drill["purpose"]) == ("KSO1", "drill")
    # who typed it at the backup is the machine's, from the journal's secret record: a
    # restarted coordinator knows it (tests/test_machine_room.py replays it)
    backup = [e.record for e in journal.entries() if e.record.get("type") == "secret"][0]
    assert record_from_dict(backup).machine_event() == ev.PasswordEntered(
        at=backup["at"], seat="SA1", step=backup["step"], name="device-backup",
        purpose="backup")


# --- the drill restores with what the second officer typed, never what the backup was given -----
@pytest.fixture
def signer(tmp_path: Path):
    keys = [PolicyKeys("default", "ZSK", "ECDSA/P-256", 90 * 86400)]
    seeded = seed_rehearsal_token(tmp_path / "signer", keys, shape="small", name="standby",
                                  role="standby")
    with Pkcs11Signer(seeded.config) as s:
        yield s


def test_a_backup_made_under_another_password_fails_the_drill(tmp_path: Path,
                                                              signer: Pkcs11Signer) -> None:
    drives = FolderDrives(tmp_path / "drives")
    drives.provision("master-copy", "SERIAL1")
    world = CeremonyWorld(None, signer, drives, tmp_path / "cd", tmp_path / "j",  # type: ignore
                          lambda: (), {})
    op = signer.plan_backup("2026-12-07")
    want = d.Execute(43, op, "digest", (), ("device-backup",))
    with pytest.raises(Failure, match="nobody has entered it"):
        world.execute(want, lambda *a: None)
    world.secrets["device-backup"] = TYPO  # typed at the backup (no verifier in this test)
    result = world.execute(want, lambda *a: None)
    assert world.secrets == {}  # handed over once, then forgotten
    drives.copy("master-copy", [(result["file"], signer.read_output(result["file"]))])
    drill = d.Perform(52, "drive.verify", {"drive": "master-copy", "backup": result,
                                           "secrets": ["device-backup"]})
    with pytest.raises(Failure, match="restore drill needs the device-backup password"):
        world._drill(drill.params)
    world.secrets["device-backup"] = PASSWORD  # what the sealed copies say
    with pytest.raises(SignerError, match="wrong backup password"):
        world._drill(drill.params)
    assert world.secrets == {}
    world.secrets["device-backup"] = TYPO
    assert world._drill(drill.params)["match"] is True


# --- the coordinator will not start without a verifier -----------------------------------------
def test_the_coordinator_refuses_a_config_without_a_verifier(tmp_path: Path) -> None:
    from coordinator.live.config import CoordinatorConfig
    from coordinator.live.serve import open_live
    from coordinator.live.stage import stage

    s = stage(tmp_path / "c", fixture="small")
    text = s.coordinator.read_text()
    assert "[passwords]" in text and PASSWORD not in text
    password = (s.root / "materials" / "device-backup-password").read_text().strip()
    assert password not in text
    line = text.split('"device-backup" = ')[1].strip().strip('"')
    assert parse_verifier(line).matches(password)

    s.coordinator.write_text(text.replace(line, "scrypt$N=3,r=8,p=1$AAAA$AAAA"))
    with pytest.raises(BadInput, match=r"passwords\.device-backup: .*power of two"):
        CoordinatorConfig.load(s.coordinator)
    s.coordinator.write_text(text.split("[passwords]")[0])
    cfg = CoordinatorConfig.load(s.coordinator)
    with pytest.raises(BadInput, match=r"\[passwords\] has no verifier for device-backup"):
        open_live(cfg)
    assert not cfg.journal.exists()


def test_a_journal_of_todays_code_replays_its_secret_records(tmp_path: Path) -> None:
    """A journal of today's code (no `purpose`) replays: its secret records were backups."""
    live, journal, w = _live(tmp_path, _backup_execute)
    step = live.m.current.n  # type: ignore[union-attr]
    replay([(9, {"type": "secret", "at": w.now, "seat": "SA1", "step": step,
                 "name": "device-backup"})], live.m, live.m.script.sha256)
    ask = live.m.password_asked(w.now)
    assert ask is None or ask.purpose == "backup"  # taken: the machine knows who typed it
    [want] = live.m.wants(now=w.now)
    assert isinstance(want, d.Execute)
    send(live.m, w, ev.OperationStarted(at=w.at(), step=want.step, digest=want.digest))
    send(live.m, w, ev.Performed(at=w.at(), step=want.step, result=execute(w, want)))
    drive(live.m, w, before=_drill)
    drill = live.m.password_asked(w.now)
    assert drill is not None and drill.not_person == "bob"
