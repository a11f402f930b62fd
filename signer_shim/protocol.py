"""The shim's wire protocol over SSH (subsystem `keyrite-shim`): pure, no I/O.

One JSON object per line (UTF-8, `\\n`-terminated) in each direction. Each request is answered
by exactly one final message (a result or an error) carrying the request's `id`, possibly
preceded by progress messages with the same `id`. Requests on one session are answered in order.

    request   {"v": 1, "id": "r1", "key": "<idempotency key>", "method": "info", "params": {}}
    result    {"v": 1, "id": "r1", "result": ...}
    error     {"v": 1, "id": "r1", "error": {"type": "BadRequest", "message": "..."}}
    progress  {"v": 1, "id": "r1", "progress": {"done": 2, "total": 6, "what": "..."}}

Requests are parsed strictly: exactly the five fields above, none twice; `v` must be 1 (the
integer); `id` and `key` non-empty strings of at most 128 characters; `method` one of `METHODS`;
`params` an object (for the read-only methods, empty); a line at most MAX_LINE bytes. A line that
is not such a request gets an error message (`id` is the request's if one could be read, else
null) and the session stays open.

Error types: `BadRequest` (not a request of this protocol), `UnsupportedVersion`,
`UnknownMethod`, `SignerError` (the signer refused or failed; the message is for the officers),
`Internal` (a bug in the shim; details are in its log, not on the wire).

Methods (version 1, read-only for now):

    info         -> {"name", "role", "host_key", "host_key_md5", "backend", "repository"}
    fingerprint  -> {"fingerprint": "d34d-ba64-..."}
    inventory    -> {"repository", "count", "keys": [{"locator", "type"}], "listing": <the
                     `ods-hsmutil list` rendering>}

The idempotency key is checked for shape on every request. Read-only methods are answered afresh
each time (their answer may legitimately change); replaying a recorded answer for a repeated key
belongs to the state-changing methods, which come later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from signer_shim.interface import Inventory

VERSION = 1
SUBSYSTEM = "keyrite-shim"
METHODS = ("info", "fingerprint", "inventory")
MAX_LINE = 65536  # bytes, newline included; a longer line is refused
MAX_TOKEN = 128  # characters in an id or an idempotency key

_FIELDS = ("v", "id", "key", "method", "params")


class ProtocolError(ValueError):
    """A line that is not a valid request; `type` is the error type to answer with and `id`
    the request id if one could be read."""

    def __init__(self, type_: str, message: str, id_: str | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.id = id_


@dataclass(frozen=True)
class Request:
    id: str
    key: str
    method: str
    params: dict[str, Any]

    def to_line(self) -> bytes:
        return encode({"v": VERSION, "id": self.id, "key": self.key, "method": self.method,
                       "params": self.params})


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _token(doc: dict[str, Any], name: str) -> str:
    v = doc.get(name)
    if not isinstance(v, str) or not v or len(v) > MAX_TOKEN:
        raise ValueError(f"{name!r} must be a non-empty string of at most {MAX_TOKEN} characters")
    return v


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for k, v in pairs:
        if k in doc:
            raise _Duplicate(k)
        doc[k] = v
    return doc


def parse_request(line: bytes) -> Request:
    """A request from one line, or ProtocolError saying what is wrong with it."""
    if len(line) > MAX_LINE:
        raise ProtocolError("BadRequest", f"line longer than {MAX_LINE} bytes")
    try:
        doc = json.loads(line, object_pairs_hook=_no_duplicates)
    except _Duplicate as e:
        raise ProtocolError("BadRequest", f"field {e.args[0]!r} given twice") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ProtocolError("BadRequest", "not a JSON object") from None
    if not isinstance(doc, dict):
        raise ProtocolError("BadRequest", "not a JSON object")
    raw_id = doc.get("id")
    id_ = raw_id if isinstance(raw_id, str) and raw_id and len(raw_id) <= MAX_TOKEN else None
    try:
        rid = _token(doc, "id")
    except ValueError as e:
        raise ProtocolError("BadRequest", str(e)) from None
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise ProtocolError("BadRequest", f"unknown field {unknown[0]!r}", id_)
    if "v" not in doc:
        raise ProtocolError("BadRequest", "field 'v' (protocol version) is required", id_)
    v = doc["v"]
    if type(v) is not int or v != VERSION:
        raise ProtocolError("UnsupportedVersion",
                            f"protocol version {v!r} is not supported (this shim speaks "
                            f"{VERSION})", id_)
    try:
        key = _token(doc, "key")
    except ValueError as e:
        raise ProtocolError("BadRequest", str(e), id_) from None
    method = doc.get("method")
    if not isinstance(method, str):
        raise ProtocolError("BadRequest", "'method' must be a string", id_)
    if method not in METHODS:
        raise ProtocolError("UnknownMethod",
                            f"unknown method {method!r} (known: {', '.join(METHODS)})", id_)
    if "params" not in doc:
        raise ProtocolError("BadRequest", "field 'params' is required", id_)
    params = doc["params"]
    if not isinstance(params, dict):
        raise ProtocolError("BadRequest", "'params' must be an object", id_)
    if params:
        raise ProtocolError("BadRequest",
                            f"{method} takes no params (got {sorted(params)[0]!r})", id_)
    return Request(id=rid, key=key, method=method, params=params)


def result(id_: str, value: Any) -> bytes:
    return encode({"v": VERSION, "id": id_, "result": value})


def error(id_: str | None, type_: str, message: str) -> bytes:
    return encode({"v": VERSION, "id": id_, "error": {"type": type_, "message": message}})


def progress(id_: str, done: int, total: int, what: str) -> bytes:
    return encode({"v": VERSION, "id": id_,
                   "progress": {"done": done, "total": total, "what": what}})


def inventory_result(inv: Inventory) -> dict[str, Any]:
    return {"repository": inv.repository, "count": len(inv.keys),
            "keys": [{"locator": k.locator, "type": k.type} for k in inv.keys],
            "listing": inv.render()}


_REPLY_KINDS = ("result", "error", "progress")


def parse_reply(line: bytes) -> dict[str, Any]:
    """A message from the shim (for clients and tests): strict about the envelope."""
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("BadReply", f"not JSON: {line[:80]!r}") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION or "id" not in doc:
        raise ProtocolError("BadReply", f"not a version-{VERSION} message: {line[:80]!r}")
    kinds = [k for k in _REPLY_KINDS if k in doc]
    if len(kinds) != 1 or set(doc) != {"v", "id", kinds[0]}:
        raise ProtocolError("BadReply", f"malformed message: {line[:80]!r}")
    return doc
