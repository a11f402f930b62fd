"""`keyrite report JOURNAL -o FILE.pdf`: the ceremony's printable report, from its journal alone."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from keyrite import exits

DESCRIPTION = """\
Write a ceremony's report as a PDF for print (A4, black and white, prints whole on Letter), from
its journal alone. The journal is verified first, as `keyrite verify` does: a journal that does
not verify gets no report. Its first entry carries the script, the roster and the previous
ceremony's record, and its events are replayed through the ceremony machine, so every figure in
the report is what the machine accepted.

The report holds: the ceremony, its script and SHA-256, the date and the outcome; the final
checkpoint (tree size, root as colon hex and as PGP words, and a QR code of the signed note); the
sign-in sheet (seat, role, name, organisation, time, how identity was checked, the fingerprint of
the seat's key); every check with the expected value beside the observed one; the HSM's key
counts before and after the purge and after generation, with the IDs of the keys purged and
made; each approval (officer, time, key fingerprint, operation); backups with their digests,
drives with their serials and what was copied on them, bags with serials, contents, custodians
and hand-overs; exceptions with the administrator's decisions and reasons; the room's records; a
timeline of each section's estimate beside the time it took; every step in order; every signed
checkpoint; and a signature block for the participants. docs/report.md says how to read it.
"""

EPILOG = """\
exit codes: 0 the report was written; 1 the journal does not verify or does not replay (the
problem is printed); 2 the journal cannot be read, a --key is malformed, or FILE.pdf exists or
cannot be written (a report never overwrites)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a ceremony's printable report (PDF) from its verified journal",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("journal", metavar="JOURNAL", help="the journal file (JSON lines)")
    parser.add_argument(
        "--key", dest="keys", metavar="VKEY", action="append",
        help="the coordinator's verifier key, name+hexid+base64 (repeatable); default: the key "
        "the journal's genesis entry announces (which shows it is intact, not who wrote it)")
    parser.add_argument("-o", "--out", required=True, metavar="FILE.pdf",
                        help="where to write the report; it must not exist")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # imported here, not above: every `keyrite` command registers this one, and only this one
    # needs reportlab and the machine
    from coordinator.journal.verify import JournalChanged, read_verified
    from coordinator.report.facts import Verification, facts_of
    from coordinator.report.pdf import report_pdf
    from keyrite.files import write_exclusive

    out = Path(args.out)
    if out.exists() or out.is_symlink():
        raise exits.BadInput(f"{_shown(out)} already exists: a report never overwrites a file")
    if not out.parent.is_dir():
        raise exits.BadInput(f"{_shown(out.parent)} is not a directory")
    try:
        read = read_verified(args.journal, args.keys)
    except OSError as e:
        raise exits.BadInput(f"cannot read {_shown(args.journal)}: {e.strerror or e}") from None
    except ValueError as e:
        raise exits.BadInput(_shown(str(e))) from None
    except JournalChanged as e:
        raise exits.Failure(f"{_shown(e)}; verify and report a copy that nobody writes "
                            "to") from None
    verified, records = read.report, read.records
    if not verified.ok:
        raise exits.Failure(_shown(verified.summary()))
    facts = facts_of(records, Verification(
        journal=os.path.basename(args.journal), entries=verified.entries,
        checkpoints=verified.checkpoints, keys=verified.key_names, trust=verified.trust))
    pdf = report_pdf(facts)
    try:
        write_exclusive(out, pdf)
    except FileExistsError:
        raise exits.BadInput(f"{_shown(out)} already exists: a report never overwrites a "
                             "file") from None
    except OSError as e:
        raise exits.BadInput(f"cannot write {_shown(out)}: {e.strerror or e}") from None
    cp = facts.final
    seal = (f"final checkpoint: tree size {cp.size}, root {cp.root_colon}" if cp else
            "the journal holds no checkpoint")
    print(f"{_shown(out)}: report of {facts.ceremony} ({facts.status}"
          f"{', a rehearsal' if facts.rehearsal else ''}), {len(pdf)} bytes; {seal}")
    return exits.OK


def _shown(text: object) -> str:
    """A path or message as any terminal can take it (a file name that is not UTF-8 is shown
    with \\x escapes instead of failing to print)."""
    shown = os.fsdecode(text) if isinstance(text, Path) else str(text)
    return shown.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
