"""Typed readers for TOML values: each checks one value, reports what was expected, and says how
the reference documentation names it.

The schema (`ceremony.script.schema`) is built from these, so the loader's checks and the
tables in docs/script-format.md come from the same objects and cannot drift apart. A reader never
raises for bad input: it reports, returns `BAD`, and the loader carries on to find the next
problem.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ceremony.durations import DurationError, parse_duration
from ceremony.script.formats import FORMATS, check_value
from ceremony.script.locate import KeyPath

#: Where a reader reports a problem: the key path and what was expected.
Report = Callable[[KeyPath, str], None]


class _Bad:
    def __repr__(self) -> str:
        return "BAD"


#: What a reader returns for a value it reported as wrong.
BAD: Any = _Bad()


def show(value: Any) -> str:
    """A value as it was written in TOML, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, dt.datetime):
        return "a date-time"
    if isinstance(value, dt.date):
        return "a date"
    if isinstance(value, dt.time):
        return "a time"
    return type(value).__name__


def _wrong_type(expected: str, value: Any) -> str:
    got = type_name(value)
    if isinstance(value, dict | list):
        return f"expected {expected}, got {got}"
    return f"expected {expected}, got {got} ({show(value)})"


@dataclass(frozen=True)
class Kind:
    """How one value is read: `doc` names it in the docs, `read` checks and converts it."""

    doc: str
    read: Callable[[Any, KeyPath, Report], Any] = field(repr=False)


def _string(expected: str, check: Callable[[str], str | None]) -> Callable[..., Any]:
    """A reader for strings: `check` returns a problem, or None if the string is fine."""

    def read(value: Any, at: KeyPath, report: Report) -> Any:
        if not isinstance(value, str):
            report(at, _wrong_type(expected, value))
            return BAD
        problem = check(value)
        if problem:
            report(at, problem)
            return BAD
        return value

    return read


def text() -> Kind:
    return Kind(
        "string",
        _string("a string", lambda v: None if v.strip() else "expected a non-empty string"),
    )


def pattern(regex: str, what: str, doc: str = "") -> Kind:
    rx = re.compile(regex)
    return Kind(
        doc or f"string `{regex}`",
        _string(
            f"a string ({what})",
            lambda v: None if rx.fullmatch(v) else f"{v!r} is not {what} (expected {regex})",
        ),
    )


def choice(options: Iterable[str], what: str = "one of", doc: str = "") -> Kind:
    opts = tuple(options)
    listed = ", ".join(opts)
    return Kind(
        doc or "string: " + ", ".join(f"`{o}`" for o in opts),
        _string(
            f"a string ({what} {listed})",
            lambda v: None if v in opts else f"{v!r} is not {what} {listed}",
        ),
    )


def value_format(fmt: str) -> Kind:
    """A string in one of `formats.FORMATS`, converted to its normal form."""

    def read(value: Any, at: KeyPath, report: Report) -> Any:
        if not isinstance(value, str):
            report(at, _wrong_type(f"a string ({fmt})", value))
            return BAD
        normal = check_value(fmt, value)
        if normal is None:
            report(at, f"{value!r} is not a valid {fmt} (expected {FORMATS[fmt]})")
            return BAD
        return normal

    return Kind(f"string ({fmt})", read)


def host_key_pin() -> Kind:
    """A pinned SSH host key: a fingerprint, or `previous.KEY` (the previous ceremony's record
    holds it; the loader checks that KEY is listed in ceremony.previous)."""
    return pin_or_previous("host-key", "a host-key fingerprint")


def pin_or_previous(fmt: str, what: str) -> Kind:
    """A value in format `fmt` known before the ceremony, or `previous.KEY` (the previous
    ceremony's record holds it; the loader checks that KEY is listed in ceremony.previous)."""
    fingerprint = value_format(fmt)

    def read(value: Any, at: KeyPath, report: Report) -> Any:
        if isinstance(value, str) and value.startswith("previous."):
            if re.fullmatch(r"previous\.[a-z][a-z0-9_]*", value):
                return value
            report(at, f"{value!r} is not a previous-ceremony reference (expected "
                   "previous.KEY, KEY lower-case letters, digits and _)")
            return BAD
        return fingerprint.read(value, at, report)

    return Kind(f"string: {what}, or `previous.KEY` (the records of the previous ceremony hold "
                "it)", read)


def integer(low: int, high: int | None = None) -> Kind:
    def read(value: Any, at: KeyPath, report: Report) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            report(at, _wrong_type("an integer", value))
            return BAD
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"from {low} to {high}"
            report(at, f"{value} is out of range (expected an integer {bound})")
            return BAD
        return value

    doc = f"integer ≥ {low}" if high is None else f"integer {low}..{high}"
    return Kind(doc, read)


def boolean() -> Kind:
    def read(value: Any, at: KeyPath, report: Report) -> Any:
        if not isinstance(value, bool):
            report(at, _wrong_type("a boolean (true or false)", value))
            return BAD
        return value

    return Kind("boolean", read)


def duration() -> Kind:
    def read(value: Any, at: KeyPath, report: Report) -> Any:
        if not isinstance(value, str):
            report(at, _wrong_type("a string (an ISO 8601 duration such as PT15M)", value))
            return BAD
        try:
            return parse_duration(value)
        except DurationError as e:
            report(at, str(e))
            return BAD

    return Kind("duration (ISO 8601, e.g. `PT15M`)", read)


def array(item: Kind, *, min_len: int = 0, exact: int | None = None, doc: str = "") -> Kind:
    """An array of `item`s, read to a tuple; the same value twice is an error."""

    def read(value: Any, at: KeyPath, report: Report) -> Any:
        if not isinstance(value, list):
            report(at, _wrong_type(f"an array ({item.doc} each)", value))
            return BAD
        if exact is not None and len(value) != exact:
            report(at, f"expected exactly {exact} elements, got {len(value)}")
            return BAD
        if len(value) < min_len:
            report(at, f"expected at least {min_len} element{'s' if min_len > 1 else ''}")
            return BAD
        out = []
        seen: dict[Any, int] = {}
        for i, element in enumerate(value):
            got = item.read(element, (*at, i), report)
            if got is BAD:
                continue
            if isinstance(got, str | int) and got in seen:
                report((*at, i), f"{show(element)} is listed twice (also at index {seen[got]})")
                continue
            if isinstance(got, str | int):
                seen[got] = i
            out.append(got)
        return tuple(out) if len(out) == len(value) else BAD

    if not doc:
        if exact is not None:
            doc = f"array of {exact} × {item.doc}"
        else:
            doc = f"{'non-empty ' if min_len else ''}array of {item.doc}"
    return Kind(doc, read)


def one_or_more(item: Kind) -> Kind:
    """A single value or a non-empty array of them, read to a tuple."""
    many = array(item, min_len=1)

    def read(value: Any, at: KeyPath, report: Report) -> Any:
        if isinstance(value, list):
            return many.read(value, at, report)
        got = item.read(value, at, report)
        return BAD if got is BAD else (got,)

    return Kind(f"{item.doc}, or an array of them", read)
