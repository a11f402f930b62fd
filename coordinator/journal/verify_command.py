"""`keyrite verify JOURNAL`: check a journal alone and name the first entry that does not hold."""

from __future__ import annotations

import argparse
import json
import sys

from coordinator.journal.verify import parse_cosigned_by, read_checkpoint_file, verify_journal
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

--checkpoint FILE also checks the journal against a checkpoint kept apart from it (the signed
note as printed: origin, tree size, root hash, a blank line, signature lines). Its signature
must verify with a trusted key (--key, or the genesis's key); signatures by other keys, such as
witnesses' cosignatures, are ignored. The journal must hold at least as many entries as the
checkpoint covers, and the RFC 6962 root of those entries must be the checkpoint's: a journal
cut short says where it stops, one that forked says between which entries it departs (bounded by
its own checkpoints) and whether it holds a checkpoint of the same size with another root.
Entries after those the checkpoint covers are allowed, and counted as not covered by it.

--cosigned-by N (or --cosigned-by KSO,SA) also checks that the last checkpoint anyone cosigned
is cosigned by at least N people (one person holding two seats counts once), or by someone of
each role named: the cosignature records after it (C2SP cosignature/v1 under the key name
<origin>/<seat>) must verify against the seat's key in the roster the genesis entry holds. The
entries after that checkpoint, covered by the coordinator's checkpoints alone, are counted and
said.
"""

EPILOG = """\
exit codes: 0 the journal verifies (and the --checkpoint holds); 1 an entry does not hold (or
the last line is torn, or no checkpoint is signed by the given key, or the --checkpoint does not
hold: short, forked, another log's, or not signed by a trusted key, or the last cosigned
checkpoint is not cosigned as --cosigned-by asks); 2 the file is missing or unreadable, a --key
is malformed, the --checkpoint file is unreadable or not a checkpoint note, or --cosigned-by is
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
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="also check the journal against this checkpoint note (kept apart from it, as "
        "printed): a copy cut short or forked fails, named by entry",
    )
    parser.add_argument(
        "--cosigned-by",
        metavar="N|ROLES",
        help="also check that the last checkpoint anyone cosigned is cosigned by at least N "
        "people, or by someone of each role in a comma-separated list (KSO,SA), their "
        "cosignatures verified against the genesis roster (the entries after it are counted)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def _printable(text: str) -> str:
    """Text as any stdout can take it: a file name's bytes that were not UTF-8 (lone surrogates
    in Python) as \\xNN escapes, rather than an encoding error."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a file name: escape it as JSON does
        text = json.dumps(value)
    return text


def run(args: argparse.Namespace) -> int:
    try:
        note = None if args.checkpoint is None else read_checkpoint_file(args.checkpoint)
        cosigned_by = None if args.cosigned_by is None else parse_cosigned_by(args.cosigned_by)
        report = verify_journal(args.journal, args.keys, allow_unsigned=args.allow_unsigned,
                                checkpoint=note, checkpoint_name=args.checkpoint or "checkpoint",
                                cosigned_by=cosigned_by)
    except (OSError, ValueError) as e:
        if isinstance(e, OSError):
            reason = f"cannot read {args.journal}: {e.strerror or e}"
        else:
            reason = str(e)
        if not args.json:
            raise exits.BadInput(_printable(reason)) from None
        print(_json({"path": args.journal, "ok": False, "error": reason}))
        return exits.BAD_INPUT
    if args.json:
        print(_json(report.to_dict()))
    else:
        print(_printable(report.summary()),
              file=sys.stdout if report.journal_ok else sys.stderr)
        if report.against is not None:
            print(_printable(report.against.summary()),
                  file=sys.stdout if report.against.holds else sys.stderr)
        if report.cosigned is not None:
            print(_printable(report.cosigned.summary(args.journal)),
                  file=sys.stdout if report.cosigned.holds else sys.stderr)
    return exits.OK if report.ok else exits.FAILED
