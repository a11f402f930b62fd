"""`keyrite coordinator` as systemd runs it: READY=1 once its sockets are bound, STOPPING=1 and
exit 0 on SIGTERM, the journal resumed (not recreated) on the next start; bad config refused with
the file and the key, exit 2. `keyrite stage` makes what it runs on."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.live.stage import Staged, stage

ROOT = Path(__file__).resolve().parent.parent
KEYRITE = [sys.executable, "-m", "keyrite.cli"]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    return stage(tmp_path_factory.mktemp("live") / "ceremony", fixture="small")


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(60)
    return s, path


def _start(staged: Staged, notify: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*KEYRITE, "coordinator", "--config", str(staged.coordinator)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NOTIFY_SOCKET": notify})


def test_ready_once_bound_stopping_on_sigterm_and_resumed_next_time(staged: Staged,
                                                                   tmp_path: Path) -> None:
    sock, path = _notify_socket(tmp_path)
    with sock:
        proc = _start(staged, path)
        try:
            assert sock.recv(64) == b"READY=1"
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert f"commands on tcp://127.0.0.1:{staged.ports[1]}" in line
            with socket.create_connection(("127.0.0.1", staged.ports[1]), timeout=5):
                pass  # bound before READY=1
            proc.send_signal(signal.SIGTERM)
            assert sock.recv(64) == b"STOPPING=1"
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        journal = staged.live / "journal.jsonl"
        first = journal.read_bytes()
        proc = _start(staged, path)
        try:
            assert sock.recv(64) == b"READY=1"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    again = journal.read_bytes()
    assert again.startswith(first) and len(again) > len(first)  # resumed, never recreated
    assert b'"what":"started"' in first and b'"what":"resumed at step 1"' in again


@pytest.mark.parametrize("change, message", [
    (lambda t: re.sub(r'curve = ".*"', 'curve = "missing"', t), "coordinator.curve: "),
    (lambda t: t.replace("[signer]", "[signer]\nhots = 1"), "unknown key signer.hots"),
    (lambda t: t.replace('commands = "', 'commandz = "'), "unknown key coordinator.commandz"),
    (lambda t: t + "[extra]\n", "unknown section [extra]"),
])
def test_a_bad_config_names_the_file_and_the_key(staged: Staged, tmp_path: Path, change,
                                                 message: str) -> None:
    cfg = tmp_path / "coordinator.toml"
    text = staged.coordinator.read_text()
    cfg.write_text(change(text.replace('"roster.toml"', f'"{staged.live}/roster.toml"')
                          .replace('"journal.jsonl"', f'"{tmp_path}/journal.jsonl"')
                          .replace('"coordinator.key_secret"',
                                   f'"{staged.live}/coordinator.key_secret"')))
    out = subprocess.run([*KEYRITE, "coordinator", "--config", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert str(cfg) in out.stderr and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "journal.jsonl").exists()


def test_drives_usb_selects_udev_and_private_mounts(staged: Staged, tmp_path: Path) -> None:
    from coordinator.live.config import CoordinatorConfig

    text = re.sub(r'drives = ".*"', 'drives = "usb"\nmounts = "mnt"',
                  staged.coordinator.read_text())
    text = text.replace('"roster.toml"', f'"{staged.live}/roster.toml"').replace(
        '"coordinator.key_secret"', f'"{staged.live}/coordinator.key_secret"')
    cfg_path = tmp_path / "coordinator.toml"
    cfg_path.write_text(text)
    cfg = CoordinatorConfig.load(cfg_path)
    assert cfg.drives is None and cfg.mounts == tmp_path / "mnt"


def test_a_console_config_checks_its_other_seats(staged: Staged, tmp_path: Path) -> None:
    from coordinator.live.config import ConsoleConfig
    from keyrite.exits import BadInput

    kga = ConsoleConfig.load(staged.consoles["KGA"])
    assert [p.resolve() for p in kga.also] == [staged.live / "officers" / "DSO5"]  # from the file
    text = staged.consoles["KGA"].read_text()
    for also, message in (("[1]", "console.also must be a list of non-empty strings"),
                          ('["../officers/NOBODY"]', "console.also: ")):
        bad = staged.live / "consoles" / f"bad-{len(also)}.toml"
        bad.write_text(re.sub(r"also = .*", f"also = {also}", text))
        with pytest.raises(BadInput, match=re.escape(message)):
            ConsoleConfig.load(bad)
        bad.unlink()
