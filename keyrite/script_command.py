"""`keyrite script check [FILE] [--json]`: the loader's verdict on a script, for people and CI.

A script that loads prints one summary line (what a reviewer compares with the printed copy:
id, version, sizes, the mix of actions); one that does not prints every error in
`FILE:LINE: key.path: message` form and exits 2, like the rest of keyrite's bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from ceremony.script.errors import ScriptErrors
from ceremony.script.load import bundled_script_path, load_script
from ceremony.script.model import Script
from keyrite import exits


def register(subparsers: Any) -> None:
    script = subparsers.add_parser("script", help="work with ceremony scripts")
    sub = script.add_subparsers(dest="script_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser(
        "check",
        help="check a ceremony script strictly and summarise it",
        description="Load a ceremony script with every check the ceremony relies on. Exit 0 "
        "and one summary line if it loads; exit 2 and every error (FILE:LINE: key.path: what "
        "was expected) on stderr if not.",
    )
    check.add_argument("file", nargs="?", metavar="FILE",
                       help="the script (default: the bundled second-key-generation script)")
    check.add_argument("--json", action="store_true",
                       help="print the summary (or the errors) as one JSON object on stdout")
    check.set_defaults(run=run_check)


def summary(script: Script) -> dict[str, Any]:
    """Counts a reviewer checks against the printed script, and the hash approvals bind to."""
    actions = Counter(step.action for step in script.steps)
    return {
        "id": script.ceremony.id,
        "version": script.ceremony.version,
        "sections": len(script.sections),
        "steps": len(script.steps),
        "roles": len(script.roles),
        "actions": dict(sorted(actions.items(), key=lambda kv: (-kv[1], kv[0]))),
        "sha256": script.sha256,
    }


def summary_line(script: Script) -> str:
    """`ID vVERSION: S sections, N steps, R roles, actions: A n, ...`, most used action first."""
    s = summary(script)
    actions = ", ".join(f"{name} {count}" for name, count in s["actions"].items())
    return (f"{s['id']} v{s['version']}: {s['sections']} sections, {s['steps']} steps, "
            f"{s['roles']} roles, actions: {actions}")


def run_check(args: argparse.Namespace) -> int:
    path = args.file if args.file is not None else bundled_script_path()
    try:
        script = load_script(path)
    except ScriptErrors as e:
        for error in e.errors:
            print(error, file=sys.stderr)
        count = len(e.errors)
        print(f"keyrite script check: {count} error{'s' if count > 1 else ''}", file=sys.stderr)
        if args.json:
            print(json.dumps({"errors": [
                {"path": x.path, "line": x.line, "column": x.column, "keypath": x.keypath,
                 "message": x.message} for x in e.errors
            ]}))
        return exits.BAD_INPUT
    print(json.dumps(summary(script)) if args.json else summary_line(script))
    return exits.OK
