"""The restore drill's verdict (pure): is what a backup restores the HSM it was taken from?

The seed never proves a backup can be restored; keyrite does, before the master copy is sealed:
the backup is restored into a scratch token and its keys are compared with the live HSM's, by
locator and key type, and the token's fingerprint (its identity, docs/signer.md) with the live
one. A key the HSM holds that the backup lacks is the failure that matters; a key only the
backup holds means the HSM lost one since (or the backup is another token's).
"""

from __future__ import annotations

from typing import Any

from signer_shim.interface import Inventory


def compare(live: Inventory, restored: Inventory, live_fingerprint: str,
            restored_fingerprint: str) -> dict[str, Any]:
    have = {(k.locator, k.type) for k in live.keys}
    got = {(k.locator, k.type) for k in restored.keys}
    missing = sorted(loc for loc, _ in have - got)
    extra = sorted(loc for loc, _ in got - have)
    same_token = live_fingerprint == restored_fingerprint
    return {
        "match": not missing and not extra and same_token,
        "live": len(have), "restored": len(got), "missing": missing, "extra": extra,
        "fingerprint_match": same_token,
    }
