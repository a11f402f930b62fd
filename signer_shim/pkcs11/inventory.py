"""From the worker's raw object list to key pairs: what counts as a key, and what is broken.

A key is a private and a public key object sharing one CKA_ID; its locator is that ID as 32 hex
digits (OpenDNSSEC also sets CKA_LABEL to it). An ID with only one of the two objects is a *half*
pair: what a crash in the middle of C_GenerateKeyPair (or of a delete) can leave. Halves are not
keys: they are not listed, and generation repairs the planned ones. Two objects of the same class
with one ID are ambiguous and stop everything, as kskm and boulder refuse a duplicate label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signer_shim.interface import Inventory, KeyInfo, SignerError


@dataclass(frozen=True)
class TokenContents:
    inventory: Inventory
    halves: frozenset[str]  # locators with only a public or only a private key object

    @property
    def locators(self) -> frozenset[str]:
        return frozenset(k.locator for k in self.inventory.keys)


def contents_from_objects(repository: str, objects: Iterable[Mapping[str, Any]]) -> TokenContents:
    """`objects`: the worker's `list_objects` result, dicts with class, id (hex) and type."""
    seen: dict[tuple[str, str], Mapping[str, Any]] = {}
    for o in objects:
        key = (o["class"], o["id"])
        if key in seen:
            raise SignerError(f"two {o['class']} key objects on the token share the ID {o['id']}")
        seen[key] = o
    privates = {i: o for (c, i), o in seen.items() if c == "private"}
    publics = {i for (c, i) in seen if c == "public"}
    keys = tuple(
        KeyInfo(locator=i, type=privates[i]["type"]) for i in sorted(set(privates) & publics)
    )
    halves = frozenset(set(privates) ^ publics)
    return TokenContents(Inventory(repository=repository, keys=keys), halves)


#: What every ceremony private key must show (kskm and boulder check each key they make).
REQUIRED_PRIVATE = {"sensitive": True, "extractable": False, "always_sensitive": True,
                    "never_extractable": True, "local": True, "private": True, "sign": True}


def key_problems(attrs: Mapping[str, Any], locator: str, expected_type: str) -> list[str]:
    """What is wrong with a key pair's attributes (the worker's `key_attributes`); [] if none."""
    wrong = [k for k, v in REQUIRED_PRIVATE.items() if attrs.get(k) != v]
    if attrs.get("type") != expected_type:
        wrong.append(f"type {attrs.get('type')} is not {expected_type}")
    if attrs.get("public_exponent", 65537) != 65537:
        wrong.append("public exponent is not 65537")
    if attrs.get("label") != locator or attrs.get("public_label") != locator:
        wrong.append("label is not the ID")
    if not attrs.get("token"):
        wrong.append("not a token object")
    return wrong


def wrap_judged(audit: Mapping[str, Any], wrappable: Mapping[str, Any]) -> dict[str, Any]:
    """Audited attributes judged for the wrap method: a key that is extractable, and so not
    never-extractable, is right if it is also wrap-with-trusted (`wrappable`, the worker's
    answer): it leaves the token only wrapped by the trusted KEK. Then `key_problems` applies
    its usual rule to what this returns."""
    out = {}
    for loc, a in audit.items():
        ok = (a.get("extractable") and not a.get("never_extractable")
              and wrappable.get(loc, {}).get("wrap_with_trusted"))
        out[loc] = {**a, "extractable": not ok, "never_extractable": bool(ok)}
    return out


def diff(before: Iterable[str], after: Iterable[str]) -> tuple[list[str], list[str]]:
    """(added, removed), each sorted."""
    b, a = set(before), set(after)
    return sorted(a - b), sorted(b - a)
