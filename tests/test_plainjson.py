"""keyrite.plainjson, the one strict JSON reader behind the bus and the shim: only NotPlainJSON
or a plain value comes out, whatever goes in (by example and by hypothesis, under the bus's and
the shim's limits and a tiny set), and the fast path (numbers parsed by json itself) accepts
exactly what the slow one (every number checked) accepts.

The edges' own rules (envelopes, fields, their wording) are in tests/test_bus_hostile.py and
tests/test_shim_hostile.py; the strategies here serve the bus's too.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyrite import plainjson as pj
from keyrite.plainjson import Limits, NotPlainJSON, loads

#: The bus's (a console's frame), the shim's (a request line) and a tiny set whose max_int is
#: below 10**15, so that every document takes the slow path.
BUS = Limits(size=64 * 1024, string=8 * 1024, depth=32, max_int=2**53)
SHIM = Limits(size=65536, string=65536, depth=16, max_int=2**63)
TINY = Limits(size=300, string=20, depth=3, max_int=1000)
ALL = (BUS, SHIM, TINY)

strings = st.text(st.characters(codec=None, exclude_categories=()), max_size=20) | \
    st.sampled_from(["\ud800", "a\udc00", "\udbff\udfff", "\U0001f512", "x" * 9000])
scalars = (st.none() | st.booleans() | strings | st.integers() | st.floats()
           | st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**63 + 1, 10**4200, math.inf,
                              math.nan]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(strings, inner, max_size=4), max_leaves=30)
#: Pieces of JSON text, some hostile, joined in any order: mostly not JSON, sometimes deep.
tokens = st.sampled_from([b"[", b"]", b"{", b"}", b",", b":", b'"k"', b'"\\ud800"', b"1" * 5000,
                          b"-", b".5", b"e999", b"NaN", b"Infinity", b"null", b"\xff", b"[" * 1100,
                          b"]" * 1100, b'{"v":1,"kind":"command","id":"c","body":',
                          b'{"v":1,"kind":"snapshot","id":'])


def json_bytes(value: Any, ascii_only: bool) -> bytes:
    """`value` as JSON, NaN and all, in UTF-8 (a raw lone surrogate, which cannot even be sent
    as UTF-8, as CESU-8)."""
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def parsed_both_ways(data: bytes, limits: Limits) -> list[tuple[str, str]]:
    """What each path makes of `data` (the value as JSON text, or "refused"), or [] where the
    fast path never runs (bytes not UTF-8, risky numbers, a max_int below 10**15)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []
    if pj._risky_numbers(data) or limits.max_int < pj._PLAIN_INTS:
        return []
    outcomes = []
    for checked in (True, False):
        try:
            outcomes.append(("value", json.dumps(pj._parse(text, limits, checked))))
        except NotPlainJSON:
            outcomes.append(("refused", ""))
    return outcomes


def check(data: bytes) -> None:
    """Only NotPlainJSON (with a short reason that encodes) or a value that encodes again as
    strict UTF-8 JSON; and both paths agree."""
    for limits in ALL:
        try:
            value = loads(data, limits)
        except NotPlainJSON as e:
            assert len(str(e)) < 400, "the reason must not echo the document"
            str(e).encode("utf-8")
        else:
            json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        both = parsed_both_ways(data, limits)
        assert not both or both[0] == both[1], (data[:200], limits, both)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_loads_of_arbitrary_bytes_raises_only_not_plain_json(data: bytes) -> None:
    check(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tokens, max_size=12).map(b"".join))
def test_loads_of_hostile_pieces_raises_only_not_plain_json(data: bytes) -> None:
    check(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.booleans(), st.integers(0, 1200))
def test_loads_of_arbitrary_json_raises_only_not_plain_json(value: Any, ascii_only: bool,
                                                             depth: int) -> None:
    data = json_bytes(value, ascii_only)
    check(data)
    check(b"[" * depth + data + b"]" * depth)


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"-?(0|[1-9][0-9]{0,29})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?",
                     fullmatch=True),
       st.sampled_from(["[%s]", '{"k":%s}', '["1234567890123456",%s]']),
       st.sampled_from(ALL))
def test_numbers_are_refused_exactly_beyond_their_bounds(literal: str, where: str,
                                                         limits: Limits) -> None:
    """Whichever way a document is parsed (numbers are checked one by one only when it has a
    long digit run or a long exponent somewhere, or a small max_int), the same numbers pass."""
    if "." in literal or "e" in literal.lower():
        ok = len(literal) <= 40 and math.isfinite(float(literal))
    else:
        ok = len(literal) <= 40 and abs(int(literal)) <= limits.max_int
    data = (where % literal).encode()
    if ok:
        assert loads(data, limits) is not None
    else:
        with pytest.raises(NotPlainJSON):
            loads(data, limits)
    both = parsed_both_ways(data, limits)
    assert [kind for kind, _ in both] in ([], ["value"] * 2 if ok else ["refused"] * 2)
    assert not both or both[0] == both[1]


# --- by example ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "says"), [
    (b'"\\ud800"', "surrogate"),
    (b'{"\\udfff":1}', "surrogate"),
    (b'["a\\udc00"]', "surrogate"),
    (b'"\xed\xa0\x80"', "UTF-8"),  # an encoded surrogate
    (b'"\xff"', "UTF-8"),
    ('"s"'.encode("utf-16"), "UTF-8"),
    (b'\xef\xbb\xbf"s"', "not JSON"),  # a BOM
    (b'{"a":1,"a":2}', "'a' twice"),
    (b"9" * 5000, "5000 digits"),
    (b"-" + b"9" * 30, "30 digits"),
    (str(2**53 + 1).encode(), "beyond +-2**53"),
    (str(-(2**53) - 1).encode(), "beyond +-2**53"),
    (b"0." + b"1" * 5000, "characters"),
    (b"1e400", "not a finite number"),
    (b"-1e400", "not a finite number"),
    (b"NaN", "NaN"),
    (b"Infinity", "Infinity"),
    (b"-Infinity", "Infinity"),
    (b"[" * 33 + b"]" * 33, "nested deeper than 32"),
    (b'{"a":' * 33 + b"1" + b"}" * 33, "nested deeper than 32"),
    (b"[" * 30_000 + b"]" * 30_000, "nested deeper than 32"),  # json's RecursionError
    (json.dumps("x" * 8193).encode(), "8193 characters"),
    (json.dumps({"k" * 8193: 1}).encode(), "8193 characters"),
    (json.dumps(["ab"] * 100_000).encode(), "bytes (at most 65536)"),
    (b"", "not JSON"),
    (b"{} {}", "not JSON"),
])
def test_what_is_refused_and_why(data: bytes, says: str) -> None:
    with pytest.raises(NotPlainJSON) as e:
        loads(data, BUS)
    assert says in str(e.value)
    assert isinstance(e.value, ValueError)
    # NotJSON: not UTF-8 or not JSON's grammar at all, as against JSON beyond the limits
    assert isinstance(e.value, pj.NotJSON) == (says in ("UTF-8", "not JSON"))


@pytest.mark.parametrize("limits", ALL)
def test_values_at_their_bounds_are_taken(limits: Limits) -> None:
    longest = min(limits.string, limits.size - 2)  # the shim's strings are bound by its line
    for value in (limits.max_int, -limits.max_int, 0, -0.0, 1.5e300, -2.5e-300, 1e-400,
                  "x" * longest, "\U0001f512 \u00e9", {"k": [None, False, True]}):
        assert loads(json.dumps(value).encode(), limits) == value
    for over in (limits.max_int + 1, -limits.max_int - 1):
        with pytest.raises(NotPlainJSON, match="digits, beyond"):
            loads(str(over).encode(), limits)
    assert loads(b"[" * limits.depth + b"]" * limits.depth, limits) is not None
    with pytest.raises(NotPlainJSON, match="nested"):
        loads(b"[" * (limits.depth + 1) + b"]" * (limits.depth + 1), limits)
    with pytest.raises(NotPlainJSON, match="bytes" if longest < limits.string else "characters"):
        loads(json.dumps("x" * (limits.string + 1)).encode(), limits)
    # an escaped surrogate *pair* is one proper character, not a lone surrogate
    assert loads(b'"\\ud83d\\udd12"', limits) == "\U0001f512"


def test_text_is_taken_as_its_utf8() -> None:
    assert loads('{"a": ["\u00e9", 1]}', BUS) == {"a": ["\u00e9", 1]}
    with pytest.raises(NotPlainJSON, match="UTF-8"):
        loads('"\ud800"', BUS)  # a raw lone surrogate in a str
    with pytest.raises(NotPlainJSON, match="bytes"):
        loads("\u00e9" * 40_000, BUS)  # 80,000 bytes, 40,000 characters


def test_a_huge_integer_is_never_converted() -> None:
    """The digits are counted before int() sees them: 50,000 digits cost nothing (and int()
    itself would refuse beyond 4,300)."""
    started = time.perf_counter()
    for limits in ALL:
        with pytest.raises(NotPlainJSON, match="50000 digits"):
            loads(b"[" + b"7" * 50000 + b"]", Limits(size=10**6, string=1,
                                                     max_int=limits.max_int))
    assert time.perf_counter() - started < 1


def test_safe_text_always_encodes_and_is_short() -> None:
    for text in ("\ud800", "a\udfffb" * 10_000, "plain", b"bytes", None):
        safe = pj.safe_text(text)
        safe.encode("utf-8")
        assert len(safe) <= pj.TEXT_LIMIT + 1
    assert pj.safe_text("x" * 50, 10) == "x" * 10 + "\u2026"


def test_a_key_named_twice_is_refused_unless_unique_keys_is_off() -> None:
    strict, lenient = Limits(1000, 100), Limits(1000, 100, unique_keys=False)
    for doc in (b'{"a":1,"a":2}', b'{"a":1,"a":2,"n":1.5e100}'):  # the fast path, the checked
        with pytest.raises(NotPlainJSON, match="twice"):
            loads(doc, strict)
        assert loads(doc, lenient)["a"] == 2
