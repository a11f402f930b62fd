"""`keyrite verify JOURNAL [--key VKEY ...] [--json]`: summary, exit codes, JSON output."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.journal import entry as entry_codec
from coordinator.journal import generate_key, verifier_key, verify_command
from keyrite import cli, exits
from tests.test_journal import NAME, make_journal, read_lines, write_lines


def _other_commands_import() -> bool:
    try:
        for name in cli.COMMANDS:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


def keyrite(argv: list[str]) -> int:
    """`keyrite ARGV` through the real boundary, or through `register` alone if another
    subcommand's module is missing (the CLI imports all of them)."""
    if _other_commands_import():
        return cli.main(argv)
    parser = argparse.ArgumentParser(prog="keyrite")
    verify_command.register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        return args.run(args)
    except exits.BadInput:
        return exits.BAD_INPUT


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture
def path(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    p = tmp_path / "ceremony.journal"
    make_journal(p, key, n=12, checkpoints=(5, 9))
    return p


def test_a_good_journal_exits_0_with_a_one_line_summary(path: Path, capsys) -> None:
    assert keyrite(["verify", str(path)]) == exits.OK
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    for part in ("12 entries", "2 checkpoints", "covers 9", "2 entries covered by no checkpoint",
                 "ceremony KSK-2026-03", NAME):
        assert part in out


def test_a_given_key(path: Path, key, capsys) -> None:
    assert keyrite(["verify", str(path), "--key", verifier_key(NAME, key)]) == exits.OK
    assert "announced" not in capsys.readouterr().out
    other = verifier_key(NAME, generate_key())
    assert keyrite(["verify", str(path), "--key", other]) == exits.FAILED
    err = capsys.readouterr().err
    assert "entry 0 (line 1)" in err and "announces" in err  # not the key given


def strip_checkpoints(path: Path) -> None:
    """Every checkpoint removed and the rest renumbered and relinked: only signatures lack."""
    out: list[bytes] = []
    for line in read_lines(path):
        _, _, record = entry_codec.decode(line)
        if record.get("type") != "checkpoint":
            prev = entry_codec.line_hash(out[-1]) if out else "0" * 64
            out.append(entry_codec.encode(len(out), prev, record))
    write_lines(path, out)


def test_a_journal_the_given_key_never_signed_exits_1(path: Path, key, capsys) -> None:
    strip_checkpoints(path)
    vkey = verifier_key(NAME, key)
    assert keyrite(["verify", str(path), "--key", vkey]) == exits.FAILED
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "--allow-unsigned" in err
    assert keyrite(["verify", str(path), "--key", vkey, "--json"]) == exits.FAILED
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["problem"]["kind"] == "unsigned"
    assert report["unsigned_entries"] == 10 and report["allow_unsigned"] is False


def test_allow_unsigned_passes_it_and_says_so(path: Path, key, capsys) -> None:
    strip_checkpoints(path)
    vkey = verifier_key(NAME, key)
    assert keyrite(["verify", str(path), "--key", vkey, "--allow-unsigned"]) == exits.OK
    out = capsys.readouterr().out
    assert "UNSIGNED" in out and "--allow-unsigned" in out
    assert "10 entries covered by no checkpoint" in out
    assert keyrite(["verify", str(path), "--key", vkey, "--allow-unsigned", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["checkpoints"] == 0
    assert report["unsigned_entries"] == 10 and report["allow_unsigned"] is True


def test_several_keys_one_of_them_trusted(path: Path, key) -> None:
    keys = [verifier_key("witness.example", generate_key()), verifier_key(NAME, key)]
    assert keyrite(["verify", str(path), "--key", keys[0], "--key", keys[1]]) == exits.OK


def test_a_broken_journal_exits_1_naming_the_entry(path: Path, capsys) -> None:
    lines = read_lines(path)
    del lines[7]
    write_lines(path, lines)
    assert keyrite(["verify", str(path)]) == exits.FAILED
    err = capsys.readouterr().err
    assert "entry 7 (line 8)" in err and "deleted" in err


def test_a_torn_tail_exits_1(path: Path, capsys) -> None:
    path.write_bytes(path.read_bytes() + b'{"prev":')
    assert keyrite(["verify", str(path)]) == exits.FAILED
    assert "torn" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["missing", "directory"])
def test_an_unreadable_file_exits_2(tmp_path: Path, capsys, which: str) -> None:
    target = tmp_path / "nope" if which == "missing" else tmp_path
    assert keyrite(["verify", str(target)]) == exits.BAD_INPUT
    assert "cannot read" in capsys.readouterr().err


def test_a_malformed_key_exits_2(path: Path, capsys) -> None:
    assert keyrite(["verify", str(path), "--key", "garbage"]) == exits.BAD_INPUT
    assert "garbage" in capsys.readouterr().err


def test_json_output(path: Path, capsys) -> None:
    assert keyrite(["verify", str(path), "--json"]) == exits.OK
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert (report["entries"], report["checkpoints"], report["last_checkpoint_size"]) == (12, 2, 9)
    assert report["ceremony"] == "KSK-2026-03" and report["trust"] == "genesis"
    assert report["problem"] is None
    assert report["unsigned_entries"] == 2 and report["allow_unsigned"] is False

    lines = read_lines(path)
    lines[3], lines[4] = lines[4], lines[3]
    write_lines(path, lines)
    assert keyrite(["verify", str(path), "--json"]) == exits.FAILED
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["problem"]["seq"] == 3 and report["problem"]["line"] == 4
    assert report["problem"]["kind"] == "seq"


def test_json_output_for_a_missing_file(tmp_path: Path, capsys) -> None:
    assert keyrite(["verify", str(tmp_path / "nope"), "--json"]) == exits.BAD_INPUT
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_help_explains(capsys) -> None:
    assert keyrite(["verify", "--help"]) == 0
    out = capsys.readouterr().out
    for part in ("JOURNAL", "--key", "--json", "--allow-unsigned", "exit codes", "torn",
                 "genesis"):
        assert part in out
