"""hsm.restore on the OpenDNSSEC backend, with Debian's real enforcer and SoftHSM2: a primary
installation generates keys (P14M, one zone, keys handed to the zone by `flush`) and backs up;
a second, fresh installation (its own token with the primary's label and PINs, its own enforcer
daemon) is the standby the backup is restored onto. Counted with `ods-hsmutil` and the enforcer's
own `key list`, run here, not through keyrite's parsers. Skipped where OpenDNSSEC is not
installed."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coordinator.ceremony_world import hand_over
from signer_shim.backup import build_archive, read_members
from signer_shim.interface import SignerError
from signer_shim.opendnssec.ods_daemon import accepts, stop_enforcer
from signer_shim.opendnssec.ods_setup import EnforcerDaemon, OdsInstallation, create_installation
from signer_shim.opendnssec.signer import OdsSigner
from tests.ods_helpers import EC_POLICIES, running_installation, wait_until_idle

pytestmark = pytest.mark.skipif(
    any(shutil.which(t, path="/usr/bin:/usr/sbin:/bin") is None
        for t in ("ods-enforcerd", "ods-enforcer", "ods-hsmutil", "softhsm2-util")),
    reason="OpenDNSSEC (ods-enforcer, ods-hsmutil) or SoftHSM2 is not installed")

PASSWORD = "device backup password for the OpenDNSSEC restore tests"
ZONES = {"default": ("zone01.example",)}


def hsmutil_ids(inst: OdsInstallation) -> list[tuple[str, str]]:
    """(ID, type) of each key `ods-hsmutil list` shows for the installation's token."""
    out = subprocess.run(["ods-hsmutil", "-c", str(inst.conf), "list"], text=True,
                         capture_output=True, check=True, timeout=60,
                         env={"SOFTHSM2_CONF": str(inst.token.softhsm2_conf),
                              "PATH": "/usr/bin:/usr/sbin:/bin"}).stdout
    rows = [line.split() for line in out.splitlines()]
    return sorted((r[1], r[2]) for r in rows if len(r) == 3 and len(r[1]) == 32)


def enforcer_list(inst: OdsInstallation) -> set[tuple[str, str, str]]:
    """(zone, role, CKA_ID) of each key in the enforcer's own `key list`."""
    out = subprocess.run(["ods-enforcer", "-s", str(inst.socket), "key", "list", "--all",
                          "--verbose", "--parsable"], text=True, capture_output=True,
                         check=True, timeout=60).stdout
    rows = [line.split(";") for line in out.splitlines()]
    return {(r[0], r[1], r[6]) for r in rows if len(r) == 9}


@dataclass(frozen=True)
class Primary:
    inst: OdsInstallation
    name: str
    archive: bytes
    ids: list[tuple[str, str]]
    enforcer: set[tuple[str, str, str]]
    fingerprint: str
    listing: list[dict[str, Any]]


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Primary]:
    """Generated, handed to the zone, backed up; its daemon runs until the module ends."""
    with running_installation(tmp_path_factory.mktemp("primary") / "ods", ZONES) as (inst, d):
        s = OdsSigner.from_file(inst.config_path)
        s.execute(s.plan_generate(EC_POLICIES, "P14M"), [])
        d.command("flush")
        wait_until_idle(d)
        result = s.execute(s.plan_backup("2026-12-01"), [], secrets={"password": PASSWORD})
        yield Primary(inst, result["file"], s.read_output(result["file"]), hsmutil_ids(inst),
                      enforcer_list(inst), s.fingerprint(), s._key_listing())


@dataclass
class Standby:
    inst: OdsInstallation
    daemon: EnforcerDaemon
    signer: OdsSigner

    def plan(self, name: str, data: bytes) -> dict[str, Any]:
        return self.signer.plan_restore(name, hand_over(self.signer, name, data))


@pytest.fixture
def standby(primary: Primary, tmp_path: Path) -> Iterator[Standby]:
    """A fresh installation: same policies and zone, a token with the primary's label and PINs
    and no keys. Its daemon is stopped at the end even if a restore restarted it."""
    t = primary.inst.token
    inst = create_installation(tmp_path / "standby", EC_POLICIES, ZONES, name="standby-2",
                               user_pin=t.user_pin, so_pin=t.so_pin)
    daemon = EnforcerDaemon(inst)
    daemon.start()
    try:
        daemon.bootstrap()
        yield Standby(inst, daemon, OdsSigner.from_file(inst.config_path))
    finally:
        daemon.stop()


def test_the_backup_lists_every_key_with_its_public_key_digest(primary: Primary) -> None:
    members = read_members(primary.archive)
    assert json.loads(members["keys.json"]) == primary.listing
    ours = {"ECDSA/P-256": "ECDSA/256"}  # ods-hsmutil's name for it
    assert [(k["locator"], ours[k["type"]]) for k in primary.listing] == primary.ids
    assert len(primary.ids) == 7 and len(primary.enforcer) == 2  # a KSK and a ZSK on the zone


def test_a_backup_restores_onto_a_fresh_standby_with_the_enforcers_database(
        primary: Primary, standby: Standby) -> None:
    s, inst = standby.signer, standby.inst
    assert hsmutil_ids(inst) == [] and enforcer_list(inst) == set()
    op = standby.plan(primary.name, primary.archive)
    # the plan: every key of the backup with its public key's digest, and the KASP database
    assert op["keys"] == primary.listing
    assert all(len(k["public_key_sha256"]) == 64 for k in op["keys"])
    assert op["backup_token"] == primary.fingerprint != op["token"] == s.fingerprint()
    kasp = read_members(primary.archive)["kasp.db"]
    assert op["kasp_db"] == {"sha256": hashlib.sha256(kasp).hexdigest(), "keys": 7, "zones": 1,
                             "policies": ["default"]}

    db_before = inst.database.read_bytes()
    pid_before = standby.daemon.proc.pid if standby.daemon.proc else None
    with pytest.raises(SignerError, match="wrong backup password.*nothing was restored"):
        s.execute(op, [], secrets={"password": "not the password"})
    assert hsmutil_ids(inst) == [] and enforcer_list(inst) == set()
    assert inst.database.read_bytes() == db_before
    assert standby.daemon.proc is not None and standby.daemon.proc.pid == pid_before
    assert standby.daemon.proc.poll() is None  # the enforcer was not stopped
    assert not list(s.config.state_dir.glob("restore-*"))

    seen: list[str] = []
    result = s.execute(op, [], lambda d, t, w: seen.append(w), secrets={"password": PASSWORD})
    assert (result["restored"], result["before"], result["after"], result["added"],
            result["removed"], result["kasp_keys"], result["enforcer_keys"]) == (7, 0, 7, 7, 0,
                                                                                7, 2)
    assert result["fingerprint"] == primary.fingerprint == s.fingerprint()
    assert seen[-1] == "restore: 7 keys restored"
    # counted with the tools themselves: the primary's keys, in the token and the enforcer
    assert hsmutil_ids(inst) == primary.ids
    assert enforcer_list(inst) == primary.enforcer
    assert s._key_listing() == primary.listing
    assert not list(s.config.state_dir.glob("restore-*"))

    # executed again: the recorded result, nothing done (the enforcer not restarted)
    pid = (inst.directory / "enforcerd.pid").read_text().split()[0]
    db_after = inst.database.read_bytes()
    assert s.execute(op, [], secrets={"password": PASSWORD}) == result
    assert (inst.directory / "enforcerd.pid").read_text().split()[0] == pid
    assert hsmutil_ids(inst) == primary.ids and inst.database.read_bytes() == db_after
    events = [e["event"] for e in s._journal.entries()]
    assert events.count("restored") == 1 and events.count("finished") == 1


def test_a_restore_that_dies_in_the_swap_is_finished_by_executing_again(
        primary: Primary, standby: Standby, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the enforcer stopped and the old token went aside, before the backup's
    was in place: the rerun (a new signer, as after a restart) finishes it."""
    s, inst = standby.signer, standby.inst
    op = standby.plan(primary.name, primary.archive)
    real = shutil.copytree
    calls: list[object] = []

    def dies_once(*a: Any, **k: Any) -> Any:
        calls.append(a)
        if len(calls) == 1:
            raise OSError("killed")
        return real(*a, **k)

    monkeypatch.setattr(shutil, "copytree", dies_once)
    with pytest.raises(SignerError, match="killed"):
        s.execute(op, [], secrets={"password": PASSWORD})
    assert not accepts(inst.socket)  # the enforcer is down, the token directory empty
    assert standby.daemon.proc is not None and standby.daemon.proc.poll() is not None
    assert not any(p.is_dir() and not p.name.startswith(".")
                   for p in inst.token.tokendir.iterdir())
    again = OdsSigner.from_file(inst.config_path)
    result = again.execute(op, [], secrets={"password": PASSWORD})
    assert (result["added"], result["after"], result["kasp_keys"]) == (7, 7, 7)
    assert hsmutil_ids(inst) == primary.ids and enforcer_list(inst) == primary.enforcer


def test_a_restore_that_dies_after_it_is_in_place_is_only_checked_again(
        primary: Primary, standby: Standby, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed in the final checks (token and database in place, `restored` journaled), and the
    enforcer gone meanwhile: executing again starts it and checks, without restoring twice."""
    s, inst = standby.signer, standby.inst
    op = standby.plan(primary.name, primary.archive)

    def killed(self: OdsSigner) -> Any:
        raise OSError("killed")

    with monkeypatch.context() as m:
        m.setattr(OdsSigner, "enforcer_keys", killed)
        with pytest.raises(SignerError, match="killed"):
            s.execute(op, [], secrets={"password": PASSWORD})
    stop_enforcer(inst.directory / "enforcerd.pid", inst.socket)
    assert not accepts(inst.socket) and hsmutil_ids(inst) == primary.ids
    result = OdsSigner.from_file(inst.config_path).execute(op, [], secrets={"password": PASSWORD})
    assert (result["added"], result["enforcer_keys"]) == (7, 2)
    assert accepts(inst.socket) and enforcer_list(inst) == primary.enforcer
    events = [e["event"] for e in s._journal.entries()]
    assert events.count("restored") == 1 and events.count("finished") == 1


def test_a_standby_holding_a_key_the_backup_lacks_is_refused(
        primary: Primary, standby: Standby) -> None:
    s, inst = standby.signer, standby.inst
    op = standby.plan(primary.name, primary.archive)  # planned while the token is fresh
    s.execute(s.plan_generate(EC_POLICIES, "P1Y"), [])  # then a key the backup lacks
    extra = hsmutil_ids(inst)
    assert extra and not set(extra) & set(primary.ids)
    with pytest.raises(SignerError, match="key\\(s\\) the backup does not"):
        standby.plan(primary.name, primary.archive)
    db = inst.database.read_bytes()
    with pytest.raises(SignerError, match="key\\(s\\) the backup does not"):
        s.execute(op, [], secrets={"password": PASSWORD})
    assert hsmutil_ids(inst) == extra and inst.database.read_bytes() == db


def test_bad_inputs_are_refused_before_anything_changes(
        primary: Primary, standby: Standby) -> None:
    s, inst = standby.signer, standby.inst
    sha = hand_over(s, primary.name, primary.archive)
    with pytest.raises(SignerError, match="not the file planned"):
        s.plan_restore(primary.name, "00" * 32)
    op = s.plan_restore(primary.name, sha)
    with pytest.raises(SignerError, match="needs the device-backup password"):
        s.execute(op, [])
    for field, value, words in (("kasp_db", None, "kasp_db must have keys"),
                                ("sha256", "00" * 32, "not the file planned"),
                                ("token", primary.fingerprint, "this token is")):
        with pytest.raises(SignerError, match=words):
            s.execute({**op, field: value}, [], secrets={"password": PASSWORD})
    # a backup without the enforcer's database (as the PKCS#11 backend writes them)
    name = "key-backup-2026-12-02.tar.gz"
    bare = build_archive(name=name, operation="00" * 32, token=s.fingerprint(),
                         repository=s.ods.repository, tokendir=inst.token.tokendir,
                         keystate=b"{}", inventory=s.inventory().render(), password=PASSWORD)
    with pytest.raises(SignerError, match="holds no KASP database"):
        standby.plan(name, bare)
    assert hsmutil_ids(inst) == [] and enforcer_list(inst) == set()
    assert standby.daemon.proc is not None and standby.daemon.proc.poll() is None


def test_over_the_shim_a_restore_needs_its_quorum_of_two_kso(
        primary: Primary, standby: Standby, tmp_path: Path) -> None:
    """`keyrite shim` over this backend: the backup handed over in chunks, planned, refused
    with one KSO (nothing changed), then restored under two."""
    from dataclasses import replace

    from coordinator.shim_client import QuorumRefused, ShimClient
    from signer_shim.authority import Rule
    from staging.standup import ShimProcess
    from tests.shim_helpers import approve, cast_authority
    from tests.test_shim_opendnssec import write_ods_shim_files

    step = 60
    files = write_ods_shim_files(tmp_path / "shim", standby.inst)
    base = cast_authority()
    authority = replace(base, rules=(*base.rules, Rule("restore", step, (("KSO", 2),))))
    (tmp_path / "shim" / "authority.toml").write_text(authority.to_toml())
    proc = ShimProcess(files.config)
    try:
        with ShimClient("127.0.0.1", proc.port, client_key=files.client_key,
                        host_key_pin=files.host_key_pin, timeout=120) as c:
            op = c.plan_restore(primary.name, hand_over(c, primary.name, primary.archive))
            assert op["keys"] == primary.listing and op["kasp_db"]["keys"] == 7
            with pytest.raises(QuorumRefused, match="needs 2 distinct KSO"):
                c.execute(op, approve(op, "kso1", step=step), secrets={"password": PASSWORD})
            assert hsmutil_ids(standby.inst) == [] and enforcer_list(standby.inst) == set()
            result = c.execute(op, approve(op, "kso1", "kso2", step=step),
                               secrets={"password": PASSWORD})
            assert (result["added"], result["kasp_keys"]) == (7, 7)
            assert c.fingerprint() == primary.fingerprint
    finally:
        proc.stop()
    assert hsmutil_ids(standby.inst) == primary.ids
    assert enforcer_list(standby.inst) == primary.enforcer


def test_the_enforcer_starts_again_over_a_pid_file_its_killed_daemon_left(
        tmp_path: Path) -> None:
    """A killed daemon leaves its pid file, and where nobody reaps it (a container's init) its
    process lingers as a zombie: ods-enforcerd refuses to start over a pid file whose process
    exists ("Unable to write process id to pidfile"). The restore's start removes a pid file
    that names no running enforcer first. Here the file names a live process that is not an
    enforcer: this test's own."""
    import os

    from signer_shim.opendnssec.ods_daemon import start_enforcer

    with running_installation(tmp_path / "ods", ZONES) as (inst, daemon):
        pidfile = inst.directory / "enforcerd.pid"
        stop_enforcer(pidfile, inst.socket)
        pidfile.write_text(f"{os.getpid()}\n")
        start_enforcer("ods-enforcerd", inst.conf, inst.token.softhsm2_conf, inst.socket,
                       pidfile=pidfile)
        assert accepts(inst.socket)
        assert pidfile.read_text().split()[0] != str(os.getpid())
