"""Config files, read strictly: one reader for every room's TOML config (the signer's, the
shim's, the OpenDNSSEC backend's, the coordinator's and the consoles').

Exactly the sections and keys asked for, each required unless given a default, each of the type
asked for; relative paths from the file's own directory, so a directory of files can be moved
whole. Every error is a `ConfigError` naming the file and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


def read_file(path: Path) -> tuple[str, str, Path]:
    """A config file's text, its name for messages, and the directory relative paths start from."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return text, str(path), path.parent.absolute()


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """`tomllib.loads`, with every way it fails a ConfigError naming the source: a syntax
    error, and TOML nested so deep that tomllib (recursive) runs out of stack."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{source}: TOML nested too deeply (arrays or inline tables inside "
                          "each other hundreds of levels deep)") from None


def read_toml(path: Path) -> dict[str, Any]:
    """A whole TOML file (a record, not a config of fixed keys), with every way it fails a
    ConfigError naming the file."""
    text, source, _base = read_file(path)
    return parse_toml(text, source)


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
    lists: Iterable[str] = (),
    tables: Iterable[str] = (),
) -> dict[str, Any]:
    """The strict reader every config uses: exactly these sections and keys, every one
    required unless `optional` gives its default; ports are integers 0..65535, `ranges` keys
    integers in their (low, high), `lists` keys lists of non-empty strings, everything else a
    non-empty string; `paths` (strings or lists) are taken relative to `base`. `tables` are
    optional sections whose keys are the file's own (names of things, each a non-empty string
    value), returned as `values[section]`, a dict. Errors name the source and the key."""
    doc = parse_toml(text, source)
    tables = tuple(tables)
    unknown = sorted(set(doc) - set(sections) - set(tables))
    if unknown:
        raise ConfigError(f"{source}: unknown section [{unknown[0]}]")
    paths, lists = set(paths), set(lists)
    optional = dict(optional or {})
    ranges = {**dict.fromkeys(ports, (0, 65535)), **(ranges or {})}
    values: dict[str, Any] = {}
    for section in tables:
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for k, v in table.items():
            if not isinstance(v, str) or not v:
                raise ConfigError(f"{source}: {section}.{k} must be a non-empty string")
        values[section] = dict(table)
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
            elif k in lists:
                if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                    raise ConfigError(
                        f"{source}: {section}.{k} must be a list of non-empty strings")
                values[k] = tuple(_path(x, base) if k in paths else x for x in v)
            elif not isinstance(v, str) or not v:
                raise ConfigError(f"{source}: {section}.{k} must be a non-empty string")
            elif k in paths:
                values[k] = _path(v, base)
            else:
                values[k] = v
    return values


def _path(v: str, base: Path | None) -> Path:
    p = Path(v)
    return p if p.is_absolute() or base is None else base / p
