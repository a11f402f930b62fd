"""The signer's key-state source: what each key on the token is for and where it is in its life.

It plays the part of OpenDNSSEC's KASP database for the planning rules the ceremony needs:
which keys are dead (to purge), which are unused and ready in the pool (to subtract when
generating), and how many zones each policy signs (to multiply the per-zone need). A JSON file in
the signer's state directory, replaced atomically so a crash never leaves it half written.

States follow OpenDNSSEC's: `generate` (made, not yet used by any zone: a pool key), `publish`,
`ready`, `active`, `retire`, `dead`; plus `purged` for a dead key deleted from the token (kept so
the history of a locator is not lost).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from keyrite.files import write_atomic
from signer_shim.algorithms import algorithm

VERSION = 1
STATES = ("generate", "publish", "ready", "active", "retire", "dead", "purged")
ROLES = ("KSK", "ZSK", "CSK")
UNUSED = "generate"


class KeyStateError(ValueError):
    """The key-state file does not hold what it must; the message names the entry."""


@dataclass(frozen=True, kw_only=True)
class KeyRecord:
    locator: str
    policy: str
    role: str
    algorithm: str
    state: str
    zone: str | None = None  # None for a pool key no zone uses yet

    def __post_init__(self) -> None:
        if len(self.locator) != 32 or any(c not in "0123456789abcdef" for c in self.locator):
            raise KeyStateError(f"key {self.locator!r}: locator must be 32 lower-case hex digits")
        if self.role not in ROLES:
            raise KeyStateError(f"key {self.locator}: role {self.role!r} not one of {ROLES}")
        if self.state not in STATES:
            raise KeyStateError(f"key {self.locator}: state {self.state!r} not one of {STATES}")
        try:
            algorithm(self.algorithm)
        except ValueError as e:
            raise KeyStateError(f"key {self.locator}: {e}") from None

    @property
    def unused(self) -> bool:
        return self.state == UNUSED and self.zone is None


_RECORD_FIELDS = tuple(f.name for f in fields(KeyRecord))


@dataclass(frozen=True)
class KeyState:
    zones: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # policy -> zone names
    keys: Mapping[str, KeyRecord] = field(default_factory=dict)  # locator -> record

    def zone_count(self, policy: str) -> int:
        return len(self.zones.get(policy, ()))

    def dead(self) -> list[str]:
        return sorted(k for k, r in self.keys.items() if r.state == "dead")

    def unused(self, policy: str, role: str, algorithm: str, on_token: Iterable[str]) -> int:
        """Pool keys of this policy key that are really on the token (a key only on paper is no
        help when signing)."""
        present = set(on_token)
        return sum(
            1
            for r in self.keys.values()
            if r.unused and r.policy == policy and r.role == role and r.algorithm == algorithm
            and r.locator in present
        )

    def with_keys(self, records: Iterable[KeyRecord]) -> KeyState:
        """Add records; a locator already recorded with the same record is left as it is
        (so re-running a finished step changes nothing), with a different one is an error."""
        keys = dict(self.keys)
        for r in records:
            old = keys.get(r.locator)
            if old is not None and old != r:
                raise KeyStateError(
                    f"key {r.locator} is already recorded as {old.state}/{old.role}")
            keys[r.locator] = r
        return replace(self, keys=keys)

    def with_state(self, locators: Iterable[str], state: str) -> KeyState:
        if state not in STATES:
            raise KeyStateError(f"state {state!r} not one of {STATES}")
        keys = dict(self.keys)
        for loc in locators:
            if loc not in keys:
                raise KeyStateError(f"key {loc} is not in the key state")
            keys[loc] = replace(keys[loc], state=state)
        return replace(self, keys=keys)

    def to_json(self) -> bytes:
        doc = {
            "version": VERSION,
            "policies": {p: {"zones": list(z)} for p, z in sorted(self.zones.items())},
            # the fields by name: asdict deep-copies every value (12 ms against 2 for 320
            # keys, on every generate and purge; the values are str or None)
            "keys": [{f: getattr(r, f) for f in _RECORD_FIELDS}
                     for _, r in sorted(self.keys.items())],
        }
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, source: str = "key state") -> KeyState:
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise KeyStateError(f"{source}: not JSON: {e}") from None
        _expect_keys(doc, {"version", "policies", "keys"}, source)
        if doc["version"] != VERSION:
            raise KeyStateError(f"{source}: version {doc['version']!r}, expected {VERSION}")
        zones: dict[str, tuple[str, ...]] = {}
        for name, pol in doc["policies"].items():
            _expect_keys(pol, {"zones"}, f"{source}: policies.{name}")
            zones[name] = tuple(pol["zones"])
        keys: dict[str, KeyRecord] = {}
        for i, k in enumerate(doc["keys"]):
            _expect_keys(k, {"locator", "policy", "role", "algorithm", "state", "zone"},
                         f"{source}: keys[{i}]")
            r = KeyRecord(**k)
            if r.locator in keys:
                raise KeyStateError(f"{source}: key {r.locator} recorded twice")
            keys[r.locator] = r
        return cls(zones, keys)


def _expect_keys(obj: Any, keys: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise KeyStateError(f"{where}: expected an object")
    if set(obj) != keys:
        extra, missing = sorted(set(obj) - keys), sorted(keys - set(obj))
        raise KeyStateError(f"{where}: unknown keys {extra}, missing keys {missing}")


def load_keystate(path: Path) -> KeyState:
    """The key state at `path`; an empty one if the file does not exist yet."""
    path = Path(path)
    if not path.exists():
        return KeyState()
    return KeyState.from_json(path.read_bytes(), str(path))


def save_keystate(path: Path, state: KeyState) -> None:
    write_atomic(Path(path), state.to_json())
