"""hsm.restore on real SoftHSM2 tokens: a backup of a token with keys, handed to a standby
signer's shim over SSH, restored onto a fresh token under a quorum of two KSOs. Counted with
OpenSC's pkcs11-tool, not keyrite's own code: the standby then holds the source's private keys,
by ID, and its token fingerprint; too few approvals, one KSO twice, and a wrong password each
leave the standby token empty. A token holding a key the backup lacks is refused at planning,
and a restore killed half-way through the swap is finished by executing it again."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from coordinator.ceremony_world import hand_over
from coordinator.shim_client import QuorumRefused, ShimClient
from signer_shim.authority import Rule
from signer_shim.config import SignerConfig
from signer_shim.hostkey import ensure_host_key
from signer_shim.interface import SignerError
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.softhsm import create_token
from staging.fixture import RehearsalToken
from staging.standup import ShimProcess, write_shim_files
from tests.conftest import EC_POLICIES
from tests.shim_helpers import approve, cast_authority

PASSWORD = "device backup password for the restore tests"
RESTORE_STEP = 60
WAIT = 120


def private_key_ids(config: SignerConfig) -> list[str]:
    """The private keys' CKA_IDs as OpenSC's pkcs11-tool lists them (-O, logged in)."""
    p = subprocess.run(
        ["pkcs11-tool", "--module", str(config.module), "--token-label", config.token_label,
         "-O", "--login", "--pin", config.user_pin, "--type", "privkey"],
        capture_output=True, text=True, timeout=WAIT, check=True,
        env={**os.environ, "SOFTHSM2_CONF": str(config.softhsm2_conf)})
    assert p.stdout.count("Private Key Object") == len(re.findall(r"^\s*ID:", p.stdout, re.M))
    return sorted(re.findall(r"^\s*ID:\s*([0-9a-f]+)\s*$", p.stdout, re.M))


def backup_of(source: SignerConfig, date: str = "2026-12-01") -> tuple[str, bytes]:
    with Pkcs11Signer(source) as s:
        result = s.execute(s.plan_backup(date), [], secrets={"password": PASSWORD})
        return str(result["file"]), s.read_output(str(result["file"]))


def standby_for(source: SignerConfig, directory: Path) -> Path:
    """A fresh token for the standby signer: the source's label and user PIN (a restore brings
    the backup's token back, PINs included), no keys; its own state and host key."""
    token = create_token(directory / "hsm", source.token_label, user_pin=source.user_pin)
    state = directory / "state"
    state.mkdir(parents=True)
    config = replace(source, name="standby-2", softhsm2_conf=token.softhsm2_conf,
                     state_dir=state, host_key_path=ensure_host_key(state / "ssh_host_ed25519_key"),
                     workers=1)
    return config.save(directory / "signer.toml")


@dataclass
class Standby:
    source: RehearsalToken
    config: SignerConfig
    proc: ShimProcess
    client: ShimClient


@pytest.fixture
def standby(small_rehearsal: RehearsalToken, tmp_path: Path) -> Iterator[Standby]:
    path = standby_for(small_rehearsal.config, tmp_path / "standby")
    base = cast_authority()
    authority = replace(base, rules=(*base.rules, Rule("restore", RESTORE_STEP, (("KSO", 2),))))
    files = write_shim_files(tmp_path / "shim", path, authority)
    proc = ShimProcess(files.config)
    client = ShimClient("127.0.0.1", proc.port, client_key=files.client_key,
                        host_key_pin=files.host_key_pin, timeout=WAIT)
    try:
        yield Standby(small_rehearsal, SignerConfig.load(path), proc, client)
    finally:
        client.close()
        proc.stop()


def plan(c: ShimClient, name: str, data: bytes) -> dict[str, Any]:
    return c.plan_restore(name, hand_over(c, name, data))


def test_a_backup_restores_onto_a_fresh_token_under_a_quorum_of_two_kso(
        standby: Standby) -> None:
    source = standby.source.config
    name, data = backup_of(source)
    wanted = private_key_ids(source)
    assert len(wanted) == 6 and private_key_ids(standby.config) == []
    c = standby.client
    op = plan(c, name, data)
    # the plan lists every key the backup holds, with its type, label and public key's digest
    assert [k["locator"] for k in op["keys"]] == wanted
    assert all(k["label"] == k["locator"] and k["type"] == "ECDSA/P-256"
               and re.fullmatch(r"[0-9a-f]{64}", k["public_key_sha256"]) for k in op["keys"])
    with Pkcs11Signer(source) as s:
        assert op["backup_token"] == s.fingerprint() != op["token"]
    for approvals, words in ((approve(op, "kso1", step=RESTORE_STEP), "needs 2 distinct KSO"),
                             (approve(op, "kso1", step=RESTORE_STEP) * 2, "approved twice")):
        with pytest.raises(QuorumRefused, match=words):
            c.execute(op, approvals, secrets={"password": PASSWORD})
        assert private_key_ids(standby.config) == []
    quorum = approve(op, "kso1", "kso2", step=RESTORE_STEP)
    with pytest.raises(SignerError, match="wrong backup password"):
        c.execute(op, quorum, secrets={"password": "not the password"})
    assert private_key_ids(standby.config) == [] and c.inventory().keys == ()
    assert not list(standby.config.state_dir.glob("restore-*"))
    result = c.execute(op, quorum, secrets={"password": PASSWORD})
    assert (result["restored"], result["before"], result["after"], result["added"]) == \
        (6, 0, 6, 6)
    assert private_key_ids(standby.config) == wanted
    assert c.fingerprint() == op["backup_token"] == result["fingerprint"]
    assert c.execute(op, quorum, secrets={"password": PASSWORD}) == result  # recorded answer
    with Pkcs11Signer(source) as s:
        assert c.inventory() == s.inventory()
        src_state = s.config.keystate_path.read_bytes()
    assert standby.config.keystate_path.read_bytes() == src_state
    assert not list(standby.config.state_dir.glob("restore-*"))


def test_a_token_holding_a_key_the_backup_lacks_is_refused_when_planned(
        small_rehearsal: RehearsalToken) -> None:
    with Pkcs11Signer(small_rehearsal.config) as s:
        name = str(s.execute(s.plan_backup("2026-12-01"), [],
                             secrets={"password": PASSWORD})["file"])
        s.execute(s.plan_generate(EC_POLICIES[1:], "P1Y"), [])  # keys the backup lacks
        data = s.read_output(name)
        with pytest.raises(SignerError, match="key\\(s\\) the backup does not"):
            s.plan_restore(name, hand_over(s, name, data))


def test_a_restore_killed_half_way_through_the_swap_is_finished_by_executing_again(
        small_rehearsal: RehearsalToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = small_rehearsal.config
    name, data = backup_of(source)
    config = SignerConfig.load(standby_for(source, tmp_path / "standby"))
    real = shutil.copytree
    calls: list[object] = []

    def dies_once(*a: Any, **k: Any) -> Any:
        calls.append(a)
        if len(calls) == 1:  # the old token is aside, the backup's not yet in place
            raise OSError("killed")
        return real(*a, **k)

    with Pkcs11Signer(config) as s:
        op = s.plan_restore(name, hand_over(s, name, data))
        monkeypatch.setattr(shutil, "copytree", dies_once)
        with pytest.raises(SignerError, match="killed"):
            s.execute(op, [], secrets={"password": PASSWORD})
        assert not any(p.is_dir() and not p.name.startswith(".")
                       for p in Path(config.softhsm2_conf).parent.joinpath("tokens").iterdir())
        result = s.execute(op, [], secrets={"password": PASSWORD})
        assert result["added"] == 6 and result["before"] == 0
    assert private_key_ids(config) == private_key_ids(source)


def test_a_backup_of_another_token_label_is_refused_when_planned(
        small_rehearsal: RehearsalToken, tmp_path: Path) -> None:
    source = small_rehearsal.config
    name, data = backup_of(source)
    token = create_token(tmp_path / "other" / "hsm", "other-label", user_pin=source.user_pin)
    state = tmp_path / "other" / "state"
    config = replace(source, softhsm2_conf=token.softhsm2_conf, token_label="other-label",
                     state_dir=state)
    with Pkcs11Signer(config) as s, pytest.raises(SignerError, match="token_label"):
        s.plan_restore(name, hand_over(s, name, data))


def test_the_coordinator_reads_the_backup_off_its_drive_plans_and_restores(
        small_rehearsal: RehearsalToken, tmp_path: Path) -> None:
    """CeremonyWorld's hands for the step: the backup read off the drive (the only one there,
    checked with its .sha256sum), handed over, planned; then executed with the typed password,
    which is handed over once and forgotten."""
    from ceremony.digests import operation_digest
    from ceremony.machine import decisions as d
    from coordinator.ceremony_world import CeremonyWorld
    from coordinator.folder_drives import FolderDrives
    from keyrite.exits import Failure

    source = small_rehearsal.config
    name, data = backup_of(source)
    drives = FolderDrives(tmp_path / "drives")
    drives.provision("master-copy", "SERIAL1")
    sums = f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()
    drives.copy("master-copy", [(name, data), (f"{name}.sha256sum", sums)])
    config = SignerConfig.load(standby_for(source, tmp_path / "standby"))
    want = d.Plan(4, "hsm.restore", {"signer": "standby", "drive": "master-copy", "file": None})
    with Pkcs11Signer(config) as s:
        world = CeremonyWorld(None, s, drives, tmp_path / "cd", tmp_path / "j",  # type: ignore
                              lambda: (), {})
        op = world.plan(want)
        assert op["file"] == name and len(op["keys"]) == 6
        run = d.Execute(4, op, operation_digest(op), (), ("device-backup",))
        with pytest.raises(Failure, match="nobody has entered it"):
            world.execute(run, lambda *a: None)
        world.secrets["device-backup"] = PASSWORD
        assert world.execute(run, lambda *a: None)["added"] == 6
        assert world.secrets == {}
    assert private_key_ids(config) == private_key_ids(source)
    # a damaged copy, and a drive with two backups and no `file`, are refused before planning
    # (damaged on the drive: a copy through `drives` would write a fresh .sha256sum with it)
    (Path(drives.info("master-copy").path) / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(Failure, match="does not match its .sha256sum"):
        world.plan(want)
    drives.copy("master-copy", [("key-backup-2025-12-01.tar.gz", data)])
    with pytest.raises(Failure, match="holds 2 key backups"):
        world.plan(want)
    with pytest.raises(Failure, match="holds no key-backup-2024-01-01.tar.gz"):
        world.plan(d.Plan(4, "hsm.restore", {"drive": "master-copy",
                                             "file": "key-backup-2024-01-01.tar.gz"}))
