"""The shim's wire protocol over SSH (subsystem `keyrite-shim`): pure, no I/O.

One JSON object per line (UTF-8, `\\n`-terminated) in each direction. Each request is answered
by exactly one final message (a result or an error) carrying the request's `id`, possibly
preceded by progress messages with the same `id`. Requests on one session are answered in order.

    request   {"v": 1, "id": "r1", "key": "<idempotency key>", "method": "info", "params": {}}
    result    {"v": 1, "id": "r1", "result": ...}
    error     {"v": 1, "id": "r1", "error": {"type": "BadRequest", "message": "..."}}
    progress  {"v": 1, "id": "r1", "progress": {"done": 2, "total": 6, "what": "..."}}

    queued    {"v": 1, "id": "r1", "queued": {"ahead": 2}}

Requests are parsed strictly: exactly the five fields above, none twice; `v` must be 1 (the
integer); `id` and `key` non-empty strings of at most 128 characters; `method` one of `METHODS`;
`params` an object with exactly the method's parameters; a line at most MAX_LINE bytes. Before
any of that, the line must be plain JSON as `keyrite.plainjson` reads it (`LIMITS`): strict
UTF-8 with no lone surrogate (neither raw nor as a `\ud800` escape), no key twice in any
object, objects and arrays nested at most MAX_DEPTH deep, integers within +-MAX_INT (refused
from their digits before anything converts them), number literals of at most 40 characters, no
NaN or infinities (nor a number too large for a float). `plan_generate` and `plan_backup`
parameters are checked here too, before the request reaches the HSM queue: each policy key
exactly `policy`, `role`, `algorithm` (non-empty strings) and `lifetime_seconds` (an integer
from 1 to MAX_LIFETIME), at most MAX_POLICY_KEYS of them; `duration` an ISO 8601 duration;
`date` a real calendar date (signer_shim.planning.backup_date_problem). A line that is not
such a request gets an error message (`id` is the request's if one could be read, else null)
and the session stays open.

Error types: `BadRequest` (not a request of this protocol), `UnsupportedVersion`,
`UnknownMethod`, `Busy` (a session refused: its connection, or the shim, has as many sessions
open as it serves, signer_shim.server.MAX_SESSIONS_PER_CONNECTION and MAX_SESSIONS; `id` null,
and the session ends), `QuorumRefused` (the approvals do not let the operation run; nothing touched
the HSM), `IdempotencyConflict` (the key was used for a different request), `SignerError` (the
signer refused or failed; the message is for the officers), `Internal` (a bug in the shim;
details are in its log, not on the wire).

Methods (version 1):

    info           {} -> {"name", "role", "host_key", "host_key_md5", "backend", "repository"}
    fingerprint    {} -> {"fingerprint": "d34d-ba64-..."}
    inventory      {} -> {"repository", "count", "keys": [{"locator", "type"}], "listing"}
    plan_purge     {} -> the operation (signer_shim.interface.Signer.plan_purge)
    plan_generate  {"keys": [{"policy", "role", "algorithm", "lifetime_seconds"}],
                    "duration": "P14M"} -> the operation
    plan_backup    {"date": "YYYY-MM-DD"} -> the operation
    execute        {"operation": {...}, "approvals": [{...}], "secrets": {"password": ...}}
                   -> the result (signer_shim.interface.Signer.execute); progress on the way
    read_output    {"name": "key-backup-....tar.gz", "offset": 0}
                   -> {"name", "size", "offset", "data": base64 of at most OUTPUT_CHUNK bytes}
    put_input      {"name": "key-backup-....tar.gz", "offset", "size", "sha256", "data": base64
                    of at most INPUT_CHUNK bytes} -> {"name", "size", "received"}: a backup to
                   restore, handed over in chunks; complete once `size` bytes with that SHA-256
                   are in (signer_shim.inputs)
    plan_restore   {"file": "key-backup-....tar.gz", "sha256"} -> the restore operation
                   (signer_shim.restore.plan_restore): every key the handed-over backup holds
    restore_drill  {"file": "key-backup-....tar.gz", "password": ...} or, for a wrap backup,
                   {"file", "shares": [box, ...]} (exactly one of the two)
                   -> {"file", "match", "live", "restored", "missing", "extra",
                       "fingerprint_match"} (a wrap drill: "public_keys_differ" and "method"
                   instead of "fingerprint_match"): the backup restored into a scratch token
                   and compared with the live one (signer_shim.drill); the password and the
                   boxes are never logged
    plan_kek       {"threshold": M, "holders": [{"seat": "KSO1", "key": "<Z85 Curve25519
                    public key>"}, ...]} -> {"op": "kek", "token", "threshold", "holders"}:
                   the backup KEK's creation (wrap method only; refused if the token cannot
                   wrap, has a KEK already, or the signer has no pkcs11.so_pin). Seats distinct
                   printable strings of at most 32 characters, keys distinct, 2 <= M <= N <= 16.
                   Executed with secrets {} it returns {"kek_id", "scheme": "SLIP-39",
                   "threshold", "shares", "holders": [seats], "sealed": [{"seat", "box"}]}:
                   share i sealed to holder i (keyrite.sealing, context
                   share_context(kek_id, seat)); no share crosses the wire in the clear
    share_key      {} -> {"share_key": "<Z85>"}: the signer's own Curve25519 key; the KSOs'
                   consoles seal the shares they bring to a wrap restore or drill to it,
                   context share_context(kek_id, "signer")

A wrap backup's `plan_restore` adds "method": "wrap", "kek": {"id", "threshold", "shares"} and
"share_key" to the operation; its `execute` takes secrets {"shares": [box, ...]} instead of a
password. Sealed boxes (params.shares, secrets.shares) are checked here: 1 to 16 base64 strings
of at most keyrite.sealing.MAX_BOX characters; plan_kek's holders are checked here too.

Every HSM call waits its turn in one queue; while a request waits, `queued` messages say how
many are ahead of it. The idempotency key matters for `execute`: the first request under a key
is checked (quorum, nonces) and journaled; a later request under the same key must be the same
request (secrets aside), and gets the recorded result if the operation finished, waits for it if
it is running, or carries it on (reconciling against the HSM) if it failed or the shim died.
An operation that has started always runs to its end: a client that disconnects or gives up
loses only the messages, never the work, and asks again under the same key for the result.
Read-only methods are answered afresh each time.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from ceremony.durations import DurationError, parse_duration
from keyrite import plainjson, sealing
from signer_shim.interface import Inventory
from signer_shim.planning import BACKUP_FILE, MAX_KEK_SHARES, backup_date_problem, kek_problem
from signer_shim.restore import MAX_BACKUP

VERSION = 1
SUBSYSTEM = "keyrite-shim"
#: each method's parameters: name -> (type, required)
PARAMS: dict[str, dict[str, tuple[type, bool]]] = {
    "info": {},
    "fingerprint": {},
    "inventory": {},
    "plan_purge": {},
    "plan_generate": {"keys": (list, True), "duration": (str, True)},
    "plan_backup": {"date": (str, True)},
    "execute": {"operation": (dict, True), "approvals": (list, True), "secrets": (dict, False)},
    "read_output": {"name": (str, True), "offset": (int, True)},
    "restore_drill": {"file": (str, True), "password": (str, False), "shares": (list, False)},
    "put_input": {"name": (str, True), "offset": (int, True), "size": (int, True),
                  "sha256": (str, True), "data": (str, True)},
    "plan_restore": {"file": (str, True), "sha256": (str, True)},
    "plan_kek": {"threshold": (int, True), "holders": (list, True)},
    "share_key": {},
}
METHODS = tuple(PARAMS)
OUTPUT_CHUNK = 1 << 20  # bytes of an output file per read_output answer
INPUT_CHUNK = 32 << 10  # bytes of an input file per put_input request (base64 fits a line)
#: what the coordinator may hand over: a backup's file name, and its largest size
INPUT_NAME, MAX_INPUT = BACKUP_FILE, MAX_BACKUP
MAX_LINE = 65536  # bytes, newline included; a longer line is refused
MAX_TOKEN = 128  # characters in an id or an idempotency key
MAX_DEPTH = 16  # objects and arrays inside each other (a generate operation needs 6)
MAX_INT = 2**63  # integers within +-MAX_INT: every 64-bit one, no 5,000-digit one
MAX_POLICY_KEYS = 64  # policy keys in one plan_generate
MAX_LIFETIME = 100 * 365 * 86400  # seconds: the longest key lifetime plan_generate takes
MAX_NAME = 128  # characters in a policy, role or algorithm name

_FIELDS = ("v", "id", "key", "method", "params")
#: What `keyrite.plainjson` takes as a request line (no string limit of its own: the line's).
LIMITS = plainjson.Limits(size=MAX_LINE, string=MAX_LINE, depth=MAX_DEPTH, max_int=MAX_INT)


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


def parse_request(line: bytes) -> Request:
    """A request from one line, or ProtocolError saying what is wrong with it."""
    if len(line) > MAX_LINE:
        raise ProtocolError("BadRequest", f"line longer than {MAX_LINE} bytes")
    try:
        doc = plainjson.loads(line, LIMITS)
    except plainjson.NotJSON:
        raise ProtocolError("BadRequest", "not a JSON object") from None
    except plainjson.NotPlainJSON as e:
        raise ProtocolError("BadRequest", f"not plain JSON: {e}") from None
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
    _check_params(method, params, id_)
    return Request(id=rid, key=key, method=method, params=params)


def _check_params(method: str, params: dict[str, Any], id_: str | None) -> None:
    spec = PARAMS[method]
    for name in sorted(params):
        if name not in spec:
            what = "takes no params" if not spec else f"has no parameter {name!r}"
            raise ProtocolError("BadRequest", f"{method} {what} (got {name!r})", id_)
    for name, (kind, required) in spec.items():
        if name not in params:
            if required:
                raise ProtocolError("BadRequest", f"{method} needs params.{name}", id_)
            continue
        v = params[name]
        if not isinstance(v, kind) or isinstance(v, bool):
            raise ProtocolError("BadRequest", f"params.{name} must be a {kind.__name__}", id_)
        if kind is int and v < 0:
            raise ProtocolError("BadRequest", f"params.{name} must not be negative", id_)
    if method == "execute":
        if not all(isinstance(a, dict) for a in params["approvals"]):
            raise ProtocolError("BadRequest", "params.approvals must be a list of objects", id_)
        secrets = params.get("secrets", {})
        if not all(isinstance(v, str) for k, v in secrets.items() if k != "shares"):
            raise ProtocolError("BadRequest", "params.secrets must map names to strings "
                                "(and shares to a list of sealed boxes)", id_)
        if "shares" in secrets:
            _check_boxes(secrets["shares"], "params.secrets.shares", id_)
    if method == "plan_kek":
        problem = kek_problem(params["threshold"], params["holders"])
        if problem is not None:
            raise ProtocolError("BadRequest", f"plan_kek: {problem}", id_)
    if method == "restore_drill":
        if ("password" in params) == ("shares" in params):
            raise ProtocolError("BadRequest", "restore_drill takes exactly one of "
                                "params.password and params.shares", id_)
        if "shares" in params:
            _check_boxes(params["shares"], "params.shares", id_)
    if method == "plan_generate":
        _check_generate(params, id_)
    if method == "put_input":
        try:
            chunk = base64.b64decode(params["data"], validate=True)
        except ValueError:
            raise ProtocolError("BadRequest", "params.data must be base64", id_) from None
        if len(chunk) > INPUT_CHUNK:
            raise ProtocolError("BadRequest", f"params.data: at most {INPUT_CHUNK} bytes per "
                                "chunk", id_)
    if method == "plan_backup":
        problem = backup_date_problem(params["date"])
        if problem is not None:
            raise ProtocolError("BadRequest", f"params.date: {problem}", id_)


_POLICY_KEY = ("policy", "role", "algorithm", "lifetime_seconds")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _check_boxes(boxes: Any, where: str, id_: str | None) -> None:
    """KEK shares as sealed boxes (keyrite.sealing): 1 to MAX_KEK_SHARES base64 strings of at
    most sealing.MAX_BOX characters. Looked at, never echoed."""
    if not isinstance(boxes, list) or not 1 <= len(boxes) <= MAX_KEK_SHARES:
        raise ProtocolError("BadRequest", f"{where} must be a list of 1 to {MAX_KEK_SHARES} "
                            "sealed boxes", id_)
    for i, box in enumerate(boxes):
        if (not isinstance(box, str) or not box or len(box) > sealing.MAX_BOX
                or len(box) % 4 or not _BASE64.fullmatch(box)):
            raise ProtocolError("BadRequest", f"{where}[{i}] is not a sealed box (base64 of at "
                                f"most {sealing.MAX_BOX} characters)", id_)


def _check_generate(params: dict[str, Any], id_: str | None) -> None:
    keys = params["keys"]
    if len(keys) > MAX_POLICY_KEYS:
        raise ProtocolError("BadRequest", f"params.keys: at most {MAX_POLICY_KEYS} policy keys",
                            id_)
    for i, k in enumerate(keys):
        where = f"params.keys[{i}]"
        if not isinstance(k, dict) or set(k) != set(_POLICY_KEY):
            raise ProtocolError("BadRequest", f"{where} must be an object with exactly "
                                f"{', '.join(_POLICY_KEY)}", id_)
        for name in _POLICY_KEY[:3]:
            v = k[name]
            if not isinstance(v, str) or not v or len(v) > MAX_NAME:
                raise ProtocolError("BadRequest", f"{where}.{name} must be a non-empty string "
                                    f"of at most {MAX_NAME} characters", id_)
        life = k["lifetime_seconds"]
        if type(life) is not int or not 1 <= life <= MAX_LIFETIME:
            raise ProtocolError("BadRequest", f"{where}.lifetime_seconds must be an integer "
                                f"from 1 to {MAX_LIFETIME} (got {str(life)[:40]})", id_)
    try:
        parse_duration(params["duration"])
    except DurationError as e:
        raise ProtocolError("BadRequest", f"params.duration: {e}", id_) from None


def result(id_: str, value: Any) -> bytes:
    return encode({"v": VERSION, "id": id_, "result": value})


def error(id_: str | None, type_: str, message: str) -> bytes:
    return encode({"v": VERSION, "id": id_, "error": {"type": type_, "message": message}})


def progress(id_: str, done: int, total: int, what: str) -> bytes:
    return encode({"v": VERSION, "id": id_,
                   "progress": {"done": done, "total": total, "what": what}})


def queued(id_: str, ahead: int) -> bytes:
    return encode({"v": VERSION, "id": id_, "queued": {"ahead": ahead}})


def inventory_result(inv: Inventory) -> dict[str, Any]:
    return {"repository": inv.repository, "count": len(inv.keys),
            "keys": [{"locator": k.locator, "type": k.type} for k in inv.keys],
            "listing": inv.render()}


_REPLY_KINDS = ("result", "error", "progress", "queued")


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
