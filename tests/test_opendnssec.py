"""OdsSigner against Debian's real OpenDNSSEC 2.1 tools and SoftHSM2, each test with its own
installation under tmp_path and its own enforcer daemon (started and stopped by a fixture).
Missing tools fail the tests: dev/setup.sh installs them."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from signer_shim.backends import open_signer
from signer_shim.backup import read_members, restore_backup
from signer_shim.config import ConfigError, SignerConfig
from signer_shim.interface import SignerError
from signer_shim.opendnssec.ods_config import load_ods_config
from signer_shim.opendnssec.ods_setup import EnforcerDaemon, OdsInstallation, validate_xml
from signer_shim.opendnssec.signer import OdsSigner
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.softhsm import SoftHSMToken
from tests.ods_helpers import advance_until, running_installation, wait_until_idle

TOOLS = ("ods-enforcerd", "ods-enforcer", "ods-hsmutil", "xmllint", "softhsm2-util")
ZONES13 = {"default": tuple(f"zone{i:02}.example" for i in range(1, 14))}
ONE_ZONE = {"default": ("zone01.example",)}


def hsmutil_count(inst: OdsInstallation) -> int:
    out = subprocess.run(["ods-hsmutil", "-c", str(inst.conf), "list"], text=True,
                         capture_output=True, check=True,
                         env={"SOFTHSM2_CONF": str(inst.token.softhsm2_conf),
                              "PATH": "/usr/bin:/usr/sbin:/bin"}).stdout
    return int(next(line for line in out.splitlines() if "keys found" in line).split()[0])


def kasp_locators(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT locator FROM hsmKey")}


@pytest.fixture
def ods13(tmp_path: Path) -> Iterator[tuple[OdsInstallation, EnforcerDaemon]]:
    with running_installation(tmp_path / "ods", ZONES13) as pair:
        yield pair


@pytest.fixture
def ods1(tmp_path: Path) -> Iterator[tuple[OdsInstallation, EnforcerDaemon]]:
    with running_installation(tmp_path / "ods", ONE_ZONE) as pair:
        yield pair


def test_the_tools_are_installed() -> None:
    missing = [t for t in TOOLS if shutil.which(t, path="/usr/bin:/usr/sbin:/bin") is None]
    assert not missing, f"run dev/setup.sh: missing {missing}"


def test_private_installation_validates_against_the_schemas(tmp_path: Path) -> None:
    from signer_shim.opendnssec.ods_setup import create_installation
    from tests.ods_helpers import EC_POLICIES

    inst = create_installation(tmp_path / "ods", EC_POLICIES, ZONES13)
    assert validate_xml(inst) == []
    assert load_ods_config(inst.config_path) == inst.config
    assert inst.conf.stat().st_mode & 0o777 == 0o600  # it holds the PIN


def test_p14m_generation_matches_the_enforcer_and_hsmutil(ods13) -> None:
    inst, daemon = ods13
    signer = OdsSigner.from_file(inst.config_path)
    from tests.ods_helpers import EC_POLICIES

    assert signer.inventory().keys == ()
    op = signer.plan_generate(EC_POLICIES, "P14M")
    # P14M = 434 days: KSK ceil(434/365) = 2, ZSK ceil(434/93) = 5; OpenDNSSEC 2.1.12 does not
    # multiply by the 13 zones (measured), and the plan shows both figures.
    assert [(b["role"], b["zones"], b["unused"], b["count"]) for b in op["batches"]] == [
        ("KSK", 13, 0, 2), ("ZSK", 13, 0, 5)]
    seen: list[tuple[int, int, str]] = []
    result = signer.execute(op, [], progress=lambda d, t, w: seen.append((d, t, w)))
    assert result["added"] == 7 and result["before"] == 0 and result["after"] == 7
    assert result["removed"] == 0
    assert hsmutil_count(inst) == 7 == len(signer.inventory().keys)
    assert set(result["generated"]) == kasp_locators(inst.database)
    assert seen[-1] == (7, 7, "generated 7 of 7 keys")
    assert {k.type for k in signer.inventory().keys} == {"ECDSA/P-256"}
    # the rendering mimics ods-hsmutil's own layout
    assert signer.inventory().render().splitlines()[1] == "7 keys found."
    # finished: the recorded result, nothing scheduled again
    assert signer.execute(op, []) == result
    assert hsmutil_count(inst) == 7


def test_generate_retry_after_a_crash_does_not_schedule_again(ods1) -> None:
    inst, daemon = ods1
    from tests.ods_helpers import EC_POLICIES

    signer = OdsSigner.from_file(inst.config_path)
    op = signer.plan_generate(EC_POLICIES, "P14M")
    assert sum(b["count"] for b in op["batches"]) == 7

    def crash(done: int, total: int, what: str) -> None:
        raise KeyboardInterrupt("power cut")  # as if the process died after scheduling

    with pytest.raises(BaseException, match="power cut"):
        signer.execute(op, [], progress=crash)
    # the enforcer finishes on its own meanwhile; the zone takes keys from the pool
    daemon.command("flush")
    wait_until_idle(daemon)
    again = OdsSigner.from_file(inst.config_path)
    result = again.execute(op, [])
    assert result["added"] == 7 and hsmutil_count(inst) == 7
    events = [e["event"] for e in again._journal.entries()]
    assert events.count("scheduled") == 1
    log = (inst.directory / "enforcerd.log").read_text()
    assert log.count("need to be created") == 2  # one KSK and one ZSK batch, once


def test_stale_generation_plan_is_refused(ods1) -> None:
    inst, _daemon = ods1
    from tests.ods_helpers import EC_POLICIES

    signer = OdsSigner.from_file(inst.config_path)
    op = signer.plan_generate(EC_POLICIES, "P14M")
    op["batches"][0]["count"] += 1
    with pytest.raises(SignerError, match="changed since planning"):
        signer.execute(op, [])
    assert hsmutil_count(inst) == 0


def test_plan_refuses_policy_keys_the_enforcer_does_not_have(ods1) -> None:
    inst, _daemon = ods1
    from tests.ods_helpers import EC_POLICIES

    signer = OdsSigner.from_file(inst.config_path)
    with pytest.raises(SignerError, match="does not declare"):
        signer.plan_generate(EC_POLICIES[:1], "P14M")
    wrong = [EC_POLICIES[0], EC_POLICIES[1].__class__("default", "ZSK", "RSA/2048",
                                                        EC_POLICIES[1].lifetime_seconds)]
    with pytest.raises(SignerError, match="the enforcer ECDSA/P-256"):
        signer.plan_generate(wrong, "P14M")


def test_a_plan_over_the_cap_is_refused_before_the_enforcer_is_asked(ods1) -> None:
    inst, _daemon = ods1
    from signer_shim.planning import PlanRefused
    from tests.ods_helpers import EC_POLICIES

    signer = OdsSigner.from_file(inst.config_path)
    with pytest.raises(PlanRefused, match="at most 10000"):
        signer.plan_generate(EC_POLICIES, "P2600Y")  # a ZSK every 3 months: 10,400 of them
    assert hsmutil_count(inst) == 0


def test_purge_deletes_exactly_the_dead_keys(ods1) -> None:
    inst, daemon = ods1
    from tests.ods_helpers import EC_POLICIES

    signer = OdsSigner.from_file(inst.config_path)
    signer.execute(signer.plan_generate(EC_POLICIES, "P14M"), [])
    daemon.command("flush")
    wait_until_idle(daemon)
    assert signer.plan_purge()["delete"] == []
    daemon.command("key", "rollover", "--zone", "zone01.example", "--keytype", "ZSK")
    steps = advance_until(daemon, lambda: bool(signer.dead_keys()))
    dead = sorted(loc for _zone, loc in signer.dead_keys())
    assert len(dead) == 1, steps
    before = {k.locator for k in signer.inventory().keys}
    op = signer.plan_purge()
    assert op["delete"] == dead
    result = signer.execute(op, [])
    after = {k.locator for k in signer.inventory().keys}
    assert before - after == set(dead) and after <= before
    assert result == {"deleted": dead, "before": 7, "after": 6}
    assert hsmutil_count(inst) == 6
    assert signer.execute(op, []) == result  # finished: recorded result


def test_purge_refuses_keys_the_enforcer_does_not_call_dead(ods1) -> None:
    inst, _daemon = ods1
    from tests.ods_helpers import EC_POLICIES

    signer = OdsSigner.from_file(inst.config_path)
    result = signer.execute(signer.plan_generate(EC_POLICIES, "P14M"), [])
    op = {"op": "purge", "token": signer.fingerprint(), "delete": result["generated"][:1]}
    with pytest.raises(SignerError, match="does not call dead"):
        signer.execute(op, [])
    assert hsmutil_count(inst) == 7


def test_backup_holds_the_token_and_the_kasp_database(ods1, tmp_path: Path) -> None:
    inst, _daemon = ods1
    from tests.ods_helpers import EC_POLICIES

    signer = OdsSigner.from_file(inst.config_path)
    signer.execute(signer.plan_generate(EC_POLICIES, "P14M"), [])
    op = signer.plan_backup("2026-11-27")
    result = signer.execute(op, [], secrets={"password": "correct horse"})
    archive = signer.read_output(result["file"])
    members = read_members(archive)
    assert set(members) == {"manifest.json", "token.tar.enc", "keystate.json", "inventory.txt",
                            "kasp.db", "keys.json"}
    copy = tmp_path / "copy.db"
    copy.write_bytes(members["kasp.db"])
    assert kasp_locators(copy) == {k.locator for k in signer.inventory().keys}
    assert members["inventory.txt"].decode() == signer.inventory().render()
    out = inst.config.outputs_dir / result["file"]
    restored = restore_backup(out, "correct horse", tmp_path / "restore")
    assert restored.extra["kasp.db"] == members["kasp.db"]
    assert sorted(p.name for p in restored.tokendir.iterdir()) == sorted(
        p.name for p in inst.token.tokendir.iterdir())
    assert signer.execute(op, [], secrets={"password": "correct horse"}) == result


def test_restore_drill_lists_the_restored_token_with_ods_hsmutil(ods1) -> None:
    """A fresh backup restores every key, the enforcer's database included; a key made after
    the backup is named as missing, and the drill does not match."""
    inst, _daemon = ods1
    from tests.ods_helpers import EC_POLICIES

    signer = OdsSigner.from_file(inst.config_path)
    signer.execute(signer.plan_generate(EC_POLICIES, "P14M"), [])
    first = signer.execute(signer.plan_backup("2026-11-27"), [],
                           secrets={"password": "correct horse"})
    steps: list[str] = []
    drill = signer.restore_drill(first["file"], "correct horse",
                                 progress=lambda done, total, what: steps.append(what))
    live = len(signer.inventory().keys)
    assert (drill["match"], drill["missing"], drill["extra"]) == (True, [], [])
    assert drill["restored"] == drill["live"] == drill["kasp_keys"] == live > 0
    assert drill["fingerprint_match"] is True and drill["kasp_missing"] == []
    assert steps[-1] == f"restore drill: {live} of {live} keys restored"

    signer.execute(signer.plan_generate(EC_POLICIES, "P20M"), [])  # more keys, after the backup
    later = {k.locator for k in signer.inventory().keys}
    drill = signer.restore_drill(first["file"], "correct horse")
    assert drill["match"] is False and drill["extra"] == []
    assert drill["missing"] and set(drill["missing"]) <= later
    assert drill["restored"] == live < drill["live"]
    with pytest.raises(SignerError, match="restore drill: wrong backup password"):
        signer.restore_drill(first["file"], "wrong horse")


def test_restore_drill_names_keys_the_backups_kasp_database_lacks_on_the_token() -> None:
    from ceremony.machine.machine import drill_difference

    said = drill_difference({"match": False, "missing": [], "extra": [],
                             "kasp_missing": ["ab" * 16], "fingerprint_match": True})
    assert said == f"the backup's KASP database names 1 key(s) its token lacks: {'ab' * 16}"


def test_info_and_fingerprint(ods1) -> None:
    inst, _daemon = ods1
    signer = OdsSigner.from_file(inst.config_path)
    info = signer.info()
    assert info["backend"] == "opendnssec" and info["repository"] == "SoftHSM"
    fp = signer.fingerprint()
    assert len(fp) == 49 and fp == OdsSigner.from_file(inst.config_path).fingerprint()


def test_open_signer_picks_the_backend(tmp_path: Path, softhsm_token: SoftHSMToken) -> None:
    from signer_shim.opendnssec.ods_setup import create_installation
    from tests.ods_helpers import EC_POLICIES

    inst = create_installation(tmp_path / "ods", EC_POLICIES, ONE_ZONE)
    assert isinstance(open_signer(inst.config_path), OdsSigner)
    t = softhsm_token
    cfg = SignerConfig(name="s", role="standby", module=t.module, softhsm2_conf=t.softhsm2_conf,
                       token_label=t.label, user_pin=t.user_pin, state_dir=tmp_path / "st",
                       host_key_path=tmp_path / "st" / "key")
    local = open_signer(cfg.save(tmp_path / "pkcs11.toml"))
    assert isinstance(local, Pkcs11Signer)
    local.close()
    bad = tmp_path / "bad.toml"
    bad.write_text(inst.config_path.read_text().replace('"opendnssec"', '"hsm9000"', 1))
    with pytest.raises(ConfigError, match="hsm9000"):
        open_signer(bad)


def test_config_is_strict(tmp_path: Path) -> None:
    from signer_shim.opendnssec.ods_setup import create_installation
    from tests.ods_helpers import EC_POLICIES

    inst = create_installation(tmp_path / "ods", EC_POLICIES, ONE_ZONE)
    text = inst.config_path.read_text()
    cases = {
        text + 'color = "blue"\n': "unknown key opendnssec.color",
        text.replace('timeout = "PT2M"', 'timeout = "soon"'): "opendnssec.timeout",
        text.replace("conf = ", "#conf = ", 1): "opendnssec.conf is required",
    }
    for body, message in cases.items():
        p = tmp_path / "c.toml"
        p.write_text(body)
        with pytest.raises(ConfigError, match=message):
            load_ods_config(p)
