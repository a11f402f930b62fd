"""`keyrite password verifier`: the line the KGA records before the ceremony so that a typed
device-backup password is checked (keyrite.passwords)."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from pathlib import Path

from keyrite.exits import BadInput
from keyrite.passwords import MAX_PASSWORD, VerifierError, make_verifier

DESCRIPTION = """\
Print a verifier of a pre-generated password (an scrypt hash with its own salt, never the
password): the line to put under [passwords] in the coordinator's config, so that the password
the SA types at the backup step, and the one a second officer types from a sealed copy at the
restore drill, are refused unless they are exactly the pre-generated one.

The password is asked twice on the terminal and never echoed; --password-file FILE reads it from
a file instead (its content less one trailing newline), for scripts. keyrite never writes the
password anywhere."""

EPILOG = """\
example:
  keyrite password verifier --name device-backup >> coordinator.toml   (under [passwords])
exit codes: 0 printed; 2 the two entries differ, an empty or over-long password, bad arguments."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "password", help="record a verifier of a pre-generated password (never the password)",
        description="Pre-generated passwords.")
    sub = parser.add_subparsers(dest="password_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("verifier", help="print a verifier line for the coordinator's config",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="device-backup",
                   help="the password's name in the script (hsm.backup's password; "
                   "default: device-backup)")
    p.add_argument("--password-file", metavar="FILE", type=Path,
                   help="read the password from FILE instead of the terminal")
    p.add_argument("--json", action="store_true", help='print {"name": ..., "verifier": ...}')
    p.set_defaults(run=run)


def _read(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        try:
            text = args.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"{args.password_file}: cannot read: {e}") from None
        return text.removesuffix("\n")
    if not sys.stdin.isatty():
        raise BadInput("the password is read from a terminal (or give --password-file FILE)")
    first = getpass.getpass(f"{args.name} password: ")
    if getpass.getpass("Confirm password: ") != first:
        raise BadInput("the two entries differ: nothing was printed")
    return first


def run(args: argparse.Namespace) -> int:
    if not _NAME.fullmatch(args.name):
        raise BadInput(f"--name {args.name!r}: a password name is letters, digits, '.', '_' "
                       "and '-', at most 64")
    password = _read(args)
    if len(password) > MAX_PASSWORD:
        raise BadInput(f"the password is longer than {MAX_PASSWORD} characters")
    try:
        line = str(make_verifier(password))
    except VerifierError as e:
        raise BadInput(str(e)) from None
    if args.json:
        print(json.dumps({"name": args.name, "verifier": line}))
    else:
        print(f'{json.dumps(args.name)} = "{line}"')
    return 0
