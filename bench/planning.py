"""Planning benchmark: a hoster-sized generate plan and its inventory diff, in pure Python.

A key state of --zones zones (default 10,000) in --policies policies, each policy with a KSK
(RSA/2048, one year) and a ZSK (ECDSA/P-256, 93 days), and a token that already holds one
active KSK and ZSK per zone. P14M then asks for 2 KSKs and 5 ZSKs per zone: 70,000 keys.

1. planning: what the signer does in its one HSM queue for `plan_generate` and the start of
   `execute` (signer_shim.planning: check_generate_size, plan_generate with cap=None,
   check_operation, planned_keys, generation_todo), against a plain loop drawing as many
   16-byte locators with `secrets.token_hex` into a set kept apart from the token's IDs, then
   sorted();
2. inventory diff: the after-listing turned into key pairs (signer_shim.pkcs11.inventory
   contents_from_objects over one private and one public object per key) and
   `check_generated(before, after, planned)`, against a plain set(), set difference both ways
   and sorted() over the same IDs.

Best of --runs each. Target (ours, absolute): each under 1 s, so a hoster's plan does not hold
the HSM queue for long; the ratio is shown for what the rules cost over the bare set work.
Prints numbers, asserts nothing. Usage: python bench/planning.py [--zones N] [--policies P]
[--runs R] [--json]
"""

from __future__ import annotations

import os
import sys

# ruff: noqa: E402
# (the imports below wait for the path; see bench/shim.py for why sys.path[0] is replaced)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from ceremony.durations import YEAR, parse_duration
from signer_shim import planning
from signer_shim.interface import PolicyKeys
from signer_shim.keystate import KeyRecord, KeyState
from signer_shim.pkcs11.inventory import contents_from_objects

TOKEN = "-".join(["abcd"] * 10)  # a fingerprint's shape (signer_shim.tokenid)
DURATION = "P14M"
DAY = 86400


def setup(zones: int, policies: int) -> tuple[list[PolicyKeys], KeyState, list[str]]:
    """The policies, a key state with every zone's active KSK and ZSK, and the token's IDs."""
    names: dict[str, tuple[str, ...]] = {}
    keys: dict[str, KeyRecord] = {}
    pks = []
    per = -(-zones // policies)
    for p in range(policies):
        policy = f"hoster{p:03d}"
        zs = tuple(f"zone{p:03d}-{i:05d}.example" for i in range(min(per, zones - p * per)))
        names[policy] = zs
        pks += [PolicyKeys(policy=policy, role="KSK", algorithm="RSA/2048", lifetime_seconds=YEAR),
                PolicyKeys(policy=policy, role="ZSK", algorithm="ECDSA/P-256",
                           lifetime_seconds=93 * DAY)]
        for z in zs:
            for role, alg in (("KSK", "RSA/2048"), ("ZSK", "ECDSA/P-256")):
                loc = planning.new_locator()
                keys[loc] = KeyRecord(locator=loc, policy=policy, role=role, algorithm=alg,
                                      state="active", zone=z)
    return pks, KeyState(names, keys), list(keys)


def best(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def run(zones: int, policies: int, runs: int) -> dict[str, Any]:
    pks, state, on_token = setup(zones, policies)
    seconds = parse_duration(DURATION).seconds

    def ours_plan() -> dict[str, Any]:
        planning.check_generate_size(pks, seconds, state, 10**9)
        op = planning.plan_generate(TOKEN, pks, DURATION, state, on_token, cap=None)
        planning.check_operation(op, TOKEN)
        planning.generation_todo(planning.planned_keys(op), on_token, ())
        return op

    t_plan, op = best(runs, ours_plan)
    n = sum(len(b["locators"]) for b in op["batches"])

    def plain_plan() -> list[str]:
        taken, new = set(on_token), set()
        while len(new) < n:
            loc = secrets.token_hex(16)
            if loc not in taken:
                new.add(loc)
        return sorted(new)

    t_plain_plan, _ = best(runs, plain_plan)
    planned = [k.locator for k in planning.planned_keys(op)]
    after_ids = on_token + planned
    objects = [{"class": c, "id": i, "label": i, "type": "RSA/2048"}
               for i in after_ids for c in ("private", "public")]

    def ours_diff() -> list[str]:
        after = contents_from_objects("bench", objects).locators
        return planning.check_generated(on_token, after, planned)

    def plain_diff() -> tuple[list[str], list[str]]:
        b, a = set(on_token), {o["id"] for o in objects}
        return sorted(a - b), sorted(b - a)

    t_diff, added = best(runs, ours_diff)
    assert len(added) == n
    t_plain_diff, _ = best(runs, plain_diff)
    return {"zones": zones, "policies": policies, "keys_on_token": len(on_token),
            "planned": n, "runs": runs,
            "planning": {"seconds": t_plan, "baseline": t_plain_plan,
                         "ratio": t_plan / t_plain_plan, "target_seconds": 1.0},
            "diff": {"seconds": t_diff, "baseline": t_plain_diff,
                     "ratio": t_diff / t_plain_diff, "target_seconds": 1.0}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zones", type=int, default=10_000)
    ap.add_argument("--policies", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3, help="best of this many")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = ap.parse_args()
    r = run(a.zones, a.policies, a.runs)
    if a.json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"{r['zones']} zones in {r['policies']} policies, {r['keys_on_token']} keys on the "
          f"token, {DURATION}: {r['planned']} keys planned; best of {r['runs']}")
    for name, what in (("planning", "plan_generate & co."), ("diff", "listing + diff")):
        x = r[name]
        print(f"  {what:22} {x['seconds']:7.3f} s   plain {x['baseline']:7.3f} s   "
              f"ratio {x['ratio']:5.2f}x   (target < {x['target_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
