"""A view broadcast as what changed since the one before (pure).

The coordinator broadcasts after every change; most change two or three of the view's fields
(the step, a quorum, the clock) and add a line or two to the journal tail, so the whole 5 KB view
each time cost every console the same parse for a few hundred bytes of news. A broadcast now
carries the changed top-level fields (`view_delta`), the fields gone (`removed`) and, for a list
that only moved on (the journal tail: lines dropped from the front, new ones appended), just
that (`tails`: field -> [how many dropped, the items appended]); the first broadcast and every
snapshot carry the whole view. This rides on the bus's own sequence numbers
(coordinator.bus.protocol): a console applies broadcast N only to what it showed at N-1, and a
gap, a new epoch or a lost last broadcast already make it ask for a snapshot, which is the view as
last broadcast.
"""

from __future__ import annotations

from typing import Any

DELTA = "view_delta"
REMOVED = "removed"
TAILS = "tails"


class DeltaError(ValueError):
    """A delta with no view to apply it to, or one that is not a delta of a view."""


def delta(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """What to broadcast for `after` when the consoles show `before` (None: nothing yet).
    A field of `after` that is the very object `before` held is unchanged without a look inside
    (an incremental view reuses what did not change: ceremony.view.WireForm)."""
    if before is None:
        return after
    changed: dict[str, Any] = {}
    tails: dict[str, Any] = {}
    for k, v in after.items():
        if k in before:
            old = before[k]
            if old is v or old == v:
                continue
            if type(v) is list and type(old) is list:
                tail = _tail(old, v)
                if tail is not None:
                    tails[k] = tail
                    continue
        changed[k] = v
    body = {DELTA: changed, REMOVED: sorted(k for k in before if k not in after)}
    if tails:
        body[TAILS] = tails
    return body


def _tail(old: list[Any], new: list[Any]) -> list[Any] | None:
    """[dropped, appended] when `new` is `old` without its first `dropped` items and with
    `appended` after them (a journal tail moving on), keeping at least one item; else None."""
    if not old or not new:
        return None
    try:
        dropped = old.index(new[0])
    except ValueError:
        return None
    kept = len(old) - dropped
    if old[dropped:] != new[:kept]:
        return None
    return [dropped, new[kept:]]


def is_delta(body: Any) -> bool:
    return isinstance(body, dict) and (set(body) == {DELTA, REMOVED}
                                       or set(body) == {DELTA, REMOVED, TAILS})


def apply(shown: dict[str, Any] | None, body: Any) -> Any:
    """The view after broadcast `body`, given the view `shown` before it."""
    if not is_delta(body):
        return body  # a whole view
    changed, removed, tails = body[DELTA], body[REMOVED], body.get(TAILS, {})
    if not isinstance(changed, dict) or not isinstance(removed, list) \
            or not isinstance(tails, dict):
        raise DeltaError("a view delta is {view_delta: {...}, removed: [...], tails: {...}}")
    if shown is None:
        raise DeltaError("a view delta came before any whole view")
    out = {k: v for k, v in shown.items() if k not in removed} if removed else dict(shown)
    out.update(changed)
    for k, tail in tails.items():
        if not (isinstance(tail, list) and len(tail) == 2 and type(tail[0]) is int
                and isinstance(tail[1], list)):
            raise DeltaError(f"a view delta's tail of {k!r} is [dropped, [appended...]]")
        dropped, appended = tail
        current = out.get(k)
        if not isinstance(current, list) or not 0 <= dropped <= len(current):
            raise DeltaError(f"a view delta's tail of {k!r} does not fit the view shown")
        out[k] = current[dropped:] + appended
    return out
