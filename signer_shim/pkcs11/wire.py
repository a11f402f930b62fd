"""The worker's wire format: one JSON object per line over the worker's stdin and stdout.

    request   {"id": 7, "method": "generate", "params": {...}}
    progress  {"id": 7, "progress": {"done": 2, "total": 6, "what": "generated 2 of 6 keys"}}
    result    {"id": 7, "result": ...}
    error     {"id": 7, "error": {"type": "PinIncorrect", "message": "..."}}

Lines and not a binary framing because the same stream will later run over SSH, where a line
protocol is easy to read in a log and to drive by hand. Bytes travel as base64 strings.
"""

from __future__ import annotations

import json
from typing import Any


class WireError(ValueError):
    """A line that is not a message of this protocol."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as e:
        raise WireError(f"not JSON: {line[:80]!r}") from e
    if not isinstance(message, dict) or "id" not in message:
        raise WireError(f"not a message: {line[:80]!r}")
    return message
