"""The signer's pure rules: how many keys to make, what an operation must look like, what a
finished operation must have changed. No device, no file, no clock: the caller passes the key
state and the token's contents in, and gets plain values out.

Why locators are chosen when planning and not when generating: the plan is what officers approve,
so it must name exactly what will appear on the token; and a retry after a crash can then tell
the keys it already made (planned locators present) from the ones still missing.
"""

from __future__ import annotations

import datetime
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ceremony.durations import parse_duration
from keyrite import sealing
from signer_shim.algorithms import algorithm
from signer_shim.interface import PolicyKeys, SignerError
from signer_shim.keystate import ROLES, KeyRecord, KeyState
from signer_shim.pkcs11.inventory import diff
from signer_shim.restore import WRAP_RESTORE_FIELDS, check_restore_shape
from signer_shim.tokenid import is_fingerprint

#: Matched whole (`fullmatch`: `$` lets a final newline through), ASCII digits only.
BACKUP_FILE = re.compile(r"key-backup-([0-9]{4})-([0-9]{2})-([0-9]{2})\.tar\.gz")
_LOCATOR = re.compile(r"[0-9a-f]{32}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: The years a backup may be dated in: a ceremony happens now, not in year 0 or 9999.
BACKUP_YEARS = (2000, 2199)


#: The most keys one generate operation may make unless the signer config says otherwise
#: (`signer.max_keys_per_operation`): a plan is drawn, listed and executed in the one HSM
#: queue, so a request for millions (P1Y of keys that live a second) would hold it for good.
DEFAULT_MAX_KEYS = 10000


class PlanRefused(SignerError):
    """A plan the signer will not make as asked (more keys than its cap): the request's
    fault, answered as BadRequest on the wire; nothing was listed or allocated."""


def new_locator() -> str:
    """16 random bytes as 32 hex digits: OpenDNSSEC's CKA_ID / CKA_LABEL."""
    return secrets.token_hex(16)


def periods(duration_seconds: int, lifetime_seconds: int) -> int:
    """How many keys one zone uses up in `duration`: ceil(duration / lifetime)."""
    if duration_seconds <= 0 or lifetime_seconds <= 0:
        raise ValueError("duration and lifetime must be positive")
    return -(-duration_seconds // lifetime_seconds)


def keys_needed(duration_seconds: int, lifetime_seconds: int, zones: int, unused: int) -> int:
    """OpenDNSSEC's count for one policy key: periods x zones, less the unused pool keys,
    never below 0."""
    return max(0, periods(duration_seconds, lifetime_seconds) * zones - unused)


def _over_cap(count: int, cap: int, at_least: bool) -> PlanRefused:
    return PlanRefused(
        f"plan_generate would make {'at least ' if at_least else ''}{count} keys in one "
        f"operation; this signer makes at most {cap} (signer.max_keys_per_operation): "
        "plan a shorter duration, or check the keys' lifetimes")


def check_count(count: int, cap: int) -> None:
    """Refuse a plan of exactly `count` keys when it is over `cap`."""
    if count > cap:
        raise _over_cap(count, cap, at_least=False)


def check_generate_size(keys: Sequence[PolicyKeys], duration_seconds: int, state: KeyState,
                        cap: int) -> None:
    """Refuse, from the key state alone (before the token is listed or anything allocated), a
    plan that is over `cap` keys even if every unused pool key of the key state is on the
    token: a lower bound on the count, so nothing under the cap is refused here."""
    least = sum(keys_needed(duration_seconds, pk.lifetime_seconds, state.zone_count(pk.policy),
                            state.unused(pk.policy, pk.role, pk.algorithm, state.keys))
                for pk in keys)
    if least > cap:
        raise _over_cap(least, cap, at_least=True)


def generate_batches(
    keys: Sequence[PolicyKeys],
    duration: str,
    state: KeyState,
    on_token: Iterable[str],
    locator: Callable[[], str] = new_locator,
    cap: int | None = None,
) -> list[dict[str, Any]]:
    """One batch per policy key, with its arithmetic shown and its locators drawn. With a
    `cap`, a plan of more keys than that is refused before a single locator is drawn."""
    seconds = parse_duration(duration).seconds
    present = set(on_token)
    taken = present | set(state.keys)
    seen: set[tuple[str, str]] = set()
    counted = []
    for pk in keys:
        if pk.role not in ROLES:
            raise SignerError(f"policy {pk.policy}: unknown key role {pk.role!r}")
        try:
            algorithm(pk.algorithm)
        except ValueError as e:
            raise SignerError(f"policy {pk.policy} {pk.role}: {e}") from None
        if (pk.policy, pk.role) in seen:
            raise SignerError(f"policy {pk.policy} declares its {pk.role} twice")
        seen.add((pk.policy, pk.role))
        zones = state.zone_count(pk.policy)
        unused = state.unused(pk.policy, pk.role, pk.algorithm, present)
        counted.append((pk, zones, unused, keys_needed(seconds, pk.lifetime_seconds, zones,
                                                       unused)))
    total = sum(c[3] for c in counted)
    if cap is not None and total > cap:
        raise _over_cap(total, cap, at_least=False)
    batches = []
    for pk, zones, unused, count in counted:
        locators: list[str] = []
        while len(locators) < count:
            loc = locator()
            if loc not in taken:
                taken.add(loc)
                locators.append(loc)
        batches.append({
            "policy": pk.policy, "role": pk.role, "algorithm": pk.algorithm,
            "lifetime_seconds": pk.lifetime_seconds, "zones": zones, "unused": unused,
            "count": count, "locators": locators,
        })
    return batches


def plan_generate(
    token: str, keys: Sequence[PolicyKeys], duration: str, state: KeyState,
    on_token: Iterable[str], locator: Callable[[], str] = new_locator, cap: int | None = None,
) -> dict[str, Any]:
    batches = generate_batches(keys, duration, state, on_token, locator, cap)
    return {"op": "generate", "token": token, "duration": duration, "batches": batches}


def plan_purge(token: str, state: KeyState, on_token: Iterable[str]) -> dict[str, Any]:
    """Dead in the key state AND on the token: a dead key already gone is nothing to delete,
    and a key the key state does not call dead is never touched."""
    present = set(on_token)
    return {"op": "purge", "token": token, "delete": [k for k in state.dead() if k in present]}


def backup_date_problem(date: Any) -> str | None:
    """Why `date` cannot date a backup (None if it can): it must be a real calendar date,
    YYYY-MM-DD in ASCII digits, in a year of BACKUP_YEARS."""
    if not isinstance(date, str) or not _DATE.fullmatch(date):
        return f"backup date {str(date)[:40]!r} is not of the form YYYY-MM-DD"
    try:
        day = datetime.date.fromisoformat(date)
    except ValueError:
        return f"backup date {date} is not a calendar date"
    lo, hi = BACKUP_YEARS
    if not lo <= day.year <= hi:
        return f"backup date {date} is not in the years {lo} to {hi}"
    return None


def plan_backup(token: str, date: str) -> dict[str, Any]:
    problem = backup_date_problem(date)
    if problem is not None:
        raise SignerError(problem)
    return {"op": "backup", "token": token, "file": f"key-backup-{date}.tar.gz"}


#: The most KEK shares (SLIP-39 shares of one group: 16) and a seat name's longest length.
MAX_KEK_SHARES = 16
MAX_SEAT = 32


def kek_problem(threshold: Any, holders: Any) -> str | None:
    """Why (`threshold`, `holders`) cannot be a backup KEK's share plan (None if it can): 2 <=
    M <= N <= MAX_KEK_SHARES; each holder exactly {"seat", "key"}, seats distinct non-empty
    strings of at most MAX_SEAT printable characters, keys distinct Curve25519 keys (Z85)."""
    if type(threshold) is not int:
        return "threshold must be an integer"
    if not isinstance(holders, list):
        return "holders must be a list"
    n = len(holders)
    if not 2 <= threshold <= n <= MAX_KEK_SHARES:
        return (f"need 2 <= threshold ({threshold}) <= holders ({n}) <= {MAX_KEK_SHARES}")
    seats, keys = set(), set()
    for i, h in enumerate(holders):
        if not isinstance(h, Mapping) or set(h) != {"seat", "key"}:
            return f"holders[{i}] must be an object with exactly seat and key"
        seat, key = h["seat"], h["key"]
        if (not isinstance(seat, str) or not seat or len(seat) > MAX_SEAT
                or not seat.isprintable()):
            return (f"holders[{i}].seat must be a non-empty printable string of at most "
                    f"{MAX_SEAT} characters")
        try:
            sealing.z85_decode(key)
        except sealing.SealError:
            return f"holders[{i}].key is not a Curve25519 key (40 Z85 characters)"
        try:
            sealing.seal(key, b"", "keyrite: can this key receive a box?")
        except sealing.SealError:  # a low-order point: every box to it would be readable
            return f"holders[{i}].key cannot receive a sealed box (a low-order point)"
        if seat in seats:
            return f"holders[{i}]: seat {seat!r} is named twice"
        if key in keys:
            return f"holders[{i}]: that key is already another seat's"
        seats.add(seat)
        keys.add(key)
    return None


def plan_kek(token: str, threshold: int, holders: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """The backup KEK's creation: its shares' scheme and who holds which (in this order)."""
    rows = [dict(h) for h in holders]
    problem = kek_problem(threshold, rows)
    if problem is not None:
        raise SignerError(f"kek: {problem}")
    return {"op": "kek", "token": token, "threshold": threshold,
            "holders": [{"seat": h["seat"], "key": h["key"]} for h in rows]}


_SHAPES: Mapping[str, frozenset[str]] = {
    "purge": frozenset({"op", "token", "delete"}),
    "generate": frozenset({"op", "token", "duration", "batches"}),
    "backup": frozenset({"op", "token", "file"}),
    "restore": frozenset({"op", "token", "file", "sha256", "backup_token", "repository", "keys"}),
    "kek": frozenset({"op", "token", "threshold", "holders"}),
}
_BATCH = frozenset(
    {"policy", "role", "algorithm", "lifetime_seconds", "zones", "unused", "count", "locators"}
)


def check_operation(op: Mapping[str, Any], token: str) -> None:
    """Refuse anything but a well-formed operation planned for this token, before any device
    call: the approved value is the only input that decides what happens."""
    kind = op.get("op") if isinstance(op, Mapping) else None
    if kind not in _SHAPES:
        raise SignerError(f"unknown operation {kind!r} (expected one of {sorted(_SHAPES)})")
    shape = _SHAPES[kind]
    if kind == "restore" and op.get("method") == "wrap":  # a wrap backup's restore
        shape = shape | WRAP_RESTORE_FIELDS
    if set(op) != shape:
        extra, missing = sorted(set(op) - shape), sorted(shape - set(op))
        raise SignerError(f"{kind} operation: unknown keys {extra}, missing keys {missing}")
    if not isinstance(op["token"], str) or not is_fingerprint(op["token"]):
        raise SignerError(f"{kind} operation: token {op['token']!r} is not a token fingerprint")
    if op["token"] != token:
        raise SignerError(f"{kind} operation is for token {op['token']}, this token is {token}")
    if kind == "purge":
        _check_locators(op["delete"], "purge operation: delete")
        if list(op["delete"]) != sorted(set(op["delete"])):
            raise SignerError("purge operation: delete must be sorted and without repeats")
    elif kind in ("backup", "restore"):
        m = BACKUP_FILE.fullmatch(op["file"]) if isinstance(op["file"], str) else None
        if m is None or backup_date_problem("-".join(m.groups())) is not None:
            raise SignerError(f"{kind} operation: bad file name {op['file']!r}")
        if kind == "restore":
            check_restore_shape(op)
    elif kind == "kek":
        problem = kek_problem(op["threshold"], op["holders"])
        if problem is not None:
            raise SignerError(f"kek operation: {problem}")
    else:
        parse_duration(op["duration"])
        if not isinstance(op["batches"], list):
            raise SignerError("generate operation: batches must be a list")
        all_locators: list[str] = []
        for i, b in enumerate(op["batches"]):
            if not isinstance(b, Mapping) or set(b) != _BATCH:
                raise SignerError(
                    f"generate operation: batches[{i}] must have keys {sorted(_BATCH)}")
            try:
                algorithm(b["algorithm"])
            except ValueError as e:
                raise SignerError(f"generate operation: batches[{i}]: {e}") from None
            if b["role"] not in ROLES:
                raise SignerError(f"generate operation: batches[{i}]: unknown role {b['role']!r}")
            _check_locators(b["locators"], f"generate operation: batches[{i}].locators")
            if len(b["locators"]) != b["count"]:
                raise SignerError(f"generate operation: batches[{i}]: count is not the locators'")
            all_locators += b["locators"]
        if len(set(all_locators)) != len(all_locators):
            raise SignerError("generate operation: a locator is planned twice")


def _check_locators(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(
        isinstance(x, str) and _LOCATOR.fullmatch(x) for x in value
    ):
        raise SignerError(f"{where} must be a list of 32-hex-digit locators")


@dataclass(frozen=True)
class PlannedKey:
    locator: str
    algorithm: str
    policy: str
    role: str

    def record(self) -> KeyRecord:
        """What the key state holds once the key is on the token: an unused pool key."""
        return KeyRecord(locator=self.locator, policy=self.policy, role=self.role,
                         algorithm=self.algorithm, state="generate", zone=None)


def planned_keys(op: Mapping[str, Any]) -> list[PlannedKey]:
    return [
        PlannedKey(loc, b["algorithm"], b["policy"], b["role"])
        for b in op["batches"] for loc in b["locators"]
    ]


@dataclass(frozen=True)
class GenerationTodo:
    present: tuple[str, ...]  # planned and already a whole key pair: skipped
    repair: tuple[str, ...]  # planned and half there: delete the half, then generate
    create: tuple[PlannedKey, ...]  # to generate, in plan order (repairs included)


def generation_todo(
    planned: Sequence[PlannedKey], on_token: Iterable[str], halves: Iterable[str]
) -> GenerationTodo:
    have, half = set(on_token), set(halves)
    return GenerationTodo(
        present=tuple(k.locator for k in planned if k.locator in have),
        repair=tuple(k.locator for k in planned if k.locator in half),
        create=tuple(k for k in planned if k.locator not in have),
    )


def check_generated(
    before: Iterable[str], after: Iterable[str], planned: Iterable[str]
) -> list[str]:
    """The generation step's sanity check: only planned keys appeared, every planned key is
    there, none vanished. Returns the keys added."""
    added, removed = diff(before, after)
    plan = set(planned)
    if removed:
        raise SignerError(f"{len(removed)} keys vanished during generation: {', '.join(removed)}")
    unplanned = sorted(set(added) - plan)
    if unplanned:
        raise SignerError(f"keys appeared that were not planned: {', '.join(unplanned)}")
    missing = sorted(plan - set(after))
    if missing:
        raise SignerError(f"{len(missing)} planned keys are not on the token: {', '.join(missing)}")
    return added


def check_purged(before: Iterable[str], after: Iterable[str], delete: Iterable[str]) -> list[str]:
    """Only the planned keys went, and they all went. Returns the keys removed."""
    added, removed = diff(before, after)
    planned = set(delete)
    if added:
        raise SignerError(f"keys appeared during the purge: {', '.join(added)}")
    unplanned = sorted(set(removed) - planned)
    if unplanned:
        raise SignerError(f"keys vanished that were not to be deleted: {', '.join(unplanned)}")
    left = sorted(planned & set(after))
    if left:
        raise SignerError(f"keys to delete are still on the token: {', '.join(left)}")
    return removed
