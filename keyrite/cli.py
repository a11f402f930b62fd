"""`keyrite`: one command, subcommands owned by the package that runs them.

Each subcommand module offers `register(subparsers)`, which adds its parser and sets `run` to a
function taking the parsed arguments and returning an exit code from `keyrite.exits`. This module
is the one boundary that turns exceptions into exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from keyrite import __version__, exits

#: Modules that own a subcommand, in the order --help lists them.
COMMANDS = (
    "coordinator.rehearse_command",
    "coordinator.live.command",
    "consoles.command",
    "coordinator.script.command",
    "coordinator.journal.command",
    "coordinator.custody",
    "coordinator.usb.command",
    "signer_shim.command",
    "keyrite.enroll_command",
    "keyrite.password_command",
    "coordinator.live.stage_command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyrite",
        description="Run and audit HSM key-generation ceremonies.",
        epilog="Exit codes: 0 ok, 1 ceremony stopped or verification failed, 2 bad input, "
        "3 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"keyrite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    try:
        return int(args.run(args))
    except exits.BadInput as e:
        print(f"keyrite {args.command}: {e}", file=sys.stderr)
        return exits.BAD_INPUT
    except exits.Failure as e:
        print(f"keyrite {args.command}: {e}", file=sys.stderr)
        return exits.FAILED
    except KeyboardInterrupt:
        print(f"keyrite {args.command}: interrupted", file=sys.stderr)
        return exits.FAILED
    except Exception:
        traceback.print_exc()
        print(f"keyrite {args.command}: internal error (traceback above)", file=sys.stderr)
        return exits.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
