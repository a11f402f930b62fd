"""The signer's pure rules: counts, plans, operation checks, inventory diffs. No device."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceremony.durations import DAY, MONTH, YEAR, parse_duration
from signer_shim.interface import Inventory, KeyInfo, PolicyKeys, SignerError
from signer_shim.keystate import KeyRecord, KeyState
from signer_shim.pkcs11.inventory import contents_from_objects, diff, key_problems
from signer_shim.planning import (
    check_generated,
    check_operation,
    check_purged,
    generate_batches,
    generation_todo,
    keys_needed,
    periods,
    plan_backup,
    plan_generate,
    plan_purge,
    planned_keys,
)
from signer_shim.tokenid import is_fingerprint, token_fingerprint
from staging.fixture import DEFAULT_POLICIES, SHAPES, expected_figures, seed_records

TOKEN = token_fingerprint("SoftHSM project", "SoftHSM v2", "0123456789abcdef", "rehearsal")


def loc(i: int) -> str:
    return f"{i:032x}"


def rec(i: int, state: str, role: str = "ZSK", zone: str | None = "a.example",
        policy: str = "default", algorithm: str = "RSA/2048") -> KeyRecord:
    return KeyRecord(locator=loc(i), policy=policy, role=role, algorithm=algorithm,
                     state=state, zone=zone)


def counter(start: int = 1000):
    it = itertools.count(start)
    return lambda: loc(next(it))


@pytest.mark.parametrize(
    ("duration", "lifetime", "expected"),
    [
        ("P14M", "P1Y", 2),  # the seed: 434 days over 365
        ("P14M", "P3M", 5),  # 434 over 93
        ("P1Y", "P1Y", 1),
        ("P1Y", "P3M", 4),  # 365 over 93
        ("P2M", "P3M", 1),
        ("P3M", "P3M", 1),
        ("P93D", "P3M", 1),
        ("P94D", "P3M", 2),
        ("P14M", "P1M", 14),
        ("P2Y", "P1Y", 2),
        ("PT1H", "P1D", 1),
    ],
)
def test_periods(duration: str, lifetime: str, expected: int) -> None:
    assert periods(parse_duration(duration).seconds, parse_duration(lifetime).seconds) == expected


def test_keys_needed_multiplies_by_zones_and_subtracts_unused() -> None:
    assert keys_needed(434 * DAY, YEAR, 13, 1) == 25
    assert keys_needed(434 * DAY, 3 * MONTH, 13, 5) == 60
    assert keys_needed(434 * DAY, YEAR, 1, 0) == 2
    assert keys_needed(434 * DAY, YEAR, 1, 7) == 0  # never below zero
    assert keys_needed(434 * DAY, YEAR, 0, 0) == 0


@given(st.integers(1, 10**9), st.integers(1, 10**9), st.integers(0, 500), st.integers(0, 500))
def test_keys_needed_is_the_ceiling_formula(d: int, life: int, zones: int, unused: int) -> None:
    n = keys_needed(d, life, zones, unused)
    p = periods(d, life)
    assert (p - 1) * life < d <= p * life
    assert n == max(0, p * zones - unused) and n >= 0


def test_periods_refuses_nonpositive() -> None:
    with pytest.raises(ValueError):
        periods(0, YEAR)


def state_with_pool() -> tuple[KeyState, set[str]]:
    zones = {"default": tuple(f"z{i}.example" for i in range(3))}
    records = [
        rec(1, "generate", "KSK", None),
        rec(2, "generate", "ZSK", None),
        rec(3, "generate", "ZSK", None),
        rec(4, "generate", "ZSK", None),  # unused but not on the token: does not count
        rec(5, "generate", "ZSK", None, algorithm="ECDSA/P-256"),  # another algorithm
        rec(6, "active", "ZSK"),  # in a zone: not a pool key
        rec(7, "dead", "ZSK"),
        rec(8, "dead", "KSK"),
        rec(9, "dead", "KSK"),  # dead but already gone from the token
    ]
    state = KeyState(zones, {r.locator: r for r in records})
    return state, {loc(i) for i in (1, 2, 3, 5, 6, 7, 8)}


def test_generate_batches_show_their_arithmetic() -> None:
    state, on_token = state_with_pool()
    batches = generate_batches(DEFAULT_POLICIES, "P14M", state, on_token, counter())
    ksk, zsk = batches
    assert (ksk["role"], ksk["zones"], ksk["unused"], ksk["count"]) == ("KSK", 3, 1, 5)
    assert (zsk["role"], zsk["zones"], zsk["unused"], zsk["count"]) == ("ZSK", 3, 2, 13)
    assert len(ksk["locators"]) == 5 and len(zsk["locators"]) == 13
    everything = ksk["locators"] + zsk["locators"]
    assert len(set(everything)) == 18


def test_generate_never_reuses_a_known_locator() -> None:
    state, on_token = state_with_pool()
    draws = iter([loc(1), loc(9), loc(1000), loc(1000), loc(1001), loc(1002)])
    keys = (PolicyKeys(policy="default", role="KSK", algorithm="RSA/2048",
                       lifetime_seconds=YEAR),)
    # 3 zones x 1 period (P1Y) - 1 unused = 2 keys: the taken and repeated draws are skipped
    (batch,) = generate_batches(keys, "P1Y", state, on_token, lambda: next(draws))
    assert batch["locators"] == [loc(1000), loc(1001)]


def test_generate_refuses_a_policy_key_twice_or_an_unknown_algorithm() -> None:
    state, on_token = state_with_pool()
    with pytest.raises(SignerError, match="twice"):
        generate_batches(DEFAULT_POLICIES + DEFAULT_POLICIES[:1], "P14M", state, on_token)
    bad = (PolicyKeys(policy="default", role="KSK", algorithm="DSA/1024", lifetime_seconds=YEAR),)
    with pytest.raises(SignerError, match="unknown key algorithm"):
        generate_batches(bad, "P14M", state, on_token)


def test_plan_purge_is_dead_and_on_the_token_sorted() -> None:
    state, on_token = state_with_pool()
    assert plan_purge(TOKEN, state, on_token) == {
        "op": "purge", "token": TOKEN, "delete": [loc(7), loc(8)]}


def test_plan_backup_names_the_file_and_refuses_a_bad_date() -> None:
    assert plan_backup(TOKEN, "2012-05-01")["file"] == "key-backup-2012-05-01.tar.gz"
    for bad in ("2012-5-1", "../x", "2012-05-01/../../etc"):
        with pytest.raises(SignerError):
            plan_backup(TOKEN, bad)


def good_generate() -> dict:
    state, on_token = state_with_pool()
    return plan_generate(TOKEN, DEFAULT_POLICIES, "P14M", state, on_token, counter())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda op: op.update(token=token_fingerprint("a", "b", "c", "d")), "is for token"),
        (lambda op: op.update(token="abc"), "not a token fingerprint"),
        (lambda op: op.update(extra=1), "unknown keys"),
        (lambda op: op.pop("duration"), "missing keys"),
        (lambda op: op.update(op="format"), "unknown operation"),
        (lambda op: op["batches"][0]["locators"].pop(), "count is not"),
        (lambda op: op["batches"][0]["locators"].__setitem__(0, "XYZ"), "32-hex-digit"),
        (lambda op: op["batches"][1]["locators"].__setitem__(0, op["batches"][0]["locators"][0]),
         "planned twice"),
        (lambda op: op["batches"][0].update(algorithm="RSA/512"), "unknown key algorithm"),
        (lambda op: op["batches"][0].update(role="XSK"), "unknown role"),
        (lambda op: op["batches"][0].pop("zones"), "must have keys"),
    ],
)
def test_check_operation_refuses(mutate, message: str) -> None:
    op = good_generate()
    check_operation(op, TOKEN)
    mutate(op)
    with pytest.raises(SignerError, match=message):
        check_operation(op, TOKEN)


def test_check_operation_purge_and_backup() -> None:
    check_operation({"op": "purge", "token": TOKEN, "delete": [loc(1), loc(2)]}, TOKEN)
    with pytest.raises(SignerError, match="sorted"):
        check_operation({"op": "purge", "token": TOKEN, "delete": [loc(2), loc(1)]}, TOKEN)
    with pytest.raises(SignerError, match="bad file name"):
        check_operation({"op": "backup", "token": TOKEN, "file": "../key-backup.tar.gz"}, TOKEN)


def test_generation_todo_skips_present_and_repairs_halves() -> None:
    planned = planned_keys(good_generate())
    first, second, third = (k.locator for k in planned[:3])
    todo = generation_todo(planned, {first, loc(6)}, {second})
    assert todo.present == (first,)
    assert todo.repair == (second,)
    assert [k.locator for k in todo.create] == [k.locator for k in planned[1:]]
    assert third in [k.locator for k in todo.create]


def test_check_generated_accepts_only_the_plan() -> None:
    before = {loc(1), loc(2)}
    planned = {loc(10), loc(11)}
    assert check_generated(before, before | planned, planned) == sorted(planned)
    with pytest.raises(SignerError, match="vanished"):
        check_generated(before, {loc(1)} | planned, planned)
    with pytest.raises(SignerError, match="not planned"):
        check_generated(before, before | planned | {loc(12)}, planned)
    with pytest.raises(SignerError, match="not on the token"):
        check_generated(before, before | {loc(10)}, planned)


def test_check_purged_accepts_only_the_plan() -> None:
    before = {loc(1), loc(2), loc(3)}
    assert check_purged(before, {loc(3)}, [loc(1), loc(2)]) == [loc(1), loc(2)]
    with pytest.raises(SignerError, match="not to be deleted"):
        check_purged(before, set(), [loc(1), loc(2)])
    with pytest.raises(SignerError, match="still on the token"):
        check_purged(before, {loc(2), loc(3)}, [loc(1), loc(2)])
    with pytest.raises(SignerError, match="appeared"):
        check_purged(before, {loc(3), loc(4)}, [loc(1), loc(2)])


def test_contents_pairs_halves_and_ambiguity() -> None:
    objs = [
        {"class": "private", "id": loc(2), "label": loc(2), "type": "RSA/2048"},
        {"class": "public", "id": loc(2), "label": loc(2), "type": "RSA/2048"},
        {"class": "private", "id": loc(1), "label": loc(1), "type": "ECDSA/P-256"},
        {"class": "public", "id": loc(1), "label": loc(1), "type": "ECDSA/P-256"},
        {"class": "public", "id": loc(3), "label": loc(3), "type": "RSA/2048"},
    ]
    c = contents_from_objects("tok", objs)
    assert c.inventory == Inventory("tok", (KeyInfo(loc(1), "ECDSA/P-256"),
                                            KeyInfo(loc(2), "RSA/2048")))
    assert c.halves == {loc(3)}
    with pytest.raises(SignerError, match="share the ID"):
        contents_from_objects("tok", objs + [objs[0]])
    assert diff([loc(1), loc(2)], [loc(2), loc(3)]) == ([loc(3)], [loc(1)])


def test_inventory_render_is_ods_hsmutil_layout() -> None:
    inv = Inventory("sca6000", (KeyInfo("160d29b6d32b301356a22f545e1a5ddd", "RSA/2048"),))
    assert inv.render().splitlines() == [
        "Listing keys in repository: sca6000",
        "1 keys found.",
        "",
        "Repository      ID                                Type",
        "----------      --                                ----",
        "sca6000         160d29b6d32b301356a22f545e1a5ddd  RSA/2048",
    ]


def test_token_fingerprint_shape_and_inputs() -> None:
    assert is_fingerprint(TOKEN)
    assert token_fingerprint(" SoftHSM project ", "SoftHSM v2", "0123456789abcdef",
                                      "rehearsal   ") == TOKEN  # blank padding does not count
    others = {token_fingerprint("SoftHSM project", "SoftHSM v2", "0123456789abcdee", "rehearsal"),
              token_fingerprint("SoftHSM project", "SoftHSM v2", "0123456789abcdef", "other")}
    assert TOKEN not in others and len(others) == 2
    assert not is_fingerprint("d34d-ba64")


def test_default_fixture_figures_are_the_seeds() -> None:
    zones, records = seed_records(DEFAULT_POLICIES, SHAPES["default"])
    assert len(zones["default"]) == 13
    figures = expected_figures(DEFAULT_POLICIES, SHAPES["default"], records, "P14M")
    assert (figures.keys, figures.dead, figures.after_purge) == (140, 25, 115)
    assert (figures.to_generate, figures.after_generate) == (85, 200)
    unused = [r for r in records if r.unused]
    assert sorted(r.role for r in unused) == ["KSK", "ZSK", "ZSK", "ZSK", "ZSK", "ZSK"]
    in_zones = [r for r in records if r.zone is not None and r.state != "dead"]
    assert {r.zone for r in in_zones} == set(zones["default"])
    assert {r.state for r in in_zones} == {"active", "publish", "ready", "retire"}


def test_small_fixture_figures() -> None:
    zones, records = seed_records(DEFAULT_POLICIES, SHAPES["small"])
    figures = expected_figures(DEFAULT_POLICIES, SHAPES["small"], records, "P14M")
    assert (figures.keys, figures.dead, figures.after_purge) == (6, 2, 4)
    assert (figures.to_generate, figures.after_generate) == (6, 10)


def test_key_problems_names_what_is_wrong() -> None:
    good = {"sensitive": True, "extractable": False, "always_sensitive": True,
            "never_extractable": True, "local": True, "private": True, "sign": True,
            "label": loc(1), "public_label": loc(1), "token": True, "type": "RSA/2048",
            "public_exponent": 65537}
    assert key_problems(good, loc(1), "RSA/2048") == []
    assert key_problems({**good, "extractable": True}, loc(1), "RSA/2048") == ["extractable"]
    assert key_problems(good, loc(1), "ECDSA/P-256") == ["type RSA/2048 is not ECDSA/P-256"]
    assert key_problems({**good, "public_exponent": 3}, loc(1), "RSA/2048") == [
        "public exponent is not 65537"]
    assert key_problems({**good, "public_label": "x"}, loc(1), "RSA/2048") == [
        "label is not the ID"]
    assert key_problems({**good, "token": False}, loc(1), "RSA/2048") == ["not a token object"]
