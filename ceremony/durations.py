"""ISO 8601 durations as ceremony scripts and key policies use them.

OpenDNSSEC counts a month as 31 days and a year as 365, and so do we: a generation window such as
`P14M` must give the same key counts here as on the signer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: ASCII digits only (ISO 8601 is ASCII; `\d` would take `١٤` or `１０` as 14 or 10), at most
#: 10 per field (no window needs more, and int() refuses thousands), matched whole (`fullmatch`:
#: `$` would let a final newline through).
_N = "[0-9]{1,10}"
_DURATION = re.compile(
    rf"P(?!$)(?:(?P<y>{_N})Y)?(?:(?P<mo>{_N})M)?(?:(?P<w>{_N})W)?(?:(?P<d>{_N})D)?"
    rf"(?:T(?=[0-9])(?:(?P<h>{_N})H)?(?:(?P<mi>{_N})M)?(?:(?P<s>{_N})S)?)?"
)

DAY = 86400
MONTH = 31 * DAY
YEAR = 365 * DAY


class DurationError(ValueError):
    """A text that is not an ISO 8601 duration of the form PnYnMnWnDTnHnMnS."""


@dataclass(frozen=True, order=True)
class Duration:
    """A duration in whole seconds, keeping the text it was written as."""

    seconds: int
    text: str

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str) -> Duration:
    m = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise DurationError(
            f"{text!r} is not an ISO 8601 duration (expected e.g. PT15M, P14M, P1Y)"
        )
    g = {k: int(v) if v else 0 for k, v in m.groupdict().items()}
    seconds = (
        g["y"] * YEAR + g["mo"] * MONTH + g["w"] * 7 * DAY + g["d"] * DAY
        + g["h"] * 3600 + g["mi"] * 60 + g["s"]
    )
    if seconds == 0:
        raise DurationError(f"{text!r} is a zero duration")
    return Duration(seconds, text)
