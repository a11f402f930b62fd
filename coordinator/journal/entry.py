"""One journal line: `{"prev":<hex>,"record":{...},"seq":<n>}`, canonical JSON, no newline inside.

The line's own bytes are what is hashed (for the next entry's `prev` and for the Merkle leaf), so
a reader never re-serialises anything to check a link: it hashes what is on disk. Pure.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, NamedTuple

from ceremony.digests import canonical_json

GENESIS_PREV = "0" * 64
#: The record type the journal itself writes for a checkpoint; `append` refuses it.
CHECKPOINT_TYPE = "checkpoint"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEYS = frozenset({"prev", "record", "seq"})


class BadLine(ValueError):
    """A line that is not a journal entry; `kind` is "json" (unreadable) or "format"."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class Entry(NamedTuple):
    """An entry as read back: its position, its link, the caller's record, its own line hash.

    A NamedTuple rather than a frozen dataclass: verify builds one per line, and a frozen
    dataclass's __init__ costs several times more.
    """

    seq: int
    prev: str  # hex SHA-256 of the previous line (64 zeros for the genesis entry)
    record: dict[str, Any]
    line_hash: str  # hex SHA-256 of this entry's line, without the newline


def encode(seq: int, prev: str, record: dict[str, Any]) -> bytes:
    """The line for an entry, without its newline: `canonical_json({"prev", "record", "seq"})`,
    the outer object spelled out (its keys in sorted order) so that only the record goes through
    the encoder (append's path; `tests/test_journal_ioerrors.py` checks the bytes are the same).
    `prev` is always 64 hex digits, which JSON writes as they are."""
    if type(seq) is not int or not _HEX64.fullmatch(prev):
        return canonical_json({"prev": prev, "record": record, "seq": seq})
    return b'{"prev":"%s","record":%s,"seq":%d}' % (prev.encode(), canonical_json(record), seq)


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# canonical_json's encoder, made once: `JSONEncoder.encode` builds a C encoder and a closure on
# every call, which the append path pays for nothing. The same settings (sorted keys, no
# spaces, no ASCII escaping), so the same bytes, except that NaN and infinities raise ValueError
# (no JSON reader takes them back) and a circular record raises RecursionError rather than
# ValueError (no markers: the one encoder is shared, and markers left by a failed call would
# poison the next).
_RECORD_JSON = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False
) if json.encoder.c_make_encoder is not None else None  # type: ignore[attr-defined]


def append_line(seq: int, prev: str, record: dict[str, Any]) -> bytes:
    """The line the writer appends: `encode`'s bytes for an entry it builds itself (`seq` an
    int, `prev` the chain's own last hash, 64 hex digits, both unchecked), without the
    encoder's per-call set-up. Refuses what no journal line can hold: ValueError for NaN and
    infinities ("Out of range float values...") and a string that is not UTF-8 (a lone
    surrogate), TypeError for a value JSON does not have, RecursionError for a circular or
    too deeply nested record."""
    if _RECORD_JSON is None:  # no C encoder (not CPython): the plain way, and the NaN check
        line = encode(seq, prev, record)
        decode(line)
        return line
    return f'{{"prev":"{prev}","record":{"".join(_RECORD_JSON(record, 0))},"seq":{seq}}}'.encode()


def line_hash(line: bytes) -> str:
    """Hex SHA-256 of a line's bytes (no newline): the next entry's `prev`."""
    return hashlib.sha256(line).hexdigest()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every line: `json.loads` with options would build a new one per call, which
# was a third of `keyrite verify`'s time on a long journal.
DECODER = json.JSONDecoder(parse_constant=_no_constant)


def decode(line: bytes) -> tuple[int, str, dict[str, Any]]:
    """`(seq, prev, record)` from a line, or BadLine. Checks shape, not links."""
    try:
        text = line.decode("utf-8")
        obj, end = DECODER.raw_decode(text)  # no whitespace allowed around the object
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError included
        raise BadLine("json", f"not a JSON line ({e})") from None
    if end != len(text):
        raise BadLine("json", f"not a JSON line (extra data at column {end + 1})")
    if type(obj) is not dict or len(obj) != 3 or obj.keys() != _KEYS:
        raise BadLine("format", "not an entry: expected exactly the keys prev, record, seq")
    seq, prev, record = obj["seq"], obj["prev"], obj["record"]
    if type(seq) is not int or seq < 0:
        raise BadLine("format", f"seq {seq!r} is not a non-negative integer")
    if type(prev) is not str or not _HEX64.fullmatch(prev):
        raise BadLine("format", "prev is not 64 lower-case hex digits")
    if type(record) is not dict:
        raise BadLine("format", "record is not a JSON object")
    return seq, prev, record
