"""The script's KEK steps (hsm.kek, kek.share) and the KEK shares a wrap backup's restore or
drill needs (`shares`): what the loader accepts, and what it refuses at the desk, by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceremony.script import ScriptErrors, load_script_text

WRAP = Path(__file__).resolve().parent / "scripts" / "keygen-wrap.toml"
TEXT = WRAP.read_text()


def errors(text: str) -> list[str]:
    with pytest.raises(ScriptErrors) as e:
        load_script_text(text, "s.toml")
    return [f"{x.keypath}: {x.message}" for x in e.value.errors]


def test_the_wrap_script_loads_with_its_kek_and_shares() -> None:
    s = load_script_text(TEXT, "s.toml")
    assert s.step(3).holders == ("KSO1", "KSO2", "KSO3") and s.step(3).threshold == 2
    assert [s.step(n).seat for n in (4, 5, 6)] == ["KSO1", "KSO2", "KSO3"]
    assert s.step(10).shares == "KSO" and s.step(10).drill


def test_more_shares_needed_than_holders_is_refused() -> None:
    got = errors(TEXT.replace("threshold = 2", "threshold = 4"))
    assert got == ["sections[1].steps[0].threshold: 4 shares needed but only 3 holders "
                   "(expected at most 3)"]


def test_a_threshold_of_one_is_no_split() -> None:
    got = errors(TEXT.replace("threshold = 2", "threshold = 1"))
    assert any("threshold" in g and "out of range" in g for g in got)


def test_a_holder_named_twice_is_refused() -> None:
    got = errors(TEXT.replace('holders = ["KSO1", "KSO2", "KSO3"]',
                              'holders = ["KSO1", "KSO2", "KSO2"]'))
    assert got == ["sections[1].steps[0].holders[2]: 'KSO2' is listed twice (also at index 1)"]
    got = errors(TEXT.replace('holders = ["KSO1", "KSO2", "KSO3"]',
                              'holders = ["KSO1", "KSO2", "KSO4"]'))
    assert got == ["sections[1].steps[3].seat: 'KSO3' is not a holder of step 3's KEK (its "
                   "holders: KSO1, KSO2, KSO4)"]


def test_a_share_handed_before_any_kek_or_to_no_seat_is_refused() -> None:
    moved = TEXT.replace('action = "hsm.kek"', 'action = "hsm.list"').replace(
        'quorum = ["kek"]\nholders = ["KSO1", "KSO2", "KSO3"]\nthreshold = 2\n', "")
    got = errors(moved)
    assert any("kek.share hands over a share of a KEK made earlier" in g for g in got)
    got = errors(TEXT.replace('seat = "KSO1"\naction = "kek.share"', 'action = "kek.share"'))
    assert any("kek.share requires 'seat'" in g for g in got)


def test_a_drill_with_shares_needs_the_drill_and_a_trusted_role() -> None:
    got = errors(TEXT.replace('drill = true\nshares = "KSO"', 'shares = "KSO"'))
    assert any("shares are brought for the restore drill" in g for g in got)
    got = errors(TEXT.replace('shares = "KSO"', 'shares = "WI"'))
    assert any("'WI' is an observer or untrusted role" in g for g in got)
    got = errors(TEXT.replace('shares = "KSO"', 'shares = "DSO"'))
    assert any("'DSO' is not a declared role" in g for g in got)


RESTORE = Path(__file__).resolve().parent.parent / "ceremony" / "scripts" / \
    "standby-restore.toml"


def test_a_restore_takes_a_password_or_shares_not_both_nor_neither() -> None:
    text = RESTORE.read_text()
    assert 'password = "device-backup"' in text
    both = text.replace('password = "device-backup"\n',
                        'password = "device-backup"\nshares = "KSO"\n', 1)
    assert any("not both" in g for g in errors(both))
    neither = text.replace('password = "device-backup"\n', "", 1)
    if "action = \"hsm.restore\"" in neither:
        assert any("neither is given" in g for g in errors(neither))
    shares = text.replace('password = "device-backup"\n', 'shares = "KSO"\n', 1)
    got = None
    try:
        got = load_script_text(shares, "s.toml")
    except ScriptErrors as e:  # the password may still be named elsewhere (a seal's contents)
        assert all("shares" not in x.message for x in e.errors), e
    if got is not None:
        assert next(s for s in got.steps if s.action == "hsm.restore").shares == "KSO"
