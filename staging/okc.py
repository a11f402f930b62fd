"""A private opencryptoki (3.8) software token: its own pkcsslotd, its own state directory.

Why namespaces: opencryptoki has fixed paths and no environment override
(/etc/opencryptoki/opencryptoki.conf, /var/lib/opencryptoki/swtok, /run/pkcsslotd.pid,
/run/lock/opencryptoki) and pkcsslotd shares its slot table through SysV shared memory keyed by
ftok() on its own binary. So each instance runs under `unshare --mount --ipc`, with those
directories bind-mounted from a scratch directory and a fresh tmpfs on /dev/shm: two rehearsals
or tests (or the host's own opencryptoki) never see each other's tokens.

How the signer reaches it: every process that calls the token joins pkcsslotd's mount and IPC
namespaces with `nsenter --target PID --mount --ipc` (`OkcToken.launcher`). signer.toml's
`pkcs11.launcher` carries that prefix, so the shim (which runs outside, on the host's network
and files) starts each worker inside; pkcsconf and pkcs11-tool are run the same way. Root with
CAP_SYS_ADMIN is needed (unshare, nsenter, bind mounts); `unavailable()` says why not.

Stopping: pkcsslotd is the unshare child's exec'd process, so ending it ends the namespace
(workers are the signer's children and end with it; `stop()` is called after the shim stops).
The token's state stays in the directory, so `restart()` serves the same token again, under a
new pkcsslotd (a new PID, so a new launcher: `running()` rewrites signer.toml's).

Used by `keyrite rehearse --token-module opencryptoki` (staging/fixture.py seeds it) and by the
tests (tests/okc_helpers.py is a thin wrapper).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from signer_shim.config import SignerConfig

MODULE = Path("/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so")
SLOT = 3  # the software token's slot in our opencryptoki.conf, as in Debian's default one
DEFAULT_SO_PIN = "87654321"  # what a fresh token's SO PIN is until pkcsconf -P changes it
PROFILE = "opencryptoki-sw"  # signer_shim.pkcs11.profiles' name for this token
_CONF = "version opencryptoki-3.1\n\nslot 3\n{\nstdll = libpkcs11_sw.so\n}\n"
CAP_SYS_ADMIN = 21  # linux/capability.h
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def has_cap_sys_admin() -> bool:
    """Whether this process holds CAP_SYS_ADMIN (effective): root in a container often does
    not, and unshare or mount then fail."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    m = re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M)
    return bool(m) and bool(int(m.group(1), 16) >> CAP_SYS_ADMIN & 1)


def unavailable() -> str:
    """Why a private opencryptoki cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "a private opencryptoki needs root (unshare, nsenter, bind mounts)"
    if not has_cap_sys_admin():
        return ("a private opencryptoki needs CAP_SYS_ADMIN (unshare --mount, bind mounts), "
                "which this process lacks (a container without it?)")
    for tool in ("pkcsslotd", "pkcsconf", "unshare", "nsenter", "pkcs11-tool"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is not installed (dev/setup.sh installs opencryptoki)"
    if not MODULE.exists():
        return f"{MODULE} is missing (Debian package libopencryptoki0)"
    try:
        probe = subprocess.run(["unshare", "--mount", "--ipc", "true"], capture_output=True,
                               text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare --mount --ipc cannot run here: {e}"
    if probe.returncode != 0:
        return f"unshare --mount --ipc fails here: {probe.stderr.strip()}"
    return ""


@dataclass
class OkcToken:
    directory: Path
    proc: subprocess.Popen[bytes] = field(repr=False)  # pkcsslotd, the namespaces' holder
    label: str
    user_pin: str = field(repr=False)
    so_pin: str = field(repr=False)
    module: Path = MODULE

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def launcher(self) -> tuple[str, ...]:
        """The argv prefix that runs a command beside this pkcsslotd."""
        return ("nsenter", f"--target={self.pid}", "--mount", "--ipc")

    def run(self, *argv: str, stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.launcher, *argv], input=stdin, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def pkcsconf(self, *args: str, stdin: str | None = None) -> str:
        p = self.run("pkcsconf", "-c", str(SLOT), *args, stdin=stdin)
        if p.returncode != 0:
            raise RuntimeError(f"pkcsconf {' '.join(args[:1])} failed: {p.stdout}{p.stderr}")
        return p.stdout

    def private_key_ids(self) -> list[str]:
        """The private keys' CKA_IDs as OpenSC's pkcs11-tool reads them on this module: not
        keyrite's code."""
        p = self.run("pkcs11-tool", "--module", str(self.module), "--slot", str(SLOT),
                     "--login", "--pin", self.user_pin, "--list-objects", "--type", "privkey")
        if p.returncode != 0:
            raise RuntimeError(f"pkcs11-tool failed: {p.stderr}")
        return sorted(re.findall(r"^\s*ID:\s*([0-9a-f]+)\s*$", p.stdout, re.M))

    def mechanisms(self) -> str:
        p = self.run("pkcs11-tool", "--module", str(self.module), "--slot", str(SLOT), "-M")
        return p.stdout


def _state_dirs(directory: Path) -> dict[str, Path]:
    return {"/etc/opencryptoki": directory / "etc", "/var/lib/opencryptoki": directory / "lib",
            "/run": directory / "run"}


def _terminate_with_parent() -> None:
    """In the child: SIGTERM when the process that started it dies (even by SIGKILL), kept
    across the exec of sh and pkcsslotd, so a crashed rehearsal leaves no pkcsslotd behind."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _launch(directory: Path, label: str, user_pin: str, so_pin: str, wait: float) -> OkcToken:
    """pkcsslotd in its own namespaces over `directory`'s state, once its pid file is there."""
    dirs = _state_dirs(directory)
    (dirs["/run"] / "pkcsslotd.pid").unlink(missing_ok=True)  # a stopped instance's
    mounts = " && ".join(f"mount --bind {src} {dst}" for dst, src in dirs.items())
    log = directory / "pkcsslotd.log"
    with open(directory / "pkcsslotd.out", "wb") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--ipc", "--propagation", "private", "sh", "-c",
             f"{mounts} && mount -t tmpfs tmpfs /dev/shm && exec pkcsslotd -f -l {log}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_terminate_with_parent)
    token = OkcToken(directory, proc, label, user_pin, so_pin)
    try:
        deadline = time.monotonic() + wait
        while not (dirs["/run"] / "pkcsslotd.pid").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pkcsslotd did not start: "
                                   + (directory / "pkcsslotd.out").read_text())
            time.sleep(0.05)
    except BaseException:
        stop(token)
        raise
    return token


def start(directory: Path, label: str, user_pin: str = "1234", so_pin: str = "11223344",
          wait: float = 30.0) -> OkcToken:
    """Start a private pkcsslotd in `directory` (new) and initialise its software token with
    pkcsconf (label, new SO PIN, user PIN). PINs are 4 to 8 characters on this token."""
    directory = Path(directory).absolute()
    dirs = _state_dirs(directory)
    for d in (dirs["/etc/opencryptoki"], dirs["/var/lib/opencryptoki"] / "swtok" / "TOK_OBJ",
              dirs["/run"] / "lock" / "opencryptoki" / "swtok"):
        d.mkdir(parents=True)
    (dirs["/etc/opencryptoki"] / "opencryptoki.conf").write_text(_CONF)
    for top in (dirs["/var/lib/opencryptoki"], dirs["/run"] / "lock" / "opencryptoki"):
        for p in (top, *top.rglob("*")):
            shutil.chown(p, group="pkcs11")
            p.chmod(0o770)
    token = _launch(directory, label, user_pin, so_pin, wait)
    try:
        token.pkcsconf("-I", "-S", DEFAULT_SO_PIN, stdin=f"{label}\n")
        token.pkcsconf("-P", "-S", DEFAULT_SO_PIN, "-n", so_pin)
        token.pkcsconf("-u", "-S", so_pin, "-n", user_pin)
    except BaseException:
        stop(token)
        raise
    return token


def restart(directory: Path, label: str, user_pin: str, wait: float = 30.0) -> OkcToken:
    """A new pkcsslotd over a token `start` made and `stop` left: the same token, keys and
    PINs (the SO PIN is not needed again and not kept)."""
    directory = Path(directory).absolute()
    if not (_state_dirs(directory)["/var/lib/opencryptoki"] / "swtok" / "NVTOK.DAT").is_file():
        raise RuntimeError(f"{directory}: no opencryptoki software token here")
    return _launch(directory, label, user_pin, "", wait)


def stop(token: OkcToken, timeout: float = 10.0) -> None:
    """End pkcsslotd (and with it the namespaces), SIGKILL if it does not go in time."""
    if token.proc.poll() is None:
        token.proc.send_signal(signal.SIGTERM)
    try:
        token.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        token.proc.kill()
        token.proc.wait()


@contextmanager
def okc_token(directory: Path, label: str) -> Iterator[OkcToken]:
    token = start(directory, label)
    try:
        yield token
    finally:
        stop(token)


def token_directory(config: SignerConfig) -> Path:
    """Where a rehearsal's opencryptoki token keeps its state: `hsm/` beside the state dir."""
    return config.state_dir.parent / "hsm"


def is_okc(config: SignerConfig) -> bool:
    """Whether this signer's token is a private opencryptoki this module runs."""
    return config.profile == PROFILE


@contextmanager
def running(config_path: Path) -> Iterator[OkcToken]:
    """The signer's private opencryptoki up for as long as the block runs: pkcsslotd restarted
    over its token directory and signer.toml's launcher pointed at the new one (workers started
    under the old PID would join no namespace), stopped at the end."""
    config = SignerConfig.load(config_path)
    token = restart(token_directory(config), config.token_label, config.user_pin)
    try:
        dataclasses.replace(config, launcher=token.launcher).save(config_path)
        yield token
    finally:
        stop(token)
