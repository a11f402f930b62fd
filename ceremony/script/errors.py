"""What is wrong with a script, every problem at once, each with its file, line and key path.

An officer fixing a script before a ceremony should see all of its problems in one run, in file
order, in the `FILE:LINE: key.path: what was expected` form editors and CI logs link to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ceremony.errors import BadInput


@dataclass(frozen=True)
class ScriptError:
    path: str  # the file as given, or "<memory>"
    line: int | None  # 1-based; None when the file could not be read at all
    keypath: str  # "sections[3].steps[2].actor"; "" for a TOML syntax or read error
    message: str  # what was expected
    column: int | None = None  # only for TOML syntax errors, as tomllib reports it

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.keypath}:" if self.keypath else ""
        return f"{where}:{key} {self.message}"


class ScriptErrors(BadInput):
    """A script that does not load: one or more `ScriptError`s, sorted by line."""

    def __init__(self, errors: Iterable[ScriptError]) -> None:
        self.errors: tuple[ScriptError, ...] = tuple(
            sorted(errors, key=lambda e: e.line if e.line is not None else 0)
        )
        if not self.errors:
            raise ValueError("ScriptErrors needs at least one error")
        super().__init__("\n".join(map(str, self.errors)))
