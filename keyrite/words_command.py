"""`keyrite words FILE|HEX`: a SHA-256 as colon hex and as PGP words, to read aloud and compare.

The ceremony shows every digest it asks people to check in these two forms (ceremony.digests);
this command prints the same two forms for a file in hand (a live CD image, a backup copied off a
drive, the script) or for a digest read from paper, so the room compares like with like. It
prints as kskm's `sha2wordlist` does (iana-org/dnssec-keytools): a `Filename:` line for a file,
then `SHA-256:` and `PGP Words:`, one line each; the digest is colon hex, as `openssl dgst -c`
and the consoles print it.

FILE or HEX: `-` is stdin; an argument made only of hex digits, colons and spaces that is a
well-formed SHA-256 (64 hex digits, or 32 colon-separated pairs) is a digest, anything else a
file. An argument that is both a well-formed digest and an existing file is refused rather than
guessed at (write `./NAME` for the file); a hex-looking argument that is neither a file nor 32
bytes says so, rather than "no such file".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import BinaryIO

from ceremony.digests import colon_hex, pgp_words
from keyrite import exits
from keyrite.exits import BadInput

DESCRIPTION = """\
Print the SHA-256 of FILE (or of stdin, for -), or a SHA-256 digest given as HEX, as colon hex
and as PGP words (the two forms the consoles show), to read aloud and compare with what another
machine or a paper record shows. HEX is 64 hex digits or 32 colon-separated pairs, in either
case; spaces in it are ignored.

An argument that is both a well-formed digest and the name of an existing file is refused: give
the file as ./NAME."""

EPILOG = """\
examples:
  keyrite words livecd.iso
  keyrite words 28:eb:0a:5f:...        (a digest read off paper)
  some-command | keyrite words -
exit codes: 0 printed; 2 a missing or unreadable file, a malformed digest, an ambiguous
argument."""

_CHUNK = 1 << 20
_HEXLIKE = re.compile(r"[0-9A-Fa-f:\s]+")
_PLAIN = re.compile(r"[0-9a-f]{64}")
_COLON = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){31}")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "words",
        help="print a file's SHA-256 (or a given digest) as colon hex and PGP words",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="FILE|HEX",
                        help="a file to hash, - for stdin, or a SHA-256 digest in hex")
    parser.add_argument("--json", action="store_true",
                        help='print {"sha256": ..., "colon": ..., "words": ...}')
    parser.set_defaults(run=run)


def parse_digest(text: str) -> str | None:
    """Plain lower-case hex of a SHA-256 given as 64 hex digits or 32 colon-separated pairs
    (whitespace ignored, either case); None if `text` is not one."""
    compact = "".join(text.split()).lower()
    if _PLAIN.fullmatch(compact) or _COLON.fullmatch(compact):
        return compact.replace(":", "")
    return None


def _hash_stream(stream: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _hash_file(path: Path) -> str:
    try:
        with path.open("rb") as f:
            return _hash_stream(f)
    except OSError as e:
        raise BadInput(f"cannot read {printable(str(path))}: {e.strerror or e}") from None


def _hash_stdin() -> str:
    stdin = sys.stdin
    if stdin is None:  # started with stdin closed (<&-)
        raise BadInput("cannot read stdin: it is closed")
    try:
        return _hash_stream(stdin.buffer)
    except (OSError, ValueError) as e:  # ValueError: a stdin closed under us
        raise BadInput(f"cannot read stdin: {e}") from None


def resolve(source: str) -> tuple[str, str | None]:
    """`(hex digest, file name or None)` for the argument; raises BadInput with the reason."""
    if source == "-":
        return _hash_stdin(), None
    if not source.strip():
        raise BadInput("an empty argument is neither a file nor a SHA-256 digest")
    digest = parse_digest(source)
    path = Path(source)
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long, or one with a NUL byte
        exists = False
    if digest is not None:
        if exists:
            raise BadInput(f"{source!r} is both a SHA-256 digest and an existing file: give "
                           f"./{printable(source)} for the file")
        return digest, None
    if not exists and _HEXLIKE.fullmatch(source) and any(c not in ": \t\n" for c in source):
        digits = sum(c in "0123456789abcdefABCDEF" for c in source)
        raise BadInput(f"{source!r} is not a file, nor a SHA-256 digest: a digest is 64 hex "
                       f"digits or 32 colon-separated pairs (this has {digits} hex "
                       f"digit{'' if digits == 1 else 's'})")
    return _hash_file(path), str(path)


def printable(name: str) -> str:
    """A file name as it can be printed: bytes that were not UTF-8 (kept by Python as lone
    surrogates) shown as \\xNN escapes instead of failing the write."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def run(args: argparse.Namespace) -> int:
    try:
        digest, filename = resolve(args.source)
    except BadInput as e:
        if not args.json:
            raise
        print(json.dumps({"source": args.source, "ok": False, "error": str(e)}))
        return exits.BAD_INPUT
    colon, words = colon_hex(digest), pgp_words(digest)
    if args.json:
        print(json.dumps({"sha256": digest, "colon": colon, "words": words}))
        return exits.OK
    if filename is not None:
        print(f"Filename:   {printable(filename)}")
    print(f"SHA-256:    {colon}")
    print(f"PGP Words:  {words}")
    return exits.OK
