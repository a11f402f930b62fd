"""A rehearsal whose cast breaks the script's separation of duty stops `keyrite rehearse` as bad
input (exit 2) with the rule's words, before anything is made. It used to start, set up the
token, and end in exit 3 with a traceback when the machine refused the scripted sign-in.

The rule is written once (`ceremony.machine.machine.separation_breach`): the machine's sign-in
refuses with it, and the rehearsal checks its cast with it (`coordinator.rehearsal.people`).
The rehearsal's cast is derived from the script (`cast_for`, from the seed's people; there is
no roster option): the first test gives another cast the way the command's module reads it;
the second shows that a script forbidding one of the seed cast's overlaps now gets a cast
without it (issue 14: it was refused before).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ceremony.machine import events as ev
from ceremony.machine.machine import role_overflow, separation_breach
from ceremony.script import bundled_script_path
from ceremony.script.load import load_script, load_script_text
from coordinator.rehearsal import rehearse as rehearse_module
from coordinator.rehearsal.officers import Person
from coordinator.rehearsal.people import PEOPLE, Cast, cast_for, check_cast
from keyrite import cli
from keyrite.exits import BadInput
from tests.machine_helpers import drive, refused, start

RULE = ("separation of duty: one person may not be both KSO and SA (the script's [separation] "
        "may_combine does not allow it) [A5]")


def kso_and_sa_on_one_person() -> tuple[Person, ...]:
    """The seed's cast, but the sysadmin also holds the second KSO seat (and the second KSO's
    holder is gone)."""
    return tuple(Person(p.person, p.name, p.organisation, (*p.seats, "KSO2"))
                 if p.person == "p-sa" else p for p in PEOPLE if p.person != "p-kso2")


def test_kso_and_sa_on_one_person_stop_the_rehearsal_with_exit_2_and_the_rule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    people = kso_and_sa_on_one_person()

    def cast(script: object) -> Cast:  # the cast as the command's module makes it, checked
        check_cast(script, people)  # type: ignore[arg-type]
        return Cast(people, {}, {})

    monkeypatch.setattr(rehearse_module, "cast_for", cast)
    work = tmp_path / "r"
    code = cli.main(["rehearse", "--workdir", str(work), "--fixture", "small"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert ("keyrite rehearse: the rehearsal's cast cannot be signed in under this script: "
            f"Sysadmin B (p-sa) holds SA, KSO2: {RULE}") in err
    assert not work.exists()  # refused before anything was made: no token, no journal


def test_a_script_that_forbids_a_cast_overlap_gets_a_cast_without_it() -> None:
    """The seed's first KSO is also a DSO; a script without ["KSO", "DSO"] in may_combine gets
    that DSO seat held by a person of its own (it was refused as bad input before issue 14;
    tests/test_rehearse_any_script.py rehearses such a script end to end)."""
    seed = bundled_script_path().read_text()
    assert 'may_combine = [["KGA", "DSO"], ["KSO", "DSO"]]' in seed
    strict = load_script_text(seed.replace('may_combine = [["KGA", "DSO"], ["KSO", "DSO"]]',
                                           'may_combine = [["KGA", "DSO"]]'))
    cast = cast_for(strict)
    check_cast(strict, cast.people, cast.roles)
    held = {p.person: p.seats for p in cast.people}
    assert held["p-kso1"] == ("KSO1",) and held["p-dso1"] == ("DSO1",)
    assert held["p-kga"] == ("KGA", "DSO5")  # an overlap the script still allows is kept


def test_the_seed_cast_sits_under_the_seed_script_and_the_rule_is_the_machines() -> None:
    script = load_script(bundled_script_path())
    check_cast(script, PEOPLE)  # the seed's own overlaps are allowed
    with pytest.raises(BadInput, match="one person may not hold two KSO seats"):
        check_cast(script, [Person("p", "P", "O", ("KSO1", "KSO2"))])
    assert separation_breach(script, ["KSO", "DSO"]) is None
    assert separation_breach(script, ["SA", "KSO"]) == RULE
    # the machine's sign-in refuses with the same words: carol (KSO1, DSO2) signing in as SA2
    m, w = start()
    drive(m, w, until=3)
    reason = refused(m, ev.SignIn(at=w.at(), person="carol", name="Carol Keystore",
                                  organisation="Registry", seats=("SA2",), id_checked=True),
                     "DSO and SA")
    assert reason == separation_breach(m.script, ["KSO", "DSO", "SA"])


def test_a_cast_with_more_people_in_a_role_than_its_max_is_refused_before_anything() -> None:
    """Three KSOs where the script allows two: the machine would refuse the third one's sign-in
    in the middle of the ceremony; the rehearsal refuses the cast first, with the same rule."""
    script = load_script(bundled_script_path())
    third = Person("p-kso3", "Officer Z", "Elsewhere", ("KSO3",))
    with pytest.raises(BadInput, match="KSO may be held by at most 2 people"):
        check_cast(script, [*PEOPLE, third])
    assert role_overflow(script, {"KSO": {"a", "b"}}) is None
    assert role_overflow(script, {"KSO": {"a", "b", "c"}}) == "KSO may be held by at most 2 people"
