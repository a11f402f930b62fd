"""`keyrite stage` as a newcomer follows it: commands that run as printed, the drive serials the
KGA records, fixture names whose default is obvious (issue 11, staging)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from coordinator.folder_drives import FolderDrives
from coordinator.live.stage import instructions, keyrite_command, stage


def test_the_printed_commands_run_as_printed_and_name_every_drive_serial(tmp_path: Path) -> None:
    s = stage(tmp_path / "c", fixture="small")
    text = instructions(s)
    commands = [line.strip() for line in text.splitlines() if " --config " in line]
    assert len(commands) == 2 + len(s.consoles)
    for line in commands:
        program = shlex.split(line)[0]
        assert program != "keyrite" and os.access(program, os.X_OK), line
    # the program printed is a keyrite that answers, with no PATH to find it by
    first = shlex.split(commands[0])
    out = subprocess.run([*first[:first.index("shim")], "--version"], capture_output=True,
                         text=True, env={"PATH": "/nonexistent"})
    assert out.returncode == 0 and out.stdout.startswith("keyrite "), out.stderr

    drives = FolderDrives(s.root / "drives")
    sheet = (s.live / "materials.txt").read_text()
    for label in s.drives:
        serial = drives.info(label).serial
        assert s.drives[label] == serial
        assert f"{label}: {serial}" in text and f"{label}: {serial}" in sheet
    for bag, serial in s.bags.items():
        assert f"{bag}: {serial}" in sheet
    assert "materials.txt" in text


def test_keyrite_command_falls_back_to_the_interpreter(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3"))
    assert keyrite_command() == f"{tmp_path / 'python3'} -m keyrite.cli"


def test_the_fixture_choices_name_their_default() -> None:
    for command, default in (("stage", "small"), ("rehearse", "seed")):
        out = subprocess.run([sys.executable, "-m", "keyrite.cli", command, "--help"],
                             capture_output=True, text=True, check=True).stdout
        flat = " ".join(out.split())
        assert f"'{default}' (the default" in flat, flat
        assert "'default'" not in flat
