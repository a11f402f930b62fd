"""The signer shim over real SSH: a shim subprocess on 127.0.0.1 over a real SoftHSM2 token,
reached with OpenSSH's own client and with asyncssh. Plus the pure protocol and config rules."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from signer_shim import protocol
from signer_shim.config import ConfigError
from signer_shim.hostkey import host_key_fingerprint
from signer_shim.interface import Inventory, KeyInfo, SignerError
from signer_shim.server import Shim, ShimConfig, load
from signer_shim.shim_command import main as shim_main
from staging.fixture import RehearsalToken
from staging.standup import write_shim_files
from tests.shim_helpers import cast_authority

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60  # seconds: the bound on every wait (no timing is asserted)


# -- the pure protocol ------------------------------------------------------------------------


def req(**fields: object) -> bytes:
    doc = {"v": 1, "id": "r1", "key": "k1", "method": "info", "params": {}}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_a_good_request_parses() -> None:
    r = protocol.parse_request(req(method="inventory") + b"\n")
    assert (r.id, r.key, r.method, r.params) == ("r1", "k1", "inventory", {})
    assert protocol.parse_request(r.to_line()) == r


@pytest.mark.parametrize(
    ("line", "type_", "id_"),
    [
        (b"not json", "BadRequest", None),
        (b"[1, 2]", "BadRequest", None),
        (req(id=...), "BadRequest", None),
        (req(id=""), "BadRequest", None),
        (req(id=7), "BadRequest", None),
        (req(extra=1), "BadRequest", "r1"),
        (req(v=...), "BadRequest", "r1"),
        (req(v=2), "UnsupportedVersion", "r1"),
        (req(v="1"), "UnsupportedVersion", "r1"),
        (req(v=True), "UnsupportedVersion", "r1"),
        (req(key=...), "BadRequest", "r1"),
        (req(key="x" * 129), "BadRequest", "r1"),
        (req(method="purge"), "UnknownMethod", "r1"),
        (req(method=None), "BadRequest", "r1"),
        (req(params=...), "BadRequest", "r1"),
        (req(params=[]), "BadRequest", "r1"),
        (req(params={"x": 1}), "BadRequest", "r1"),
        (b"\xff\xfe", "BadRequest", None),
        (b"[" * 60000 + b"]" * 60000, "BadRequest", None),
        (b'{"v":1,"id":"a","id":"b","key":"k","method":"info","params":{}}', "BadRequest",
         None),
        (b'{"pad": "' + b"x" * protocol.MAX_LINE + b'"}', "BadRequest", None),
    ],
)
def test_a_bad_request_is_a_clear_error_never_a_crash(line: bytes, type_: str,
                                                      id_: str | None) -> None:
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.parse_request(line)
    assert (e.value.type, e.value.id) == (type_, id_)
    reply = protocol.parse_reply(protocol.error(e.value.id, e.value.type, str(e.value)))
    assert reply["error"]["type"] == type_ and reply["error"]["message"]


def test_replies_have_one_kind_each() -> None:
    assert protocol.parse_reply(protocol.result("a", {"x": 1})) == {"v": 1, "id": "a",
                                                                    "result": {"x": 1}}
    p = protocol.parse_reply(protocol.progress("a", 2, 6, "generated 2 of 6 keys"))
    assert p["progress"] == {"done": 2, "total": 6, "what": "generated 2 of 6 keys"}
    for bad in (b'{"v":1,"id":"a","result":1,"error":{}}', b'{"v":2,"id":"a","result":1}',
                b'{"v":1,"id":"a"}', b'{"v":1,"id":"a","result":1,"x":0}'):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_reply(bad)


# -- the config -------------------------------------------------------------------------------


GOOD = """[shim]
listen = "127.0.0.1"
port = 0
host_key = "hk"
authorized_keys = "ak"
signer_config = "signer.toml"
authority = "authority.toml"
"""


def test_config_relative_paths_are_from_the_files_directory(tmp_path: Path) -> None:
    (tmp_path / "shim.toml").write_text(GOOD)
    c = ShimConfig.load(tmp_path / "shim.toml")
    assert (c.listen, c.port, c.host_key, c.signer_config) == (
        "127.0.0.1", 0, tmp_path / "hk", tmp_path / "signer.toml")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (GOOD.replace("port = 0", "port = 70000"), "shim.port"),
        (GOOD.replace("port = 0", 'port = "22"'), "shim.port"),
        (GOOD.replace('listen = "127.0.0.1"\n', ""), "shim.listen"),
        (GOOD + "colour = 1\n", "shim.colour"),
        (GOOD + "[other]\n", "[other]"),
        (GOOD.replace('"hk"', '""'), "shim.host_key"),
        ("[shim", "shim.toml"),
    ],
)
def test_a_bad_config_names_file_and_key(tmp_path: Path, text: str, names: str) -> None:
    (tmp_path / "shim.toml").write_text(text)
    with pytest.raises(ConfigError, match="shim.toml") as e:
        ShimConfig.load(tmp_path / "shim.toml")
    assert names in str(e.value)


# -- a live shim ------------------------------------------------------------------------------


@dataclass
class Live:
    port: int
    client_key: Path  # authorized
    stranger_key: Path  # not authorized
    known_hosts: Path
    host_key: Path
    rt: RehearsalToken
    proc: subprocess.Popen[str]


def write_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(path)
    os.chmod(path, 0o600)
    key.write_public_key(f"{path}.pub")
    return key


def shim_files(rt: RehearsalToken, d: Path, port: int = 0) -> Path:
    d.mkdir()
    write_key(d / "client_key")
    write_key(d / "stranger_key")
    write_shim_files(d, rt.config_path, cast_authority(), port=port, client_key=d / "client_key")
    pub = asyncssh.read_private_key(rt.config.host_key_path).export_public_key().decode().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:* {pub[0]} {pub[1]}\n")
    return d / "shim.toml"


def start_shim(config: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str],
                                                                          int]:
    log = config.parent / "shim.log"
    with log.open("a") as err:  # a file, not a pipe: the shim logs every session
        proc = subprocess.Popen(
            [sys.executable, "-m", "signer_shim.shim_command", "--config", str(config)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], WAIT)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("listening on 127.0.0.1 port "):
        stop(proc)
        pytest.fail(f"shim did not start: {line!r}\n{log.read_text()}")
    return proc, int(line.split()[-1])


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=WAIT)
    return proc.returncode


@pytest.fixture
def live(small_rehearsal: RehearsalToken, tmp_path: Path) -> Iterator[Live]:
    config = shim_files(small_rehearsal, tmp_path / "shim")
    proc, port = start_shim(config)
    try:
        d = config.parent
        yield Live(port, d / "client_key", d / "stranger_key", d / "known_hosts",
                   small_rehearsal.config.host_key_path, small_rehearsal, proc)
    finally:
        stop(proc)


def openssh(live: Live, key: Path, stdin: bytes, *extra: str,
            subsystem: bool = True) -> subprocess.CompletedProcess[bytes]:
    ssh = shutil.which("ssh")
    assert ssh, "OpenSSH's ssh client is installed by dev/setup.sh"
    args = [ssh, "-p", str(live.port), "-i", str(key), "-F", "/dev/null",
            "-o", f"UserKnownHostsFile={live.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", f"ConnectTimeout={WAIT}"]
    if subsystem:
        args.append("-s")
    return subprocess.run([*args, "officer@127.0.0.1", *extra], input=stdin,
                          capture_output=True, timeout=WAIT)


def replies(out: bytes) -> list[dict[str, object]]:
    return [protocol.parse_reply(line) for line in out.splitlines()]


def test_openssh_opens_the_subsystem_and_gets_info(live: Live) -> None:
    r = openssh(live, live.client_key, req(id="q1") + b"\n", "keyrite-shim")
    assert r.returncode == 0, r.stderr
    [answer] = replies(r.stdout)
    assert answer["id"] == "q1"
    info = answer["result"]
    assert isinstance(info, dict)
    assert info["host_key"] == host_key_fingerprint(live.host_key)
    keygen = subprocess.run(["ssh-keygen", "-lf", str(live.host_key)], capture_output=True,
                            text=True, check=True, timeout=WAIT)
    assert keygen.stdout.split()[1] == info["host_key"]
    assert info["repository"] == live.rt.config.token_label


def test_a_key_not_in_authorized_keys_is_refused(live: Live) -> None:
    r = openssh(live, live.stranger_key, req() + b"\n", "keyrite-shim")
    assert r.returncode != 0
    assert r.stdout == b""
    assert b"Permission denied" in r.stderr


def test_shell_exec_and_other_subsystems_are_refused(live: Live) -> None:
    r = openssh(live, live.client_key, b"", "sftp")
    assert r.returncode != 0 and r.stdout == b""
    assert b"subsystem request failed" in r.stderr
    for extra, what in ((("echo", "hi"), b"exec"), ((), b"a shell")):
        r = openssh(live, live.client_key, b"", *extra, subsystem=False)
        assert r.returncode != 0 and r.stdout == b""
        assert b"keyrite-shim: " + what + b" is refused" in r.stderr


async def finals(port: int, key: Path, known_hosts: Path, lines: list[bytes]
                 ) -> list[dict[str, Any]]:
    """Each line's final message (progress and queue notices skipped), one line at a time on
    one session: each answer comes before the next request."""
    async with asyncssh.connect(
        "127.0.0.1", port, username="officer", client_keys=[str(key)],
        known_hosts=str(known_hosts), agent_path=None, config=[], connect_timeout=WAIT,
    ) as conn:
        proc = await conn.create_process(subsystem=protocol.SUBSYSTEM, encoding=None)
        out = []
        for line in lines:
            proc.stdin.write(line)
            while True:
                got = await asyncio.wait_for(proc.stdout.readline(), WAIT)
                assert got, "the shim closed the session"
                msg = protocol.parse_reply(got)
                if "progress" not in msg and "queued" not in msg:
                    out.append(msg)
                    break
        proc.stdin.write_eof()
        await asyncio.wait_for(proc.wait(), WAIT)
        return out


async def _session(live: Live, key: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    return await finals(live.port, key, live.known_hosts, lines)


def test_asyncssh_client_gets_info_fingerprint_and_inventory(live: Live) -> None:
    lines = [protocol.Request(f"r{i}", f"k{i}", m, {}).to_line()
             for i, m in enumerate(("info", "fingerprint", "inventory"))]
    info, fp, inv = asyncio.run(_session(live, live.client_key, lines))
    assert [m["id"] for m in (info, fp, inv)] == ["r0", "r1", "r2"]
    assert info["result"]["host_key"] == host_key_fingerprint(live.host_key)  # type: ignore[index]
    fingerprint = fp["result"]["fingerprint"]  # type: ignore[index]
    assert len(fingerprint.split("-")) == 10
    result = inv["result"]
    assert isinstance(result, dict)
    assert result["count"] == live.rt.figures.keys == 6
    assert len(result["keys"]) == 6
    assert result["listing"].startswith(
        f"Listing keys in repository: {live.rt.config.token_label}\n6 keys found.\n")
    for k in result["keys"]:
        assert k["locator"] in result["listing"] and k["type"] == "ECDSA/P-256"


def test_a_malformed_request_gets_an_error_and_the_session_goes_on(live: Live) -> None:
    lines = [b"{not json\n", req(id="r2", v=9) + b"\n", req(id="r3", method="purge") + b"\n",
             req(id="r4", surprise=True) + b"\n", req(id="r5", method="inventory") + b"\n"]
    a, b, c, d, e = asyncio.run(_session(live, live.client_key, lines))
    assert a == {"v": 1, "id": None, "error": {"type": "BadRequest",
                                               "message": "not a JSON object"}}
    assert (b["id"], b["error"]["type"]) == ("r2", "UnsupportedVersion")  # type: ignore[index]
    assert (c["id"], c["error"]["type"]) == ("r3", "UnknownMethod")  # type: ignore[index]
    assert (d["id"], d["error"]["type"]) == ("r4", "BadRequest")  # type: ignore[index]
    assert "surprise" in d["error"]["message"]  # type: ignore[index]
    assert e["id"] == "r5" and e["result"]["count"] == 6  # type: ignore[index]


def test_an_overlong_line_is_refused_and_the_session_goes_on(live: Live) -> None:
    huge = b'{"pad": "' + b"x" * (3 * protocol.MAX_LINE) + b'"}\n'
    too_long, ok = asyncio.run(_session(live, live.client_key, [huge, req(id="r2") + b"\n"]))
    assert too_long["id"] is None
    assert too_long["error"]["type"] == "BadRequest"  # type: ignore[index]
    assert "longer than" in too_long["error"]["message"]  # type: ignore[index]
    assert ok["id"] == "r2" and "result" in ok


def test_two_clients_at_once_are_both_answered(live: Live) -> None:
    lines = [protocol.Request(f"r{i}", f"k{i}", "inventory", {}).to_line() for i in range(3)]

    async def both() -> list[list[dict[str, object]]]:
        return list(await asyncio.gather(*(_session(live, live.client_key, lines)
                                           for _ in range(2))))

    for answers in asyncio.run(both()):
        assert [m["result"]["count"] for m in answers] == [6, 6, 6]  # type: ignore[index]


def test_sigterm_stops_the_shim_cleanly(live: Live) -> None:
    assert stop(live.proc) == 0


def test_sigterm_with_a_session_open_closes_it_and_exits_0(live: Live) -> None:
    async def hold_open() -> bytes:
        async with asyncssh.connect(
            "127.0.0.1", live.port, username="officer", client_keys=[str(live.client_key)],
            known_hosts=str(live.known_hosts), agent_path=None, config=[],
            connect_timeout=WAIT,
        ) as conn:
            proc = await conn.create_process(subsystem=protocol.SUBSYSTEM, encoding=None)
            proc.stdin.write(req(id="r1") + b"\n")
            assert "result" in protocol.parse_reply(
                await asyncio.wait_for(proc.stdout.readline(), WAIT))
            live.proc.terminate()  # the session is idle and open
            return await asyncio.wait_for(proc.stdout.read(), WAIT)  # ends when closed

    assert asyncio.run(hold_open()) == b""
    assert live.proc.wait(timeout=WAIT) == 0


# -- start-up ---------------------------------------------------------------------------------


def test_ready_is_notified_once_listening(small_rehearsal: RehearsalToken,
                                          tmp_path: Path) -> None:
    config = shim_files(small_rehearsal, tmp_path / "shim")
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(WAIT)
        proc, port = start_shim(config, {"NOTIFY_SOCKET": str(sock_path)})
        try:
            assert sock.recv(4096) == b"READY=1"
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
                assert c.recv(4).startswith(b"SSH-")
        finally:
            assert stop(proc) == 0
        assert sock.recv(4096) == b"STOPPING=1"


def test_ready_goes_to_an_abstract_socket_too(small_rehearsal: RehearsalToken,
                                              tmp_path: Path) -> None:
    config = shim_files(small_rehearsal, tmp_path / "shim")
    name = f"keyrite-test-{os.getpid()}-{id(tmp_path)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(WAIT)
        proc, _ = start_shim(config, {"NOTIFY_SOCKET": "@" + name})
        try:
            assert sock.recv(4096) == b"READY=1"
        finally:
            stop(proc)


def test_a_bad_config_exits_2_naming_the_key(small_rehearsal: RehearsalToken, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = shim_files(small_rehearsal, tmp_path / "shim")
    config.write_text(config.read_text().replace("port = 0", "port = -1"))
    assert shim_main(["--config", str(config)]) == 2
    assert "shim.port" in capsys.readouterr().err
    assert shim_main(["--config", str(tmp_path / "missing.toml")]) == 2


def test_a_host_key_that_is_not_the_signers_is_refused(small_rehearsal: RehearsalToken,
                                                       tmp_path: Path) -> None:
    config = shim_files(small_rehearsal, tmp_path / "shim")
    other = tmp_path / "other_host_key"
    write_key(other)
    config.write_text(config.read_text().replace(
        json.dumps(str(small_rehearsal.config.host_key_path)), json.dumps(str(other))))
    with pytest.raises(ConfigError, match="not the signer's host key"):
        load(config)


def test_a_missing_authorized_keys_file_is_a_config_error(small_rehearsal: RehearsalToken,
                                                          tmp_path: Path) -> None:
    config = shim_files(small_rehearsal, tmp_path / "shim")
    (config.parent / "authorized_keys").unlink()
    with pytest.raises(ConfigError, match="shim.authorized_keys"):
        load(config)


def test_help_explains_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert shim_main(["--help"]) == 0
    out = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens
    for what in ("keyrite-shim", "authorized_keys", "READY=1", "SIGTERM", "2badconfig"):
        assert what in out


def test_a_port_it_cannot_bind_exits_1(small_rehearsal: RehearsalToken, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = shim_files(small_rehearsal, tmp_path / "shim", port=taken.getsockname()[1])
        assert shim_main(["--config", str(config)]) == 1
    assert "cannot serve on 127.0.0.1 port" in capsys.readouterr().err


# -- the server's one-signer rule, in process with a stand-in signer -------------------------


class StandIn:
    """Counts how many calls are inside at once; `gate` holds inventory until it is set."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.guard = threading.Lock()

    def inventory(self) -> Inventory:
        with self.guard:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.entered.set()
        try:
            assert self.gate.wait(WAIT)
            time.sleep(0.01)  # widens the window an unlocked server would overlap in
            return Inventory("stand-in", (KeyInfo("00" * 16, "ECDSA/P-256"),))
        finally:
            with self.guard:
                self.inside -= 1

    def info(self) -> dict[str, object]:
        raise SignerError("the host key is missing")

    def fingerprint(self) -> str:
        raise RuntimeError("a bug")


def test_one_request_at_a_time_reaches_the_signer_and_the_loop_stays_free() -> None:
    signer = StandIn()
    shim = Shim(signer)  # type: ignore[arg-type]
    line = req(method="inventory") + b"\n"

    async def scenario() -> list[bytes]:
        signer.gate.clear()
        first = asyncio.ensure_future(shim.answer(line))
        assert await asyncio.to_thread(signer.entered.wait, WAIT)
        # the signer is busy in its thread: the loop still answers what needs no signer
        bad = protocol.parse_reply(await shim.answer(b"nonsense\n"))
        assert bad["error"]["type"] == "BadRequest"  # type: ignore[index]
        rest = [asyncio.ensure_future(shim.answer(line)) for _ in range(5)]
        signer.gate.set()
        return list(await asyncio.gather(first, *rest))

    answers = asyncio.run(scenario())
    assert [protocol.parse_reply(a)["result"]["count"] for a in answers] == [1] * 6  # type: ignore[index]
    assert signer.most == 1


def test_signer_errors_and_bugs_become_error_replies() -> None:
    shim = Shim(StandIn())  # type: ignore[arg-type]
    refused = protocol.parse_reply(asyncio.run(shim.answer(req(id="a") + b"\n")))
    assert refused == {"v": 1, "id": "a", "error": {"type": "SignerError",
                                                    "message": "the host key is missing"}}
    bug = protocol.parse_reply(asyncio.run(shim.answer(req(id="b", method="fingerprint"))))
    assert bug["error"]["type"] == "Internal"  # type: ignore[index]
    assert "a bug" not in bug["error"]["message"]  # type: ignore[index]
