"""`keyrite script check`: exit codes 0 and 2, the summary line, --json, and the errors."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from keyrite import script_command
from tests.test_script_samples import BASE, change, line_of


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="keyrite")
    script_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["script", "check", *argv])
    return args.run(args)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.toml"
    path.write_text(BASE)
    return path


def test_good_script_summary_line(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(good)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    # actions most used first, ties by name
    assert out == ("mini v3: 2 sections, 8 steps, 4 roles, actions: drive.insert 1, "
                   "hsm.generate 1, quorum 1, record 1, seal 1, signin 1, signoff 1, verify 1\n")


def test_good_script_json(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    assert run(str(good), "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "id": "mini", "version": "3", "sections": 2, "steps": 8, "roles": 4,
        "actions": {"drive.insert": 1, "hsm.generate": 1, "quorum": 1, "record": 1, "seal": 1,
                    "signin": 1, "signoff": 1, "verify": 1},
        "sha256": hashlib.sha256(BASE.encode()).hexdigest(),
    }


def test_bad_script_prints_every_error_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = change('actor = "SA"\ntext = "Plug', 'actor = "KS0"\ntext = "Plug',
                  change("count = 2", "count = 3"))
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert run(str(path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}:{line_of(text, 'KS0')}: sections[0].steps[2].actor: 'KS0' is not a declared "
        "role (expected one of KGA, KSO, SA, WI)",
        f"{path}:{line_of(text, 'count = 3')}: sections[1].steps[0].count: count 3 is more than "
        "m = 2 of quorum 'gen' (expected 1..2)",
        "keyrite script check: 2 errors",
    ]


def test_bad_script_json_lists_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(change("n = 3", "n = = 3"))
    assert run(str(path), "--json") == 2
    out, err = capsys.readouterr()
    assert json.loads(out) == {"errors": [{
        "path": str(path), "line": line_of(BASE, "n = 3"), "column": 5, "keypath": "",
        "message": "TOML syntax: Invalid value"}]}
    assert err.endswith("keyrite script check: 1 error\n")


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(tmp_path / "nope.toml")) == 2
    assert "nope.toml: cannot read: No such file or directory" in capsys.readouterr().err


def test_default_is_the_bundled_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert run() == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"second-key-generation v74: \d+ sections, 132 steps, 6 roles, "
                        r"actions: acknowledge \d+, [a-z.]+ \d+(, [a-z.]+ \d+)*\n", out)


def test_registered_in_keyrite_cli() -> None:
    from keyrite.cli import COMMANDS

    assert "keyrite.script_command" in COMMANDS
