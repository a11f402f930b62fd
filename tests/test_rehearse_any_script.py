"""`keyrite rehearse` for any valid script (issue 14): the cast derived from the script's roles
and rules, the previous record from its `[ceremony] previous` keys, a script with no signer,
and a step the machine refuses ending the rehearsal with exit 1 and the reason."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from ceremony.script import bundled_script_path
from ceremony.script.load import load_script
from coordinator.rehearsal.people import CUSTODIANS, PEOPLE, cast_for, check_cast, needed
from tests.rehearsal_helpers import KEYRITE, rehearse, rehearse_json

SCRIPTS = Path(__file__).parent / "scripts"


def _roles_of_each_person(workdir: Path) -> dict[str, set[str]]:
    roster = tomllib.loads((workdir / "roster.toml").read_text())
    held: dict[str, set[str]] = {}
    for seat in roster["officers"]:
        held.setdefault(seat["person"], set()).add(seat["role"])
    return held


def test_the_bundled_script_keeps_the_seed_cast_and_custodians() -> None:
    cast = cast_for(load_script(bundled_script_path()))
    assert cast.people == PEOPLE
    assert cast.custodians == CUSTODIANS


def test_the_derived_cast_meets_every_rule_of_a_strict_script() -> None:
    script = load_script(SCRIPTS / "strict-separation.toml")
    cast = cast_for(script)
    check_cast(script, cast.people, cast.roles)
    assert all(len(p.seats) == 1 for p in cast.people)  # no [separation]: nobody combines
    # two KSOs for the quorum, two DSOs for the hand-over between DSOs, one of every role
    assert needed(script) == {"KGA": 1, "SA": 1, "KSO": 2, "DSO": 2, "WI": 1}
    for role, n in needed(script).items():
        assert len(cast.seats(role)) >= n
    assert set(cast.roles.values()) == set(script.roles)


def test_a_strict_separation_script_rehearses_to_completion(tmp_path: Path) -> None:
    work = tmp_path / "r"
    code, summary, err = rehearse_json(work, str(SCRIPTS / "strict-separation.toml"),
                                       "--fixture", "small")
    assert code == 0, err
    assert "Traceback" not in err
    assert summary["status"] == "completed"
    assert summary["steps_completed"] == summary["steps_total"] == 21
    assert all(len(roles) == 1 for roles in _roles_of_each_person(work).values())
    bag = summary["custody"]["copy-bag"]
    assert bag["custodian"] != bag["from"]  # handed over to a second DSO
    previous = tomllib.loads((work / "previous-record.toml").read_text())
    assert sorted(previous) == ["hsm_fingerprint", "key_count", "signer_host_key"]


def test_a_script_with_no_signer_rehearses_with_no_token_and_no_shim(tmp_path: Path) -> None:
    work = tmp_path / "r"
    p = rehearse(str(SCRIPTS / "no-signer.toml"), "--workdir", str(work), "--fixture", "small")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert "no signer: the script declares none" in p.stdout
    assert "token: none (the script declares no signer)" in p.stdout
    assert not (work / "signer").exists() and not (work / "shim").exists()
    # the previous record holds exactly the keys the script names: the live CD's digest as
    # this rehearsal's live CD has it, and a plausible value for the key nothing observes
    previous = tomllib.loads((work / "previous-record.toml").read_text())
    assert list(previous) == ["livecd_sha256", "last_audit"]
    assert previous["last_audit"]
    genesis = json.loads((work / "journal.jsonl").read_text().splitlines()[0])["record"]
    assert genesis["previous"] == previous


def test_an_audit_with_no_hsm_operation_rehearses(tmp_path: Path) -> None:
    work = tmp_path / "r"
    code, summary, err = rehearse_json(work, str(SCRIPTS / "audit-no-operations.toml"),
                                       "--fixture", "small")
    assert code == 0, err
    assert summary["status"] == "completed"
    authority = tomllib.loads((work / "shim" / "authority.toml").read_text())
    assert "operations" not in authority and authority["officers"]


def test_a_step_the_machine_refuses_ends_with_exit_1_and_the_reason(tmp_path: Path) -> None:
    """The only KSO seals the bag, then the script hands it over to a KSO: the machine refuses a
    hand-over to the person who holds it. Exit 1, the machine's words, no traceback; the
    journal keeps the refusal and still verifies."""
    work = tmp_path / "r"
    p = rehearse(str(SCRIPTS / "refused-handover.toml"), "--workdir", str(work),
                 "--fixture", "small")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    reason = "a hand-over is to someone else"
    assert "stopped at step 4: the machine refused it: " in p.stdout and reason in p.stdout
    records = [json.loads(line)["record"]
               for line in (work / "journal.jsonl").read_text().splitlines()]
    assert any(r["type"] == "refused" and reason in r["reason"] for r in records)
    code, summary, err = rehearse_json(work, "--resume")  # the same stop, said the same way
    assert code == 1, err
    assert summary["refused"]["step"] == 4 and reason in summary["refused"]["reason"]
    import subprocess
    v = subprocess.run([*KEYRITE, "verify", str(work / "journal.jsonl")], capture_output=True,
                       text=True, timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr
