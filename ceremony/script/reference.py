"""The tables of docs/script-format.md, rendered from the schema the loader reads with.

The document holds each rendered table between `<!-- generated: NAME -->` and
`<!-- end generated -->`; a test fails when they differ from what this module renders, and
`python -m ceremony.script.reference --write docs/script-format.md` brings them up to date.
Prose around the tables is written by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ceremony.script.formats import FORMATS
from ceremony.script.model import ACTIONS, OBSERVATIONS, PARAMETERS
from ceremony.script.schema import (
    OBSERVATION_FORMATS,
    OBSERVATION_PARAMETERS,
    PARAMETER_KEYS,
    TABLES,
    YIELDS,
)
from ceremony.script.tables import Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _keys(table: Table) -> str:
    return _markdown(
        ("key", "type", "required", "default", "meaning"),
        (
            (f"`{k.name}`", _cell(k.kind.doc), "yes" if k.required else "no",
             k.default_doc or ("" if k.required else "none"), _cell(k.meaning))
            for k in table.keys if not k.parameter
        ),
    )


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _parameters() -> str:
    return _markdown(
        ("parameter", "type", "meaning"),
        ((f"`{k.name}`", _cell(k.kind.doc), _cell(k.meaning)) for k in PARAMETER_KEYS),
    )


def _yields(action: str) -> str:
    if action == "record":
        return "its `format`"
    return f"`{YIELDS[action]}`" if action in YIELDS else ""


def _actions() -> str:
    return _markdown(
        ("action", "required", "optional", "yields", "what the machine does"),
        (
            (f"`{a}`", _names(req), _names(opt), _yields(a),
             _cell(ACTIONS[a]))
            for a, (req, opt) in PARAMETERS.items()
        ),
    )


def _observations() -> str:
    return _markdown(
        ("observe", "compared as", "also required", "also optional", "what it is"),
        (
            (f"`{o}`", f"`{OBSERVATION_FORMATS[o]}`", _names(OBSERVATION_PARAMETERS[o][0]),
             _names(OBSERVATION_PARAMETERS[o][1]), _cell(OBSERVATIONS[o]))
            for o in OBSERVATIONS
        ),
    )


def _formats() -> str:
    return _markdown(("format", "accepts"), ((f"`{f}`", _cell(d)) for f, d in FORMATS.items()))


#: Every generated block, by the name its markers carry.
BLOCKS: dict[str, Callable[[], str]] = {
    **{f"keys {t.header}": (lambda t=t: _keys(t)) for t in TABLES},
    "parameters": _parameters,
    "actions": _actions,
    "observations": _observations,
    "formats": _formats,
}

_BLOCK = re.compile(r"(<!-- generated: (?P<name>.+?) -->\n)(?P<body>.*?)(<!-- end generated -->)",
                    re.DOTALL)


def render(document: str) -> str:
    """`document` with every generated block replaced by what the schema says now."""

    def fill(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in BLOCKS:
            raise KeyError(f"unknown generated block {name!r}")
        return f"{m[1]}{BLOCKS[name]()}\n{m[4]}"

    return _BLOCK.sub(fill, document)


def block_names(document: str) -> list[str]:
    return [m["name"] for m in _BLOCK.finditer(document)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check or rewrite the generated tables of the "
                                     "script format reference.")
    parser.add_argument("doc", type=Path)
    parser.add_argument("--write", action="store_true", help="rewrite the file in place")
    args = parser.parse_args(argv)
    text = args.doc.read_text(encoding="utf-8")
    new = render(text)
    if args.write:
        args.doc.write_text(new, encoding="utf-8")
        return 0
    if new != text:
        print(f"{args.doc}: generated tables are out of date (run with --write)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
