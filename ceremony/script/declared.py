"""What a script declares, indexed for cross-checking, and the checks on the declarations alone.

Built from the rows the tables reader produced, which may be incomplete when keys were wrong: a
collection that did not read at all is treated as unknown (`None`), so its absence is not reported
again as a dangling reference at every step that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ceremony.script.kinds import Report
from ceremony.script.locate import KeyPath
from ceremony.script.tables import Row


def one_of(names: Iterable[str], what: str) -> str:
    """The tail of a message about a name that is not among `names`."""
    listed = sorted(names)
    return f"expected one of {', '.join(listed)}" if listed else f"no {what} is declared"


class Declared:
    """The declarations of one script, and where each one is written."""

    def __init__(self, doc: Row, report: Report, line: Callable[[KeyPath], int]) -> None:
        self.report = report
        self.line = line
        self.ceremony: Row | None = doc.get("ceremony")
        self.roles: dict[str, Row] | None = doc.get("roles")
        separation = doc.get("separation")
        self.may_combine: tuple[tuple[str, str], ...] = (
            separation.get("may_combine") or () if separation else ()
        )
        self.materials: tuple[Row, ...] = doc.get("materials") or ()
        self.signers = self._index(doc.get("signers"), "name")
        self.drives = self._index(doc.get("drives"), "label")
        self.bags = self._index(doc.get("bags"), "label")
        self.passwords = self._index(doc.get("passwords"), "name")
        self.policies = self._index(doc.get("policies"), "name")
        self.quorums = self._index(doc.get("quorums"), "id")
        self.sections: tuple[Row, ...] = doc.get("sections") or ()
        self.steps: tuple[Row, ...] = tuple(
            step for section in self.sections for step in section.get("steps") or ()
        )
        self.previous: tuple[str, ...] | None = (
            self.ceremony.get("previous") if self.ceremony else None
        )

    def _index(self, rows: tuple[Row, ...] | None, key: str) -> dict[str, Row] | None:
        if rows is None:
            return None
        out: dict[str, Row] = {}
        complete = True
        for row in rows:
            name = row.get(key)
            if name is None:  # missing or wrong, and reported: names that do not resolve
                complete = False  # may be meant for it, so they are not reported again
                continue
            if name in out:
                first = self.line((*out[name].path, key))
                self.report((*row.path, key), f"duplicate {key} {name!r} (first at line {first})")
            else:
                out[name] = row
        return out if complete else None

    def acting_role(self, name: str, at: KeyPath) -> Row | None:
        """The role `name` if it is declared and may act; reports otherwise."""
        if self.roles is None:
            return None
        role = self.roles.get(name)
        if role is None:
            self.report(at, f"{name!r} is not a declared role ({one_of(self.roles, 'role')})")
            return None
        if role.get("observer"):
            acting = [r for r, row in self.roles.items() if not row.get("observer")]
            self.report(at, f"{name!r} is an observer role, and observers never act "
                        f"({one_of(acting, 'acting role')})")
            return None
        return role

    def lookup(self, table: dict[str, Row] | None, what: str, name: str, at: KeyPath) -> Any:
        """The declared row `name` in `table`, or None (reported unless `table` itself is)."""
        if table is None:
            return None
        row = table.get(name)
        if row is None:
            self.report(at, f"{name!r} is not a declared {what} ({one_of(table, what)})")
        return row

    def check(self) -> None:
        """The rules that involve declarations only."""
        if self.ceremony and (admin := self.ceremony.get("administrator")):
            self.acting_role(admin, (*self.ceremony.path, "administrator"))
        for name, role in (self.roles or {}).items():
            low, high = role.get("min"), role.get("max")
            if low is not None and high is not None and low > high:
                self.report((*role.path, "min"), f"min {low} is more than max {high} for {name}")
            if role.get("trusted") is False and role.get("observer") is False:
                self.report((*role.path, "trusted"), f"{name} is untrusted but acts: an untrusted "
                            "participant is signed in by the administrator vouching for their ID "
                            "document, which only observers are (expected observer = true, or "
                            "trusted = true for people who sign in with their own key)")
        self._check_separation()
        titles: dict[str, Row] = {}
        for section in self.sections:
            title = section.get("title")
            if title in titles:
                first = self.line((*titles[title].path, "title"))
                self.report((*section.path, "title"),
                            f"duplicate section title {title!r} (first at line {first})")
            elif title is not None:
                titles[title] = section
        pins = [(signer, "host_key") for signer in (self.signers or {}).values()] + \
            [(drive, "serial") for drive in (self.drives or {}).values()]
        for row, name in pins:
            pin = row.get(name)
            if isinstance(pin, str) and pin.startswith("previous.") and self.previous is not None:
                key = pin.removeprefix("previous.")
                if key not in self.previous:
                    self.report((*row.path, name), f"{key!r} is not listed in ceremony.previous "
                                f"({one_of(self.previous, 'previous key')})")
        for quorum in (self.quorums or {}).values():
            role = quorum.get("role")
            if role is None:
                continue
            row = self.acting_role(role, (*quorum.path, "role"))
            m, high = quorum.get("m"), row.get("max") if row else None
            if m is not None and high is not None and m > high:
                self.report((*quorum.path, "m"),
                            f"m = {m} is more than role {role}'s max = {high} (expected 1..{high})")

    def _check_separation(self) -> None:
        if self.roles is None or not self.may_combine:
            return
        seen: set[frozenset[str]] = set()
        base: KeyPath = ("separation", "may_combine")
        for i, pair in enumerate(self.may_combine):
            for j, name in enumerate(pair):
                if name not in self.roles:
                    self.report((*base, i, j), f"{name!r} is not a declared role "
                                f"({one_of(self.roles, 'role')})")
            if frozenset(pair) in seen:
                self.report((*base, i), f"the pair {pair[0]}, {pair[1]} is listed twice")
            seen.add(frozenset(pair))
