"""TOML tables read against a declared list of keys: unknown keys and missing required keys are
reported, present keys are read with their `Kind`, absent optional keys get their default.

Cross-references between tables are not checked here (`ceremony.script.declared` and
`ceremony.script.steps` do that once every table is read), so one bad key never hides the
problems of the keys around it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ceremony.script.kinds import BAD, Kind, Report, type_name
from ceremony.script.locate import KeyPath


@dataclass(frozen=True)
class Key:
    name: str
    kind: Kind
    meaning: str
    required: bool = True
    default: Any = None  # what the model holds when an optional key is absent
    default_doc: str = ""  # the default as the docs show it ("" for none)
    parameter: bool = False  # a step parameter: allowed or required per action, not per table


@dataclass(frozen=True)
class Table:
    header: str  # as the docs write it: "[ceremony]", "[[sections.steps]]"
    keys: tuple[Key, ...]

    def key(self, name: str) -> Key:
        return next(k for k in self.keys if k.name == name)


@dataclass(frozen=True)
class Row:
    """One table as read: its path, the values that read well, and every key that was written."""

    path: KeyPath
    values: dict[str, Any]
    written: frozenset[str]

    def get(self, name: str) -> Any:
        return self.values.get(name)


def read_table(table: Table, value: Any, at: KeyPath, report: Report) -> Any:
    if not isinstance(value, dict):
        report(at, f"expected a table ({table.header}), got {type_name(value)}")
        return BAD
    names = [k.name for k in table.keys]
    for name in value:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(names)}"
            report((*at, name), f"unknown key {name!r} ({hint})")
    values: dict[str, Any] = {}
    for key in table.keys:
        if key.name in value:
            got = key.kind.read(value[key.name], (*at, key.name), report)
            if got is not BAD:
                values[key.name] = got
        elif key.required:
            report((*at, key.name), f"required key is missing (expected {key.kind.doc})")
        else:
            values[key.name] = key.default
    return Row(at, values, frozenset(value))


def table(spec: Table) -> Kind:
    """One table, read to a `Row`."""
    return Kind(f"table ({spec.header})", lambda v, at, report: read_table(spec, v, at, report))


def tables(spec: Table, *, min_len: int = 0) -> Kind:
    """An array of tables, read to a tuple of `Row`s (the rows that read, in order)."""

    def read(value: Any, at: KeyPath, report: Report) -> Any:
        if not isinstance(value, list):
            report(at, f"expected an array of tables ({spec.header}), got {type_name(value)}")
            return BAD
        if len(value) < min_len:
            report(at, f"expected at least {min_len} {spec.header}")
            return BAD
        rows = (read_table(spec, v, (*at, i), report) for i, v in enumerate(value))
        return tuple(r for r in rows if r is not BAD)

    return Kind(f"array of tables ({spec.header})", read)


def named_tables(spec: Table, name: Kind, *, min_len: int = 0) -> Kind:
    """A table of tables keyed by name (`[roles.KGA]`), read to a dict of name -> `Row`."""

    def read(value: Any, at: KeyPath, report: Report) -> Any:
        if not isinstance(value, dict):
            report(at, f"expected a table of tables ({spec.header}), got {type_name(value)}")
            return BAD
        if len(value) < min_len:
            report(at, f"expected at least {min_len} {spec.header}")
            return BAD
        out = {}
        for key, v in value.items():
            if name.read(key, (*at, key), report) is BAD:
                continue
            row = read_table(spec, v, (*at, key), report)
            if row is not BAD:
                out[key] = row
        return out

    return Kind(f"tables ({spec.header})", read)
