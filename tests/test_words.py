"""`keyrite words FILE|HEX`: a SHA-256 as colon hex and PGP words, as kskm's sha2wordlist prints.

The expected words are kskm's own test vectors (iana-org/dnssec-keytools,
src/kskm/common/tests/test_wordlist.py), so a drift in our list or in how it is read fails here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ceremony.digests import colon_hex, pgp_words
from keyrite import cli, exits

ROOT = Path(__file__).resolve().parent.parent
KEYRITE = [sys.executable, "-m", "keyrite.cli"]

FOX = b"The quick brown fox jumps over the lazy dog"
FOX_HEX = "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"
FOX_WORDS = (
    "stopwatch paramount watchword pocketful ahead stethoscope merit molecule gazelle revenue "
    "pupil pyramid ruffled antenna buzzard document optic escapade drunken tradition goggles "
    "crossover suspense impetus button aftermath stagnate rebellion clamshell retrospect "
    "topmost misnomer"
)
GOAT = b"mekmitasdigoat"
GOAT_WORDS = (
    "optic onlooker ringbolt recover upset almighty steamship hemisphere billiard butterfat "
    "classic letterhead reward filament waffle midsummer berserk speculate cement revival "
    "ribcage repellent commence combustion freedom component standard disruptive physique "
    "liberty acme typewriter"
)


def words(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["words", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("data, expected", [(FOX, FOX_WORDS), (GOAT, GOAT_WORDS)])
def test_a_file_as_kskm_prints_it(tmp_path: Path, data: bytes, expected: str, capsys) -> None:
    path = tmp_path / "message"
    path.write_bytes(data)
    code, out, err = words([str(path)], capsys)
    assert code == exits.OK, err
    digest = hashlib.sha256(data).hexdigest()
    assert out.splitlines() == [
        f"Filename:   {path}",
        f"SHA-256:    {colon_hex(digest)}",
        f"PGP Words:  {expected}",
    ]


def test_json(tmp_path: Path, capsys) -> None:
    path = tmp_path / "fox"
    path.write_bytes(FOX)
    code, out, _ = words([str(path), "--json"], capsys)
    assert code == exits.OK
    assert json.loads(out) == {"sha256": FOX_HEX, "colon": colon_hex(FOX_HEX),
                               "words": FOX_WORDS}


@pytest.mark.parametrize("given", [
    FOX_HEX,
    FOX_HEX.upper(),
    colon_hex(FOX_HEX),
    colon_hex(FOX_HEX).upper(),
    " ".join(FOX_HEX[i:i + 4] for i in range(0, 64, 4)),  # grouped as fingerprints are
    colon_hex(FOX_HEX)[:48] + "\n" + colon_hex(FOX_HEX)[48:],  # broken over two lines
])
def test_a_digest_given_in_hex(given: str, capsys) -> None:
    code, out, err = words([given], capsys)
    assert code == exits.OK, err
    assert out.splitlines() == [f"SHA-256:    {colon_hex(FOX_HEX)}", f"PGP Words:  {FOX_WORDS}"]
    code, out, _ = words([given, "--json"], capsys)
    assert json.loads(out)["words"] == FOX_WORDS


def test_the_words_are_the_ceremonys_own(tmp_path: Path, capsys) -> None:
    """The consoles' helpers, not a second list: every byte value appears in some position."""
    data = bytes(range(256)) * 3
    path = tmp_path / "bytes"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    code, out, _ = words([str(path), "--json"], capsys)
    assert code == exits.OK
    assert json.loads(out)["words"] == pgp_words(digest)
    for hexdigest in (bytes(32).hex(), (b"\xff" * 32).hex(), bytes(range(32)).hex()):
        code, out, _ = words([hexdigest, "--json"], capsys)
        assert json.loads(out) == {"sha256": hexdigest, "colon": colon_hex(hexdigest),
                                   "words": pgp_words(hexdigest)}


def test_a_large_file_is_hashed_whole(tmp_path: Path, capsys) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one read
    path = tmp_path / "image.iso"
    path.write_bytes(data)
    code, out, _ = words([str(path), "--json"], capsys)
    assert code == exits.OK
    assert json.loads(out)["sha256"] == hashlib.sha256(data).hexdigest()


# -- stdin -----------------------------------------------------------------------------------------


def test_stdin(capsys) -> None:
    p = subprocess.run([*KEYRITE, "words", "-"], cwd=ROOT, input=FOX, capture_output=True,
                       timeout=60)
    assert p.returncode == exits.OK, p.stderr
    assert p.stdout.decode().splitlines() == [f"SHA-256:    {colon_hex(FOX_HEX)}",
                                              f"PGP Words:  {FOX_WORDS}"]


def test_a_closed_stdin_exits_2() -> None:
    p = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", *KEYRITE, "words", "-"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == exits.BAD_INPUT, p.stderr
    assert "cannot read stdin" in p.stderr and "Traceback" not in p.stderr


# -- bad input: exit 2 with a clear message ------------------------------------------------


@pytest.mark.parametrize("given, message", [
    ("ab:cd:ef", "not a file, nor a SHA-256 digest"),
    (FOX_HEX[:-1], "(this has 63 hex digits)"),
    (FOX_HEX + "00", "(this has 66 hex digits)"),
    (colon_hex(FOX_HEX)[:-3], "(this has 62 hex digits)"),
    (FOX_HEX[:10] + ":" + FOX_HEX[10:], "not a file, nor a SHA-256 digest"),  # a stray colon
    ("", "an empty argument"),
])
def test_a_malformed_digest_exits_2(given: str, message: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = words([given], capsys)
    assert code == exits.BAD_INPUT
    assert out == "" and message in err and err.startswith("keyrite words: ")
    code, out, _ = words([given, "--json"], capsys)
    assert code == exits.BAD_INPUT
    assert json.loads(out)["ok"] is False and message in json.loads(out)["error"]


@pytest.mark.parametrize("which", ["missing", "directory"])
def test_an_unreadable_file_exits_2(tmp_path: Path, which: str, capsys) -> None:
    target = tmp_path / "livecd.iso" if which == "missing" else tmp_path
    code, out, err = words([str(target)], capsys)
    assert code == exits.BAD_INPUT and out == ""
    assert f"cannot read {target}: " in err


def test_a_file_named_like_a_digest_is_ambiguous(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys) -> None:
    monkeypatch.chdir(tmp_path)
    Path(FOX_HEX).write_bytes(GOAT)
    code, _, err = words([FOX_HEX], capsys)
    assert code == exits.BAD_INPUT and "both a SHA-256 digest and an existing file" in err
    code, out, _ = words([f"./{FOX_HEX}", "--json"], capsys)
    assert code == exits.OK
    assert json.loads(out)["words"] == GOAT_WORDS
    Path("deadbeef").write_bytes(FOX)  # hex-looking, but no digest: the file it names
    code, out, _ = words(["deadbeef", "--json"], capsys)
    assert code == exits.OK and json.loads(out)["sha256"] == FOX_HEX


def test_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / os.fsdecode(b"cd-\xff.iso")
    path.write_bytes(FOX)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    p = subprocess.run([*KEYRITE, "words", str(path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env=env)
    assert p.returncode == exits.OK, p.stderr
    assert "cd-\\xff.iso" in p.stdout and FOX_WORDS in p.stdout


def test_registered_and_explained(capsys) -> None:
    assert "keyrite.words_command" in cli.COMMANDS
    assert cli.main(["--help"]) == 0
    assert "words" in capsys.readouterr().out
    assert cli.main(["words", "--help"]) == 0
    out = capsys.readouterr().out
    for part in ("FILE|HEX", "--json", "PGP words", "colon", "exit codes", "./NAME"):
        assert part in out
