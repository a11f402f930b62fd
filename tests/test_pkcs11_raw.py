"""signer_shim.pkcs11.raw against python-pkcs11 on a real SoftHSM2 token: the same objects found,
the same values read, a value longer than its buffer read whole, a missing attribute as None,
and a destroyed object's handle refused as python-pkcs11 refuses it.

In a child process: SoftHSM reads SOFTHSM2_CONF once per process, and this one's stays unset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from signer_shim.pkcs11.softhsm import SoftHSMToken, child_env

CHILD = r'''
import json, sys
import pkcs11
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass, PKCS11Error
from signer_shim.algorithms import ec_name, rsa_name
from signer_shim.pkcs11.raw import RawSession, boolean, ulong
from signer_shim.pkcs11.worker import Worker

module, label, pin = sys.argv[1:4]
w = Worker(module, label)
w.open(pin)
s = w.session
long_id, long_label = bytes(range(200)), "L" * 300
pub, priv = s.generate_keypair(KeyType.EC, id=long_id, label=long_label, store=True,
                               capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                               public_template={Attribute.EC_PARAMS: bytes.fromhex(
                                   "06082a8648ce3d030107")})
w._generate_one("ab" * 16, "RSA/2048")
raw = RawSession(module, s)
out = {"found": sorted(raw.find()),
       "pkcs11": sorted(o.handle for o in s.get_objects()),
       "private_found": sorted(raw.find({Attribute.CLASS: ObjectClass.PRIVATE_KEY})),
       "private_pkcs11": sorted(o.handle for o in s.get_objects(
           {Attribute.CLASS: ObjectClass.PRIVATE_KEY}))}
spec = ((Attribute.CLASS, 8), (Attribute.ID, 16), (Attribute.LABEL, 8),
        (Attribute.SENSITIVE, 1), (Attribute.MODULUS, 16), (Attribute.VALUE, 8))
c, i, lab, sensitive, modulus, value = raw.read(priv.handle, spec)
out["long"] = [ulong(c) == ObjectClass.PRIVATE_KEY, i == long_id,
               lab == long_label.encode(), boolean(sensitive), modulus is None, value is None]
out["listed"] = sorted((r["class"], r["id"], r["type"]) for r in w.list_objects())
def named(o):
    """A key object's type read through python-pkcs11, as the worker names it."""
    kt = o[Attribute.KEY_TYPE]
    if kt == KeyType.RSA:
        return rsa_name(len(o[Attribute.MODULUS]) * 8)
    if kt == KeyType.EC:
        return ec_name(bytes(o[Attribute.EC_PARAMS]))
    return str(kt)


expect = []
for o in s.get_objects():
    if o[Attribute.CLASS] in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
        name = "private" if o[Attribute.CLASS] == ObjectClass.PRIVATE_KEY else "public"
        expect.append((name, bytes(o[Attribute.ID]).hex(), named(o)))
out["expected"] = sorted(expect)
out["spki"] = [w.public_keys(["ab" * 16]) == {"ab" * 16: __import__("base64").b64encode(
    __import__("signer_shim.pkcs11.worker", fromlist=["_spki"])._spki(o)).decode()
    for o in s.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                            Attribute.ID: bytes.fromhex("ab" * 16)})}]
h = priv.handle
priv.destroy()
try:
    raw.read(h, spec)
    out["destroyed"] = "read"
except PKCS11Error as e:
    out["destroyed"] = type(e).__name__
print(json.dumps(out))
'''


def test_raw_finds_and_reads_agree_with_python_pkcs11(softhsm_token: SoftHSMToken) -> None:
    t = softhsm_token
    root = Path(__file__).resolve().parents[1]
    got = subprocess.run([sys.executable, "-c", CHILD, str(t.module), t.label, t.user_pin],
                         capture_output=True, text=True, cwd=root, timeout=120,
                         env={**child_env(t.softhsm2_conf), "PYTHONPATH": str(root)})
    assert got.returncode == 0, got.stderr
    out = json.loads(got.stdout)
    assert len(out["found"]) == 4 and out["found"] == out["pkcs11"]
    assert len(out["private_found"]) == 2 and out["private_found"] == out["private_pkcs11"]
    assert out["long"] == [True] * 6  # read whole past its buffer; absent ones None
    assert out["listed"] == [list(x) for x in out["expected"]]
    assert {tuple(x)[2] for x in out["listed"]} == {"ECDSA/P-256", "RSA/2048"}
    assert out["spki"] == [True]
    assert out["destroyed"] == "ObjectHandleInvalid"
