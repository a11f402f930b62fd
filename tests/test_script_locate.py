"""Line numbers for key paths, on the TOML shapes a script may take."""

from __future__ import annotations

import tomllib

from ceremony.script.locate import Locator, render_keypath

TEXT = '''\
# a comment with [brackets] and key = value
title = "top"   # a trailing comment
"quoted key" = 1
dotted.inner = 2

[ceremony]
previous = [
  "a",   # a trailing comment
  # a comment inside an array
  "b",
]
text = """
not = a key
[not.a.table]
"""
lit = \'\'\'x = 1\'\'\'
inline = { a = 1, b = { c = [1, 2] } }

[[sections]]
title = "one"

[[sections.steps]]
n = 1

[[sections.steps]]
n = 2
actor = "SA"

[[sections]]
title = "two"

[sections.extra]
k = "v"

[[sections.steps]]
n = 3

[roles."K G"]
title = 'x'
'''


def test_positions() -> None:
    tomllib.loads(TEXT)  # the fixture is valid TOML
    loc = Locator(TEXT)
    assert loc.complete
    expected = {
        ("title",): 2,
        ("quoted key",): 3,
        ("dotted",): 4,
        ("dotted", "inner"): 4,
        ("ceremony",): 6,
        ("ceremony", "previous"): 7,
        ("ceremony", "previous", 0): 8,
        ("ceremony", "previous", 1): 10,
        ("ceremony", "text"): 12,
        ("ceremony", "lit"): 16,
        ("ceremony", "inline"): 17,
        ("ceremony", "inline", "b", "c", 1): 17,
        ("sections",): 19,
        ("sections", 0): 19,
        ("sections", 0, "title"): 20,
        ("sections", 0, "steps", 0): 22,
        ("sections", 0, "steps", 0, "n"): 23,
        ("sections", 0, "steps", 1): 25,
        ("sections", 0, "steps", 1, "actor"): 27,
        ("sections", 1): 29,
        ("sections", 1, "extra", "k"): 33,
        ("sections", 1, "steps", 0): 35,
        ("sections", 1, "steps", 0, "n"): 36,
        ("roles", "K G", "title"): 39,
    }
    assert {path: loc.line(path) for path in expected} == expected


def test_missing_paths_fall_back_to_the_nearest_written_ancestor() -> None:
    loc = Locator(TEXT)
    assert loc.line(("sections", 0, "steps", 1, "text")) == 25  # the step's header
    assert loc.line(("sections", 1, "steps", 0, "actor", 3)) == 35
    assert loc.line(("nothing", "here")) == 1
    assert loc.line(()) == 1


def test_lookalikes_inside_strings_are_not_keys() -> None:
    loc = Locator(TEXT)
    assert loc.line(("ceremony", "not")) == 6  # falls back to [ceremony]: not a key at line 13
    assert loc.line(("not", "a", "table")) == 1


def test_crlf_line_endings() -> None:
    loc = Locator(TEXT.replace("\n", "\r\n"))
    assert loc.complete
    assert loc.line(("sections", 1, "steps", 0, "n")) == 36


def test_render_keypath() -> None:
    assert render_keypath(("sections", 3, "steps", 2, "actor")) == "sections[3].steps[2].actor"
    assert render_keypath(("roles", "K G", "title")) == 'roles."K G".title'
    assert render_keypath(("separation", "may_combine", 0, 1)) == "separation.may_combine[0][1]"
    assert render_keypath(()) == ""
