"""A signer's configuration: which token, which PIN, where its state lives, who it says it is.

A small TOML file (mode 0600: it holds the user PIN), read strictly: an unknown or missing key is
an error naming the file and the key, before any token is opened. Relative paths are taken
relative to the file's directory, so a rehearsal work directory can be moved as a whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from keyrite.configfile import ConfigError, read_file, read_sections
from keyrite.files import write_atomic
from signer_shim.planning import DEFAULT_MAX_KEYS

__all__ = ["ConfigError", "SignerConfig", "read_file", "read_sections"]

_SECTIONS: dict[str, tuple[str, ...]] = {
    "signer": ("name", "role", "state_dir", "host_key_path", "max_keys_per_operation"),
    "pkcs11": ("module", "softhsm2_conf", "token_label", "user_pin", "workers", "profile",
               "launcher", "so_pin"),
}
_PATHS = {"state_dir", "host_key_path", "module", "softhsm2_conf"}
#: Optional keys and their defaults: files written before a key existed still load.
_OPTIONAL = {"workers": 1, "max_keys_per_operation": DEFAULT_MAX_KEYS, "profile": "",
             "launcher": (), "so_pin": ""}
#: `so_pin`: the token SO's PIN, optional. Only the wrap method needs it (the backup KEK is
#: imported as the SO, CKA_TRUSTED): creating the KEK and restoring a wrap backup refuse
#: without it. Like the user PIN it is kept out of repr and logs; the file is 0600.
#: `launcher`: the command a worker is started under (e.g. nsenter into the mount namespace of
#: a private opencryptoki), a list of strings.
_LISTS = {"launcher"}
#: Optional keys a file leaves out when they hold their default (the reader wants none).
_OMIT_DEFAULT = ("profile", "launcher", "so_pin")
#: Worker processes for one generate: each holds a PKCS#11 session, and HSMs limit sessions.
#: Keys one generate may make: planned in the one HSM queue, so a plan for millions is refused.
_RANGES = {"workers": (1, 64), "max_keys_per_operation": (1, 1_000_000)}
#: `[backup] method`: how this signer's keys are backed up. "tokendir" (the default, and what a
#: file without the section gets): the encrypted SoftHSM2 token directory (signer_shim.backup).
#: "wrap": every key wrapped under a KEK split among the KSOs (signer_shim.wrap), for tokens
#: that do not hand out their files; keys are then made extractable, but only wrapped.
BACKUP_METHODS = ("tokendir", "wrap")


@dataclass(frozen=True, kw_only=True)
class SignerConfig:
    name: str  # how the script names this signer
    role: str  # what it reports itself to be, e.g. "standby"
    module: Path  # the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so
    softhsm2_conf: Path  # set as SOFTHSM2_CONF in the worker's environment only
    token_label: str
    user_pin: str = field(repr=False)
    state_dir: Path  # key state, operation journal, outputs/
    host_key_path: Path  # the SSH host key whose fingerprint info() reports
    workers: int = 1  # worker processes one generate is spread over (signer_shim.pkcs11.pool)
    max_keys_per_operation: int = DEFAULT_MAX_KEYS  # a larger plan_generate is refused
    #: the token's profile by name (signer_shim.pkcs11.profiles); "" = told by the token itself
    profile: str = ""
    launcher: tuple[str, ...] = ()  # argv prefix each worker process is started under
    backup_method: str = "tokendir"  # `[backup] method`, one of BACKUP_METHODS
    so_pin: str = field(default="", repr=False)  # `pkcs11.so_pin`; "" = not configured

    @property
    def keystate_path(self) -> Path:
        return self.state_dir / "keystate.json"

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "operations.jsonl"

    @property
    def outputs_dir(self) -> Path:
        return self.state_dir / "outputs"

    @property
    def worker_log(self) -> Path:
        return self.state_dir / "worker.log"

    def to_toml(self) -> str:
        lines = []
        for section, keys in _SECTIONS.items():
            lines.append(f"[{section}]")
            for k in keys:
                v = getattr(self, k)
                if k in _OPTIONAL and v == _OPTIONAL[k] and k in _OMIT_DEFAULT:
                    continue  # an empty value is the default, and the reader wants none
                if k in _LISTS:
                    lines.append(f"{k} = {json.dumps(list(v))}")
                    continue
                lines.append(f"{k} = {v if type(v) is int else json.dumps(str(v))}")
            lines.append("")
        if self.backup_method != "tokendir":
            lines += ["[backup]", f"method = {json.dumps(self.backup_method)}", ""]
        return "\n".join(lines)

    def save(self, path: Path) -> Path:
        write_atomic(Path(path), self.to_toml().encode(), mode=0o600)
        return Path(path)

    @classmethod
    def from_toml(
        cls, text: str, source: str = "signer config", base: Path | None = None
    ) -> SignerConfig:
        values = read_sections(text, source, _SECTIONS, paths=_PATHS, base=base,
                               optional=_OPTIONAL, ranges=_RANGES, lists=_LISTS,
                               tables=("backup",))
        method = _backup_method(values.pop("backup"), source)
        return cls(**values, backup_method=method)

    @classmethod
    def load(cls, path: Path) -> SignerConfig:
        return cls.from_toml(*read_file(path))


def _backup_method(table: dict[str, str], source: str) -> str:
    """`[backup]`, optional: only `method`, one of BACKUP_METHODS (absent = "tokendir")."""
    unknown = sorted(set(table) - {"method"})
    if unknown:
        raise ConfigError(f"{source}: unknown key backup.{unknown[0]}")
    method = table.get("method", "tokendir")
    if method not in BACKUP_METHODS:
        raise ConfigError(f"{source}: backup.method must be one of {', '.join(BACKUP_METHODS)}")
    return method
