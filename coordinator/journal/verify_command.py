"""`keyrite verify JOURNAL`: check a journal alone and name the first entry that does not hold."""

from __future__ import annotations

import argparse
import json
import sys

from coordinator.journal.verify import verify_journal
from keyrite import exits

DESCRIPTION = """\
Check a ceremony journal on its own: every line is an entry in its place, every entry links to
the one before it by SHA-256, and every checkpoint is a C2SP signed note over the RFC 6962 root
of the entries before it, signed by a trusted key. Prints a one-line summary, or names the first
entry that does not hold (its seq and line number) and what is wrong with it.

Without --key, the key the journal's own genesis entry announces is trusted: that shows the
journal is intact, not who wrote it. Give the coordinator's verifier key (as printed when the
ceremony was set up) to check that too: the genesis entry must then announce that key, and at
least one checkpoint signed by it must be there. A journal with no checkpoint by the given key
(one not yet signed, or one whose checkpoints were removed and its links recomputed) fails
unless --allow-unsigned is given, and the summary then says UNSIGNED. The summary always says
how many entries no checkpoint covers.

A torn last line (the writer stopped mid-append) is reported and fails verification; the
coordinator cuts it when it next opens the journal.
"""

EPILOG = """\
exit codes: 0 the journal verifies; 1 an entry does not hold (or the last line is torn, or
no checkpoint is signed by the given key); 2 the file is missing or unreadable, or a --key is
malformed."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check a ceremony journal and its signed checkpoints",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("journal", metavar="JOURNAL", help="the journal file (JSON lines)")
    parser.add_argument(
        "--key",
        dest="keys",
        metavar="VKEY",
        action="append",
        help="a trusted verifier key, name+hexid+base64 (repeatable); "
        "default: the key the genesis entry announces",
    )
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="with --key: accept a journal that has no checkpoint signed by the key yet (the "
        "summary says UNSIGNED); without this it fails",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = verify_journal(args.journal, args.keys, allow_unsigned=args.allow_unsigned)
    except (OSError, ValueError) as e:
        if isinstance(e, OSError):
            reason = f"cannot read {args.journal}: {e.strerror or e}"
        else:
            reason = str(e)
        if not args.json:
            raise exits.BadInput(reason) from None
        print(json.dumps({"path": args.journal, "ok": False, "error": reason}))
        return exits.BAD_INPUT
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    elif report.ok:
        print(report.summary())
    else:
        print(report.summary(), file=sys.stderr)
    return exits.OK if report.ok else exits.FAILED
