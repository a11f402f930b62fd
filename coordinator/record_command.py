"""`keyrite record export JOURNAL`: the previous-record TOML, read from a ceremony's journal.

The previous ceremony's record (the facts a next script checks with `previous.KEY`) used to be
typed by hand. `keyrite rehearse --previous` and the coordinator's `previous_journal` read it
from the previous ceremony's journal instead; this command writes the same file people typed
(the same keys), for those who keep paper.

This module is also the edge those two use (`load_previous_journal`): the journal is verified
first (`coordinator.journal.verify.verify_journal`, with the previous ceremony's checkpoint key),
then only the entries its last checkpoint covers are folded (entries after it are linked but not
signed: anyone could have appended them) by the pure reader, `ceremony.previous.read_previous`.
A journal that does not verify, a key missing or malformed, a ceremony that did not complete:
bad input (exit 2) with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceremony.previous import FACTS, WHERE, PreviousCeremony, read_previous
from coordinator.journal.verify import JournalChanged, read_verified
from keyrite import exits
from keyrite.exits import BadInput
from keyrite.files import write_exclusive

DESCRIPTION = (
    "Write the previous-record TOML (livecd_sha256, signer_host_key, hsm_fingerprint, "
    "key_count, backup_sha256, backup_file, transcript_sha256, transcript_file: the keys a next "
    "ceremony's script checks as previous.KEY) read from a "
    "completed ceremony's journal, with the bags it left in custody as comments. The journal is "
    "verified first (--key: the coordinator's checkpoint key as printed when it was set up; "
    "without it, the key its genesis announces, which shows the journal is intact, not who wrote "
    "it), and only the entries its last checkpoint covers are read. A fact the journal never "
    "observed is left out, and said so. Exit codes: 0 written, 2 the journal does not verify or "
    "replay, the ceremony did not complete, or the key or output file is bad."
)


@dataclass(frozen=True)
class PreviousJournal:
    """A previous ceremony's journal, verified, and what it says (`facts`)."""

    path: Path
    facts: PreviousCeremony
    keys: tuple[str, ...]  # the trusted key(s) it verified with, name+id
    trust: str  # "given" or "genesis"
    covered: int  # entries its last checkpoint covers: the ones read
    uncovered: int  # entries after that checkpoint's own entry: linked, not signed, not read
    checkpoint: str  # the last checkpoint's body: origin, size and root, one per line

    def to_dict(self) -> dict[str, Any]:
        return {"journal": str(self.path), "keys": list(self.keys), "trust": self.trust,
                "covered": self.covered, "uncovered": self.uncovered,
                "checkpoint": self.checkpoint, **self.facts.to_dict()}


def load_previous_journal(path: Path, key: str | None, *, key_required: bool = True,
                          what: str = "--previous-key") -> PreviousJournal:
    """Verify the journal at `path` with `key` and read its facts; BadInput with the reason for
    a missing or malformed key, a journal that does not verify or replay, or a ceremony that did
    not complete. `what` names the key's option in the message when it is missing."""
    path = Path(path)
    if key is None or not key.strip():
        if key_required:
            raise BadInput(f"{path}: the previous journal is verified with its coordinator's "
                           f"checkpoint key: {what} is missing")
        key = None
    try:
        read = read_verified(path, None if key is None else [key.strip()])
    except OSError as e:
        raise BadInput(f"{path}: cannot read the previous journal: {e.strerror or e}") from None
    except ValueError as e:
        raise BadInput(f"{what}: {e}") from None
    except JournalChanged:
        raise BadInput(f"{path}: the previous journal changed while it was being read") from None
    report = read.report
    if not report.ok:
        raise BadInput(f"the previous journal does not verify: {report.summary()}")
    covered = report.last_checkpoint_size
    if not covered:
        raise BadInput(f"{path}: no checkpoint of the previous journal is signed: nothing in it "
                       "is vouched for")
    records = read.records[:covered]
    try:
        facts = read_previous(records)
    except BadInput as e:
        raise BadInput(f"{path}: {e}") from None
    if facts.status != "completed":
        where = f" at step {facts.step}" if facts.step is not None else ""
        raise BadInput(f"{path}: the previous ceremony did not complete (it is {facts.status}"
                       f"{where}, {facts.steps_completed} of {facts.steps_total} steps, as far "
                       "as its last checkpoint covers): its journal is no record of where the "
                       "HSM was left")
    note = read.records[covered][1].get("note", "") if len(read.records) > covered else ""
    body = "\n".join(str(note).split("\n")[:3])
    return PreviousJournal(path=path, facts=facts, keys=report.key_names, trust=report.trust,
                           covered=covered, uncovered=max(0, report.entries - covered - 1),
                           checkpoint=body)


def lacking(previous: PreviousJournal, keys: tuple[str, ...] | list[str]) -> None:
    """BadInput naming each fact of `keys` (a script's `previous` list) the journal lacks, and
    what would have given it."""
    missing = previous.facts.lacks(keys)
    if missing:
        why = "; ".join(f"{k}: {WHERE.get(k, 'no step of the journal yields it')}"
                        for k in missing)
        raise BadInput(f"{previous.path}: the previous journal lacks {', '.join(missing)}, which "
                       f"the script's [ceremony] previous needs ({why})")


def _comment(text: str) -> str:
    """Text as one comment line: control characters replaced."""
    return "".join("?" if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text)


def _toml_string(v: str) -> str:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"a value of the previous journal is not text: {v!r}") from None
    return json.dumps(v)  # a JSON string of ASCII with \\uXXXX escapes is a TOML basic string


def render_toml(p: PreviousJournal) -> str:
    """The previous-record TOML: the facts as keys (what `previous.KEY` resolves), where each
    was read and the bags left in custody as comments."""
    f = p.facts
    trusted = ", ".join(p.keys)
    lines = [
        "# The previous ceremony's record, read from its journal (keyrite record export).",
        _comment(f"# journal: {p.path}"),
        _comment(f"# ceremony: {f.ceremony} ({f.title}), begun {f.at}, {f.status}, "
                 f"{f.steps_completed} of {f.steps_total} steps"
                 + (", a rehearsal" if f.rehearsal else "")),
        _comment(f"# verified with key {trusted}"
                 + (" (the key its genesis announces: not who wrote it)"
                    if p.trust == "genesis" else "")),
        _comment(f"# read: the {p.covered} entries its last checkpoint covers"
                 + (f" ({p.uncovered} after it, not signed, not read)" if p.uncovered else "")),
    ]
    lines += [_comment(f"#   {x}") for x in p.checkpoint.split("\n") if x]
    for k in FACTS:
        if k in f.record:
            lines.append(f"{k} = {_toml_string(f.record[k])}  "
                         + _comment(f"# {f.sources.get(k, '')}"))
        else:
            lines.append(_comment(f"# {k}: not in the journal (from {WHERE[k]})"))
    for k, v in f.record.items():
        if k not in FACTS:
            lines.append(f"{k} = {_toml_string(v)}")
    if f.custody:
        lines.append("# In custody when it ended (keyrite custody JOURNAL for each bag's chain):")
        lines += [_comment(f"#   {h.describe()}") for h in f.custody]
    return "\n".join(lines) + "\n"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="the previous ceremony's record, from its journal",
                       description="The previous ceremony's record, from its journal.")
    records = p.add_subparsers(dest="record_command", metavar="ACTION", required=True)
    e = records.add_parser("export", help="write the previous-record TOML from a journal",
                           description=DESCRIPTION)
    e.add_argument("journal", type=Path, metavar="JOURNAL")
    e.add_argument("--key", metavar="VKEY",
                   help="the coordinator's checkpoint key, name+hexid+base64 (default: the key "
                   "the journal's genesis announces)")
    e.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="write to FILE (a new file; default: standard output)")
    e.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    previous = load_previous_journal(args.journal, args.key, key_required=False, what="--key")
    text = render_toml(previous)
    if args.output is None:
        sys.stdout.write(text)
        return exits.OK
    try:
        write_exclusive(args.output, text.encode())
    except FileExistsError:
        raise BadInput(f"{args.output} exists: give a new file") from None
    except OSError as e:
        raise BadInput(f"{args.output}: {e.strerror or e}") from None
    print(f"wrote {args.output}: {', '.join(previous.facts.record)} from {args.journal}",
          file=sys.stderr)
    return exits.OK

