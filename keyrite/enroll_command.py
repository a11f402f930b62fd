"""`keyrite enroll`: make an officer's keys, or check that a passphrase still opens them."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path

from keyrite import exits
from keyrite.enroll import (
    CONSOLE_PUBLIC,
    CONSOLE_SECRET,
    MIN_PASSPHRASE,
    OFFICER,
    SIGNING_KEY,
    EnrollError,
    check_identity,
    check_passphrase,
    check_target,
    default_person,
    make_officer,
    read_entry,
    read_passphrase_file,
    unlock,
)

DESCRIPTION = f"""\
Make one officer seat's keys in DIR (created mode 0700 if missing):

  {SIGNING_KEY:<20} Ed25519 signing key for approvals, encrypted with the passphrase (0600)
  {CONSOLE_SECRET:<20} the console's CURVE key pair, pyzmq/czmq certificate format (0600)
  {CONSOLE_PUBLIC:<20} the console's CURVE public key, same format
  {OFFICER:<20} the public parts as a roster entry

The passphrase (at least {MIN_PASSPHRASE} characters) is asked twice on the terminal and never
echoed; give --passphrase-file FILE instead when no person is typing (its content less one
trailing newline). Reading a passphrase from a pipe is refused. Nothing is ever overwritten: a
DIR that already holds an officer's keys is refused.

Prints the roster entry on stdout ([[officers]] TOML, or JSON with --json) for the ceremony
administrator; the new key console_key is the console's CURVE public key (Z85).

With --check DIR, asks for the passphrase once and checks that it opens the signing key and that
every file belongs to the entry; this is what a console does before it signs."""

EPILOG = """\
exit codes: 0 keys made (or --check passed); 2 bad arguments, a DIR that already holds keys,
passphrases that do not match, a wrong passphrase."""

#: How many times a mismatched confirmation is asked again before giving up.
ATTEMPTS = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "enroll",
        help="make an officer's signing and console keys; print their roster entry",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--role", help="the seat's role, e.g. KSO")
    parser.add_argument("--name", help="the officer's name as the transcript shows it")
    parser.add_argument("--out", metavar="DIR", type=Path, help="where to write the keys")
    parser.add_argument("--seat", help="the seat, e.g. KSO1 (default: the role, e.g. KGA)")
    parser.add_argument(
        "--person",
        help="a stable id of the person, the same for all their seats "
        "(default: from the name, 'Officer C' -> officer-c)",
    )
    parser.add_argument("--organisation", default="", help="the officer's organisation")
    parser.add_argument(
        "--passphrase-file", metavar="FILE", type=Path,
        help="read the passphrase from FILE instead of the terminal (scripts, tests)",
    )
    parser.add_argument("--json", action="store_true", help="print the entry as JSON")
    parser.add_argument(
        "--check", metavar="DIR", type=Path, help="unlock an enrolment in DIR and check it",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ask: Callable[[str], str] | None = None) -> int:
    ask = ask or getpass.getpass  # looked up now, so a test can put a fake in its place
    if args.check is not None:
        given = [f"--{o}" for o in ("role", "name", "out", "seat", "person")
                 if getattr(args, o) is not None]
        if given or args.organisation:
            raise EnrollError(f"--check takes no {', '.join(given) or '--organisation'}")
        return _check(args, ask)
    missing = [f"--{o}" for o in ("role", "name", "out") if getattr(args, o) is None]
    if missing:
        raise EnrollError(f"missing {', '.join(missing)} (or give --check DIR)")
    seat = args.seat or args.role
    person = args.person if args.person is not None else default_person(args.name)
    check_identity(seat=seat, role=args.role, person=person, name=args.name)
    check_target(args.out)
    if args.passphrase_file is not None:
        passphrase = read_passphrase_file(args.passphrase_file)
        check_passphrase(passphrase)
    else:
        passphrase = ask_new_passphrase(ask)
    entry = make_officer(
        args.out, role=args.role, name=args.name, passphrase=passphrase, seat=seat,
        person=person, organisation=args.organisation,
    )
    print(entry.to_json() if args.json else entry.to_toml(), end="\n" if args.json else "")
    print(f"enrolled {entry.seat} ({entry.name}) in {args.out}: give the entry above to the "
          "ceremony administrator; keep the passphrase and the directory safe", file=sys.stderr)
    return exits.OK


def _check(args: argparse.Namespace, ask: Callable[[str], str]) -> int:
    read_entry(args.check)  # a directory that is no enrolment is named before any prompt
    if args.passphrase_file is not None:
        passphrase = read_passphrase_file(args.passphrase_file)
    else:
        _require_terminal()
        passphrase = _ask(ask, f"Passphrase for {args.check}: ").encode()
    unlocked = unlock(args.check, passphrase)
    if args.json:
        print(json.dumps({"ok": True, **unlocked.entry.to_dict()}, indent=2))
    else:
        e = unlocked.entry
        print(f"ok: {args.check} opens: seat {e.seat} ({e.role}), {e.name}, "
              f"signing key {e.signing_key}, console key {e.console_key}")
    return exits.OK


def ask_new_passphrase(ask: Callable[[str], str], attempts: int = ATTEMPTS) -> bytes:
    """Ask for a new passphrase and its confirmation; ask again on a mismatch or a short one."""
    _require_terminal()
    for _ in range(attempts):
        first = _ask(ask, f"New passphrase (at least {MIN_PASSPHRASE} characters): ")
        if len(first.encode()) < MIN_PASSPHRASE:
            print(f"too short: at least {MIN_PASSPHRASE} characters; try again", file=sys.stderr)
            continue
        if _ask(ask, "The same passphrase again: ") == first:
            return first.encode()
        print("the two passphrases differ; try again", file=sys.stderr)
    raise EnrollError(f"no matching passphrase of at least {MIN_PASSPHRASE} characters "
                      f"after {attempts} attempts; nothing was written")


def _ask(ask: Callable[[str], str], prompt: str) -> str:
    try:
        return ask(prompt)
    except EOFError:
        raise EnrollError("no passphrase given (end of input); nothing was written") from None


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _require_terminal() -> None:
    """getpass falls back to reading an echoed stdin; a passphrase must come from a person."""
    if not stdin_is_terminal():
        raise EnrollError("standard input is not a terminal: type the passphrase at a terminal, "
                          "or give --passphrase-file FILE")
