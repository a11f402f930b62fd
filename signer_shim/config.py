"""A signer's configuration: which token, which PIN, where its state lives, who it says it is.

A small TOML file (mode 0600: it holds the user PIN), read strictly: an unknown or missing key is
an error naming the file and the key, before any token is opened. Relative paths are taken
relative to the file's directory, so a rehearsal work directory can be moved as a whole.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyrite.files import write_atomic

_SECTIONS: dict[str, tuple[str, ...]] = {
    "signer": ("name", "role", "state_dir", "host_key_path"),
    "pkcs11": ("module", "softhsm2_conf", "token_label", "user_pin", "workers"),
}
_PATHS = {"state_dir", "host_key_path", "module", "softhsm2_conf"}
#: Optional keys and their defaults: files written before a key existed still load.
_OPTIONAL = {"workers": 1}
#: Worker processes for one generate: each holds a PKCS#11 session, and HSMs limit sessions.
_RANGES = {"workers": (1, 64)}


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


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
    workers: int = 1  # worker processes one generate is spread over (signer_shim.pool)

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
                lines.append(f"{k} = {v if type(v) is int else json.dumps(str(v))}")
            lines.append("")
        return "\n".join(lines)

    def save(self, path: Path) -> Path:
        write_atomic(Path(path), self.to_toml().encode(), mode=0o600)
        return Path(path)

    @classmethod
    def from_toml(
        cls, text: str, source: str = "signer config", base: Path | None = None
    ) -> SignerConfig:
        return cls(**read_sections(text, source, _SECTIONS, paths=_PATHS, base=base,
                                   optional=_OPTIONAL, ranges=_RANGES))

    @classmethod
    def load(cls, path: Path) -> SignerConfig:
        return cls.from_toml(*read_file(path))


def read_file(path: Path) -> tuple[str, str, Path]:
    """A config file's text, its name for messages, and the directory relative paths start from."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    return text, str(path), path.parent.absolute()


def read_sections(
    text: str,
    source: str,
    sections: dict[str, tuple[str, ...]],
    *,
    paths: Iterable[str],
    base: Path | None,
    ports: Iterable[str] = (),
    optional: Mapping[str, Any] | None = None,
    ranges: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """The strict reader every signer-side config uses: exactly these sections and keys, every
    one required unless `optional` gives its default; ports are integers 0..65535, `ranges`
    keys integers in their (low, high), everything else a non-empty string; `paths` are taken
    relative to `base`. Errors name the source and the key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: {e}") from None
    unknown = sorted(set(doc) - set(sections))
    if unknown:
        raise ConfigError(f"{source}: unknown section [{unknown[0]}]")
    paths = set(paths)
    optional = dict(optional or {})
    ranges = {**dict.fromkeys(ports, (0, 65535)), **(ranges or {})}
    values: dict[str, Any] = {}
    for section, keys in sections.items():
        table = doc.get(section)
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: section [{section}] is required")
        for k in table:
            if k not in keys:
                raise ConfigError(f"{source}: unknown key {section}.{k}")
        for k in keys:
            if k not in table:
                if k in optional:
                    values[k] = optional[k]
                    continue
                raise ConfigError(f"{source}: {section}.{k} is required")
            v = table[k]
            if k in ranges:
                lo, hi = ranges[k]
                if type(v) is not int or not lo <= v <= hi:
                    raise ConfigError(
                        f"{source}: {section}.{k} must be an integer from {lo} to {hi}")
                values[k] = v
            elif not isinstance(v, str) or not v:
                raise ConfigError(f"{source}: {section}.{k} must be a non-empty string")
            elif k in paths:
                p = Path(v)
                values[k] = p if p.is_absolute() or base is None else base / p
            else:
                values[k] = v
    return values
