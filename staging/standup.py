"""Standing a shim up on this machine: its files, and the `keyrite shim` process on 127.0.0.1.

The rehearsal, the tests and the bench all need a real shim beside a token they made: the same
enrolment an operator does by hand on a signer host (docs/signer-install.md), done in one call.
`ShimProcess` runs `python -m signer_shim.shim_command` as a child, waits for its "listening on"
line, and stops it with SIGTERM (SIGKILL only if it does not go). If its parent dies, the child
gets SIGTERM too (prctl PDEATHSIG), finishes an operation it is running and exits; a new shim on
the same signer waits for it (signer_shim.request_journal.RequestJournal.claim).
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncssh

from coordinator.shim_client import ShimClient
from signer_shim.authority import Authority
from signer_shim.backends import load_signer_config

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class ShimFiles:
    config: Path  # shim.toml
    client_key: Path  # the coordinator's SSH key (authorized)
    host_key_pin: str  # SHA256:... of the signer's host key


def write_shim_files(directory: Path, signer_config: Path, authority: Authority, *,
                     port: int = 0, client_key: Path | None = None) -> ShimFiles:
    """shim.toml, authorized_keys (one coordinator key, made here unless given) and
    authority.toml in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    if client_key is None:
        client_key = directory / "coordinator_ssh_key"
        if not client_key.exists():
            key = asyncssh.generate_private_key("ssh-ed25519", comment="keyrite coordinator")
            key.write_private_key(client_key)
            os.chmod(client_key, 0o600)
    public = asyncssh.read_private_key(client_key).export_public_key()
    (directory / "authorized_keys").write_bytes(public)
    (directory / "authority.toml").write_text(authority.to_toml())
    host_key = load_signer_config(signer_config).host_key_path  # either backend
    pin = asyncssh.read_private_key(host_key).get_fingerprint("sha256")
    (directory / "shim.toml").write_text(
        "[shim]\n"
        'listen = "127.0.0.1"\n'
        f"port = {port}\n"
        f"host_key = {json.dumps(str(host_key))}\n"
        'authorized_keys = "authorized_keys"\n'
        f"signer_config = {json.dumps(str(signer_config))}\n"
        'authority = "authority.toml"\n')
    return ShimFiles(directory / "shim.toml", client_key, pin)


class ClientFiles(Protocol):
    """What the coordinator's client needs of a shim's files (ShimFiles, or OpenDNSSEC's)."""

    @property
    def client_key(self) -> Path: ...

    @property
    def host_key_pin(self) -> str: ...


def client_of(files: ClientFiles, proc: ShimProcess, timeout: float) -> ShimClient:
    """The coordinator's client of a shim stood up here: its authorized key, the host key pinned,
    on loopback."""
    return ShimClient("127.0.0.1", proc.port, client_key=files.client_key,
                      host_key_pin=files.host_key_pin, timeout=timeout)


class ShimProcess:
    """A `keyrite shim` child process; `port` is where it listens."""

    def __init__(self, config: Path, *, log: Path | None = None, wait: float = 60.0,
                 env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log or config.parent / "shim.log"
        with self.log.open("a") as err:  # a file, not a pipe: the shim logs every session
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "signer_shim.shim_command", "--config", str(config)],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                env={**os.environ, **(env or {})}, start_new_session=True,
                preexec_fn=_terminate_with_parent)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], wait)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the shim did not start ({line.strip()!r}); its log: "
                               f"{self.log}\n{self.log.read_text()[-2000:]}")
        self.port = int(line.split()[-1])

    def __enter__(self) -> ShimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL, the crash the journals are made for (its HSM worker dies with it)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        _close(self.proc)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        _close(self.proc)
        return self.proc.returncode


def _terminate_with_parent() -> None:
    """In the child: SIGTERM when the process that started us dies (even by SIGKILL), so a
    crashed rehearsal leaves no shim behind; SIGTERM lets a running operation finish."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _close(proc: subprocess.Popen[str]) -> None:
    if proc.stdout is not None:
        proc.stdout.close()
