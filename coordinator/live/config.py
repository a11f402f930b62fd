"""`coordinator.toml` and `console.toml`: what a live coordinator and a console are started with.

Relative paths are resolved against the file's own directory, so a ceremony directory can be
moved whole. Every error names the file and the key: `FILE: coordinator.roster: ...`.

    [coordinator]
    script = "ceremony.toml"                # the ceremony script
    roster = "roster.toml"                  # enrolled seats, with console_key for each console
    previous = "previous-record.toml"       # the previous ceremony's record the script checks
    journal = "journal.jsonl"               # created on first start, resumed after
    key = "coordinator.key"                 # Ed25519 checkpoint key (PKCS#8 PEM, 0600)
    curve = "coordinator.key_secret"        # the bus's CURVE pair (keyrite enroll's format)
    commands = "tcp://127.0.0.1:7101"       # ROUTER: consoles' commands and snapshots
    broadcasts = "tcp://127.0.0.1:7102"     # PUB: numbered views
    livecd = "livecd.iso"                   # the boot medium whose digest a step verifies
    drives = "drives"                       # folder-backed flash drives, or "usb": real ones
    mounts = "/run/keyrite-coordinator/drives"   # drives = "usb": the tool's private mounts
    device_backup_password = ""             # optional file; else the step's actor types it

    [signer]
    host = "127.0.0.1"
    port = 7222
    client_key = "coordinator-ssh.key"      # the SSH key the shim's authorized_keys lists
    # the host key pin is the script's ([[signers]] host_key), never this file's

    [console]                               # console.toml
    enrolment = "officers/KSO1"             # keyrite enroll --out DIR
    also = ["officers/DSO1"]                # the same person's other seats (optional)
    commands = "tcp://127.0.0.1:7101"
    broadcasts = "tcp://127.0.0.1:7102"
    coordinator_key = "Z85..."              # the coordinator's CURVE public key
    journal_copy = "journal-copy.jsonl"     # optional (auditors): a verified copy, kept current
    journal_key = "name+id+base64"          # the checkpoint key the copy's checkpoints must verify
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyrite.exits import BadInput


class _Section:
    def __init__(self, path: Path, name: str, data: dict[str, Any]) -> None:
        self.path, self.name, self.data = path, name, data
        self.used: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self.path}: {self.name}.{key}"

    def str(self, key: str, default: str | None = None) -> str:
        self.used.add(key)
        v = self.data.get(key, default)
        if not isinstance(v, str) or (not v and default is None):
            raise BadInput(f"{self._where(key)}: expected a string")
        return v

    def file(self, key: str, *, must_exist: bool = True, default: str | None = None) -> Path:
        p = Path(self.str(key, default))
        p = p if p.is_absolute() else self.path.parent / p
        if must_exist and not p.exists():
            raise BadInput(f"{self._where(key)}: {p} does not exist")
        return p

    def int(self, key: str) -> int:
        self.used.add(key)
        v = self.data.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 65536:
            raise BadInput(f"{self._where(key)}: expected a port number")
        return v

    def files(self, key: str) -> tuple[Path, ...]:
        self.used.add(key)
        v = self.data.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise BadInput(f"{self._where(key)}: expected a list of paths")
        out = tuple(Path(x) if Path(x).is_absolute() else self.path.parent / x for x in v)
        for p in out:
            if not p.exists():
                raise BadInput(f"{self._where(key)}: {p} does not exist")
        return out

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise BadInput(f"{self.path}: {self.name}: unknown key(s) {', '.join(unknown)}")


def _read(path: Path, sections: tuple[str, ...]) -> dict[str, _Section]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise BadInput(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: {e}") from None
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise BadInput(f"{path}: unknown section(s) {', '.join(unknown)}")
    out = {}
    for name in sections:
        if not isinstance(data.get(name), dict):
            raise BadInput(f"{path}: missing section [{name}]")
        out[name] = _Section(path.absolute(), name, data[name])
    return out


@dataclass(frozen=True)
class CoordinatorConfig:
    path: Path
    script: Path
    roster: Path
    previous: Path
    journal: Path
    key: Path
    curve: Path
    commands: str
    broadcasts: str
    livecd: Path
    drives: Path | None  # folder-backed drives; None: real USB drives seen by udev
    mounts: Path  # where USB drives are mounted, privately (drives = "usb")
    device_backup_password: Path | None
    signer_host: str
    signer_port: int
    signer_client_key: Path

    @classmethod
    def load(cls, path: Path) -> CoordinatorConfig:
        s = _read(Path(path), ("coordinator", "signer"))
        c, g = s["coordinator"], s["signer"]
        password = c.str("device_backup_password", "")
        usb = c.str("drives") == "usb"
        cfg = cls(
            path=Path(path).absolute(), script=c.file("script"), roster=c.file("roster"),
            previous=c.file("previous"), journal=c.file("journal", must_exist=False),
            key=c.file("key"), curve=c.file("curve"), commands=c.str("commands"),
            broadcasts=c.str("broadcasts"), livecd=c.file("livecd"),
            drives=None if usb else c.file("drives"),
            mounts=c.file("mounts", must_exist=False, default="/run/keyrite-coordinator/drives"),
            device_backup_password=c.file("device_backup_password") if password else None,
            signer_host=g.str("host"), signer_port=g.int("port"),
            signer_client_key=g.file("client_key"),
        )
        c.done()
        g.done()
        return cfg


@dataclass(frozen=True)
class ConsoleConfig:
    path: Path
    enrolment: Path
    also: tuple[Path, ...]
    commands: str
    broadcasts: str
    coordinator_key: str
    journal_copy: Path | None
    journal_key: str | None

    @classmethod
    def load(cls, path: Path) -> ConsoleConfig:
        s = _read(Path(path), ("console",))["console"]
        copy = s.str("journal_copy", "")
        cfg = cls(
            path=Path(path).absolute(), enrolment=s.file("enrolment"), also=s.files("also"),
            commands=s.str("commands"), broadcasts=s.str("broadcasts"),
            coordinator_key=s.str("coordinator_key"),
            journal_copy=s.file("journal_copy", must_exist=False) if copy else None,
            journal_key=s.str("journal_key", "") or None,
        )
        s.done()
        if cfg.journal_copy is not None and cfg.journal_key is None:
            raise BadInput(f"{cfg.path}: console.journal_copy needs console.journal_key (the "
                           "coordinator's checkpoint key) to verify the copy against")
        return cfg
