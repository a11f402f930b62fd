"""Strict, bounded JSON from a stranger: the one reader behind every edge that takes JSON off a
wire (the console bus, `coordinator.bus.protocol`; the signer shim, `signer_shim.protocol`).

`loads(data, limits)` returns plain JSON data (dict, list, str, int, float, bool, None) that
encodes again as strict UTF-8 JSON, or raises `NotPlainJSON` (a ValueError) with a short reason
that is itself safe to send back, and nothing else, whatever `data` holds (`NotJSON`, a kind of
it, where `data` is not UTF-8 or not JSON at all). It refuses:

- more than `Limits.size` bytes (checked before parsing), and bytes that are not strict UTF-8
  (a BOM, UTF-16, an encoded surrogate);
- what json itself refuses (trailing data included), and an object naming a key twice (unless
  `Limits.unique_keys` is off: then the last one counts, as json's own; that saves a Python call
  per object where the sender is trusted with the content anyway);
- nesting deeper than `Limits.depth` (the value itself is level 1): json's own RecursionError is
  caught, and the rest is walked level by level without recursion;
- a string (key or value) longer than `Limits.string` characters, or holding a lone surrogate
  (escaped in the JSON as `"\\ud800"`: it cannot be written as UTF-8);
- an integer beyond +-`Limits.max_int`, refused from its digits before `int()` converts it
  (`int()` of a long literal is slow, and beyond 4,300 digits raises);
- a number literal longer than `MAX_NUMBER_TEXT` characters, NaN, Infinity, -Infinity, and
  floats that overflow (`1e400`).

Numbers are checked one by one (a Python call each: the slow path) only in a document where
`_risky_numbers` finds 16 digits in a row or a 3-digit exponent; elsewhere json parses them at C
speed, and what it can then meet (integers of at most 15 digits, floats of at most 15 digits on
either side of the point and a 2-digit exponent: 36 characters at most, finite) no limit
refuses, as long as `max_int` is at least 10**15 - 1 (below that every document takes the slow
path). Both paths accept exactly the same documents (tests/test_plainjson.py).

Standard library only: every room imports it.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_INT", "MAX_NUMBER_TEXT", "TEXT_LIMIT", "Limits", "NotJSON", "NotPlainJSON",
           "loads", "safe_text"]

#: The longest number literal taken (a float's repr is at most 24 characters).
MAX_NUMBER_TEXT = 40
#: The integers every JSON reader holds exactly: the default bound (`Limits.max_int`).
MAX_INT = 2**53
#: The longest reason `safe_text` gives by default.
TEXT_LIMIT = 1000


class NotPlainJSON(ValueError):
    """Not JSON, or JSON beyond the limits; the message says what, briefly and safely."""


class NotJSON(NotPlainJSON):
    """Not JSON at all: bytes that are not UTF-8, or text that is not JSON's grammar (for an
    edge that words this case on its own)."""


@dataclass(frozen=True)
class Limits:
    """What one document may hold (see the module docstring)."""

    size: int  # bytes of UTF-8
    string: int  # characters in any one string, key or value
    depth: int = 32  # nesting of objects and arrays; the value itself is level 1
    max_int: int = MAX_INT  # integers within +-max_int
    unique_keys: bool = True  # refuse an object that names a key twice


def safe_text(value: Any, limit: int = TEXT_LIMIT) -> str:
    """`value` as text that always encodes as UTF-8 and is at most `limit` characters (and an
    ellipsis): for error replies, logs and journals, whatever a stranger put in `value`."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = repr(value)
        except (ValueError, RecursionError):  # an int of 5,000 digits, a list 5,000 deep
            text = f"<{type(value).__name__}>"
    if len(text) > limit:
        text = text[:limit] + "\u2026"
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        if len(text) > limit + 1:  # escapes make it longer
            text = text[:limit] + "\u2026"
    return text


def _bound(max_int: int) -> str:
    """max_int as a reason says it: 2**53 rather than 9007199254740992."""
    if max_int > 0 and max_int & (max_int - 1) == 0:
        return f"2**{max_int.bit_length() - 1}"
    return str(max_int)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_TEXT:
        raise NotPlainJSON(f"a number of {len(text)} characters (at most {MAX_NUMBER_TEXT}) [A16]")
    value = float(text)
    if not math.isfinite(value):  # 1e400 is read as infinity
        raise NotPlainJSON(f"{text} is not a finite number")
    return value


def _parse_constant(name: str) -> Any:
    raise NotPlainJSON(f"{name} is not a number JSON has")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise NotPlainJSON(f"an object names the key {safe_text(repr(key), 40)} twice")
            seen.add(key)
    return obj


#: Numbers parsed as json does, for documents where `_risky_numbers` finds nothing (with and
#: without the duplicate-key check).
_PLAIN = {True: json.JSONDecoder(parse_constant=_parse_constant, object_pairs_hook=_object),
          False: json.JSONDecoder(parse_constant=_parse_constant)}
#: The fast path holds only if every integer of 15 digits is within max_int.
_PLAIN_INTS = 10**15 - 1


@functools.cache
def _checked(max_int: int, unique_keys: bool) -> json.JSONDecoder:
    """A decoder that checks every number as it is parsed, integers against max_int."""
    digits, bound = len(str(max_int)), _bound(max_int)

    def parse_int(text: str) -> int:
        # refused from its digits: int() of a long literal is slow (and beyond 4,300 raises)
        n = len(text) - text.startswith("-")
        if n <= digits and len(text) <= MAX_NUMBER_TEXT:
            value = int(text)
            if -max_int <= value <= max_int:
                return value
        raise NotPlainJSON(f"an integer of {n} digits, beyond +-{bound} [A16]")

    return json.JSONDecoder(parse_int=parse_int, parse_float=_parse_float,
                            parse_constant=_parse_constant,
                            object_pairs_hook=_object if unique_keys else None)


#: Digits to "0", e and E to "e", everything else to " ": a number's shape at C speed.
_SHAPES = bytes(ord("0") if chr(b).isdigit() and b < 128 else ord("e") if chr(b) in "eE"
                else ord(" ") for b in range(256))


def _risky_numbers(data: bytes) -> bool:
    """16 digits in a row, or an exponent of 3 digits, anywhere (in a string too: that only
    costs the slow path)."""
    shapes = data.translate(_SHAPES)
    return b"0" * 16 in shapes or b"e000" in shapes or (
        b"e 000" in shapes and (b"e+" in data or b"e-" in data or b"E+" in data
                                or b"E-" in data))


def _check_string(s: str, limits: Limits) -> None:
    if len(s) > limits.string:
        raise NotPlainJSON(f"a string of {len(s)} characters (at most {limits.string}) [A16]")
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise NotPlainJSON("a string holds a lone surrogate (not UTF-8)") from None


#: A JSON escape in the surrogate range (or an escaped backslash before "ud8..": then the strings
#: are merely checked one by one, as they would be anyway).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_tree(obj: Any, limits: Limits, strings: bool) -> None:
    """Depth, and with `strings` every key and string, level by level without recursion
    (numbers were checked as they were parsed)."""
    level = [obj] if type(obj) in (dict, list) else []
    depth = 1
    while level:
        if depth > limits.depth:
            raise NotPlainJSON(f"nested deeper than {limits.depth} [A16]")
        below = []
        for container in level:
            if type(container) is dict:
                if strings:
                    for key in container:
                        _check_string(key, limits)
                items = container.values()
            else:
                items = container
            for item in items:
                kind = type(item)
                if kind is dict or kind is list:
                    below.append(item)
                elif strings and kind is str:
                    _check_string(item, limits)
        level = below
        depth += 1
    if strings and type(obj) is str:
        _check_string(obj, limits)


def _parse(text: str, limits: Limits, checked: bool) -> Any:
    decoder = _checked(limits.max_int, limits.unique_keys) if checked \
        else _PLAIN[limits.unique_keys]
    try:
        return decoder.decode(text)
    except NotPlainJSON:
        raise
    except json.JSONDecodeError as e:
        raise NotJSON(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:  # the parser's own recursion: far deeper than any limit
        raise NotPlainJSON(f"nested deeper than {limits.depth} [A16]") from None
    except ValueError as e:  # nothing known, but only NotPlainJSON may leave
        raise NotJSON(f"not JSON: {safe_text(str(e), 100)}") from None


def loads(data: bytes | str, limits: Limits) -> Any:
    """The JSON value in `data`, checked against `limits`; raises NotPlainJSON and nothing else
    (see the module docstring)."""
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as e:
            raise NotJSON(f"not UTF-8: {e.reason} at character {e.start}") from None
    elif type(data) is not bytes:
        data = bytes(data)
    if len(data) > limits.size:
        raise NotPlainJSON(f"{len(data)} bytes (at most {limits.size}) [A16]")
    try:
        text = data.decode("utf-8")  # strict: no UTF-16, no encoded surrogates
    except UnicodeDecodeError as e:
        raise NotJSON(f"not UTF-8: {e.reason} at byte {e.start}") from None
    obj = _parse(text, limits, limits.max_int < _PLAIN_INTS or _risky_numbers(data))
    # A string can be too long only in a long document, and hold a lone surrogate only if
    # escaped (the UTF-8 was strict): only then is every string looked at.
    strings = len(text) > limits.string or (
        "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None)
    _check_tree(obj, limits, strings)
    return obj
