"""Line numbers for key paths in a TOML text.

tomllib returns plain dicts and lists with no positions, and an error that says only "unknown key"
makes an officer search a 2000-line file. This scanner reads the same text again, already known to
be valid TOML, and notes the line where each table header, key and array element starts, with
array-of-tables indices counted the way tomllib builds its lists (`sections[3].steps[2]`). It
understands just enough TOML to skip strings, comments and nested values.
"""

from __future__ import annotations

import bisect
import json
import re
import tomllib

#: A path into the parsed document: table keys and array indices, e.g. ("sections", 3, "title").
KeyPath = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def render_keypath(path: KeyPath) -> str:
    """`sections[3].steps[2].actor`; indices count from 0 as in the parsed document."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            out += f".{key}" if out else key
    return out


class Locator:
    """Maps key paths to the 1-based line where they are written.

    A path that is not written (a missing key) maps to its nearest written ancestor, typically the
    header of the table that lacks it; a path with no written ancestor maps to line 1.
    """

    def __init__(self, text: str) -> None:
        self._s = text
        self._i = 0
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self._lines: dict[KeyPath, int] = {}
        self._aot: dict[KeyPath, int] = {}  # array-of-tables path -> tables seen so far
        #: False if the scanner met TOML it does not understand (a bug: the tests look for it);
        #: lines found before that point still serve, the rest fall back to their ancestors.
        self.complete = True
        try:
            self._scan()
        except (ValueError, IndexError):
            self.complete = False

    def line(self, path: KeyPath) -> int:
        path = tuple(path)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return 1

    # -- scanning ---------------------------------------------------------------------------------

    def _lineno(self, offset: int) -> int:
        return bisect.bisect_left(self._newlines, offset) + 1

    def _note(self, path: KeyPath, offset: int) -> None:
        self._lines.setdefault(path, self._lineno(offset))

    def _peek(self, n: int = 1) -> str:
        return self._s[self._i : self._i + n]

    def _skip(self, newlines: bool) -> None:
        """Skip spaces and comments, and line breaks too if `newlines`."""
        s = self._s
        while self._i < len(s):
            c = s[self._i]
            if c in " \t" or (newlines and c in "\r\n"):
                self._i += 1
            elif c == "#":
                while self._i < len(s) and s[self._i] != "\n":
                    self._i += 1
            else:
                return

    def _scan(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip(newlines=True)
            if self._i >= len(self._s):
                return
            start = self._i
            if self._peek(2) == "[[":
                self._i += 2
                keys = self._keys("]")
                self._i += 2
                parent = self._resolve(keys[:-1], start)
                aot = (*parent, keys[-1])
                index = self._aot.get(aot, 0)
                self._aot[aot] = index + 1
                table = (*aot, index)
                self._note(aot, start)
                self._note(table, start)
            elif self._peek() == "[":
                self._i += 1
                keys = self._keys("]")
                self._i += 1
                table = self._resolve(keys, start)
                self._note(table, start)
            else:
                self._pair(table)

    def _resolve(self, keys: list[str], start: int) -> KeyPath:
        """A header's keys as a path, each array of tables standing for its latest table."""
        path: KeyPath = ()
        for key in keys:
            path = (*path, key)
            if path in self._aot:
                path = (*path, self._aot[path] - 1)
            self._note(path, start)
        return path

    def _pair(self, table: KeyPath) -> None:
        start = self._i
        keys = self._keys("=")
        self._i += 1
        for depth in range(1, len(keys) + 1):  # a dotted key also writes its parent tables
            self._note((*table, *keys[:depth]), start)
        self._value((*table, *keys))

    def _keys(self, end: str) -> list[str]:
        """A dotted key up to `end` (left unconsumed), as a list of plain key names."""
        keys: list[str] = []
        while True:
            self._skip(newlines=False)
            c = self._peek()
            if c in ('"', "'"):
                start = self._i
                self._string()
                keys.append(tomllib.loads("k = " + self._s[start : self._i])["k"])
            else:
                m = _BARE.match(self._s, self._i)
                if not m:
                    raise ValueError(f"unexpected {c!r} at line {self._lineno(self._i)}")
                keys.append(m.group())
                self._i = m.end()
            self._skip(newlines=False)
            if self._peek() == ".":
                self._i += 1
                continue
            if self._peek() != end[0]:
                raise ValueError(f"expected {end!r} at line {self._lineno(self._i)}")
            return keys

    def _value(self, path: KeyPath) -> None:
        self._skip(newlines=False)
        c = self._peek()
        if c in ('"', "'"):
            self._string()
        elif c == "[":
            self._i += 1
            index = 0
            while True:
                self._skip(newlines=True)
                if self._peek() == "]":
                    self._i += 1
                    return
                self._note((*path, index), self._i)
                self._value((*path, index))
                index += 1
                self._skip(newlines=True)
                if self._peek() == ",":
                    self._i += 1
        elif c == "{":
            self._i += 1
            while True:
                self._skip(newlines=False)
                if self._peek() == "}":
                    self._i += 1
                    return
                self._pair(path)
                self._skip(newlines=False)
                if self._peek() == ",":
                    self._i += 1
        else:  # number, boolean, date or time: runs to a delimiter
            s = self._s
            while self._i < len(s) and s[self._i] not in ",]}#\r\n":
                self._i += 1

    def _string(self) -> None:
        s = self._s
        quote = s[self._i]
        if s.startswith(quote * 3, self._i):
            self._i += 3
            while not s.startswith(quote * 3, self._i):
                self._i += 2 if quote == '"' and s[self._i] == "\\" else 1
            self._i += 3
            while self._peek() == quote:  # up to two quotes may end the content
                self._i += 1
            return
        self._i += 1
        while s[self._i] != quote:
            self._i += 2 if quote == '"' and s[self._i] == "\\" else 1
        self._i += 1
