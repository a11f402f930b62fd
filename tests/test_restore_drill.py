"""The restore drill: a backup restored into a scratch token must hold exactly the HSM's keys.
Real SoftHSM2 tokens; the failing case is a backup taken before the HSM got one more key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceremony.machine import decisions as d
from ceremony.machine.machine import drill_difference
from signer_shim.drill import compare
from signer_shim.interface import Inventory, KeyInfo, PolicyKeys, SignerError
from signer_shim.pkcs11.signer import Pkcs11Signer
from staging.fixture import seed_rehearsal_token
from tests.machine_helpers import drive, seed_script, send, start

PASSWORD = "drill password for the tests"
KEYS = [PolicyKeys("default", "KSK", "RSA/2048", 365 * 86400),
        PolicyKeys("default", "ZSK", "RSA/2048", 90 * 86400)]


def _backup(signer: Pkcs11Signer, date: str) -> str:
    op = signer.plan_backup(date)
    result = signer.execute(op, [], secrets={"password": PASSWORD})
    return str(result["file"])


@pytest.fixture
def token(tmp_path: Path):
    seeded = seed_rehearsal_token(tmp_path / "signer", KEYS, shape="small", name="standby",
                                  role="standby")
    with Pkcs11Signer(seeded.config) as s:
        yield s


def test_a_fresh_backup_restores_every_key(token: Pkcs11Signer) -> None:
    name = _backup(token, "2026-11-27")
    r = token.restore_drill(name, PASSWORD)
    n = len(token.inventory().keys)
    assert r == {"file": name, "match": True, "live": n, "restored": n, "missing": [],
                 "extra": [], "fingerprint_match": True}
    assert not list(token.config.state_dir.glob("restore-drill-*"))  # the scratch token is gone


def test_a_backup_missing_one_key_is_caught(token: Pkcs11Signer) -> None:
    name = _backup(token, "2026-11-27")
    before = {k.locator for k in token.inventory().keys}
    op = token.plan_generate(KEYS[1:], "P3M")  # the HSM gets a key after the backup
    token.execute(op, [])
    new = sorted({k.locator for k in token.inventory().keys} - before)
    assert new
    r = token.restore_drill(name, PASSWORD)
    assert r["match"] is False and r["missing"] == new and r["extra"] == []
    assert f"the backup lacks {len(new)} key(s) the HSM holds: {new[0]}" in drill_difference(r)


def test_a_wrong_password_or_a_missing_backup_is_an_error(token: Pkcs11Signer) -> None:
    name = _backup(token, "2026-11-27")
    with pytest.raises(SignerError, match="wrong backup password"):
        token.restore_drill(name, "not it")
    with pytest.raises(SignerError, match="no output named"):
        token.restore_drill("key-backup-1999-01-01.tar.gz", PASSWORD)


def test_compare_names_missing_and_extra_keys_and_another_token() -> None:
    live = Inventory("r", (KeyInfo("a", "RSA/2048"), KeyInfo("b", "RSA/2048")))
    restored = Inventory("r", (KeyInfo("a", "RSA/2048"), KeyInfo("c", "RSA/2048")))
    r = compare(live, restored, "fp1", "fp2")
    assert (r["match"], r["missing"], r["extra"], r["fingerprint_match"]) == \
        (False, ["b"], ["c"], False)
    assert compare(live, live, "fp", "fp")["match"] is True


def test_the_machine_stops_the_ceremony_on_a_drill_that_does_not_match() -> None:
    from ceremony.machine import events as ev

    m, w = start(seed_script())
    drive(m, w, before=lambda x: isinstance(x, d.Perform) and "secrets" in x.params)
    want = m.wants(now=w.now)[0]
    assert isinstance(want, d.Perform) and want.params["secrets"] == ["device-backup"]
    assert want.params["backup"]["file"]
    drill = {"match": False, "live": 200, "restored": 199, "missing": ["k-1"], "extra": [],
             "fingerprint_match": True}
    send(m, w, ev.Performed(at=w.at(), step=want.step, result={"ok": True, "drill": drill}))
    assert m.status == "exception"
    assert m.exception is not None
    assert "restore drill: the backup lacks 1 key(s) the HSM holds: k-1" in \
        m.exception["reason"]
