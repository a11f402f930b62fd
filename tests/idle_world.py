"""What an in-process live coordinator (`coordinator.live.daemon.Live`) is given when a test
sends it commands but never lets it work: hands that refuse to be used, and a clock the test
sets."""

from __future__ import annotations


class NoWork:
    """The coordinator's hands, unused: no password typed yet, folder drives (no udev, no
    `seen`), and any work asked of them fails the test."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.drives = object()

    def now(self) -> float:
        raise AssertionError("the world was asked to work")


class SetClock:
    """A clock that says `now` until the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
