"""Stopping and starting the enforcer daemon around a restore, by its pid file and its socket.

Why here and not through `ods-enforcer stop`: that client was seen to block for 3 s and more,
and the daemon hangs on stop about once in 16 (docs/signer-opendnssec.md). So the daemon is
found by conf.xml's `Enforcer/PidFile` (checked to name an `ods-enforcerd` process, so a stale
file never signals a stranger), sent SIGTERM and, if it has not gone after `timeout`, SIGKILL.
Started again as `ods-enforcerd -c CONF`, which daemonises itself; ready once its socket takes
a connection. A process that has exited but not been reaped (a zombie: the tests' daemon is the
test's child) counts as stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from signer_shim.interface import SignerError
from signer_shim.pkcs11.softhsm import child_env

PROCESS_NAME = "ods-enforcerd"


def accepts(path: Path) -> bool:
    """Whether a unix socket at `path` takes a connection now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    """Running (not exited, not a zombie) and an ods-enforcerd."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, _, rest = stat.partition("(")[2].rpartition(")")
    return name == PROCESS_NAME and rest.split()[0] != "Z"


def daemon_pid(pidfile: Path) -> int | None:
    """The running enforcer's process id from its pid file, or None."""
    try:
        pid = int(Path(pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def stop_enforcer(pidfile: Path, sock: Path, timeout: float = 10.0) -> str:
    """Stop the enforcer if it runs: "not running", "SIGTERM" or "SIGKILL". Refuses (SignerError)
    a daemon that answers on its socket but has no pid file to find it by."""
    pid = daemon_pid(pidfile)
    if pid is None:
        if accepts(sock):
            raise SignerError(f"the enforcer answers on {sock} but {pidfile} names no running "
                              f"{PROCESS_NAME}: stop it by hand, then execute again")
        return "not running"
    how = "SIGTERM"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline and how == "SIGTERM":
            how = "SIGKILL"
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        elif time.monotonic() > deadline:
            raise SignerError(f"the enforcer (pid {pid}) does not stop even on SIGKILL")
        time.sleep(0.02)
    if how == "SIGKILL":  # it had no chance to tidy up
        Path(pidfile).unlink(missing_ok=True)
        Path(sock).unlink(missing_ok=True)
    return how


def clear_stale_pidfile(pidfile: Path) -> None:
    """Remove a pid file a killed daemon left, when it names no running enforcer: ods-enforcerd
    refuses to start over a pid file whose process still exists ("Unable to write process id
    to pidfile"), and a killed daemon left unreaped (a zombie, where no init reaps orphans, as
    in a container) still does."""
    if daemon_pid(pidfile) is None:
        Path(pidfile).unlink(missing_ok=True)


def start_enforcer(enforcerd: str, conf: Path, softhsm2_conf: Path, sock: Path,
                   timeout: float = 10.0, pidfile: Path | None = None) -> None:
    """Start `enforcerd -c CONF` (it daemonises) with SOFTHSM2_CONF naming this signer's token,
    and wait until its socket takes connections; nothing is done if it already does. A stale
    `pidfile` is cleared first (`clear_stale_pidfile`)."""
    if accepts(sock):
        return
    Path(sock).unlink(missing_ok=True)  # left by a killed daemon
    if pidfile is not None:
        clear_stale_pidfile(pidfile)
    try:
        p = subprocess.run([enforcerd, "-c", str(conf)], env=child_env(softhsm2_conf),
                           capture_output=True, text=True, timeout=timeout, check=False,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SignerError(f"starting the enforcer: {e}") from None
    if p.returncode != 0:
        raise SignerError(f"{enforcerd} -c {conf} failed ({p.returncode}): "
                          f"{(p.stderr or p.stdout).strip()[-300:]}")
    deadline = time.monotonic() + timeout
    while not accepts(sock):
        if time.monotonic() > deadline:
            raise SignerError(f"the enforcer did not listen on {sock} within {timeout:.0f} s")
        time.sleep(0.02)
