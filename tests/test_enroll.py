"""`keyrite enroll`: an officer's keys made, refused, unlocked and checked (keyrite/enroll.py)."""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
import zmq
import zmq.auth

from ceremony.approval import check_approval, sign_approval
from ceremony.roster import Roster
from keyrite import cli, enroll_command
from keyrite.enroll import (
    CONSOLE_PUBLIC,
    CONSOLE_SECRET,
    FILES,
    OFFICER,
    SIGNING_KEY,
    EnrollError,
    make_officer,
    read_entry,
    unlock,
)

PASS = "correct horse battery"


@pytest.fixture
def pass_file(tmp_path: Path) -> Path:
    path = tmp_path / "pass"
    path.write_text(PASS + "\n")
    return path


def enroll(out: Path, *extra: str) -> list[str]:
    return ["enroll", "--role", "KSO", "--seat", "KSO1", "--name", "Officer C",
            "--organisation", "Registry", "--out", str(out), *extra]


def fake_getpass(monkeypatch: pytest.MonkeyPatch, answers: Iterable[str]) -> list[str]:
    """Answer getpass from `answers`, as if typed at a terminal; returns the prompts shown."""
    it = iter(answers)
    prompts: list[str] = []

    def ask(prompt: str = "") -> str:
        prompts.append(prompt)
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr(enroll_command.getpass, "getpass", ask)
    monkeypatch.setattr(enroll_command, "stdin_is_terminal", lambda: True)
    return prompts


def test_round_trip_cli(tmp_path: Path, pass_file: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kso1"
    assert cli.main(enroll(out, "--passphrase-file", str(pass_file))) == 0
    printed = tomllib.loads(capsys.readouterr().out)["officers"][0]
    assert printed == tomllib.loads((out / OFFICER).read_text())["officers"][0]
    assert printed["seat"] == "KSO1" and printed["role"] == "KSO"
    assert printed["person"] == "officer-c" and printed["organisation"] == "Registry"

    officer = unlock(out, PASS.encode())
    assert officer.entry.to_dict() == printed
    assert PASS not in repr(officer) and officer.console_secret not in repr(officer)
    # The signing key signs approvals that verify against the printed roster key.
    approval = sign_approval(officer.signing_key, ceremony="c", step=43, script_sha256="ab",
                             operation="cd", expires=2000)
    assert approval.key == printed["signing_key"]
    check_approval(approval, ceremony="c", step=43, script_sha256="ab", operation="cd", now=1000)
    # The console files are pyzmq certificates, and the pair is a real CURVE pair.
    public, secret = zmq.auth.load_certificate(out / CONSOLE_SECRET)
    assert public.decode() == printed["console_key"] == officer.console_public
    assert secret is not None and zmq.curve_public(secret) == public
    assert zmq.auth.load_certificate(out / CONSOLE_PUBLIC) == (public, None)
    assert zmq.auth.load_certificates(out) == {public: True}
    # The roster takes the entry as printed, console key included.
    roster = Roster.from_dict({"officers": [printed]})
    assert roster.officers["KSO1"].signing_key == printed["signing_key"]
    assert roster.officers["KSO1"].console_key == printed["console_key"]

    assert cli.main(["enroll", "--check", str(out), "--passphrase-file", str(pass_file)]) == 0
    assert "ok:" in capsys.readouterr().out


def test_json_output_parses(tmp_path: Path, pass_file: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kga"
    argv = ["enroll", "--role", "KGA", "--name", "Administrator A", "--person", "p-kga",
            "--out", str(out), "--passphrase-file", str(pass_file), "--json"]
    assert cli.main(argv) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry == read_entry(out).to_dict()
    assert (entry["seat"], entry["role"], entry["person"]) == ("KGA", "KGA", "p-kga")
    assert entry["signing_key"].startswith("ed25519:") and len(entry["console_key"]) == 40
    check = ["enroll", "--check", str(out), "--passphrase-file", str(pass_file), "--json"]
    assert cli.main(check) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, **entry}


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path, pass_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kso1"
    make_officer(out, role="KSO", seat="KSO1", name="Officer C", passphrase=PASS.encode())
    with pytest.raises(EnrollError, match="passphrase is wrong"):
        unlock(out, b"not the passphrase")
    pass_file.write_text("not the passphrase\n")
    assert cli.main(["enroll", "--check", str(out), "--passphrase-file", str(pass_file)]) == 2
    err = capsys.readouterr().err
    assert "passphrase is wrong" in err and SIGNING_KEY in err and "Traceback" not in err


def test_check_by_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kso1"
    make_officer(out, role="KSO", seat="KSO1", name="Officer C", passphrase=PASS.encode())
    fake_getpass(monkeypatch, ["wrong passphrase"])
    assert cli.main(["enroll", "--check", str(out)]) == 2
    assert "passphrase is wrong" in capsys.readouterr().err
    prompts = fake_getpass(monkeypatch, [PASS])
    assert cli.main(["enroll", "--check", str(out)]) == 0
    assert len(prompts) == 1


def test_unlock_refuses_files_of_another_enrolment(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        make_officer(d, role="KSO", seat="KSO1", name="Officer C", passphrase=PASS.encode())
    (a / CONSOLE_SECRET).unlink()
    (a / CONSOLE_SECRET).write_bytes((b / CONSOLE_SECRET).read_bytes())
    with pytest.raises(EnrollError, match="not the console_key"):
        unlock(a, PASS.encode())
    (b / SIGNING_KEY).unlink()
    (b / SIGNING_KEY).write_bytes((a / SIGNING_KEY).read_bytes())
    with pytest.raises(EnrollError, match="not the signing_key"):
        unlock(b, PASS.encode())
    (a / OFFICER).unlink()
    with pytest.raises(EnrollError, match="not a complete enrolment"):
        unlock(a, PASS.encode())


def test_refuses_to_overwrite(tmp_path: Path, pass_file: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kso1"
    assert cli.main(enroll(out, "--passphrase-file", str(pass_file))) == 0
    before = {f: (out / f).read_bytes() for f in FILES}
    capsys.readouterr()
    assert cli.main(enroll(out, "--passphrase-file", str(pass_file))) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert {f: (out / f).read_bytes() for f in FILES} == before
    with pytest.raises(EnrollError, match="refusing to overwrite"):
        make_officer(out, role="KSO", seat="KSO1", name="X", passphrase=PASS.encode())
    assert {f: (out / f).read_bytes() for f in FILES} == before


def test_refuses_an_unfinished_enrolment(tmp_path: Path) -> None:
    out = tmp_path / "kso1"
    out.mkdir()
    (out / SIGNING_KEY).write_text("left by a crash")
    with pytest.raises(EnrollError, match="unfinished enrolment"):
        make_officer(out, role="KSO", seat="KSO1", name="Officer C", passphrase=PASS.encode())
    assert (out / SIGNING_KEY).read_text() == "left by a crash"
    assert sorted(p.name for p in out.iterdir()) == [SIGNING_KEY]


def test_file_modes(tmp_path: Path) -> None:
    out = tmp_path / "new" / "kso1"
    make_officer(out, role="KSO", seat="KSO1", name="Officer C", passphrase=PASS.encode())
    mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(mode) == set(FILES)  # no temporary left behind
    assert mode[SIGNING_KEY] == mode[CONSOLE_SECRET] == 0o600
    assert mode[CONSOLE_PUBLIC] & 0o077 in (0o044, 0o004, 0o040, 0)  # umask decides
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert b"ENCRYPTED PRIVATE KEY" in (out / SIGNING_KEY).read_bytes()


def test_confirmation_mismatch_asks_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kso1"
    prompts = fake_getpass(monkeypatch, ["short", PASS, PASS + "x", PASS, PASS])
    assert cli.main(enroll(out)) == 0
    assert len(prompts) == 5
    err = capsys.readouterr().err
    assert "too short" in err and "differ" in err and PASS not in err
    unlock(out, PASS.encode())


def test_confirmation_mismatch_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kso1"
    fake_getpass(monkeypatch, [PASS, "other one 1", PASS, "other one 2", PASS, "other one 3"])
    assert cli.main(enroll(out)) == 2
    assert "no matching passphrase" in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_end_of_input_at_the_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    fake_getpass(monkeypatch, [PASS])
    assert cli.main(enroll(tmp_path / "kso1")) == 2
    assert "no passphrase given" in capsys.readouterr().err
    assert not (tmp_path / "kso1").exists()


def test_non_terminal_stdin_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    prompts = fake_getpass(monkeypatch, [PASS, PASS])
    monkeypatch.setattr(enroll_command, "stdin_is_terminal", lambda: False)
    assert cli.main(enroll(tmp_path / "kso1")) == 2
    assert "not a terminal" in capsys.readouterr().err
    assert prompts == [] and not (tmp_path / "kso1").exists()


def test_piped_stdin_refused_by_the_real_command(tmp_path: Path) -> None:
    """The installed command, stdin a pipe: exit 2 and one clear line, no traceback."""
    argv = [sys.executable, "-m", "keyrite.cli", *enroll(tmp_path / "kso1")]
    done = subprocess.run(argv, input=PASS + "\n" + PASS + "\n", capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "not a terminal" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "kso1").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["enroll", "--role", "KSO", "--name", "C"], "missing --out"),
    (["enroll", "--role", "KSO", "--seat", "KGA", "--name", "C", "--out", "d"], "not a seat of"),
    (["enroll", "--role", "kso", "--name", "C", "--out", "d"], "not a role"),
    (["enroll", "--role", "KSO", "--seat", "KSO-1", "--name", "C", "--out", "d"], "seat name"),
    (["enroll", "--role", "KSO", "--name", " ", "--out", "d"], "name is empty"),
    (["enroll", "--check", "d", "--role", "KSO"], "--check takes no --role"),
])
def test_bad_arguments_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str], argv: list[str],
                              message: str) -> None:
    monkeypatch.chdir(tmp_path)
    prompts = fake_getpass(monkeypatch, [PASS, PASS])
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert prompts == [] and not (tmp_path / "d").exists()


def test_short_passphrase_file_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short"
    short.write_text("1234\n")
    assert cli.main(enroll(tmp_path / "kso1", "--passphrase-file", str(short))) == 2
    assert "at least 8" in capsys.readouterr().err
    assert not (tmp_path / "kso1").exists()


def test_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["enroll", "--help"]) == 0
    out = capsys.readouterr().out
    for needle in ("--role", "--name", "--out", "--seat", "--person", "--organisation",
                   "--passphrase-file", "--json", "--check", "console_key", "never",
                   SIGNING_KEY, CONSOLE_SECRET, "exit codes"):
        assert needle in out, needle
    assert cli.main(["--help"]) == 0
    assert "enroll" in capsys.readouterr().out


def test_real_terminal_never_echoes(tmp_path: Path) -> None:
    """The real getpass on a pseudo-terminal: prompts twice, and the passphrase never shows."""
    out = tmp_path / "kso1"
    pid, master = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal and stdin
        try:
            os.execv(sys.executable, [sys.executable, "-m", "keyrite.cli", *enroll(out)])
        finally:
            os._exit(127)
    seen = b""
    answers = [PASS, PASS]
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, f"no output for 30 s; so far: {seen!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if answers and seen.endswith(b": "):  # a prompt is waiting
                os.write(master, answers.pop(0).encode() + b"\n")
                seen += b"\n"  # so the same prompt is not answered twice
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert answers == []
    assert b"New passphrase" in seen and b"The same passphrase again" in seen
    assert PASS.encode() not in seen
    assert b"[[officers]]" in seen
    unlock(out, PASS.encode())
