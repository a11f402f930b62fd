"""The signer against a real SoftHSM2 token: worker isolation, fingerprint, inventory, keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from signer_shim.config import SignerConfig
from signer_shim.interface import SignerError
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.softhsm import SoftHSMToken, create_token, read_tokendir
from signer_shim.pkcs11.workerclient import WorkerClient
from signer_shim.tokenid import is_fingerprint
from staging.fixture import RehearsalToken


def config_for(token: SoftHSMToken, tmp_path: Path, name: str = "s") -> SignerConfig:
    return SignerConfig(name=name, role="standby", module=token.module,
                        softhsm2_conf=token.softhsm2_conf, token_label=token.label,
                        user_pin=token.user_pin, state_dir=tmp_path / f"state-{name}",
                        host_key_path=tmp_path / "hostkey")


def test_token_is_private_and_our_environment_untouched(softhsm_token: SoftHSMToken) -> None:
    assert "SOFTHSM2_CONF" not in os.environ
    assert read_tokendir(softhsm_token.softhsm2_conf) == softhsm_token.tokendir
    conf = softhsm_token.softhsm2_conf.read_text()
    assert "objectstore.backend = file" in conf and "log.level = ERROR" in conf
    assert len(list(softhsm_token.tokendir.iterdir())) == 1  # one initialised token
    assert softhsm_token.user_pin not in repr(softhsm_token)
    assert softhsm_token.so_pin not in repr(softhsm_token)


def test_fingerprint_is_stable_and_names_the_token(softhsm_token: SoftHSMToken,
                                                   tmp_path: Path) -> None:
    with Pkcs11Signer(config_for(softhsm_token, tmp_path, "a")) as a:
        fp = a.fingerprint()
        assert is_fingerprint(fp)
        assert a.fingerprint() == fp
    with Pkcs11Signer(config_for(softhsm_token, tmp_path, "b")) as b:
        assert b.fingerprint() == fp  # another process, same token
    other = create_token(tmp_path / "other", softhsm_token.label)  # same label, new token
    with Pkcs11Signer(config_for(other, tmp_path, "c")) as c:
        assert c.fingerprint() != fp


def test_wrong_pin_is_refused(softhsm_token: SoftHSMToken) -> None:
    with pytest.raises(SignerError, match="PinIncorrect"):
        WorkerClient(softhsm_token.module, softhsm_token.softhsm2_conf, softhsm_token.label,
                     "not-the-pin")


def test_worker_reports_errors_and_lives_on(softhsm_token: SoftHSMToken) -> None:
    t = softhsm_token
    w = WorkerClient(t.module, t.softhsm2_conf, t.label, t.user_pin)
    try:
        with pytest.raises(SignerError, match="unknown method"):
            w.call("format_token")
        with pytest.raises(SignerError, match="unknown key algorithm"):
            w.call("generate", {"keys": [{"locator": "00" * 16, "algorithm": "DSA/1024"}]})
        assert w.call("ping") == "pong"
        assert w.call("list_objects") == []
    finally:
        w.close()
    assert not w.alive


def test_worker_refuses_an_id_already_there_listed_or_not(softhsm_token: SoftHSMToken) -> None:
    """The duplicate-ID refusal holds whether the worker knows the IDs from its last listing
    and its own writes since (`_listed_ids`) or passes over the token for them; a listing
    afterwards still reads every object (a known handle's type is not read again)."""
    t = softhsm_token
    ec, rsa = "ECDSA/P-256", "RSA/2048"
    a, b, c = "a1" * 16, "b2" * 16, "c3" * 16
    w = WorkerClient(t.module, t.softhsm2_conf, t.label, t.user_pin)
    try:
        w.call("generate", {"keys": [{"locator": a, "algorithm": ec}]})  # not listed: a pass
        with pytest.raises(SignerError, match=f"ID {a} already exist"):
            w.call("generate", {"keys": [{"locator": a, "algorithm": ec}]})
        w.call("list_objects")
        w.call("generate", {"keys": [{"locator": b, "algorithm": ec}]})  # tracked: b added
        for loc in (a, b):
            with pytest.raises(SignerError, match=f"ID {loc} already exist"):
                w.call("generate", {"keys": [{"locator": c, "algorithm": ec},
                                             {"locator": loc, "algorithm": ec}]})
        # tracked: a gone, so allowed again; what was not there is not said destroyed
        assert w.call("destroy", {"locators": [a, c]}) == {"destroyed": [a]}
        w.call("generate", {"keys": [{"locator": a, "algorithm": rsa}]})
        objects = sorted((o["class"], o["id"], o["type"]) for o in w.call("list_objects"))
        assert objects == sorted((cls, loc, alg) for loc, alg in ((a, rsa), (b, ec))
                                 for cls in ("private", "public"))
        keys = w.call("public_keys", {"locators": [a, b]})  # through the listed handles
        assert set(keys) == {a, b}
        # half a pair: untracked
        assert w.call("destroy", {"locators": [b], "classes": ["public"]}) == {"destroyed": [b]}
        with pytest.raises(SignerError, match=f"ID {b} already exist"):
            w.call("generate", {"keys": [{"locator": b, "algorithm": ec}]})
    finally:
        w.close()


def test_inventory_lists_every_pair_in_ods_hsmutil_layout(small_rehearsal: RehearsalToken) -> None:
    with Pkcs11Signer(small_rehearsal.config) as s:
        inv = s.inventory()
        lines = inv.render().splitlines()
    assert len(inv.keys) == small_rehearsal.figures.keys == 6
    assert lines[0] == "Listing keys in repository: rehearsal"
    assert lines[1] == "6 keys found."
    assert lines[3].split() == ["Repository", "ID", "Type"]
    assert [k.locator for k in inv.keys] == sorted(k.locator for k in inv.keys)
    for k, line in zip(inv.keys, lines[5:], strict=True):
        assert line == f"rehearsal       {k.locator}  ECDSA/P-256"
        assert len(k.locator) == 32 and int(k.locator, 16) >= 0


def test_info_reports_name_role_and_host_key(small_rehearsal: RehearsalToken) -> None:
    with Pkcs11Signer(small_rehearsal.config) as s:
        info = s.info()
    assert info["name"] == "signer" and info["role"] == "standby"
    assert info["host_key"].startswith("SHA256:") and not info["host_key"].endswith("=")
    assert info["repository"] == "rehearsal" and info["backend"] == "pkcs11"
    assert small_rehearsal.config.user_pin not in repr(s)
    assert small_rehearsal.config.user_pin not in repr(small_rehearsal)


def test_fixture_config_file_loads_and_reaches_the_token(small_rehearsal: RehearsalToken) -> None:
    with Pkcs11Signer.from_file(small_rehearsal.config_path) as s:
        assert s.config == small_rehearsal.config
        assert len(s.inventory().keys) == 6


def test_read_output_refuses_paths(small_rehearsal: RehearsalToken) -> None:
    with Pkcs11Signer(small_rehearsal.config) as s:
        for name in ("../keystate.json", ".hidden", ""):
            with pytest.raises(SignerError):
                s.read_output(name)
        with pytest.raises(SignerError, match="no output"):
            s.read_output("key-backup-2012-05-01.tar.gz")
