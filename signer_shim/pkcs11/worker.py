"""The only process that calls PKCS#11: `python -m signer_shim.pkcs11.worker --module M --label L`.

Why a process of its own: python-pkcs11 is not safe to call from two threads against SoftHSM
(C_Initialize(NULL) makes SoftHSM drop its own locking), SoftHSM reads SOFTHSM2_CONF once per
process, and parallel RSA generation needs several processes anyway. So the worker serves one
request at a time from stdin (signer_shim.pkcs11.wire), with SOFTHSM2_CONF in its own environment.

The user PIN comes as the first request (`open`) on stdin, never on the command line or in the
environment, where other users could read it from /proc.

The worker is deliberately dumb: it lists, generates, deletes and signs what it is told. What to
generate or delete, and whether the result is right, is decided by its caller from the pure
planning rules.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

import pkcs11
from asn1crypto.core import OctetString
from asn1crypto.keys import ECDomainParameters, PublicKeyInfo
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, PKCS11Error
from pkcs11.util.ec import decode_ec_public_key, encode_ec_public_key
from pkcs11.util.rsa import decode_rsa_public_key, encode_rsa_public_key

from signer_shim.algorithms import algorithm, ec_name, rsa_name
from signer_shim.pkcs11.inventory import key_problems
from signer_shim.pkcs11.raw import RawSession, boolean, ulong
from signer_shim.pkcs11.wire import decode, encode

_CLASSES = {ObjectClass.PRIVATE_KEY: "private", ObjectClass.PUBLIC_KEY: "public"}
#: what a listing reads of every object, in one call (signer_shim.pkcs11.raw)
_LISTED = ((Attribute.CLASS, 8), (Attribute.ID, 128), (Attribute.LABEL, 128),
           (Attribute.KEY_TYPE, 8))
#: what an EC or RSA public key's SubjectPublicKeyInfo is made of, with its ID, in one call
_PUBLIC_EC = ((Attribute.ID, 128), (Attribute.KEY_TYPE, 8), (Attribute.EC_PARAMS, 128),
              (Attribute.EC_POINT, 256))
_PUBLIC_RSA = ((Attribute.ID, 128), (Attribute.KEY_TYPE, 8), (Attribute.MODULUS, 1024),
               (Attribute.PUBLIC_EXPONENT, 16))
_PRIVATE_FLAGS = {
    "sensitive": Attribute.SENSITIVE, "extractable": Attribute.EXTRACTABLE,
    "always_sensitive": Attribute.ALWAYS_SENSITIVE,
    "never_extractable": Attribute.NEVER_EXTRACTABLE, "local": Attribute.LOCAL,
    "private": Attribute.PRIVATE, "sign": Attribute.SIGN,
}
#: RSA_PKCS: over a DigestInfo, for tokens without SHA256_RSA_PKCS (signer_shim.pkcs11.profiles)
_MECHANISMS = {"SHA256_RSA_PKCS": Mechanism.SHA256_RSA_PKCS, "ECDSA": Mechanism.ECDSA,
               "RSA_PKCS": Mechanism.RSA_PKCS}


_PLAIN_METHODS = ("token_info", "list_objects", "destroy", "key_attributes", "audit",
                  "public_key", "public_keys", "sign")
#: The wrap backup's requests (signer_shim.wrap): additive, served like the plain ones.
_WRAP_METHODS = ("mechanisms", "key_template", "import_kek", "find_kek", "destroy_kek", "wrap_keys",
                 "unwrap_keys", "public_spki", "wrappable")
#: Private-key attributes under the wrap method: extractable, but only wrapped by a trusted key.
_WRAP_PRIVATE = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True,
                 Attribute.WRAP_WITH_TRUSTED: True}
#: The attributes a wrap archive records per private key and a restore sets again (by name).
_WRAP_RECORDED = {"sensitive": Attribute.SENSITIVE, "extractable": Attribute.EXTRACTABLE,
                  "wrap_with_trusted": Attribute.WRAP_WITH_TRUSTED, "private": Attribute.PRIVATE,
                  "sign": Attribute.SIGN, "decrypt": Attribute.DECRYPT,
                  "unwrap": Attribute.UNWRAP, "derive": Attribute.DERIVE}


#: what `_check` reads of a new private key (ID, class, the flags, label, token, key type and
#: what names the size) and of its public key (ID, class, label, token, RSA's exponent)
_CHECK_EC = ((Attribute.ID, 128), (Attribute.CLASS, 8),
             *((attr, 1) for attr in _PRIVATE_FLAGS.values()), (Attribute.LABEL, 128),
             (Attribute.TOKEN, 1), (Attribute.KEY_TYPE, 8), (Attribute.EC_PARAMS, 128))
_CHECK_RSA = (*_CHECK_EC[:-1], (Attribute.MODULUS, 1024))
_CHECK_PUBLIC = ((Attribute.ID, 128), (Attribute.CLASS, 8), (Attribute.LABEL, 128),
                 (Attribute.TOKEN, 1))
_CHECK_PUBLIC_RSA = (*_CHECK_PUBLIC, (Attribute.PUBLIC_EXPONENT, 16))


class Refused(Exception):
    """A request the worker will not carry out as asked."""


class Worker:
    def __init__(self, module: str, label: str) -> None:
        self.module = module
        self.label = label
        self.session: Any = None
        #: extra private-key attributes for keys this worker makes ({} = the default path;
        #: `key_template("wrap")` sets _WRAP_PRIVATE)
        self._private_extra: dict[Attribute, Any] = {}
        #: (class, handle) -> listed record of the key objects this session last listed or
        #: made: a listing re-reads each object's ID and label (a round through SoftHSM's
        #: store per object) and takes the type from here when they are unchanged
        #: (`list_objects`); `public_keys` reads through these handles (`_listed_public`)
        self._seen: dict[tuple[str, int], dict[str, Any]] = {}
        self._raw_session: tuple[Any, RawSession] | None = None
        #: the key object IDs of the last listing, kept current with this worker's own writes
        #: since (its destroys and checked generates); None when not known that way
        self._listed_ids: set[str] | None = None

    # -- requests ---------------------------------------------------------------------------

    def open(self, pin: str) -> dict[str, Any]:
        lib = pkcs11.lib(self.module)
        token = lib.get_token(token_label=self.label)
        self.session = token.open(rw=True, user_pin=pin)
        self._seen, self._listed_ids = {}, None
        return {"pid": os.getpid()}

    def _raw(self) -> RawSession:
        """Finds and one-call reads on the current session (signer_shim.pkcs11.raw)."""
        if self._raw_session is None or self._raw_session[0] is not self.session:
            self._raw_session = (self.session, RawSession(self.module, self.session))
        return self._raw_session[1]

    def token_info(self) -> dict[str, Any]:
        t = self.session.token
        return {"manufacturer_id": t.manufacturer_id, "model": t.model,
                "serial": t.serial.decode("ascii", "replace"), "label": t.label}

    def list_objects(self) -> list[dict[str, Any]]:
        """Every private and public key object: class, id (hex), label and type.

        One find for every object on the token, and each object read afresh for its class,
        ID and label (the two can be changed in place) in one call (signer_shim.pkcs11.raw);
        its type's size (modulus or curve, which cannot change) is read only for a handle this
        session has not listed or made before, or whose ID or label changed since.
        """
        raw = self._raw()
        by_class: dict[str, list[dict[str, Any]]] = {"private": [], "public": []}
        seen = {}
        for h in raw.find():
            c, i, lab, kt = raw.read(h, _LISTED)
            name = _CLASSES.get(ulong(c))
            if name is None:
                continue
            kid, label = (i or b"").hex(), (lab or b"").decode("utf-8", "replace")
            known = self._seen.get((name, h))
            if known and known["id"] == kid and known["label"] == label:
                kind = known["type"]
            else:
                kind = self._type(h, ulong(kt))
            rec = {"class": name, "id": kid, "label": label, "type": kind}
            seen[(name, h)] = rec
            by_class[name].append(rec)
        out = by_class["private"] + by_class["public"]
        self._seen, self._listed_ids = seen, {rec["id"] for rec in out}
        return out

    def generate(self, keys: list[dict[str, str]], progress: Callable[..., None],
                 check: bool = True) -> dict[str, Any]:
        """Make these key pairs. `check=False` reads nothing from the token (no duplicate-ID
        refusal, no per-key check), for when another process writes to it at the same time
        (see `_check`): the caller must then `audit` from a fresh process once all writing
        is over.

        The IDs already there are those of this worker's last listing with its own writes
        since (`_listed_ids`; the signer lists at the start of every execute), or a pass over
        the token when it has none: on a token no other process writes meanwhile (what
        `_check` needs too) they are the same, and a pass costs as much as a tenth of the
        keys of a 50-key ECDSA generate on a token of 400 objects. An object another program
        made meanwhile with a planned ID would still stop the operation, at the inventory
        diff's listing (two objects of one class with one ID)."""
        done = []
        if not check:
            existing: set[str] = set()
            self._listed_ids = None  # keys made blind are not tracked
        else:
            existing = set(self._listed_ids) if self._listed_ids is not None else self._ids()
        for k in keys:  # check all first: refuse before making anything
            if k["locator"] in existing:
                raise Refused(f"key objects with ID {k['locator']} already exist")
            algorithm(k["algorithm"])
        for i, k in enumerate(keys, 1):
            pub, priv = self._generate_one(k["locator"], k["algorithm"])
            if check:
                self._check(k["locator"], k["algorithm"], pub, priv)
                if self._listed_ids is not None:
                    self._listed_ids.add(k["locator"])
            done.append(k["locator"])
            progress(i, len(keys), f"generated {i} of {len(keys)} keys")
        return {"generated": done}

    def destroy(self, locators: list[str], classes: list[str] | None = None) -> dict[str, Any]:
        """Delete every key object with these IDs (whole pairs and halves alike); `classes`
        narrows it to "public" or "private" objects (the crash tests make half pairs so)."""
        wanted = [c for c, n in _CLASSES.items() if classes is None or n in classes]
        destroyed = []
        for loc in locators:
            objs = [o for c in wanted for o in self._objects(loc, c)]
            for o in objs:
                o.destroy()
            self._forget(loc)
            if self._listed_ids is not None and classes is None:
                self._listed_ids.discard(loc)
            if objs:
                destroyed.append(loc)
        if classes is not None:  # half a pair may be left: its ID is still there
            self._listed_ids = None
        return {"destroyed": destroyed}

    def key_attributes(self, locator: str) -> dict[str, Any]:
        """The attributes that make a key a ceremony key, for the checks and the tests."""
        (priv,) = self._objects(locator, ObjectClass.PRIVATE_KEY)
        (pub,) = self._objects(locator, ObjectClass.PUBLIC_KEY)
        return self._attributes(pub, priv)

    def audit(self, locators: list[str] | None = None) -> dict[str, Any]:
        """key_attributes of every whole pair on the token (or of these locators' pairs), by
        locator, in one pass."""
        wanted = None if locators is None else set(locators)
        by_id: dict[str, dict[str, Any]] = {}
        for cls, name in _CLASSES.items():
            for o in list(self.session.get_objects({Attribute.CLASS: cls})):
                kid = bytes(o[Attribute.ID]).hex()
                if wanted is None or kid in wanted:
                    by_id.setdefault(kid, {})[name] = o
        return {i: self._attributes(p["public"], p["private"])
                for i, p in sorted(by_id.items()) if len(p) == 2}

    def _attributes(self, pub: Any, priv: Any) -> dict[str, Any]:
        """One C_GetAttributeValue per object where it can (each call costs a round through
        SoftHSM's object store; this runs for every key made)."""
        a = priv.get_attributes([*_PRIVATE_FLAGS.values(), Attribute.LABEL, Attribute.TOKEN,
                                 Attribute.KEY_TYPE])
        rsa = a[Attribute.KEY_TYPE] == KeyType.RSA
        p = pub.get_attributes([Attribute.LABEL, Attribute.TOKEN]
                               + ([Attribute.PUBLIC_EXPONENT] if rsa else []))
        out = {name: bool(a[attr]) for name, attr in _PRIVATE_FLAGS.items()}
        out.update(label=a[Attribute.LABEL], public_label=p[Attribute.LABEL],
                   token=bool(a[Attribute.TOKEN]) and bool(p[Attribute.TOKEN]),
                   type=self._type(priv.handle, a[Attribute.KEY_TYPE]))
        if rsa:
            out["public_exponent"] = int.from_bytes(p[Attribute.PUBLIC_EXPONENT], "big")
        return out

    def public_key(self, locator: str) -> dict[str, Any]:
        (pub,) = self._objects(locator, ObjectClass.PUBLIC_KEY)
        kt = pub[Attribute.KEY_TYPE]
        der = encode_rsa_public_key(pub) if kt == KeyType.RSA else encode_ec_public_key(pub)
        return {"der": base64.b64encode(der).decode()}

    def public_keys(self, locators: list[str]) -> dict[str, str]:
        """locator -> SubjectPublicKeyInfo DER (base64) of these keys, what PEM and DNSKEY are
        made from (`public_key` stays PKCS#1 for RSA: backups' keys.json digest that), in one
        pass over the public key objects (a find per key scans the whole token each time)."""
        wanted = set(locators)
        out = self._listed_public(wanted)
        if out is not None:
            return out
        out = {}
        for o in list(self.session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY})):
            kid = bytes(o[Attribute.ID]).hex()
            if kid in wanted:
                out[kid] = base64.b64encode(_spki(o)).decode()
        missing = wanted - set(out)
        if missing:
            raise Refused(f"no public key object for {', '.join(sorted(missing)[:5])}")
        return out

    def sign(self, locator: str, data: str, mechanism: str) -> dict[str, Any]:
        (priv,) = self._objects(locator, ObjectClass.PRIVATE_KEY)
        sig = priv.sign(base64.b64decode(data), mechanism=_MECHANISMS[mechanism])
        return {"signature": base64.b64encode(sig).decode()}

    # -- device details ---------------------------------------------------------------------

    def _listed_public(self, wanted: set[str]) -> dict[str, str] | None:
        """`public_keys` through the handles of the last listing (after a generate: the
        inventory diff's), with no pass over the token: each object's ID is read again with
        its key and must still be the locator. None (make the pass) if a locator was not
        listed, was listed twice, or a handle no longer reads as listed."""
        by_id: dict[str, list[tuple[int, bool]]] = {}
        for (name, h), rec in self._seen.items():
            if name == "public" and rec["id"] in wanted:
                by_id.setdefault(rec["id"], []).append((h, rec["type"].startswith("RSA/")))
        if set(by_id) != wanted or any(len(v) != 1 for v in by_id.values()):
            return None
        raw, out = self._raw(), {}
        try:
            for kid, ((h, rsa),) in by_id.items():
                if rsa:
                    i, kt, modulus, exponent = raw.read(h, _PUBLIC_RSA)
                    params = point = None
                else:
                    i, kt, params, point = raw.read(h, _PUBLIC_EC)
                    modulus = exponent = None
                if (i or b"").hex() != kid:
                    return None
                der = _spki_of(ulong(kt), params, point, modulus, exponent)
                if der is None:
                    return None
                out[kid] = base64.b64encode(der).decode()
        except PKCS11Error:
            return None
        return out

    def _forget(self, locator: str) -> None:
        """Drop a destroyed key's handles from `_seen` (a token may hand them out again)."""
        self._seen = {k: v for k, v in self._seen.items() if v["id"] != locator}

    def _ids(self) -> set[str]:
        """Every key object ID on the token, in one pass (a find per key costs a pass each)."""
        raw, out = self._raw(), set()
        for h in raw.find():
            c, i = raw.read(h, _LISTED[:2])
            if ulong(c) in _CLASSES:
                out.add((i or b"").hex())
        return out

    def _objects(self, locator: str, cls: ObjectClass | None = None) -> list[Any]:
        classes = [cls] if cls is not None else list(_CLASSES)
        found = []
        for c in classes:
            attrs = {Attribute.CLASS: c, Attribute.ID: bytes.fromhex(locator)}
            found += list(self.session.get_objects(attrs))
        return found

    def _type(self, handle: int, kt: Any) -> str:
        """A key object's type ("RSA/2048", "ECDSA/P-256"; else its key type as it reads), its
        size read through its handle."""
        if kt == KeyType.RSA:
            (modulus,) = self._raw().read(handle, ((Attribute.MODULUS, 1024),))
            return rsa_name(len(modulus or b"") * 8)
        if kt == KeyType.EC:
            (params,) = self._raw().read(handle, ((Attribute.EC_PARAMS, 128),))
            return ec_name(params or b"")
        return str(kt)

    def _generate_one(self, locator: str, name: str) -> tuple[Any, Any]:
        """A token key pair as OpenDNSSEC makes it: CKA_ID = the 16 bytes, CKA_LABEL = their
        hex; private key sensitive, not extractable, for signing only."""
        alg = algorithm(name)
        kid = bytes.fromhex(locator)
        public: dict[Attribute, Any] = {Attribute.PRIVATE: False}
        private = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                   Attribute.PRIVATE: True, **self._private_extra}
        common = dict(id=kid, label=locator, store=True,
                      capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                      public_template=public, private_template=private)
        if alg.kind == "RSA":
            public[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
            return self.session.generate_keypair(KeyType.RSA, alg.bits, **common)
        public[Attribute.EC_PARAMS] = alg.ec_params
        return self.session.generate_keypair(KeyType.EC, **common)

    def _check(self, locator: str, name: str, pub: Any, priv: Any) -> None:
        """Check the new pair is what was asked before anyone is told it exists (boulder
        checks every generated key); a pair that is not is deleted again.

        Read through the handles C_GenerateKeyPair returned: a find by ID per key scans every
        object on the token (a quarter of ECDSA throughput at 200 keys). That no other object
        has this ID is settled before (`generate` refuses IDs already there) and after (the
        caller's listing refuses two objects of one class with one ID).

        Only sound while no other process writes to the token: SoftHSM then re-reads its
        object directory under this session, and handles (those C_GenerateKeyPair returned,
        and even those a fresh find returned) were seen to go invalid (ObjectHandleInvalid),
        to read another object's attributes, or to miss the other half.
        """
        kid = bytes.fromhex(locator)
        rsa = algorithm(name).kind == "RSA"
        raw = self._raw()
        try:  # one C_GetAttributeValue per object: each is a round through SoftHSM's store
            a = raw.read(priv.handle, _CHECK_RSA if rsa else _CHECK_EC)
            p = raw.read(pub.handle, _CHECK_PUBLIC_RSA if rsa else _CHECK_PUBLIC)
        except PKCS11Error as e:
            self.destroy([locator])
            raise Refused(f"generated key {locator} is not as asked: {e!r}") from None
        got = ((p[0], ulong(p[1])), (a[0], ulong(a[1])))
        if got != ((kid, ObjectClass.PUBLIC_KEY), (kid, ObjectClass.PRIVATE_KEY)):
            raise Refused(f"generated key {locator}: the new objects do not carry its ID")
        flags = a[2:2 + len(_PRIVATE_FLAGS)]
        label, token, kt, size = a[2 + len(_PRIVATE_FLAGS):]
        attrs: dict[str, Any] = {n: boolean(v) for n, v in zip(_PRIVATE_FLAGS, flags,
                                                                 strict=True)}
        attrs.update(label=(label or b"").decode("utf-8", "replace"),
                     public_label=(p[2] or b"").decode("utf-8", "replace"),
                     token=boolean(token) and boolean(p[3]))
        key_type = ulong(kt)
        if key_type == KeyType.RSA and rsa:
            attrs["type"] = rsa_name(len(size or b"") * 8)
            attrs["public_exponent"] = int.from_bytes(p[4] or b"", "big")
        elif key_type == KeyType.EC and not rsa:
            attrs["type"] = ec_name(size or b"")
        else:
            attrs["type"] = str(key_type)
        wrong = key_problems(self._as_checked(attrs, priv), locator, name)
        if wrong:
            self.destroy([locator])
            raise Refused(f"generated key {locator} is not as asked: {', '.join(wrong)}")
        for cls, o, lab in (("private", priv, attrs["label"]),
                            ("public", pub, attrs["public_label"])):
            rec = {"class": cls, "id": locator, "label": lab, "type": attrs["type"]}
            self._seen[(cls, o.handle)] = rec


    # -- the wrap backup (signer_shim.wrap) -------------------------------------------------

    def mechanisms(self) -> list[str]:
        """The token's mechanisms by name (unknown numbers as hex), for plan-time refusals."""
        out = []
        for m in self.session.token.slot.get_mechanisms():
            out.append(m.name if isinstance(m, Mechanism) else hex(int(m)))
        return sorted(out)

    def key_template(self, method: str) -> dict[str, Any]:
        """Which private-key template this worker's `generate` uses: "tokendir" (sensitive,
        never extractable) or "wrap" (sensitive, extractable only under a trusted wrapping
        key). Sent once after `open` by a signer whose backup method is wrap."""
        if method not in ("tokendir", "wrap"):
            raise Refused(f"unknown key template {method!r}")
        self._private_extra = dict(_WRAP_PRIVATE) if method == "wrap" else {}
        return {"template": method}

    def _as_checked(self, attrs: dict[str, Any], raw: Any) -> dict[str, Any]:
        """The attributes `key_problems` judges. Under the wrap template a key is extractable
        (so never_extractable is false) by design: that is accepted only if it is also
        wrap-with-trusted, and the rest of the rule stays as it is."""
        if not self._private_extra:
            return attrs
        trusted = self._wrap_with_trusted_of(raw)
        ok = attrs["extractable"] and not attrs["never_extractable"] and trusted
        return {**attrs, "extractable": not ok, "never_extractable": ok}

    def _wrap_with_trusted_of(self, priv_or_attrs: Any) -> bool:
        try:
            return bool(priv_or_attrs[Attribute.WRAP_WITH_TRUSTED])
        except (KeyError, PKCS11Error):
            return False

    def import_kek(self, value: str, kek_id: str, label: str, so_pin: str,
                   user_pin: str) -> dict[str, Any]:
        """Put the backup KEK on the token as the SO, so it can be CKA_TRUSTED (a user session
        gets ATTRIBUTE_READ_ONLY for that): AES, token, public (the SO cannot make private
        objects), wrap and unwrap, sensitive, never extractable. The user session is closed
        for it (one login per token) and opened again afterwards. The bytes are zeroed here
        once the token holds them (the str the request came in cannot be)."""
        kid = bytes.fromhex(kek_id)
        if self._kek(kid) is not None:
            raise Refused(f"a backup KEK with ID {kek_id} is already on the token")
        raw = bytearray(base64.b64decode(value))
        token = self.session.token
        try:
            if len(raw) != 32:
                raise Refused("the backup KEK must be 32 bytes (AES-256)")
            self.session.close()
            self.session = None
            self._seen, self._listed_ids = {}, None  # handles are the session's: list afresh
            so = token.open(rw=True, so_pin=so_pin)
            try:
                so.create_object({
                    Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: bytes(raw), Attribute.TOKEN: True,
                    Attribute.PRIVATE: False, Attribute.ID: kid, Attribute.LABEL: label,
                    Attribute.WRAP: True, Attribute.UNWRAP: True, Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False, Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False, Attribute.TRUSTED: True})
            finally:
                so.close()
        finally:
            raw[:] = bytes(len(raw))
            if self.session is None:
                self.session = token.open(rw=True, user_pin=user_pin)
        return {"kek_id": kek_id}

    def _kek(self, kid: bytes) -> Any:
        found = list(self.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                               Attribute.ID: kid}))
        if len(found) > 1:
            raise Refused(f"{len(found)} secret keys share the KEK ID {kid.hex()}")
        return found[0] if found else None

    def find_kek(self, kek_id: str) -> dict[str, Any]:
        """Whether the KEK is on the token, and its attributes that matter."""
        kek = self._kek(bytes.fromhex(kek_id))
        if kek is None:
            return {"present": False}
        a = kek.get_attributes([Attribute.TRUSTED, Attribute.WRAP, Attribute.UNWRAP,
                                Attribute.EXTRACTABLE, Attribute.SENSITIVE, Attribute.TOKEN])
        return {"present": True, "trusted": bool(a[Attribute.TRUSTED]),
                "wrap": bool(a[Attribute.WRAP]), "unwrap": bool(a[Attribute.UNWRAP]),
                "extractable": bool(a[Attribute.EXTRACTABLE]),
                "sensitive": bool(a[Attribute.SENSITIVE]), "token": bool(a[Attribute.TOKEN])}

    def destroy_kek(self, kek_id: str) -> dict[str, Any]:
        kek = self._kek(bytes.fromhex(kek_id))
        if kek is not None:
            kek.destroy()
        return {"destroyed": kek is not None}

    def wrappable(self) -> dict[str, Any]:
        """Per key pair: can a wrap backup take it (extractable, so wrappable)? For the plan."""
        out = {}
        for o in list(self.session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})):
            a = o.get_attributes([Attribute.ID, Attribute.EXTRACTABLE])
            out[bytes(a[Attribute.ID]).hex()] = {
                "extractable": bool(a[Attribute.EXTRACTABLE]),
                "wrap_with_trusted": self._wrap_with_trusted_of(o)}
        return out

    def public_spki(self, locator: str) -> dict[str, Any]:
        """The public key as SubjectPublicKeyInfo DER (what a wrap archive holds and digests)."""
        (pub,) = self._objects(locator, ObjectClass.PUBLIC_KEY)
        return {"der": base64.b64encode(_spki(pub)).decode()}

    def wrap_keys(self, kek_id: str, locators: list[str] | None = None) -> list[dict[str, Any]]:
        """Every key pair (or these) with its private key wrapped under the KEK with
        CKM_AES_KEY_WRAP_PAD (RFC 5649), its public key (SPKI DER), label, type and the
        private key's recorded attributes. Nothing leaves in the clear: the token refuses to
        wrap a sensitive key with anything but a trusted key."""
        kek = self._kek(bytes.fromhex(kek_id))
        if kek is None:
            raise Refused(f"the backup KEK {kek_id} is not on this token")
        pairs = self.audit(locators)
        out = []
        for loc in sorted(pairs):
            (priv,) = self._objects(loc, ObjectClass.PRIVATE_KEY)
            (pub,) = self._objects(loc, ObjectClass.PUBLIC_KEY)
            try:
                wrapped = kek.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            except PKCS11Error as e:
                raise Refused(f"the token will not wrap key {loc}: {type(e).__name__}") from None
            attrs = {}
            for name, attr in _WRAP_RECORDED.items():
                try:
                    attrs[name] = bool(priv[attr])
                except PKCS11Error:
                    continue
            out.append({"locator": loc, "label": pairs[loc]["label"], "type": pairs[loc]["type"],
                        "public_label": pairs[loc]["public_label"],
                        "wrapped": base64.b64encode(wrapped).decode(),
                        "public_der": base64.b64encode(_spki(pub)).decode(),
                        "attributes": attrs})
        return out

    def unwrap_keys(self, kek_id: str, keys: list[dict[str, Any]]) -> dict[str, Any]:
        """Unwrap each key under the KEK onto the token with its recorded attributes, and put
        its public key beside it. All or nothing: on any failure the objects this call made are
        destroyed before the error goes back."""
        kek = self._kek(bytes.fromhex(kek_id))
        if kek is None:
            raise Refused(f"the backup KEK {kek_id} is not on this token")
        existing = self._ids()
        clash = sorted(k["locator"] for k in keys if k["locator"] in existing)
        if clash:
            raise Refused(f"key objects with these IDs are already on the token: "
                          f"{', '.join(clash[:5])}")
        made: list[Any] = []
        self._listed_ids = None
        try:
            for k in keys:
                made += self._unwrap_one(kek, k)
        except Exception as e:
            for o in made:
                with contextlib.suppress(PKCS11Error):
                    o.destroy()
            if isinstance(e, PKCS11Error):
                raise Refused(f"unwrapping failed ({type(e).__name__}); nothing of the backup "
                              "was left on the token") from None
            raise
        return {"unwrapped": [k["locator"] for k in keys]}

    def _unwrap_one(self, kek: Any, k: dict[str, Any]) -> list[Any]:
        kid = bytes.fromhex(k["locator"])
        kind = algorithm(k["type"]).kind
        key_type = KeyType.RSA if kind == "RSA" else KeyType.EC
        allowed = {n: a for n, a in _WRAP_RECORDED.items() if n in k["attributes"]}
        template: dict[Attribute, Any] = {a: bool(k["attributes"][n]) for n, a in allowed.items()}
        # python-pkcs11's defaults put public-key capabilities on the template: drop them
        template.update({Attribute.ENCRYPT: pkcs11.DEFAULT, Attribute.VERIFY: pkcs11.DEFAULT,
                         Attribute.WRAP: pkcs11.DEFAULT})
        made = []
        priv = kek.unwrap_key(ObjectClass.PRIVATE_KEY, key_type, base64.b64decode(k["wrapped"]),
                              id=kid, label=k["label"], mechanism=Mechanism.AES_KEY_WRAP_PAD,
                              store=True, capabilities=MechanismFlag.SIGN, template=template)
        made.append(priv)
        der = base64.b64decode(k["public_der"])
        if kind == "RSA":
            attrs = decode_rsa_public_key(PublicKeyInfo.load(der)["public_key"].parsed.dump())
        else:
            attrs = decode_ec_public_key(der)
        attrs.update({Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.ID: kid,
                      Attribute.LABEL: k.get("public_label") or k["label"],
                      Attribute.VERIFY: True, Attribute.ENCRYPT: False, Attribute.WRAP: False})
        try:
            made.append(self.session.create_object(attrs))
        except Exception:
            priv.destroy()
            raise
        return made


def _spki_of(kt: int | None, params: bytes | None, point: bytes | None,
             modulus: bytes | None, exponent: bytes | None) -> bytes | None:
    """SubjectPublicKeyInfo DER from a public key's raw attributes, as `_spki` makes it; None
    if they do not make one."""
    if kt == KeyType.RSA and modulus and exponent:
        return _rsa_spki(modulus, exponent)
    if kt == KeyType.EC and params and point:
        return bytes(PublicKeyInfo({
            "algorithm": {"algorithm": "ec", "parameters": ECDomainParameters.load(params)},
            "public_key": bytes(OctetString.load(point))}).dump())
    return None


def _spki(pub: Any) -> bytes:
    """A PKCS#11 public key object as SubjectPublicKeyInfo DER."""
    if pub[Attribute.KEY_TYPE] == KeyType.RSA:
        return _rsa_spki(pub[Attribute.MODULUS], pub[Attribute.PUBLIC_EXPONENT])
    return bytes(encode_ec_public_key(pub))


def _rsa_spki(modulus: bytes, exponent: bytes) -> bytes:
    """An RSA public key's SubjectPublicKeyInfo DER from its modulus and exponent bytes."""
    return RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(
        modulus, "big")).public_key().public_bytes(Encoding.DER,
                                                   PublicFormat.SubjectPublicKeyInfo)


def serve(worker: Worker, inp: BinaryIO, out: BinaryIO) -> None:
    def send(message: dict[str, Any]) -> None:
        out.write(encode(message))
        out.flush()

    for line in inp:
        if not line.strip():
            continue
        msg = decode(line)
        rid, method, params = msg["id"], msg.get("method"), dict(msg.get("params") or {})

        def progress(done: int, total: int, what: str, rid: Any = rid) -> None:
            send({"id": rid, "progress": {"done": done, "total": total, "what": what}})

        try:
            if method == "open":
                result: Any = worker.open(**params)
            elif method == "ping":  # also before open: the caller waits for our imports
                result = "pong"
            elif worker.session is None:
                raise Refused("the first request must be open")
            elif method == "generate":
                result = worker.generate(**params, progress=progress)
            elif method in _PLAIN_METHODS or method in _WRAP_METHODS:
                result = getattr(worker, method)(**params)
            else:
                raise Refused(f"unknown method {method!r}")
        except Exception as e:  # every failure goes back to the caller, the worker lives on
            send({"id": rid, "error": {"type": type(e).__name__, "message": str(e) or repr(e)}})
        else:
            send({"id": rid, "result": result})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m signer_shim.pkcs11.worker")
    ap.add_argument("--module", required=True)
    ap.add_argument("--label", required=True)
    args = ap.parse_args(argv)
    if "SOFTHSM2_CONF" not in os.environ and "softhsm" in args.module:
        print("worker: SOFTHSM2_CONF is not set", file=sys.stderr)
        return 2
    # Keep the protocol channel ours: anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(Worker(args.module, args.label), sys.stdin.buffer, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
