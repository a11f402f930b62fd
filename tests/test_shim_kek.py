"""The backup KEK over the shim, on real SoftHSM2 tokens through a real shim over SSH: plan_kek,
a quorum, execute; each KSO opens only its own sealed share (ZeroMQ CURVE pairs); a wrap backup;
a fresh target token restores it from M shares sealed to its share key (the public keys
compared), while M-1 shares, a share of another KEK and a box sealed to another key are refused
with nothing of the archive left on the target; the wrap drill takes sealed shares too. Also:
plan_kek's refusals, a retry's recorded result, a KEK creation that died after the import, and
the protocol's parsing of the new parameters."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import zmq

from ceremony.digests import operation_digest
from coordinator.ceremony_world import hand_over
from coordinator.shim_client import ShimClient
from keyrite import sealing
from signer_shim import protocol, wrap
from signer_shim.authority import Rule
from signer_shim.config import SignerConfig
from signer_shim.hostkey import ensure_host_key
from signer_shim.interface import SignerError
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.softhsm import SoftHSMToken, create_token
from staging.standup import ShimFiles, ShimProcess, client_of, write_shim_files
from tests.shim_helpers import approve, cast_authority
from tests.test_wrap_backup import EC_KEY, RSA_KEY, generate, objects

KEK_STEP, RESTORE_STEP = 20, 60
LABEL = "wrap-kek"
USER_PIN = "user pin of the wrap tests"
DATE = "2026-12-08"
WAIT = 120
SEATS = ("KSO1", "KSO2", "KSO3")


def z85_pair() -> tuple[str, str]:
    public, secret = zmq.curve_keypair()  # the consoles' CURVE pairs
    return public.decode(), secret.decode()


def signer_config(directory: Path, *, method: str = "wrap", so_pin: str | None = None,
                  token: SoftHSMToken | None = None) -> tuple[SoftHSMToken, SignerConfig, Path]:
    """A token (label LABEL, user PIN USER_PIN) and its signer config, saved."""
    token = token or create_token(directory / "hsm", LABEL, user_pin=USER_PIN)
    state = directory / "state"
    state.mkdir(parents=True)
    cfg = SignerConfig(name=directory.name, role="primary", module=token.module,
                       softhsm2_conf=token.softhsm2_conf, token_label=token.label,
                       user_pin=token.user_pin, state_dir=state,
                       host_key_path=ensure_host_key(state / "ssh_host_ed25519_key"),
                       backup_method=method,
                       so_pin=token.so_pin if so_pin is None else so_pin)
    return token, cfg, cfg.save(directory / "signer.toml")


@dataclass
class Served:
    token: SoftHSMToken
    config: SignerConfig
    files: ShimFiles
    proc: ShimProcess

    def client(self) -> ShimClient:
        return client_of(self.files, self.proc, WAIT)


def serve(directory: Path, token: SoftHSMToken, config: SignerConfig, path: Path) -> Served:
    base = cast_authority()
    authority = replace(base, rules=(*base.rules, Rule("kek", KEK_STEP, (("KSO", 2),)),
                                     Rule("restore", RESTORE_STEP, (("KSO", 2),))))
    files = write_shim_files(directory / "shim", path, authority)
    return Served(token, config, files, ShimProcess(files.config))


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Served]:
    token, cfg, path = signer_config(tmp_path / "source")
    with Pkcs11Signer(cfg) as s:  # keys made under the wrap method, before the shim serves
        generate(s, (RSA_KEY, "RSA/2048"), (EC_KEY, "ECDSA/P-256"))
    served = serve(tmp_path / "source", token, cfg, path)
    try:
        yield served
    finally:
        served.proc.stop()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Served]:
    token, cfg, path = signer_config(tmp_path / "target")
    served = serve(tmp_path / "target", token, cfg, path)
    try:
        yield served
    finally:
        served.proc.stop()


def holders() -> tuple[list[dict[str, str]], dict[str, str]]:
    """The KSOs' seats and public keys, and each seat's secret (their consoles')."""
    rows, secrets = [], {}
    for seat in SEATS:
        public, secret = z85_pair()
        rows.append({"seat": seat, "key": public})
        secrets[seat] = secret
    return rows, secrets


def opened(result: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """What each KSO's console shows: its own box opened with its own key."""
    return {b["seat"]: sealing.open_sealed(
        secrets[b["seat"]], b["box"], sealing.share_context(result["kek_id"], b["seat"])).decode()
        for b in result["sealed"]}


def to_signer(share_key: str, kek_id: str, *mnemonics: str) -> list[str]:
    """What the KSOs' consoles send: each typed share sealed to the signer's share key."""
    ctx = sealing.share_context(kek_id, "signer")
    return [sealing.seal(share_key, m.encode(), ctx) for m in mnemonics]


def test_kek_backup_restore_and_drill_with_shares_only_sealed(
        source: Served, target: Served, tmp_path: Path) -> None:
    rows, secrets = holders()
    with source.client() as c:
        op = c.plan_kek(2, rows)
        assert op == {"op": "kek", "token": c.fingerprint(), "threshold": 2, "holders": rows}
        approvals = approve(op, "kso1", "kso2", step=KEK_STEP)
        result = c.execute(op, approvals)
        kid = result["kek_id"]
        assert {k: v for k, v in result.items() if k != "sealed"} == {
            "kek_id": kid, "scheme": "SLIP-39", "threshold": 2, "shares": 3,
            "holders": list(SEATS)}
        assert [b["seat"] for b in result["sealed"]] == list(SEATS)
        # a retry under the same key, and the same operation under a new quorum: the record
        assert c.execute(op, approvals) == result
        assert c.execute(op, approve(op, "kso1", "kso2", step=KEK_STEP)) == result
        with pytest.raises(SignerError, match="already has a backup KEK"):
            c.plan_kek(2, rows)
        shares = opened(result, secrets)
        # each KSO opens only its own box: not another's, nor its own for another seat
        for i, box in enumerate(result["sealed"]):
            for j, seat in enumerate(SEATS):
                if j != i:
                    with pytest.raises(sealing.SealError):
                        sealing.open_sealed(secrets[seat], box["box"],
                                            sealing.share_context(kid, box["seat"]))
                    with pytest.raises(sealing.SealError):
                        sealing.open_sealed(secrets[box["seat"]], box["box"],
                                            sealing.share_context(kid, seat))
        assert len(set(shares.values())) == 3
        assert all(len(m.split()) == 33 for m in shares.values())
        kek = wrap.combine_shares([shares["KSO3"], shares["KSO1"]])
        assert wrap.kek_id_of(kek) == kid
        wrap.wipe(kek)
        # the backup, wrapped under that KEK
        bop = c.plan_backup(DATE)
        backup = c.execute(bop, approve(bop, "kso1", "kso2", "dso1"))
        name, archive = backup["file"], c.read_output(backup["file"])
        assert wrap.read_archive(archive).manifest["kek"]["id"] == kid
        # the wrap drill over SSH, with two shares sealed to the signer's share key
        key = c.share_key()
        assert c.share_key() == key
        drill = c.restore_drill(name, shares=to_signer(key, kid, shares["KSO2"],
                                                       shares["KSO3"]))
        assert drill["match"] is True and drill["method"] == "wrap"
        assert drill["live"] == drill["restored"] == 2
        assert (drill["missing"], drill["extra"], drill["public_keys_differ"]) == ([], [], [])
        with pytest.raises(SignerError, match="needs 2 shares; 1 were given"):
            c.restore_drill(name, shares=to_signer(key, kid, shares["KSO2"]))
    logs = "".join(p.read_text(errors="replace") for p in source.config.state_dir.rglob("*")
                   if p.is_file())  # journals, worker.log, records, outputs
    logs += source.proc.log.read_text()
    for m in shares.values():  # no share, nor a run of its words, on record in the clear
        assert " ".join(m.split()[4:9]) not in logs
    assert source.token.so_pin not in logs
    assert len(list(source.config.state_dir.glob("kek-*.json"))) == 1
    assert oct(os.stat(source.config.state_dir / "share-key.json").st_mode & 0o777) == "0o600"

    with Pkcs11Signer(source.config) as s:
        live = {k["locator"]: k for k in s._key_listing()}

    # -- the restore onto a fresh token ----------------------------------------------------
    other = wrap.split_kek(bytearray(os.urandom(32)), 2, 3)  # another KEK's shares
    stranger, _ = z85_pair()
    with target.client() as t:
        rop = t.plan_restore(name, hand_over(t, name, archive))
        skey = t.share_key()
        assert rop["method"] == "wrap" and rop["share_key"] == skey != key
        assert rop["kek"] == {"id": kid, "threshold": 2, "shares": 3}
        assert [k["locator"] for k in rop["keys"]] == sorted(live)
        assert {k["locator"]: k["public_key_sha256"] for k in rop["keys"]} == {
            loc: k["public_key_sha256"] for loc, k in live.items()}
        quorum = approve(rop, "kso1", "kso2", step=RESTORE_STEP)
        refusals = {
            "needs 2 shares; 1 were given": to_signer(skey, kid, shares["KSO1"]),
            "share 2 does not open": [to_signer(skey, kid, shares["KSO1"])[0],
                                      to_signer(stranger, kid, shares["KSO2"])[0]],
            "share 1 does not open": [sealing.seal(skey, shares["KSO1"].encode(),
                                                   sealing.share_context(kid, "KSO1")),
                                      *to_signer(skey, kid, shares["KSO2"])],
            "do not rebuild a KEK": to_signer(skey, kid, shares["KSO1"], other[1]),
            "not this backup's": to_signer(skey, kid, other[0], other[2]),
        }
        for words, boxes in refusals.items():
            with pytest.raises(SignerError, match=words):
                t.execute(rop, quorum, secrets={"shares": boxes})
            assert objects(target.token) == [], words  # not a key, not the KEK
            assert t.inventory().keys == ()
        with pytest.raises(SignerError, match="KSOs' KEK shares"):
            t.execute(rop, quorum, secrets={"password": "a password is not a share"})
        good = to_signer(skey, kid, shares["KSO3"], shares["KSO1"])
        restored = t.execute(rop, quorum, secrets={"shares": good})
        assert {k: restored[k] for k in ("restored", "before", "after", "added", "removed",
                                         "method", "kek_id", "kek_imported")} == {
            "restored": 2, "before": 0, "after": 2, "added": 2, "removed": 0,
            "method": "wrap", "kek_id": kid, "kek_imported": True}
        assert t.execute(rop, quorum, secrets={"shares": good}) == restored  # the record
        assert sorted(k.locator for k in t.inventory().keys) == sorted(live)
        # the restored token holds the KEK, so it makes the next wrap backup
        nxt = t.plan_backup("2026-12-09")
        assert t.execute(nxt, approve(nxt, "kso1", "kso2", "dso1"))["file"]
    target.proc.stop()
    with Pkcs11Signer(target.config) as s:
        assert {k["locator"]: k for k in s._key_listing()} == live
        assert s.config.keystate_path.exists()
    assert json.loads((target.config.state_dir / "backup-kek.json").read_text())["kek_id"] == kid


def test_plan_kek_is_refused_where_no_kek_can_be_made(tmp_path: Path) -> None:
    rows, _ = holders()
    _, plain, _ = signer_config(tmp_path / "tokendir", method="tokendir")
    with Pkcs11Signer(plain) as s, pytest.raises(SignerError, match="only under the wrap"):
        s.plan_kek(2, rows)
    _, nopin, path = signer_config(tmp_path / "nopin", so_pin="")
    assert "so_pin" not in path.read_text()
    with Pkcs11Signer(nopin) as s, pytest.raises(SignerError, match=r"pkcs11\.so_pin"):
        s.plan_kek(2, rows)
    token, cfg, path = signer_config(tmp_path / "pin")
    assert SignerConfig.load(path).so_pin == token.so_pin
    assert token.so_pin not in repr(cfg)
    with Pkcs11Signer(cfg) as s:
        op = s.plan_kek(2, rows)
    with Pkcs11Signer(replace(cfg, so_pin="")) as s, pytest.raises(SignerError,
                                                                   match=r"pkcs11\.so_pin"):
        s.execute(op, [])


def test_a_kek_creation_that_died_after_the_import_gives_its_recorded_shares(
        tmp_path: Path) -> None:
    rows, secrets = holders()
    _, cfg, _ = signer_config(tmp_path / "s")
    with Pkcs11Signer(cfg) as s:
        op = s.plan_kek(3, rows)
        real = s._record_kek

        def die(*args: Any) -> None:  # the KEK is on the token: the crash comes here
            raise SignerError("killed after the import")

        s._record_kek = die  # type: ignore[method-assign]
        with pytest.raises(SignerError, match="killed"):
            s.execute(op, [])
        s._record_kek = real  # type: ignore[method-assign]
        result = s.execute(op, [])  # resumed: the same KEK and boxes, no second KEK
        assert sorted(opened(result, secrets)) == list(SEATS)
        assert s._kek_id() == result["kek_id"]
        assert s.execute(op, []) == result
        kek = wrap.combine_shares(list(opened(result, secrets).values()))
        assert wrap.kek_id_of(kek) == result["kek_id"]


def test_a_kek_made_without_its_shares_on_record_is_not_replaced_silently(
        tmp_path: Path) -> None:
    rows, _ = holders()
    token, cfg, _ = signer_config(tmp_path / "s")
    with Pkcs11Signer(cfg) as s:
        op = s.plan_kek(2, rows)
        s.create_backup_kek(token.so_pin, 2, 3)  # behind the operation's back
        digest = operation_digest(op)
        s._journal.append(digest, "received", operation=op, approvals=[])
        s._journal.append(digest, "started", before=[])
        with pytest.raises(SignerError, match="a KEK was made but its shares were not recorded"):
            s.execute(op, [])


def test_a_tokendir_signer_refuses_a_wrap_restore_plan(tmp_path: Path) -> None:
    rows, _ = holders()
    _, cfg, _ = signer_config(tmp_path / "src")
    with Pkcs11Signer(cfg) as s:
        generate(s, (EC_KEY, "ECDSA/P-256"))
        s.execute(s.plan_kek(2, rows), [])
        archive = s.read_output(s.execute(s.plan_backup(DATE), [])["file"])
    _, plain, _ = signer_config(tmp_path / "dst", method="tokendir")
    with Pkcs11Signer(plain) as t:
        name = f"key-backup-{DATE}.tar.gz"
        with pytest.raises(SignerError, match="backup.method is \"wrap\""):
            t.plan_restore(name, hand_over(t, name, archive))


# -- the protocol's parsing ---------------------------------------------------------------

def request(method: str, params: dict[str, Any]) -> bytes:
    return protocol.Request("r1", "k1", method, params).to_line()


def refused(method: str, params: dict[str, Any]) -> str:
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.parse_request(request(method, params))
    assert e.value.type == "BadRequest" and e.value.id == "r1"
    return str(e.value)


def test_plan_kek_and_sealed_box_parameters_are_checked_before_the_queue() -> None:
    rows = [{"seat": f"KSO{i}", "key": z85_pair()[0]} for i in range(1, 4)]
    assert protocol.parse_request(request("plan_kek", {"threshold": 2, "holders": rows}))
    assert protocol.parse_request(request("share_key", {}))
    bad_z85 = [{**rows[0], "key": "not a key"}, *rows[1:]]
    low = [{**rows[0], "key": rows[0]["key"][:-1] + "\""}, *rows[1:]]  # '"' is no Z85
    cases = {
        "not a Curve25519 key": {"threshold": 2, "holders": bad_z85},
        "not a Curve25519 key ": {"threshold": 2, "holders": low},
        "named twice": {"threshold": 2, "holders": [rows[0], {**rows[1], "seat": "KSO1"}]},
        "already another seat's": {"threshold": 2, "holders": [rows[0], {**rows[1],
                                                                         "key": rows[0]["key"]}]},
        "threshold \\(4\\) <= holders \\(3\\)": {"threshold": 4, "holders": rows},
        "threshold \\(1\\)": {"threshold": 1, "holders": rows},
        "<= 16": {"threshold": 2, "holders": [{"seat": f"S{i}", "key": z85_pair()[0]}
                                              for i in range(17)]},
        "exactly seat and key": {"threshold": 2, "holders": [{**rows[0], "x": 1}, rows[1]]},
        "printable string": {"threshold": 2, "holders": [{**rows[0], "seat": "x" * 33},
                                                         rows[1]]},
        "printable string ": {"threshold": 2, "holders": [{**rows[0], "seat": "a\nb"},
                                                          rows[1]]},
        "must be a int": {"threshold": "2", "holders": rows},
        "cannot receive": {"threshold": 2, "holders": [{**rows[0], "key": "0" * 40}, rows[1]]},
    }
    for words, params in cases.items():
        assert re.search(words.strip(), refused("plan_kek", params)), words
    box = sealing.seal(rows[0]["key"], b"a share", "ctx")
    name = f"key-backup-{DATE}.tar.gz"
    assert protocol.parse_request(request("restore_drill", {"file": name, "shares": [box]}))
    assert protocol.parse_request(request("restore_drill", {"file": name, "password": "pw"}))
    assert "exactly one" in refused("restore_drill", {"file": name})
    assert "exactly one" in refused("restore_drill", {"file": name, "password": "pw",
                                                      "shares": [box]})
    too_many = [box] * 17
    oversize = "A" * (sealing.MAX_BOX + 4)
    for shares in (too_many, [], [oversize], ["not base64!"], [7], "box"):
        refused("restore_drill", {"file": name, "shares": shares})
        op = {"op": "restore"}
        refused("execute", {"operation": op, "approvals": [], "secrets": {"shares": shares}})
    assert protocol.parse_request(request("execute", {"operation": {}, "approvals": [],
                                                      "secrets": {"shares": [box, box]}}))
    # the message never echoes a box
    assert oversize[:64] not in refused("restore_drill", {"file": name, "shares": [oversize]})


def test_the_shim_answers_bad_kek_params_with_bad_request(source: Served) -> None:
    with source.client() as c:
        for params in ({"threshold": 5, "holders": []},
                       {"threshold": 2, "holders": [{"seat": "A", "key": "x"}] * 2}):
            with pytest.raises(SignerError, match="^BadRequest: plan_kek"):
                c.request("plan_kek", params)
        with pytest.raises(SignerError, match="^BadRequest: params.shares"):
            c.request("restore_drill", {"file": f"key-backup-{DATE}.tar.gz",
                                        "shares": ["A" * (sealing.MAX_BOX + 4)]})
    assert "Traceback" not in source.proc.log.read_text()


def test_the_opendnssec_backend_refuses_the_kek_clearly() -> None:
    from signer_shim.opendnssec.signer import OdsSigner
    ods = object.__new__(OdsSigner)  # the refusals look at nothing of the installation
    for call in (lambda: ods.plan_kek(2, holders()[0]), ods.share_key,
                 lambda: ods.restore_drill(f"key-backup-{DATE}.tar.gz", shares=["AAAA"])):
        with pytest.raises(SignerError, match="CKA_EXTRACTABLE=false"):
            call()


def test_a_wrap_restore_that_died_is_finished_by_executing_again(
        tmp_path: Path) -> None:
    rows, secrets = holders()
    _, cfg, _ = signer_config(tmp_path / "src")
    with Pkcs11Signer(cfg) as s:
        generate(s, (EC_KEY, "ECDSA/P-256"), (RSA_KEY, "RSA/2048"))
        made = s.execute(s.plan_kek(2, rows), [])
        archive = s.read_output(s.execute(s.plan_backup(DATE), [])["file"])
        live = {k["locator"]: k for k in s._key_listing()}
    shares = opened(made, secrets)
    _, tcfg, _ = signer_config(tmp_path / "dst")
    with Pkcs11Signer(tcfg) as t:
        name = f"key-backup-{DATE}.tar.gz"
        op = t.plan_restore(name, hand_over(t, name, archive))
        boxes = to_signer(t.share_key(), made["kek_id"], shares["KSO2"], shares["KSO3"])
        other = wrap.split_kek(bytearray(os.urandom(32)), 2, 3)
        with pytest.raises(SignerError, match="not this backup's"):  # started, nothing made
            t.execute(op, [], secrets={"shares": to_signer(t.share_key(), made["kek_id"],
                                                            other[0], other[1])})
        generate(t, (EC_KEY, "ECDSA/P-256"))  # as if an attempt had died half-way through
        real = t._record_kek

        def die(*args: Any) -> None:  # every key unwrapped and proved: the crash comes here
            raise SignerError("killed after the unwrap")

        t._record_kek = die  # type: ignore[method-assign]
        with pytest.raises(SignerError, match="killed"):
            t.execute(op, [], secrets={"shares": boxes})
        t._record_kek = real  # type: ignore[method-assign]
        assert sorted(k.locator for k in t.inventory().keys) == sorted(live)
        result = t.execute(op, [], secrets={"shares": boxes})
        assert (result["restored"], result["before"], result["after"], result["added"],
                result["kek_imported"]) == (2, 0, 2, 2, False)
        assert {k["locator"]: k for k in t._key_listing()} == live
        assert t.execute(op, []) == result  # finished: no shares needed for the record
        assert t._kek_id() == made["kek_id"]
