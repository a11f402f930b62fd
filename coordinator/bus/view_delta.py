"""A view broadcast as what changed since the one before (pure).

The coordinator broadcasts after every change; most change two or three of the view's fields
(the step, a quorum, the clock), so the whole 4.8 KB view each time cost every console the
same parse for a few hundred bytes of news. A broadcast now carries the changed top-level fields
(`view_delta`) and the fields gone (`removed`); the first broadcast and every snapshot carry the
whole view. This rides on the bus's own sequence numbers (coordinator.bus.protocol): a console
applies broadcast N only to what it showed at N-1, and a gap, a new epoch or a lost last
broadcast already make it ask for a snapshot, which is the view as last broadcast.
"""

from __future__ import annotations

from typing import Any

DELTA = "view_delta"
REMOVED = "removed"


class DeltaError(ValueError):
    """A delta with no view to apply it to, or one that is not a delta of a view."""


def delta(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """What to broadcast for `after` when the consoles show `before` (None: nothing yet)."""
    if before is None:
        return after
    return {DELTA: {k: v for k, v in after.items() if k not in before or before[k] != v},
            REMOVED: sorted(k for k in before if k not in after)}


def is_delta(body: Any) -> bool:
    return isinstance(body, dict) and set(body) == {DELTA, REMOVED}


def apply(shown: dict[str, Any] | None, body: Any) -> Any:
    """The view after broadcast `body`, given the view `shown` before it."""
    if not is_delta(body):
        return body  # a whole view
    changed, removed = body[DELTA], body[REMOVED]
    if not isinstance(changed, dict) or not isinstance(removed, list):
        raise DeltaError("a view delta is {view_delta: {...}, removed: [...]}")
    if shown is None:
        raise DeltaError("a view delta came before any whole view")
    out = {k: v for k, v in shown.items() if k not in removed}
    out.update(changed)
    return out
