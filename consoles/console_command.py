"""`keyrite console --config FILE`: one officer's full-screen console (consoles.app)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = (
    "Open this officer's console: connect to the coordinator over ZeroMQ with the console's CURVE "
    "key (from the officer's enrolment directory, made by keyrite enroll), show the ceremony as "
    "everyone sees it (step, what is asked of you in bold, participants, quorum progress with its "
    "countdown, drives and bags, the latest journal entries, the progress of HSM work) and act by "
    "keystroke: [s] sign in, [a] acknowledge, [v] enter a value (its format is stated; a date and "
    "time is filled in from this computer's clock), [p] approve (the whole operation, its digest "
    "and its PGP words are shown, page by page with PgDn on a small terminal; your passphrase is "
    "taken once the last page has been shown, never on a terminal smaller than 80x24, and unlocks "
    "your key for that one signature: only the signed approval is sent), [r] refuse, [w] enter a "
    "password the operation needs (typed twice), [o] sign off, [n] raise a remark or a deviation "
    "(then r or d, and one line); the administrator also [i] signs in"
    " others whose ID they checked (picked from a list), [x] decides an exception (then r retry, a"
    " accept or x abort), [d] decides the oldest open deviation (a accept or r reject, and a "
    "reason), [z] pauses and [g] resumes. The screen fits itself to the terminal from 80x24 up. "
    "Witness and auditor consoles only raise remarks; an auditor's console given journal_copy"
    " keeps its own verified copy of the journal. Ctrl-C closes the console (the ceremony goes on;"
    " a console started again catches up). FILE: TOML with [console] enrolment, also (the same "
    "person's other seats), commands, broadcasts, coordinator_key, and optionally journal_copy "
    "with journal_key (docs/live.md). Exit codes: 0 closed, 1 no view from the coordinator "
    "(unreachable, or this console's key is refused), 2 bad config."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("console", help="an officer's console for a live ceremony",
                       description=DESCRIPTION)
    p.add_argument("--config", required=True, type=Path, metavar="FILE",
                   help="the console's TOML config (docs/live.md)")
    p.add_argument("--log", type=Path, metavar="FILE",
                   help="append the console's log (links, snapshots, refusals) to FILE; "
                   "without it only errors are shown, on the screen's message line")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from consoles.app import run as console

    return console(args.config, log=args.log)
