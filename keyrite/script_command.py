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
from pathlib import Path
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
    check.add_argument("--previous", metavar="JOURNAL", type=Path,
                       help="also check the script against the ceremony it continues: that "
                       "journal (verified with --previous-key) must hold every fact the script's "
                       "[ceremony] previous names and every bag an unseal opens that no step of "
                       "the script seals")
    check.add_argument("--previous-key", metavar="VKEY",
                       help="the previous journal's checkpoint key (with --previous)")
    check.add_argument("--signer", metavar="SIGNER_TOML", type=Path,
                       help="also check the script against the signer that will run it, from "
                       "its config alone (no token is touched): a KEK or KEK shares need "
                       "[backup] method = \"wrap\", a wrap signer's restore and drill need "
                       "shares, not a password; keys the token profile cannot generate and "
                       "backups it cannot make are refused; OpenDNSSEC takes no KEK")
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
    if args.previous is not None or args.previous_key is not None:
        problems = against_previous(script, args.previous, args.previous_key)
        if problems:
            for p in problems:
                print(f"{path}: {p}", file=sys.stderr)
            if args.json:
                print(json.dumps({"errors": [{"path": str(path), "line": None, "column": None,
                                              "keypath": None, "message": p}
                                             for p in problems]}))
            return exits.BAD_INPUT
    signer = None
    if args.signer is not None:
        problems, signer = against_signer(script, args.signer)
        if problems:
            for p in problems:
                print(f"{path}: {p}", file=sys.stderr)
            print(f"keyrite script check: {args.signer} cannot run {len(problems)} step"
                  f"{'s' if len(problems) > 1 else ''} of this script", file=sys.stderr)
            if args.json:
                print(json.dumps({"errors": [{"path": str(path), "line": None, "column": None,
                                              "keypath": None, "message": p}
                                             for p in problems]}))
            return exits.BAD_INPUT
    if args.json:
        print(json.dumps({**summary(script), **({"signer": signer} if signer else {})}))
    else:
        print(summary_line(script) + (f"; signer: {signer}" if signer else ""))
    return exits.OK


def against_signer(script: Script, config_path: Path) -> tuple[list[str], str]:
    """What the signer `config_path` describes cannot do of `script`, and what that judgement
    rested on (signer_shim.script_fit). BadInput (exit 2) for a config that does not read."""
    from ceremony.errors import BadInput
    from signer_shim import script_fit
    from signer_shim.backends import load_signer_config
    from signer_shim.config import ConfigError

    try:
        config = load_signer_config(config_path)
    except ConfigError as e:
        raise BadInput(str(e)) from None
    return script_fit.problems(script, config), script_fit.summary(config)


def against_previous(script: Script, journal: Path | None, key: str | None) -> list[str]:
    """What the ceremony `journal` records does not give `script`: each fact of its `previous`
    list it lacks, each bag an unseal opens that it did not leave held. BadInput (exit 2) for a
    journal that does not verify."""
    from ceremony.errors import BadInput
    from coordinator.record_command import load_previous_journal  # reads and verifies files

    if journal is None:
        raise BadInput("--previous-key goes with --previous JOURNAL")
    earlier = load_previous_journal(journal, key)
    problems = [f"[ceremony] previous names {k}, which {journal} does not record"
                for k in earlier.facts.lacks(script.ceremony.previous)]
    held = {h.bag for h in earlier.facts.custody}
    for bag in script.earlier_bags:
        if bag not in held:
            n = next(s.n for s in script.steps if s.action == "unseal" and s.bag == bag)
            problems.append(f"step {n} unseals bag {bag}, which {journal} did not leave held "
                            f"(held: {', '.join(sorted(held)) or 'no bag'})")
    return problems
