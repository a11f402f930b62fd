"""How many refused requests a stranger may have recorded in a window of time.

Every refusal is journaled, for the audit; but a client sending thousands of bad requests a
second would make the program spend itself on fsyncs and fill the disk while the others wait.
Past the budget a client's requests are refused unread until its window ends; then one record
says how many were. The coordinator keeps one budget for all consoles (by seat); the signer
shim one per SSH session. Pure: the caller passes the time.
"""

from __future__ import annotations


class RefusalBudget:
    """`limit` refusals per `window` seconds for each key (a console, a session)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._spent: dict[str, tuple[float, int]] = {}  # key -> (window start, refusals)
        self.unread: dict[str, int] = {}  # key -> requests refused unread in this window

    def exhausted(self, key: str, now: float) -> bool:
        start, n = self._spent.get(key, (now, 0))
        return now - start < self.window and n >= self.limit

    def spend(self, key: str, now: float) -> None:
        """One refusal recorded for `key` (a new window begins if the last one has ended)."""
        start, n = self._spent.get(key, (now, 0))
        if now - start >= self.window:
            start, n = now, 0
        self._spent[key] = (start, n + 1)

    def refuse_unread(self, key: str) -> None:
        """One request of `key`'s refused unread (`exhausted`): counted, not recorded."""
        self.unread[key] = self.unread.get(key, 0) + 1

    def closed(self, now: float) -> dict[str, int]:
        """Keys whose window has ended with requests refused unread: how many each (taken)."""
        out = {k: n for k, n in self.unread.items()
               if now - self._spent.get(k, (now - self.window, 0))[0] >= self.window}
        for k in out:
            del self.unread[k]
        return out

    def take_unread(self, key: str) -> int:
        """`key`'s requests refused unread so far, its window ended or not (it has gone)."""
        return self.unread.pop(key, 0)
