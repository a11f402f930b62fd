"""`keyrite shim --config FILE`: run the signer shim (signer_shim.server) until SIGTERM/SIGINT.

`python -m signer_shim.shim_command --config FILE` runs the same, through `keyrite.cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from keyrite import exits

if TYPE_CHECKING:
    from signer_shim.server import Loaded

DESCRIPTION = (
    "Serve this signer's HSM over SSH: an asyncssh server offering the 'keyrite-shim' "
    "subsystem, which answers one JSON request per line (protocol version 1: info, "
    "fingerprint, inventory, plan_purge, plan_generate, plan_backup, execute, read_output; "
    "progress and queue-position messages before each answer; see docs/signer.md). All HSM "
    "calls wait their turn in one queue. execute runs only with officers' signed approvals that "
    "make a quorum under the authority file (distinct officers, unexpired, for this step, "
    "script and exact operation, nonces never used before); requests are journaled by "
    "idempotency key in the signer's state_dir/requests.jsonl, an operation runs to its end "
    "even if its client leaves, and a repeated key gets the recorded result. Clients "
    "authenticate with a public key listed in the configured authorized_keys file; the "
    "server's host key is the signer's own. FILE is a TOML file with a [shim] section: listen, "
    "port (0 = any free port), host_key, authorized_keys, signer_config (PKCS#11, or "
    "OpenDNSSEC with [signer] backend = \"opendnssec\"), authority (officers and quorum "
    "rules); relative paths from FILE's directory. Prints 'listening on HOST port N' on stdout "
    "and sends READY=1 to $NOTIFY_SOCKET once listening; runs until SIGTERM or SIGINT "
    "(running operations finish first). Sessions and requests are logged on stderr. "
    "Exit codes: 0 stopped by a signal, 1 could not serve, 2 bad config."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shim", help="serve this signer's HSM to the coordinator over SSH",
                       description=DESCRIPTION)
    _arguments(p)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, metavar="FILE",
                   help="the shim's TOML config ([shim] listen, port, host_key, "
                   "authorized_keys, signer_config, authority)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from keyrite.heap import return_large_buffers
    from signer_shim import server
    from signer_shim.config import ConfigError

    return_large_buffers()  # freed backup and output buffers go back, not stay resident
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        loaded = server.load(args.config)
    except ConfigError as e:
        raise exits.BadInput(str(e)) from None
    try:
        asyncio.run(_serve(loaded))
    except OSError as e:  # e.g. the port is taken
        raise exits.Failure(f"cannot serve on {loaded.config.listen} port "
                            f"{loaded.config.port}: {e}") from None
    return exits.OK


async def _serve(loaded: Loaded) -> None:
    from signer_shim import server

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def announce(text: str) -> None:
        print(text, flush=True)

    await server.serve(loaded, stop, announce)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m signer_shim.shim_command ARGS` is `keyrite shim ARGS`, through the one boundary
    that maps outcomes to exit codes (keyrite.cli)."""
    from keyrite.cli import main as keyrite_main

    return keyrite_main(["shim", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
