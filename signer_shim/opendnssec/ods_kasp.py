"""Reading OpenDNSSEC 2.1's view of the keys: its KASP database (read-only) and its command output.

Why both: `ods-enforcer key list --all --verbose --parsable` is the enforcer's own word on each
key's state (what it calls `dead` is what `key purge` removes), while the pool of unused keys,
the zones per policy and the policy keys' lifetimes — what `key generate` counts with — are only
in the database. The database is opened read-only (`mode=ro`) and never written here: the
enforcer owns it.

Enumerations, from OpenDNSSEC 2.1's schema: hsmKey.state 1 UNUSED, 2 PRIVATE, 3 SHARED,
4 DELETE; role 1 KSK, 2 ZSK, 3 CSK; DNSSEC algorithm 5/7/8/10 RSA, 13 ECDSA P-256.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from signer_shim.interface import SignerError

ROLES = {1: "KSK", 2: "ZSK", 3: "CSK"}
HSM_UNUSED = 1
_RSA = {5, 7, 8, 10}


def algorithm_name(dnssec_algorithm: int, bits: int) -> str:
    """Our name for a policy key's algorithm ("RSA/2048", "ECDSA/P-256")."""
    if dnssec_algorithm in _RSA:
        return f"RSA/{bits}"
    if dnssec_algorithm == 13:
        return "ECDSA/P-256"
    return f"DNSSEC-{dnssec_algorithm}/{bits}"


def hsmutil_type(text: str) -> str:
    """ods-hsmutil's type column to our names: `ECDSA/256` is `ECDSA/P-256`."""
    return "ECDSA/P-256" if text == "ECDSA/256" else text


@dataclass(frozen=True)
class KaspPolicyKey:
    policy: str
    role: str
    algorithm: str
    lifetime_seconds: int
    zones: int  # zones on the policy (1 if the policy shares keys)
    unused: int  # UNUSED hsmKeys of this policy, role, algorithm and size


@dataclass(frozen=True)
class EnforcerKey:
    """One line of `key list --all --verbose --parsable`."""

    zone: str
    role: str
    state: str
    locator: str
    repository: str


@contextmanager
def _readonly(db: Path) -> Iterator[sqlite3.Connection]:
    if not Path(db).exists():
        raise SignerError(f"the KASP database {db} does not exist")
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        yield conn


def policy_keys(db: Path) -> list[KaspPolicyKey]:
    """Every policy key the enforcer knows, with the figures `key generate` counts with."""
    with _readonly(db) as conn:
        rows = conn.execute(
            "SELECT p.id, p.name, p.keysShared, k.role, k.algorithm, k.bits, k.lifetime,"
            " (SELECT COUNT(*) FROM zone z WHERE z.policyId = p.id),"
            " (SELECT COUNT(*) FROM hsmKey h WHERE h.policyId = p.id AND h.role = k.role"
            "   AND h.algorithm = k.algorithm AND h.bits = k.bits AND h.state = ?)"
            " FROM policy p JOIN policyKey k ON k.policyId = p.id ORDER BY p.name, k.role",
            (HSM_UNUSED,),
        ).fetchall()
    out = []
    for _pid, name, shared, role, alg, bits, lifetime, zones, unused in rows:
        out.append(KaspPolicyKey(
            policy=name, role=ROLES.get(role, str(role)), algorithm=algorithm_name(alg, bits),
            lifetime_seconds=int(lifetime), zones=min(zones, 1) if shared else int(zones),
            unused=int(unused)))
    return out


def known_locators(db: Path) -> dict[str, str]:
    """locator -> policy name, for every key the enforcer has generated and not deleted."""
    with _readonly(db) as conn:
        rows = conn.execute(
            "SELECT h.locator, p.name FROM hsmKey h JOIN policy p ON p.id = h.policyId").fetchall()
    return {loc: name for loc, name in rows}


def dead_keys(db: Path) -> list[tuple[str, str]]:
    """(zone, locator) of every key whose DS, DNSKEY, RRSIG DNSKEY and RRSIG records are all
    HIDDEN (0) or NA (4): what `key purge` removes. `key list` keeps calling such keys `retire`
    (seen on 2.1.12), so its state column cannot be used to find them."""
    with _readonly(db) as conn:
        rows = conn.execute(
            "SELECT z.name, h.locator FROM keyData k JOIN hsmKey h ON h.id = k.hsmKeyId"
            " JOIN zone z ON z.id = k.zoneId WHERE NOT EXISTS (SELECT 1 FROM keyState s"
            "  WHERE s.keyDataId = k.id AND s.state NOT IN (0, 4))"
            " AND EXISTS (SELECT 1 FROM keyState s WHERE s.keyDataId = k.id)"
            " ORDER BY z.name, h.locator").fetchall()
    return [(z, loc) for z, loc in rows]


def parse_key_list(text: str) -> list[EnforcerKey]:
    """`key list --all --verbose --parsable`: zone;type;state;next;size;alg;cka_id;repo;keytag.
    Lines of another shape (the client's "sock set to ..." chatter) are skipped; a line that
    has the shape but not a 32-hex-digit CKA_ID is an error."""
    keys = []
    for line in text.splitlines():
        parts = line.split(";")
        if len(parts) != 9:
            continue
        zone, role, state, _next, _size, _alg, locator, repo, _tag = parts
        if len(locator) != 32 or any(c not in "0123456789abcdef" for c in locator):
            raise SignerError(f"unexpected CKA_ID in the enforcer's key list: {line!r}")
        keys.append(EnforcerKey(zone, role, state, locator, repo))
    return keys


def copy_database(db: Path, target: Path) -> bytes:
    """A consistent copy of the KASP database (sqlite3's online backup: a transaction-consistent
    snapshot even while the enforcer writes), written to `target` and returned as bytes."""
    with _readonly(db) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return Path(target).read_bytes()


def database_summary(db: Path) -> dict[str, int | list[str]]:
    """What a KASP database holds, as an officer can check it against the enforcer it came from:
    the keys it knows (generated and not deleted), its zones, its policies' names."""
    keys = len(known_locators(db))
    with _readonly(db) as conn:
        zones = conn.execute("SELECT COUNT(*) FROM zone").fetchone()[0]
        policies = [r[0] for r in conn.execute("SELECT name FROM policy ORDER BY name")]
    return {"keys": keys, "zones": int(zones), "policies": policies}
