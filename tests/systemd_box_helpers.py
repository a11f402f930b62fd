"""A real systemd for tests/test_systemd_box.py: `../shared/tools/systemd-box` boots Debian
bookworm's systemd 252 as PID 1 of a systemd-nspawn container in a directory (sharing the host's
network), and this module installs keyrite in it the way docs/signer-install.md and
systemd/README.md say an operator does.

Everything run inside goes through `systemd-box exec` (nsenter into the running box) with a
timeout; `Box.destroy` powers the box off and removes its directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOOL = Path(os.environ.get("KEYRITE_SYSTEMD_BOX",
                           ROOT.parent / "shared" / "tools" / "systemd-box"))

#: docs/signer-install.md, section 1 (the shim's host); the coordinator needs nothing more
PACKAGES = ("python3", "python3-venv", "softhsm2", "openssh-client")
SRC = "/usr/local/src/keyrite"  # the reviewed checkout, copied in
VENV = "/opt/keyrite/.venv"  # where both units' ExecStart= expect keyrite
PINS = ("12345678", "87654321")  # SO and user PIN of the test token (docs: typed, not here)


class BoxUnavailable(Exception):
    """The box cannot be made or booted on this machine (the reason is the message)."""


def why_no_box() -> str | None:
    """Why this machine cannot run the box, or None."""
    if not TOOL.is_file():
        return f"{TOOL} (the systemd-box tool) is not there"
    if shutil.which("systemd-nspawn") is None:
        return ("systemd-nspawn is not installed (Debian package systemd-container; "
                "dev/setup.sh installs it)")
    if os.geteuid() != 0:
        return "systemd-nspawn needs root to boot the box"
    for tool in ("nsenter", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _run(argv: list[str], timeout: float, *, input: str | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """argv with a bound: on timeout its whole process group is killed."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else
                            subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{shlex.join(argv)[:300]} did not finish in {timeout} s:\n"
                             f"{out[-2000:]}\n{err[-2000:]}") from None
    r = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and r.returncode != 0:
        raise AssertionError(f"{shlex.join(argv)[:300]} exited {r.returncode}:\n"
                             f"{out[-3000:]}\n{err[-3000:]}")
    return r


@dataclass
class Box:
    dir: Path  # the tool's DIR: DIR/root is the box's /

    @property
    def root(self) -> Path:
        return self.dir / "root"

    # --- life cycle ------------------------------------------------------------------------------
    def boot(self) -> None:
        """init (about 45 s with fresh-debian's cached tarball; it builds that first if absent)
        and start. BoxUnavailable if either fails."""
        for cmd, timeout in (("init", 900), ("start", 120)):
            try:
                _run([str(TOOL), cmd, str(self.dir)], timeout)
            except AssertionError as e:
                raise BoxUnavailable(f"systemd-box {cmd} failed: {e}") from None

    def destroy(self) -> None:
        if self.dir.exists():
            _run([str(TOOL), "destroy", str(self.dir)], 120)

    # --- inside ----------------------------------------------------------------------------------
    def run(self, *argv: str, timeout: float = 60, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([str(TOOL), "exec", str(self.dir), *argv], timeout, input=input,
                    check=check)

    def sh(self, script: str, timeout: float = 60, check: bool = True) -> str:
        return self.run("bash", "-ec", script, timeout=timeout, check=check).stdout

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self, unit: str) -> int:
        return int(self.show(unit, "MainPID")["MainPID"])

    def log(self, unit: str, lines: int = 40) -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-o", "short-monotonic", "-n",
                        str(lines), check=False).stdout

    def write(self, path: str, text: str, *, mode: int = 0o644, owner: str = "root:root") -> None:
        """A file in the box (made through the box's root directory, owned inside by name)."""
        host = self.root / path.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(text)
        self.run("chown", owner, path)
        self.run("chmod", f"{mode:o}", path)

    def read(self, path: str) -> str:
        return (self.root / path.lstrip("/")).read_text()


# --- installing keyrite --------------------------------------------------------------------------
def _source_files() -> list[str]:
    """The checkout's files as the host's editable venv sees them: tracked and untracked-but-not-
    ignored files of the working tree (not .venv, not .git); every file when not a git
    checkout."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = _run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                    "--exclude-standard"], 60).stdout
        names = sorted(set(out.split("\0")) - {""})
    else:
        skip = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
        names = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                       if p.is_file() and not skip & set(p.relative_to(ROOT).parts))
    return [n for n in names if (ROOT / n).is_file()]  # a tracked file deleted in the tree


def install_keyrite(box: Box) -> None:
    """docs/signer-install.md sections 1 and 2: Debian's packages, then keyrite in a venv built
    inside the box with pip (its dependencies from PyPI), from a copy of this checkout."""
    dest = box.root / SRC.lstrip("/")
    dest.mkdir(parents=True)
    _run(["tar", "-C", str(ROOT), "--null", "-T", "-", "-cf", str(box.dir / "src.tar")], 120,
         input="\0".join(_source_files()) + "\0")
    _run(["tar", "-C", str(dest), "-xf", str(box.dir / "src.tar")], 120)
    (box.dir / "src.tar").unlink()
    box.sh("export DEBIAN_FRONTEND=noninteractive\n"
           "apt-get install -y -qq --no-install-recommends " + " ".join(PACKAGES)
           + " >/dev/null || { apt-get update -qq && apt-get install -y -qq "
           "--no-install-recommends " + " ".join(PACKAGES) + " >/dev/null; }", timeout=600)
    # the host's TLS trust store (systemd-box init copies it in), for a proxy in the way
    cert = "/etc/keyrite-ca/ca.crt"
    pip_env = f"PIP_CERT={cert} " if (box.root / cert.lstrip("/")).exists() else ""
    box.sh(f"python3 -m venv {VENV}\n"
           f"{pip_env}PIP_DISABLE_PIP_VERSION_CHECK=1 {VENV}/bin/pip install -q {SRC}\n"
           f"{VENV}/bin/keyrite --version", timeout=600)


def install_shim(box: Box, *, port: int, authorized_keys: str, authority: str) -> str:
    """docs/signer-install.md sections 1, 3, 4, 4b and 5 for keyrite-shim.service on a
    SoftHSM2 token, listening on 127.0.0.1:`port`; the unit is installed, not started. Returns
    the host key's SHA256 fingerprint (section 3's "write this down")."""
    so_pin, pin = PINS
    box.sh(f"""
useradd --system --user-group --no-create-home --home-dir /var/lib/keyrite-shim \\
        --shell /usr/sbin/nologin keyrite-shim
install -d -m 0700 -o keyrite-shim -g keyrite-shim /var/lib/keyrite-shim \\
        /var/lib/keyrite-shim/hsm /var/lib/keyrite-shim/hsm/tokens
install -d -m 0755 /etc/keyrite
cat > /etc/keyrite/softhsm2.conf <<'CONF'
directories.tokendir = /var/lib/keyrite-shim/hsm/tokens
objectstore.backend = file
log.level = ERROR
CONF
chmod 0644 /etc/keyrite/softhsm2.conf
runuser -u keyrite-shim -- env SOFTHSM2_CONF=/etc/keyrite/softhsm2.conf \\
        softhsm2-util --init-token --free --label ceremony --so-pin {so_pin} --pin {pin} >/dev/null
runuser -u keyrite-shim -- ssh-keygen -q -t ed25519 -N '' -C keyrite-shim \\
        -f /var/lib/keyrite-shim/ssh_host_ed25519_key
install -m 0640 -o root -g keyrite-shim /dev/null /etc/keyrite/signer.toml
cat > /etc/keyrite/signer.toml <<'CONF'
[signer]
name = "standby"
role = "standby"
state_dir = "/var/lib/keyrite-shim"
host_key_path = "/var/lib/keyrite-shim/ssh_host_ed25519_key"

[pkcs11]
module = "/usr/lib/softhsm/libsofthsm2.so"
softhsm2_conf = "/etc/keyrite/softhsm2.conf"
token_label = "ceremony"
user_pin = "{pin}"
CONF
cat > /etc/keyrite/shim.toml <<'CONF'
[shim]
listen = "127.0.0.1"
port = {port}
host_key = "/var/lib/keyrite-shim/ssh_host_ed25519_key"
authorized_keys = "authorized_keys"
signer_config = "signer.toml"
authority = "authority.toml"
CONF
""", timeout=120)
    box.write("/etc/keyrite/authorized_keys", authorized_keys)
    box.write("/etc/keyrite/authority.toml", authority)
    box.write("/etc/systemd/system/keyrite-shim.service",
              (ROOT / "systemd" / "keyrite-shim.service").read_text())
    box.run("systemctl", "daemon-reload")
    # section 5's `enable --now`, without the --now; enabled, the unit also stays loaded while
    # stopped, so `systemctl show` keeps how its last run ended
    box.run("systemctl", "enable", "--quiet", "keyrite-shim.service")
    out = box.run("ssh-keygen", "-lf", "/var/lib/keyrite-shim/ssh_host_ed25519_key.pub").stdout
    return out.split()[1]


# the path-valued keys of coordinator.toml (coordinator/live/config.py)
_PATHS = {"script", "roster", "previous", "journal", "key", "curve", "livecd", "drives", "mounts",
          "device_backup_password", "client_key"}
STATE = "/var/lib/keyrite-coordinator"
CEREMONY = "/etc/keyrite/ceremony"  # the staged ceremony's files, read-only to the service


def install_coordinator(box: Box, staged_root: Path, staged_config: Path) -> None:
    """keyrite-coordinator.service as systemd/README.md lays it out: the files of a ceremony
    staged on the host (`keyrite stage`) under /etc/keyrite (root, group keyrite-coordinator,
    0640), its config at /etc/keyrite/coordinator.toml, the journal and the folder drives in
    the state directory. The unit is installed, not started."""
    box.sh("useradd --system --user-group --no-create-home "
           f"--home-dir {STATE} --shell /usr/sbin/nologin keyrite-coordinator\n"
           f"install -d -m 0700 -o keyrite-coordinator -g keyrite-coordinator {STATE}\n"
           "install -d -m 0755 /etc/keyrite")
    dest = box.root / CEREMONY.lstrip("/")
    shutil.copytree(staged_root, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("signer", "drives"))
    shutil.copytree(staged_root / "drives", box.root / STATE.lstrip("/") / "drives")
    doc = tomllib.loads(staged_config.read_text())
    here = staged_config.parent

    def moved(key: str, value: str) -> str:
        if key == "journal":
            return f"{STATE}/journal.jsonl"
        if key == "drives":
            return value if value == "usb" else f"{STATE}/drives"
        p = Path(value) if Path(value).is_absolute() else here / value
        if key == "script":
            shutil.copyfile(p, box.root / "etc/keyrite/ceremony.toml")
            return "/etc/keyrite/ceremony.toml"
        rel = p.resolve().relative_to(staged_root.resolve())  # everything else was staged
        return f"{CEREMONY}/{rel}"

    for section in ("coordinator", "signer"):
        for k, v in doc[section].items():
            if k in _PATHS and isinstance(v, str):
                doc[section][k] = moved(k, v)
    (box.root / "etc/keyrite/coordinator.toml").write_text(_toml(doc))
    box.sh(f"chown -R root:keyrite-coordinator {CEREMONY} /etc/keyrite/ceremony.toml "
           "/etc/keyrite/coordinator.toml\n"
           f"find {CEREMONY} -type d -exec chmod 0750 {{}} +\n"
           f"find {CEREMONY} /etc/keyrite/ceremony.toml /etc/keyrite/coordinator.toml "
           "-type f -exec chmod 0640 {} +\n"
           f"chown -R keyrite-coordinator:keyrite-coordinator {STATE}", timeout=60)
    box.write("/etc/systemd/system/keyrite-coordinator.service",
              (ROOT / "systemd" / "keyrite-coordinator.service").read_text())
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "enable", "--quiet", "keyrite-coordinator.service")


def _toml(doc: dict[str, Any]) -> str:
    """Tables of strings, integers, booleans and lists of strings (what configs here hold)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} as TOML here")

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)

    out = []
    for name, table in doc.items():
        if not isinstance(table, dict) or any(isinstance(v, dict) for v in table.values()):
            raise TypeError(f"[{name}]: only flat tables are written here")
        out.append(f"[{key(name)}]")
        out += [f"{key(k)} = {value(v)}" for k, v in table.items()]
        out.append("")
    return "\n".join(out)


# --- looking at a running service ----------------------------------------------------------------
def mounts(box: Box, pid: int) -> dict[str, set[str]]:
    """Mount point -> its per-mount options, as the process `pid` (a box PID) sees them; the
    last mount on a point wins, as in the kernel."""
    out: dict[str, set[str]] = {}
    for line in box.run("cat", f"/proc/{pid}/mountinfo").stdout.splitlines():
        fields = line.split()
        out[fields[4]] = set(fields[5].split(","))
    return out


def status(box: Box, pid: int) -> dict[str, str]:
    """/proc/PID/status of a box PID."""
    text = box.run("cat", f"/proc/{pid}/status").stdout
    return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


def try_write(box: Box, pid: int, user: str, parent: str) -> str:
    """Make a directory in `parent` (in the box) owned by `user`, then try to create a file in
    it as `user` inside the mount namespace of process `pid`: "written", or the error. The
    permission bits allow it, so only a read-only mount can refuse it."""
    d = f"{parent.rstrip('/')}/keyrite-probe-{user}"
    box.sh(f"rm -rf {d}; install -d -o {user} -g {user} -m 0700 {d}")
    try:
        r = box.run("nsenter", "-t", str(pid), "-m", "--", "setpriv", f"--reuid={user}",
                    f"--regid={user}", "--clear-groups", "--", "sh", "-c", f": > {d}/file",
                    check=False)
    finally:
        box.sh(f"rm -rf {d}")
    return "written" if r.returncode == 0 else r.stderr.strip()
