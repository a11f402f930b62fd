"""`keyrite rehearse`: argument parsing and output; the work is coordinator.rehearsal.rehearse."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keyrite import exits


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rehearse",
        help="run a whole ceremony with scripted officers on a fresh SoftHSM2 (or "
        "opencryptoki) token, or a private OpenDNSSEC",
        description=(
            "Rehearse a ceremony end to end: a fresh SoftHSM2 token (or, with --token-module "
            "opencryptoki, opencryptoki's software token; with --signer opendnssec, a "
            "private OpenDNSSEC enforcer) under DIR seeded with a "
            "previous ceremony's keys, scripted officers who sign as real consoles do, folder "
            "drives, and every step through the state machine and the signed journal. "
            "The cast is derived from the script's roles, quorums and separation of duty. "
            "Exit codes: 0 completed, 1 ceremony stopped, failed or a step refused by the "
            "machine (with its reason), 2 bad input."
        ),
    )
    p.add_argument("script", nargs="?", help="ceremony script (default: the bundled seed ceremony)")
    p.add_argument("--workdir", required=True, type=Path,
                   help="a new or empty directory for everything the rehearsal makes")
    p.add_argument("--fixture", choices=("seed", "small"), default="seed",
                   help="the previous ceremony's keys: 'seed' (the default) reproduces the seed's "
                   "140/115/200; 'small' is a few keys, for fast tests")
    p.add_argument("--token-module", choices=("softhsm2", "opencryptoki"), default="softhsm2",
                   help="the PKCS#11 implementation the rehearsal's token is made on: "
                   "'softhsm2' (the default), or 'opencryptoki', its software token in a private "
                   "pkcsslotd the rehearsal starts and stops (needs root with CAP_SYS_ADMIN; "
                   "RSA only). That token cannot back up: a script with a backup, restore or "
                   "restore-drill step is refused before anything is made (exit 2); "
                   "tests/scripts/keygen-no-backup.toml is the bundled key generation without "
                   "them")
    p.add_argument("--signer", choices=("pkcs11", "opendnssec"), default="pkcs11",
                   dest="signer_backend",
                   help="the signer backend behind the shim: 'pkcs11' (the default, on the "
                   "--token-module's token), or 'opendnssec', a private OpenDNSSEC 2.1 "
                   "(ods-enforcerd the rehearsal starts and stops, over a SoftHSM2 token) "
                   "whose enforcer made the previous keys and plans the counts (it does not "
                   "multiply by zones: P14M is 7 keys at most). Not with --previous or a "
                   "restore")
    p.add_argument("--previous", type=Path, metavar="JOURNAL",
                   help="continue from a previous ceremony's journal: it is verified "
                   "(--previous-key), the previous record is read from it instead of a fresh "
                   "token, and the signer continues on that rehearsal's token")
    p.add_argument("--previous-key", metavar="VKEY",
                   help="the previous journal's checkpoint key, name+hexid+base64 (its "
                   "rehearsal printed it as 'checkpoint key')")
    p.add_argument("--token", type=Path, metavar="DIR",
                   help="with --previous: the previous rehearsal's signer directory to continue "
                   "on (signer.toml, hsm/, state/; default: signer/ beside the journal); it is "
                   "copied, never changed")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted rehearsal in DIR from its journal")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object (progress goes to stderr)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from coordinator.rehearsal.rehearse import rehearse, render_previous
    from coordinator.rehearsal.summary import render_text

    code, summary = rehearse(args.script, args.workdir, fixture=args.fixture,
                             resume=args.resume, as_json=args.json, previous=args.previous,
                             previous_key=args.previous_key, token=args.token,
                             token_module=args.token_module,
                             signer_backend=args.signer_backend)
    text = "\n".join(x for x in (render(summary, render_text), render_previous(summary)) if x)
    print(json.dumps(summary, indent=1) if args.json else text)
    return code if code in (exits.OK, exits.FAILED) else exits.FAILED


NO_TOKEN = {"softhsm2_conf": "", "label": "", "user_pin": ""}


def render(summary: dict[str, Any], render_text: Callable[[dict[str, Any]], str]) -> str:
    """The summary's text, with what `render_text` does not say: the step the machine refused
    and why (the rehearsal stopped there, exit 1), and that a script with no signer had no
    token."""
    lines = render_text({**summary, "token": summary["token"] or NO_TOKEN}).split("\n")
    token = summary["token"]
    if token is None:
        lines = [x for x in lines if not x.startswith("token: ")]
        lines.append("token: none (the script declares no signer)")
    elif token.get("token_module") == "opencryptoki":  # no SOFTHSM2_CONF to name
        lines = [x for x in lines if not x.startswith("token: ")]
        lines.append(f"token: opencryptoki software token in {token['directory']} (its "
                     f"pkcsslotd stopped) label {token['label']} user PIN {token['user_pin']}")
    elif token.get("signer") == "opendnssec":
        lines.append(f"opendnssec: {token['conf']} (its ods-enforcerd stopped)")
    refused = summary.get("refused")
    if refused:
        why = "" if refused.get("stalled") else "the machine refused it: "
        lines.append(f"stopped at step {refused['step']}: {why}{refused['reason']}")
    return "\n".join(lines)
