"""A cast of officers and the shim's authority file for tests that send real quorums.

The keys are made once per test session (Ed25519 is cheap, but the same cast everywhere keeps
failures readable). The rules mirror the bundled script's: purge at 31 and generate at 33 by one
SA, backup at 43 by two KSOs and one DSO.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.approval import Approval, public_key_text, sign_approval
from ceremony.digests import operation_digest
from signer_shim.authority import Authority, Officer, Rule

CEREMONY = "test-ceremony"
SCRIPT_SHA256 = "ab" * 32
STEPS = {"purge": 31, "generate": 33, "backup": 43}
SEATS = {"sa1": ("Sam", "SA"), "sa2": ("Sue", "SA"), "kso1": ("Kim", "KSO"),
         "kso2": ("Kai", "KSO"), "dso1": ("Dee", "DSO"), "w1": ("Wes", "W")}


@cache
def keys() -> Mapping[str, Ed25519PrivateKey]:
    return {seat: Ed25519PrivateKey.generate() for seat in SEATS}


def cast_authority() -> Authority:
    officers = {}
    for seat, (name, role) in SEATS.items():
        k = public_key_text(keys()[seat].public_key())
        officers[k] = Officer(name, role, k)
    rules = (Rule("purge", STEPS["purge"], (("SA", 1),)),
             Rule("generate", STEPS["generate"], (("SA", 1),)),
             Rule("backup", STEPS["backup"], (("KSO", 2), ("DSO", 1))))
    return Authority(CEREMONY, SCRIPT_SHA256, officers, rules)


def approve(operation: Mapping[str, Any], *seats: str, step: int | None = None,
            expires_in: int = 300, now: float | None = None, ceremony: str = CEREMONY,
            script_sha256: str = SCRIPT_SHA256, digest: str | None = None,
            signer: Ed25519PrivateKey | None = None) -> list[Approval]:
    """Approvals by `seats` for `operation` at its rule's step (or `step`)."""
    at = time.time() if now is None else now
    out = []
    for seat in seats:
        out.append(sign_approval(
            signer or keys()[seat], ceremony=ceremony,
            step=step if step is not None else STEPS[str(operation["op"])],
            script_sha256=script_sha256, operation=digest or operation_digest(operation),
            expires=int(at) + expires_in))
    return out


def as_dicts(approvals: list[Approval]) -> list[dict[str, Any]]:
    return [a.to_dict() for a in approvals]
