"""coordinator.publish: PEM, DNSKEY and DS from known keys, the DS records checked against
`ldns-key2ds` (Debian's ldnsutils, not dnspython) run on the same DNSKEY."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from coordinator.publish import (
    PublicKey,
    PublishError,
    files,
    key_from_entry,
    keys_from_results,
    render,
)

LDNS_KEY2DS = shutil.which("ldns-key2ds", path="/usr/bin:/usr/sbin:/bin")
needs_ldns = pytest.mark.skipif(LDNS_KEY2DS is None, reason="run dev/setup.sh (ldnsutils)")


def spki(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


RSA = spki(rsa.generate_private_key(65537, 2048).public_key())
EC = spki(ec.generate_private_key(ec.SECP256R1()).public_key())


def ldns_ds(dnskey_rr: str, tmp_path: Path) -> str:
    """`ldns-key2ds -n -2` (SHA-256, to stdout) of one DNSKEY RR, as `owner DS rdata`."""
    f = tmp_path / "k.key"
    f.write_text(dnskey_rr + "\n")
    assert LDNS_KEY2DS is not None
    out = subprocess.run([LDNS_KEY2DS, "-n", "-2", str(f)], capture_output=True, text=True,
                         check=True, timeout=30).stdout.split()
    owner, _ttl, _class, rtype, *rdata = out
    assert rtype == "DS"
    return " ".join([owner, "DS", *rdata]).lower()


def ours(ds_rr: str | None) -> str:
    assert ds_rr is not None
    owner, _class, rtype, *rdata = ds_rr.split()
    return " ".join([owner, rtype, *rdata]).lower()


def test_pem_is_the_subject_public_key_info_with_its_locator() -> None:
    k = PublicKey("ab" * 16, RSA)
    text = k.pem()
    assert text.startswith(f"# {'ab' * 16}\n-----BEGIN PUBLIC KEY-----\n")
    pem = text.split("\n", 1)[1].encode()
    assert spki(serialization.load_pem_public_key(pem)) == RSA  # type: ignore[arg-type]


def test_dnskey_flags_and_algorithms() -> None:
    ksk = PublicKey("01" * 16, RSA, role="KSK", zone="example.org")
    zsk = PublicKey("02" * 16, EC, role="ZSK", zone="example.org.")
    assert ksk.dnskey_rr().split()[:6] == ["example.org.", "IN", "DNSKEY", "257", "3", "8"]
    assert zsk.dnskey_rr().split()[3:6] == ["256", "3", "13"]
    assert zsk.ds_rr() is None  # a ZSK has no DS
    assert PublicKey("03" * 16, RSA, role="KSK", zone="a.example",
                     dnssec_algorithm=10).dnskey_rr().split()[5] == "10"


def test_a_pool_key_without_role_or_zone_is_pem_only() -> None:
    keys = [PublicKey("01" * 16, RSA), PublicKey("02" * 16, EC, role="KSK")]
    assert not any(k.publishes_rrs for k in keys)
    assert render(keys, "dnskey") == render(keys, "ds") == ""
    assert render(keys, "pem").count("BEGIN PUBLIC KEY") == 2
    assert list(files(keys)) == ["public-keys.pem"]
    assert files([]) == {}
    with pytest.raises(PublishError):
        keys[1].dnskey()


@needs_ldns
@pytest.mark.parametrize("key", [RSA, EC], ids=["RSASHA256", "ECDSAP256SHA256"])
def test_ds_equals_ldns_key2ds(key: bytes, tmp_path: Path) -> None:
    k = PublicKey("0f" * 16, key, role="KSK", zone="zone01.example")
    assert ours(k.ds_rr()) == ldns_ds(k.dnskey_rr(), tmp_path)
    assert ours(k.ds_rr()).split()[4] == "2"  # digest type 2: SHA-256


def test_keys_from_generate_results() -> None:
    results = [
        (44, {"generated": ["01" * 16], "public_keys": [
            {"locator": "01" * 16, "spki": base64.b64encode(RSA).decode(),
             "algorithm": "RSA/2048"}]}),
        (45, {"generated": ["02" * 16, "03" * 16], "public_keys": [
            {"locator": "02" * 16, "spki": base64.b64encode(EC).decode(), "role": "KSK",
             "zone": "example.net", "dnssec_algorithm": 13},
            {"locator": "03" * 16, "spki": base64.b64encode(EC).decode(), "role": "ZSK",
             "zone": "example.net", "dnssec_algorithm": 13}]}),
        (46, {"generated": ["04" * 16]}),  # written before results carried public keys
    ]
    keys = keys_from_results(results)
    assert [(k.step, k.locator, k.publishes_rrs) for k in keys] == [
        (44, "01" * 16, False), (45, "02" * 16, True), (45, "03" * 16, True)]
    out = files(keys)
    assert sorted(out) == ["dnskey.txt", "ds.txt", "public-keys.pem"]
    assert out["dnskey.txt"].decode().count("DNSKEY") == 2
    assert out["ds.txt"].decode().count(" DS ") == 1


@pytest.mark.parametrize("entry", [
    {"spki": base64.b64encode(RSA).decode()},
    {"locator": "01" * 16, "spki": "not base64!"},
    {"locator": "01" * 16, "spki": base64.b64encode(b"not a key").decode()},
    "a string",
])
def test_an_unreadable_entry_is_refused(entry: object) -> None:
    with pytest.raises(PublishError):
        key_from_entry(44, entry)


def test_unknown_format() -> None:
    with pytest.raises(PublishError):
        render([], "json")
