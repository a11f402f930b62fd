"""`keyrite`: one command, subcommands owned by the package that runs them.

Each subcommand module offers `register(subparsers)`, which adds its parser and sets `run` to a
function taking the parsed arguments and returning an exit code from `keyrite.exits`. This module
is the one boundary that turns exceptions into exit codes: BadInput 2, Failure 1, an interrupt
1, a stdout whose reader has gone (BrokenPipeError, `keyrite ... | head -0`) or that was closed
from the start (`>&-`) 2, anything else 3 with its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import io
import os
import select
import sys
import traceback
from collections.abc import Sequence

from keyrite import __version__, exits

#: The module that owns each subcommand, in the order --help lists them: `keyrite NAME ...`
#: imports NAME's module alone. The others' imports (trio, ZeroMQ, the consoles' and the
#: coordinator's modules) would stay resident for a long command's whole life: 9 MB in the
#: signer shim, 6 MB in a rehearsal.
OWNERS = {
    "rehearse": "coordinator.rehearse_command",
    "coordinator": "coordinator.live.coordinator_command",
    "console": "consoles.console_command",
    "script": "keyrite.script_command",
    "verify": "coordinator.journal.verify_command",
    "report": "coordinator.report.report_command",
    "keys": "coordinator.keys_command",
    "custody": "coordinator.custody",
    "record": "coordinator.record_command",
    "drives": "coordinator.usb.drives_command",
    "shim": "signer_shim.shim_command",
    "enroll": "keyrite.enroll_command",
    "password": "keyrite.password_command",
    "words": "keyrite.words_command",
    "stage": "coordinator.live.stage_command",
}
#: Modules that own a subcommand (what --help imports, all of them).
COMMANDS = tuple(OWNERS.values())


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of `commands` (module names; all of COMMANDS by default)."""
    parser = argparse.ArgumentParser(
        prog="keyrite",
        description="Run and audit HSM key-generation ceremonies.",
        epilog="Exit codes: 0 ok, 1 ceremony stopped or verification failed, 2 bad input, "
        "3 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"keyrite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if commands is None else commands:
        importlib.import_module(name).register(sub)
    return parser


class _ClosedStdout(io.TextIOBase):
    """What stdout is when the process started with it closed (`keyrite ... >&-`): Python
    makes sys.stdout None, and print() would drop the output without a word."""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "stdout is closed")


def main(argv: Sequence[str] | None = None) -> int:
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    words = sys.argv[1:] if argv is None else list(argv)
    owner = OWNERS.get(words[0]) if words else None
    parser = build_parser((owner,) if owner in COMMANDS else None)
    name = "keyrite"
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # argparse: --help (0) or a usage error (2)
            _flush_stdout()
            return int(e.code or 0)
        name = f"keyrite {args.command}"
        code = _run(args)
        _flush_stdout()  # output still buffered must fail here, not at interpreter exit
        return code
    except BrokenPipeError:
        if not _stdout_is_broken():  # a pipe or socket of the command's own: a bug
            traceback.print_exc()
            print(f"{name}: internal error (traceback above)", file=sys.stderr)
            return exits.INTERNAL
        return _stdout_gone(name)


def _flush_stdout() -> None:
    if sys.stdout is not None:
        sys.stdout.flush()


def _stdout_is_broken() -> bool:
    """Whether stdout is a pipe or socket nobody reads any more (poll says POLLERR/POLLHUP),
    or was closed from the start."""
    if isinstance(sys.stdout, _ClosedStdout):
        return True
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, ValueError, OSError):
        return False


def _stdout_gone(name: str) -> int:
    """The reader of our stdout went away (`keyrite ... | head -0`): the caller's doing, so
    exit 2 with a line on stderr, not a traceback. Stdout is pointed at /dev/null so that the
    interpreter's final flush of what is still buffered does not fail again."""
    with contextlib.suppress(AttributeError, ValueError, OSError):  # a stdout with no fd
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    with contextlib.suppress(OSError):  # stderr may be gone too
        print(f"{name}: stdout was closed before all output was written (broken pipe)",
              file=sys.stderr)
    return exits.BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args))
    except BrokenPipeError:
        raise  # main decides: stdout's reader gone (exit 2) or a bug
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
