"""Two inputs that were tracebacks (exit 3) and are bad input (exit 2) with a clear message:
TOML nested deeper than tomllib's recursion allows, and a stdout whose reader has gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ceremony.script.errors import ScriptErrors
from ceremony.script.load import load_script, load_script_text
from keyrite import exits
from keyrite.configfile import ConfigError, read_sections
from signer_shim.authority import Authority
from signer_shim.config import ConfigError as SignerConfigError

ROOT = Path(__file__).resolve().parent.parent
KEYRITE = [sys.executable, "-m", "keyrite.cli"]


def nested(depth: int, shape: str) -> str:
    if shape == "array":
        return "[" * depth + "]" * depth
    return "{a = " * depth + "1" + "}" * depth


DEEP = [(500, "array"), (500, "table"), (5000, "array"), (5000, "table")]


@pytest.mark.parametrize(("depth", "shape"), DEEP)
def test_a_deeply_nested_script_is_an_error_naming_the_file(tmp_path: Path, depth: int,
                                                            shape: str) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(f"[ceremony]\nid = {nested(depth, shape)}\n")
    with pytest.raises(ScriptErrors) as e:
        load_script(path)
    assert str(path) in str(e.value) and "nested too deeply" in str(e.value)
    with pytest.raises(ScriptErrors, match="nested too deeply"):
        load_script_text(path.read_text())


@pytest.mark.parametrize("depth", range(50, 1001, 50))
@pytest.mark.parametrize("shape", ["array", "table"])
def test_no_depth_escapes_as_a_traceback(depth: int, shape: str) -> None:
    """Shallow enough for tomllib is checked by the loader's passes; deeper is refused."""
    for where in ("[ceremony]\nid = {}\n", "[[sections]]\nname = {}\n"):
        with pytest.raises(ScriptErrors):
            load_script_text(where.format(nested(depth, shape)))


def test_keyrite_script_check_exits_2_on_deep_nesting(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(f"x = {nested(500, 'table')}\n")
    p = subprocess.run([*KEYRITE, "script", "check", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == exits.BAD_INPUT, p.stderr
    assert "Traceback" not in p.stderr
    assert f"{path}: TOML nested too deeply" in p.stderr


@pytest.mark.parametrize(("depth", "shape"), DEEP)
def test_a_deeply_nested_config_is_a_config_error(depth: int, shape: str) -> None:
    with pytest.raises(ConfigError, match="shim.toml: .*nested too deeply"):
        read_sections(f"[shim]\nx = {nested(depth, shape)}\n", "shim.toml", {"shim": ("x",)},
                      paths=(), base=None)
    with pytest.raises(SignerConfigError, match="authority.toml: .*nested too deeply"):
        Authority.from_toml(f"[ceremony]\nid = {nested(depth, shape)}\n", "authority.toml")


# -- a stdout whose reader has gone ---------------------------------------------------------------


def run_with_closed_stdout(*argv: str) -> subprocess.CompletedProcess[str]:
    """`keyrite ARGV | head -0`, without the race: the pipe's reader is closed before the
    command starts, so its first write to stdout fails with EPIPE."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([*KEYRITE, *argv], cwd=ROOT, stdout=w, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(w)


@pytest.mark.parametrize("argv", [
    ("script", "check"),
    ("script", "check", "--json"),
    ("--help",),
    ("script", "check", "--help"),
])
def test_a_closed_stdout_is_exit_2_with_a_message_not_a_traceback(argv: tuple[str, ...]) -> None:
    p = run_with_closed_stdout(*argv)
    assert p.returncode == exits.BAD_INPUT, p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr
    assert "stdout" in p.stderr and "closed" in p.stderr


def test_a_stdout_closed_from_the_start_is_exit_2_too() -> None:
    """`keyrite script check >&-`: Python starts with sys.stdout None, and print() into None
    dropped the summary silently with exit 0."""
    p = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *KEYRITE, "script", "check"],
                       cwd=ROOT, stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == exits.BAD_INPUT, p.stderr
    assert "keyrite script: stdout" in p.stderr and "Traceback" not in p.stderr


def test_a_closed_stdout_for_verify_too(tmp_path: Path) -> None:
    from coordinator.journal import generate_key
    from tests.test_journal import make_journal

    path = tmp_path / "j.journal"
    make_journal(path, generate_key())
    p = run_with_closed_stdout("verify", str(path))
    assert p.returncode == exits.BAD_INPUT, p.stderr
    assert "keyrite verify: " in p.stderr and "Traceback" not in p.stderr


def test_a_broken_pipe_that_is_not_stdout_is_still_a_bug(tmp_path: Path) -> None:
    """Only stdout's reader going away is the caller's doing; any other EPIPE is exit 3."""
    script = tmp_path / "boom.py"
    script.write_text(
        "import sys, types\n"
        "from keyrite import cli\n"
        "def boom(args):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "m = types.ModuleType('boom_command')\n"
        "m.register = lambda sub: sub.add_parser('boom').set_defaults(run=boom)\n"
        "sys.modules['boom_command'] = m\n"
        "cli.COMMANDS = (*cli.COMMANDS, 'boom_command')\n"
        "sys.exit(cli.main(['boom']))\n")
    p = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == exits.INTERNAL
    assert "Traceback" in p.stderr
