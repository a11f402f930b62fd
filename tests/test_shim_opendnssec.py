"""The shim over the OpenDNSSEC backend, end to end: a private OpenDNSSEC installation with its
enforcer daemon (tests/ods_helpers.py), `keyrite shim` on 127.0.0.1 with a signer config that
says `backend = "opendnssec"`, reached over real SSH with `ShimClient`. Generation for a real
policy with P14M under a valid quorum agrees with `ods-hsmutil list` (run here, not through
keyrite); a forged quorum is refused and the inventory is unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.shim_client import QuorumRefused, ShimClient
from signer_shim import server
from signer_shim.config import ConfigError
from signer_shim.opendnssec.ods_config import OdsConfig
from signer_shim.opendnssec.ods_setup import EnforcerDaemon, OdsInstallation
from signer_shim.request_journal import RequestJournal
from staging.standup import ShimProcess, client_of
from tests.ods_helpers import EC_POLICIES, running_installation
from tests.shim_helpers import approve, cast_authority
from tests.test_opendnssec import ZONES13, hsmutil_count, kasp_locators

WAIT = 180


@dataclass(frozen=True)
class OdsShimFiles:
    config: Path
    client_key: Path
    host_key_pin: str


def write_ods_shim_files(directory: Path, inst: OdsInstallation) -> OdsShimFiles:
    """shim.toml, authorized_keys and authority.toml for the installation's signer config (what
    staging.standup.write_shim_files does for a PKCS#11 config, which it reads as one)."""
    directory.mkdir(parents=True)
    client_key = directory / "coordinator_ssh_key"
    key = asyncssh.generate_private_key("ssh-ed25519", comment="keyrite coordinator")
    key.write_private_key(client_key)
    os.chmod(client_key, 0o600)
    (directory / "authorized_keys").write_bytes(key.export_public_key())
    (directory / "authority.toml").write_text(cast_authority().to_toml())
    host_key = inst.config.host_key_path
    (directory / "shim.toml").write_text(
        "[shim]\n"
        'listen = "127.0.0.1"\n'
        "port = 0\n"
        f"host_key = {json.dumps(str(host_key))}\n"
        'authorized_keys = "authorized_keys"\n'
        f"signer_config = {json.dumps(str(inst.config_path))}\n"
        'authority = "authority.toml"\n')
    pin = asyncssh.read_private_key(host_key).get_fingerprint("sha256")
    return OdsShimFiles(directory / "shim.toml", client_key, pin)


@dataclass
class OdsShim:
    inst: OdsInstallation
    daemon: EnforcerDaemon
    files: OdsShimFiles
    proc: ShimProcess

    def client(self) -> ShimClient:
        return client_of(self.files, self.proc, WAIT)

    @property
    def journal(self) -> RequestJournal:
        return RequestJournal(self.inst.config.state_dir / "requests.jsonl")


@pytest.fixture
def ods_shim(tmp_path: Path) -> Iterator[OdsShim]:
    with running_installation(tmp_path / "ods", ZONES13) as (inst, daemon):
        files = write_ods_shim_files(tmp_path / "shim", inst)
        proc = ShimProcess(files.config)
        try:
            yield OdsShim(inst, daemon, files, proc)
        finally:
            proc.stop()


def locators(c: ShimClient) -> list[str]:
    return [k.locator for k in c.inventory().keys]


def forged(op: dict[str, object]) -> dict[str, list[object]]:
    """Approvals that must not pass: signed by a key not on the roster, and a real officer's
    approval whose signed operation digest was swapped for another."""
    stranger = approve(op, "sa1", signer=Ed25519PrivateKey.generate())
    real = approve(op, "sa1")
    swapped = [a.__class__(**{**a.to_dict(), "operation": "00" * 32}) for a in real]
    return {"unknown key": list(stranger), "swapped digest": list(swapped)}


def test_shim_over_opendnssec_generates_p14m_under_quorum(ods_shim: OdsShim) -> None:
    s = ods_shim
    with s.client() as c:
        info = c.info()
        assert info["backend"] == "opendnssec" and info["repository"] == "SoftHSM"
        assert info["host_key"] == s.files.host_key_pin
        assert locators(c) == [] and hsmutil_count(s.inst) == 0
        op = c.plan_generate(EC_POLICIES, "P14M")
        # P14M = 434 days: KSK ceil(434/365) = 2, ZSK ceil(434/93) = 5 (not times 13 zones)
        assert [(b["role"], b["zones"], b["count"]) for b in op["batches"]] == [
            ("KSK", 13, 2), ("ZSK", 13, 5)]
        for name, approvals in forged(op).items():
            with pytest.raises(QuorumRefused):
                c.execute(op, approvals)  # type: ignore[arg-type]
            assert locators(c) == [] and hsmutil_count(s.inst) == 0, f"{name}: the HSM changed"
        seen: list[tuple[int, int, str]] = []
        approvals = approve(op, "sa1")
        result = c.execute(op, approvals, lambda *p: seen.append(p))
        assert (result["before"], result["added"], result["after"], result["removed"]) == (
            0, 7, 7, 0)
        assert seen and seen[-1] == (7, 7, "generated 7 of 7 keys")
        listed = locators(c)
        assert hsmutil_count(s.inst) == 7 == len(listed)
        assert set(result["generated"]) == set(listed) == kasp_locators(s.inst.database)
        assert c.execute(op, approvals) == result  # the same key: the recorded answer
        assert hsmutil_count(s.inst) == 7

        # after the generation: forged approvals for another generation change nothing
        more = c.plan_generate(EC_POLICIES, "P28M")
        for name, bad in forged(more).items():
            with pytest.raises(QuorumRefused):
                c.execute(more, bad)  # type: ignore[arg-type]
            assert locators(c) == listed and hsmutil_count(s.inst) == 7, f"{name}: changed"

    # the request journal is in the OpenDNSSEC signer config's state_dir
    events = [(e["event"], e.get("op")) for e in s.journal.entries() if e.get("key")]
    assert events.count(("received", "generate")) == 1
    assert sum(1 for e, _ in events if e == "refused") == 4
    assert [e for e, _ in events if e in {"started", "finished"}] == ["started", "finished"]


def test_load_takes_the_host_key_from_the_opendnssec_config(tmp_path: Path) -> None:
    from signer_shim.opendnssec.ods_setup import create_installation

    inst = create_installation(tmp_path / "ods", EC_POLICIES, {"default": ("zone01.example",)})
    files = write_ods_shim_files(tmp_path / "shim", inst)
    loaded = server.load(files.config)
    assert isinstance(loaded.signer_config, OdsConfig)
    assert loaded.signer_config.state_dir == inst.config.state_dir
    # a shim host key that is not the ODS signer's own is refused before anything listens
    other = tmp_path / "other_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(other)
    text = files.config.read_text().replace(str(inst.config.host_key_path), str(other))
    files.config.write_text(text)
    with pytest.raises(ConfigError, match="not the signer's host key"):
        server.load(files.config)
    # an unknown backend is a config error naming it, and `keyrite shim` exits 2
    files.config.write_text(text.replace(str(other), str(inst.config.host_key_path)))
    inst.config_path.write_text(
        inst.config_path.read_text().replace('"opendnssec"', '"hsm9000"', 1))
    with pytest.raises(ConfigError, match="hsm9000"):
        server.load(files.config)
    r = subprocess.run([sys.executable, "-m", "signer_shim.shim_command", "--config",
                        str(files.config)], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parent.parent, check=False)
    assert r.returncode == 2 and "hsm9000" in r.stderr, (r.returncode, r.stderr)
