"""The wrap backup on SoftHSM2 tokens: a KEK split M-of-N among the KSOs, keys made extractable
only wrapped, backed up with CKM_AES_KEY_WRAP_PAD, restored with M shares into a fresh token;
too few or wrong shares refused with nothing left behind; an untrusted key cannot wrap them; no
private number in the archive; plan-time refusals naming the vendor routes."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from signer_shim import wrap
from signer_shim.config import SignerConfig
from signer_shim.interface import SignerError
from signer_shim.pkcs11 import profiles
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.softhsm import SoftHSMToken, create_token
from signer_shim.restore import plan_restore
from staging.fixture import RehearsalToken
from tests.conftest import EC_POLICIES
from tests.test_signer_operations import approvals_for

RSA_KEY = "0" * 31 + "1"
EC_KEY = "0" * 31 + "2"
DATE = "2026-12-07"


def config_for(token: SoftHSMToken, state: Path, method: str = "wrap") -> SignerConfig:
    state.mkdir(parents=True, exist_ok=True)
    return SignerConfig(name="primary", role="primary", module=token.module,
                        softhsm2_conf=token.softhsm2_conf, token_label=token.label,
                        user_pin=token.user_pin, state_dir=state,
                        host_key_path=state / "ssh_host_ed25519_key", backup_method=method)


@pytest.fixture
def source(tmp_path: Path) -> tuple[SoftHSMToken, SignerConfig]:
    token = create_token(tmp_path / "source", "wrap-source")
    return token, config_for(token, tmp_path / "source-state")


@pytest.fixture
def target(tmp_path: Path) -> tuple[SoftHSMToken, SignerConfig]:
    token = create_token(tmp_path / "target", "wrap-target")
    return token, config_for(token, tmp_path / "target-state")


def generate(s: Pkcs11Signer, *keys: tuple[str, str]) -> None:
    s._call("generate", {"keys": [{"locator": loc, "algorithm": alg} for loc, alg in keys]})


def on_token(token: SoftHSMToken, code: str, arg: Any = None) -> Any:
    """Run python-pkcs11 `code` against `token` in a process of its own (SOFTHSM2_CONF is read
    once per process), user session `s`, `arg` as JSON; it sets `out`."""
    prog = ("import json, sys, pkcs11\nfrom pkcs11 import *\n"
            f"lib = pkcs11.lib({str(token.module)!r})\n"
            f"t = lib.get_token(token_label={token.label!r})\n"
            "arg = json.loads(sys.stdin.read())\nout = None\n"
            f"with t.open(rw=True, user_pin={token.user_pin!r}) as s:\n"
            + "".join(f"    {line}\n" for line in code.splitlines()) +
            "print(json.dumps(out))\n")
    p = subprocess.run([sys.executable, "-c", prog], input=json.dumps(arg), text=True,
                       capture_output=True, timeout=60,
                       env={**os.environ, "SOFTHSM2_CONF": str(token.softhsm2_conf)})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def objects(token: SoftHSMToken) -> list[str]:
    """Every object on the token a user session sees, as class:id."""
    return on_token(token, "out = sorted(f'{o[Attribute.CLASS]}:{bytes(o[Attribute.ID]).hex()}'"
                           " for o in s.get_objects())")


def backed_up(source: tuple[SoftHSMToken, SignerConfig], threshold: int = 2,
              count: int = 3) -> tuple[wrap.KekShares, bytes]:
    token, cfg = source
    with Pkcs11Signer(cfg) as s:
        shares = s.create_backup_kek(token.so_pin, threshold, count)
        generate(s, (RSA_KEY, "RSA/2048"), (EC_KEY, "ECDSA/P-256"))
        op = s.plan_backup(DATE)
        result = s.execute(op, [])
        archive = s.read_output(result["file"])
    assert result["sha256"] == hashlib.sha256(archive).hexdigest()
    return shares, archive


def test_keys_made_under_the_wrap_method_are_extractable_only_wrapped(
        source: tuple[SoftHSMToken, SignerConfig], tmp_path: Path) -> None:
    token, cfg = source
    with Pkcs11Signer(cfg) as s:
        generate(s, (RSA_KEY, "RSA/2048"), (EC_KEY, "ECDSA/P-256"))
        for loc in (RSA_KEY, EC_KEY):
            a = s.key_attributes(loc)
            assert a["sensitive"] and a["extractable"] and a["always_sensitive"]
            assert not a["never_extractable"] and a["local"]
        assert s._call("wrappable", {}) == {
            loc: {"extractable": True, "wrap_with_trusted": True} for loc in (RSA_KEY, EC_KEY)}
    plain = create_token(tmp_path / "plain", "plain")  # the default path is unchanged
    with Pkcs11Signer(config_for(plain, tmp_path / "plain-state", "tokendir")) as s:
        generate(s, (RSA_KEY, "RSA/2048"))
        a = s.key_attributes(RSA_KEY)
        assert not a["extractable"] and a["never_extractable"]
        assert s._call("wrappable", {})[RSA_KEY] == {"extractable": False,
                                                     "wrap_with_trusted": False}


def test_the_kek_is_trusted_never_extractable_and_leaves_only_as_shares(
        source: tuple[SoftHSMToken, SignerConfig]) -> None:
    token, cfg = source
    with Pkcs11Signer(cfg) as s:
        made = s.create_backup_kek(token.so_pin, 2, 3)
        assert s._call("find_kek", {"kek_id": made.kek_id}) == {
            "present": True, "trusted": True, "wrap": True, "unwrap": True,
            "extractable": False, "sensitive": True, "token": True}
        assert "shares" not in repr(made) and len(made.shares) == 3
        assert all(len(m.split()) == 33 for m in made.shares)
        with pytest.raises(SignerError, match="already holds"):
            s.create_backup_kek(token.so_pin, 2, 3)
    kek = wrap.combine_shares(made.shares[1:])
    assert wrap.kek_id_of(kek) == made.kek_id and len(kek) == 32
    wrap.wipe(kek)
    assert kek == bytearray(32)
    record = json.loads((cfg.state_dir / "backup-kek.json").read_text())
    assert record == {"kek_id": made.kek_id, "scheme": "SLIP-39", "threshold": 2, "shares": 3}


def test_backup_restores_into_a_fresh_token_with_m_of_n_shares(
        source: tuple[SoftHSMToken, SignerConfig],
        target: tuple[SoftHSMToken, SignerConfig]) -> None:
    shares, archive = backed_up(source)
    got = wrap.read_archive(archive)
    assert got.manifest["format"] == wrap.FORMAT
    assert got.manifest["kek"] == {
        "id": shares.kek_id, "label": wrap.KEK_LABEL, "mechanism": "CKM_AES_KEY_WRAP_PAD",
        "key": "AES-256, CKA_TRUSTED, never extractable", "scheme": "SLIP-39",
        "threshold": 2, "shares": 3}
    with Pkcs11Signer(source[1]) as s:
        live = {k["locator"]: k for k in s._key_listing()}
        public = {loc: s.public_key_der(loc) for loc in live}
        spki = {loc: base64.b64decode(s._call("public_spki", {"locator": loc})["der"])
                for loc in live}
    assert {k["locator"]: k for k in got.keys} == live
    assert plan_restore("t", "x.tar.gz", archive, wrap_ok=True)["keys"] == sorted(
        live.values(), key=lambda k: k["locator"])
    with pytest.raises(SignerError, match="is a wrap backup: it is restored with the KSOs"):
        plan_restore("t", "x.tar.gz", archive)
    ttoken, tcfg = target
    with Pkcs11Signer(tcfg) as t:
        result = t.restore_wrapped(archive, [shares.shares[2], shares.shares[0]], ttoken.so_pin)
        assert result == {"restored": [RSA_KEY, EC_KEY], "kek_id": shares.kek_id,
                          "kek_imported": True}
        assert {k["locator"]: k for k in t._key_listing()} == live
        for loc in live:
            assert t.public_key_der(loc) == public[loc]
            a = t.key_attributes(loc)
            assert a["sensitive"] and a["extractable"] and a["private"] and a["sign"]
        assert t._call("wrappable", {})[RSA_KEY]["wrap_with_trusted"]
        data = b"signed by a restored key"
        sig = t.sign(RSA_KEY, data, "SHA256_RSA_PKCS")
        pub = serialization.load_der_public_key(spki[RSA_KEY])
        assert isinstance(pub, rsa.RSAPublicKey)
        pub.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        assert wrap.verifies(spki[EC_KEY], t.sign, EC_KEY)
        # the restored token can make the next backup: it holds the KEK, the keys are wrappable
        again = t.execute(t.plan_backup("2026-12-08"), [])
        assert wrap.read_archive(t.read_output(again["file"])).manifest["kek"]["id"] == \
            shares.kek_id


def test_too_few_or_wrong_shares_are_refused_and_leave_nothing_on_the_target(
        source: tuple[SoftHSMToken, SignerConfig],
        target: tuple[SoftHSMToken, SignerConfig]) -> None:
    shares, archive = backed_up(source, threshold=3, count=5)
    ttoken, tcfg = target
    other = wrap.split_kek(bytearray(os.urandom(32)), 3, 5)
    words = shares.shares[1].split()
    words[5] = "academic" if words[5] != "academic" else "acid"
    cases = {
        "needs 3 different shares; 2 were given": shares.shares[:2],
        "needs 3 different shares; 2 were given ": [shares.shares[0]] * 2 + [shares.shares[1]],
        "do not rebuild a KEK": [shares.shares[0], shares.shares[3], other[1]],
        "not a valid SLIP-39 share": [shares.shares[0], " ".join(words), shares.shares[4]],
        "not this backup's": other[:3],
    }
    with Pkcs11Signer(tcfg) as t:
        for why, given in cases.items():
            with pytest.raises(SignerError, match=why.strip()):
                t.restore_wrapped(archive, given, ttoken.so_pin)
            assert objects(ttoken) == []
    # a failure after the KEK went in (the keys are not the backup's) takes it out again
    got = wrap.read_archive(archive)
    with Pkcs11Signer(tcfg) as t:
        with pytest.raises(SignerError, match="not the backup's"):
            wrap.restore(t._wrap_call, t.sign, archive, shares.shares[:3], ttoken.so_pin,
                         ttoken.user_pin, lambda loc: "0" * 64)
        assert objects(ttoken) == []
        assert got.keys  # and the real thing still works afterwards
        t.restore_wrapped(archive, shares.shares[2:], ttoken.so_pin)
        assert len(objects(ttoken)) == 5  # two pairs and the KEK


def test_an_untrusted_aes_key_cannot_wrap_the_keys(
        source: tuple[SoftHSMToken, SignerConfig]) -> None:
    token, cfg = source
    with Pkcs11Signer(cfg) as s:
        s.create_backup_kek(token.so_pin, 2, 2)
        generate(s, (RSA_KEY, "RSA/2048"), (EC_KEY, "ECDSA/P-256"))
    out = on_token(token, """
aes = s.generate_key(KeyType.AES, 256, store=False, template={Attribute.WRAP: True})
out = {}
for priv in s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}):
    try:
        aes.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        out[bytes(priv[Attribute.ID]).hex()] = 'wrapped'
    except PKCS11Error as e:
        out[bytes(priv[Attribute.ID]).hex()] = type(e).__name__
    try:
        priv[Attribute.PRIVATE_EXPONENT if priv.key_type == KeyType.RSA else Attribute.VALUE]
        out['read'] = 'readable'
    except PKCS11Error as e:
        out['read'] = type(e).__name__
""")
    assert out == {RSA_KEY: "KeyNotWrappable", EC_KEY: "KeyNotWrappable",
                   "read": "AttributeSensitive"}


def _import_reference_keys(token: SoftHSMToken) -> tuple[rsa.RSAPrivateKey,
                                                          ec.EllipticCurvePrivateKey]:
    """Software key pairs put on the token as the wrap method makes keys (extractable,
    sensitive, wrap-with-trusted): their private numbers are known, so the archive can be
    scanned for them."""
    r = rsa.generate_private_key(65537, 2048)
    e = ec.generate_private_key(ec.SECP256R1())
    der = {"rsa": r.private_bytes(serialization.Encoding.DER,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()),
           "ec": e.private_bytes(serialization.Encoding.DER,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()),
           "rsa_pub": r.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.PKCS1),
           "ec_pub": e.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)}
    on_token(token, """
from base64 import b64decode as d
from pkcs11.util.rsa import decode_rsa_private_key, decode_rsa_public_key
from pkcs11.util.ec import decode_ec_private_key, decode_ec_public_key
wrapattrs = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
             Attribute.EXTRACTABLE: True, Attribute.WRAP_WITH_TRUSTED: True, Attribute.SIGN: True}
for kid, priv, pub in (('rsa', decode_rsa_private_key(d(arg['rsa']), MechanismFlag.SIGN),
                        decode_rsa_public_key(d(arg['rsa_pub']), MechanismFlag.VERIFY)),
                       ('ec', decode_ec_private_key(d(arg['ec'])),
                        decode_ec_public_key(d(arg['ec_pub'])))):
    loc = arg[kid + '_id']
    ident = {Attribute.ID: bytes.fromhex(loc), Attribute.LABEL: loc}
    s.create_object({**priv, **wrapattrs, **ident})
    s.create_object({**pub, Attribute.TOKEN: True, Attribute.PRIVATE: False,
                     Attribute.VERIFY: True, **ident})
""", {**{k: base64.b64encode(v).decode() for k, v in der.items()},
      "rsa_id": "a" * 32, "ec_id": "b" * 32})
    return r, e


def test_the_archive_holds_no_private_number_in_the_clear(
        source: tuple[SoftHSMToken, SignerConfig],
        target: tuple[SoftHSMToken, SignerConfig]) -> None:
    token, cfg = source
    with Pkcs11Signer(cfg) as s:
        shares = s.create_backup_kek(token.so_pin, 2, 3)
        r, e = _import_reference_keys(token)
        result = s.execute(s.plan_backup(DATE), [])
        archive = s.read_output(result["file"])
    n = r.private_numbers()
    secrets = {"d": n.d, "p": n.p, "q": n.q, "dmp1": n.dmp1, "dmq1": n.dmq1, "iqmp": n.iqmp,
               "ec scalar": e.private_numbers().private_value}
    raw = gzip.decompress(archive)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        wrapped = json.loads(next(tar.extractfile(m).read() for m in tar.getmembers()  # type: ignore[union-attr]
                                  if m.name.endswith("wrapped.json")))
    blobs = [base64.b64decode(w[f]) for w in wrapped for f in ("wrapped", "public_der")]
    assert len(wrapped) == 2
    for what, value in secrets.items():
        big = value.to_bytes((value.bit_length() + 7) // 8, "big")
        assert len(big) >= 16
        for hay in (archive, raw, *blobs):
            assert big not in hay and big[:16] not in hay, what
    # and the archive does hold these keys: restored, they sign for the software public keys
    ttoken, tcfg = target
    with Pkcs11Signer(tcfg) as t:
        t.restore_wrapped(archive, shares.shares[:2], ttoken.so_pin)
        for loc, key in (("a" * 32, r), ("b" * 32, e)):
            spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
            assert wrap.verifies(spki, t.sign, loc)


def test_the_wrap_restore_drill_compares_with_the_live_token_and_leaves_no_scratch(
        source: tuple[SoftHSMToken, SignerConfig]) -> None:
    shares, archive = backed_up(source)
    token, cfg = source
    name = f"key-backup-{DATE}.tar.gz"
    with Pkcs11Signer(cfg) as s:
        result = s.wrap_restore_drill(name, shares.shares[1:], "drill-so-pin")
        assert result == {"file": name, "match": True, "live": 2, "restored": 2,
                          "missing": [], "extra": [], "public_keys_differ": [],
                          "method": "wrap"}
        with pytest.raises(SignerError, match="needs 2 different shares"):
            s.wrap_restore_drill(name, shares.shares[:1], "drill-so-pin")
        # a key made since the backup: the drill says the backup lacks it
        generate(s, ("c" * 32, "ECDSA/P-256"))
        result = s.wrap_restore_drill(name, shares.shares[:2], "drill-so-pin")
        assert not result["match"] and result["missing"] == ["c" * 32]
    assert not [p for p in cfg.state_dir.iterdir() if p.name.startswith("wrap-drill-")]


def test_a_wrap_backup_is_refused_at_plan_time_where_keys_cannot_leave_wrapped(
        source: tuple[SoftHSMToken, SignerConfig], tmp_path: Path) -> None:
    token, cfg = source
    with Pkcs11Signer(cfg) as s:
        with pytest.raises(SignerError, match="no backup KEK yet"):
            s.plan_backup(DATE)
        s.create_backup_kek(token.so_pin, 2, 3)
        generate(s, (RSA_KEY, "RSA/2048"))
        s.plan_backup(DATE)  # wrappable: planned
    # a key made the tokendir way (never extractable), as OpenDNSSEC makes them
    with Pkcs11Signer(replace(cfg, backup_method="tokendir")) as s:
        generate(s, (EC_KEY, "ECDSA/P-256"))
    with Pkcs11Signer(cfg) as s, pytest.raises(SignerError) as refused:
        s.plan_backup(DATE)
    msg = str(refused.value)
    assert "CKA_EXTRACTABLE=false" in msg and EC_KEY in msg
    assert "Luna Backup HSM" in msg and "Security World" in msg and "MBK" in msg
    assert not (cfg.outputs_dir / f"key-backup-{DATE}.tar.gz").exists()
    # opencryptoki's software token: no CKM_AES_KEY_WRAP_PAD, no CKA_TRUSTED
    okc = profiles.OPENCRYPTOKI_SW
    problems = wrap.wrap_problems(okc.description, ["RSA_PKCS", "AES_CBC"],
                                  okc.rejected_attributes, {})
    with pytest.raises(SignerError) as refused:
        wrap.refuse_wrap("a backup", problems)
    msg = str(refused.value)
    assert "has no CKM_AES_KEY_WRAP_PAD" in msg and "CKA_TRUSTED" in msg
    assert "CKA_WRAP_WITH_TRUSTED" in msg and "Utimaco" in msg
    assert wrap.wrap_problems("SoftHSM2 token", ["AES_KEY_WRAP_PAD"], (), {}) == []


def test_backup_method_in_the_signer_config(tmp_path: Path) -> None:
    token = create_token(tmp_path / "t", "cfg")
    cfg = config_for(token, tmp_path / "state")
    path = cfg.save(tmp_path / "signer.toml")
    assert "[backup]" in path.read_text()
    assert SignerConfig.load(path).backup_method == "wrap"
    plain = replace(cfg, backup_method="tokendir").save(tmp_path / "plain.toml")
    assert "[backup]" not in plain.read_text()
    assert SignerConfig.load(plain).backup_method == "tokendir"
    plain.write_text(plain.read_text() + '[backup]\nmethod = "zip"\n')
    with pytest.raises(ValueError, match="backup.method must be one of tokendir, wrap"):
        SignerConfig.load(plain)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_ceremonys_generate_under_wrap_makes_wrappable_keys_and_the_plan_names_the_rest(
        small_rehearsal: RehearsalToken, workers: int) -> None:
    """A token seeded the tokendir way (never extractable, as OpenDNSSEC makes keys), then
    switched to wrap: generate (one worker, and a pool whose keys the main worker audits) makes
    wrappable keys, and the backup is refused at plan time naming the old, stuck keys."""
    rt = small_rehearsal
    cfg = replace(rt.config, backup_method="wrap", workers=workers)
    with Pkcs11Signer(cfg) as s:
        s.create_backup_kek(rt.token.so_pin, 2, 3)
        seeded = set(s._call("wrappable", {}))
        op = s.plan_generate(EC_POLICIES, "P14M")
        result = s.execute(op, approvals_for(op))
        made = set(result["generated"])
        how = s._call("wrappable", {})
        with pytest.raises(SignerError) as refused:
            s.plan_backup(DATE)
    assert made and all(how[loc] == {"extractable": True, "wrap_with_trusted": True}
                        for loc in made)
    assert all(not how[loc]["extractable"] for loc in seeded)
    assert f"{len(seeded)} key(s) are CKA_EXTRACTABLE=false" in str(refused.value)
