"""`keyrite stage --workdir DIR [--signer opendnssec] [--previous J --previous-key K]`: a live
ceremony staged here (coordinator.live.stage), continuing an earlier one's journal as `keyrite
rehearse` does, or with a private OpenDNSSEC as its signer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = (
    "Stage a live ceremony on this machine, to try the consoles or to train officers: the "
    "rehearsal's SoftHSM2 token, drives, live CD and previous record, plus every seat of the "
    "rehearsal cast enrolled (encrypted signing key, console CURVE key; passphrases in "
    "DIR/live/passphrases.toml, staging only), a roster with console keys, the signer shim's "
    "files, the coordinator's config and one console config per person. Prints the commands that "
    "start the shim, the coordinator and each console (or, with --json, their paths, ports and "
    "the journal's verifier key). DIR must be new or empty. A script that opens bags an "
    "earlier ceremony sealed (an annual audit, a standby restore) continues from that "
    "ceremony's journal: --previous OLD/journal.jsonl --previous-key VKEY (a rehearsal of the "
    "key generation writes one and prints its checkpoint key); the journal is verified first, "
    "the coordinator's config names it, the drives in its held bags are as it sealed them, and "
    "the signer continues on its token (a fresh token of the same box for a restore). "
    "With --signer opendnssec the signer is a private OpenDNSSEC whose enforcer the first "
    "printed command runs. "
    "Exit codes: 0 staged, 1 OpenDNSSEC not installed (--signer opendnssec), 2 bad input."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stage", help="stage a live ceremony on this machine to try it out",
                       description=DESCRIPTION)
    p.add_argument("script", nargs="?", type=Path, help="the ceremony script (default: bundled)")
    p.add_argument("--workdir", required=True, type=Path, metavar="DIR")
    p.add_argument("--fixture", choices=("small", "seed"), default="small",
                   help="the token's previous keys: 'small' (the default: a few keys, quick to "
                   "stage) or 'seed' (the seed ceremony's 140)")
    p.add_argument("--previous", type=Path, metavar="JOURNAL",
                   help="the earlier ceremony's journal this one continues from (its record, "
                   "its held bags, its signer): OLD/journal.jsonl of keyrite rehearse")
    p.add_argument("--previous-key", metavar="VKEY",
                   help="the checkpoint key that journal verifies with (its rehearsal printed "
                   "it as checkpoint key)")
    p.add_argument("--token", type=Path, metavar="DIR",
                   help="with --previous: the signer directory to continue on (default: "
                   "signer/ beside the journal)")
    p.add_argument("--signer", choices=("pkcs11", "opendnssec"), default="pkcs11",
                   help="the signer backend behind the staged shim: 'pkcs11' (the default, a "
                   "SoftHSM2 token), or 'opendnssec', a private OpenDNSSEC 2.1 in DIR/signer "
                   "(conf.xml, kasp.xml, kasp.db over a SoftHSM2 token) whose enforcer made "
                   "the previous keys and plans the counts, as keyrite rehearse --signer "
                   "opendnssec makes it. Its ods-enforcerd is not left running: the first "
                   "printed command (python -m staging.ods --config DIR/signer/signer.toml) "
                   "runs it until Ctrl-C; start it before the shim, stop it after. Not with "
                   "--previous or --token, nor for a script that opens an earlier ceremony's "
                   "bags or restores (exit 2)")
    p.add_argument("--json", action="store_true", help="print paths and ports as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from coordinator.live.stage import enforcer_command, instructions, stage

    def progress(done: int, total: int, what: str) -> None:
        print(f"\r{what} {done}/{total}", end="", file=sys.stderr, flush=True)

    s = stage(args.workdir, fixture=args.fixture, script_path=args.script, progress=progress,
              previous=args.previous, previous_key=args.previous_key, token=args.token,
              signer=args.signer)
    print(file=sys.stderr)
    if args.json:
        print(json.dumps({"root": str(s.root), "coordinator": str(s.coordinator),
                          "shim": str(s.shim) if s.shim else None,
                          "consoles": {k: str(v) for k, v in s.consoles.items()},
                          "ports": {"shim": s.ports[0], "commands": s.ports[1],
                                    "broadcasts": s.ports[2]},
                          "journal_key": s.journal_key, "drives": s.drives, "bags": s.bags,
                          "materials": str(s.live / "materials.txt"),
                          "previous": str(s.previous) if s.previous else None,
                          "held": s.held, "signer": s.signer,
                          "enforcer": None if s.enforcer is None else {
                              "config": str(s.enforcer),
                              "command": enforcer_command(s.enforcer)}}, indent=2))
    else:
        print(instructions(s))
    return 0
