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
strict UTF-8 JSON. It refuses a frame longer than `Limits.frame` bytes (checked before parsing),
and whatever `keyrite.plainjson` refuses (its docstring lists it: strict UTF-8, no key twice,
nesting, strings, integers within +-`MAX_INT` refused from their digits, number literals, NaN,
Infinity, `1e400`); then anything but one JSON object at the top, `id` and `epoch` longer than
`ID_LIMIT`, unknown versions and kinds, missing or extra fields, fields of the wrong type.

A coordinator takes `FROM_CONSOLE` (64 KiB frames, 8 KiB strings); a console takes
`FROM_COORDINATOR` (whole views and journal pages: 64 MiB frames, 16 MiB strings). Both nest at
most 32 deep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from keyrite import plainjson
from keyrite.plainjson import TEXT_LIMIT, safe_text  # here too for the bus's users

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
    "TEXT_LIMIT",
    "decode",
    "encode",
    "safe_text",
]


class ProtocolError(ValueError):
    """A frame that is not a version-1 bus message."""


class Limits(plainjson.Limits):
    """What one frame may hold: `keyrite.plainjson.Limits`, whose `size` is here a frame's."""

    @property
    def frame(self) -> int:  # bytes
        return self.size


#: Integers beyond this are refused: every JSON reader holds up to 2**53 exactly.
MAX_INT = plainjson.MAX_INT
#: What the coordinator takes from a console: a command is a few hundred bytes.
FROM_CONSOLE = Limits(size=64 * 1024, string=8 * 1024, depth=32, max_int=MAX_INT)
#: What a console takes from the coordinator: views, snapshots and journal pages (whose lines
#: hold, for one, the script's whole text). A key named twice is not refused here (the last one
#: counts): a coordinator could mislead its consoles just as well with unique keys, and checking
#: costs a Python call per object of every view, on every console.
FROM_COORDINATOR = Limits(size=64 * 1024 * 1024, string=16 * 1024 * 1024, depth=32,
                          max_int=MAX_INT, unique_keys=False)
#: The longest `id` and `epoch` (a console numbers its requests; an epoch is 16 hex digits).
ID_LIMIT = 128


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


def decode(data: bytes, limits: Limits = FROM_CONSOLE) -> Message:
    """The message in `data`, checked against `limits`; raises ProtocolError and nothing else.

    The default limits are the coordinator's (the tighter ones); a console passes
    `FROM_COORDINATOR`."""
    if len(data) > limits.frame:
        raise ProtocolError(f"a frame of {len(data)} bytes (at most {limits.frame})")
    try:
        obj = plainjson.loads(data, limits)
    except plainjson.NotPlainJSON as e:
        raise ProtocolError(str(e)) from None
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object")
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise ProtocolError(f"unsupported version {_show(obj.get('v'))}")
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ProtocolError(f"unknown kind {_show(kind)}")
    cls, fields = _KINDS[kind]
    # v and kind are there: the fields are exactly right iff they number as many, all there
    if len(obj) != len(fields) + 2 or not all(name in obj for name in fields):
        rest = {k: v for k, v in obj.items() if k not in ("v", "kind")}
        extra = ", ".join(_show(k) for k in sorted(set(rest) - set(fields))[:5])
        raise ProtocolError(f"{kind}: fields {extra or 'none'} unknown, "
                            f"{sorted(set(fields) - set(rest)) or 'none'} missing")
    rest = {name: obj[name] for name in fields}
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
