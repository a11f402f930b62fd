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
