"""`keyrite coordinator --config FILE`: the live ceremony's daemon (coordinator.live.serve)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = (
    "Run a live ceremony: load the script, the roster (each console's CURVE key in "
    "console_key) and the previous record; create the journal, or resume it after a restart; "
    "serve the officers' consoles over ZeroMQ with CURVE (only enrolled console keys are "
    "admitted; every command is attributed to the seat whose key carried it, judged by the "
    "ceremony machine, journaled, then broadcast to every console as the whole view); reach the "
    "signer shim over SSH with the script's pinned host key, and show HSM progress on every "
    "console. Prints 'coordinator: ... commands on ENDPOINT, broadcasts on ENDPOINT' and sends "
    "READY=1 to $NOTIFY_SOCKET once bound; runs until SIGTERM or SIGINT. FILE: a TOML file with "
    "[coordinator] script, roster, previous, journal, key, curve, commands, broadcasts, livecd, "
    "drives, [signer] host, port, client_key, and [passwords]: a verifier of each pre-generated "
    "password the script names (keyrite password verifier; the coordinator refuses to start "
    "without one, and refuses any typed password that does not match it); "
    "relative paths from FILE's directory (docs/live.md). Exit codes: 0 stopped by a signal, "
    "2 bad config or input, 3 internal error."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("coordinator", help="run a live ceremony for the officers' consoles",
                       description=DESCRIPTION)
    p.add_argument("--config", required=True, type=Path, metavar="FILE",
                   help="the coordinator's TOML config (docs/live.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from coordinator.live.serve import run as serve

    return serve(args.config)
