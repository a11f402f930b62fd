"""The OpenDNSSEC signer's configuration, and what it reads from OpenDNSSEC's own conf.xml.

Two files, one truth each: the TOML file (read strictly with the same reader as every other
signer-side config, `signer_shim.config.read_sections`) says who the signer is, where its state
lives and where OpenDNSSEC's conf.xml is; conf.xml says everything OpenDNSSEC itself needs
(repository, token label, KASP database, enforcer socket). Nothing from conf.xml is repeated in
the TOML file except, optionally, the socket (for a daemon started with another socket path).

    [signer]
    backend = "opendnssec"          # what `open_signer` dispatches on
    name = "signer"
    role = "standby"
    state_dir = "state"
    host_key_path = "state/ssh_host_ed25519_key"

    [opendnssec]
    conf = "ods/conf.xml"
    softhsm2_conf = "ods/softhsm2.conf"
    # optional: socket (default: conf.xml's Enforcer/SocketFile), enforcer ("ods-enforcer"),
    # hsmutil ("ods-hsmutil"), timeout (ISO 8601, default "PT10M": the wait for generation),
    # enforcerd ("ods-enforcerd": what a restore starts the enforcer again with)
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ceremony.durations import DurationError, parse_duration
from keyrite.configfile import parse_toml
from keyrite.files import write_atomic
from signer_shim.config import ConfigError, read_file, read_sections

BACKEND = "opendnssec"
_SIGNER = ("backend", "name", "role", "state_dir", "host_key_path")
_ODS_REQUIRED = ("conf", "softhsm2_conf")
_ODS_OPTIONAL = ("socket", "enforcer", "hsmutil", "timeout", "enforcerd")
_PATHS = {"state_dir", "host_key_path", "conf", "softhsm2_conf", "socket"}
DEFAULT_TIMEOUT = "PT10M"
DEFAULT_SOCKET = Path("/run/opendnssec/enforcer.sock")
DEFAULT_PIDFILE = Path("/run/opendnssec/enforcerd.pid")


@dataclass(frozen=True, kw_only=True)
class OdsConfig:
    name: str
    role: str
    state_dir: Path  # operation journal, outputs/
    host_key_path: Path
    conf: Path  # OpenDNSSEC's conf.xml
    softhsm2_conf: Path  # SOFTHSM2_CONF for ods-hsmutil (the daemon gets it from its starter)
    socket: Path | None = None  # None: conf.xml's Enforcer/SocketFile
    enforcer: str = "ods-enforcer"
    hsmutil: str = "ods-hsmutil"
    timeout: str = DEFAULT_TIMEOUT  # how long to wait for the enforcer to generate keys
    enforcerd: str | None = None  # None: "ods-enforcerd" (a restore restarts the daemon)

    @property
    def timeout_seconds(self) -> int:
        return parse_duration(self.timeout).seconds

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "operations.jsonl"

    @property
    def outputs_dir(self) -> Path:
        return self.state_dir / "outputs"

    def to_toml(self) -> str:
        lines = ["[signer]", f"backend = {json.dumps(BACKEND)}"]
        lines += [f"{k} = {json.dumps(str(getattr(self, k)))}" for k in _SIGNER[1:]]
        lines += ["", "[opendnssec]"]
        for k in _ODS_REQUIRED + _ODS_OPTIONAL:
            v = getattr(self, k)
            if v is not None:
                lines.append(f"{k} = {json.dumps(str(v))}")
        return "\n".join(lines) + "\n"

    def save(self, path: Path) -> Path:
        write_atomic(Path(path), self.to_toml().encode(), mode=0o600)
        return Path(path)


def ods_config_from_toml(text: str, source: str = "signer config",
                         base: Path | None = None) -> OdsConfig:
    """Strict: every key of [signer] (with backend = "opendnssec") and [opendnssec].conf and
    .softhsm2_conf required; the optional keys may be left out but nothing unknown may appear."""
    doc = parse_toml(text, source)
    ods = doc.get("opendnssec")
    present = [k for k in _ODS_OPTIONAL if isinstance(ods, dict) and k in ods]
    sections = {"signer": _SIGNER, "opendnssec": _ODS_REQUIRED + tuple(present)}
    values = read_sections(text, source, sections, paths=_PATHS, base=base)
    if values.pop("backend") != BACKEND:
        raise ConfigError(f"{source}: signer.backend must be {BACKEND!r}")
    if "timeout" in values:
        try:
            parse_duration(values["timeout"])
        except DurationError as e:
            raise ConfigError(f"{source}: opendnssec.timeout: {e}") from None
    return OdsConfig(**values)


def load_ods_config(path: Path) -> OdsConfig:
    return ods_config_from_toml(*read_file(path))


@dataclass(frozen=True)
class OdsConf:
    """What the signer needs from OpenDNSSEC's conf.xml."""

    path: Path
    repository: str  # the one Repository's name, as ods-hsmutil lists it
    token_label: str
    module: Path
    datastore: Path  # the KASP database (SQLite)
    socket: Path  # Enforcer/SocketFile, or OpenDNSSEC's default
    pidfile: Path = DEFAULT_PIDFILE  # Enforcer/PidFile: how a restore finds the daemon to stop
    pin: str = field(default="", repr=False)  # the repository's PIN (a restore opens the token)


def read_ods_conf(path: Path) -> OdsConf:
    """Exactly one repository and an SQLite datastore: with two repositories a listing would mix
    tokens, and a MySQL KASP cannot be copied into the backup as a file."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise ConfigError(f"{path}: {e}") from None
    repos = root.findall("RepositoryList/Repository")
    if len(repos) != 1:
        raise ConfigError(f"{path}: expected exactly one Repository, found {len(repos)}")
    repo = repos[0]

    def text(node: ET.Element, where: str) -> str:
        found = node.find(where)
        if found is None or not (found.text or "").strip():
            raise ConfigError(f"{path}: {where} is required")
        return (found.text or "").strip()

    sqlite = root.find("Enforcer/Datastore/SQLite")
    if sqlite is None:
        raise ConfigError(f"{path}: Enforcer/Datastore/SQLite is required (MySQL is not supported)")
    socket = root.findtext("Enforcer/SocketFile")
    pidfile = (root.findtext("Enforcer/PidFile") or "").strip()
    return OdsConf(
        path=path,
        repository=repo.get("name") or "",
        token_label=text(repo, "TokenLabel"),
        module=Path(text(repo, "Module")),
        datastore=Path(text(root, "Enforcer/Datastore/SQLite")),
        socket=Path(socket.strip()) if socket and socket.strip() else DEFAULT_SOCKET,
        pidfile=Path(pidfile) if pidfile else DEFAULT_PIDFILE,
        pin=(repo.findtext("PIN") or "").strip(),
    )
