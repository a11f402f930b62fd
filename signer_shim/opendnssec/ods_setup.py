"""A private OpenDNSSEC 2.1 installation in one directory, and its enforcer daemon, for tests and
rehearsals: conf.xml, kasp.xml, zonelist.xml, the KASP database, a SoftHSM2 token, and a
signer config for `OdsSigner`.

Why not Debian's own files: `/etc/opendnssec` and `/var/lib/opendnssec` are the machine's, and a
test must never touch a real signer's state; every path in the private conf.xml is under the
directory. `ods-enforcer-db-setup` always reads /etc/opendnssec/conf.xml, so the database is
made here from Debian's schema. The policies have no `<Purge>`: dead keys stay on the token until
the ceremony purges them, as the ceremony expects.

Resource handling: `EnforcerDaemon` starts `ods-enforcerd -d` with SOFTHSM2_CONF in the child's
environment only, waits for its socket, and stops it with `ods-enforcer stop`, then SIGTERM,
then SIGKILL (it hangs on stop about once in 16), always reaping it; a daemon a restore started in
its place (`OdsSigner` restarts the enforcer, see ods_daemon) is stopped by its pid file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from signer_shim.algorithms import algorithm
from signer_shim.hostkey import ensure_host_key
from signer_shim.interface import PolicyKeys
from signer_shim.opendnssec.ods_config import OdsConfig
from signer_shim.opendnssec.ods_daemon import accepts, stop_enforcer
from signer_shim.pkcs11.softhsm import SoftHSMToken, child_env, create_token

SCHEMA = Path("/usr/share/opendnssec/schema.sqlite")
RNG_DIR = Path("/usr/share/opendnssec")


@dataclass(frozen=True)
class OdsInstallation:
    directory: Path
    conf: Path  # conf.xml
    kasp: Path
    zonelist: Path
    database: Path
    socket: Path
    token: SoftHSMToken
    config: OdsConfig
    config_path: Path  # signer.toml for OdsSigner.from_file / open_signer


def _duration(seconds: int) -> str:
    return f"P{seconds // 86400}D" if seconds % 86400 == 0 else f"PT{seconds}S"


def _algorithm_xml(name: str) -> str:
    a = algorithm(name)
    number = 8 if a.kind == "RSA" else 13
    return f'<Algorithm length="{a.bits}">{number}</Algorithm>'


def kasp_xml(policies: Sequence[PolicyKeys], repository: str) -> str:
    """A kasp.xml with one policy per name in `policies` (short TTLs: nothing here signs)."""
    by_policy: dict[str, list[PolicyKeys]] = {}
    for pk in policies:
        by_policy.setdefault(pk.policy, []).append(pk)
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<KASP>"]
    for name, keys in by_policy.items():
        key_xml = "".join(
            f"<{pk.role}>{_algorithm_xml(pk.algorithm)}"
            f"<Lifetime>{_duration(pk.lifetime_seconds)}</Lifetime>"
            f"<Repository>{escape(repository)}</Repository></{pk.role}>"
            for pk in keys
        )
        out.append(
            f"<Policy name={quoteattr(name)}><Description>keyrite rehearsal</Description>"
            "<Signatures><Resign>PT2H</Resign><Refresh>P3D</Refresh>"
            "<Validity><Default>P14D</Default><Denial>P14D</Denial></Validity>"
            "<Jitter>PT12H</Jitter><InceptionOffset>PT3600S</InceptionOffset>"
            "<MaxZoneTTL>P1D</MaxZoneTTL></Signatures>"
            "<Denial><NSEC/></Denial>"
            "<Keys><TTL>PT3600S</TTL><RetireSafety>PT3600S</RetireSafety>"
            f"<PublishSafety>PT3600S</PublishSafety>{key_xml}</Keys>"
            "<Zone><PropagationDelay>PT43200S</PropagationDelay><SOA><TTL>PT3600S</TTL>"
            "<Minimum>PT3600S</Minimum><Serial>unixtime</Serial></SOA></Zone>"
            "<Parent><PropagationDelay>PT9999S</PropagationDelay><DS><TTL>PT3600S</TTL></DS>"
            "<SOA><TTL>PT172800S</TTL><Minimum>PT10800S</Minimum></SOA></Parent></Policy>"
        )
    out.append("</KASP>")
    return "\n".join(out) + "\n"


def zonelist_xml(zones: Mapping[str, Sequence[str]], directory: Path) -> str:
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<ZoneList>"]
    for policy, names in zones.items():
        for z in names:
            out.append(
                f"<Zone name={quoteattr(z)}><Policy>{escape(policy)}</Policy>"
                f"<SignerConfiguration>{directory}/signconf/{escape(z)}.xml</SignerConfiguration>"
                f"<Adapters><Input><Adapter type=\"File\">{directory}/unsigned/{escape(z)}"
                f"</Adapter></Input><Output><Adapter type=\"File\">{directory}/signed/"
                f"{escape(z)}</Adapter></Output></Adapters></Zone>")
    out.append("</ZoneList>")
    return "\n".join(out) + "\n"


def conf_xml(directory: Path, repository: str, label: str, pin: str, module: Path) -> str:
    d = directory
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <RepositoryList>
    <Repository name={quoteattr(repository)}>
      <Module>{module}</Module>
      <TokenLabel>{escape(label)}</TokenLabel>
      <PIN>{escape(pin)}</PIN>
    </Repository>
  </RepositoryList>
  <Common>
    <Logging><Verbosity>3</Verbosity></Logging>
    <PolicyFile>{d}/kasp.xml</PolicyFile>
    <ZoneListFile>{d}/zonelist.xml</ZoneListFile>
  </Common>
  <Enforcer>
    <Datastore><SQLite>{d}/kasp.db</SQLite></Datastore>
    <ManualKeyGeneration/>
    <PidFile>{d}/enforcerd.pid</PidFile>
    <SocketFile>{d}/enforcer.sock</SocketFile>
    <WorkingDirectory>{d}/enforcer</WorkingDirectory>
  </Enforcer>
  <Signer>
    <WorkingDirectory>{d}/signer</WorkingDirectory>
  </Signer>
</Configuration>
"""


def create_installation(
    directory: Path,
    policies: Sequence[PolicyKeys],
    zones: Mapping[str, Sequence[str]],
    *,
    name: str = "signer",
    role: str = "standby",
    repository: str = "SoftHSM",
    label: str = "ods",
    timeout: str = "PT2M",
    user_pin: str | None = None,
    so_pin: str | None = None,
) -> OdsInstallation:
    """Write a complete private installation into `directory` (which must not exist). The
    policies and zones are in the XML files only: `EnforcerDaemon.bootstrap()` imports them.
    PINs default to fresh random ones; a standby to restore a backup onto is given its
    primary's (a restore brings the backup's token back, PINs included)."""
    d = Path(directory).absolute()
    d.mkdir(parents=True)
    for sub in ("enforcer", "signer", "signconf", "unsigned", "signed"):
        (d / sub).mkdir()
    token = create_token(d / "hsm", label, user_pin=user_pin, so_pin=so_pin)
    conf = d / "conf.xml"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds the PIN
    with os.fdopen(fd, "w") as f:
        f.write(conf_xml(d, repository, label, token.user_pin, token.module))
    (d / "kasp.xml").write_text(kasp_xml(policies, repository))
    (d / "zonelist.xml").write_text(zonelist_xml(zones, d))
    for z in (z for names in zones.values() for z in names):
        (d / "unsigned" / z).write_text(f"{z}. 3600 IN SOA ns.{z}. h.{z}. 1 3600 600 86400 60\n")
    db = d / "kasp.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript(SCHEMA.read_text())
        conn.execute("INSERT INTO databaseVersion (version) VALUES (1)")
        conn.commit()
    state = d / "state"
    config = OdsConfig(name=name, role=role, state_dir=state,
                       host_key_path=ensure_host_key(state / "ssh_host_ed25519_key"),
                       conf=conf, softhsm2_conf=token.softhsm2_conf, timeout=timeout)
    config_path = config.save(d / "signer.toml")
    return OdsInstallation(d, conf, d / "kasp.xml", d / "zonelist.xml", db,
                           d / "enforcer.sock", token, config, config_path)


def validate_xml(inst: OdsInstallation) -> list[str]:
    """xmllint --relaxng each file against Debian's schemas; returns the problems ([] if none)."""
    problems = []
    for path, rng in ((inst.conf, "conf.rng"), (inst.kasp, "kasp.rng"),
                      (inst.zonelist, "zonelist.rng")):
        p = subprocess.run(["xmllint", "--noout", "--relaxng", str(RNG_DIR / rng), str(path)],
                           capture_output=True, text=True, check=False)
        if p.returncode != 0:
            problems.append(f"{path.name}: {p.stderr.strip()}")
    return problems


class EnforcerDaemon:
    """`ods-enforcerd -c CONF -d` for one installation; `with` starts and stops it."""

    def __init__(self, inst: OdsInstallation, *, set_time: int | None = None,
                 log: Path | None = None) -> None:
        self.inst = inst
        self.set_time = set_time
        self.log = log or inst.directory / "enforcerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EnforcerDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, ready_timeout: float = 10.0) -> None:
        sock = self.inst.socket
        sock.unlink(missing_ok=True)  # left by a killed daemon
        args = ["ods-enforcerd", "-c", str(self.inst.conf), "-d"]
        if self.set_time is not None:
            args += ["--set-time", str(self.set_time)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, env=child_env(self.inst.token.softhsm2_conf),
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + ready_timeout
        while not accepts(sock):  # the socket file appears before the daemon listens on it
            if self.proc.poll() is not None:
                raise RuntimeError(f"ods-enforcerd exited with {self.proc.returncode}; "
                                   f"see {self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ods-enforcerd did not listen in {ready_timeout} s")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> str:
        """Stop and reap the daemon; returns how: "SIGTERM", or "SIGKILL" after `timeout`."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            # a restore stops this daemon and starts its own: found by the pid file
            how = stop_enforcer(self.inst.directory / "enforcerd.pid", self.inst.socket, timeout)
            return "exited" if how == "not running" else how
        # SIGTERM is what `ods-enforcer stop` amounts to, without a client that waits too
        how = "SIGTERM"
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            how = "SIGKILL"
            proc.kill()
            proc.wait()
        self.inst.socket.unlink(missing_ok=True)
        return how

    def command(self, *args: str, timeout: float = 30.0) -> str:
        """Run `ods-enforcer -s SOCKET args...`; its output, or RuntimeError if it failed."""
        p = subprocess.run(["ods-enforcer", "-s", str(self.inst.socket), *args],
                           capture_output=True, text=True, timeout=timeout, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"ods-enforcer {' '.join(args)}: {p.returncode} "
                               f"{p.stdout.strip()} {p.stderr.strip()}")
        return p.stdout

    def bootstrap(self) -> None:
        """Import the policies and zones from the XML files into the KASP database."""
        self.command("policy", "import")
        self.command("zonelist", "import")


