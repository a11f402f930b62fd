"""The console bus's messages (version 1), and the pure catch-up logic of a console.

Every message is one ZeroMQ frame holding one JSON object (UTF-8, compact, keys sorted) with
`"v": 1` and a `"kind"`. Unknown versions, kinds, missing or extra fields are errors.

Console -> coordinator, on the DEALER/ROUTER pair:

    {"v": 1, "kind": "command",  "id": "<str>", "body": <any JSON>}
    {"v": 1, "kind": "snapshot", "id": "<str>"}

Coordinator -> that console, on the same pair, answering `id`:

    {"v": 1, "kind": "reply",    "id": "<str>", "body": <any JSON>}
    {"v": 1, "kind": "error",    "id": "<str>" | null, "error": "<reason>"}
    {"v": 1, "kind": "state",    "id": "<str>", "epoch": "<str>", "seq": N, "state": {...}}

Coordinator -> every console, on PUB/SUB:

    {"v": 1, "kind": "broadcast", "epoch": "<str>", "seq": N, "body": <any JSON>}
    {"v": 1, "kind": "heartbeat", "epoch": "<str>", "seq": N}

Who sent a command is never in the message: it is the ZAP User-Id of the CURVE key that carried
it (a `body` may say anything; the server hands the handler the officer from the connection).

`seq` numbers broadcasts 1, 2, 3... within an `epoch` (a new epoch each time a server starts). A
snapshot's `seq` is the last broadcast already folded into its `state`. PUB drops silently at its
high-water mark and a SUB misses what was sent while it was away, so the console's `Follower`
treats a gap, a new epoch, a heartbeat ahead of it or a reconnect as "ask for a snapshot"; it
buffers broadcasts until the snapshot comes and replays those newer than it. The heartbeat is what
reveals a lost *last* broadcast.

Every frame is checked whole at the edge, before anything else sees it (`decode`): a frame from a
console may come from anyone holding an enrolled key, a witness's read-only console included,
so nothing in it may stop the coordinator or reach its journal unsafe. `decode` raises
`ProtocolError` and nothing else; what it returns is plain JSON data that encodes again as
strict UTF-8 JSON. It refuses:

- a frame longer than `Limits.frame` bytes (checked before parsing), or not strict UTF-8;
- anything but one JSON object at the top, and an object with a key twice;
- nesting deeper than `Limits.depth` (the message itself is level 1);
- a string (key or value) longer than `Limits.string` characters, or holding a lone surrogate
  (`"\\ud800"` escaped in the JSON: it cannot be written as UTF-8); `id` and `epoch` longer than
  `ID_LIMIT`;
- an integer beyond +-2**53 (refused from its digits, before it is converted), a number literal
  longer than 40 characters, NaN, Infinity, -Infinity and floats that overflow (`1e400`);
- unknown versions and kinds, missing or extra fields, fields of the wrong type.

A coordinator takes `FROM_CONSOLE` (64 KiB frames, 8 KiB strings); a console takes
`FROM_COORDINATOR` (whole views and journal pages: 64 MiB frames, 16 MiB strings). Both nest at
most 32 deep.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

VERSION = 1

__all__ = [
    "VERSION",
    "Apply",
    "Broadcast",
    "Command",
    "ErrorReply",
    "FROM_CONSOLE",
    "FROM_COORDINATOR",
    "Follower",
    "Heartbeat",
    "Limits",
    "NeedSnapshot",
    "ProtocolError",
    "Reply",
    "Reset",
    "Snapshot",
    "SnapshotRequest",
    "decode",
    "encode",
    "safe_text",
]


class ProtocolError(ValueError):
    """A frame that is not a version-1 bus message."""


@dataclass(frozen=True)
class Limits:
    """What one frame may hold (see the module docstring)."""

    frame: int  # bytes
    string: int  # characters in any one string, key or value
    depth: int = 32  # nesting of objects and arrays; the message itself is level 1


#: What the coordinator takes from a console: a command is a few hundred bytes.
FROM_CONSOLE = Limits(frame=64 * 1024, string=8 * 1024)
#: What a console takes from the coordinator: views, snapshots and journal pages (whose lines
#: hold, for one, the script's whole text).
FROM_COORDINATOR = Limits(frame=64 * 1024 * 1024, string=16 * 1024 * 1024)
#: Integers beyond this are refused: every JSON reader holds up to 2**53 exactly.
MAX_INT = 2**53
#: The longest number literal taken (a float's repr is at most 24 characters).
MAX_NUMBER_TEXT = 40
#: The longest `id` and `epoch` (a console numbers its requests; an epoch is 16 hex digits).
ID_LIMIT = 128
#: The longest reason `safe_text` gives by default.
TEXT_LIMIT = 1000


def safe_text(value: Any, limit: int = TEXT_LIMIT) -> str:
    """`value` as text that always encodes as UTF-8 and is at most `limit` characters (and an
    ellipsis): for error replies, logs and the journal, whatever a stranger put in `value`."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "\u2026"
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        if len(text) > limit + 1:  # escapes make it longer
            text = text[:limit] + "\u2026"
    return text


def _show(value: Any, limit: int = 40) -> str:
    """A value named in a ProtocolError: short, and safe to send back."""
    if isinstance(value, (dict, list)):
        return type(value).__name__
    return safe_text(repr(value), limit)


@dataclass(frozen=True, kw_only=True)
class Command:
    id: str
    body: Any


@dataclass(frozen=True, kw_only=True)
class SnapshotRequest:
    id: str


@dataclass(frozen=True, kw_only=True)
class Reply:
    id: str
    body: Any


@dataclass(frozen=True, kw_only=True)
class ErrorReply:
    id: str | None
    error: str


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    id: str
    epoch: str
    seq: int
    state: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Broadcast:
    epoch: str
    seq: int
    body: Any


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    epoch: str
    seq: int


Message = Command | SnapshotRequest | Reply | ErrorReply | Snapshot | Broadcast | Heartbeat

# kind -> (class, {field: accepted types})
_KINDS: dict[str, tuple[type, dict[str, tuple[type, ...]]]] = {
    "command": (Command, {"id": (str,), "body": (object,)}),
    "snapshot": (SnapshotRequest, {"id": (str,)}),
    "reply": (Reply, {"id": (str,), "body": (object,)}),
    "error": (ErrorReply, {"id": (str, type(None)), "error": (str,)}),
    "state": (Snapshot, {"id": (str,), "epoch": (str,), "seq": (int,), "state": (dict,)}),
    "broadcast": (Broadcast, {"epoch": (str,), "seq": (int,), "body": (object,)}),
    "heartbeat": (Heartbeat, {"epoch": (str,), "seq": (int,)}),
}
_KIND_OF = {cls: kind for kind, (cls, _) in _KINDS.items()}


def encode(message: Message) -> bytes:
    obj: dict[str, Any] = {"v": VERSION, "kind": _KIND_OF[type(message)]}
    obj.update(message.__dict__)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _parse_int(text: str) -> int:
    # refused from its digits: int() of a long literal is slow (and beyond 4,300 digits raises)
    if len(text) > MAX_NUMBER_TEXT:
        raise ProtocolError(f"a number of {len(text)} characters")
    value = int(text)
    if not -MAX_INT <= value <= MAX_INT:
        raise ProtocolError("an integer beyond 2**53")
    return value


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_TEXT:
        raise ProtocolError(f"a number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"a number out of range ({_show(text)})")
    return value


def _parse_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not a number JSON has")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ProtocolError("an object names a key twice")
    return obj


#: Every number checked as it is parsed (a Python call per number: the slow path).
_CHECKED = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float,
                            parse_constant=_parse_constant, object_pairs_hook=_object)
#: Numbers parsed as json does, for frames where `_risky_numbers` finds nothing: every integer
#: then has at most 15 digits (below 2**53) and every float at most 15 digits before its point
#: and an exponent of at most 2 digits (finite).
_PLAIN = json.JSONDecoder(parse_constant=_parse_constant, object_pairs_hook=_object)
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
        raise ProtocolError(f"a string of {len(s)} characters (at most {limits.string})")
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError("a string holds a lone surrogate (not UTF-8)") from None


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
            raise ProtocolError(f"nested deeper than {limits.depth}")
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


def _load(data: bytes, limits: Limits) -> Any:
    if len(data) > limits.frame:
        raise ProtocolError(f"a frame of {len(data)} bytes (at most {limits.frame})")
    try:
        text = bytes(data).decode("utf-8")  # strict: no UTF-16, no encoded surrogates
        decoder = _CHECKED if _risky_numbers(data) else _PLAIN
        obj = decoder.decode(text)
    except UnicodeDecodeError as e:
        raise ProtocolError(f"not UTF-8: {e.reason} at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise ProtocolError(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:  # the parser's own recursion: far deeper than any limit
        raise ProtocolError(f"nested deeper than {limits.depth}") from None
    except ProtocolError:
        raise
    except ValueError as e:  # nothing known, but the edge lets only ProtocolError through
        raise ProtocolError(f"not JSON: {safe_text(str(e), 100)}") from None
    # A string can be too long only in a long frame, and hold a lone surrogate only if escaped
    # (the UTF-8 was strict): only then is every string looked at.
    strings = len(text) > limits.string or (
        "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None)
    _check_tree(obj, limits, strings)
    return obj


def decode(data: bytes, limits: Limits = FROM_CONSOLE) -> Message:
    """The message in `data`, checked against `limits`; raises ProtocolError and nothing else.

    The default limits are the coordinator's (the tighter ones); a console passes
    `FROM_COORDINATOR`."""
    obj = _load(data, limits)
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object")
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise ProtocolError(f"unsupported version {_show(obj.get('v'))}")
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ProtocolError(f"unknown kind {_show(kind)}")
    cls, fields = _KINDS[kind]
    rest = {k: v for k, v in obj.items() if k not in ("v", "kind")}
    if set(rest) != set(fields):
        extra = ", ".join(_show(k) for k in sorted(set(rest) - set(fields))[:5])
        raise ProtocolError(f"{kind}: fields {extra or 'none'} unknown, "
                            f"{sorted(set(fields) - set(rest)) or 'none'} missing")
    for name, types in fields.items():
        value = rest[name]
        if not isinstance(value, types) or (int in types and isinstance(value, bool)):
            raise ProtocolError(f"{kind}: {name} has the wrong type")
        if name == "seq" and value < 0:
            raise ProtocolError(f"{kind}: negative seq")
        if name in ("id", "epoch") and isinstance(value, str) and len(value) > ID_LIMIT:
            raise ProtocolError(f"{kind}: {name} longer than {ID_LIMIT} characters")
    return cls(**rest)


# --- the console's catch-up logic (sans-I/O) ------------------------------------------------


@dataclass(frozen=True)
class NeedSnapshot:
    """Ask the coordinator for a snapshot (and hand it to `Follower.snapshot`)."""

    reason: str


@dataclass(frozen=True)
class Reset:
    """Replace everything shown with `state`, which includes broadcasts up to `seq`."""

    seq: int
    state: dict[str, Any]


@dataclass(frozen=True)
class Apply:
    """Broadcast `seq`, the next one after what is shown."""

    seq: int
    body: Any


Action = NeedSnapshot | Reset | Apply


@dataclass
class Follower:
    """Turns what a console receives into what it must do, so that it shows every broadcast
    exactly once and in order, or a snapshot that covers what it missed.

    Until the first snapshot nothing is applied: a console always starts from a snapshot.
    While a snapshot is awaited, broadcasts are buffered (up to `max_pending`; beyond that the
    oldest go, and the replay after the snapshot will find the gap and ask again).
    """

    max_pending: int = 10_000
    epoch: str | None = None
    seq: int | None = None
    syncing: bool = False
    pending: list[Broadcast] = field(default_factory=list)

    def start(self) -> list[Action]:
        return self._resync("start")

    def reconnected(self) -> list[Action]:
        return self._resync("reconnected")

    def _resync(self, reason: str) -> list[Action]:
        if self.syncing:
            return []
        self.syncing = True
        return [NeedSnapshot(reason)]

    def snapshot_lost(self) -> list[Action]:
        """The snapshot request got no answer (a reconnect ate it): ask again."""
        self.syncing = False
        return self._resync("snapshot request unanswered")

    def broadcast(self, message: Broadcast) -> list[Action]:
        if self.syncing:
            self.pending.append(message)
            del self.pending[: -self.max_pending]
            return []
        if message.epoch != self.epoch:
            self.pending.append(message)
            return self._resync(f"new epoch {message.epoch}")
        assert self.seq is not None
        if message.seq <= self.seq:
            return []  # already covered by a snapshot
        if message.seq == self.seq + 1:
            self.seq = message.seq
            return [Apply(message.seq, message.body)]
        self.pending.append(message)
        return self._resync(f"gap: expected {self.seq + 1}, got {message.seq}")

    def heartbeat(self, message: Heartbeat) -> list[Action]:
        if self.syncing:
            return []
        if message.epoch != self.epoch:
            return self._resync(f"new epoch {message.epoch}")
        assert self.seq is not None
        if message.seq > self.seq:
            return self._resync(f"heartbeat at {message.seq}, shown {self.seq}")
        return []

    def snapshot(self, message: Snapshot) -> list[Action]:
        self.epoch, self.seq, self.syncing = message.epoch, message.seq, False
        actions: list[Action] = [Reset(message.seq, message.state)]
        pending = sorted(
            (b for b in self.pending if b.epoch == message.epoch and b.seq > message.seq),
            key=lambda b: b.seq,
        )
        self.pending = []
        for b in pending:
            actions += self.broadcast(b)
        return actions
