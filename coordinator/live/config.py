"""`coordinator.toml` and `console.toml`: what a live coordinator and a console are started with.

Read with `keyrite.configfile.read_sections`, the reader every config shares: relative paths
are resolved against the file's own directory, so a ceremony directory can be moved whole, and
every error names the file and the key (`FILE: ceremony.roster: ...`).

    [coordinator]
    script = "ceremony.toml"                # the ceremony script
    roster = "roster.toml"                  # enrolled seats, with console_key for each console
    previous = "previous-record.toml"       # the previous ceremony's record the script checks,
                                            # typed from its papers; or, instead, read from its
    # previous_journal = "previous/journal.jsonl"   # journal, verified with its checkpoint key:
    # previous_key = "keyrite.ceremony/...+...+..."  # (one of previous or previous_journal)
    journal = "journal.jsonl"               # created on first start, resumed after
    key = "coordinator.key"                 # Ed25519 checkpoint key (PKCS#8 PEM, 0600)
    curve = "coordinator.key_secret"        # the bus's CURVE pair (keyrite enroll's format)
    commands = "tcp://127.0.0.1:7101"       # ROUTER: consoles' commands and snapshots
    broadcasts = "tcp://127.0.0.1:7102"     # PUB: numbered views
    livecd = "livecd.iso"                   # the boot medium whose digest a step verifies
    drives = "drives"                       # folder-backed flash drives, or "usb": real ones
    mounts = "/run/keyrite-coordinator/drives"   # drives = "usb": the tool's private mounts

    [passwords]                             # a verifier of each pre-generated password the
    device-backup = "scrypt$N=32768,..."    # script's hsm.backup steps name (keyrite password
                                            # verifier); never the password itself

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyrite.configfile import ConfigError, read_file, read_sections
from keyrite.exits import BadInput
from keyrite.passwords import Verifier, VerifierError, parse_verifier

_COORDINATOR = ("script", "roster", "previous", "previous_journal", "previous_key", "journal",
                "key", "curve", "commands", "broadcasts", "livecd", "drives", "mounts")
_SIGNER = ("host", "port", "client_key")
_CONSOLE = ("enrolment", "also", "commands", "broadcasts", "coordinator_key", "journal_copy",
            "journal_key")

# under the RuntimeDirectory systemd/keyrite-coordinator.service.d/usb-drives.conf makes
DEFAULT_MOUNTS = "/run/keyrite-coordinator/drives"


def _read(path: Path, sections: dict[str, tuple[str, ...]], *, paths: set[str],
          exist: tuple[str, ...], **options: Any) -> dict[str, Any]:
    """`keyrite.configfile.read_sections`, then: the files named in `exist` must be there."""
    try:
        text, source, base = read_file(path)
        values = read_sections(text, source, sections, paths=paths, base=base, **options)
    except ConfigError as e:
        raise BadInput(str(e)) from None
    where = {k: s for s, keys in sections.items() for k in keys}
    for key in exist:
        for p in values[key] if isinstance(values[key], tuple) else (values[key],):
            if not p.exists():
                raise BadInput(f"{source}: {where[key]}.{key}: {p} does not exist")
    return values


def _previous(path: Path, v: dict[str, Any]) -> None:
    """The previous record comes from one place: the TOML typed from the previous ceremony's
    papers (`previous`), or its journal (`previous_journal`) with the key to verify it
    (`previous_key`, required with it and only with it)."""
    given = [k for k in ("previous", "previous_journal") if v[k] is not None]
    if len(given) != 1:
        raise BadInput(f"{path}: coordinator: give the previous ceremony's record as previous "
                       "(a TOML file) or previous_journal (its journal)"
                       + (", not both" if given else ""))
    if v["previous_journal"] is not None and v["previous_key"] is None:
        raise BadInput(f"{path}: coordinator.previous_key is required with previous_journal: "
                       "the previous journal is verified with its coordinator's checkpoint key")
    if v["previous_key"] is not None and v["previous_journal"] is None:
        raise BadInput(f"{path}: coordinator.previous_key goes with previous_journal")
    key = given[0]
    if not v[key].exists():
        raise BadInput(f"{path}: coordinator.{key}: {v[key]} does not exist")


@dataclass(frozen=True)
class CoordinatorConfig:
    path: Path
    script: Path
    roster: Path
    previous: Path | None  # None: previous_journal gives the record
    journal: Path
    key: Path
    curve: Path
    commands: str
    broadcasts: str
    livecd: Path
    drives: Path | None  # folder-backed drives; None: real USB drives seen by udev
    mounts: Path  # where USB drives are mounted, privately (drives = "usb")
    passwords: dict[str, Verifier]  # password name -> verifier recorded before the ceremony
    signer_host: str
    signer_port: int
    signer_client_key: Path
    # the previous ceremony's journal the previous record is read from instead of `previous`,
    # and the checkpoint key it must verify with (then `previous` is None)
    previous_journal: Path | None = None
    previous_key: str | None = None

    @classmethod
    def load(cls, path: Path) -> CoordinatorConfig:
        path = Path(path).absolute()
        files = {"script", "roster", "key", "curve", "livecd", "client_key"}
        v = _read(path, {"coordinator": _COORDINATOR, "signer": _SIGNER},
                  paths=files | {"previous", "previous_journal", "journal", "mounts"},
                  exist=tuple(sorted(files)),
                  optional={"mounts": DEFAULT_MOUNTS, "previous": None,
                            "previous_journal": None, "previous_key": None},
                  ranges={"port": (1, 65535)}, tables=("passwords",))
        _previous(path, v)
        drives: Path | None = None
        if v["drives"] != "usb":
            drives = Path(v["drives"]) if Path(v["drives"]).is_absolute() \
                else path.parent / v["drives"]
            if not drives.exists():
                raise BadInput(f"{path}: coordinator.drives: {drives} does not exist")
        passwords: dict[str, Verifier] = {}
        for name, line in v["passwords"].items():
            try:
                passwords[name] = parse_verifier(line)
            except VerifierError as e:
                raise BadInput(f"{path}: passwords.{name}: {e}") from None
        return cls(
            path=path, script=v["script"], roster=v["roster"], previous=v["previous"],
            previous_journal=v["previous_journal"], previous_key=v["previous_key"],
            journal=v["journal"], key=v["key"], curve=v["curve"], commands=v["commands"],
            broadcasts=v["broadcasts"], livecd=v["livecd"], drives=drives,
            mounts=Path(v["mounts"]), passwords=passwords,
            signer_host=v["host"], signer_port=v["port"], signer_client_key=v["client_key"],
        )


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
        path = Path(path).absolute()
        v = _read(path, {"console": _CONSOLE}, paths={"enrolment", "also", "journal_copy"},
                  exist=("enrolment", "also"), lists=("also",),
                  optional={"also": (), "journal_copy": None, "journal_key": None})
        cfg = cls(path=path, enrolment=v["enrolment"], also=v["also"], commands=v["commands"],
                  broadcasts=v["broadcasts"], coordinator_key=v["coordinator_key"],
                  journal_copy=v["journal_copy"], journal_key=v["journal_key"])
        if cfg.journal_copy is not None and cfg.journal_key is None:
            raise BadInput(f"{cfg.path}: console.journal_copy needs console.journal_key (the "
                           "coordinator's checkpoint key) to verify the copy against")
        return cfg
