"""The one boundary that turns outcomes into exit codes (keyrite/cli.py)."""

from __future__ import annotations

import argparse
import sys
import types

import pytest

from keyrite import cli, exits


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "Exit codes" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0


def test_usage_errors_exit_2() -> None:
    assert cli.main(["no-such-command"]) == 2
    assert cli.main([]) == 2


@pytest.mark.parametrize(("error", "code"), [
    (exits.BadInput("ceremony.toml:3: ceremony.id: expected a string"), exits.BAD_INPUT),
    (exits.Failure("step 29 stopped"), exits.FAILED),
    (ZeroDivisionError("a bug"), exits.INTERNAL),
])
def test_exceptions_map_to_their_exit_codes(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str],
                                            error: Exception, code: int) -> None:
    def boom(args: argparse.Namespace) -> int:
        raise error

    command = types.ModuleType("boom_command")
    command.register = lambda sub: sub.add_parser("boom").set_defaults(run=boom)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boom_command", command)
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "boom_command"))
    assert cli.main(["boom"]) == code
    err = capsys.readouterr().err
    assert str(error) in err
    assert ("Traceback" in err) == (code == exits.INTERNAL)


def test_each_command_is_owned_by_the_module_that_adds_it() -> None:
    """`keyrite NAME` imports OWNERS[NAME] alone: each module in COMMANDS adds exactly the
    command OWNERS gives it, and only that one imports for it."""
    assert sorted(cli.OWNERS.values()) == sorted(cli.COMMANDS)
    for name, module in cli.OWNERS.items():
        assert list(cli.build_parser((module,))._subparsers._group_actions[0].choices) == [name]


def test_a_command_imports_only_its_own_module() -> None:
    import subprocess
    from pathlib import Path

    code = ("import sys; from keyrite import cli; cli.main(['shim', '--help']); "
            "print(sorted(m for m in cli.COMMANDS if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1]).stdout
    assert out.strip().splitlines()[-1] == "['signer_shim.shim_command']"
    assert "--config" in out
